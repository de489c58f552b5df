//! SIGTERM during a sustained flood. The project's live-frames generator sends SYNs from
//! thousands of spoofed sources (240.0.0.0/4, between namespaces with no route out) into the
//! sensor's veth as fast as it can, and SIGTERM arrives in the middle of it. The bounded drains
//! let the agent see the signal at once: the shutdown completes within its deadline, every
//! record the kernel sent was read, the merger was flushed (every open scan reported), and
//! every report is accounted for by the output (written or counted as dropped).

use std::{
    thread,
    time::{Duration, Instant},
};

use serde_json::json;
use tests::{
    generator::{self, Plan},
    net::TestNet,
    require_root,
    sensor::RunningSensor,
};

/// Services (2 s) and outputs (5 s) have their own deadlines; the rest must be quick.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(12);

#[test]
fn sigterm_during_a_flood_shuts_down_in_time_with_consistent_counters() {
    require_root!();
    let net = TestNet::new();
    let config = json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {},
        "outputs": [{"name": "out", "transport": {"type": "terminal"}}],
        "sensor": {
            "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1},
            "portscan": {"threshold": 3, "idle_timeout_ms": 3000, "max_window_secs": 120}
        }
    })
    .to_string();
    let sensor = RunningSensor::start(&net.sensor, &config, &[]);

    // About 8 s of traffic at the generator's full speed on this machine, far longer than the
    // time to the signal.
    let plan = Plan {
        sources: 16_384,
        ports: 256,
        first_port: 1,
        rate: Some(500_000),
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
    let (run, took, signalled, sent) = thread::scope(|scope| {
        let flood = scope.spawn(|| generator::send(&net.peer, &net.peer_if, frame, plan));
        // Wait until the flood is well under way: records are arriving.
        let stats = sensor.wait_for_stats(Duration::from_secs(30), |s| {
            s["kernel"]["records_sent"].as_u64().unwrap_or(0) > 50_000
        });
        assert!(
            stats["kernel"]["records_sent"].as_u64().unwrap_or(0) > 50_000,
            "the flood did not reach the sensor: {stats}"
        );
        let signalled = Instant::now();
        let run = sensor.stop();
        let took = signalled.elapsed();
        let sent = flood.join().expect("generator");
        (run, took, signalled, sent)
    });

    assert!(run.clean_exit, "{:?}", run.stderr);
    assert!(
        took < SHUTDOWN_DEADLINE,
        "shutdown took {took:?} during the flood"
    );
    assert!(
        sent.finished > signalled,
        "the flood ended before the signal: not a test of shutdown under load"
    );
    // Every record the kernel sent was read and decoded; every probe has one fate.
    run.assert_counters_add_up();
    // The merger was flushed: every report became an event, written or counted as dropped.
    let merger = &run.stats["merger"];
    let reports = merger["reports"].as_u64().expect("reports");
    assert!(reports > 0, "{}", run.stats);
    let out = &run.stats["outputs"][0];
    let printed = run.portscans().len() as u64;
    eprintln!(
        "shutdown took {took:?} under the flood; {} records read, {reports} scans reported, \
         {printed} printed",
        run.kernel("records_sent")
    );
    assert_eq!(
        printed + out["dropped"].as_u64().expect("dropped"),
        reports,
        "{}",
        run.stats
    );
    assert_eq!(run.stats["events"].as_u64(), Some(reports), "{}", run.stats);
}
