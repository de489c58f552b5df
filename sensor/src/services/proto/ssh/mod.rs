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
//!    (after `auth_failure_delay_ms`, 2 s as Debian's PAM gives)
//! S: Permission denied, please try again.     (up to MaxAuthTries 6 per connection)
//! ```
//! `nmap -sV` reports `OpenSSH 9.2p1 Debian 2+deb12u7` (from the identification string).
//!
//! Algorithm lists follow OpenSSH 9.2p1's defaults in OpenSSH's order, minus what russh does not
//! implement (`sntrup761x25519-sha512@openssh.com` and the `umac-*` MACs); host keys (RSA 3072,
//! ECDSA P-256, Ed25519, as `ssh-keygen -A` makes them) are generated once and kept in the state
//! directory. Logins succeed only for the configured `users`; they get a Debian-like shell
//! (or `exec`) where every command is logged as `ssh.query` and answered as a fresh Debian
//! system would answer (see [`shell`]); `direct-tcpip` (`ssh -W`, `-L`) is logged with its
//! target and refused as sshd refuses it with forwarding disabled. The same users get the
//! `sftp` subsystem and `scp -t`/`scp -f` over the shell's file system ([`transfer`]):
//! every upload is an `ssh.upload` event (path, size, SHA-256) and its content is kept in
//! `<state_dir>/ssh-uploads/<sha256>` (0600) up to `upload_max_bytes` a file and
//! `upload_store_bytes` in all.
//!
//! The client's identification is read and judged before russh sees it ([`ident`]), so bad
//! ones get sshd's one-line answers. Connections that do not log in within
//! `login_grace_time_secs` (sshd's `LoginGraceTime`, 120 s) are closed.
//!
//! Known differences from OpenSSH 9.2p1 that russh 0.65 does not let us close: no
//! `sntrup761x25519-sha512@openssh.com` KEX and no `umac-*` MACs (so HASSH-server differs),
//! `server-sig-algs` repeats the 4 host-key algorithms where sshd lists 11, identifications
//! longer than 253 bytes (sshd takes 8192) are closed after being read, `SSH-2.x` with `x != 0`
//! is refused, and a refused channel says `Administratively prohibited` where sshd says
//! `open failed`.

pub mod ident;
mod keys;
mod session;
pub mod shell;
pub mod transfer;

use std::{
    borrow::Cow,
    collections::BTreeMap,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use russh::{MethodKind, MethodSet, Preferred, SshId, server::Config};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::services::{
    Context, ServiceError,
    framework::{
        session::{Session, SessionError, lossy},
        tcp::{Handler, TcpProtocol},
    },
};

use self::{
    ident::Verdict,
    keys::{CIPHERS, COMPRESSION, KEX, MACS, host_key_algorithms, host_keys},
    session::SshSession,
    transfer::store::UploadStore,
};

const DEFAULT_VERSION: &str = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7";
/// OpenSSH's `MaxAuthTries`.
const MAX_AUTH_TRIES: usize = 6;
/// Debian's `pam_unix` delay after a wrong password (`ssh` sees about 2 s).
const DEFAULT_AUTH_FAILURE_DELAY_MS: u64 = 2_000;
/// sshd's `LoginGraceTime`.
const DEFAULT_LOGIN_GRACE_TIME_SECS: u64 = 120;
/// Largest upload kept (bytes).
const DEFAULT_UPLOAD_MAX_BYTES: usize = 16 << 20;
/// Bytes the upload store holds in all.
const DEFAULT_UPLOAD_STORE_BYTES: u64 = 256 << 20;

#[derive(Debug)]
struct SshServer {
    config: Arc<Config>,
    version: String,
    users: BTreeMap<String, String>,
    banner: Option<String>,
    hostname: String,
    auth_failure_delay: Duration,
    login_grace_time: Duration,
    store: Arc<UploadStore>,
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
    /// Delay before a wrong password is refused, in milliseconds (default 2000, as Debian's
    /// PAM gives).
    #[serde(default)]
    pub auth_failure_delay_ms: Option<u64>,
    /// Seconds a connection has to log in before it is closed (sshd's `LoginGraceTime`,
    /// default 120).
    #[serde(default)]
    pub login_grace_time_secs: Option<u64>,
    /// Largest upload (SFTP, SCP) whose content is kept, in bytes (default 16 MiB; larger
    /// ones are still hashed and reported; 0 keeps none).
    #[serde(default)]
    pub upload_max_bytes: Option<usize>,
    /// Bytes the kept uploads may take in the state directory in all (default 256 MiB).
    #[serde(default)]
    pub upload_store_bytes: Option<u64>,
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
    let login_grace_time = Duration::from_secs(
        config
            .login_grace_time_secs
            .unwrap_or(DEFAULT_LOGIN_GRACE_TIME_SECS),
    );
    let russh_config = Config {
        server_id: SshId::Standard(Cow::Owned(version.clone())),
        methods,
        // Only wrong passwords wait (in the handler), as with sshd and PAM: refused keys and
        // the first `none` probe are answered at once.
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys,
        // russh counts the `none` probe OpenSSH clients send first; sshd does not.
        max_auth_attempts: MAX_AUTH_TRIES.saturating_add(1),
        inactivity_timeout: Some(ctx.limits.idle_timeout().max(login_grace_time)),
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
        version,
        users: config.users,
        banner: config.banner.filter(|b| !b.is_empty()),
        hostname: ctx.hostname.clone(),
        auth_failure_delay: Duration::from_millis(
            config
                .auth_failure_delay_ms
                .unwrap_or(DEFAULT_AUTH_FAILURE_DELAY_MS),
        ),
        login_grace_time,
        store: Arc::new(UploadStore::new(
            &ctx.state_dir(),
            config.upload_max_bytes.unwrap_or(DEFAULT_UPLOAD_MAX_BYTES),
            config
                .upload_store_bytes
                .unwrap_or(DEFAULT_UPLOAD_STORE_BYTES),
        )),
    });
    Ok(Arc::new(move |session, stream| {
        let ssh = Arc::clone(&ssh);
        Box::pin(async move { serve(&ssh, session, stream).await })
    }))
}

async fn serve(
    ssh: &SshServer,
    session: Session,
    mut stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let grace = tokio::time::Instant::now() + ssh.login_grace_time;
    // sshd sends its identification first, then reads the client's.
    let id_line = format!("{}\r\n", ssh.version);
    stream.write_all(id_line.as_bytes()).await?;
    let verdict = tokio::time::timeout_at(grace, ident::read(&mut stream))
        .await
        .map_err(|_| SessionError::HandshakeTimeout)??;
    let raw = match verdict {
        Verdict::Accept { raw, .. } => raw,
        Verdict::Reject { line, answer } => {
            identification_refused(&session, &line, answer).await;
            stream.write_all(answer).await?;
            return Ok(());
        }
        Verdict::TooLongForRussh(line) => {
            identification_refused(&session, &line, b"").await;
            return Ok(());
        }
        Verdict::Closed(line) => {
            if !line.is_empty() {
                session.data(&line).await;
            }
            return Ok(());
        }
    };
    let client_version = raw
        .strip_suffix(b"\n")
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .unwrap_or(&raw);
    let authenticated = Arc::new(AtomicBool::new(false));
    let handler = SshSession::new(
        Arc::new(session),
        ssh.users.clone(),
        ssh.banner.clone(),
        lossy(client_version),
        ssh.hostname.clone(),
        ssh.auth_failure_delay,
        Arc::clone(&authenticated),
        Arc::clone(&ssh.store),
    );
    let tap = Tap {
        inner: stream,
        replay: raw,
        replayed: 0,
        swallow: id_line.len(),
    };
    let run = async move {
        let running = russh::server::run_stream(Arc::clone(&ssh.config), tap, handler).await?;
        running.await
    };
    tokio::pin!(run);
    // Until someone logs in, sshd's LoginGraceTime applies.
    let first = tokio::select! {
        result = &mut run => Some(result),
        () = tokio::time::sleep_until(grace) => None,
    };
    let result = match first {
        Some(result) => result,
        None if !authenticated.load(Ordering::Relaxed) => {
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

/// Logs a refused identification as `ssh.query` (`identification`, `answer`).
async fn identification_refused(session: &Session, line: &[u8], answer: &[u8]) {
    let mut extra = Map::new();
    extra.insert(
        "identification".to_owned(),
        Value::String(lossy(line.get(..256).unwrap_or(line))),
    );
    extra.insert(
        "answer".to_owned(),
        Value::String(lossy(answer).trim_end().to_owned()),
    );
    session.query(line, extra).await;
}

/// The stream russh runs on: replays the identification already read, and drops russh's own
/// identification (already sent).
struct Tap<S> {
    inner: S,
    replay: Vec<u8>,
    replayed: usize,
    swallow: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.replay.get(this.replayed..)
            && !rest.is_empty()
        {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.replayed = this.replayed.saturating_add(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.swallow > 0 && !buf.is_empty() {
            let n = self.swallow.min(buf.len());
            self.swallow = self.swallow.saturating_sub(n);
            return Poll::Ready(Ok(n));
        }
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
