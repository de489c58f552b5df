//! Configuration reload on SIGHUP, without privileges (`--capture none`): new outputs take
//! over, a decoy whose block did not change keeps its listener and its open sessions, a
//! changed block moves it, and a broken file is refused while the running configuration stays.

#![expect(
    clippy::unwrap_used,
    reason = "the shared test helpers fail loudly on purpose"
)]

mod support;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

fn config(dir: &Path, ftp: u16, events: &str) -> String {
    json!({
        "id": "reload-sensor",
        "interface": "lo",
        "services": {"ftp": [{"port": ftp}]},
        "outputs": [{"name": "events", "transport": {"type": "file", "path": dir.join(events)}}],
        "sensor": {"services": {"state_dir": dir.join("state")}},
    })
    .to_string()
}

fn logins(dir: &Path, events: &str) -> usize {
    std::fs::read_to_string(dir.join(events))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["logtype"] == "ftp.login")
        .count()
}

/// The `ftp.login` events of `events` whose line holds `needle` (a password only one login
/// used).
fn logins_with(dir: &Path, events: &str, needle: &str) -> usize {
    std::fs::read_to_string(dir.join(events))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["logtype"] == "ftp.login")
        .count()
}

fn login(port: u16) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"USER root\r\nPASS toor\r\nQUIT\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply
}

fn hangup(child: &Child) {
    // SAFETY: sending SIGHUP to our own child.
    assert_eq!(
        unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGHUP) },
        0
    );
}

/// The sensor with `path`, its log going to `log` (read while it runs).
fn start(path: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["run", "--capture", "none", "-c", path.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// How many times the sensor's log at `log` holds `needle` now.
fn logged(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log).map_or(0, |text| text.matches(needle).count())
}

#[test]
fn sighup_swaps_outputs_keeps_unchanged_decoys_moves_changed_ones_and_refuses_a_broken_file() {
    let dir = std::env::temp_dir().join(format!("sensor-reload-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (first, second) = (support::PortHold::new(), support::PortHold::new());
    let (p1, p2) = (first.port(), second.port());
    let path = dir.join("sensor.conf");
    std::fs::write(&path, config(&dir, p1, "a.log")).unwrap();
    let log = dir.join("sensor.log");
    let mut child = start(&path, &log);
    drop(first);
    assert!(
        support::wait_serving(&mut child, &[(p1, false)], Duration::from_secs(20)),
        "FTP never listened"
    );
    assert!(login(p1).ends_with(b"221 Goodbye.\r\n"));
    assert!(support::wait_until_blocking(
        Duration::from_secs(10),
        || logins(&dir, "a.log") == 1
    ));

    // Only the output changes: a session open across the reload goes on, later events go to
    // the new file.
    let mut open = TcpStream::connect(("127.0.0.1", p1)).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut banner = [0u8; 64];
    let n = open.read(&mut banner).unwrap();
    assert!(banner[..n].starts_with(b"220"), "{banner:?}");
    std::fs::write(&path, config(&dir, p1, "b.log")).unwrap();
    hangup(&child);
    assert!(
        support::wait_until_blocking(Duration::from_secs(15), || {
            login(p1);
            logins(&dir, "b.log") >= 1
        }),
        "events never reached the new output"
    );
    // Logins made while the swap was under way may still land in the old output: the one
    // made after the new output got events, by the session opened before the reload, must
    // land in the new one only.
    open.write_all(b"USER root\r\nPASS after-the-swap\r\nQUIT\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = open.read_to_end(&mut rest);
    assert!(
        rest.ends_with(b"221 Goodbye.\r\n"),
        "the open session was dropped: {}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        support::wait_until_blocking(Duration::from_secs(10), || {
            logins_with(&dir, "b.log", "after-the-swap") == 1
        }),
        "the open session's login never reached the new output"
    );
    assert_eq!(
        logins_with(&dir, "a.log", "after-the-swap"),
        0,
        "the old output got later events"
    );

    // The decoy's own block changes: it moves to the new port.
    drop(second);
    std::fs::write(&path, config(&dir, p2, "b.log")).unwrap();
    hangup(&child);
    assert!(
        support::wait_serving(&mut child, &[(p2, false)], Duration::from_secs(20)),
        "the moved decoy never listened"
    );
    assert!(support::wait_until_blocking(
        Duration::from_secs(10),
        || { !support::process_listens(child.id(), p1, false) }
    ));

    // A broken file is refused: the decoy keeps serving on the port in force.
    std::fs::write(&path, r#"{"services": {"ftp": [{"port": "not a port"}]}}"#).unwrap();
    hangup(&child);
    assert!(
        support::wait_until_blocking(Duration::from_secs(10), || logged(
            &log,
            "Configuration reload refused; the running configuration stays."
        ) == 1),
        "the broken file was never refused"
    );
    let before = logins(&dir, "b.log");
    assert!(login(p2).ends_with(b"221 Goodbye.\r\n"));
    assert!(support::wait_until_blocking(
        Duration::from_secs(10),
        || { logins(&dir, "b.log") == before + 1 }
    ));

    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("Configuration reloaded.").count(),
        2,
        "{stderr}"
    );
    assert!(
        stderr.contains("Configuration reload refused; the running configuration stays."),
        "{stderr}"
    );
    assert!(stderr.contains("services.ftp[0].port"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
