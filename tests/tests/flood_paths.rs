//! The flood paths end to end, each bounded well under a minute (real `sensor` binary, XDP, the
//! project's live-frames generator and real scanners, only between the test namespaces, which
//! have no route out):
//!
//! 1. Held, then released: with a small ring buffer a quarter full (the agent paused with
//!    SIGSTOP after 400 one-port spoofed sources arrived), a real `nmap -sS` of 20 ports has its
//!    first probes held in the kernel's source table and released as records when it is
//!    promoted; its `portscan.query` lists every port.
//! 2. Incidents under a spoofed-source burst: as many incidents for spoofed sources as the flood
//!    control lets `portscan.query` events through (at most its bound), one for the flood
//!    summary, and the real scanner gets its own.
//! 3. `hping3 --rand-source --flood` SYN flood (8 s) with a concurrent `nmap -sS -p 1-500`
//!    from the peer's own address: the scan is reported with all 500 ports, no event for the
//!    random sources, and a real connection to a decoy is answered during the flood. hping3
//!    ignores `-c` in flood mode, so the flood is bounded in time (`timeout -s INT`).

use std::{
    io::Read as _,
    net::TcpStream,
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

/// Idle timeout of the tests, ms.
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

/// The generator's SYN template towards the sensor of `net`.
fn template(net: &TestNet) -> Vec<u8> {
    let dst: Vec<u8> = net
        .sensor_ip
        .split('.')
        .filter_map(|o| o.parse().ok())
        .collect();
    generator::template(
        generator::parse_mac(&net.sensor_mac()),
        [0x02, 0, 0, 0, 0, 0x99],
        dst.try_into().unwrap_or([0; 4]),
    )
}

/// `nmap -sS` of `range` from the peer, one probe per port, pinned to CPU 0 when `pin` (the
/// kernel's source table is per CPU).
fn nmap(net: &TestNet, range: &str, pin: bool, limit: Duration) -> bool {
    let mut cmd = if pin {
        let mut c = net.peer.command("taskset");
        c.args(["-c", "0", "nmap"]);
        c
    } else {
        net.peer.command("nmap")
    };
    cmd.args(["-n", "-Pn", "-sS", "-T4", "--max-retries", "0", "-p", range])
        .arg(&net.sensor_ip);
    let out = run_bounded(&mut cmd, limit);
    if !out.status.success() {
        eprintln!("nmap: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

fn whole_scan(events: &[Value], src: &str, range: std::ops::RangeInclusive<u16>) -> bool {
    let want: Vec<u16> = range.collect();
    events
        .iter()
        .any(|e| e["logtype"] == "portscan.query" && e["src_ip"] == src && ports(e) == want)
}

/// In a module of the file's name, so `cargo xtask integration-test -- flood_paths` selects them.
mod flood_paths {
    use super::*;

    #[test]
    fn held_probes_of_a_promoted_source_are_released_and_reported() {
        require_root!();
        let net = TestNet::new();
        // 64 KiB: 512 records; a quarter (128 records) pending is pressure.
        let ring: u32 = 64 * 1024;
        let config = json!({
            "id": "it-sensor",
            "interface": net.sensor_if,
            "services": {},
            "outputs": [{"name": "out", "transport": {"type": "terminal"}}],
            "sensor": {
                "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1,
                        "ring_buffer_bytes": ring},
                "portscan": {"threshold": 3, "idle_timeout_ms": IDLE_MS, "max_window_secs": 120}
            }
        })
        .to_string();
        let sensor = RunningSensor::start(&net.sensor, &config, &[]);
        // The agent stops reading: what the kernel writes stays pending.
        // SAFETY: SIGSTOP to our own child.
        assert_eq!(unsafe { libc::kill(sensor.pid(), libc::SIGSTOP) }, 0);
        let fill = Plan {
            sources: 400,
            ports: 1,
            first_port: 1_000,
            rate: None,
        };
        let sent = generator::send(&net.peer, &net.peer_if, template(&net), fill);
        assert_eq!(sent.packets, fill.total());
        // A real scanner, on the CPU the generator used, while the ring is a quarter full.
        let scanned = nmap(&net, "1-20", true, Duration::from_secs(30));
        // SAFETY: SIGCONT to our own child.
        assert_eq!(unsafe { libc::kill(sensor.pid(), libc::SIGCONT) }, 0);
        assert!(scanned, "nmap failed");
        let peer = net.peer_ip.clone();
        let reported = sensor.wait_for_events(
            Duration::from_millis(IDLE_MS) + Duration::from_secs(10),
            |events| whole_scan(events, &peer, 1..=20),
        );
        let run = sensor.stop();
        assert!(run.clean_exit, "{:?}", run.stderr);
        eprintln!("kernel: {}", run.stats["kernel"]);
        assert!(
            reported,
            "the scan was not reported with ports 1-20: {:?}",
            run.portscans()
        );
        // Before the pressure: one record per spoofed source until a quarter of the ring is pending
        // (records of 120 bytes plus the ring's 8-byte header); after it, the rest are held.
        let record = 128u64;
        let before_pressure = u64::from(ring) / sensor_common::PRESSURE_FRACTION / record;
        let promote = u64::from(sensor_common::PROMOTE_PROBES);
        assert_eq!(run.kernel("ringbuf_full"), 0, "{}", run.stats);
        // The scan's first PROMOTE_PROBES - 1 probes were held, then released at its promotion.
        assert_eq!(run.kernel("released"), promote - 1, "{}", run.stats);
        assert_eq!(
            run.kernel("held"),
            fill.total() - before_pressure + (promote - 1),
            "{}",
            run.stats
        );
        run.assert_counters_add_up();
    }

    #[test]
    fn incidents_stay_bounded_under_a_spoofed_burst_and_the_real_scanner_gets_one() {
        require_root!();
        const MAX_REPORTS: u64 = 10;
        let net = TestNet::new();
        let config = json!({
            "id": "it-sensor",
            "interface": net.sensor_if,
            "services": {},
            "outputs": [{"name": "out", "transport": {"type": "terminal"}, "receive": "both"}],
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
        // 400,000 SYNs: 100,000 spoofed sources, 4 ports each, at 200,000 per second (2 s).
        let plan = Plan {
            sources: 100_000,
            ports: 4,
            first_port: 1_000,
            rate: Some(200_000),
        };
        let frame = template(&net);
        let (sent, scanned) = thread::scope(|scope| {
            let flood = scope.spawn(|| generator::send(&net.peer, &net.peer_if, frame, plan));
            let _ = sensor.wait_for_stats(Duration::from_secs(30), |s| {
                s["kernel"]["probes"].as_u64().unwrap_or(0) > 20_000
            });
            let scanned = nmap(&net, "1-100", false, Duration::from_secs(30));
            (flood.join().expect("generator"), scanned)
        });
        assert!(scanned, "nmap failed");
        assert_eq!(sent.packets, plan.total());
        let peer = net.peer_ip.clone();
        let reported = sensor.wait_for_events(
            Duration::from_millis(IDLE_MS) + Duration::from_secs(10),
            |events| {
                events.iter().any(|e| {
                    e["type"] == 2
                        && e["action"] == "incident_created"
                        && e["src_ip"] == peer.as_str()
                })
            },
        );
        let run = sensor.stop();
        assert!(run.clean_exit, "{:?}", run.stderr);
        assert!(reported, "no incident for the real scanner");

        let spoofed = |e: &&Value| e["src_ip"].as_str().is_some_and(|s| s.starts_with("24"));
        let created: Vec<&Value> = run
            .events
            .iter()
            .filter(|e| e["type"] == 2 && e["action"] == "incident_created")
            .collect();
        let spoofed_incidents = created.iter().copied().filter(spoofed).count() as u64;
        let spoofed_queries = run.portscans().into_iter().filter(spoofed).count() as u64;
        let floods = run
            .events
            .iter()
            .filter(|e| e["logtype"] == "portscan.flood")
            .count();
        let summary_incidents = created.iter().filter(|e| e["src_ip"] == "0.0.0.0").count();
        eprintln!(
            "{} incidents created: {spoofed_incidents} for spoofed sources ({spoofed_queries} \
             portscan.query), {summary_incidents} for {floods} flood summaries; merger {}",
            created.len(),
            run.stats["merger"]
        );
        // One incident per source the flood control let through, never one per spoofed source.
        assert!(spoofed_queries <= MAX_REPORTS, "{spoofed_queries}");
        assert_eq!(spoofed_incidents, spoofed_queries);
        assert!(floods >= 1, "the burst was folded into a summary");
        // The summaries (src_ip 0.0.0.0) share one incident.
        assert_eq!(summary_incidents, 1);
        let real: Vec<&&Value> = created
            .iter()
            .filter(|e| e["src_ip"] == net.peer_ip.as_str())
            .collect();
        assert_eq!(real.len(), 1, "{real:?}");
        assert_eq!(real[0]["channel"], "portscan");
        assert_eq!(real[0]["severity"], "high");
        assert_eq!(
            created.len(),
            spoofed_incidents as usize + summary_incidents + 1,
            "no other incident: {created:?}"
        );
        run.assert_counters_add_up();
    }

    #[test]
    fn hping3_random_source_flood_leaves_a_concurrent_nmap_whole_and_traffic_passing() {
        require_root!();
        let net = TestNet::new();
        let dir = std::env::temp_dir().join(format!("flood-paths-{}", std::process::id()));
        let config = json!({
            "id": "it-sensor",
            "interface": net.sensor_if,
            "services": {"ftp": [{"port": 21}]},
            "outputs": [{"name": "out", "transport": {"type": "terminal"}}],
            "sensor": {
                "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1},
                "portscan": {"threshold": 3, "idle_timeout_ms": IDLE_MS, "max_window_secs": 120},
                "services": {"state_dir": dir.join("state")}
            }
        })
        .to_string();
        let sensor = RunningSensor::start(&net.sensor, &config, &[]);
        // hping3 ignores `-c` in flood mode: the flood is bounded in time instead.
        const FLOOD_SECS: u64 = 8;
        let target = net.sensor_ip.clone();
        let (flood_end, transmitted, nmap_done, scanned, banner) = thread::scope(|scope| {
            let flood = scope.spawn(|| {
                let mut cmd = net.peer.command("timeout");
                cmd.args(["-s", "INT", &FLOOD_SECS.to_string(), "hping3", "-q", "-S"])
                    .args(["--rand-source", "-p", "80", "--flood"])
                    .arg(&target);
                let out = run_bounded(&mut cmd, Duration::from_secs(FLOOD_SECS + 10));
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                // "N packets transmitted, ..." on SIGINT.
                let transmitted = text
                    .lines()
                    .find_map(|l| l.split_once(" packets transmitted"))
                    .and_then(|(n, _)| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                (Instant::now(), transmitted)
            });
            let _ = sensor.wait_for_stats(Duration::from_secs(FLOOD_SECS), |s| {
                s["kernel"]["probes"].as_u64().unwrap_or(0) > 5_000
            });
            let scanned = nmap(&net, "1-500", false, Duration::from_secs(40));
            // A real client during the flood: the FTP decoy answers.
            let addr = format!("{}:21", net.sensor_ip);
            let banner = net.peer.run(move || {
                let mut s = TcpStream::connect_timeout(
                    &addr.parse().expect("address"),
                    Duration::from_secs(5),
                )
                .ok()?;
                s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).ok()?;
                Some(String::from_utf8_lossy(&buf[..n]).into_owned())
            });
            let nmap_done = Instant::now();
            let (flood_end, transmitted) = flood.join().expect("hping3");
            (flood_end, transmitted, nmap_done, scanned, banner)
        });
        eprintln!("hping3 --flood --rand-source: {transmitted} SYNs in {FLOOD_SECS} s");
        assert!(
            nmap_done < flood_end,
            "the flood ended before the scan and the client: no concurrency tested"
        );
        assert!(scanned, "nmap failed");
        assert!(
            banner.as_deref().is_some_and(|b| b.starts_with("220")),
            "the FTP decoy did not answer during the flood: {banner:?}"
        );
        let peer = net.peer_ip.clone();
        let reported = sensor.wait_for_events(
            Duration::from_millis(IDLE_MS) + Duration::from_secs(10),
            |events| whole_scan(events, &peer, 1..=500),
        );
        let run = sensor.stop();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(run.clean_exit, "{:?}", run.stderr);
        eprintln!(
            "kernel: {}; merger {}",
            run.stats["kernel"], run.stats["merger"]
        );
        assert!(
            reported,
            "nmap's scan was not reported with all 500 ports: {:?}",
            run.portscans()
                .iter()
                .filter(|e| e["src_ip"] == net.peer_ip.as_str())
                .map(|e| ports(e).len())
                .collect::<Vec<_>>()
        );
        // One port per random source: below the threshold, never an event.
        let others = run
            .portscans()
            .iter()
            .filter(|e| e["src_ip"] != net.peer_ip.as_str())
            .count();
        assert_eq!(others, 0, "portscan.query for random sources");
        assert!(
            run.kernel("probes") > 5_000,
            "the flood reached the sensor: {}",
            run.stats
        );
        run.assert_counters_add_up();
    }
}
