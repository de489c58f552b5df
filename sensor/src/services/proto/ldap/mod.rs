//! LDAP (389, with StartTLS) and LDAPS (636) as an Active Directory domain controller answers an
//! unauthenticated client.
//!
//! ```text
//! C: searchRequest base "" scope base (objectClass=*)       -> ldap.query {"base":"",
//!                                                              "scope":"base", "filter":
//!                                                              "(objectClass=*)", ...}
//! S: searchResEntry "" (the RootDSE: defaultNamingContext DC=acme,DC=local, dnsHostName
//!    DC01.acme.local, supportedSASLMechanisms GSSAPI GSS-SPNEGO EXTERNAL DIGEST-MD5, ...)
//! S: searchResDone success
//! C: bindRequest v3 "CN=admin,CN=Users,DC=acme,DC=local" simple "s3cret"
//!                                                           -> ldap.login {"username":
//!                                                              "CN=admin,...", "password":
//!                                                              "s3cret", "mechanism":"simple"}
//! S: bindResponse invalidCredentials "80090308: LdapErr: DSID-0C090439, comment:
//!    AcceptSecurityContext error, data 52e, v4563"
//! C: searchRequest base "DC=acme,DC=local" scope sub (&(objectClass=user)(sAMAccountName=*))
//!                                                           -> ldap.query
//! S: searchResDone operationsError "000004DC: LdapErr: DSID-0C090A5C, comment: In order to
//!    perform this operation a successful bind must be completed on the connection., ..."
//! C: bindRequest v3 "" sasl NTLM (or GSS-SPNEGO) NEGOTIATE
//! S: bindResponse saslBindInProgress, serverSaslCreds CHALLENGE (DC01, ACME, acme.local)
//! C: bindRequest v3 "" sasl NTLM AUTHENTICATE                -> ldap.login {"username":"alice",
//!                                                              "domain":"ACME", "hashcat":
//!                                                              "alice::ACME:...", ...}
//! S: bindResponse invalidCredentials "80090308: ... data 52e, v4563"
//! C: bindRequest v3 "alice" sicilyNegotiate NEGOTIATE      (AD's own NTLM bind, [`sicily`])
//! S: bindResponse success, matchedDN CHALLENGE
//! C: bindRequest v3 "alice" sicilyResponse AUTHENTICATE    -> ldap.login {"mechanism":"sicily",
//!                                                              "hashcat": ..., ...}
//! C: extendedRequest 1.3.6.1.4.1.1466.20037 (StartTLS)
//! S: extendedResponse success, then a TLS handshake with the domain controller's certificate
//! ```
//! `nmap -sV` reports `Microsoft Windows Active Directory LDAP (Domain: acme.local, Site:
//! Default-First-Site-Name)`: its RootDSE probe matches `dsServiceName` in AD's encoding, which
//! writes every constructed element's length in four bytes ([`ber::Writer`]). NSE
//! `ldap-rootdse` lists the same names.
//!
//! Messages are decoded with `rasn-ldap` after [`ber`] has framed them (at most
//! [`MAX_MESSAGE`] bytes, AD's `MaxReceiveBuffer`, or the session's buffer limit) and bounded
//! their nesting. The names come from the instance's Trapster keys `server`, `domain`, `tld`,
//! `level` when present, otherwise from the sensor's `hostname` and `domain`.
//!
//! Both lists (`ldap`, `ldaps`) report on the `ldap` channel, as Trapster's LDAPS module does;
//! `extra.tls` tells them apart.

pub mod answer;
pub mod ber;
pub mod filter;
pub mod ops;
pub mod rootdse;
pub mod sicily;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use self::{
    ber::{FrameError, frame_len},
    ops::{Next, Report, State},
    rootdse::Names,
};
use super::shared::{
    certs::{self, Versions},
    ntlm::{Identity, ProductVersion},
};
use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError},
        tcp::{Handler, TcpProtocol},
        tls::Subject,
    },
};

/// Largest LDAP message accepted (Active Directory's default `MaxReceiveBuffer`).
pub const MAX_MESSAGE: usize = 10 * 1024 * 1024;

/// An LDAP or LDAPS instance (Trapster's keys).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LdapConfig {
    /// NetBIOS name of the domain controller (`DC01`); default: the sensor's `hostname`.
    #[serde(default)]
    pub server: Option<String>,
    /// Same as `server` (the key Trapster's LDAPS certificate reads).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Domain (`acme`, or `acme.local`); default: the sensor's `domain`, else `corp.local`.
    #[serde(default)]
    pub domain: Option<String>,
    /// Top-level label appended to `domain` (`local`).
    #[serde(default)]
    pub tld: Option<String>,
    /// Functional level (`WinThreshold`, `Windows2012R2Domain`, ...); default `WinThreshold`.
    #[serde(default)]
    pub level: Option<String>,
    /// Private key file (PEM) used with `certificate` when both exist.
    #[serde(default)]
    pub key: Option<String>,
    /// Certificate file (PEM) used with `key` when both exist.
    #[serde(default)]
    pub certificate: Option<String>,
    /// Offer StartTLS on plain LDAP; default true.
    #[serde(default)]
    pub starttls: Option<bool>,
}

impl LdapConfig {
    /// The domain controller's names.
    #[must_use]
    pub fn names(&self, ctx: &Context) -> Names {
        let host = self
            .server
            .as_deref()
            .or(self.hostname.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or(&ctx.hostname);
        let (first, rest) = host.split_once('.').unwrap_or((host, ""));
        let server = if first.is_empty() { "DC01" } else { first }.to_uppercase();
        let domain = match (self.domain.as_deref().filter(|d| !d.is_empty()), &self.tld) {
            (Some(d), Some(t)) if !t.is_empty() => format!("{d}.{t}"),
            (Some(d), _) => d.to_owned(),
            (None, _) if !ctx.domain.is_empty() => ctx.domain.clone(),
            (None, _) if !rest.is_empty() => rest.to_owned(),
            (None, _) => "corp.local".to_owned(),
        };
        Names {
            server,
            domain: domain.trim_matches('.').to_owned(),
            level: rootdse::level(self.level.as_deref().unwrap_or("WinThreshold")),
        }
    }
}

struct Dc {
    names: Names,
    identity: Arc<Identity>,
    tls: Option<TlsAcceptor>,
    /// LDAPS: TLS from the first byte.
    implicit_tls: bool,
}

impl std::fmt::Debug for Dc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dc")
            .field("names", &self.names)
            .field("tls", &self.tls.is_some())
            .field("implicit_tls", &self.implicit_tls)
            .finish()
    }
}

fn build(config: &LdapConfig, ctx: &Context, implicit_tls: bool) -> Result<Handler, ServiceError> {
    let names = config.names(ctx);
    let tls = if implicit_tls || config.starttls.unwrap_or(true) {
        let subject = Subject {
            common_name: names.dns_host_name(),
            ..Subject::default()
        };
        // LDAPS reports on the `ldap` channel: its files get their own name, so an LDAP and an
        // LDAPS instance never write the same certificate (both on port 0 in tests, at once).
        let name = format!(
            "{}-{}",
            if implicit_tls { "ldaps" } else { "ldap" },
            ctx.port
        );
        let server = certs::server_config(
            ctx,
            &name,
            &subject,
            config.key.as_deref(),
            config.certificate.as_deref(),
            Versions::Modern,
        )?;
        Some(TlsAcceptor::from(server))
    } else {
        None
    };
    let windows = match names.level {
        0..=6 => ProductVersion::SERVER_2012_R2,
        _ => ProductVersion::SERVER_2019,
    };
    let identity = Arc::new(Identity::new(&names.server, &names.domain, windows));
    let dc = Arc::new(Dc {
        names,
        identity,
        tls,
        implicit_tls,
    });
    Ok(Arc::new(move |session, stream| {
        let dc = Arc::clone(&dc);
        Box::pin(async move { serve(&dc, session, stream).await })
    }))
}

/// LDAP on 389, with StartTLS.
#[derive(Debug)]
pub struct Ldap;

impl TcpProtocol for Ldap {
    type Config = LdapConfig;

    /// Generates (once) or loads the certificate StartTLS presents.
    fn handler(config: LdapConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        build(&config, ctx, false)
    }
}

/// LDAP over TLS on 636.
#[derive(Debug)]
pub struct Ldaps;

impl TcpProtocol for Ldaps {
    type Config = LdapConfig;

    /// Generates (once) or loads the certificate.
    fn handler(config: LdapConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        build(&config, ctx, true)
    }
}

async fn accept_tls(
    acceptor: &TlsAcceptor,
    stream: tokio::net::TcpStream,
    session: &Session,
) -> Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, SessionError> {
    let wait = session.limits().handshake_timeout();
    match tokio::time::timeout(wait, acceptor.accept(stream)).await {
        Err(_) => Err(SessionError::HandshakeTimeout),
        Ok(result) => Ok(result?),
    }
}

async fn serve(
    dc: &Dc,
    mut session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    if dc.implicit_tls {
        let Some(acceptor) = &dc.tls else {
            return Err(SessionError::Protocol("LDAPS without TLS".to_owned()));
        };
        let tls = accept_tls(acceptor, stream, &session).await?;
        let mut conn = Conn::new(tls, session.limits());
        run(
            dc,
            &mut session,
            &mut conn,
            State::new(Arc::clone(&dc.identity), true, false),
        )
        .await?;
        conn.shutdown().await;
        return Ok(());
    }
    let mut conn = Conn::new(stream, session.limits());
    match run(
        dc,
        &mut session,
        &mut conn,
        State::new(Arc::clone(&dc.identity), false, false),
    )
    .await?
    {
        Next::StartTls => {
            let (stream, pending) = conn.into_parts();
            let Some(acceptor) = &dc.tls else {
                return Ok(());
            };
            if !pending.is_empty() {
                // A client pipelining its ClientHello behind the request: not what clients do.
                session.data(&pending).await;
                return Err(SessionError::Protocol("data after StartTLS".to_owned()));
            }
            let tls = accept_tls(acceptor, stream, &session).await?;
            let mut conn = Conn::new(tls, session.limits());
            run(
                dc,
                &mut session,
                &mut conn,
                State::new(Arc::clone(&dc.identity), true, false),
            )
            .await?;
            conn.shutdown().await;
        }
        Next::Close | Next::Continue => conn.shutdown().await,
    }
    Ok(())
}

/// Answers messages until the client unbinds, breaks the protocol, or asks for StartTLS
/// (returned, so the caller can wrap the stream).
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    dc: &Dc,
    session: &mut Session,
    conn: &mut Conn<S>,
    mut state: State,
) -> Result<Next, SessionError> {
    let max = MAX_MESSAGE.min(session.limits().max_buffer_bytes);
    state.starttls = dc.tls.is_some() && !state.tls;
    loop {
        let len = loop {
            match frame_len(conn.buffered(), max) {
                Ok(Some(len)) => break len,
                Ok(None) => {
                    conn.fill(session).await?;
                }
                Err(err) => {
                    let bytes = conn.take_buffered();
                    session.data(&bytes).await;
                    if !matches!(err, FrameError::NotLdap(_)) {
                        conn.write_all(&ops::disconnection(&dc.names), session)
                            .await?;
                    }
                    return Err(SessionError::Protocol(err.to_string()));
                }
            }
        };
        let message = conn.read_exact(len, session).await?;
        session.handshake_done();
        let handled = ops::handle(&dc.names, &mut state, &message, chrono::Utc::now());
        match handled.report {
            Report::None => {}
            Report::Data => session.data(&message).await,
            Report::Login(fields) => session.login(&[], fields).await,
            Report::Query(fields) => query(session, fields).await,
        }
        if !handled.reply.is_empty() {
            conn.write_all(&handled.reply, session).await?;
        }
        match handled.next {
            Next::Continue => {}
            Next::StartTls if state.starttls => return Ok(Next::StartTls),
            Next::StartTls | Next::Close => return Ok(Next::Close),
        }
    }
}

async fn query(session: &Session, fields: Map<String, Value>) {
    session.query(&[], fields).await;
}
