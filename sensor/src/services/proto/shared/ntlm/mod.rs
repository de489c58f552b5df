//! NTLM (MS-NLMP) for every protocol that speaks it: the server side of one exchange, the
//! identity it presents, and the credentials it captures.
//!
//! ```text
//! C: NEGOTIATE    flags (unicode, NTLM, extended session security, version, ...)
//! S: CHALLENGE    8 random bytes, target name CORP, AV pairs: CORP, SRV01, corp.local,
//!                 srv01.corp.local, corp.local (tree), timestamp; version 10.0.17763
//! C: AUTHENTICATE CORP\alice from WKS7, NTLMv2 response (NTProofStr + blob)
//!                 -> Captured { username: "alice", domain: "CORP", workstation: "WKS7",
//!                               kind: V2, hashcat: "alice::CORP:<challenge>:<proof>:<blob>" }
//! ```
//! Each message may arrive bare (CredSSP, MSSQL SSPI, LDAP SASL `NTLM`) or inside SPNEGO (SMB,
//! LDAP `GSS-SPNEGO`, HTTP `Negotiate`); [`Exchange::step`] answers in the same wrapping. The
//! hashcat line is `-m 5600` for NetNTLMv2 and `-m 5500` for NetNTLMv1 (with or without
//! extended session security, which hashcat detects from the LM field). The sensor never
//! verifies a response: every login fails, as configured by the protocol.
//!
//! Use: `let mut ex = Exchange::new(Arc::clone(&identity));` then feed each client token to
//! [`Exchange::step`] and send back [`Step::Reply`]'s bytes, until [`Step::Done`].

pub mod client;
pub mod crypto;
pub mod message;
pub mod spnego;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde_json::{Map, Value};

use self::{
    message::{AUTHENTICATE, NEGOTIATE},
    spnego::{NTLMSSP_OID, NegState},
};

/// A malformed or unexpected NTLM token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtlmError {
    /// The bytes are neither an NTLM message nor SPNEGO carrying one.
    #[error("not an NTLM message")]
    NotNtlm,
    /// A message of this type arrived where another was expected.
    #[error("unexpected NTLM message type {0}")]
    Unexpected(u32),
    /// The message ends inside its fixed header.
    #[error("truncated NTLM message")]
    Truncated,
    /// SPNEGO without an NTLM token (a client that offers only Kerberos).
    #[error("SPNEGO token without an NTLM message")]
    NoNtlmToken,
}

/// Windows version in the CHALLENGE's VERSION field (what `rdp-ntlm-info` and
/// `smb-os-discovery` report as "Product_Version").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductVersion {
    /// Major version (10 for Windows 10 and Server 2016 onwards).
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Build number.
    pub build: u16,
}

impl ProductVersion {
    /// Windows Server 2012 R2 (6.3.9600).
    pub const SERVER_2012_R2: Self = Self::new(6, 3, 9600);
    /// Windows Server 2016 (10.0.14393).
    pub const SERVER_2016: Self = Self::new(10, 0, 14393);
    /// Windows Server 2019 (10.0.17763), the default.
    pub const SERVER_2019: Self = Self::new(10, 0, 17763);
    /// Windows Server 2022 (10.0.20348).
    pub const SERVER_2022: Self = Self::new(10, 0, 20348);

    /// A version triple.
    #[must_use]
    pub const fn new(major: u8, minor: u8, build: u16) -> Self {
        Self {
            major,
            minor,
            build,
        }
    }

    /// Parses `10.0.17763`, or a Windows Server release name (`2012`, `2016`, `2019`, `2022`,
    /// with or without "Windows Server").
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        let release = lower
            .trim_start_matches("windows")
            .trim()
            .trim_start_matches("server")
            .trim();
        match release {
            "2012" | "2012 r2" | "2012r2" => return Some(Self::SERVER_2012_R2),
            "2016" => return Some(Self::SERVER_2016),
            "2019" => return Some(Self::SERVER_2019),
            "2022" => return Some(Self::SERVER_2022),
            _ => {}
        }
        let mut parts = s.split('.');
        let (major, minor, build) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Self::new(
            major.parse().ok()?,
            minor.parse().ok()?,
            build.parse().ok()?,
        ))
    }
}

impl Default for ProductVersion {
    fn default() -> Self {
        Self::SERVER_2019
    }
}

impl std::fmt::Display for ProductVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// The names and version a server presents in its CHALLENGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// NetBIOS computer name (`SRV01`).
    pub netbios_computer: String,
    /// NetBIOS domain name (`CORP`), the computer name for a workgroup server.
    pub netbios_domain: String,
    /// DNS computer name (`srv01.corp.local`).
    pub dns_computer: String,
    /// DNS domain name (`corp.local`).
    pub dns_domain: String,
    /// DNS forest name, for a domain member only.
    pub dns_tree: Option<String>,
    /// Product version.
    pub version: ProductVersion,
}

/// A NetBIOS name: uppercase, at most 15 characters.
fn netbios(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(15)
        .collect::<String>()
        .to_uppercase()
}

impl Identity {
    /// From the configuration's `hostname` and `domain`: `srv01` and `corp.local` give
    /// SRV01/CORP/srv01.corp.local/corp.local. A host name with dots and no domain splits into
    /// both; no domain at all gives a workgroup server (domain names are the computer's).
    #[must_use]
    pub fn new(hostname: &str, domain: &str, version: ProductVersion) -> Self {
        let hostname = hostname.trim().trim_end_matches('.');
        let domain = domain.trim().trim_matches('.');
        let (host, domain) = match (domain.is_empty(), hostname.split_once('.')) {
            (true, Some((host, rest))) => (host, rest),
            (_, Some((host, _))) => (host, domain),
            (_, None) => (hostname, domain),
        };
        let host = if host.is_empty() { "SRV01" } else { host };
        let nb_computer = netbios(host);
        if domain.is_empty() {
            return Self {
                netbios_domain: nb_computer.clone(),
                dns_computer: host.to_lowercase(),
                dns_domain: host.to_lowercase(),
                netbios_computer: nb_computer,
                dns_tree: None,
                version,
            };
        }
        let first_label = domain.split('.').next().unwrap_or(domain);
        Self {
            netbios_computer: nb_computer,
            netbios_domain: netbios(first_label),
            dns_computer: format!("{}.{}", host.to_lowercase(), domain.to_lowercase()),
            dns_domain: domain.to_lowercase(),
            dns_tree: Some(domain.to_lowercase()),
            version,
        }
    }
}

/// Which response a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// NTLMv2 (hashcat `-m 5600`).
    V2,
    /// NTLMv1 (hashcat `-m 5500`).
    V1,
    /// NTLMv1 with extended session security (hashcat `-m 5500` too).
    V1Ess,
    /// Anonymous (null session): no response.
    Anonymous,
    /// A response of no known length (no hashcat line).
    Unknown,
}

impl Kind {
    /// The name in events' `extra.ntlm_version`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V2 => "NTLMv2",
            Self::V1 => "NTLMv1",
            Self::V1Ess => "NTLMv1-ESS",
            Self::Anonymous => "anonymous",
            Self::Unknown => "unknown",
        }
    }
}

/// What an AUTHENTICATE message revealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// User name as typed.
    pub username: String,
    /// Domain as typed (may be empty).
    pub domain: String,
    /// Client workstation name.
    pub workstation: String,
    /// Response kind.
    pub kind: Kind,
    /// The hashcat line (`-m 5600` for v2, `-m 5500` for v1), when there is a response.
    pub hashcat: Option<String>,
    /// The client's OS version from the AUTHENTICATE, if sent.
    pub client_version: Option<String>,
}

impl Captured {
    /// The `extra` keys every NTLM-speaking service reports: `username`, `domain`,
    /// `workstation`, `ntlm_version`, and `hashcat` / `client_version` when known.
    #[must_use]
    pub fn extra(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("username".to_owned(), Value::String(self.username.clone()));
        m.insert("domain".to_owned(), Value::String(self.domain.clone()));
        m.insert(
            "workstation".to_owned(),
            Value::String(self.workstation.clone()),
        );
        m.insert(
            "ntlm_version".to_owned(),
            Value::String(self.kind.as_str().to_owned()),
        );
        if let Some(h) = &self.hashcat {
            m.insert("hashcat".to_owned(), Value::String(h.clone()));
        }
        if let Some(v) = &self.client_version {
            m.insert("client_version".to_owned(), Value::String(v.clone()));
        }
        m
    }
}

/// Turns a parsed AUTHENTICATE into what is reported, given the challenge it answers.
#[must_use]
pub fn capture(auth: &message::Authenticate, server_challenge: &[u8; 8]) -> Captured {
    let (lm, nt) = (&auth.lm_response, &auth.nt_response);
    let user_domain = format!("{}::{}", auth.username, auth.domain);
    let chal = hex::encode(server_challenge);
    let (kind, hashcat) = match nt.len() {
        0 => (Kind::Anonymous, None),
        24 => {
            let ess = lm.len() == 24 && lm.get(8..).is_some_and(|z| z.iter().all(|&b| b == 0));
            let lm_hex = if lm.len() == 24 {
                hex::encode(lm)
            } else {
                hex::encode(nt)
            };
            (
                if ess { Kind::V1Ess } else { Kind::V1 },
                Some(format!("{user_domain}:{lm_hex}:{}:{chal}", hex::encode(nt))),
            )
        }
        n if n >= 16 + 28 => {
            let (proof, blob) = nt.split_at(16);
            (
                Kind::V2,
                Some(format!(
                    "{user_domain}:{chal}:{}:{}",
                    hex::encode(proof),
                    hex::encode(blob)
                )),
            )
        }
        _ => (Kind::Unknown, None),
    };
    let kind = if kind == Kind::Anonymous || (auth.username.is_empty() && nt.is_empty()) {
        Kind::Anonymous
    } else {
        kind
    };
    Captured {
        username: auth.username.clone(),
        domain: auth.domain.clone(),
        workstation: auth.workstation.clone(),
        kind,
        hashcat,
        client_version: auth.version.clone(),
    }
}

/// Windows FILETIME (100 ns since 1601) of now.
#[must_use]
pub fn filetime_now() -> u64 {
    let unix = chrono::Utc::now();
    let secs = u64::try_from(unix.timestamp()).unwrap_or(0);
    secs.saturating_add(11_644_473_600)
        .saturating_mul(10_000_000)
        .saturating_add(u64::from(unix.timestamp_subsec_nanos() / 100))
}

/// How the client wrapped its tokens, so replies use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapping {
    /// Bare NTLMSSP messages.
    Raw,
    /// SPNEGO NegTokenInit / NegTokenResp.
    Spnego,
}

/// What to do after a client token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes (the CHALLENGE, wrapped as the client wraps) and wait for the next.
    Reply(Vec<u8>),
    /// The client authenticated: report it, then refuse (see [`Exchange::reject`]).
    Done(Captured),
}

/// The server side of one NTLM exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    identity: Arc<Identity>,
    challenge: [u8; 8],
    sent: bool,
    wrapping: Wrapping,
    negotiate: Option<message::Negotiate>,
}

impl Exchange {
    /// A new exchange with a random server challenge.
    #[must_use]
    pub fn new(identity: Arc<Identity>) -> Self {
        Self::with_challenge(identity, rand::random())
    }

    /// A new exchange with a given server challenge (tests).
    #[must_use]
    pub const fn with_challenge(identity: Arc<Identity>, challenge: [u8; 8]) -> Self {
        Self {
            identity,
            challenge,
            sent: false,
            wrapping: Wrapping::Raw,
            negotiate: None,
        }
    }

    /// The server challenge.
    #[must_use]
    pub const fn challenge(&self) -> [u8; 8] {
        self.challenge
    }

    /// The client's NEGOTIATE, once received.
    #[must_use]
    pub const fn negotiate(&self) -> Option<&message::Negotiate> {
        self.negotiate.as_ref()
    }

    /// How the client wraps its tokens.
    #[must_use]
    pub const fn wrapping(&self) -> Wrapping {
        self.wrapping
    }

    /// Handles one client token (bare NTLMSSP or SPNEGO).
    ///
    /// # Errors
    /// [`NtlmError`] for a token that is not NTLM, malformed, or out of order.
    pub fn step(&mut self, blob: &[u8]) -> Result<Step, NtlmError> {
        let inner = if message::message_type(blob).is_some() {
            self.wrapping = Wrapping::Raw;
            blob.to_vec()
        } else if spnego::is_spnego(blob) {
            self.wrapping = Wrapping::Spnego;
            spnego::parse_client(blob)
                .ok_or(NtlmError::NotNtlm)?
                .token
                .ok_or(NtlmError::NoNtlmToken)?
        } else {
            return Err(NtlmError::NotNtlm);
        };
        match message::message_type(&inner) {
            Some(NEGOTIATE) if !self.sent => {
                let negotiate = message::parse_negotiate(&inner)?;
                let challenge = message::build_challenge(
                    &self.identity,
                    negotiate.flags,
                    &self.challenge,
                    filetime_now(),
                );
                self.negotiate = Some(negotiate);
                self.sent = true;
                Ok(Step::Reply(match self.wrapping {
                    Wrapping::Raw => challenge,
                    Wrapping::Spnego => spnego::resp(
                        NegState::AcceptIncomplete,
                        Some(NTLMSSP_OID),
                        Some(&challenge),
                    ),
                }))
            }
            Some(AUTHENTICATE) if self.sent => {
                let auth = message::parse_authenticate(&inner)?;
                Ok(Step::Done(capture(&auth, &self.challenge)))
            }
            Some(other) => Err(NtlmError::Unexpected(other)),
            None => Err(NtlmError::NotNtlm),
        }
    }

    /// The final token refusing the client: a SPNEGO `reject` for SPNEGO clients, nothing for
    /// bare NTLM (the protocol's own status says it).
    #[must_use]
    pub fn reject(&self) -> Option<Vec<u8>> {
        (self.wrapping == Wrapping::Spnego).then(|| spnego::resp(NegState::Reject, None, None))
    }

    /// The final token admitting the client (anonymous or guest sessions).
    #[must_use]
    pub fn accept(&self) -> Option<Vec<u8>> {
        (self.wrapping == Wrapping::Spnego)
            .then(|| spnego::resp(NegState::AcceptCompleted, None, None))
    }
}
