//! Phase (b), idle connections and slowloris: every service of the sensor (FTP, Telnet, SSH,
//! HTTP, HTTPS, MySQL, PostgreSQL) gets its share of 10,000 idle connections from ten loopback
//! sources (1,000 each, the per-source cap, plus a few more each that the cap must refuse) and
//! 20 slowloris clients (a plausible request prefix, one byte at a time). While they are held,
//! a fresh client of every service must still complete a session and have it logged; then
//! more sources fill the global cap (refused beyond it), and once they leave fresh clients are
//! answered again. Figures: connections held and refused, the sensor's descriptors and memory,
//! slowloris clients cut by the sensor, fresh sessions answered.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpSocket, TcpStream},
};

use super::{outage::round1, process::SensorProcess, unused_ports};
use crate::sessions::{Kind, count_logged, session, tls_connector};

/// Idle connections held.
pub const IDLE: usize = 10_000;
/// Sources they come from (each at the per-source cap).
const SOURCES: usize = 10;
/// `sensor.services.max_connections_per_source` of the phase.
const PER_SOURCE: usize = IDLE / SOURCES;
/// Connections per source beyond the cap (each must be refused).
const EXTRA_PER_SOURCE: usize = 5;
/// `sensor.services.max_connections` of the phase: the idle ones, the slowloris, fresh
/// clients, and a little room.
const MAX_CONNECTIONS: usize = 10_240;
/// Slowloris clients per service.
const SLOWLORIS: usize = 20;

fn source(group: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, group, 0, u8::try_from(i % 250 + 1).unwrap_or(1))
}

async fn connect_from(src: Ipv4Addr, addr: SocketAddr) -> Option<TcpStream> {
    try_connect_from(src, addr).await.ok()
}

/// [`connect_from`], saying why it failed (the step and the error).
async fn try_connect_from(src: Ipv4Addr, addr: SocketAddr) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(SocketAddr::from((src, 0)))
        .map_err(|e| format!("bind {src}: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(10), socket.connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("connect {src} -> {addr}: {e}")),
        Err(_) => Err(format!("connect {src} -> {addr}: no answer in 10 s")),
    }
}

/// Whether the peer still holds `s` open (what it sent is read and discarded).
fn still_open(s: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        match s.try_read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    true
}

/// The bytes a slowloris client of `kind` trickles: a request that never ends.
fn slow_prefix(kind: Kind) -> Vec<u8> {
    match kind {
        Kind::Ftp => b"USER ".to_vec(),
        Kind::Telnet => b"admin".to_vec(),
        Kind::Ssh => b"SSH-2.0-".to_vec(),
        Kind::Http => b"GET / HTTP/1.1\r\nHost: soak\r\nX-Slow: ".to_vec(),
        // A TLS handshake record of 16 KiB that never completes.
        Kind::Https => vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01],
        // A MySQL packet header announcing 16 MiB - 1.
        Kind::Mysql => vec![0xff, 0xff, 0xff, 0x01],
        // A PostgreSQL startup message of 8 KiB.
        Kind::Postgres => vec![0x00, 0x00, 0x20, 0x00, 0x00, 0x03, 0x00, 0x00],
    }
}

/// Slowloris clients cut by the sensor, and when the last one was.
#[derive(Default)]
struct Slow {
    cut: AtomicU64,
    last_cut_ms: AtomicU64,
}

async fn slowloris(
    mut s: TcpStream,
    kind: Kind,
    every: Duration,
    stop: Arc<AtomicBool>,
    slow: Arc<Slow>,
    t0: Instant,
) {
    let prefix = slow_prefix(kind);
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let byte = prefix.get(i).copied().unwrap_or(b'a');
        i += 1;
        if s.write_all(&[byte]).await.is_err() || !still_open(&s) {
            slow.cut.fetch_add(1, Ordering::Relaxed);
            let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
            slow.last_cut_ms.fetch_max(ms, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(every).await;
    }
}

/// A fresh session on every service from a new source: how many completed and were logged,
/// and the services whose completed session was not logged.
async fn fresh(addrs: &[(Kind, SocketAddr)], log: &Path) -> (usize, usize, Vec<&'static str>) {
    let tls = tls_connector();
    let (mut answered, mut logged, mut unlogged) = (0, 0, Vec::new());
    for (kind, addr) in addrs {
        let logtype = format!("{}.{}", kind.name(), kind.logged());
        let before = count_logged(log, &logtype);
        if session(*kind, *addr, &tls).await {
            answered += 1;
            if super::wait_until(Duration::from_secs(10), || {
                count_logged(log, &logtype) > before
            })
            .await
            {
                logged += 1;
            } else {
                unlogged.push(kind.name());
            }
        }
    }
    (answered, logged, unlogged)
}

fn services(stats: &Value) -> Value {
    stats["services"].clone()
}

/// Runs the phase, holding the connections for `hold`.
pub async fn run(bin: &Path, hold: Duration) -> Value {
    let dir = std::env::temp_dir().join(format!("soak-idle-{}", std::process::id()));
    let ports: [u16; Kind::ALL.len()] = unused_ports();
    let addrs: Vec<(Kind, SocketAddr)> = Kind::ALL
        .iter()
        .zip(ports)
        .map(|(k, port)| (*k, SocketAddr::from(([127, 0, 0, 1], port))))
        .collect();
    let log = dir.join("events.log");
    let services_config: serde_json::Map<String, Value> = addrs
        .iter()
        .map(|(k, a)| (k.name().to_owned(), json!([{"port": a.port()}])))
        .collect();
    // The product's defaults are 15 s (handshake) and 60 s (idle): a minute for both keeps the
    // idle clients while the fresh ones are tried, and closes them within a long hold.
    let timeout = 60;
    let config = json!({
        "id": "soak",
        "interface": "lo",
        "services": services_config,
        "logger": {"output": "file", "format": "default", "kwargs": {"logfile": log}},
        "sensor": {
            "services": {
                "state_dir": dir.join("state"),
                "max_connections": MAX_CONNECTIONS,
                "max_connections_per_source": PER_SOURCE,
                "handshake_timeout_secs": timeout,
                "idle_timeout_secs": timeout
            },
            "xdp": {"stats_interval_secs": 1}
        }
    });
    let mut sensor = SensorProcess::new(bin, &dir, &config);
    sensor.start().await;
    let rss_start = sensor.rss_kib();
    let fds_start = sensor.fds();
    println!(
        "idle: {IDLE} idle connections from {SOURCES} sources (+{EXTRA_PER_SOURCE} each over \
         the cap), {SLOWLORIS} slowloris clients per service, held {hold:?}"
    );
    // The idle connections, round robin over the services.
    let t0 = Instant::now();
    let mut held = Vec::with_capacity(IDLE);
    let mut over_cap = Vec::new();
    let mut connect_failed = 0u64;
    let mut connect_errors: Vec<String> = Vec::new();
    let mut over_cap_refused = 0u64;
    for s in 0..SOURCES {
        let src = source(1, s);
        for i in 0..PER_SOURCE + EXTRA_PER_SOURCE {
            let (_, addr) = addrs[(s + i) % addrs.len()];
            match try_connect_from(src, addr).await {
                Ok(c) if i < PER_SOURCE => held.push(c),
                Ok(c) => over_cap.push(c),
                // Over the cap, the sensor's refusal can reach the client before it sees its
                // connect complete: refused as it should be, not a failure.
                Err(_) if i >= PER_SOURCE => over_cap_refused += 1,
                Err(why) => {
                    connect_failed += 1;
                    if connect_errors.len() < 5 {
                        connect_errors.push(format!("connection {i} of its source: {why}"));
                    }
                }
            }
        }
    }
    let opened_in = t0.elapsed();
    let opened = held.len();
    // The slowloris clients.
    let stop = Arc::new(AtomicBool::new(false));
    let slow = Arc::new(Slow::default());
    let every = Duration::from_secs(2);
    let mut slow_tasks = Vec::new();
    for (n, (kind, addr)) in addrs.iter().enumerate() {
        for i in 0..SLOWLORIS {
            if let Some(c) = connect_from(source(2, n * SLOWLORIS + i), *addr).await {
                slow_tasks.push(tokio::spawn(slowloris(
                    c,
                    *kind,
                    every,
                    Arc::clone(&stop),
                    Arc::clone(&slow),
                    t0,
                )));
            }
        }
    }
    // While everything is held: a fresh client of every service.
    let fresh_held = fresh(&addrs, &log).await;
    let at_hold = sensor.stats().map(|s| services(&s)).unwrap_or_default();
    let (mut fds_max, mut rss_max) = (sensor.fds(), sensor.rss_kib());
    // More sources up to the global cap and past it.
    let mut beyond = Vec::new();
    for i in 0..300 {
        let (_, addr) = addrs[i % addrs.len()];
        if let Some(c) = connect_from(source(4, i / 30), addr).await {
            beyond.push(c);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    fds_max = fds_max.max(sensor.fds());
    let full = sensor.stats().map(|s| services(&s)).unwrap_or_default();
    let beyond_open = beyond.iter().filter(|c| still_open(c)).count();
    let fresh_full = fresh(&addrs, &log).await;
    drop(beyond);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh_after = fresh(&addrs, &log).await;
    // The rest of the hold, sampled every second: the timeouts close what stays idle.
    while t0.elapsed() < hold {
        tokio::time::sleep(Duration::from_secs(1)).await;
        fds_max = fds_max.max(sensor.fds());
        rss_max = rss_max.max(sensor.rss_kib());
    }
    let idle_open = held.iter().filter(|c| still_open(c)).count();
    let over_cap_open = over_cap.iter().filter(|c| still_open(c)).count();
    stop.store(true, Ordering::Relaxed);
    for t in slow_tasks {
        let _ = t.await;
    }
    let rss_end = sensor.rss_kib();
    drop(held);
    drop(over_cap);
    let (status, shutdown) = sensor.terminate(Duration::from_secs(30)).await;
    let last = sensor.stats().map(|s| services(&s)).unwrap_or_default();
    let n = addrs.len();
    let figures = json!({
        "idle_connections_opened": opened,
        "opened_secs": round1(opened_in.as_secs_f64()),
        "connect_failed": connect_failed,
        "connect_errors": connect_errors,
        "over_per_source_cap_refused_at_connect": over_cap_refused,
        "idle_still_open_at_hold_end": idle_open,
        "over_per_source_cap_attempted": SOURCES * EXTRA_PER_SOURCE,
        "over_per_source_cap_still_open": over_cap_open,
        "slowloris_clients": n * SLOWLORIS,
        "slowloris_cut_by_sensor": slow.cut.load(Ordering::Relaxed),
        "slowloris_last_cut_secs": round1(slow.last_cut_ms.load(Ordering::Relaxed) as f64 / 1e3),
        "fresh_sessions_while_held": {"services": n, "answered": fresh_held.0, "logged": fresh_held.1, "unlogged": fresh_held.2},
        "beyond_global_cap_attempted": 300,
        "beyond_global_cap_open": beyond_open,
        "fresh_sessions_global_cap_full": {"services": n, "answered": fresh_full.0, "logged": fresh_full.1, "unlogged": fresh_full.2},
        "fresh_sessions_after": {"services": n, "answered": fresh_after.0, "logged": fresh_after.1, "unlogged": fresh_after.2},
        "max_connections": MAX_CONNECTIONS,
        "max_connections_per_source": PER_SOURCE,
        "handshake_and_idle_timeout_secs": timeout,
        "hold_secs": hold.as_secs(),
        "sensor_fds_start": fds_start,
        "sensor_fds_max": fds_max,
        "rss_start_kib": rss_start,
        "rss_max_kib": rss_max,
        "rss_end_kib": rss_end,
        "services_at_hold": at_hold,
        "services_global_cap_full": full,
        "services_last": last,
        "clean_exit": status.is_some_and(|s| s.success()),
        "shutdown_secs": round1(shutdown.as_secs_f64()),
    });
    println!(
        "idle: {idle_open}/{IDLE} idle connections still open after {hold:?}, {over_cap_open}/{} over \
         the per-source cap left open, {}/{} slowloris cut; fresh sessions answered/logged: \
         {}/{} held, {}/{} global cap full, {}/{} after; sensor fds max {fds_max} (cap \
         {MAX_CONNECTIONS}), RSS {} -> {} MiB (max {})",
        SOURCES * EXTRA_PER_SOURCE,
        figures["slowloris_cut_by_sensor"],
        n * SLOWLORIS,
        fresh_held.0,
        fresh_held.1,
        fresh_full.0,
        fresh_full.1,
        fresh_after.0,
        fresh_after.1,
        rss_start / 1024,
        rss_end / 1024,
        rss_max / 1024
    );
    figures
}
