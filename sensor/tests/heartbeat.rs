//! `sensor.heartbeat`: with `interval_secs` set, `sensor.heartbeat` events reach the outputs
//! through the Event pipeline, naming the version and the decoys that are down; without it,
//! none is sent.

#![expect(
    clippy::unwrap_used,
    reason = "the shared test helpers fail loudly on purpose"
)]

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

fn dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sensor-heartbeat-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `sensor run --capture none` with a file output and the telnet decoy on `busy` (held
/// by the test, so that decoy is down); `heartbeat` is the `sensor.heartbeat` block, if any.
fn start(dir: &Path, busy: u16, heartbeat: Option<Value>) -> Child {
    let mut sensor = json!({"services": {"state_dir": dir.join("state")}});
    if let Some(block) = heartbeat {
        sensor["heartbeat"] = block;
    }
    let config = json!({
        "id": "hb-sensor",
        "interface": "lo",
        "services": {"telnet": [{"port": busy}]},
        "outputs": [{"name": "events", "transport": {"type": "file", "path": dir.join("events.log")}}],
        "sensor": sensor,
    });
    let path = dir.join("sensor.conf");
    std::fs::write(&path, config.to_string()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["run", "--capture", "none", "-c", path.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("events.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn heartbeats(dir: &Path) -> Vec<Value> {
    events(dir)
        .into_iter()
        .filter(|e| e["logtype"] == "sensor.heartbeat")
        .collect()
}

fn stop(child: Child) -> String {
    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn heartbeats_arrive_at_the_configured_interval_naming_version_and_decoys_down() {
    let dir = dir("on");
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = blocker.local_addr().unwrap().port();
    let child = start(&dir, busy, Some(json!({"interval_secs": 1})));
    // One a second: three within fifteen seconds even on a loaded machine.
    let arrived =
        support::wait_until_blocking(Duration::from_secs(15), || heartbeats(&dir).len() >= 3);
    let stderr = stop(child);
    assert!(
        arrived,
        "fewer than 3 heartbeats: {:?}\n{stderr}",
        events(&dir)
    );
    let beats = heartbeats(&dir);
    let first = &beats[0];
    assert_eq!(first["src_ip"], "0.0.0.0");
    assert_eq!(first["dst_port"], 0);
    let extra = &first["extra"];
    assert_eq!(extra["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(extra["degraded_decoys"], json!([format!("telnet:{busy}")]));
    assert_eq!(extra["kernel"], Value::Null);
    assert!(extra["outputs"]["events"]["sent"].is_u64(), "{extra}");
    // Uptime grows from one heartbeat to the next.
    let uptimes: Vec<u64> = beats
        .iter()
        .map(|b| b["extra"]["uptime_secs"].as_u64().unwrap())
        .collect();
    assert!(uptimes.windows(2).all(|w| w[0] <= w[1]), "{uptimes:?}");
    assert!(uptimes[2] > uptimes[0], "{uptimes:?}");
    // The decoy-down event went first, and heartbeats count what was handed over before them.
    assert!(extra["events"].as_u64().unwrap() >= 1, "{extra}");
    drop(blocker);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn no_heartbeat_by_default() {
    let dir = dir("off");
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = blocker.local_addr().unwrap().port();
    let child = start(&dir, busy, None);
    // The decoy-down event shows the output works; heartbeats never come.
    let written = support::wait_until_blocking(Duration::from_secs(15), || {
        events(&dir)
            .iter()
            .any(|e| e["logtype"] == "sensor.degraded")
    });
    std::thread::sleep(Duration::from_millis(2_500));
    let stderr = stop(child);
    assert!(written, "{stderr}");
    assert_eq!(heartbeats(&dir), Vec::<Value>::new());
    drop(blocker);
    let _ = std::fs::remove_dir_all(dir);
}
