//! SMB 2/3 as a Windows Server file server answers before anyone is let in: NEGOTIATE,
//! SESSION_SETUP with NTLM in SPNEGO, and the share a client then asks for.
//!
//! ```text
//! C: SMB2 NEGOTIATE dialects 2.0.2 .. 3.1.1 (+ preauth, encryption contexts)
//! S: NEGOTIATE 3.1.1, signing enabled (not required), server GUID, SPNEGO [NTLMSSP]
//! C: SESSION_SETUP SPNEGO(NTLM NEGOTIATE)
//! S: STATUS_MORE_PROCESSING_REQUIRED, SPNEGO(CHALLENGE: CORP, SRV01, corp.local, 10.0.17763)
//! C: SESSION_SETUP SPNEGO(AUTHENTICATE CORP\alice)
//!                                -> smb.login {"username":"alice","domain":"CORP",
//!                                   "workstation":"WKS7","ntlm_version":"NTLMv2",
//!                                   "hashcat":"alice::CORP:<chal>:<proof>:<blob>", ...}
//! S: STATUS_LOGON_FAILURE
//! ```
//! A null session (anonymous NTLM) is let in as Windows lets it into `IPC$`'s door
//! (`accept_anonymous`, default true), and so is any login with `accept_guest`; its
//! TREE_CONNECT is logged as `smb.query {"path":"\\\\srv01\\IPC$","share":"IPC$"}`, refused
//! with STATUS_ACCESS_DENIED, and the connection closed.
//!
//! An SMB1 NEGOTIATE offering `SMB 2.???` gets the SMB2 wildcard answer (dialect 0x02FF), as
//! Windows answers. One offering only SMB1 dialects is answered by [`smb1`] where the configured
//! release has SMB1 (`smb1`, default on for 2016 and older), and dropped where it does not, as
//! Windows Server 2019 with SMB1 removed drops it: `nmap -sV` then reports `microsoft-ds?` (its
//! SMB1-only probe gets no answer), with SMB1 `Microsoft Windows Server 2008 R2 - 2012
//! microsoft-ds (workgroup: CORP)` and `smb-os-discovery` the OS, names and FQDN.
//! `smb2-security-mode` reports "Message signing enabled but not required", `smb-protocols`
//! the dialects of the release (up to 3.0.2 for 2012 R2, 3.1.1 from 2016); `smb2-time`, and
//! `smbclient -L` / impacket `smbclient.py` get the NTLM challenge with the configured names.

pub mod smb1;
pub mod wire;
pub mod wire1;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests1;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use self::wire::{command, status};
use super::shared::ntlm::{self, Exchange, Identity, Kind, ProductVersion, Step, spnego};
use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError},
        tcp::{Handler, TcpProtocol},
    },
};

/// Requests served on one connection before it is closed.
const MAX_REQUESTS: usize = 64;
/// SESSION_SETUP exchanges (login attempts) on one connection.
const MAX_LOGINS: usize = 8;
/// SessionFlags: guest, null.
const SESSION_FLAG_GUEST: u16 = 0x0001;
const SESSION_FLAG_NULL: u16 = 0x0002;

/// An SMB instance.
#[derive(Debug, Clone, Deserialize)]
pub struct SmbConfig {
    /// Windows version in the NTLM challenge (`10.0.17763` or `2016`/`2019`/`2022`);
    /// default Windows Server 2019.
    #[serde(default)]
    pub version: Option<String>,
    /// Let anonymous (null) sessions in, as Windows does, so their share requests are seen;
    /// default true.
    #[serde(default)]
    pub accept_anonymous: Option<bool>,
    /// Let every login in as a guest, so its share requests are seen; default false (every
    /// login fails with STATUS_LOGON_FAILURE).
    #[serde(default)]
    pub accept_guest: Option<bool>,
    /// Answer SMB1 (NT LM 0.12) as Windows does with the feature installed; default true up to
    /// Windows Server 2016, false from 2019 (which ships without it).
    #[serde(default)]
    pub smb1: Option<bool>,
}

#[derive(Debug)]
struct SmbServer {
    identity: Arc<Identity>,
    guid: [u8; 16],
    init_token: Vec<u8>,
    accept_anonymous: bool,
    accept_guest: bool,
    /// SMB1 is answered.
    smb1: bool,
    /// The newest SMB2 dialect of the release.
    max_dialect: u16,
}

/// The SMB protocol.
#[derive(Debug)]
pub struct Smb;

impl TcpProtocol for Smb {
    type Config = SmbConfig;

    fn handler(config: SmbConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        let version = match config.version.as_deref() {
            None => ProductVersion::default(),
            Some(v) => ProductVersion::parse(v).ok_or_else(|| {
                ctx.setup_error(format!("version: {v:?} is not a Windows version"))
            })?,
        };
        let release = (version.major, version.minor, version.build);
        let server = Arc::new(SmbServer {
            identity: Arc::new(Identity::new(&ctx.hostname, &ctx.domain, version)),
            guid: *uuid::Uuid::new_v4().as_bytes(),
            init_token: spnego::server_init(&[spnego::NTLMSSP_OID]),
            accept_anonymous: config.accept_anonymous.unwrap_or(true),
            accept_guest: config.accept_guest.unwrap_or(false),
            smb1: config.smb1.unwrap_or(release < (10, 0, 17763)),
            max_dialect: wire::max_dialect(version),
        });
        Ok(Arc::new(move |session, stream| {
            let server = Arc::clone(&server);
            Box::pin(async move {
                let mut conn = Conn::new(stream, session.limits());
                let mut state = State::new(&server);
                let result = state.run(&mut conn, session).await;
                conn.shutdown().await;
                result
            })
        }))
    }
}

/// One connection's progress.
struct State<'a> {
    server: &'a SmbServer,
    dialect: Option<u16>,
    exchange: Option<Exchange>,
    session_id: u64,
    logins: usize,
    admitted: bool,
    /// What an SMB1 NEGOTIATE settled.
    smb1: Option<smb1::Smb1>,
}

/// What to do after answering a request.
enum Next {
    Continue,
    Close,
}

fn dialect_name(d: u16) -> String {
    format!("{}.{}.{}", d >> 8, (d >> 4) & 0xf, d & 0xf)
}

impl<'a> State<'a> {
    const fn new(server: &'a SmbServer) -> Self {
        Self {
            server,
            dialect: None,
            exchange: None,
            session_id: 0,
            logins: 0,
            admitted: false,
            smb1: None,
        }
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        mut session: Session,
    ) -> Result<(), SessionError> {
        for _ in 0..MAX_REQUESTS {
            let head = conn.read_exact(4, &session).await?;
            let header: [u8; 4] = head.as_ref().try_into().map_err(|_| SessionError::Closed)?;
            let (kind, len) = wire::frame_length(header);
            match kind {
                0x00 => {}
                // NetBIOS keep-alive.
                0x85 => continue,
                // A NetBIOS session request (port 139 habits): accepted, as Windows does.
                0x81 => {
                    let _called = conn
                        .read_exact(len.min(wire::MAX_MESSAGE), &session)
                        .await?;
                    conn.write_all(&[0x82, 0, 0, 0], &session).await?;
                    continue;
                }
                _ => {
                    session.data(&header).await;
                    return Err(SessionError::Protocol(format!("NetBIOS type {kind:#x}")));
                }
            }
            if !(4..=wire::MAX_MESSAGE).contains(&len) {
                session.data(&header).await;
                return Err(SessionError::Protocol(format!("message of {len} bytes")));
            }
            let msg = conn.read_exact(len, &session).await?;
            let reply = if msg.starts_with(b"\xffSMB") {
                self.smb1(&mut session, &msg).await
            } else if let Some(h) = wire::parse_header(&msg) {
                session.handshake_done();
                self.smb2(&session, &msg, &h).await
            } else {
                session.data(&msg).await;
                return Err(SessionError::Protocol("not SMB".to_owned()));
            };
            let Some((bytes, next)) = reply else {
                return Ok(());
            };
            conn.write_all(&wire::frame(&bytes), &session).await?;
            if matches!(next, Next::Close) {
                return Ok(());
            }
        }
        Ok(())
    }

    fn negotiate_bytes(
        &self,
        dialect: u16,
        req: Option<&wire::NegotiateRequest>,
        header: &wire::Header,
    ) -> Vec<u8> {
        let info = wire::ServerInfo {
            guid: self.server.guid,
            time: ntlm::filetime_now(),
            security_blob: &self.server.init_token,
            salt: rand::random(),
        };
        let mut out = wire::response_header(header, status::SUCCESS, 0, 0);
        out.extend_from_slice(&wire::negotiate_response(dialect, req, &info));
        out
    }

    fn error(header: &wire::Header, code: u32, session_id: u64) -> Vec<u8> {
        let mut out = wire::response_header(header, code, session_id, 0);
        out.extend_from_slice(&wire::ERROR_BODY);
        out
    }

    async fn smb2(
        &mut self,
        session: &Session,
        msg: &[u8],
        h: &wire::Header,
    ) -> Option<(Vec<u8>, Next)> {
        match h.command {
            command::NEGOTIATE => {
                let Some(req) = wire::parse_negotiate(msg) else {
                    session.data(msg).await;
                    return Some((Self::error(h, status::INVALID_PARAMETER, 0), Next::Close));
                };
                let Some(dialect) = wire::choose_dialect(&req.dialects, self.server.max_dialect)
                else {
                    session.data(msg).await;
                    return Some((Self::error(h, status::NOT_SUPPORTED, 0), Next::Close));
                };
                self.dialect = Some(dialect);
                Some((self.negotiate_bytes(dialect, Some(&req), h), Next::Continue))
            }
            command::SESSION_SETUP => Some(self.session_setup(session, msg, h).await),
            command::TREE_CONNECT => {
                if !self.admitted || h.session_id != self.session_id {
                    return Some((
                        Self::error(h, status::USER_SESSION_DELETED, h.session_id),
                        Next::Close,
                    ));
                }
                let path = wire::tree_connect_path(msg).unwrap_or_default();
                let share = path.rsplit('\\').next().unwrap_or_default().to_owned();
                let mut extra = serde_json::Map::new();
                extra.insert("path".to_owned(), Value::String(path));
                extra.insert("share".to_owned(), Value::String(share));
                session.query(msg, extra).await;
                Some((
                    Self::error(h, status::ACCESS_DENIED, self.session_id),
                    Next::Close,
                ))
            }
            command::LOGOFF | command::ECHO => {
                let mut out = wire::response_header(h, status::SUCCESS, h.session_id, 0);
                out.extend_from_slice(&[4, 0, 0, 0]);
                let next = if h.command == command::LOGOFF {
                    Next::Close
                } else {
                    Next::Continue
                };
                Some((out, next))
            }
            _ => {
                session.data(msg).await;
                Some((
                    Self::error(h, status::ACCESS_DENIED, h.session_id),
                    Next::Close,
                ))
            }
        }
    }

    async fn session_setup(
        &mut self,
        session: &Session,
        msg: &[u8],
        h: &wire::Header,
    ) -> (Vec<u8>, Next) {
        if self.dialect.is_none() {
            session.data(msg).await;
            return (Self::error(h, status::INVALID_PARAMETER, 0), Next::Close);
        }
        let Some(blob) = wire::session_setup_blob(msg) else {
            session.data(msg).await;
            return (Self::error(h, status::INVALID_PARAMETER, 0), Next::Close);
        };
        if self.exchange.is_none() {
            self.logins = self.logins.saturating_add(1);
            if self.logins > MAX_LOGINS {
                return (Self::error(h, status::ACCESS_DENIED, 0), Next::Close);
            }
            self.session_id = rand::random::<u64>() & 0x0000_ffff_ffff_fff0 | 0x0000_0400_0000_0001;
            self.exchange = Some(Exchange::new(Arc::clone(&self.server.identity)));
        }
        let Some(exchange) = self.exchange.as_mut() else {
            return (Self::error(h, status::INVALID_PARAMETER, 0), Next::Close);
        };
        match exchange.step(blob) {
            Ok(Step::Reply(token)) => {
                let mut out =
                    wire::response_header(h, status::MORE_PROCESSING_REQUIRED, self.session_id, 0);
                out.extend_from_slice(&wire::session_setup_response(0, &token));
                (out, Next::Continue)
            }
            Ok(Step::Done(captured)) => {
                let mut extra = captured.extra();
                if let Some(d) = self.dialect {
                    extra.insert("dialect".to_owned(), Value::String(dialect_name(d)));
                }
                session.login(blob, extra).await;
                let anonymous = captured.kind == Kind::Anonymous;
                let admit = if anonymous {
                    self.server.accept_anonymous
                } else {
                    self.server.accept_guest
                };
                let exchange = self.exchange.take();
                if admit {
                    self.admitted = true;
                    let flags = if anonymous {
                        SESSION_FLAG_NULL
                    } else {
                        SESSION_FLAG_GUEST
                    };
                    let token = exchange.and_then(|e| e.accept()).unwrap_or_default();
                    let mut out = wire::response_header(h, status::SUCCESS, self.session_id, 0);
                    out.extend_from_slice(&wire::session_setup_response(flags, &token));
                    (out, Next::Continue)
                } else {
                    (
                        Self::error(h, status::LOGON_FAILURE, self.session_id),
                        Next::Continue,
                    )
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "SMB session setup without a usable NTLM token.");
                session.data(blob).await;
                self.exchange = None;
                (
                    Self::error(h, status::LOGON_FAILURE, self.session_id),
                    Next::Continue,
                )
            }
        }
    }
}
