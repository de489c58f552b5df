//! End to end: the real `sensor` binary in one namespace, real scanners in a peer namespace.
//! Each scan must give exactly one `portscan.query` event with every probed port and the right
//! flags; ordinary traffic and allow-listed sources give none; the counters add up.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use serde_json::Value;
use tests::{
    net::{TestNet, run_bounded},
    require_root,
    sensor::{RunningSensor, SensorRun, test_config},
};

/// Runs `nmap` from the peer namespace against `target`, bounded to two minutes.
fn nmap(net: &TestNet, args: &[&str], target: &str) {
    let mut cmd = net.peer.command("nmap");
    cmd.args(["-n", "-Pn", "--max-retries", "2", "-T4"])
        .args(args)
        .arg(target);
    let out = run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "nmap {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ports(event: &Value) -> Vec<u16> {
    event["extra"]["ports"]
        .as_array()
        .expect("extra.ports")
        .iter()
        .map(|p| {
            p.as_str()
                .expect("ports are strings")
                .parse()
                .expect("numeric port")
        })
        .collect()
}

/// Asserts one Trapster-shaped port-scan event from `src` to `dst` covering `expected` ports
/// with exactly `flags`.
fn assert_single_scan(run: &SensorRun, src: &str, dst: &str, expected: &[u16], flags: &[&str]) {
    assert!(run.clean_exit, "the sensor exited cleanly on SIGTERM");
    let scans = run.portscans();
    assert_eq!(
        scans.len(),
        1,
        "exactly one portscan.query: {:#?}",
        run.events
    );
    let e = scans[0];
    let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "device",
            "logtype",
            "dst_ip",
            "dst_port",
            "src_ip",
            "src_port",
            "timestamp",
            "data",
            "extra"
        ]
    );
    assert_eq!(e["device"], "it-sensor");
    assert_eq!(e["src_ip"], src);
    assert_eq!(e["dst_ip"], dst);
    assert_eq!(e["src_port"], 1);
    assert_eq!(e["data"], "");
    let got = ports(e);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "ports sorted ascending and distinct"
    );
    assert_eq!(got, expected, "every probed port, nothing else");
    assert_eq!(
        e["dst_port"],
        u64::from(expected[0]),
        "dst_port is the lowest port"
    );
    let got_flags: Vec<&str> = e["extra"]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(got_flags, flags);
    let ts = e["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2026-02-13 13:00:09.677008".len(), "{ts}");
    run.assert_counters_add_up();
    assert_eq!(run.kernel("ringbuf_full"), 0);
}

fn scan_test(args: &[&str], flags: &[&str]) {
    let net = TestNet::new();
    let sensor = RunningSensor::start(&net.sensor, &test_config(&net.sensor_if, &[]), &[]);
    nmap(&net, &[args, &["-p", "1-300"]].concat(), &net.sensor_ip);
    let run = sensor.stop();
    let expected: Vec<u16> = (1..=300).collect();
    assert_single_scan(&run, &net.peer_ip, &net.sensor_ip, &expected, flags);
    assert!(run.kernel("probes") >= 300);
}

#[test]
fn nmap_syn_scan() {
    require_root!();
    scan_test(&["-sS"], &["SYN"]);
}

#[test]
fn nmap_fin_scan() {
    require_root!();
    scan_test(&["-sF"], &["FIN"]);
}

#[test]
fn nmap_null_scan() {
    require_root!();
    scan_test(&["-sN"], &["NULL"]);
}

#[test]
fn nmap_xmas_scan() {
    require_root!();
    scan_test(&["-sX"], &["XMAS"]);
}

#[test]
fn nmap_ipv6_syn_scan() {
    require_root!();
    let net = TestNet::new();
    let sensor = RunningSensor::start(&net.sensor, &test_config(&net.sensor_if, &[]), &[]);
    nmap(&net, &["-6", "-sS", "-p", "1000-1199"], &net.sensor_ip6);
    let run = sensor.stop();
    let expected: Vec<u16> = (1000..=1199).collect();
    assert_single_scan(&run, &net.peer_ip6, &net.sensor_ip6, &expected, &["SYN"]);
}

#[test]
fn masscan_syn_scan() {
    require_root!();
    let net = TestNet::new();
    let sensor = RunningSensor::start(&net.sensor, &test_config(&net.sensor_if, &[]), &[]);
    let mac = net.sensor_mac();
    let mut cmd = net.peer.command("timeout");
    cmd.args([
        "-s",
        "INT",
        "60",
        "masscan",
        &net.sensor_ip,
        "-p",
        "1-400",
        "--rate",
        "5000",
    ])
    .args(["--wait", "1", "-e", &net.peer_if, "--router-mac", &mac]);
    let out = run_bounded(&mut cmd, Duration::from_secs(90));
    assert!(
        out.status.success(),
        "masscan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = sensor.stop();
    let expected: Vec<u16> = (1..=400).collect();
    assert_single_scan(&run, &net.peer_ip, &net.sensor_ip, &expected, &["SYN"]);
}

#[test]
fn ordinary_connection_is_not_a_scan() {
    require_root!();
    let net = TestNet::new();
    let sensor = RunningSensor::start(&net.sensor, &test_config(&net.sensor_if, &[]), &[]);
    let bind = format!("{}:8080", net.sensor_ip);
    let listener = net
        .sensor
        .run(move || TcpListener::bind(bind).expect("bind"));
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).expect("read");
        conn.write_all(b"world").expect("write");
    });
    let target = format!("{}:8080", net.sensor_ip);
    let reply = net.peer.run(move || {
        let mut conn = TcpStream::connect_timeout(&target.parse().unwrap(), Duration::from_secs(5))
            .expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(b"hello").expect("send");
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).expect("reply");
        buf
    });
    assert_eq!(&reply, b"world");
    server.join().expect("server");
    let run = sensor.stop();
    assert!(run.clean_exit);
    assert!(
        run.portscans().is_empty(),
        "no port-scan event for one connection: {:?}",
        run.events
    );
    assert_eq!(
        run.kernel("records_sent"),
        1,
        "the SYN was seen, and only it"
    );
    assert!(
        run.kernel("other_tcp") >= 4,
        "the rest of the connection is ordinary TCP"
    );
    assert_eq!(run.stats["merger"]["below_threshold"], 1);
    run.assert_counters_add_up();
}

#[test]
fn allow_listed_source_produces_nothing() {
    require_root!();
    let net = TestNet::new();
    let allowed = format!("{}/24", net.peer_ip);
    let sensor = RunningSensor::start(
        &net.sensor,
        &test_config(&net.sensor_if, &[allowed.as_str()]),
        &[],
    );
    nmap(&net, &["-sS", "-p", "1-300"], &net.sensor_ip);
    let run = sensor.stop();
    assert!(run.clean_exit);
    assert!(run.events.is_empty(), "{:?}", run.events);
    assert!(run.kernel("allow_listed") >= 300);
    assert_eq!(run.kernel("records_sent"), 0);
    run.assert_counters_add_up();
}

#[test]
fn separate_sources_and_repeated_scans() {
    require_root!();
    // Two scans from the same source separated by more than the idle timeout are two events;
    // a scan below the threshold is none.
    let net = TestNet::new();
    let config = test_config(&net.sensor_if, &[]);
    let idle =
        serde_json::from_str::<Value>(&config).unwrap()["sensor"]["portscan"]["idle_timeout_ms"]
            .as_u64()
            .unwrap();
    let sensor = RunningSensor::start(&net.sensor, &config, &[]);
    // Each scan starts once the sensor has closed the one before (idle for the configured
    // timeout), as its counters say: a wait bounded by the idle timeout plus a margin.
    let closed = |field: &str, n: u64| {
        let stats = sensor
            .wait_for_stats(Duration::from_millis(idle) + Duration::from_secs(10), |s| {
                s["merger"][field].as_u64().unwrap_or(0) >= n
            });
        assert!(
            stats["merger"][field].as_u64().unwrap_or(0) >= n,
            "merger.{field} never reached {n}: {stats}"
        );
    };
    nmap(&net, &["-sS", "-p", "1-50"], &net.sensor_ip);
    closed("reports", 1);
    nmap(&net, &["-sS", "-p", "22,80"], &net.sensor_ip);
    closed("below_threshold", 1);
    nmap(&net, &["-sX", "-p", "100-120"], &net.sensor_ip);
    let run = sensor.stop();
    let scans = run.portscans();
    assert_eq!(scans.len(), 2, "{:#?}", run.events);
    assert_eq!(ports(scans[0]), (1..=50).collect::<Vec<_>>());
    assert_eq!(ports(scans[1]), (100..=120).collect::<Vec<_>>());
    assert_eq!(scans[1]["extra"]["flags"], serde_json::json!(["XMAS"]));
    run.assert_counters_add_up();
}

#[test]
fn pcap_capture_reports_the_same_scan() {
    require_root!();
    let net = TestNet::new();
    let config = test_config(&net.sensor_if, &[]);
    let sensor = RunningSensor::start(&net.sensor, &config, &["--capture", "pcap"]);
    nmap(&net, &["-sS", "-p", "1-300"], &net.sensor_ip);
    // The stats tick (every second in the test configuration) reports libpcap's figures while
    // the sensor runs, not only at exit.
    let ticked = sensor.wait_for_stats(Duration::from_secs(5), |s| {
        s["pcap"]["probes"].as_u64().is_some_and(|p| p >= 300)
    });
    assert_eq!(ticked["pcap"]["kernel_dropped"], 0, "{ticked}");
    assert_eq!(ticked["pcap"]["if_dropped"], 0, "{ticked}");
    assert!(ticked["kernel"].is_null(), "{ticked}");
    let run = sensor.stop();
    assert!(run.clean_exit);
    let scans = run.portscans();
    assert_eq!(scans.len(), 1, "{:#?}", run.events);
    assert_eq!(ports(scans[0]), (1..=300).collect::<Vec<_>>());
    assert_eq!(scans[0]["extra"]["flags"], serde_json::json!(["SYN"]));
    assert!(run.stats["kernel"].is_null(), "no XDP program in pcap mode");
    assert!(
        run.stats["pcap"]["probes"].as_u64().unwrap() >= 300,
        "{}",
        run.stats
    );
    assert_eq!(run.stats["pcap"]["kernel_dropped"], 0);
}

#[test]
fn several_outputs_receive_the_same_scan() {
    require_root!();
    let net = TestNet::new();
    let dir = std::env::temp_dir().join(format!("{}-outputs", net.sensor.name));
    std::fs::create_dir_all(&dir).unwrap();
    let ecs_path = dir.join("events.ecs.ndjson");
    let mut config: Value = serde_json::from_str(&test_config(&net.sensor_if, &[])).unwrap();
    config["outputs"] = serde_json::json!([
        {"name": "console", "transport": {"type": "terminal"}},
        {"name": "siem", "format": "ecs", "transport": {"type": "file", "path": ecs_path}}
    ]);
    let sensor = RunningSensor::start(&net.sensor, &config.to_string(), &[]);
    nmap(&net, &["-sS", "-p", "1-100"], &net.sensor_ip);
    let run = sensor.stop();
    assert!(run.clean_exit);
    let scans = run.portscans();
    assert_eq!(scans.len(), 1, "{:#?}", run.events);
    let ecs_text = std::fs::read_to_string(&ecs_path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let ecs: Vec<Value> = ecs_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ecs.len(), 1, "{ecs_text}");
    // Trapster's ECS: the action alone, the dataset names the channel.
    assert_eq!(ecs[0]["event"]["action"], "query");
    assert_eq!(ecs[0]["event"]["dataset"], "trapster.portscan");
    assert_eq!(ecs[0]["source"]["ip"], net.peer_ip.as_str());
    assert_eq!(
        ecs[0]["trapster"]["portscan"]["ports"],
        scans[0]["extra"]["ports"]
    );
    let outputs = run.stats["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    for o in outputs {
        assert_eq!(
            (
                o["received"].as_u64(),
                o["sent"].as_u64(),
                o["dropped"].as_u64()
            ),
            (Some(1), Some(1), Some(0)),
            "{o}"
        );
    }
}
