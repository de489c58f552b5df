//! SSH (russh) presenting itself as a Debian OpenSSH server.
//!
//! ```text
//! S: SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7
//! C: SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7
//!    key exchange with OpenSSH 9.2's algorithm lists, host keys rsa/ecdsa/ed25519
//! C: publickey ssh-ed25519 AAAA...  -> ssh.login {"username":"root","key_type":"ssh-ed25519",
//!                                      "public_key":"ssh-ed25519 AAAA...",
//!                                      "fingerprint":"SHA256:...","client_version":"..."}
//! C: password "toor"              -> ssh.login {"username":"root","password":"toor", ...}
//! S: Permission denied, please try again.
//! ```
//! `nmap -sV` reports `OpenSSH 9.2p1 Debian 2+deb12u7` (from the identification string).
//!
//! Algorithm lists follow OpenSSH 9.2p1's defaults in OpenSSH's order, minus what russh does not
//! implement (`sntrup761x25519-sha512@openssh.com` and the `umac-*` MACs); host keys (RSA 3072,
//! ECDSA P-256, Ed25519, as `ssh-keygen -A` makes them) are generated once and kept in the state
//! directory. Logins succeed only for the configured `users`; they get a Debian-like shell
//! (or `exec`) where every command is logged as `ssh.query` and answered as a fresh Debian
//! system would answer the first commands intruders type (`id`, `uname -a`, `whoami`, ...).

mod keys;
pub mod shell;

use std::{
    borrow::Cow,
    collections::BTreeMap,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context as TaskContext, Poll},
};

use russh::{
    Channel, ChannelId, MethodKind, MethodSet, Preferred, Pty, SshId,
    keys::HashAlg,
    server::{
        Auth, ChannelOpenHandle, Config, Handler as RusshHandler, Msg, PublicKeyOffer,
        Session as RusshSession,
    },
};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::services::{
    Context, ServiceError,
    framework::{
        session::{Session, SessionError},
        tcp::{Handler, TcpProtocol},
    },
};

use self::keys::{CIPHERS, COMPRESSION, KEX, MACS, host_key_algorithms, host_keys};

const DEFAULT_VERSION: &str = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7";
/// OpenSSH's `MaxAuthTries`.
const MAX_AUTH_TRIES: usize = 6;

#[derive(Debug)]
struct SshServer {
    config: Arc<Config>,
    users: BTreeMap<String, String>,
    banner: Option<String>,
    hostname: String,
}

/// An SSH instance.
#[derive(Debug, Clone, Deserialize)]
pub struct SshConfig {
    /// Identification string sent first; default `SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7`.
    #[serde(default)]
    pub version: Option<String>,
    /// Pre-authentication banner, if any.
    #[serde(default)]
    pub banner: Option<String>,
    /// Accepted user/password pairs (Trapster `users`); logins always fail when empty.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
}

/// The SSH protocol.
#[derive(Debug)]
pub struct Ssh;

impl TcpProtocol for Ssh {
    type Config = SshConfig;

    /// Loads the host keys, generating the missing ones (RSA 3072 takes a while: this runs on
    /// the blocking pool, never on the runtime).
    fn handler(config: SshConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        handler(config, ctx)
    }
}

fn handler(config: SshConfig, ctx: &Context) -> Result<Handler, ServiceError> {
    let keys = host_keys(&ctx.state_dir(), ctx.port).map_err(|message| ctx.setup_error(message))?;
    let version = config
        .version
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_VERSION.to_owned());
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    methods.push(MethodKind::Password);
    let russh_config = Config {
        server_id: SshId::Standard(Cow::Owned(version)),
        methods,
        auth_rejection_time: std::time::Duration::from_millis(300),
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        keys,
        max_auth_attempts: MAX_AUTH_TRIES,
        inactivity_timeout: Some(ctx.limits.idle_timeout()),
        maximum_packet_size: 32_768,
        preferred: Preferred {
            kex: Cow::Borrowed(KEX),
            key: Cow::Owned(host_key_algorithms()),
            host_key_certificates: Cow::Borrowed(&[]),
            cipher: Cow::Borrowed(CIPHERS),
            mac: Cow::Borrowed(MACS),
            compression: Cow::Borrowed(COMPRESSION),
        },
        nodelay: true,
        ..Config::default()
    };
    let ssh = Arc::new(SshServer {
        config: Arc::new(russh_config),
        users: config.users,
        banner: config.banner.filter(|b| !b.is_empty()),
        hostname: ctx.hostname.clone(),
    });
    Ok(Arc::new(move |session, stream| {
        let ssh = Arc::clone(&ssh);
        Box::pin(async move { serve(&ssh, session, stream).await })
    }))
}

async fn serve(
    ssh: &SshServer,
    session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let client_id = Arc::new(Mutex::new(Vec::new()));
    let authenticating = Arc::new(AtomicBool::new(false));
    let handshake = session.limits().handshake_timeout();
    let max_line = session.limits().max_line_bytes;
    let handler = SshSession {
        session: Arc::new(session),
        users: ssh.users.clone(),
        banner: ssh.banner.clone(),
        client_id: Arc::clone(&client_id),
        authenticating: Arc::clone(&authenticating),
        hostname: ssh.hostname.clone(),
        user: None,
        line: Vec::new(),
        max_line,
    };
    let tap = Tap {
        inner: stream,
        seen: client_id,
    };
    let run = async move {
        let running = russh::server::run_stream(Arc::clone(&ssh.config), tap, handler).await?;
        running.await
    };
    tokio::pin!(run);
    // Key exchange and the first authentication request must come within the handshake time.
    let first = tokio::select! {
        result = &mut run => Some(result),
        () = tokio::time::sleep(handshake) => None,
    };
    let result = match first {
        Some(result) => result,
        None if !authenticating.load(Ordering::Relaxed) => {
            return Err(SessionError::HandshakeTimeout);
        }
        None => run.await,
    };
    match result {
        Ok(()) => Ok(()),
        Err(russh::Error::IO(err)) => Err(SessionError::Io(err)),
        Err(russh::Error::InactivityTimeout) => Err(SessionError::IdleTimeout),
        Err(err) => Err(SessionError::Protocol(err.to_string())),
    }
}

/// Records the client's identification line as it passes through.
struct Tap<S> {
    inner: S,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) {
            let fresh = &buf.filled()[before..];
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if !seen.contains(&b'\n') && seen.len() < 255 {
                let room = 255 - seen.len();
                seen.extend_from_slice(&fresh[..fresh.len().min(room)]);
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct SshSession {
    session: Arc<Session>,
    users: BTreeMap<String, String>,
    banner: Option<String>,
    client_id: Arc<Mutex<Vec<u8>>>,
    authenticating: Arc<AtomicBool>,
    hostname: String,
    /// The configured user who logged in, once one has.
    user: Option<String>,
    /// The command line being typed in the shell.
    line: Vec<u8>,
    max_line: usize,
}

impl SshSession {
    fn base(&self, user: &str) -> Map<String, Value> {
        self.authenticating.store(true, Ordering::Relaxed);
        let mut extra = Map::new();
        extra.insert("username".to_owned(), Value::String(user.to_owned()));
        let id = self
            .client_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let line = id.split(|&b| b == b'\n').next().unwrap_or(&[]);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        extra.insert(
            "client_version".to_owned(),
            Value::String(String::from_utf8_lossy(line).into_owned()),
        );
        extra
    }
}

impl RusshHandler for SshSession {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        self.authenticating.store(true, Ordering::Relaxed);
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let mut extra = self.base(user);
        extra.insert("password".to_owned(), Value::String(password.to_owned()));
        self.session.login(&[], extra).await;
        if self.users.get(user).is_some_and(|p| p == password) {
            self.user = Some(user.to_owned());
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let key = offer.public_key;
        let mut extra = self.base(user);
        extra.insert(
            "key_type".to_owned(),
            Value::String(key.algorithm().as_str().to_owned()),
        );
        extra.insert(
            "public_key".to_owned(),
            Value::String(key.to_openssh().unwrap_or_default()),
        );
        extra.insert(
            "fingerprint".to_owned(),
            Value::String(key.fingerprint(HashAlg::Sha256).to_string()),
        );
        self.session.login(&[], extra).await;
        Ok(Auth::reject())
    }

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(self.banner.clone())
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        if self.user.is_some() {
            reply.accept().await;
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_w: u32,
        _pix_h: u32,
        _modes: &[(Pty, u32)],
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let motd = format!(
            "Linux {} 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22) x86_64\r\n\r\nThe programs included with the Debian GNU/Linux system are free software;\r\nthe exact distribution terms for each program are described in the\r\nindividual files in /usr/share/doc/*/copyright.\r\n\r\n{}",
            self.hostname,
            self.prompt()
        );
        session.data(channel, motd.into_bytes())?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let command = String::from_utf8_lossy(data).into_owned();
        let (output, status) = self.run(&command, "exec").await;
        session.data(channel, output.into_bytes())?;
        session.exit_status_request(channel, status)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        let mut echo = Vec::new();
        for &byte in data {
            match byte {
                b'\r' | b'\n' => {
                    echo.extend_from_slice(b"\r\n");
                    let command =
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    if command.trim() == "exit" || command.trim() == "logout" {
                        session.data(channel, std::mem::take(&mut echo))?;
                        session.data(channel, b"logout\r\n".to_vec())?;
                        session.exit_status_request(channel, 0)?;
                        session.eof(channel)?;
                        session.close(channel)?;
                        return Ok(());
                    }
                    if !command.trim().is_empty() {
                        let (output, _) = self.run(&command, "shell").await;
                        echo.extend_from_slice(output.replace('\n', "\r\n").as_bytes());
                    }
                    echo.extend_from_slice(self.prompt().as_bytes());
                }
                0x04 if self.line.is_empty() => {
                    session.data(channel, b"logout\r\n".to_vec())?;
                    session.exit_status_request(channel, 0)?;
                    session.eof(channel)?;
                    session.close(channel)?;
                    return Ok(());
                }
                0x7f | 0x08 if !self.line.is_empty() => {
                    self.line.pop();
                    echo.extend_from_slice(b"\x08 \x08");
                }
                0x03 => {
                    self.line.clear();
                    echo.extend_from_slice(b"^C\r\n");
                    echo.extend_from_slice(self.prompt().as_bytes());
                }
                b if b >= 0x20 && self.line.len() < self.max_line => {
                    self.line.push(b);
                    echo.push(b);
                }
                _ => {}
            }
        }
        if !echo.is_empty() {
            session.data(channel, echo)?;
        }
        Ok(())
    }
}

impl SshSession {
    fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("root")
    }

    fn prompt(&self) -> String {
        shell::prompt(self.user(), &self.hostname)
    }

    /// Logs a command as `ssh.query` and answers it as the Debian shell would.
    async fn run(&self, command: &str, mode: &str) -> (String, u32) {
        let user = self.user();
        let mut extra = Map::new();
        extra.insert("username".to_owned(), Value::String(user.to_owned()));
        extra.insert("command".to_owned(), Value::String(command.to_owned()));
        extra.insert("mode".to_owned(), Value::String(mode.to_owned()));
        self.session.query(command.as_bytes(), extra).await;
        shell::answer(command, user, &self.hostname)
    }
}
