//! The command line as a user meets it, without privileges: `check` and configuration errors.

#![expect(
    clippy::unwrap_used,
    reason = "the shared test helpers fail loudly on purpose"
)]

mod support;

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
    let dir = std::env::temp_dir().join(format!("sensor-cli-{}", uuid::Uuid::new_v4()));
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

/// A port for the sensor's FTP decoy, held (not listening) until the sensor serves it, so that
/// no other test is handed it meanwhile.
fn free_port() -> support::PortHold {
    support::PortHold::new()
}

/// Waits (at most 20 s) until the sensor `child` itself serves FTP on `port`, logs in as
/// root/toor and quits, pipelined in one segment; returns the server's replies.
fn ftp_login(child: &mut std::process::Child, port: support::PortHold) -> Vec<u8> {
    use std::io::{Read as _, Write as _};
    assert!(
        support::wait_serving(
            child,
            &[(port.port(), false)],
            std::time::Duration::from_secs(20)
        ),
        "the FTP service never listened"
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port.port())).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"USER root\r\nPASS toor\r\nQUIT\r\n")
        .expect("send");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply
}

#[test]
fn run_with_services_only_streams_their_events_and_stops_cleanly() {
    let port = free_port();
    let state = std::env::temp_dir().join(format!("sensor-cli-state-{}", std::process::id()));
    let path = temp_file(
        "services.conf",
        &format!(
            r#"{{"id": "cli-sensor", "interface": "lo",
                "services": {{"ftp": [{{"port": {}}}]}},
                "sensor": {{"services": {{"state_dir": "{}"}}}}}}"#,
            port.port(),
            state.display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["run", "--capture", "none", "-c", path.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sensor");
    let reply = ftp_login(&mut child, port);
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
fn strict_run_names_the_service_and_port_it_cannot_bind_and_stops() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = blocker.local_addr().expect("addr").port();
    let path = temp_file(
        "busy.conf",
        &format!(
            r#"{{"interface": "lo", "services": {{"telnet": [{{"port": {port}}}]}},
                "sensor": {{"services": {{"strict": true}}}}}}"#
        ),
    );
    let (ok, _, stderr) = sensor(&["run", "--capture", "none", "-c", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("telnet: cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn a_busy_port_takes_down_its_decoy_only_and_says_so_in_an_event() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = blocker.local_addr().expect("addr").port();
    let port = free_port();
    let state = std::env::temp_dir().join(format!("sensor-cli-down-{}", std::process::id()));
    let path = temp_file(
        "one-busy.conf",
        &format!(
            r#"{{"id": "cli-sensor", "interface": "lo",
                "services": {{"telnet": [{{"port": {busy}}}], "ftp": [{{"port": {}}}]}},
                "sensor": {{"services": {{"state_dir": "{}"}}}}}}"#,
            port.port(),
            state.display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["run", "--capture", "none", "-c", path.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sensor");
    // The other decoy serves while the busy one is down.
    let reply = ftp_login(&mut child, port);
    assert!(reply.ends_with(b"221 Goodbye.\r\n"));
    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGTERM) };
    let out = child.wait_with_output().expect("sensor exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("telnet: cannot listen on 127.0.0.1:{busy}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("another program listens on this port"),
        "{stderr}"
    );
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    let degraded: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["logtype"] == "sensor.degraded")
        .collect();
    assert_eq!(degraded.len(), 1, "{stdout}");
    assert_eq!(degraded[0]["extra"]["decoy"], "telnet");
    assert_eq!(degraded[0]["extra"]["port"], busy);
    assert!(
        degraded[0]["extra"]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{busy}")),
        "{stdout}"
    );
    let logins = events
        .iter()
        .filter(|e| e["logtype"] == "ftp.login")
        .count();
    assert_eq!(logins, 1, "{stdout}");
    drop(blocker);
    let _ = std::fs::remove_dir_all(state);
}

#[test]
fn check_warns_about_a_port_run_could_not_bind() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = blocker.local_addr().expect("addr").port();
    // Held (not listening) during `check`: bindable by the sensor, never handed to another test.
    let free = free_port();
    let path = temp_file(
        "check-busy.conf",
        &format!(
            r#"{{"interface": "lo",
                "services": {{"telnet": [{{"port": {busy}}}], "ftp": [{{"port": {}}}]}}}}"#,
            free.port()
        ),
    );
    let (ok, stdout, stderr) = sensor(&["check", "-c", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    assert!(
        warnings[0].starts_with(&format!(
            "warning: services.telnet: port {busy}: telnet: cannot listen on 127.0.0.1:{busy}"
        )),
        "{stdout}"
    );
    assert!(
        warnings[0].contains("another program listens on this port"),
        "{stdout}"
    );
    assert!(warnings[0].ends_with("this decoy would not start (the others would)"));
    drop(blocker);
    drop(free);
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
                "services": {{"ftp": [{{"port": {}}}]}},
                "outputs": [{{"name": "events", "transport": {{"type": "file", "path": "{}"}}}}]}}"#,
            port.port(),
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
    // (Still held here, so no other test can be listening on it.)
    std::net::TcpListener::bind(("127.0.0.1", port.port())).expect("the FTP port is free again");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(stats["outputs"][0]["name"], "events", "{stats}");
    assert_eq!(stats["events"], 0, "{stats}");
    assert!(stats["services"]["accepted"].is_u64(), "{stats}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_prints_warnings_and_exits_zero() {
    let path = temp_file(
        "warn.conf",
        r#"{"id": "trapster-1", "future_key": 1,
            "services": {"ftp": [{"port": 2121, "bannr": "typo"}], "smtp": [{"port": 25}]},
            "logger": {"name": "JsonLogger", "kwargs": {}}}"#,
    );
    // A limit that holds the default connection cap, whatever the host's.
    let (ok, stdout, stderr) = sensor_with_nofile(4_096, &["check", "-c", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].ends_with("1 emulated services: ftp/2121, 1 outputs)"),
        "{stdout}"
    );
    assert_eq!(
        lines[1..],
        [
            "warning: future_key: unknown top-level key, ignored",
            "warning: services.smtp: protocol not emulated by this version, its instances are ignored",
            "warning: services.ftp[0].bannr: unknown key, ignored",
        ],
        "{stdout}"
    );
}

#[test]
fn check_refuses_bad_ports_urls_and_file_outputs_by_field() {
    for (name, text, needle) in [
        (
            "port0.conf",
            r#"{"services": {"ssh": [{"port": 0}]}}"#,
            "field `services.ssh[0].port`: port 0 is not a port to listen on",
        ),
        (
            "url.conf",
            r#"{"outputs": [{"transport": {"type": "api", "url": "ftp://collector.example/e"}}]}"#,
            "field `outputs[0].transport.url`: scheme `ftp` is not http or https",
        ),
        (
            "dir.conf",
            r#"{"outputs": [{"transport": {"type": "file", "path": "/nonexistent-sensor-dir/e.log"}}]}"#,
            "field `outputs[0].transport.path`: directory /nonexistent-sensor-dir does not exist",
        ),
        (
            "facility.conf",
            r#"{"outputs": [{"transport": {"type": "syslog", "host": "127.0.0.1", "facility": 99}}]}"#,
            "field `outputs[0].transport.facility`: 99 is outside 0..=23",
        ),
    ] {
        let path = temp_file(name, text);
        let (ok, stdout, stderr) = sensor(&["check", "-c", path.to_str().unwrap()]);
        assert!(!ok, "{name}: {stdout}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
        assert!(
            stderr.contains(needle),
            "{name}: missing `{needle}` in: {stderr}"
        );
    }
}

/// Runs `sensor ARGS` with the open-file limit (soft and hard) lowered to `limit`, as on a host
/// whose default is 1,024; lowering needs no privilege.
fn sensor_with_nofile(limit: u64, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_sensor"))
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

#[test]
fn a_connection_cap_the_open_file_limit_cannot_hold_fails_check_and_run() {
    let path = temp_file("nofile.conf", r#"{"services": {}}"#);
    let path = path.to_str().unwrap();
    let (ok, stdout, stderr) = sensor_with_nofile(1_024, &["check", "-c", path]);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains(
            "field `sensor.services.max_connections`: 2048 connections need 2304 open files \
             (256 kept for outputs, state, listeners and new sessions), but the open-file \
             limit (RLIMIT_NOFILE) is 1024"
        ),
        "{stderr}"
    );
    // A cap that fits passes.
    let small = temp_file(
        "nofile-small.conf",
        r#"{"sensor": {"services": {"max_connections": 700}}, "services": {}}"#,
    );
    let (ok, _, stderr) = sensor_with_nofile(1_024, &["check", "-c", small.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = sensor_with_nofile(1_024, &["run", "-c", path, "--capture", "none"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(
            "field `sensor.services.max_connections`: 2048 connections need 2304 open files"
        ),
        "{stderr}"
    );
    // Within the limit: no warning.
    let (ok, stdout, stderr) = sensor_with_nofile(4_096, &["check", "-c", path]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

#[test]
fn check_refuses_a_file_over_the_size_cap() {
    let path = temp_file("huge.conf", "");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(16 * 1024 * 1024 + 1)
        .unwrap();
    let (ok, _, stderr) = sensor(&["check", "-c", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("16777217 bytes, larger than the 16777216 bytes a configuration may have"),
        "{stderr}"
    );
}

#[test]
fn shutdown_meets_its_deadline_with_a_receiver_that_never_reads() {
    shutdown_deadline(true, |hole_port| {
        format!(
            r#"{{"type": "api", "url": "http://127.0.0.1:{hole_port}/events", "timeout_secs": 60}}"#
        )
    });
}

#[test]
fn shutdown_meets_its_deadline_with_a_redis_server_that_never_answers() {
    // A "redis server" that accepts and never replies: the output waits on its commands.
    shutdown_deadline(true, |hole_port| {
        format!(
            r#"{{"type": "redis", "host": "127.0.0.1", "port": {hole_port}, "command": "rpush", "key": "events"}}"#
        )
    });
}

#[test]
fn shutdown_meets_its_deadline_with_a_redis_output_that_cannot_connect() {
    // Nothing listens: every connection is refused and the output retries until stopped.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    shutdown_deadline(false, move |_| {
        format!(
            r#"{{"type": "redis", "host": "127.0.0.1", "port": {closed_port}, "command": "rpush", "key": "events"}}"#
        )
    });
}

/// Runs the sensor with one output whose transport `transport(hole_port)` gives, where
/// `hole_port` accepts connections and never reads them; after an FTP login (events queued)
/// and, if `connects`, once the output holds a connection to the hole, SIGTERM must end the
/// sensor within its documented deadline (sessions 2 s, outputs 5 s) with every received event
/// accounted as dropped in the final stats.
fn shutdown_deadline(connects: bool, transport: impl FnOnce(u16) -> String) {
    // A receiver that accepts connections and never reads them (held until the test ends).
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole_port = hole.local_addr().expect("addr").port();
    hole.set_nonblocking(true).expect("nonblocking");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepting = accepted.clone();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < until
        {
            match hole.accept() {
                Ok((c, _)) => {
                    conns.push(c);
                    accepting.store(conns.len(), std::sync::atomic::Ordering::Relaxed);
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        conns.len()
    });
    let port = free_port();
    let dir = std::env::temp_dir().join(format!(
        "sensor-cli-deadline-{}-{hole_port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let stats = dir.join("stats.json");
    let config = temp_file(
        &format!("deadline-{hole_port}.conf"),
        &format!(
            r#"{{"id": "s1", "interface": "lo",
                "services": {{"ftp": [{{"port": {}}}]}},
                "sensor": {{"services": {{"state_dir": "{}"}}}},
                "outputs": [{{"name": "dead", "transport": {}}}]}}"#,
            port.port(),
            dir.join("state").display(),
            transport(hole_port)
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["run", "--capture", "none", "-c", config.to_str().unwrap()])
        .arg("--stats-file")
        .arg(&stats)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sensor");
    ftp_login(&mut child, port);
    if connects {
        // Once the receiver holds a connection, the output is stuck in a request it never
        // reads.
        assert!(
            support::wait_until_blocking(std::time::Duration::from_secs(20), || {
                accepted.load(std::sync::atomic::Ordering::Relaxed) >= 1
            }),
            "the output never connected to the receiver"
        );
    }
    let signalled = std::time::Instant::now();
    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGTERM) };
    let out = child.wait_with_output().expect("sensor exits");
    let took = signalled.elapsed();
    eprintln!("shutdown with a dead receiver took {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Sessions get 2 s and outputs 5 s, then in-flight writes are abandoned and counted.
    assert!(
        took < std::time::Duration::from_secs(10),
        "shutdown took {took:?} with a dead receiver"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let dead = &stats["outputs"][0];
    let received = dead["received"].as_u64().unwrap();
    assert!(received >= 4, "{stats}");
    assert_eq!(dead["sent"], 0, "{stats}");
    assert_eq!(dead["dropped"].as_u64(), Some(received), "{stats}");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let reached = held.join().unwrap();
    assert!(!connects || reached >= 1, "the sensor reached the receiver");
    std::fs::remove_dir_all(&dir).ok();
}
