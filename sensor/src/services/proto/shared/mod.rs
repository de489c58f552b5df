//! Code shared by several protocols: NTLM authentication and its SPNEGO wrapping, spoken by
//! SMB, RDP (CredSSP), LDAP (SASL GSS-SPNEGO/NTLM) and MSSQL (SSPI); TLS configurations and TDS
//! framing for the Windows decoys; uploaded files kept in the state directory.

pub mod ber;
pub mod certs;
pub mod ntlm;
pub mod tds;
#[cfg(test)]
pub(crate) mod testing;
pub mod upload;
