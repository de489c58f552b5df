//! A dead output never blinds the sensor. The real `sensor` binary (XDP and the FTP service)
//! runs in one namespace with two outputs under the default full-queue policy: an `api`
//! output whose receiver accepts TCP connections and never reads, and a `file` output. From
//! the peer namespace a real `nmap -sS` of 1,000 ports and 500 real FTP logins (`hydra`) arrive
//! during the outage. The file output gets the `portscan.query` and every `ftp.login` at its
//! normal latency; the dead output's drops are counted exactly; once a working receiver takes
//! the port, `sensor.degraded` arrives there with that count.

use std::{
    collections::BTreeSet,
    io::Write as _,
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{
    net::{ChildGuard, TestNet, run_bounded},
    require_root,
    sensor::RunningSensor,
};

const LOGINS: usize = 500;

/// Accepts connections on `listener` and never reads them, until `stop` (or 10 minutes).
fn blackhole(listener: TcpListener, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        listener.set_nonblocking(true).expect("nonblocking");
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(600);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((conn, _)) => held.push(conn),
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
        held.len()
    })
}

/// Lines of the file output parsed as JSON (a partly written last line is skipped).
fn read_events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn output<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == name))
        .unwrap_or_else(|| panic!("no output {name} in {stats}"))
}

/// A working HTTP receiver (Python's http.server) in the sensor namespace on `port`: every
/// request body is appended to `log`, one line per event of the batch.
fn receiver(net: &TestNet, port: u16, log: &std::path::Path) -> ChildGuard {
    let script = format!(
        r#"
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open({log:?}, "ab") as f:
            for line in body.splitlines():
                if line.strip():
                    f.write(line.strip() + b"\n")
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H).serve_forever()
"#,
        log = log.display().to_string()
    );
    ChildGuard::spawn(net.sensor.command("python3").args(["-c", &script]))
}

#[test]
fn a_blackholed_output_drops_and_counts_while_the_file_output_gets_everything() {
    require_root!();
    let net = TestNet::new();
    let listener = net
        .sensor
        .run(|| TcpListener::bind("127.0.0.1:0").expect("bind blackhole"));
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let hole = blackhole(listener, stop.clone());

    let dir = std::env::temp_dir().join(format!("outage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let events_path = dir.join("events.ndjson");
    let received_path = dir.join("received.ndjson");
    let config = json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {"ftp": [{"port": 21}]},
        "outputs": [
            {"name": "dead", "queue_size": 256,
             "transport": {"type": "api", "url": format!("http://127.0.0.1:{port}/events"),
                           "batch": "ndjson", "timeout_secs": 2}},
            {"name": "file", "transport": {"type": "file", "path": events_path}}
        ],
        "sensor": {
            "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1},
            "portscan": {"threshold": 3, "idle_timeout_ms": 2000, "max_window_secs": 120},
            "services": {"state_dir": dir.join("state"), "max_connections_per_source": 64,
                         // hydra reuses its connections: ~130 attempts and 3 events per attempt each
                         "max_events_per_session": 2048}
        }
    })
    .to_string();
    let sensor = RunningSensor::start(&net.sensor, &config, &[]);

    // A real SYN scan of 1,000 ports.
    let mut nmap = net.peer.command("nmap");
    nmap.args([
        "-n",
        "-Pn",
        "-sS",
        "--max-retries",
        "1",
        "-T4",
        "-p",
        "1-1000",
    ])
    .arg(&net.sensor_ip);
    let out = run_bounded(&mut nmap, Duration::from_secs(180));
    assert!(
        out.status.success(),
        "nmap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scan_done = Instant::now();

    // 500 real FTP logins with distinct passwords.
    let passwords: BTreeSet<String> = (0..LOGINS).map(|i| format!("outage-{i:04}")).collect();
    let list = dir.join("passwords.txt");
    let mut f = std::fs::File::create(&list).expect("password list");
    for p in &passwords {
        writeln!(f, "{p}").expect("write");
    }
    drop(f);
    let mut hydra = net.peer.command("hydra");
    hydra
        .args(["-l", "admin", "-P"])
        .arg(&list)
        .args(["-t", "4", "-I", "-q"])
        .arg(format!("ftp://{}", net.sensor_ip));
    let out = run_bounded(&mut hydra, Duration::from_secs(300));
    let logins_done = Instant::now();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 valid password"),
        "hydra: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The file output has everything at its normal latency, the dead output notwithstanding.
    let deadline = logins_done + Duration::from_secs(5);
    let (scans, logins) = loop {
        let events = read_events(&events_path);
        let scans: Vec<Value> = events
            .iter()
            .filter(|e| e["logtype"] == "portscan.query")
            .cloned()
            .collect();
        let logins: BTreeSet<String> = events
            .iter()
            .filter(|e| e["logtype"] == "ftp.login")
            .filter_map(|e| e["extra"]["password"].as_str().map(str::to_owned))
            .collect();
        if (logins.is_superset(&passwords) && !scans.is_empty()) || Instant::now() > deadline {
            break (scans, logins);
        }
        thread::sleep(Duration::from_millis(100));
    };
    if !logins.is_superset(&passwords) {
        thread::sleep(Duration::from_secs(10));
        let later = read_events(&events_path)
            .iter()
            .filter(|e| e["logtype"] == "ftp.login")
            .count();
        panic!(
            "{} of {LOGINS} logins reached the file within 5 s ({later} ftp.login events 10 s \
             later); hydra: {}",
            logins.intersection(&passwords).count(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(!scans.is_empty(), "no portscan.query in the file");
    let ports: BTreeSet<&str> = scans
        .iter()
        .flat_map(|s| s["extra"]["ports"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ports.len(), 1000, "every scanned port is reported");
    assert!(
        scan_done.elapsed() < Duration::from_secs(600),
        "bounded test"
    );

    // During the outage the dead output has dropped, and counted, what its queue could not hold.
    let stats = loop {
        let stats = sensor.stats_now().expect("stats file");
        if output(&stats, "dead")["dropped"].as_u64().unwrap_or(0) > 0
            || logins_done.elapsed() > Duration::from_secs(10)
        {
            break stats;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let dead = output(&stats, "dead");
    assert!(dead["dropped"].as_u64().unwrap_or(0) > 0, "{stats}");
    assert_eq!(dead["sent"], 0, "{stats}");
    assert_eq!(output(&stats, "file")["dropped"], 0, "{stats}");

    // Recovery: a working receiver takes the port.
    stop.store(true, Ordering::Relaxed);
    let held = hole.join().expect("blackhole");
    assert!(held > 0, "the sensor connected to the dead receiver");
    let _receiver = receiver(&net, port, &received_path);
    let deadline = Instant::now() + Duration::from_secs(90);
    let degraded = loop {
        let found = read_events(&received_path)
            .into_iter()
            .find(|e| e["logtype"] == "sensor.degraded");
        if found.is_some() || Instant::now() > deadline {
            break found;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let degraded = degraded.expect("sensor.degraded reached the recovered receiver");
    assert_eq!(degraded["extra"]["output"], "dead");

    let run = sensor.stop();
    assert!(run.clean_exit);
    let file = output(&run.stats, "file");
    let dead = output(&run.stats, "dead");
    let received = read_events(&received_path);
    let delivered = received
        .iter()
        .filter(|e| e["logtype"] != "sensor.degraded")
        .count() as u64;
    let degraded_count = received
        .iter()
        .filter(|e| e["logtype"] == "sensor.degraded")
        .count();
    assert_eq!(degraded_count, 1, "one outage, one report");
    let dropped = dead["dropped"].as_u64().expect("dropped");
    // Exact accounting: every event the file got was either delivered to the receiver or
    // counted as dropped by the dead output, and the report names that count.
    assert_eq!(
        delivered + dropped,
        file["sent"].as_u64().expect("sent"),
        "{}",
        run.stats
    );
    assert_eq!(
        degraded["extra"]["dropped"].as_u64(),
        Some(dropped),
        "{degraded}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
