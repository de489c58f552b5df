//! Any-port decoys turned on and off by a reload, after the privilege drop: a sensor started
//! as root with `sensor.run_as: nobody` and the decoys off attaches the `sk_lookup` program idle
//! (nothing steered); a SIGHUP with `sensor.decoys` on makes a port nothing listens on answer
//! as the banner service, with its `tcp.connection` event, and a SIGHUP with them off again
//! gives the port back to the kernel (refused), all without a restart.

use std::{os::unix::fs::chown, path::Path, process::Stdio, time::Duration};

use serde_json::{Value, json};
use tests::{
    net::{TestNet, poll_until, run_bounded},
    require_root,
    sensor::RunningSensor,
};

/// `nobody` on Debian.
const NOBODY: u32 = 65_534;
const PORT: &str = "4444";
const LIMIT: Duration = Duration::from_secs(20);

fn config(net: &TestNet, state: &Path, decoys: bool) -> String {
    json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {"ftp": [{"port": 2121}]},
        "logger": {"output": "terminal", "format": "default", "kwargs": {}},
        "sensor": {
            "run_as": "nobody",
            "xdp": {"mode": "auto", "stats_interval_secs": 1},
            "services": {"state_dir": state},
            "decoys": {
                "enabled": decoys,
                "tcp": ["4000-4999"],
                "banner": "ssh",
                "sniff_timeout_ms": 200
            }
        }
    })
    .to_string()
}

fn hangup(sensor: &RunningSensor) {
    // SAFETY: sending SIGHUP to our own child.
    assert_eq!(unsafe { libc::kill(sensor.pid(), libc::SIGHUP) }, 0);
}

/// What a silent client in the peer namespace reads from the port within 2 s, and whether it
/// connected at all.
fn probe(net: &TestNet) -> (bool, String) {
    let mut cmd = net.peer.command("nc");
    cmd.args(["-w", "2", &net.sensor_ip, PORT])
        .stdin(Stdio::null());
    let out = run_bounded(&mut cmd, Duration::from_secs(10));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Polls [`probe`] until `want` holds (bounded by [`LIMIT`]).
fn until(net: &TestNet, want: impl Fn(bool, &str) -> bool) -> bool {
    poll_until(LIMIT, Duration::from_millis(200), || {
        let (connected, read) = probe(net);
        want(connected, &read)
    })
    .is_some()
}

#[test]
fn a_reload_turns_the_any_port_decoys_on_and_off_after_the_privilege_drop() {
    require_root!();
    let net = TestNet::new();
    let dir = RunningSensor::dir_for(&net.sensor);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    for d in [&dir, &state] {
        chown(d, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let sensor = RunningSensor::start(&net.sensor, &config(&net, &state, false), &[]);
    let config_path = sensor.dir().join("trapster.conf");
    assert_eq!(net.sk_lookup_links().len(), 1, "attached idle at start");
    let (connected, _) = probe(&net);
    assert!(!connected, "port {PORT} answered with the decoys off");

    std::fs::write(&config_path, config(&net, &state, true)).unwrap();
    hangup(&sensor);
    let on = until(&net, |_, read| read.starts_with("SSH-2.0-"));
    let steered = sensor.wait_for_events(LIMIT, |events| {
        events.iter().any(|e| {
            e["logtype"] == "tcp.connection" && e["dst_port"] == PORT.parse::<u16>().unwrap()
        })
    });

    std::fs::write(&config_path, config(&net, &state, false)).unwrap();
    hangup(&sensor);
    let off = until(&net, |connected, _| !connected);
    let run = sensor.stop();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        on,
        "the decoys never answered after the reload: {:?}",
        run.stderr
    );
    assert!(
        steered,
        "no tcp.connection for port {PORT}: {:?}",
        run.events
    );
    assert!(
        off,
        "port {PORT} still answered after turning the decoys off"
    );
    assert!(run.clean_exit, "{:?}", run.stderr);
    assert!(
        !run.stderr
            .iter()
            .any(|l| l.contains("restart the sensor to steer")),
        "{:?}",
        run.stderr
    );
    let ssh: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["logtype"] == "ssh.connection")
        .collect();
    assert!(!ssh.is_empty(), "the banner service took the connection");
}
