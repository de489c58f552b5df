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
    time::{Duration, Instant},
};

use benches::sessions::{Kind, count_logged, load, port_of, tls_connector};
use serde_json::json;
use tokio::net::TcpStream;

const CLIENTS: usize = 32;
const IDLE_CONNECTIONS: usize = 5_000;

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
    let tls = tls_connector();

    println!("service benchmark: {CLIENTS} concurrent clients, {duration:?} per service, loopback");
    println!(
        "{:<10} {:>12} {:>12} {:>10}",
        "service", "sessions/s", "sessions", "logged"
    );
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        let addr = SocketAddr::from(([127, 0, 0, 1], port_of(base, kind)));
        let logtype = format!("{}.{}", kind.name(), kind.logged());
        let before = count_logged(&sensor.log, &logtype);
        let (sessions, elapsed) = load(kind, addr, &tls, CLIENTS, duration).await;
        // Logged: wait for the file output to catch up.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut logged = count_logged(&sensor.log, &logtype).saturating_sub(before);
        while logged < sessions && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            logged = count_logged(&sensor.log, &logtype).saturating_sub(before);
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
