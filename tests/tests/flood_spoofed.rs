//! Drop-blinding and alert flooding: a burst of SYNs from 300,000 spoofed sources (4 ports
//! each, 240.0.0.0/4, only between the test namespaces, which have no route out) while a real
//! `nmap -sS -p 1-500` runs from the peer's own address. The real scan must be reported whole
//! and on time (the kernel's flood reserve keeps its records), the spoofed sources must give at
//! most the configured number of events (the agent's flood control folds the rest into a
//! `portscan.flood` summary that carries their counts), memory stays bounded and the counter
//! identities hold.

use std::{
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{
    generator::{self, Plan},
    net::{TestNet, run_bounded},
    require_root,
    sensor::RunningSensor,
};

/// `sensor.portscan.flood_max_reports` of the test.
const MAX_REPORTS: u64 = 20;
/// Idle timeout of the test, ms.
const IDLE_MS: u64 = 3_000;

fn ports(event: &Value) -> Vec<u16> {
    event["extra"]["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Peak resident memory of `pid`, KiB.
fn vm_hwm_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn spoofed_source_burst_neither_blinds_a_real_scan_nor_floods_alerts() {
    require_root!();
    let net = TestNet::new();
    let config = json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {},
        "outputs": [{"name": "out", "transport": {"type": "terminal"}}],
        "sensor": {
            "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1},
            "portscan": {
                "threshold": 3, "idle_timeout_ms": IDLE_MS, "max_window_secs": 120,
                "flood_max_reports": MAX_REPORTS, "flood_window_secs": 60
            }
        }
    })
    .to_string();
    let sensor = RunningSensor::start(&net.sensor, &config, &[]);

    let plan = Plan {
        sources: 300_000,
        ports: 4,
        first_port: 1_000,
        rate: Some(350_000),
    };
    let dst: Vec<u8> = net
        .sensor_ip
        .split('.')
        .filter_map(|o| o.parse().ok())
        .collect();
    let frame = generator::template(
        generator::parse_mac(&net.sensor_mac()),
        [0x02, 0, 0, 0, 0, 0x99],
        dst.try_into().unwrap_or([0; 4]),
    );
    let (sent, nmap_started, nmap_done, nmap_ok) = thread::scope(|scope| {
        let flood = scope.spawn(|| generator::send(&net.peer, &net.peer_if, frame, plan));
        // Start the real scan once the flood is under way.
        let _ = sensor.wait_for_stats(Duration::from_secs(30), |s| {
            s["kernel"]["probes"].as_u64().unwrap_or(0) > 100_000
        });
        let nmap_started = Instant::now();
        let mut cmd = net.peer.command("nmap");
        cmd.args([
            "-n",
            "-Pn",
            "--max-retries",
            "2",
            "-T4",
            "-sS",
            "-p",
            "1-500",
        ])
        .arg(&net.sensor_ip);
        let out = run_bounded(&mut cmd, Duration::from_secs(60));
        let nmap_done = Instant::now();
        let sent = flood.join().expect("generator");
        (sent, nmap_started, nmap_done, out.status.success())
    });
    assert!(nmap_ok, "nmap failed");
    let rate = sent.packets as f64 / sent.elapsed.as_secs_f64();
    assert!(sent.packets >= plan.total(), "the whole burst was sent");
    assert!(
        sent.finished > nmap_started,
        "the burst ended before the scan started: no concurrency tested"
    );

    // The real scan, complete, within the idle window plus a few seconds.
    let limit = Duration::from_millis(IDLE_MS) + Duration::from_secs(5);
    let peer = net.peer_ip.clone();
    let whole = |events: &[Value]| {
        events.iter().any(|e| {
            e["logtype"] == "portscan.query"
                && e["src_ip"] == peer.as_str()
                && ports(e) == (1..=500).collect::<Vec<u16>>()
        })
    };
    let on_time = sensor.wait_for_events(limit, whole);
    let reported_after = nmap_done.elapsed();
    let rss_kib = vm_hwm_kib(sensor.pid());
    let run = sensor.stop();
    assert!(run.clean_exit, "{:?}", run.stderr);
    let real: Vec<&Value> = run
        .portscans()
        .into_iter()
        .filter(|e| e["src_ip"] == net.peer_ip.as_str())
        .collect();
    let real_ports: Vec<u16> = real.iter().flat_map(|e| ports(e)).collect();
    eprintln!(
        "burst: {} SYNs in {:?} ({rate:.0} pps); nmap reported {} ports in {} events, \
         {reported_after:?} after it ended; kernel {}; merger {}; peak RSS {} MiB",
        sent.packets,
        sent.elapsed,
        real_ports.len(),
        real.len(),
        run.stats["kernel"],
        run.stats["merger"],
        rss_kib / 1024
    );
    assert!(
        on_time,
        "the real scan was not reported whole within {limit:?}: {} ports in {} events",
        real_ports.len(),
        real.len()
    );

    // The spoofed sources: at most the bound of individual events plus the summaries.
    let spoofed_queries = run
        .portscans()
        .iter()
        .filter(|e| e["src_ip"].as_str().is_some_and(|s| s.starts_with("24")))
        .count() as u64;
    let floods: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["logtype"] == "portscan.flood")
        .collect();
    assert!(
        spoofed_queries <= MAX_REPORTS,
        "{spoofed_queries} portscan.query events for spoofed sources"
    );
    assert!(
        !floods.is_empty() && floods.len() <= 2,
        "one summary per window: {floods:?}"
    );
    // Nothing lost silently: the summaries count every folded source.
    let folded: u64 = floods
        .iter()
        .map(|e| e["extra"]["sources"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        run.stats["merger"]["flood_folded"].as_u64(),
        Some(folded),
        "{}",
        run.stats
    );
    let f = floods[0];
    assert_eq!(f["dst_ip"], net.sensor_ip.as_str());
    assert!(f["extra"]["probes"].as_u64().unwrap_or(0) >= folded);
    assert!(!f["extra"]["top_sources"].as_array().unwrap().is_empty());
    assert!(!f["extra"]["sample"].as_array().unwrap().is_empty());

    assert!(rss_kib <= 256 * 1024, "peak RSS {rss_kib} KiB");
    run.assert_counters_add_up();
}
