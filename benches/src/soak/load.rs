//! Phase (c), moderate load for a long time: one client per service (FTP, Telnet, SSH, HTTP,
//! HTTPS, MySQL, PostgreSQL) runs full sessions back to back with a pause, the events go to an
//! `api` output whose receiver counts them, and the sensor's resident memory is sampled every
//! few seconds. Figures: sessions, events produced and delivered, memory first / last /
//! highest, growth over the run and over its second half, descriptors.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{outage::round1, process::SensorProcess, receiver::Receiver, unused_ports};
use crate::sessions::{Kind, session, tls_connector};

/// Pause of each client between two sessions.
const PAUSE: Duration = Duration::from_millis(100);

/// Runs the phase for `duration`, sampling memory every `every`.
pub async fn run(bin: &Path, duration: Duration, every: Duration) -> Value {
    let dir = std::env::temp_dir().join(format!("soak-load-{}", std::process::id()));
    let ports: [u16; Kind::ALL.len() + 1] = unused_ports();
    let api = ports[Kind::ALL.len()];
    let addrs: Vec<(Kind, SocketAddr)> = Kind::ALL
        .iter()
        .zip(ports)
        .map(|(k, port)| (*k, SocketAddr::from(([127, 0, 0, 1], port))))
        .collect();
    let services: serde_json::Map<String, Value> = addrs
        .iter()
        .map(|(k, a)| (k.name().to_owned(), json!([{"port": a.port()}])))
        .collect();
    let config = json!({
        "id": "soak",
        "interface": "lo",
        "services": services,
        "outputs": [{
            "name": "siem",
            "format": "trapster",
            "transport": {"type": "api", "url": format!("http://127.0.0.1:{api}/events"),
                          "batch": "ndjson"}
        }],
        "sensor": {
            "services": {"state_dir": dir.join("state")},
            "xdp": {"stats_interval_secs": 1}
        }
    });
    let mut receiver = Receiver::new(api, false);
    receiver.start().await.expect("bind the receiver");
    let mut sensor = SensorProcess::new(bin, &dir, &config);
    sensor.start().await;
    println!(
        "load: one client per service, {PAUSE:?} between sessions, for {duration:?}; RSS every {every:?}"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tls = tls_connector();
    let clients: Vec<_> = addrs
        .iter()
        .map(|(kind, addr)| {
            let (stop, ok, failed, tls) = (
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
                tls.clone(),
            );
            let (kind, addr) = (*kind, *addr);
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if session(kind, addr, &tls).await {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(PAUSE).await;
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut samples: Vec<(f64, u64)> = vec![(0.0, sensor.rss_kib())];
    let mut fds_max = sensor.fds();
    let mut next = every;
    while started.elapsed() < duration {
        let wait = next.saturating_sub(started.elapsed()).min(duration);
        tokio::time::sleep(wait).await;
        samples.push((round1(started.elapsed().as_secs_f64()), sensor.rss_kib()));
        fds_max = fds_max.max(sensor.fds());
        next += every;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let elapsed = started.elapsed();
    // Every event the output received is delivered before the stop.
    let _ = super::wait_until(Duration::from_secs(30), || {
        let out = sensor.output_stats();
        out["sent"].as_u64() >= out["received"].as_u64()
    })
    .await;
    let (status, shutdown) = sensor.terminate(Duration::from_secs(30)).await;
    let out = sensor.output_stats();
    let rss: Vec<u64> = samples.iter().map(|(_, r)| *r).collect();
    let first = rss.first().copied().unwrap_or(0);
    let last = rss.last().copied().unwrap_or(0);
    let max = rss.iter().copied().max().unwrap_or(0);
    let mid = rss.get(rss.len() / 2).copied().unwrap_or(0);
    let sessions = ok.load(Ordering::Relaxed);
    let delivered = receiver.with(|t| t.lines);
    let figures = json!({
        "load_secs": round1(elapsed.as_secs_f64()),
        "sessions": sessions,
        "sessions_failed": failed.load(Ordering::Relaxed),
        "sessions_per_sec": round1(sessions as f64 / elapsed.as_secs_f64().max(1e-3)),
        "events_produced": out["received"],
        "events_delivered": delivered,
        "events_dropped": out["dropped"],
        "rss_first_kib": first,
        "rss_last_kib": last,
        "rss_max_kib": max,
        "rss_growth_kib": i128::from(last) - i128::from(first),
        "rss_growth_second_half_kib": i128::from(last) - i128::from(mid),
        "rss_samples": samples,
        "sensor_fds_max": fds_max,
        "clean_exit": status.is_some_and(|s| s.success()),
        "shutdown_secs": round1(shutdown.as_secs_f64()),
    });
    println!(
        "load: {sessions} sessions ({} failed, {:.1}/s) in {:.0} s; events produced {}, \
         delivered {delivered}, dropped {}; RSS first {first} KiB, last {last} KiB, max {max} \
         KiB, growth {} KiB ({} KiB over the second half)",
        figures["sessions_failed"],
        figures["sessions_per_sec"].as_f64().unwrap_or(0.0),
        elapsed.as_secs_f64(),
        out["received"],
        out["dropped"],
        figures["rss_growth_kib"],
        figures["rss_growth_second_half_kib"],
    );
    figures
}
