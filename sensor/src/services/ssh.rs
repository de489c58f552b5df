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
//! directory. Logins succeed only for the configured `users`, and then no channel opens.

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
    MethodKind, MethodSet, Preferred, SshId, cipher, compression, kex,
    keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, ssh_key::LineEnding},
    mac,
    server::{Auth, Config, Handler as RusshHandler, PublicKeyOffer},
};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    Context, ServiceError,
    config::SshConfig,
    listen::Handler,
    session::{Session, SessionError},
    tls::write_private,
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
struct Ssh {
    config: Arc<Config>,
    users: BTreeMap<String, String>,
    banner: Option<String>,
}

/// The session handler for one SSH instance.
///
/// # Errors
/// [`ServiceError::Setup`] when the host keys cannot be loaded or generated.
pub fn handler(config: &SshConfig, ctx: &Context) -> Result<Handler, ServiceError> {
    let keys = host_keys(&ctx.state_dir(), config.port).map_err(|message| ServiceError::Setup {
        service: "ssh",
        port: config.port,
        message,
    })?;
    let version = config
        .version
        .clone()
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
    let ssh = Arc::new(Ssh {
        config: Arc::new(russh_config),
        users: config.users.clone(),
        banner: config.banner.clone().filter(|b| !b.is_empty()),
    });
    Ok(Arc::new(move |session, stream| {
        let ssh = Arc::clone(&ssh);
        Box::pin(async move { serve(&ssh, session, stream).await })
    }))
}

async fn serve(
    ssh: &Ssh,
    session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let client_id = Arc::new(Mutex::new(Vec::new()));
    let authenticating = Arc::new(AtomicBool::new(false));
    let handshake = session.limits().handshake_timeout();
    let handler = SshSession {
        session: Arc::new(session),
        users: ssh.users.clone(),
        banner: ssh.banner.clone(),
        client_id: Arc::clone(&client_id),
        authenticating: Arc::clone(&authenticating),
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
}
