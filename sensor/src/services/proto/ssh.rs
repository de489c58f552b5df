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

use std::{
    borrow::Cow,
    collections::BTreeMap,
    path::Path,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context as TaskContext, Poll},
};

use russh::{
    Channel, ChannelId, MethodKind, MethodSet, Preferred, Pty, SshId, cipher, compression, kex,
    keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, ssh_key::LineEnding},
    mac,
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
        tls::write_private,
    },
};

const DEFAULT_VERSION: &str = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7";
/// OpenSSH's `MaxAuthTries`.
const MAX_AUTH_TRIES: usize = 6;

const KEX: &[kex::Name] = &[
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::ECDH_SHA2_NISTP256,
    kex::ECDH_SHA2_NISTP384,
    kex::ECDH_SHA2_NISTP521,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G18_SHA512,
    kex::DH_G14_SHA256,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];
const CIPHERS: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_128_CTR,
    cipher::AES_192_CTR,
    cipher::AES_256_CTR,
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
];
const MACS: &[mac::Name] = &[
    mac::HMAC_SHA256_ETM,
    mac::HMAC_SHA512_ETM,
    mac::HMAC_SHA1_ETM,
    mac::HMAC_SHA256,
    mac::HMAC_SHA512,
    mac::HMAC_SHA1,
];
const COMPRESSION: &[compression::Name] = &[compression::NONE, compression::ZLIB_LEGACY];

fn host_key_algorithms() -> Vec<Algorithm> {
    vec![
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        },
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        Algorithm::Ed25519,
    ]
}

/// Loads the host keys from `dir`, generating the missing ones.
fn host_keys(dir: &Path, port: u16) -> Result<Vec<PrivateKey>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let kinds = [
        ("rsa", Algorithm::Rsa { hash: None }),
        (
            "ecdsa",
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
        ),
        ("ed25519", Algorithm::Ed25519),
    ];
    let mut keys = Vec::new();
    for (name, algorithm) in kinds {
        let path = dir.join(format!("ssh-{port}-host-{name}.key"));
        let key = if path.exists() {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            PrivateKey::from_openssh(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            let mut rng = rand::rng();
            let key = match algorithm {
                Algorithm::Rsa { .. } => {
                    let pair = russh::keys::ssh_key::private::RsaKeypair::random(&mut rng, 3072)
                        .map_err(|e| format!("generating an RSA host key: {e}"))?;
                    PrivateKey::from(pair)
                }
                other => PrivateKey::random(&mut rng, other)
                    .map_err(|e| format!("generating a {name} host key: {e}"))?,
            };
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| format!("encoding the {name} host key: {e}"))?;
            write_private(&path, text.as_bytes()).map_err(|e| e.to_string())?;
            tracing::info!(key = %path.display(), "Generated an SSH host key.");
            key
        };
        keys.push(key);
    }
    Ok(keys)
}

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
    fn prompt(&self) -> String {
        let user = self.user.as_deref().unwrap_or("root");
        let sign = if user == "root" { '#' } else { '$' };
        format!("{user}@{}:~{sign} ", self.hostname)
    }

    /// Logs a command as `ssh.query` and answers as a Debian shell would for the few commands
    /// an intruder types first; everything else is not found.
    async fn run(&self, command: &str, mode: &str) -> (String, u32) {
        let user = self.user.clone().unwrap_or_else(|| "root".to_owned());
        let mut extra = Map::new();
        extra.insert("username".to_owned(), Value::String(user.clone()));
        extra.insert("command".to_owned(), Value::String(command.to_owned()));
        extra.insert("mode".to_owned(), Value::String(mode.to_owned()));
        self.session.query(command.as_bytes(), extra).await;
        let program = command.split_whitespace().next().unwrap_or("");
        let home = if user == "root" {
            "/root".to_owned()
        } else {
            format!("/home/{user}")
        };
        let (uid, groups) = if user == "root" {
            (0, "0(root)".to_owned())
        } else {
            (1000, format!("1000({user}),27(sudo)"))
        };
        match program {
            "whoami" => (format!("{user}\n"), 0),
            "id" => (
                format!("uid={uid}({user}) gid={uid}({user}) groups={groups}\n"),
                0,
            ),
            "pwd" => (format!("{home}\n"), 0),
            "hostname" => (format!("{}\n", self.hostname), 0),
            "uname" if command.contains("-a") => (
                format!(
                    "Linux {} 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22) x86_64 GNU/Linux\n",
                    self.hostname
                ),
                0,
            ),
            "uname" => ("Linux\n".to_owned(), 0),
            "cat" => {
                let file = command.split_whitespace().nth(1).unwrap_or("");
                match file {
                    "/etc/passwd" => (
                        format!(
                            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nsys:x:3:3:sys:/dev:/usr/sbin/nologin\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nsshd:x:104:65534::/run/sshd:/usr/sbin/nologin\n{user}:x:{uid}:{uid}:{user},,,:{home}:/bin/bash\n"
                        ),
                        0,
                    ),
                    "/etc/os-release" => (
                        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n".to_owned(),
                        0,
                    ),
                    "" => (String::new(), 0),
                    other => {
                        let shown: String = other.chars().filter(|c| !c.is_control()).take(128).collect();
                        (format!("cat: {shown}: No such file or directory\n"), 1)
                    }
                }
            }
            "ls" | "cd" | "echo" | "true" | "export" | "history" | "clear" => (String::new(), 0),
            _ => {
                let shown: String = program
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(64)
                    .collect();
                (format!("-bash: {shown}: command not found\n"), 127)
            }
        }
    }
}
