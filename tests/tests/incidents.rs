//! Incident lifecycle end to end: the real `sensor` binary (XDP and the SSH service) in one
//! namespace; from the peer namespace a real `nmap` SYN scan, then a real `ssh` login (sshpass).
//! One incident is created by the scan (high) and updated once, with a higher severity
//! (critical: a login after a scan), with the right `events_count`.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{
    net::{TestNet, run_bounded},
    require_root,
    sensor::RunningSensor,
};

#[test]
fn scan_then_ssh_login_gives_one_incident_created_then_escalated() {
    require_root!();
    let net = TestNet::new();
    let state = std::env::temp_dir().join(format!("incident-state-{}", std::process::id()));
    let config = json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {"ssh": [{"port": 22}]},
        "outputs": [{"transport": {"type": "terminal"}, "receive": "both"}],
        "sensor": {
            "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1},
            "portscan": {"threshold": 3, "idle_timeout_ms": 2000, "max_window_secs": 120},
            "services": {"state_dir": state}
        }
    })
    .to_string();
    let idle =
        serde_json::from_str::<Value>(&config).unwrap()["sensor"]["portscan"]["idle_timeout_ms"]
            .as_u64()
            .unwrap();
    let sensor = RunningSensor::start(&net.sensor, &config, &[]);

    let mut nmap = net.peer.command("nmap");
    nmap.args([
        "-n",
        "-Pn",
        "-sS",
        "--max-retries",
        "1",
        "-T4",
        "-p",
        "1-100",
    ])
    .arg(&net.sensor_ip);
    let out = run_bounded(&mut nmap, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "nmap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The login comes once the scan has ended (idle for the configured timeout) and been
    // reported: a wait bounded by that timeout plus a margin.
    let stats = sensor.wait_for_stats(Duration::from_millis(idle) + Duration::from_secs(10), |s| {
        s["merger"]["reports"].as_u64().unwrap_or(0) >= 1
    });
    assert!(
        stats["merger"]["reports"].as_u64().unwrap_or(0) >= 1,
        "the scan was never reported: {stats}"
    );

    let known = std::env::temp_dir().join(format!("incident-known-{}", std::process::id()));
    let mut ssh = net.peer.command("sshpass");
    ssh.args([
        "-p",
        "Winter2025!",
        "ssh",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
    ])
    .arg(format!("UserKnownHostsFile={}", known.display()))
    .args([
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "NumberOfPasswordPrompts=1",
    ])
    .args(["-o", "ConnectTimeout=10"])
    .arg(format!("admin@{}", net.sensor_ip))
    .arg("true");
    let out = run_bounded(&mut ssh, Duration::from_secs(60));
    assert!(!out.status.success(), "the login is refused");
    // Stop once the login has escalated the incident, not after a guessed pause.
    assert!(
        sensor.wait_for_events(Duration::from_secs(20), |events| {
            events.iter().any(|e| e["action"] == "incident_updated")
        }),
        "no incident_updated: {:#?}",
        sensor.events_now()
    );
    let run = sensor.stop();
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_file(&known);
    assert!(run.clean_exit);

    let from_peer = |e: &&Value| e["src_ip"] == net.peer_ip.as_str();
    let incidents: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["type"] == 2)
        .filter(from_peer)
        .collect();
    let actions: Vec<&str> = incidents
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["incident_created", "incident_updated"],
        "{:#?}",
        run.events
    );
    let (created, updated) = (incidents[0], incidents[1]);
    assert_eq!(created["channel"], "portscan");
    assert_eq!(created["severity"], "high");
    assert_eq!(created["description"], "Port scan detected");
    assert_eq!(created["events_count"], 1);
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(updated["severity"], "critical");
    assert_eq!(updated["channel"], "ssh");
    assert_eq!(updated["category"], "login");
    assert_eq!(
        updated["description"],
        "Login attempt on SSH after a port scan"
    );
    assert_eq!(updated["device"]["id"], "it-sensor");
    // Every event from the peer up to the update is counted.
    let position = run
        .events
        .iter()
        .position(|e| std::ptr::eq(e, updated))
        .unwrap();
    let counted = run.events[..position]
        .iter()
        .filter(|e| e.get("logtype").is_some())
        .filter(from_peer)
        .count();
    assert_eq!(updated["events_count"], counted, "{:#?}", run.events);
    let logtypes: Vec<&str> = run.events[..position]
        .iter()
        .filter(from_peer)
        .filter_map(|e| e["logtype"].as_str())
        .collect();
    assert!(
        logtypes.contains(&"portscan.query") && logtypes.contains(&"ssh.login"),
        "{logtypes:?}"
    );
}
