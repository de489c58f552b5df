//! Phase (a), an output outage with a spool: the sensor's `api` output (NDJSON batches, disk
//! spool) has its receiver down for the whole outage while FTP logins are produced; then the
//! receiver comes back and the spool drains. Figures: logins produced and delivered, events
//! received and distinct (duplicates), the spool's peak, the drain time, memory.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{Producer, delivery, process::SensorProcess, receiver::Receiver, unused_ports};

/// The configuration of the outage and chaos phases: FTP on `ftp`, one `api` output to
/// `api` with a spool in `dir`.
#[must_use]
pub fn spooled_config(dir: &Path, ftp: u16, api: u16) -> Value {
    json!({
        "id": "soak",
        "interface": "lo",
        "services": {"ftp": [{"port": ftp}]},
        "outputs": [{
            "name": "siem",
            "format": "trapster",
            "transport": {"type": "api", "url": format!("http://127.0.0.1:{api}/events"),
                          "batch": "ndjson"},
            "spool": {"dir": dir.join("spool"), "max_bytes": 1u64 << 30}
        }],
        "sensor": {
            "services": {"state_dir": dir.join("state"), "max_connections_per_source": 256},
            "xdp": {"stats_interval_secs": 1}
        }
    })
}

/// Runs the phase: `outage` without a receiver, then the drain (at most `drain_limit`).
pub async fn run(bin: &Path, outage: Duration, drain_limit: Duration) -> Value {
    let dir = std::env::temp_dir().join(format!("soak-outage-{}", std::process::id()));
    let [ftp, api] = unused_ports();
    let mut sensor = SensorProcess::new(bin, &dir, &spooled_config(&dir, ftp, api));
    sensor.start().await;
    let mut receiver = Receiver::new(api, true);
    let addr = SocketAddr::from(([127, 0, 0, 1], ftp));
    println!("outage: receiver down for {outage:?}, FTP logins from 2 clients");
    let producer = Producer::start(addr, 2, Duration::from_millis(100), "outage");
    let started = Instant::now();
    let mut rss_peak = 0u64;
    while started.elapsed() < outage {
        tokio::time::sleep(Duration::from_secs(1).min(outage)).await;
        rss_peak = rss_peak.max(sensor.rss_kib());
    }
    let (produced, failed) = producer.finish().await;
    let at_end = sensor.output_stats();
    let spool_bytes = dir_bytes(&dir.join("spool"));
    // The receiver is back: time until every login produced has arrived.
    receiver.start().await.expect("bind the receiver");
    let back = Instant::now();
    let all = super::wait_until(drain_limit, || {
        receiver.with(|t| produced.iter().all(|u| t.logins.contains(u)))
    })
    .await;
    let drained_in = back.elapsed();
    // Let what is still spooled (connection and command events after the last login) arrive:
    // every event the output received is sent (the counters are cumulative).
    let _ = super::wait_until(Duration::from_secs(30), || {
        let out = sensor.output_stats();
        out["sent"].as_u64() >= out["received"].as_u64()
    })
    .await;
    let (status, shutdown) = sensor.terminate(Duration::from_secs(30)).await;
    let last = sensor.output_stats();
    let mut figures = receiver.with(|t| delivery(&produced, t));
    let received_by_sensor = last["received"].as_u64().unwrap_or(0);
    let distinct = figures["events_distinct"].as_u64().unwrap_or(0);
    figures["outage_secs"] = json!(outage.as_secs());
    figures["logins_failed"] = json!(failed);
    figures["events_produced"] = json!(received_by_sensor);
    figures["events_lost"] = json!(received_by_sensor.saturating_sub(distinct));
    figures["spooled_at_outage_end"] = at_end["spooled"].clone();
    figures["spool_bytes_at_outage_end"] = json!(spool_bytes);
    figures["drained_all_logins"] = json!(all);
    figures["drain_secs"] = json!(round1(drained_in.as_secs_f64()));
    figures["rss_peak_kib"] = json!(rss_peak);
    figures["clean_exit"] = json!(status.is_some_and(|s| s.success()));
    figures["shutdown_secs"] = json!(round1(shutdown.as_secs_f64()));
    figures["output_counters"] = last;
    println!(
        "outage: {} logins produced, {} delivered, {} lost; {} events produced, {} distinct \
         received, {} duplicates; {} events ({} KiB) spooled during the outage; drained in {:.1} s",
        figures["logins_produced"],
        figures["logins_delivered"],
        figures["logins_lost"],
        received_by_sensor,
        distinct,
        figures["duplicates"],
        at_end["spooled"],
        spool_bytes / 1024,
        drained_in.as_secs_f64()
    );
    figures
}

/// Bytes of the files directly in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Rounded to a tenth.
#[must_use]
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
