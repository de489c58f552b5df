//! The command line as a user meets it, without privileges: `check` and configuration errors.

use std::process::Command;

fn sensor(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run sensor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sensor-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

#[test]
fn check_accepts_the_community_file() {
    let path = temp_file(
        "ok.conf",
        r#"{"id": "trapster-1", "interface": "", "whitelist_ips": ["127.0.0.1"],
            "services": {"ftp": [{"port": 2121, "banner": "Microsoft FTP Service"}]},
            "logger": {"name": "JsonLogger", "kwargs": {}}}"#,
    );
    let (ok, stdout, stderr) = sensor(&["check", "-c", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(stdout.contains("1 emulated services: ftp/2121"), "{stdout}");
}

#[test]
fn check_names_field_line_and_column() {
    let path = temp_file(
        "bad.conf",
        "{\n  \"id\": \"s\",\n  \"sensor\": {\n    \"xdp\": {\"mode\": \"turbo\"}\n  }\n}\n",
    );
    let (ok, stdout, stderr) = sensor(&["check", "-c", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    for needle in ["bad.conf", "sensor.xdp.mode", "turbo", "line 4", "column"] {
        assert!(stderr.contains(needle), "missing `{needle}` in: {stderr}");
    }
}

#[test]
fn check_reports_a_missing_file() {
    let (ok, _, stderr) = sensor(&["check", "-c", "/nonexistent/trapster.conf"]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/trapster.conf"), "{stderr}");
}

#[test]
fn run_without_an_interface_says_how_to_name_one() {
    let (ok, stdout, stderr) = sensor(&["run"]);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(stderr.contains("-i IFACE"), "{stderr}");
    assert!(stderr.contains("--capture none"), "{stderr}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn run_with_services_only_streams_their_events_and_stops_cleanly() {
    use std::io::{Read as _, Write as _};
    let port = free_port();
    let state = std::env::temp_dir().join(format!("sensor-cli-state-{}", std::process::id()));
    let path = temp_file(
        "services.conf",
        &format!(
            r#"{{"id": "cli-sensor", "interface": "lo",
                "services": {{"ftp": [{{"port": {port}}}]}},
                "sensor": {{"services": {{"state_dir": "{}"}}}}}}"#,
            state.display()
        ),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["run", "--capture", "none", "-c", path.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sensor");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut stream = loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the FTP service never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"USER root\r\nPASS toor\r\nQUIT\r\n")
        .expect("send");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert!(reply.ends_with(b"221 Goodbye.\r\n"));
    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGTERM) };
    let out = child.wait_with_output().expect("sensor exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    let logtypes: Vec<&str> = events
        .iter()
        .filter_map(|e| e["logtype"].as_str())
        .collect();
    assert_eq!(
        logtypes,
        [
            "ftp.connection",
            "ftp.data",
            "ftp.data",
            "ftp.login",
            "ftp.data"
        ],
        "{stdout}"
    );
    assert_eq!(events[3]["extra"]["username"], "root");
    assert_eq!(events[3]["extra"]["password"], "toor");
    assert_eq!(events[3]["device"], "cli-sensor");
    let _ = std::fs::remove_dir_all(state);
}

#[test]
fn run_names_the_service_and_port_it_cannot_bind() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = blocker.local_addr().expect("addr").port();
    let path = temp_file(
        "busy.conf",
        &format!(r#"{{"interface": "lo", "services": {{"telnet": [{{"port": {port}}}]}}}}"#),
    );
    let (ok, _, stderr) = sensor(&["run", "--capture", "none", "-c", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("telnet: cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn a_capture_that_cannot_start_still_takes_the_ordered_shutdown() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sensor-cli-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (events, stats) = (dir.join("events.ndjson"), dir.join("stats.json"));
    let config = temp_file(
        "capture-error.conf",
        &format!(
            r#"{{"id": "s1", "interface": "",
                "services": {{"ftp": [{{"port": {port}}}]}},
                "outputs": [{{"name": "events", "transport": {{"type": "file", "path": "{}"}}}}]}}"#,
            events.display()
        ),
    );
    let (ok, _, stderr) = sensor(&[
        "run",
        "-c",
        config.to_str().unwrap(),
        "--capture",
        "pcap",
        "-i",
        "sensor-none0",
        "--stats-file",
        stats.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("sensor-none0"), "{stderr}");
    assert!(stderr.contains("Sensor stopped."), "{stderr}");
    // The shutdown ran: the services let go of their port, and the final counters were written.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the FTP port is free again");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(stats["outputs"][0]["name"], "events", "{stats}");
    assert_eq!(stats["events"], 0, "{stats}");
    assert!(stats["services"]["accepted"].is_u64(), "{stats}");
    std::fs::remove_dir_all(&dir).ok();
}
