//! `sensor.metrics`: `/metrics` passes `promtool check metrics` and carries exactly the stats
//! file's counters after a scan; `/healthz` turns unhealthy once an output has been failing
//! longer than `sensor.metrics.output_failing_secs`.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{
    net::{TestNet, run_bounded},
    require_root,
    sensor::RunningSensor,
};

const PORT: u16 = 9464;

fn config(interface: &str, outputs: Value, failing_secs: u64) -> String {
    json!({
        "id": "it-sensor",
        "interface": interface,
        "whitelist_ips": [],
        "services": {"ftp": [{"port": 21}]},
        "outputs": outputs,
        "sensor": {
            "run_as": "root",
            "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1},
            "portscan": {"threshold": 3, "idle_timeout_ms": 2000, "max_window_secs": 120},
            "metrics": {"listen": PORT.to_string(), "refresh_secs": 1, "output_failing_secs": failing_secs},
        },
    })
    .to_string()
}

/// `GET path` on the sensor's loopback, from inside its namespace: status and body.
fn get(net: &TestNet, path: &'static str) -> (u16, String) {
    net.sensor.run(move || {
        let mut s =
            TcpStream::connect(("127.0.0.1", PORT)).expect("connect to the metrics listener");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("response");
        let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
        let status = head
            .split_whitespace()
            .nth(1)
            .expect("status")
            .parse()
            .expect("numeric status");
        (status, body.to_owned())
    })
}

/// `name{labels}` → value, for every sample line.
fn samples(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("sample line");
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// What `/metrics` must say for the stats file's counters.
fn expected_from_stats(stats: &Value) -> BTreeMap<String, String> {
    sensor::agent::metrics::counter_samples(stats)
        .into_iter()
        .map(|(name, labels, value)| {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            (format!("{name}_total{labels}"), value.to_string())
        })
        .collect()
}

fn promtool(text: &str) -> std::process::Output {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    child.wait_with_output().expect("promtool output")
}

/// The ring buffer size the test configuration leaves at its default.
fn stats_ring_size() -> u32 {
    sensor_common::RECORDS_MAP_BYTES
}

#[test]
fn metrics_pass_promtool_and_equal_the_stats_file_after_a_scan() {
    require_root!();
    let net = TestNet::new();
    let outputs = json!([{"name": "console", "transport": {"type": "terminal"}}]);
    let sensor = RunningSensor::start(&net.sensor, &config(&net.sensor_if, outputs, 300), &[]);
    let mut cmd = net.peer.command("nmap");
    cmd.args([
        "-n",
        "-Pn",
        "--max-retries",
        "2",
        "-T4",
        "-sS",
        "-p",
        "1-50",
    ])
    .arg(&net.sensor_ip);
    assert!(
        run_bounded(&mut cmd, Duration::from_secs(120))
            .status
            .success()
    );
    // The scan is reported after its idle timeout; then the counters stop moving.
    let stats = sensor.wait_for_stats(Duration::from_secs(15), |s| s["merger"]["reports"] == 1);
    assert_eq!(stats["merger"]["reports"], 1, "{stats}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut want, mut got, mut text) = (BTreeMap::new(), BTreeMap::new(), String::new());
    while Instant::now() < deadline {
        let (status, body) = get(&net, "/metrics");
        assert_eq!(status, 200);
        let stats = sensor.stats_now().expect("stats file");
        want = expected_from_stats(&stats);
        got = samples(&body);
        text = body;
        if want.iter().all(|(k, v)| got.get(k) == Some(v)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let differing: Vec<String> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: stats {v}, metrics {:?}", got.get(k)))
        .collect();
    assert_eq!(differing, Vec::<String>::new(), "{text}");
    assert!(
        want.len() > 30,
        "every kernel, merger, output and service counter: {want:?}"
    );
    assert_eq!(got["trapster_sensor_merger_reports_total"], "1");
    assert_eq!(got["trapster_sensor_capture_attached"], "1");
    // The outputs' levels are gauges, beside their counters.
    for gauge in ["queued", "in_spool"] {
        assert!(
            got.contains_key(&format!(
                "trapster_sensor_output_{gauge}{{output=\"console\",type=\"terminal\"}}"
            )),
            "{text}"
        );
    }
    // Every record was read: the ring buffer holds nothing, and its size is the configured one.
    assert_eq!(got["trapster_sensor_ring_buffer_used_bytes"], "0");
    assert_eq!(
        got["trapster_sensor_ring_buffer_size_bytes"],
        stats_ring_size().to_string()
    );
    let checked = promtool(&text);
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(get(&net, "/healthz"), (200, "ok\n".to_owned()));
    let run = sensor.stop();
    assert!(run.clean_exit);
}

#[test]
fn healthz_fails_once_an_output_is_down_past_its_threshold() {
    require_root!();
    let net = TestNet::new();
    // Nothing listens on the sensor namespace's port 9: every write is refused.
    let outputs = json!([
        {"name": "console", "transport": {"type": "terminal"}},
        {"name": "siem", "transport": {"type": "api", "url": "http://127.0.0.1:9/events"}},
    ]);
    let sensor = RunningSensor::start(&net.sensor, &config(&net.sensor_if, outputs, 2), &[]);
    assert_eq!(get(&net, "/healthz"), (200, "ok\n".to_owned()));
    let target = format!("{}:21", net.sensor_ip);
    net.peer.run(move || {
        let s = TcpStream::connect(&target).expect("connect to the FTP decoy");
        let mut banner = String::new();
        BufReader::new(s).read_line(&mut banner).expect("banner");
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = (0, String::new());
    while Instant::now() < deadline {
        last = get(&net, "/healthz");
        if last.0 == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(last.0, 503, "{}", last.1);
    assert!(
        last.1.starts_with("output siem has been failing for "),
        "{}",
        last.1
    );
    assert_eq!(
        last.1.lines().count(),
        1,
        "only the output is a problem: {}",
        last.1
    );
    let (_, metrics) = get(&net, "/metrics");
    let failing: u64 = samples(&metrics)["trapster_sensor_output_failing_seconds{output=\"siem\"}"]
        .parse()
        .unwrap();
    assert!(failing >= 2, "{metrics}");
    let _ = sensor.kill();
}
