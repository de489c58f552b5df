//! FTP (RFC 959, 2428, 3659) as Microsoft IIS 10 (the default), vsftpd 3.0 or ProFTPD 1.3
//! presents itself, chosen by the banner or by `product` ([`profile`]).
//!
//! ```text
//! S: 220 Microsoft FTP Service
//! C: USER admin
//! S: 331 Password required
//! C: PASS hunter2                 -> ftp.login {"username":"admin","password":"hunter2"}
//! S: 230 User logged in.          (the configured user; anyone else: 530 User cannot log in.)
//! C: EPSV
//! S: 229 Entering Extended Passive Mode (|||50123|)
//! C: STOR drop.sh                 (data connection from the client to port 50123)
//! S: 125 Data connection already open; Transfer starting.
//! S: 226 Transfer complete.       -> ftp.upload {"filename":"drop.sh","size":77,"sha256":...}
//! ```
//! `nmap -sV` reports `Microsoft ftpd` for the default banner (its probe matches
//! `^220[ -]Microsoft FTP Service\r\n`), `vsftpd` for `(vsFTPd 3.0.3)`, `ProFTPD` for a ProFTPD
//! banner; any other banner is sent as is, with vsftpd's replies.
//!
//! Every command line becomes an `ftp.data` event with its raw bytes (as Trapster does).
//! Commands are read line by line from a buffer, so a client that pipelines `USER` and `PASS`
//! in one segment is logged exactly like one that waits for each reply. After a login, data
//! connections work ([`data`]): listings of a small per-product tree ([`vfs`]) in the product's
//! format, downloads of its files, and uploads, captured (name, size, SHA-256; the first
//! `upload_keep_bytes` kept in `<state_dir>/uploads/`) and reported as `ftp.upload`. Nothing
//! uploaded is ever served back or run. A line longer than `max_line_bytes` is logged as
//! `ftp.data` (its first bytes) and ends the session. A silent client gets the product's `421`
//! when its idle timeout ends the session (IIS 120 s, vsftpd 300 s, ProFTPD 300 s before the
//! login and 600 s after).

pub mod data;
pub mod profile;
mod transfer;
pub mod vfs;

use std::{net::IpAddr, sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Semaphore;

use self::{
    data::Pending,
    profile::Product,
    transfer::{Job, TransferKind, listing, passive, transfer},
    vfs::Tree,
};
use super::shared::upload::Budget;
use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError, extra, lossy},
        tcp::{Handler, TcpProtocol},
        timeouts::Timeouts,
    },
};

const DEFAULT_BANNER: &str = "Microsoft FTP Service";
const DEFAULT_KEEP: u64 = 1024 * 1024;
const DEFAULT_MAX_UPLOAD: u64 = 64 * 1024 * 1024;
const DEFAULT_STORE: u64 = 64 * 1024 * 1024;
const DEFAULT_MAX_PASSIVE: usize = 64;

/// The FTP instance's settings, resolved.
#[derive(Debug)]
struct FtpServer {
    banner: String,
    product: Product,
    username: Option<String>,
    password: Option<String>,
    hostname: String,
    state_dir: std::path::PathBuf,
    keep: u64,
    max_upload: u64,
    budget: Budget,
    passive: Arc<Semaphore>,
    data_timeout: Duration,
}

/// An FTP instance.
#[derive(Debug, Clone, Deserialize)]
pub struct FtpConfig {
    /// Greeting after `220 `; default `Microsoft FTP Service`.
    #[serde(default)]
    pub banner: Option<String>,
    /// The server imitated: `iis`, `vsftpd` or `proftpd`; by default read from the banner.
    #[serde(default)]
    pub product: Option<String>,
    /// Accepted user (Trapster `username`); when null every login fails.
    #[serde(default)]
    pub username: Option<String>,
    /// Accepted password.
    #[serde(default)]
    pub password: Option<String>,
    /// Bytes of each upload kept in the state directory (default 1 MiB; 0 keeps none).
    #[serde(default)]
    pub upload_keep_bytes: Option<u64>,
    /// Bytes of one upload read (counted and hashed) before it is cut (default 64 MiB).
    #[serde(default)]
    pub max_upload_bytes: Option<u64>,
    /// Bytes all uploads of the instance may keep on disk while it runs (default 64 MiB).
    #[serde(default)]
    pub upload_store_bytes: Option<u64>,
    /// Passive listeners the instance keeps open at once (default 64).
    #[serde(default)]
    pub max_passive: Option<usize>,
    /// Seconds a data connection may take to open or to move a byte (default the product's:
    /// IIS 30, vsftpd and ProFTPD 60).
    #[serde(default)]
    pub data_timeout_secs: Option<u64>,
}

impl FtpConfig {
    fn product(&self) -> Product {
        Product::detect(
            self.product.as_deref(),
            self.banner.as_deref().unwrap_or(DEFAULT_BANNER),
        )
    }
}

/// The FTP protocol.
#[derive(Debug)]
pub struct Ftp;

impl TcpProtocol for Ftp {
    type Config = FtpConfig;

    /// The product's control-connection timeouts: the login phase and after it.
    fn timeouts(config: &FtpConfig) -> Option<Timeouts> {
        let product = config.product();
        Some(Timeouts::secs(
            product.idle_secs(false),
            product.idle_secs(true),
        ))
    }

    fn handler(config: FtpConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        let product = config.product();
        let ftp = Arc::new(FtpServer {
            banner: config.banner.unwrap_or_else(|| DEFAULT_BANNER.to_owned()),
            product,
            username: config.username,
            password: config.password,
            hostname: ctx.hostname.clone(),
            state_dir: ctx.state_dir(),
            keep: config.upload_keep_bytes.unwrap_or(DEFAULT_KEEP),
            max_upload: config.max_upload_bytes.unwrap_or(DEFAULT_MAX_UPLOAD),
            budget: Budget::new(config.upload_store_bytes.unwrap_or(DEFAULT_STORE)),
            passive: Arc::new(Semaphore::new(
                config.max_passive.unwrap_or(DEFAULT_MAX_PASSIVE),
            )),
            data_timeout: Duration::from_secs(
                config
                    .data_timeout_secs
                    .unwrap_or_else(|| product.data_secs())
                    .max(1),
            ),
        });
        Ok(Arc::new(move |session, stream| {
            let ftp = Arc::clone(&ftp);
            Box::pin(async move { serve(&ftp, session, stream).await })
        }))
    }
}

/// One control connection's state.
#[derive(Debug)]
struct State {
    user: Option<String>,
    logged_in: Option<String>,
    cwd: String,
    binary: bool,
    rest: u64,
    pending: Option<Pending>,
    tree: Tree,
    local: IpAddr,
    peer: IpAddr,
}

/// What a command asks the loop to do after its reply.
enum Next {
    Reply(String),
    Quit,
    Transfer(Job),
}

async fn serve(
    ftp: &FtpServer,
    mut session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let local = stream
        .local_addr()
        .map_or(session.identity().dst_ip, |a| a.ip());
    let peer = stream
        .peer_addr()
        .map_or(session.identity().src_ip, |a| a.ip());
    let mut conn = Conn::new(stream, session.limits());
    conn.write_all(format!("220 {}\r\n", ftp.banner).as_bytes(), &session)
        .await?;
    let mut st = State {
        user: None,
        logged_in: None,
        cwd: "/".to_owned(),
        binary: false,
        rest: 0,
        pending: None,
        tree: Tree::for_product(ftp.product, &ftp.hostname),
        local,
        peer,
    };
    loop {
        let line = match conn.read_line(&session).await {
            Err(SessionError::LineTooLong(max)) => {
                // What came of the overlong line is logged; the session ends.
                session.data(conn.buffered()).await;
                return Err(SessionError::LineTooLong(max));
            }
            Err(err) if err.is_timeout() => {
                let limits = session.limits();
                let secs = match err {
                    SessionError::HandshakeTimeout => limits.handshake_timeout(),
                    _ => limits.idle_timeout(),
                }
                .as_secs();
                let bye = ftp.product.timeout(secs, st.logged_in.is_some());
                let _ignored = conn.write_all(bye.as_bytes(), &session).await;
                conn.shutdown().await;
                return Err(err);
            }
            other => other?,
        };
        // IIS and vsftpd time every read out alike; ProFTPD gives the login phase its own
        // limit (`TimeoutLogin`), lifted by a successful login.
        if ftp.product != Product::Proftpd {
            session.handshake_done();
        }
        session.data(&line).await;
        if st
            .pending
            .as_ref()
            .is_some_and(|p| p.expired(ftp.data_timeout))
        {
            st.pending = None;
        }
        let text = lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
        let verb = verb.to_ascii_uppercase();
        match command(ftp, &mut session, &mut st, &verb, arg, text).await {
            Next::Reply(reply) => conn.write_all(reply.as_bytes(), &session).await?,
            Next::Quit => {
                conn.write_all(ftp.product.goodbye().as_bytes(), &session)
                    .await?;
                conn.shutdown().await;
                return Ok(());
            }
            Next::Transfer(job) => transfer(ftp, &session, &mut conn, &mut st, job).await?,
        }
    }
}

/// Answers one command.
async fn command(
    ftp: &FtpServer,
    session: &mut Session,
    st: &mut State,
    verb: &str,
    arg: &str,
    text: &str,
) -> Next {
    let p = ftp.product;
    let reply = |s: &str| Next::Reply(s.to_owned());
    match verb {
        "USER" => {
            st.user = Some(arg.to_owned());
            st.logged_in = None;
            return Next::Reply(p.user(arg));
        }
        "PASS" => {
            let Some(name) = st.user.take() else {
                return reply(p.pass_first());
            };
            session
                .login(
                    &[],
                    extra([
                        ("username", Value::String(name.clone())),
                        ("password", Value::String(arg.to_owned())),
                    ]),
                )
                .await;
            let ok = ftp.username.as_deref() == Some(name.as_str())
                && ftp.password.as_deref() == Some(arg);
            if ok {
                session.handshake_done();
                let answer = p.logged_in(&name);
                st.logged_in = Some(name);
                return Next::Reply(answer);
            }
            if p == Product::Vsftpd {
                // vsftpd's `delay_failed_login`.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            return reply(p.login_failed());
        }
        "QUIT" => return Next::Quit,
        "AUTH" => return reply(p.no_tls()),
        "FEAT" => return reply(p.feat()),
        "OPTS" if arg.to_ascii_uppercase().starts_with("UTF8") => return reply(p.utf8()),
        "SYST" | "NOOP" | "HELP" if p != Product::Vsftpd || st.logged_in.is_some() => {
            return reply(match verb {
                "SYST" => p.syst(),
                "NOOP" => p.noop(),
                _ => p.help(),
            });
        }
        _ if st.logged_in.is_none() => return reply(p.login_first()),
        _ => {}
    }
    match verb {
        "PWD" | "XPWD" => Next::Reply(p.pwd(&st.cwd)),
        "CWD" | "XCWD" | "CDUP" | "XCUP" => {
            let target = if verb.ends_with("UP") { ".." } else { arg };
            let path = Tree::resolve(&st.cwd, target);
            match st.tree.get(&path, p) {
                Some(node) if node.is_dir() => {
                    st.cwd = node.path.clone();
                    reply(p.cwd_ok())
                }
                _ => Next::Reply(p.cwd_failed(arg)),
            }
        }
        "TYPE" => match arg.trim().to_ascii_uppercase().as_str() {
            "I" | "L 8" => {
                st.binary = true;
                Next::Reply(p.type_set(true))
            }
            "A" | "A N" => {
                st.binary = false;
                Next::Reply(p.type_set(false))
            }
            _ => reply(p.bad_argument()),
        },
        "MODE" if arg.eq_ignore_ascii_case("S") => reply("200 Mode set to S.\r\n"),
        "STRU" if arg.eq_ignore_ascii_case("F") => reply("200 Structure set to F.\r\n"),
        "PASV" | "EPSV" => passive(ftp, st, verb == "EPSV", arg).await,
        "PORT" | "EPRT" => {
            let extended = verb == "EPRT";
            let target = if extended {
                data::parse_eprt(arg)
            } else {
                data::parse_port(arg)
            };
            match target {
                Some(t) if data::active_allowed(t, st.peer) => {
                    st.pending = Some(Pending::Active(t));
                    Next::Reply(p.port_ok(extended))
                }
                _ => Next::Reply(p.port_refused(extended)),
            }
        }
        "REST" => match arg.trim().parse::<u64>() {
            Ok(offset) => {
                st.rest = offset;
                Next::Reply(p.rest(offset))
            }
            Err(_) => reply(p.bad_argument()),
        },
        "LIST" | "NLST" | "MLSD" if verb != "MLSD" || p.has_mlsd() => listing(ftp, st, verb, arg),
        "RETR" => {
            let path = Tree::resolve(&st.cwd, arg);
            match st.tree.get(&path, p) {
                Some(node) if !node.is_dir() && !node.uploaded => {
                    let content = node.content.clone().unwrap_or_default();
                    let from = usize::try_from(std::mem::take(&mut st.rest)).unwrap_or(usize::MAX);
                    let bytes = content.get(from..).unwrap_or_default().to_vec();
                    Next::Transfer(Job::Send {
                        what: TransferKind::Retr(node.name().to_owned(), node.size),
                        bytes,
                    })
                }
                Some(node) if node.uploaded => Next::Reply(p.denied(arg)),
                _ => Next::Reply(p.no_file(arg, verb)),
            }
        }
        "SIZE" | "MDTM" => {
            let path = Tree::resolve(&st.cwd, arg);
            match st.tree.get(&path, p) {
                Some(node) if !node.is_dir() => Next::Reply(if verb == "SIZE" {
                    format!("213 {}\r\n", node.size)
                } else {
                    format!("213 {}\r\n", node.modified.format("%Y%m%d%H%M%S"))
                }),
                _ => Next::Reply(p.no_file(arg, verb)),
            }
        }
        "STOR" | "APPE" => {
            let path = Tree::resolve(&st.cwd, arg);
            let parent_ok = st
                .tree
                .get(vfs::parent(&path), p)
                .is_some_and(vfs::Node::is_dir);
            let clash = st.tree.get(&path, p).is_some_and(|n| !n.uploaded);
            if arg.trim().is_empty() || !parent_ok || clash {
                return Next::Reply(p.denied(arg));
            }
            Next::Transfer(Job::Receive {
                command: if verb == "STOR" { "STOR" } else { "APPE" },
                name: arg.to_owned(),
                path,
            })
        }
        "DELE" | "MKD" | "XMKD" | "RMD" | "XRMD" | "RNFR" | "RNTO" | "SITE" | "STOU" => {
            Next::Reply(p.denied(arg))
        }
        "ABOR" => reply("225 No transfer to ABOR.\r\n"),
        _ => Next::Reply(p.unknown(text)),
    }
}
