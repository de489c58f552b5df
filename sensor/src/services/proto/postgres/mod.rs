//! PostgreSQL frontend/backend protocol 3.0 up to authentication, with TLS, as PostgreSQL 15
//! from Debian answers.
//!
//! ```text
//! C: SSLRequest                   (sslmode=prefer or require; absent with disable)
//! S: S, then a TLS handshake with the sensor's certificate (prime256v1 only, as PostgreSQL)
//! C: StartupMessage user=postgres database=prod application_name=psql
//! S: AuthenticationSASL SCRAM-SHA-256-PLUS, SCRAM-SHA-256     (auth: scram, the default)
//! C: SASLInitialResponse / S: SASLContinue / C: SASLResponse with the client proof
//!                                 -> postgres.login {"username":"postgres","auth":"scram-sha-256",
//!                                    "scram":"$scram-sha-256$4096$...","channel_binding":
//!                                    "tls-server-end-point", ...}
//! S: ErrorResponse FATAL 28P01 password authentication failed for user "postgres"
//! ```
//! With `auth: md5` the server sends AuthenticationMD5Password and logs hashcat's `-m 11100`
//! line; with `auth: cleartext` (PostgreSQL's `password`) the password itself.
//!
//! The first message decides, whatever order the client picks: an SSLRequest, a GSSENCRequest
//! (answered `G` as Debian's build, which has GSSAPI, then the client's token is logged and the
//! connection closed as the server does without a keytab; `gssapi: false` answers `N`), a
//! CancelRequest (closed) or the startup message itself. The startup packet is checked in
//! PostgreSQL's order with its SQLSTATEs and texts: protocol major version (`0A000`),
//! `replication` value (`22023`), terminator (`08P01`), missing user (`28000`), then a
//! NegotiateProtocolVersion for a minor version above 0 or `_pq_.` options.
//! `nmap -sV` reports `PostgreSQL DB`: its SMB probe is answered as an unknown protocol version.

mod auth;
pub mod scram;
mod tls;
pub mod wire;

use std::sync::Arc;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError},
        tcp::{Handler, TcpProtocol},
    },
};
use wire::{
    CANCEL_REQUEST, Fatal, GSSENC_REQUEST, MAX_STARTUP, SSL_REQUEST, fatal,
    negotiate_protocol_version,
};
pub use wire::{body_length, parse_parameters};

/// How the decoy asks for the password (`pg_hba.conf`'s method).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// SCRAM-SHA-256, PostgreSQL 14+'s default: the client proof is logged.
    #[default]
    #[serde(alias = "scram-sha-256")]
    Scram,
    /// MD5 challenge: hashcat `-m 11100` line logged.
    Md5,
    /// Cleartext (`password`): the password itself is logged.
    #[serde(alias = "password")]
    Cleartext,
}

struct PostgresServer {
    version: String,
    auth: AuthMethod,
    gssapi: bool,
    tls: Option<(TlsAcceptor, [u8; 32])>,
    mock_secret: [u8; 32],
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("version", &self.version)
            .field("auth", &self.auth)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A PostgreSQL instance.
#[derive(Debug, Clone, Deserialize)]
pub struct PostgresConfig {
    /// `server_version` reported; default `15.8`.
    #[serde(default)]
    pub version: Option<String>,
    /// Accept TLS (`SSLRequest`), so that `sslmode=require` clients log in too; default true.
    #[serde(default)]
    pub ssl: Option<bool>,
    /// `scram` (default, also `scram-sha-256`), `md5` or `cleartext` (also `password`).
    #[serde(default)]
    pub auth: Option<AuthMethod>,
    /// Answer GSSENCRequest `G` as a server built with GSSAPI (Debian's); default true.
    #[serde(default)]
    pub gssapi: Option<bool>,
}

/// The PostgreSQL protocol.
#[derive(Debug)]
pub struct Postgres;

impl TcpProtocol for Postgres {
    type Config = PostgresConfig;

    /// PostgreSQL's `authentication_timeout` (60 s); no idle limit after it
    /// (`idle_session_timeout` 0: the session timeout ends the session).
    fn timeouts(
        _config: &PostgresConfig,
    ) -> Option<crate::services::framework::timeouts::Timeouts> {
        Some(crate::services::framework::timeouts::Timeouts::secs(
            60, 86_400,
        ))
    }

    /// Generates (once) or loads the certificate when TLS is on.
    fn handler(config: PostgresConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        let tls = if config.ssl.unwrap_or(true) {
            Some(tls::acceptor(ctx).map_err(|err| ctx.setup_error(err.to_string()))?)
        } else {
            None
        };
        let pg = Arc::new(PostgresServer {
            version: config.version.unwrap_or_else(|| "15.8".to_owned()),
            auth: config.auth.unwrap_or_default(),
            gssapi: config.gssapi.unwrap_or(true),
            tls,
            mock_secret: tls::mock_secret(ctx).map_err(|err| ctx.setup_error(err.to_string()))?,
        });
        Ok(Arc::new(move |session, stream| {
            let pg = Arc::clone(&pg);
            Box::pin(async move { serve(&pg, session, stream).await })
        }))
    }
}

const STARTUP: &str = "ProcessStartupPacket";

/// Reads a length-prefixed startup-phase packet: (code, body after the code). A length out of
/// range (negative, shorter than the header, longer than PostgreSQL accepts) is logged as
/// `postgres.data` with the 8 bytes received and ends the session, as the server closes on an
/// "invalid length of startup packet".
async fn read_startup<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
) -> Result<(u32, bytes::Bytes), SessionError> {
    let head = conn.read_exact(8, session).await?;
    let (Some(length), Some(code)) = (
        head.get(..4).and_then(|l| <[u8; 4]>::try_from(l).ok()),
        head.get(4..8).and_then(|c| <[u8; 4]>::try_from(c).ok()),
    ) else {
        return Err(SessionError::Protocol("short startup header".to_owned()));
    };
    let Some(len) = body_length(length, 8, MAX_STARTUP) else {
        session.data(&head).await;
        return Err(SessionError::Protocol(
            "invalid length of startup packet".to_owned(),
        ));
    };
    let body = conn.read_exact(len, session).await?;
    Ok((u32::from_be_bytes(code), body))
}

async fn serve(
    pg: &PostgresServer,
    session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let mut conn = Conn::new(stream, session.limits());
    let (mut ssl_done, mut gss_done) = (false, false);
    loop {
        let (code, body) = read_startup(&mut conn, &session).await?;
        match code {
            SSL_REQUEST if !ssl_done => {
                ssl_done = true;
                if let Some((acceptor, end_point)) = &pg.tls {
                    conn.write_all(b"S", &session).await?;
                    let (stream, _) = conn.into_parts();
                    let wait = session.limits().handshake_timeout();
                    let tls = match tokio::time::timeout(wait, acceptor.accept(stream)).await {
                        Err(_) => return Err(SessionError::HandshakeTimeout),
                        Ok(result) => result?,
                    };
                    let mut conn = Conn::new(tls, session.limits());
                    let (code, body) = read_startup(&mut conn, &session).await?;
                    return startup(pg, session, conn, code, &body, Some(*end_point)).await;
                }
                conn.write_all(b"N", &session).await?;
            }
            GSSENC_REQUEST if !gss_done => {
                gss_done = true;
                if pg.gssapi {
                    conn.write_all(b"G", &session).await?;
                    return gss_token(conn, &session).await;
                }
                conn.write_all(b"N", &session).await?;
            }
            CANCEL_REQUEST => return Ok(()),
            code => return startup(pg, session, conn, code, &body, None).await,
        }
    }
}

/// After `G`: the client's first GSSAPI packet (int32 length, token) is logged and the
/// connection closed, as the server does when it cannot accept the security context.
async fn gss_token<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: Conn<S>,
    session: &Session,
) -> Result<(), SessionError> {
    let head = conn.read_exact(4, session).await?;
    let length = <[u8; 4]>::try_from(head.as_ref()).unwrap_or_default();
    let token = match body_length(length, 0, 16_384) {
        Some(n) => conn.read_exact(n, session).await?,
        None => bytes::Bytes::new(),
    };
    session
        .data(&[head.as_ref(), token.as_ref()].concat())
        .await;
    Ok(())
}

/// The checks PostgreSQL 15 makes on the startup packet, in its order; `Err` holds the
/// ErrorResponse to send.
fn check_startup(code: u32, body: &[u8]) -> Result<Vec<String>, Vec<u8>> {
    let (major, minor) = (code >> 16, code & 0xffff);
    if major != 3 {
        let message =
            format!("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0");
        if major < 3 {
            // Protocol 2 clients get the old format: 'E', the text, a newline and a NUL.
            return Err([b"EFATAL:  ", message.as_bytes(), b"\n\0"].concat());
        }
        return Err(fatal(&Fatal {
            code: "0A000",
            message: &message,
            hint: None,
            file: "postmaster.c",
            line: "2222",
            routine: STARTUP,
        }));
    }
    let params = parse_parameters(body);
    let mut unknown = Vec::new();
    for (key, value) in &params {
        if key == "replication" && !wire::valid_replication(value) {
            let message = format!("invalid value for parameter \"replication\": \"{value}\"");
            return Err(fatal(&Fatal {
                code: "22023",
                message: &message,
                hint: Some("Valid values are: \"false\", 0, \"true\", 1, \"database\"."),
                file: "postmaster.c",
                line: "2286",
                routine: STARTUP,
            }));
        }
        if key.starts_with("_pq_.") {
            unknown.push(key.clone());
        }
    }
    if !wire::terminated(body) {
        return Err(fatal(&Fatal {
            code: "08P01",
            message: "invalid startup packet layout: expected terminator as last byte",
            hint: None,
            file: "postmaster.c",
            line: "2334",
            routine: STARTUP,
        }));
    }
    if !params.iter().any(|(k, v)| k == "user" && !v.is_empty()) {
        return Err(fatal(&Fatal {
            code: "28000",
            message: "no PostgreSQL user name specified in startup packet",
            hint: None,
            file: "postmaster.c",
            line: "2351",
            routine: STARTUP,
        }));
    }
    Ok(unknown)
}

async fn startup<S: AsyncRead + AsyncWrite + Unpin>(
    pg: &PostgresServer,
    mut session: Session,
    mut conn: Conn<S>,
    code: u32,
    body: &[u8],
    end_point: Option<[u8; 32]>,
) -> Result<(), SessionError> {
    let unknown = match check_startup(code, body) {
        Ok(unknown) => unknown,
        Err(answer) => {
            session.data(body).await;
            conn.write_all(&answer, &session).await?;
            conn.shutdown().await;
            return Ok(());
        }
    };
    session.handshake_done();
    if code & 0xffff > 0 || !unknown.is_empty() {
        conn.write_all(&negotiate_protocol_version(&unknown), &session)
            .await?;
    }
    let params = parse_parameters(body);
    auth::authenticate(pg, session, conn, &params, end_point).await
}

#[cfg(test)]
mod tests {
    use super::check_startup;

    fn startup_body(params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, v) in params {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn startup_checks_follow_postgres_order_and_codes() {
        let ok = startup_body(&[("user", "bob"), ("_pq_.x", "1")]);
        assert_eq!(check_startup(196_608, &ok), Ok(vec!["_pq_.x".to_owned()]));
        let code = |answer: Vec<u8>| String::from_utf8_lossy(&answer).into_owned();
        let no_user =
            code(check_startup(196_608, &startup_body(&[("database", "x")])).unwrap_err());
        assert!(no_user.contains("C28000\0Mno PostgreSQL user name specified in startup packet\0"));
        let repl =
            code(check_startup(196_608, &startup_body(&[("replication", "bogus")])).unwrap_err());
        assert!(
            repl.contains("C22023\0Minvalid value for parameter \"replication\": \"bogus\"\0H")
        );
        let v4 = code(check_startup(4 << 16, &ok).unwrap_err());
        assert!(
            v4.contains("C0A000\0Munsupported frontend protocol 4.0: server supports 3.0 to 3.0\0")
        );
        assert_eq!(
            check_startup(2 << 16, &ok).unwrap_err(),
            b"EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0"
        );
        let unterminated = code(check_startup(196_608, b"user\0bob\0").unwrap_err());
        assert!(unterminated.contains("C08P01\0"));
        assert!(
            check_startup(
                196_609,
                &startup_body(&[("user", "bob"), ("replication", "database")])
            )
            .is_ok()
        );
    }
}
