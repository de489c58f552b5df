//! The PostgreSQL decoy against real `psql` (SCRAM-SHA-256 with and without channel binding)
//! and side by side with a real PostgreSQL 15 started on loopback: the raw answers to the
//! startup cases an NSE script or a fingerprinter tries must have the same bytes.

mod harness;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use harness::{Harness, run, temp_dir};
use md5::Digest as _;
use sensor::{
    event::{Action, Service},
    services::proto::postgres::scram::ScramCapture,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

const LIMIT: Duration = Duration::from_secs(30);

#[cfg(test)]
fn startup(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = u32::try_from(body.len() + 4)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
/// Sends `request` and reads until `want` bytes arrived, the peer closed, or 3 s passed.
async fn answer(addr: SocketAddr, request: &[u8], want: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    out
}

#[cfg(test)]
async fn psql(port: u16, conninfo: &str, password: &str) -> String {
    let out = run(
        "psql",
        &[
            &format!("host=127.0.0.1 port={port} connect_timeout=10 {conninfo}"),
            "-c",
            "select 1",
        ],
        &[("PGPASSWORD", password)],
        LIMIT,
    )
    .await;
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_scram_with_and_without_channel_binding_is_captured_and_cracks() {
    let mut h = Harness::start(json!({"postgres": [{"port": 0}]}), json!({})).await;
    let port = h.addr(Service::Postgres).port();
    for (conninfo, mechanism, binding, tls) in [
        (
            "user=dba dbname=prod sslmode=require channel_binding=require",
            "SCRAM-SHA-256-PLUS",
            "tls-server-end-point",
            true,
        ),
        (
            "user=dba dbname=prod sslmode=disable",
            "SCRAM-SHA-256",
            "n",
            false,
        ),
        // Over TLS without requiring binding, libpq still binds when PLUS is offered.
        (
            "user=dba dbname=prod sslmode=require",
            "SCRAM-SHA-256-PLUS",
            "tls-server-end-point",
            true,
        ),
    ] {
        let err = psql(port, conninfo, "Tr0ub4dor&3").await;
        assert!(
            err.contains("FATAL:  password authentication failed for user \"dba\""),
            "{conninfo}: {err}"
        );
        let events = h.until(Action::Login, 1, LIMIT).await;
        let login = events.iter().find(|e| e.action == Action::Login).unwrap();
        let extra = Value::from(login.extra.clone());
        assert_eq!(extra["username"], "dba");
        assert_eq!(extra["database"], "prod");
        assert_eq!(extra["auth"], "scram-sha-256");
        assert_eq!(extra["mechanism"], mechanism, "{conninfo}");
        assert_eq!(extra["channel_binding"], binding, "{conninfo}");
        assert_eq!(extra["scram_valid"], true, "{conninfo}");
        assert_eq!(extra["tls"], tls);
        assert!(extra.get("password").is_none());
        let capture = ScramCapture::parse_line(extra["scram"].as_str().unwrap()).unwrap();
        assert_eq!(capture.iterations, 4096);
        assert_eq!(capture.salt.len(), 16);
        assert!(capture.verify(b"Tr0ub4dor&3"), "{conninfo}");
        assert!(!capture.verify(b"Tr0ub4dor&4"));
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_md5_gives_a_hashcat_11100_line() {
    let mut h = Harness::start(
        json!({"postgres": [{"port": 0, "auth": "md5", "ssl": false}]}),
        json!({}),
    )
    .await;
    let port = h.addr(Service::Postgres).port();
    let err = psql(port, "user=bob sslmode=disable", "pw1").await;
    assert!(
        err.contains("password authentication failed for user \"bob\""),
        "{err}"
    );
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = events.iter().find(|e| e.action == Action::Login).unwrap();
    let line = login.extra["hashcat"].as_str().unwrap().to_owned();
    let (head, hash) = line.rsplit_once('*').unwrap();
    let salt = hex::decode(head.strip_prefix("$postgres$bob*").unwrap()).unwrap();
    // md5(md5(password || user) hex || salt)
    let inner = hex::encode(md5::Md5::digest(b"pw1bob"));
    let outer = hex::encode(md5::Md5::digest([inner.as_bytes(), &salt].concat()));
    assert_eq!(hash, outer);
    h.stop().await;
}

#[cfg(test)]
/// A real PostgreSQL 15 on a loopback port in a temporary directory, run as `nobody` when the
/// test runs as root (via setpriv, util-linux); stopped on drop.
struct RealPostgres {
    child: std::process::Child,
    port: u16,
    _dir: PathBuf,
}

#[cfg(test)]
impl Drop for RealPostgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, the postmaster stops and reaps its children at once.
        // The server's own id, from its pid file (the first line), else the child's.
        let from_file = std::fs::read_to_string(self._dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        if let Some(pid) = from_file.or_else(|| i32::try_from(self.child.id()).ok()) {
            // SAFETY: signals the server this test started, by its id.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
        }
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BIN: &str = "/usr/lib/postgresql/15/bin";

#[cfg(test)]
fn as_server_user(program: &str) -> std::process::Command {
    if nix_is_root() {
        // setpriv execs the program itself (runuser would fork it), so the child's id is the
        // server's and Drop stops the server.
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
        cmd
    } else {
        std::process::Command::new(program)
    }
}

#[cfg(test)]
fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[cfg(test)]
fn chown_nobody(path: &Path) {
    if nix_is_root() {
        std::os::unix::fs::chown(path, Some(65_534), Some(65_534)).unwrap();
    }
}

#[cfg(test)]
impl RealPostgres {
    async fn start() -> Self {
        let dir = temp_dir("real-postgres");
        std::fs::create_dir_all(&dir).unwrap();
        chown_nobody(&dir);
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, "secret\n").unwrap();
        chown_nobody(&pwfile);
        let data = dir.join("data");
        let status = as_server_user(&format!("{BIN}/initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        for (name, pem) in [
            ("server.crt", cert.pem()),
            ("server.key", key.serialize_pem()),
        ] {
            let path = data.join(name);
            std::fs::write(&path, pem).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            chown_nobody(&path);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = as_server_user(&format!("{BIN}/postgres"))
            .args(["-D", data.to_str().unwrap(), "-p", &port.to_string()])
            .args(["-k", dir.to_str().unwrap()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let real = Self {
            child,
            port,
            _dir: dir,
        };
        // Ready when a startup packet gets the authentication request, not "starting up".
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let probe = startup(196_608, &[("user", "postgres")]);
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok()
                && answer(addr, &probe, 1).await.first() == Some(&b'R')
            {
                return real;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("PostgreSQL was not ready within 10 s");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_answers_have_the_bytes_of_postgresql_15() {
    let real = RealPostgres::start().await;
    let real_addr: SocketAddr = ([127, 0, 0, 1], real.port).into();
    let h = Harness::start(json!({"postgres": [{"port": 0}]}), json!({})).await;
    let decoy = h.addr(Service::Postgres);
    let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let gss = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        (
            "startup without user",
            startup(196_608, &[("database", "x")]),
            1,
        ),
        (
            "protocol 3.1 with a _pq_ option",
            startup(196_609, &[("user", "postgres"), ("_pq_.foo", "1")]),
            21 + 24,
        ),
        ("GSSENCRequest", gss.to_vec(), 1),
        ("SSLRequest", ssl.to_vec(), 1),
        (
            "replication=bogus",
            startup(196_608, &[("user", "postgres"), ("replication", "bogus")]),
            1,
        ),
        (
            "auth request",
            startup(196_608, &[("user", "postgres")]),
            24,
        ),
        (
            "auth request, unknown user",
            startup(196_608, &[("user", "nosuch")]),
            24,
        ),
        (
            "unsupported version",
            startup(65_363 << 16 | 19_778, &[("user", "x")]),
            1,
        ),
        ("protocol 2", startup(2 << 16, &[("user", "x")]), 1),
    ];
    for (name, request, want) in cases {
        let from_real = answer(real_addr, &request, want).await;
        let from_decoy = answer(decoy, &request, want).await;
        assert!(!from_real.is_empty(), "{name}: the real server answered");
        assert_eq!(
            String::from_utf8_lossy(&from_decoy),
            String::from_utf8_lossy(&from_real),
            "{name}"
        );
        assert_eq!(from_decoy, from_real, "{name}");
    }
    // Over TLS the SASL offer adds the channel-binding mechanism first.
    h.stop().await;
    drop(real);
}
