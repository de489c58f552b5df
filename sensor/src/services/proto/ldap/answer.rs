//! What answering one LDAP message produces (the reply, the report, what the session does
//! next) and the connection's state it reads and changes: shared by the message handlers
//! (`ops`, and `sicily` for Microsoft's NTLM bind).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::services::proto::shared::ntlm::{Exchange, Identity};

/// What the session does after answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next message.
    Continue,
    /// Start TLS on the stream, then continue.
    StartTls,
    /// Close the connection.
    Close,
}

/// What is reported about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Nothing beyond `ldap.data` when undecodable.
    None,
    /// Bytes that are not a valid LDAP message (`ldap.data`).
    Data,
    /// `ldap.login` with these fields.
    Login(Map<String, Value>),
    /// `ldap.query` with these fields.
    Query(Map<String, Value>),
}

/// The answer to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// Bytes to send (possibly several messages, possibly none).
    pub reply: Vec<u8>,
    /// What to report.
    pub report: Report,
    /// What happens next.
    pub next: Next,
}

/// The connection's state.
#[derive(Debug, Clone)]
pub struct State {
    /// TLS is on (LDAPS, or after StartTLS).
    pub tls: bool,
    /// StartTLS may be asked for (plain LDAP with a certificate).
    pub starttls: bool,
    /// What NTLM's CHALLENGE presents.
    pub identity: Arc<Identity>,
    /// A SASL NTLM exchange in progress.
    pub ntlm: Option<Exchange>,
}

impl State {
    /// A connection's state before its first message.
    #[must_use]
    pub const fn new(identity: Arc<Identity>, tls: bool, starttls: bool) -> Self {
        Self {
            tls,
            starttls,
            identity,
            ntlm: None,
        }
    }
}
