//! The any-port decoys give a port back: with every TCP port (1–65535) steered and the
//! listening-port watch at 500 ms, a real server that starts listening on a steered port in
//! the sensor's namespace gets the next connections to it (not the decoy), and once it stops
//! the port is steered to the decoy again, both without a reload.

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::json;
use tests::{
    net::{ChildGuard, TestNet, poll_until, run_bounded},
    require_root,
    sensor::RunningSensor,
};

const PORT: &str = "5555";
const WATCH_MS: u64 = 500;

fn config(net: &TestNet, state: &Path) -> String {
    json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {},
        "logger": {"output": "terminal", "format": "default", "kwargs": {}},
        "sensor": {
            "xdp": {"mode": "auto", "stats_interval_secs": 1},
            "services": {"state_dir": state},
            "decoys": {
                "enabled": true,
                "tcp": ["1-65535"],
                "banner": "ssh",
                "sniff_timeout_ms": 200,
                "watch_ms": WATCH_MS
            }
        }
    })
    .to_string()
}

/// What a silent client in the peer namespace reads from `ip:PORT` within 3 s.
fn greeting(net: &TestNet) -> String {
    let mut cmd = net.peer.command("nc");
    cmd.args(["-w", "3", &net.sensor_ip, PORT])
        .stdin(Stdio::null());
    let out = run_bounded(&mut cmd, Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls [`greeting`] until it starts with `prefix` (bounded by `limit`); the time it took.
fn until_greeting(net: &TestNet, prefix: &str, limit: Duration) -> Option<Duration> {
    poll_until(limit, Duration::from_millis(100), || {
        greeting(net).starts_with(prefix)
    })
}

#[test]
fn a_server_that_starts_listening_on_a_steered_port_gets_it_back_without_a_reload() {
    require_root!();
    let net = TestNet::new();
    let state = std::env::temp_dir().join(format!("anyport-watch-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let sensor = RunningSensor::start(&net.sensor, &config(&net, &state), &[]);

    // Nothing listens: the decoy answers with the banner service.
    assert!(greeting(&net).starts_with("SSH-2.0-"), "decoy first");

    // A real server in the sensor's namespace (bounded to 60 s of accepting).
    let server = "import socket, time\n\
                  s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                  s.bind(('0.0.0.0', 5555)); s.listen(16); s.settimeout(1)\n\
                  end = time.time() + 60\n\
                  while time.time() < end:\n\
                  \x20   try:\n\
                  \x20       c, _ = s.accept()\n\
                  \x20   except socket.timeout:\n\
                  \x20       continue\n\
                  \x20   c.sendall(b'REAL-SERVICE\\n'); c.close()\n";
    let mut real = ChildGuard::spawn(net.sensor.command("python3").args(["-c", server]));
    let took = until_greeting(&net, "REAL-SERVICE", Duration::from_secs(15));
    let took = took.expect("the real server never got its port back from the decoy");
    // Within the watch period, plus the polling and a loaded machine's slack.
    assert!(
        took < Duration::from_millis(WATCH_MS) + Duration::from_secs(5),
        "{took:?}"
    );
    // And it keeps it.
    for _ in 0..3 {
        assert!(greeting(&net).starts_with("REAL-SERVICE"));
    }

    // The server stops: the port is steered to the decoy again.
    real.stop(libc::SIGKILL, Duration::from_secs(5));
    let back = until_greeting(&net, "SSH-2.0-", Duration::from_secs(15));
    assert!(back.is_some(), "the port was never steered again");

    let run = sensor.stop();
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("steered ports follow")),
        "the watch logs what it changed: {:#?}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(&state);
}
