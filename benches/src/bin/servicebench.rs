//! Emulated-service benchmark: runs the `sensor` binary (`--capture none`, events to a file)
//! with every service on loopback, then
//! 1. per service, full client sessions (connect, log in or request, close) from 32 concurrent
//!    clients for a few seconds: sessions per second, and the events that reached the file
//!    (each session must be "fully logged": its login or query event is written);
//! 2. resident memory of the sensor idle, then holding 5,000 idle connections spread over the
//!    seven services.
//!
//! `SENSOR_BIN` names the binary (default `target/release/sensor`); `--quick` shortens the runs.
//! Prints a table and writes `benches/results/services.json` (`services-quick.json`).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

const CLIENTS: usize = 32;
const IDLE_CONNECTIONS: usize = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ftp,
    Telnet,
    Ssh,
    Http,
    Https,
    Mysql,
    Postgres,
}

impl Kind {
    const ALL: [Self; 7] = [
        Self::Ftp,
        Self::Telnet,
        Self::Ssh,
        Self::Http,
        Self::Https,
        Self::Mysql,
        Self::Postgres,
    ];

    const fn name(self) -> &'static str {
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
    const fn logged(self) -> &'static str {
        match self {
            Self::Http | Self::Https => "query",
            _ => "login",
        }
    }
}

fn port_of(base: u16, kind: Kind) -> u16 {
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

async fn read_to_end(s: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn read_some(s: &mut TcpStream) -> usize {
    let mut buf = [0u8; 4096];
    s.read(&mut buf).await.unwrap_or(0)
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

/// One full session; true when it completed.
async fn session(kind: Kind, addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> bool {
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
                read_to_end(&mut s).await;
                true
            }
            _ => {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    return false;
                };
                match kind {
                    Kind::Ftp => {
                        read_some(&mut s).await;
                        let _ = s.write_all(b"USER root\r\nPASS bench\r\nQUIT\r\n").await;
                    }
                    Kind::Telnet => {
                        read_some(&mut s).await;
                        let _ = s.write_all(b"admin\r\nbench\r\n").await;
                        // One attempt is enough: close after the failure message.
                        let mut buf = [0u8; 512];
                        let mut seen = Vec::new();
                        while !seen.windows(6).any(|w| w == b"failed" || w == b"orrect") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        return true;
                    }
                    Kind::Http => {
                        let _ = s
                            .write_all(
                                b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
                            )
                            .await;
                    }
                    Kind::Mysql => {
                        read_some(&mut s).await;
                        let _ = s.write_all(&mysql_response()).await;
                        read_some(&mut s).await;
                        let _ = s.write_all(b"\x07\x00\x00\x03bench\0\0").await;
                    }
                    Kind::Postgres => {
                        let body = b"\x00\x03\x00\x00user\0bench\0database\0db\0\0";
                        let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
                        m.extend_from_slice(body);
                        let _ = s.write_all(&m).await;
                        read_some(&mut s).await;
                        let _ = s.write_all(b"p\x00\x00\x00\x0abench\0").await;
                    }
                    Kind::Ssh | Kind::Https => {}
                }
                read_to_end(&mut s).await;
                true
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or(false)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn count_events(log: &Path, logtype: &str) -> u64 {
    let needle = format!("\"logtype\":\"{logtype}\"");
    std::fs::read_to_string(log)
        .map(|t| t.lines().filter(|l| l.contains(&needle)).count() as u64)
        .unwrap_or(0)
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
        }
    }
}

struct Sensor {
    child: Child,
    log: PathBuf,
    dir: PathBuf,
}

impl Drop for Sensor {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_sensor(bin: &Path, base: u16) -> Sensor {
    let dir = std::env::temp_dir().join(format!("servicebench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("events.log");
    let services: serde_json::Map<String, serde_json::Value> = Kind::ALL
        .iter()
        .map(|k| (k.name().to_owned(), json!([{"port": port_of(base, *k)}])))
        .collect();
    let config = json!({
        "id": "bench",
        "interface": "lo",
        "services": services,
        "logger": {"output": "file", "format": "default", "kwargs": {"logfile": log}},
        "sensor": {"services": {
            "state_dir": dir.join("state"),
            // Room for the 5,000 held connections; `sensor run` refuses a cap its open-file
            // limit (plus a reserve) cannot hold.
            "max_connections": 10_000,
            "max_connections_per_source": 10_000,
            "handshake_timeout_secs": 300,
            "idle_timeout_secs": 300
        }}
    });
    let conf = dir.join("sensor.json");
    std::fs::write(&conf, config.to_string()).expect("write config");
    let child = Command::new(bin)
        .args(["run", "--capture", "none", "-c"])
        .arg(&conf)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the sensor");
    Sensor { child, log, dir }
}

async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the sensor never listened on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    raise_fd_limit();
    let bin = std::env::var_os("SENSOR_BIN")
        .map_or_else(|| PathBuf::from("target/release/sensor"), PathBuf::from);
    let base = 42_100;
    let sensor = start_sensor(&bin, base);
    for kind in Kind::ALL {
        wait_listening(SocketAddr::from(([127, 0, 0, 1], port_of(base, kind)))).await;
    }
    // The probes above are sessions too; let them be logged before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(sensor.child.id());
    let duration = Duration::from_secs(if quick { 1 } else { 4 });
    let mut tls_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .dangerous()
    // The sensor's certificate is self-signed.
    .with_custom_certificate_verifier(Arc::new(sensor::output::client::tls::AnyCertificate))
    .with_no_client_auth();
    tls_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config));

    println!("service benchmark: {CLIENTS} concurrent clients, {duration:?} per service, loopback");
    println!(
        "{:<10} {:>12} {:>12} {:>10}",
        "service", "sessions/s", "sessions", "logged"
    );
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        let addr = SocketAddr::from(([127, 0, 0, 1], port_of(base, kind)));
        let logtype = format!("{}.{}", kind.name(), kind.logged());
        let before = count_events(&sensor.log, &logtype);
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let workers: Vec<_> = (0..CLIENTS)
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
        let elapsed = start.elapsed().as_secs_f64();
        let sessions = done.load(Ordering::Relaxed);
        // Logged: wait for the file output to catch up.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut logged = count_events(&sensor.log, &logtype) - before;
        while logged < sessions && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            logged = count_events(&sensor.log, &logtype) - before;
        }
        let rate = sessions as f64 / elapsed;
        println!(
            "{:<10} {rate:>12.0} {sessions:>12} {logged:>10}",
            kind.name()
        );
        rows.push(json!({"service": kind.name(), "sessions_per_sec": rate.round(), "sessions": sessions, "logged": logged}));
    }

    // 5,000 idle connections spread over the services.
    let mut held = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let kind = Kind::ALL[i % Kind::ALL.len()];
        let addr = SocketAddr::from(([127, 0, 0, 1], port_of(base, kind)));
        match TcpStream::connect(addr).await {
            Ok(s) => held.push(s),
            Err(err) => {
                eprintln!("connection {i}: {err}");
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held_rss = rss_kib(sensor.child.id());
    let per_conn = (held_rss.saturating_sub(idle_rss)) as f64 / held.len().max(1) as f64;
    println!(
        "resident memory: {} KiB idle, {} KiB with {} idle connections held ({per_conn:.1} KiB each)",
        idle_rss,
        held_rss,
        held.len()
    );
    drop(held);
    let report = json!({
        "clients": CLIENTS,
        "seconds_per_service": duration.as_secs(),
        "services": rows,
        "rss_idle_kib": idle_rss,
        "rss_5000_idle_connections_kib": held_rss,
        "idle_connections": IDLE_CONNECTIONS,
        "kib_per_idle_connection": (per_conn * 10.0).round() / 10.0,
    });
    let name = if quick {
        "services-quick.json"
    } else {
        "services.json"
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("results")
        .join(name);
    let _ = std::fs::write(
        &path,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    println!("written: {}", path.display());
    drop(sensor);
}
