//! Helpers shared by the tests that start real receivers: a throw-away PKI and a log capture.
#![allow(dead_code, reason = "each test file uses part of the helpers")]

pub mod ports;
pub mod redis_server;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use sensor::event::{Action, Event, Incident, IncidentAction, Service, SessionIdentity, Severity};
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Files of a test PKI: a CA and a server certificate for 127.0.0.1 and localhost.
pub struct Pki {
    /// The CA certificate (PEM), for the client's `ca_file`.
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server key (PEM, PKCS#8).
    pub key: PathBuf,
    /// A client certificate signed by the same CA (PEM).
    pub client_cert: PathBuf,
    /// Its key (PEM, PKCS#8).
    pub client_key: PathBuf,
}

impl Pki {
    /// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
    ///
    /// # Panics
    /// When the files cannot be written.
    #[must_use]
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("pki dir");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
        let client_params =
            rcgen::CertificateParams::new(vec!["sensor.test".to_owned()]).expect("client params");
        let client_key = rcgen::KeyPair::generate().expect("client key");
        let client = client_params
            .signed_by(&client_key, &ca, &ca_key)
            .expect("client cert");
        let pki = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        std::fs::write(&pki.client_cert, client.pem()).expect("write client cert");
        std::fs::write(&pki.client_key, client_key.serialize_pem()).expect("write client key");
        std::fs::write(&pki.ca, ca.pem()).expect("write ca");
        std::fs::write(&pki.cert, cert.pem()).expect("write cert");
        std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
        pki
    }

    /// A rustls server configuration with the server certificate.
    ///
    /// # Panics
    /// When the files do not load.
    #[must_use]
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .expect("cert")
            .collect::<Result<_, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_file(&self.key).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        Arc::new(config)
    }
}

/// Everything logged through `tracing`, at trace level, for secret checks.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Installs a global trace-level subscriber writing here (once per test binary).
    #[must_use]
    pub fn install() -> Self {
        let logs = Self::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .ok();
        logs
    }

    /// What was logged so far.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

/// A login event from 198.51.100.7 to SSH at `at`.
pub fn login_event_at(user: &str, at: chrono::DateTime<chrono::Utc>) -> Event {
    Event {
        id: uuid::Uuid::new_v4(),
        timestamp: at,
        session: SessionIdentity {
            src_ip: "198.51.100.7".parse().unwrap(),
            src_port: 50_000,
            dst_ip: "192.0.2.10".parse().unwrap(),
            dst_port: 22,
        },
        service: Service::Ssh,
        action: Action::Login,
        data: bytes::Bytes::new(),
        extra: serde_json::json!({"username": user, "password": "x"})
            .as_object()
            .unwrap()
            .clone()
            .into(),
    }
}

/// An `incident_created` (high, SSH login) from 198.51.100.7.
pub fn incident() -> Incident {
    Incident {
        id: uuid::Uuid::new_v4(),
        action: IncidentAction::Created,
        channel: "ssh".to_owned(),
        category: "login".to_owned(),
        description: "Login attempt on SSH".to_owned(),
        src_ip: "198.51.100.7".parse().unwrap(),
        src_port: Some(50_000),
        dst_ip: Some("192.0.2.10".parse().unwrap()),
        dst_port: Some(22),
        start_time: chrono::Utc::now(),
        end_time: chrono::Utc::now(),
        events_count: 3,
        acknowledged: false,
        severity: Severity::High,
        login_services: vec!["ssh".to_owned()],
    }
}

/// A login event from 198.51.100.7 to SSH, now.
pub fn login_event(user: &str) -> Event {
    login_event_at(user, chrono::Utc::now())
}

/// One HTTP/1.1 request as a test receiver read it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// When it was read.
    pub at: std::time::Instant,
    /// The request target.
    pub path: String,
    /// Header names and values, as sent.
    pub headers: Vec<(String, String)>,
    /// The body as sent (gzipped when it says so).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body, gunzipped when it says so.
    pub fn plain_body(&self) -> Vec<u8> {
        if self.header("content-encoding") == Some("gzip") {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&self.body[..]), &mut out)
                .unwrap();
            out
        } else {
            self.body.clone()
        }
    }
}

/// Reads one request (head of at most 64 KiB, then `Content-Length` bytes) from a keep-alive
/// connection; `None` when the client closed it.
pub async fn read_http_request<S: AsyncRead + Unpin>(s: &mut S) -> Option<HttpRequest> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some(HttpRequest {
        at: std::time::Instant::now(),
        path,
        headers,
        body,
    })
}

/// Polls `check` every 20 ms until it holds or `limit` passes; whether it held. The way to wait
/// for an outcome: never a fixed sleep followed by an assertion.
pub async fn wait_until(limit: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// [`wait_until`] for tests without a runtime: blocks the thread between polls.
pub fn wait_until_blocking(limit: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A loopback TCP port held by this test: bound (with `SO_REUSEADDR`) but not listening, so
/// connections to it are refused and no other test or program can be handed it. Turn it into
/// a listener with [`PortHold::listen`] (a receiver that comes up late), or drop it right after
/// starting a program that binds the port itself (a program's own `SO_REUSEADDR` bind succeeds
/// while this socket does not listen).
pub struct PortHold {
    socket: socket2::Socket,
    port: u16,
}

impl PortHold {
    /// Binds a kernel-chosen port on 127.0.0.1.
    ///
    /// # Panics
    /// When no socket can be bound.
    #[must_use]
    pub fn new() -> Self {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .expect("socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
        socket.bind(&any.into()).expect("bind");
        let port = socket
            .local_addr()
            .expect("local address")
            .as_socket()
            .expect("an IP socket")
            .port();
        Self { socket, port }
    }

    /// The held port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts listening on the held port (inside a Tokio runtime).
    ///
    /// # Panics
    /// When the socket cannot listen.
    #[must_use]
    pub fn listen(self) -> tokio::net::TcpListener {
        self.socket.listen(1024).expect("listen");
        self.socket.set_nonblocking(true).expect("non-blocking");
        tokio::net::TcpListener::from_std(self.socket.into()).expect("tokio listener")
    }
}

impl Default for PortHold {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether process `pid` itself has a socket bound to `port` on this host: a listening TCP
/// socket, or (`udp`) a UDP socket. Tells a started server's own listener from another
/// program's on the same port, which a successful connect cannot.
#[must_use]
pub fn process_listens(pid: u32, port: u16, udp: bool) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: std::collections::HashSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let tables: &[&str] = if udp {
        &["/proc/net/udp", "/proc/net/udp6"]
    } else {
        &["/proc/net/tcp", "/proc/net/tcp6"]
    };
    let port_hex = format!(":{port:04X}");
    tables.iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let (Some(local), Some(state), Some(inode)) =
                    (cols.get(1), cols.get(3), cols.get(9))
                else {
                    return false;
                };
                local.ends_with(&port_hex) && (udp || *state == "0A") && inodes.contains(*inode)
            })
    })
}

/// Waits (up to `limit`) until `child` serves every `(port, udp)` itself; `false` as soon as it
/// exits (a port it could not bind) or when the time is up.
pub fn wait_serving(
    child: &mut std::process::Child,
    ports: &[(u16, bool)],
    limit: std::time::Duration,
) -> bool {
    let pid = child.id();
    let mut exited = false;
    let ready = wait_until_blocking(limit, || {
        exited = !matches!(child.try_wait(), Ok(None));
        exited
            || ports
                .iter()
                .all(|(port, udp)| process_listens(pid, *port, *udp))
    });
    ready && !exited
}
