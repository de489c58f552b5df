//! RDP as a Windows Server with Network Level Authentication answers: the X.224 connection
//! confirm choosing CredSSP, TLS, and CredSSP's NTLM exchange, up to the logon failure.
//!
//! ```text
//! C: TPKT X.224 CR "Cookie: mstshash=alice" RDP_NEG_REQ(SSL|HYBRID)
//!                                -> rdp.login {"username":"alice","password":"","source":"mstshash"}
//! S: X.224 CC RDP_NEG_RSP(HYBRID)
//! C/S: TLS handshake (certificate CN=srv01.corp.local, or `certificate`/`key`)
//! C: TSRequest negoTokens=NTLM NEGOTIATE
//! S: TSRequest negoTokens=CHALLENGE (CORP, SRV01, corp.local, 10.0.17763)
//! C: TSRequest negoTokens=AUTHENTICATE CORP\alice, pubKeyAuth
//!                                -> rdp.login {"username":"alice","domain":"CORP",
//!                                   "ntlm_version":"NTLMv2","hashcat":"alice::CORP:...",
//!                                   "source":"credssp", ...}
//! S: TSRequest errorCode=STATUS_LOGON_FAILURE
//! ```
//! A client offering TLS but not CredSSP gets TLS; its first RDP packet (MCS Connect
//! Initial, with the client's computer name) is logged as `rdp.data` and the connection closed.
//! One offering standard RDP security only gets RDP_NEG_FAILURE (HYBRID_REQUIRED_BY_SERVER).
//!
//! `nmap -sV` reports `ms-wbt-server Microsoft Terminal Services`: its TerminalServerCookie
//! probe gets the confirm Windows sends (`\x03\0\0\x13\x0e\xd0\0\0\x124\0\x02\x1f\x08\0\x02\0\0\0`);
//! `rdp-ntlm-info` reports the CHALLENGE's names and version. A client that opens with a TLS
//! ClientHello (`ssl-cert`, nmap's SSL probe) gets TLS at once and the same sequence inside,
//! so nmap reports `ssl/ms-wbt-server Microsoft Terminal Services` and the certificate.

pub mod credssp;
pub mod x224;

#[cfg(test)]
mod tests;

use std::{path::PathBuf, sync::Arc};

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use super::shared::ntlm::{Exchange, Identity, ProductVersion, Step};
use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError},
        tcp::{Handler, TcpProtocol},
        tls::{self, Subject},
    },
};

/// STATUS_LOGON_FAILURE.
const LOGON_FAILURE: u32 = 0xc000_006d;
/// TSRequests read before giving up on a client that never authenticates.
const MAX_TSREQUESTS: usize = 4;

/// An RDP instance (Trapster's keys).
#[derive(Debug, Clone, Deserialize)]
pub struct RdpConfig {
    /// Windows version in the NTLM challenge (`10.0.17763` or `2016`/`2019`/`2022`); default
    /// Windows Server 2019.
    #[serde(default)]
    pub version: Option<String>,
    /// Computer name in the NTLM challenge; default the sensor's `hostname`.
    #[serde(default)]
    pub ntlm_hostname: Option<String>,
    /// Domain in the NTLM challenge; default the sensor's `domain`.
    #[serde(default)]
    pub ntlm_domain: Option<String>,
    /// PEM private key for TLS (with `certificate`); default a generated one kept in the
    /// state directory.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// PEM certificate chain for TLS (with `key`).
    #[serde(default)]
    pub certificate: Option<PathBuf>,
}

struct RdpServer {
    identity: Arc<Identity>,
    tls: TlsAcceptor,
}

/// The RDP protocol.
#[derive(Debug)]
pub struct Rdp;

impl TcpProtocol for Rdp {
    type Config = RdpConfig;

    /// Loads the configured certificate, or generates (once) a self-signed one.
    fn handler(config: RdpConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        let version = match config.version.as_deref() {
            None => ProductVersion::default(),
            Some(v) => ProductVersion::parse(v).ok_or_else(|| {
                ctx.setup_error(format!("version: {v:?} is not a Windows version"))
            })?,
        };
        let identity = Identity::new(
            config.ntlm_hostname.as_deref().unwrap_or(&ctx.hostname),
            config.ntlm_domain.as_deref().unwrap_or(&ctx.domain),
            version,
        );
        let server = match (&config.certificate, &config.key) {
            (Some(cert), Some(key)) => tls::load(cert, key, &[]),
            (None, None) => tls::server_config(
                &ctx.state_dir(),
                &format!("rdp-{}", ctx.port),
                &Subject {
                    common_name: identity.dns_computer.clone(),
                    ..Subject::default()
                },
                &[],
            ),
            _ => {
                return Err(ctx.setup_error("certificate and key: give both or neither".to_owned()));
            }
        }
        .map_err(|err| ctx.setup_error(err.to_string()))?;
        let rdp = Arc::new(RdpServer {
            identity: Arc::new(identity),
            tls: TlsAcceptor::from(server),
        });
        Ok(Arc::new(move |session, stream| {
            let rdp = Arc::clone(&rdp);
            Box::pin(async move { serve(&rdp, session, stream).await })
        }))
    }
}

async fn serve(
    rdp: &RdpServer,
    mut session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    // A TLS ClientHello first (`nmap --script ssl-cert`, scanners that skip X.224): TLS at
    // once, then the same connection sequence inside it.
    let mut first = [0u8; 1];
    let wait = session.limits().handshake_timeout();
    match tokio::time::timeout(wait, stream.peek(&mut first)).await {
        Err(_) => return Err(SessionError::HandshakeTimeout),
        Ok(Err(err)) => return Err(SessionError::Io(err)),
        Ok(Ok(0)) => return Err(SessionError::Closed),
        Ok(Ok(_)) => {}
    }
    if first == [0x16] {
        let tls = accept_tls(rdp, &session, stream).await?;
        let mut conn = Conn::new(tls, session.limits());
        let result = match connection_sequence(&mut conn, &session).await? {
            Some((selected, cookie)) => {
                session.handshake_done();
                after_tls(rdp, &mut conn, &session, selected, cookie.as_deref()).await
            }
            None => Ok(()),
        };
        conn.shutdown().await;
        return result;
    }
    let mut conn = Conn::new(stream, session.limits());
    let Some((selected, cookie)) = connection_sequence(&mut conn, &session).await? else {
        conn.shutdown().await;
        return Ok(());
    };
    let (stream, buffered) = conn.into_parts();
    if !buffered.is_empty() {
        session.data(&buffered).await;
        return Err(SessionError::Protocol(
            "data before the TLS handshake".to_owned(),
        ));
    }
    let tls = accept_tls(rdp, &session, stream).await?;
    session.handshake_done();
    let mut conn = Conn::new(tls, session.limits());
    let result = after_tls(rdp, &mut conn, &session, selected, cookie.as_deref()).await;
    conn.shutdown().await;
    result
}

/// The X.224 request and confirm: the protocol selected and the cookie, or `None` when the
/// client is refused (standard RDP security) or sent no negotiation.
async fn connection_sequence<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
) -> Result<Option<(u32, Option<String>)>, SessionError> {
    let packet = read_tpkt(conn, session).await?;
    let Some(request) = x224::parse_request(&packet) else {
        session.data(&packet).await;
        return Err(SessionError::Protocol(
            "not an X.224 connection request".to_owned(),
        ));
    };
    if let Some(user) = &request.cookie {
        let mut extra = Map::new();
        extra.insert("username".to_owned(), Value::String(user.clone()));
        extra.insert("password".to_owned(), Value::String(String::new()));
        extra.insert("source".to_owned(), Value::String("mstshash".to_owned()));
        session.login(&packet, extra).await;
    } else {
        session.data(&packet).await;
    }
    conn.write_all(&x224::confirm(&request), session).await?;
    Ok(request
        .requested
        .and_then(x224::select)
        .map(|selected| (selected, request.cookie)))
}

/// Inside TLS: CredSSP, or the first RDP packet of a TLS-only client, logged.
async fn after_tls<S: AsyncRead + AsyncWrite + Unpin>(
    rdp: &RdpServer,
    conn: &mut Conn<S>,
    session: &Session,
    selected: u32,
    cookie: Option<&str>,
) -> Result<(), SessionError> {
    if selected == x224::protocol::HYBRID {
        credssp_exchange(rdp, conn, session, cookie).await
    } else {
        let first = read_tpkt(conn, session).await?;
        session.data(&first).await;
        Ok(())
    }
}

async fn accept_tls(
    rdp: &RdpServer,
    session: &Session,
    stream: tokio::net::TcpStream,
) -> Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, SessionError> {
    let wait = session.limits().handshake_timeout();
    match tokio::time::timeout(wait, rdp.tls.accept(stream)).await {
        Err(_) => Err(SessionError::HandshakeTimeout),
        Ok(Err(err)) => Err(SessionError::Io(err)),
        Ok(Ok(tls)) => Ok(tls),
    }
}

async fn read_tpkt<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
) -> Result<bytes::Bytes, SessionError> {
    let head = conn.read_exact(4, session).await?;
    let header: [u8; 4] = head.as_ref().try_into().map_err(|_| SessionError::Closed)?;
    let Some(len) = x224::tpkt_length(header) else {
        session.data(&header).await;
        return Err(SessionError::Protocol("not a TPKT packet".to_owned()));
    };
    let rest = conn.read_exact(len.saturating_sub(4), session).await?;
    let mut packet = head.to_vec();
    packet.extend_from_slice(&rest);
    Ok(packet.into())
}

async fn read_tsrequest<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
) -> Result<bytes::Bytes, SessionError> {
    loop {
        match credssp::der_length(conn.buffered()) {
            Ok(Some(total)) => return conn.read_exact(total, session).await,
            Ok(None) => {
                conn.fill(session).await?;
            }
            Err(()) => {
                let junk = conn.take_buffered();
                session.data(&junk).await;
                return Err(SessionError::Protocol("not a TSRequest".to_owned()));
            }
        }
    }
}

async fn credssp_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    rdp: &RdpServer,
    conn: &mut Conn<S>,
    session: &Session,
    cookie: Option<&str>,
) -> Result<(), SessionError> {
    let mut exchange = Exchange::new(Arc::clone(&rdp.identity));
    for _ in 0..MAX_TSREQUESTS {
        let der = read_tsrequest(conn, session).await?;
        let Some(request) = credssp::parse(&der) else {
            session.data(&der).await;
            return Err(SessionError::Protocol("malformed TSRequest".to_owned()));
        };
        let version = request.version.clamp(2, 6);
        let Some(token) = request.token else {
            session.data(&der).await;
            return Err(SessionError::Protocol(
                "TSRequest without a token".to_owned(),
            ));
        };
        match exchange.step(&token) {
            Ok(Step::Reply(reply)) => {
                conn.write_all(&credssp::with_token(version, &reply), session)
                    .await?;
            }
            Ok(Step::Done(captured)) => {
                let mut extra = captured.extra();
                extra.insert("source".to_owned(), Value::String("credssp".to_owned()));
                if let Some(cookie) = cookie {
                    extra.insert("cookie".to_owned(), Value::String(cookie.to_owned()));
                }
                session.login(&token, extra).await;
                if version >= 3 {
                    conn.write_all(&credssp::with_error(version, LOGON_FAILURE), session)
                        .await?;
                }
                return Ok(());
            }
            Err(err) => {
                session.data(&token).await;
                return Err(SessionError::Protocol(err.to_string()));
            }
        }
    }
    Ok(())
}
