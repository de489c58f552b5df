//! The client sessions of the service benchmarks (`servicebench`, `trapsterbench`): one full
//! session per call (connect, log in or request, close), each read bounded by the session's
//! 10 s timeout.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// The services both benchmarks drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// USER, PASS, QUIT.
    Ftp,
    /// A user name and a password at the prompts.
    Telnet,
    /// A password login (russh).
    Ssh,
    /// `GET /`.
    Http,
    /// `GET /` over TLS.
    Https,
    /// A `mysql_native_password` handshake response.
    Mysql,
    /// A startup message and a cleartext password.
    Postgres,
}

impl Kind {
    /// Every kind, in port order.
    pub const ALL: [Self; 7] = [
        Self::Ftp,
        Self::Telnet,
        Self::Ssh,
        Self::Http,
        Self::Https,
        Self::Mysql,
        Self::Postgres,
    ];

    /// The service name in the configuration.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ftp => "ftp",
            Self::Telnet => "telnet",
            Self::Ssh => "ssh",
            Self::Http => "http",
            Self::Https => "https",
            Self::Mysql => "mysql",
            Self::Postgres => "postgres",
        }
    }

    /// The event that proves a session was fully logged.
    #[must_use]
    pub const fn logged(self) -> &'static str {
        match self {
            Self::Http | Self::Https => "query",
            _ => "login",
        }
    }
}

/// The port of `kind` counted from `base`.
#[must_use]
pub fn port_of(base: u16, kind: Kind) -> u16 {
    base + Kind::ALL
        .iter()
        .position(|k| *k == kind)
        .map_or(0, |i| i as u16)
}

struct SshClient;

impl russh::client::Handler for SshClient {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Reads until the peer closes; the bytes read.
async fn read_to_end(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total = total.saturating_add(n);
    }
    total
}

async fn read_some(s: &mut TcpStream) -> usize {
    let mut buf = [0u8; 4096];
    s.read(&mut buf).await.unwrap_or(0)
}

/// One PostgreSQL backend message (type, body), bounded to 64 KiB.
async fn read_pg_message(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.ok()?;
    let [kind, a, b, c, d] = head;
    let len = usize::try_from(u32::from_be_bytes([a, b, c, d])).ok()?;
    let mut body = vec![0u8; len.checked_sub(4).filter(|n| *n <= 65_536)?];
    s.read_exact(&mut body).await.ok()?;
    Some((kind, body))
}

/// A frontend message: type, length, body.
fn pg_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The server's verdict on the password: an ErrorResponse (`E`, what a wrong password gets) or
/// AuthenticationOk (`R` 0), skipping any SCRAM `R` final and notices; false on a close first.
async fn postgres_verdict(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> bool {
    for _ in 0..8 {
        match read_pg_message(s).await {
            Some((b'E', _)) => return true,
            Some((b'R', body)) if body.get(..4) == Some(&[0, 0, 0, 0]) => return true,
            Some(_) => {}
            None => return false,
        }
    }
    false
}

/// A login as `psql` (`sslmode=prefer`) makes it: SSLRequest, TLS when the server offers it,
/// then [`postgres_startup`]; true when the server gave its verdict on the password
/// ([`postgres_verdict`]).
async fn postgres_login(mut s: TcpStream, tls: &tokio_rustls::TlsConnector) -> bool {
    if s.write_all(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])
        .await
        .is_err()
    {
        return false;
    }
    let mut answer = [0u8; 1];
    if s.read_exact(&mut answer).await.is_err() {
        return false;
    }
    match answer {
        [b'S'] => {
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            match tls.connect(name, s).await {
                Ok(mut t) => postgres_startup(&mut t).await && postgres_verdict(&mut t).await,
                Err(_) => false,
            }
        }
        [b'N'] => postgres_startup(&mut s).await && postgres_verdict(&mut s).await,
        _ => false,
    }
}

/// StartupMessage, then the password in whatever form the server asks (cleartext, MD5 or
/// SCRAM-SHA-256 with a proof from a wrong password), so each side logs one `postgres.login`;
/// true when the password was sent.
async fn postgres_startup(
    s: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
) -> bool {
    let body = b"\x00\x03\x00\x00user\0bench\0database\0db\0\0";
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend_from_slice(body);
    if s.write_all(&m).await.is_err() {
        return false;
    }
    let Some((b'R', auth)) = read_pg_message(s).await else {
        return false;
    };
    match auth.get(..4) {
        Some([0, 0, 0, 3]) => s.write_all(&pg_message(b'p', b"bench\0")).await.is_ok(),
        Some([0, 0, 0, 5]) => s
            .write_all(&pg_message(b'p', b"md5a3556571e93b0d20722ba62be61e8c2d\0"))
            .await
            .is_ok(),
        Some([0, 0, 0, 10]) => {
            let first = b"n,,n=,r=benchbenchbenchbenchbench";
            let mut init = b"SCRAM-SHA-256\0".to_vec();
            init.extend_from_slice(&(first.len() as u32).to_be_bytes());
            init.extend_from_slice(first);
            if s.write_all(&pg_message(b'p', &init)).await.is_err() {
                return false;
            }
            let Some((b'R', server_first)) = read_pg_message(s).await else {
                return false;
            };
            let text = String::from_utf8_lossy(server_first.get(4..).unwrap_or_default());
            let Some(nonce) = text.split(',').find_map(|part| part.strip_prefix("r=")) else {
                return false;
            };
            let last = format!("c=biws,r={nonce},p=QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=");
            s.write_all(&pg_message(b'p', last.as_bytes()))
                .await
                .is_ok()
        }
        _ => false,
    }
}

fn mysql_response() -> Vec<u8> {
    let mut p = Vec::new();
    let caps: u32 = (1 << 9) | (1 << 15) | (1 << 19);
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&[0; 28]);
    p.extend_from_slice(b"root\0\x14");
    p.extend_from_slice(&[7u8; 20]);
    p.extend_from_slice(b"mysql_native_password\0");
    let mut out = vec![p.len() as u8, 0, 0, 1];
    out.extend_from_slice(&p);
    out
}

/// One MySQL packet (sequence number, payload), bounded to 64 KiB.
async fn read_mysql_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.ok()?;
    let [a, b, c, seq] = head;
    let len = usize::try_from(u32::from_le_bytes([a, b, c, 0]))
        .ok()
        .filter(|n| *n <= 65_536)?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some((seq, body))
}

/// The greeting, a `mysql_native_password` response, then the server's verdict: an ERR (`0xff`)
/// or OK (`0x00`) packet, after answering an auth switch (`0xfe`) with a password if one comes;
/// true when the verdict arrived.
async fn mysql_login(s: &mut TcpStream) -> bool {
    if read_mysql_packet(s).await.is_none() || s.write_all(&mysql_response()).await.is_err() {
        return false;
    }
    match read_mysql_packet(s).await {
        Some((_, body)) if matches!(body.first(), Some(0xff | 0x00)) => true,
        Some((seq, body)) if body.first() == Some(&0xfe) => {
            let mut reply = vec![6, 0, 0, seq.wrapping_add(1)];
            reply.extend_from_slice(b"bench\0");
            s.write_all(&reply).await.is_ok()
                && read_mysql_packet(s)
                    .await
                    .is_some_and(|(_, body)| matches!(body.first(), Some(0xff | 0x00)))
        }
        _ => false,
    }
}

/// One full session (at most 10 s); true when the server answered its credentials or request
/// (a connection closed at once, e.g. by a full connection cap, is not answered).
pub async fn session(kind: Kind, addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> bool {
    let run = async {
        match kind {
            Kind::Ssh => {
                let config = Arc::new(russh::client::Config::default());
                let Ok(mut handle) = russh::client::connect(config, addr, SshClient).await else {
                    return false;
                };
                let ok = handle.authenticate_password("root", "bench").await.is_ok();
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "", "en")
                    .await;
                ok
            }
            Kind::Https => {
                let Ok(s) = TcpStream::connect(addr).await else {
                    return false;
                };
                let name = rustls::pki_types::ServerName::try_from("bench").expect("name");
                let Ok(mut s) = tls.connect(name, s).await else {
                    return false;
                };
                if s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                    .await
                    .is_err()
                {
                    return false;
                }
                read_to_end(&mut s).await > 0
            }
            _ => {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    return false;
                };
                match kind {
                    Kind::Ftp => {
                        // One command per write and its reply read: Trapster reads one
                        // command per segment.
                        read_some(&mut s).await;
                        let _ = s.write_all(b"USER root\r\n").await;
                        read_some(&mut s).await;
                        let _ = s.write_all(b"PASS bench\r\n").await;
                        // Answered: the server replied to the password.
                        if read_some(&mut s).await == 0 {
                            return false;
                        }
                        let _ = s.write_all(b"QUIT\r\n").await;
                    }
                    Kind::Telnet => {
                        read_some(&mut s).await;
                        let _ = s.write_all(b"admin\r\n").await;
                        read_some(&mut s).await;
                        let _ = s.write_all(b"bench\r\n").await;
                        // One attempt is enough: close after the failure message.
                        // Answered: the failure message arrived (a closed connection is not).
                        let mut buf = [0u8; 512];
                        let mut seen = Vec::new();
                        let failed = |seen: &[u8]| {
                            seen.windows(6)
                                .any(|w| w == b"failed" || w == b"orrect" || w == b"nvalid")
                        };
                        while !failed(&seen) && seen.len() < 65_536 {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        return failed(&seen);
                    }
                    Kind::Http => {
                        let _ = s
                            .write_all(
                                b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
                            )
                            .await;
                    }
                    Kind::Mysql => return mysql_login(&mut s).await,
                    Kind::Postgres => return postgres_login(s, tls).await,
                    Kind::Ssh | Kind::Https => {}
                }
                // Answered: the last request got a reply (the FTP farewell, the HTTP response),
                // not a bare close.
                read_to_end(&mut s).await > 0
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or(false)
}

/// A TLS client that accepts any certificate (the decoys' are self-signed), HTTP/1.1 by ALPN.
#[must_use]
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(sensor::output::client::tls::AnyCertificate))
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// `clients` concurrent clients running sessions of `kind` against `addr` for `duration`:
/// the completed sessions and the seconds it took.
pub async fn load(
    kind: Kind,
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    clients: usize,
    duration: Duration,
) -> (u64, f64) {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let done = Arc::clone(&done);
            let tls = tls.clone();
            tokio::spawn(async move {
                while start.elapsed() < duration {
                    if session(kind, addr, &tls).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    (done.load(Ordering::Relaxed), start.elapsed().as_secs_f64())
}

/// Lines of the JSON-lines file `log` whose `logtype` is `logtype` (Trapster's `default`
/// format and the sensor's alike; lines that are not JSON are not counted).
#[must_use]
pub fn count_logged(log: &std::path::Path, logtype: &str) -> u64 {
    std::fs::read_to_string(log)
        .map(|text| {
            text.lines()
                .filter(|line| line.contains(logtype))
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|doc| doc["logtype"] == logtype)
                .count() as u64
        })
        .unwrap_or(0)
}
