//! Code shared by several protocols: NTLM authentication and its SPNEGO wrapping, spoken by
//! SMB, RDP (CredSSP), LDAP (SASL GSS-SPNEGO/NTLM) and MSSQL (SSPI).

pub mod ntlm;
