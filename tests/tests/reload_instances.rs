//! Configuration reload on SIGHUP, the parts that need privileges: the libpcap capture
//! (`--capture pcap`) takes a new whitelist while it runs, and after the privilege drop a
//! changed decoy on a port below 1024 keeps serving (its bound socket is taken over) while a
//! new one below 1024 is refused until a restart.

use std::{
    io::{BufRead as _, BufReader},
    net::TcpStream,
    os::unix::fs::chown,
    time::Duration,
};

use serde_json::{Value, json};
use tests::{
    net::{TestNet, run_bounded},
    require_root,
    sensor::{RunningSensor, test_config},
};

/// `nobody` on Debian: exists everywhere, owns nothing.
const NOBODY: u32 = 65_534;

/// A SYN scan of `ports` from the peer namespace, bounded to a minute.
fn scan(net: &TestNet, ports: &str) {
    let mut cmd = net.peer.command("nmap");
    cmd.args(["-n", "-Pn", "-sS", "--max-retries", "1", "-T4", "-p", ports])
        .arg(&net.sensor_ip);
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "nmap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hangup(sensor: &RunningSensor) {
    // SAFETY: sending SIGHUP to our own child.
    assert_eq!(unsafe { libc::kill(sensor.pid(), libc::SIGHUP) }, 0);
}

fn portscans_from(events: &[Value], src: &str) -> usize {
    events
        .iter()
        .filter(|e| e["logtype"] == "portscan.query" && e["src_ip"] == src)
        .count()
}

fn pcap_allow_listed(stats: &Value) -> u64 {
    stats["pcap"]["allow_listed"].as_u64().unwrap_or(0)
}

#[test]
fn the_pcap_capture_applies_a_reloaded_whitelist_while_it_runs() {
    require_root!();
    let net = TestNet::new();
    let sensor = RunningSensor::start(
        &net.sensor,
        &test_config(&net.sensor_if, &[]),
        &["--capture", "pcap"],
    );
    let config_path = sensor.dir().join("trapster.conf");

    // Before: the peer's scan is reported.
    scan(&net, "1-40");
    assert!(
        sensor.wait_for_events(Duration::from_secs(20), |e| {
            portscans_from(e, &net.peer_ip) == 1
        }),
        "the first scan was not reported: {:?}",
        sensor.events_now()
    );

    // A whitelist naming the peer: every probe of its next scan arrives after the reload was
    // logged, so every one is allow-listed (40 ports, at least one SYN each).
    let allowed = format!("{}/32", net.peer_ip);
    std::fs::write(
        &config_path,
        test_config(&net.sensor_if, &[allowed.as_str()]),
    )
    .unwrap();
    hangup(&sensor);
    assert!(
        sensor.wait_for_log(Duration::from_secs(20), "Configuration reloaded.", 1),
        "the reload never finished"
    );
    let before = sensor.stats_now().as_ref().map_or(0, pcap_allow_listed);
    scan(&net, "41-80");
    let stats = sensor.wait_for_stats(Duration::from_secs(10), |s| {
        pcap_allow_listed(s) >= before + 40
    });
    assert!(
        pcap_allow_listed(&stats) >= before + 40,
        "the new whitelist did not apply to the libpcap capture: {stats}"
    );

    // Emptied again: the peer's next scan is reported (the list was replaced, not merged).
    std::fs::write(&config_path, test_config(&net.sensor_if, &[])).unwrap();
    hangup(&sensor);
    assert!(
        sensor.wait_for_log(Duration::from_secs(20), "Configuration reloaded.", 2),
        "the second reload never finished"
    );
    scan(&net, "81-120");
    assert!(
        sensor.wait_for_events(Duration::from_secs(20), |e| {
            portscans_from(e, &net.peer_ip) == 2
        }),
        "the scan after the whitelist was emptied was not reported: {:?}",
        sensor.events_now()
    );
    let run = sensor.stop();
    assert!(run.clean_exit, "{:#?}", run.stderr);
    // The whitelisted scan never became an event: two scans reported out of three.
    assert_eq!(
        portscans_from(&run.events, &net.peer_ip),
        2,
        "{:#?}",
        run.events
    );
    let reported: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["logtype"] == "portscan.query" && e["src_ip"] == net.peer_ip.as_str())
        .collect();
    let ports = |e: &Value| {
        e["extra"]["ports"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_u64).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(ports(reported[0]).iter().all(|p| (1..=40).contains(p)));
    assert!(ports(reported[1]).iter().all(|p| (81..=120).contains(p)));
    let stderr = run.stderr.join("\n");
    assert!(stderr.contains("whitelist_ips"), "{stderr}");
}

/// A service block on the test interface, the state kept in the run's folder.
fn services_config(net: &TestNet, services: &Value) -> String {
    json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": services,
        "logger": {"output": "terminal", "format": "default", "kwargs": {}},
        "sensor": {
            "run_as": "nobody",
            "services": {"state_dir": RunningSensor::dir_for(&net.sensor).join("state")},
        },
    })
    .to_string()
}

/// The first line the sensor's `port` sends to a client in the peer namespace.
fn first_line(net: &TestNet, port: u16) -> std::io::Result<String> {
    let target = format!("{}:{port}", net.sensor_ip);
    net.peer.run(move || {
        let stream = TcpStream::connect(&target)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line)
    })
}

#[test]
fn after_the_privilege_drop_a_changed_decoy_below_1024_keeps_its_socket_and_a_new_one_waits() {
    require_root!();
    let net = TestNet::new();
    let dir = RunningSensor::dir_for(&net.sensor);
    std::fs::create_dir_all(&dir).unwrap();
    chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let sensor = RunningSensor::start(
        &net.sensor,
        &services_config(&net, &json!({"ftp": [{"port": 21, "banner": "before"}]})),
        &["--capture", "none"],
    );
    assert_eq!(first_line(&net, 21).unwrap(), "220 before\r\n");

    // FTP changes on port 21, Telnet is new on port 23: the process has no capability left.
    std::fs::write(
        sensor.dir().join("trapster.conf"),
        services_config(
            &net,
            &json!({"ftp": [{"port": 21, "banner": "after"}], "telnet": [{"port": 23}]}),
        ),
    )
    .unwrap();
    hangup(&sensor);
    assert!(
        sensor.wait_for_log(Duration::from_secs(20), "Configuration reloaded.", 1),
        "the reload never finished"
    );
    assert_eq!(first_line(&net, 21).unwrap(), "220 after\r\n");
    let refused = first_line(&net, 23).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    let run = sensor.stop();
    assert!(run.clean_exit, "{:#?}", run.stderr);
    let warning = run
        .stderr
        .iter()
        .find(|l| l.contains("New decoy on a privileged port not started"))
        .unwrap_or_else(|| panic!("no warning: {:#?}", run.stderr));
    assert!(warning.contains("port=23"), "{warning}");
    assert!(warning.contains("CAP_NET_BIND_SERVICE"), "{warning}");
    assert!(warning.contains("restart the sensor"), "{warning}");
    let degraded: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["logtype"] == "sensor.degraded")
        .collect();
    assert_eq!(degraded.len(), 1, "{:#?}", run.events);
    assert_eq!(degraded[0]["extra"]["decoy"], "telnet");
    assert_eq!(degraded[0]["extra"]["port"], 23);
    let reason = degraded[0]["extra"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("CAP_NET_BIND_SERVICE") && reason.contains("restart the sensor"),
        "{reason}"
    );
}
