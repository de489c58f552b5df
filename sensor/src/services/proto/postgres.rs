//! PostgreSQL frontend/backend protocol 3.0 up to authentication, with TLS.
//!
//! ```text
//! C: SSLRequest                   (sslmode=prefer or require; absent with disable)
//! S: S, then a TLS handshake with the sensor's certificate
//! C: StartupMessage user=postgres database=prod application_name=psql
//! S: AuthenticationCleartextPassword
//! C: PasswordMessage "s3cret"     -> postgres.login {"username":"postgres","password":"s3cret",
//!                                    "database":"prod","application_name":"psql","tls":true}
//! S: ErrorResponse FATAL 28P01 password authentication failed for user "postgres"
//! ```
//! `nmap -sV` reports `PostgreSQL DB`: its SMB probe is answered as PostgreSQL 15 answers an
//! unknown protocol version (`unsupported frontend protocol 65363.19778`).
//!
//! The first message decides, whatever order the client picks: an SSLRequest, a GSSENCRequest
//! (declined), a CancelRequest (closed) or the startup message itself, so `sslmode=disable`
//! clients, which start with the startup message, are logged like the others.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError, lossy},
        tcp::{Handler, TcpProtocol},
        tls::{self, Subject},
    },
};

const PROTOCOL_3: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// PostgreSQL refuses startup packets longer than this.
const MAX_STARTUP: usize = 10_000;

struct PostgresServer {
    version: String,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("version", &self.version)
            .field("tls", &self.tls.is_some())
            .finish()
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
}

/// The PostgreSQL protocol.
#[derive(Debug)]
pub struct Postgres;

impl TcpProtocol for Postgres {
    type Config = PostgresConfig;

    /// Generates (once) or loads the certificate when TLS is on.
    fn handler(config: PostgresConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        let tls = if config.ssl.unwrap_or(true) {
            let subject = Subject {
                common_name: ctx.hostname.clone(),
                ..Subject::default()
            };
            let server = tls::server_config(
                &ctx.state_dir(),
                &format!("postgres-{}", ctx.port),
                &subject,
                &[],
            )
            .map_err(|err| ctx.setup_error(err.to_string()))?;
            Some(TlsAcceptor::from(server))
        } else {
            None
        };
        let pg = Arc::new(PostgresServer {
            version: config.version.unwrap_or_else(|| "15.8".to_owned()),
            tls,
        });
        Ok(Arc::new(move |session, stream| {
            let pg = Arc::clone(&pg);
            Box::pin(async move { serve(&pg, session, stream).await })
        }))
    }
}

/// An `ErrorResponse` as the server builds it.
fn error_response(code: &str, message: &str, file: &str, line: &str, routine: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
        (b'F', file),
        (b'L', line),
        (b'R', routine),
    ] {
        body.put_u8(tag);
        body.put_slice(value.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    message_bytes(b'E', &body)
}

fn message_bytes(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&u32::try_from(body.len() + 4).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The body length a message's int32 length announces (the length counts itself and, for
/// startup packets, the code: `header` bytes), when it is within `header..=MAX_STARTUP`.
/// Negative lengths (the high bit set) and lengths shorter than the header are `None`.
#[must_use]
pub fn body_length(length: [u8; 4], header: usize) -> Option<usize> {
    let len = usize::try_from(i32::from_be_bytes(length)).ok()?;
    if len > MAX_STARTUP {
        return None;
    }
    len.checked_sub(header)
}

/// Reads a length-prefixed startup-phase packet: (code, body after the code). A length out of
/// range (negative, shorter than the header, longer than PostgreSQL accepts) is logged as
/// `postgres.data` with the 8 bytes received and ends the session, as the server closes on an
/// "invalid length of startup packet".
async fn read_startup<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
) -> Result<(u32, bytes::Bytes), SessionError> {
    let head = conn.read_exact(8, session).await?;
    let Some((length, code)) = head.split_first_chunk::<4>() else {
        return Err(SessionError::Protocol("short startup header".to_owned()));
    };
    let code: [u8; 4] = code
        .try_into()
        .map_err(|_| SessionError::Protocol("short startup header".to_owned()))?;
    let Some(len) = body_length(*length, 8) else {
        session.data(&head).await;
        return Err(SessionError::Protocol(
            "invalid length of startup packet".to_owned(),
        ));
    };
    let body = conn.read_exact(len, session).await?;
    Ok((u32::from_be_bytes(code), body))
}

/// Startup parameters: `key\0value\0 ... \0`.
#[must_use]
pub fn parse_parameters(body: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut parts = body.split(|&b| b == 0);
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        if k.is_empty() || out.len() >= 64 {
            break;
        }
        out.push((lossy(k), lossy(v)));
    }
    out
}

async fn serve(
    pg: &PostgresServer,
    session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let mut conn = Conn::new(stream, session.limits());
    loop {
        let (code, body) = read_startup(&mut conn, &session).await?;
        match code {
            SSL_REQUEST => {
                if let Some(acceptor) = &pg.tls {
                    conn.write_all(b"S", &session).await?;
                    let (stream, _) = conn.into_parts();
                    let wait = session.limits().handshake_timeout();
                    let tls = match tokio::time::timeout(wait, acceptor.accept(stream)).await {
                        Err(_) => return Err(SessionError::HandshakeTimeout),
                        Ok(result) => result?,
                    };
                    let conn = Conn::new(tls, session.limits());
                    return startup(pg, session, conn, None).await;
                }
                conn.write_all(b"N", &session).await?;
            }
            GSSENC_REQUEST => conn.write_all(b"N", &session).await?,
            CANCEL_REQUEST => return Ok(()),
            PROTOCOL_3 => {
                return startup(pg, session, conn, Some(body)).await;
            }
            other => {
                let message = format!(
                    "unsupported frontend protocol {}.{}: server supports 3.0 to 3.0",
                    other >> 16,
                    other & 0xffff
                );
                session.data(&body).await;
                conn.write_all(
                    &error_response(
                        "0A000",
                        &message,
                        "postmaster.c",
                        "2194",
                        "ProcessStartupPacket",
                    ),
                    &session,
                )
                .await?;
                return Ok(());
            }
        }
    }
}

async fn startup<S: AsyncRead + AsyncWrite + Unpin>(
    pg: &PostgresServer,
    mut session: Session,
    mut conn: Conn<S>,
    plain_startup: Option<bytes::Bytes>,
) -> Result<(), SessionError> {
    // Without TLS the startup message was read already; after TLS it comes now.
    let tls = plain_startup.is_none();
    let (code, body) = match plain_startup {
        Some(body) => (PROTOCOL_3, body),
        None => read_startup(&mut conn, &session).await?,
    };
    if code != PROTOCOL_3 {
        return Err(SessionError::Protocol(format!("startup code {code}")));
    }
    session.handshake_done();
    let params = parse_parameters(&body);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let user = get("user").unwrap_or_default();
    let mut extra = Map::new();
    extra.insert("username".to_owned(), Value::String(user.clone()));
    conn.write_all(&message_bytes(b'R', &3u32.to_be_bytes()), &session)
        .await?;
    let head = conn.read_exact(5, &session).await?;
    let len = match head.split_first() {
        Some((b'p', length)) => length
            .try_into()
            .ok()
            .and_then(|length: [u8; 4]| body_length(length, 4)),
        _ => None,
    };
    let Some(len) = len else {
        session.data(&head).await;
        return Err(SessionError::Protocol(
            "invalid password message".to_owned(),
        ));
    };
    let password = conn.read_exact(len, &session).await?;
    let password = password.strip_suffix(&[0]).unwrap_or(&password);
    extra.insert("password".to_owned(), Value::String(lossy(password)));
    for key in ["database", "application_name", "client_encoding"] {
        if let Some(v) = get(key) {
            extra.insert(key.to_owned(), Value::String(v));
        }
    }
    extra.insert("tls".to_owned(), Value::Bool(tls));
    extra.insert(
        "server_version".to_owned(),
        Value::String(pg.version.clone()),
    );
    session.login(&[], extra).await;
    let message = format!(
        "password authentication failed for user \"{}\"",
        user.chars().take(64).collect::<String>()
    );
    conn.write_all(
        &error_response("28P01", &message, "auth.c", "323", "auth_failed"),
        &session,
    )
    .await?;
    conn.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{MAX_STARTUP, body_length, error_response, parse_parameters};

    #[test]
    fn int32_lengths_are_refused_when_negative_short_or_huge() {
        let be = |n: i32| n.to_be_bytes();
        assert_eq!(body_length(be(8), 8), Some(0));
        assert_eq!(body_length(be(4), 4), Some(0));
        assert_eq!(body_length(be(100), 8), Some(92));
        let max = i32::try_from(MAX_STARTUP).unwrap();
        assert_eq!(body_length(be(max), 8), Some(MAX_STARTUP - 8));
        for bad in [max + 1, i32::MAX, -1, i32::MIN, 0, 7] {
            assert_eq!(body_length(be(bad), 8), None, "{bad}");
        }
        assert_eq!(body_length(be(3), 4), None);
    }

    #[test]
    fn parameters_parse_and_stop_at_the_terminator() {
        let p = parse_parameters(b"user\0bob\0database\0db\0\0junk");
        assert_eq!(
            p,
            vec![
                ("user".to_owned(), "bob".to_owned()),
                ("database".to_owned(), "db".to_owned())
            ]
        );
        assert!(parse_parameters(b"").is_empty());
        assert!(parse_parameters(b"user").is_empty());
    }

    #[test]
    fn unsupported_protocol_answer_matches_nmap() {
        let e = error_response(
            "0A000",
            "unsupported frontend protocol 65363.19778: server supports 3.0 to 3.0",
            "postmaster.c",
            "2188",
            "ProcessStartupPacket",
        );
        assert_eq!(e[0], b'E');
        let text = String::from_utf8_lossy(&e);
        assert!(text.contains("\0VFATAL\0C0A000\0Munsupported frontend protocol 65363"));
    }
}
