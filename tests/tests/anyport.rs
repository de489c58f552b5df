//! Any-port decoys (`sensor.decoys`, the `sk_lookup` program): with TCP ports 2000–9999
//! steered, real clients in the peer namespace reach the emulated services on ports nothing
//! listens on, every connection is a `tcp.connection` event with its real port, a port a
//! configured service listens on stays that service's, a port outside the ranges is refused by
//! the kernel as before, and neither a clean stop nor `kill -9` leaves a program attached.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{
    net::{TestNet, run_bounded},
    require_root,
    sensor::RunningSensor,
};

const LIMIT: Duration = Duration::from_secs(30);

fn config(net: &TestNet, state: &Path) -> String {
    json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {"ftp": [{"port": 2121}]},
        "logger": {"output": "terminal", "format": "default", "kwargs": {}},
        "sensor": {
            "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1},
            "portscan": {"threshold": 3, "idle_timeout_ms": 3000, "max_window_secs": 120},
            "services": {"state_dir": state},
            "decoys": {
                "enabled": true,
                "tcp": ["2000-9999"],
                "ports": {"2200": "ssh", "8081": "http", "9443": "https"},
                "banner": "ssh",
                "sniff_timeout_ms": 1000
            }
        }
    })
    .to_string()
}

fn state_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("anyport-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Events of `logtype` to `port`.
fn of<'a>(events: &'a [Value], logtype: &str, port: u16) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["logtype"] == logtype && e["dst_port"] == port)
        .collect()
}

fn has(events: &[Value], logtype: &str, port: u16) -> bool {
    !of(events, logtype, port).is_empty()
}

/// Runs `program args` in the peer namespace with `stdin`, bounded.
fn peer(net: &TestNet, program: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut cmd = net.peer.command(program);
    cmd.args(args);
    if stdin.is_empty() {
        cmd.stdin(Stdio::null());
        return run_bounded(&mut cmd, LIMIT);
    }
    // Through a shell: run_bounded does not feed stdin.
    let path =
        std::env::temp_dir().join(format!("anyport-stdin-{}-{}", std::process::id(), program));
    std::fs::write(&path, stdin).unwrap();
    cmd.stdin(std::fs::File::open(&path).unwrap());
    let out = run_bounded(&mut cmd, LIMIT);
    let _ = std::fs::remove_file(&path);
    out
}

#[test]
fn decoy_ports_reach_the_services_with_their_real_port() {
    require_root!();
    let net = TestNet::new();
    let state = state_dir("services");
    let sensor = RunningSensor::start(&net.sensor, &config(&net, &state), &[]);
    assert_eq!(net.sk_lookup_links().len(), 1, "attached at start");
    let ip = net.sensor_ip.clone();

    // A port nothing listens on: bytes no service claims.
    let out = peer(&net, "nc", &["-N", "-w", "5", &ip, "4444"], b"hello\n");
    assert!(out.status.success(), "nc: {out:?}");
    // A silent client on an unmapped port gets the banner service (SSH speaks first).
    let out = peer(&net, "nc", &["-w", "3", &ip, "2222"], b"");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("SSH-2.0-"),
        "{out:?}"
    );
    // Mapped ports.
    let out = peer(
        &net,
        "sshpass",
        &[
            "-p",
            "S3cr3t!",
            "ssh",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ConnectTimeout=10",
            "-p",
            "2200",
            &format!("admin@{ip}"),
            "true",
        ],
        b"",
    );
    assert_ne!(out.status.code(), Some(0), "the SSH login must fail");
    let out = peer(
        &net,
        "curl",
        &[
            "-s",
            "--max-time",
            "10",
            "-u",
            "alice:wonder",
            &format!("http://{ip}:8081/"),
        ],
        b"",
    );
    assert!(out.status.success(), "curl: {out:?}");
    let request =
        b"GET /admin HTTP/1.0\r\nHost: decoy\r\nAuthorization: Basic Ym9iOnMzY3JldA==\r\n\r\n";
    let out = peer(
        &net,
        "openssl",
        &["s_client", "-quiet", "-connect", &format!("{ip}:9443")],
        request,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1."),
        "{out:?}"
    );
    // An unmapped port: HTTP recognised from its first bytes.
    let out = peer(
        &net,
        "curl",
        &["-s", "--max-time", "10", &format!("http://{ip}:8082/")],
        b"",
    );
    assert!(out.status.success(), "curl: {out:?}");
    // Outside the ranges nothing listens: the kernel refuses as without the sensor.
    let out = peer(&net, "nc", &["-z", "-w", "3", &ip, "10022"], b"");
    assert!(!out.status.success(), "port 10022 is not steered: {out:?}");
    // A configured service's port stays that service's.
    let out = peer(&net, "nc", &["-w", "3", &ip, "2121"], b"");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("220"),
        "{out:?}"
    );

    let all = sensor.wait_for_events(LIMIT, |e| {
        has(e, "ssh.login", 2200)
            && has(e, "http.login", 8081)
            && has(e, "https.login", 9443)
            && has(e, "http.query", 8082)
            && has(e, "tcp.connection", 4444)
            && has(e, "ftp.connection", 2121)
    });
    let run = sensor.stop();
    let _ = std::fs::remove_dir_all(&state);
    assert!(
        net.sk_lookup_links().is_empty(),
        "the program is detached on a clean stop"
    );
    assert!(all, "{:#?}", run.events);
    let events = &run.events;

    let unclaimed = of(events, "tcp.connection", 4444);
    assert_eq!(unclaimed.len(), 1, "{events:#?}");
    assert_eq!(unclaimed[0]["data"], hex(b"hello\n"));
    assert_eq!(unclaimed[0]["extra"]["service"], Value::Null);
    assert_eq!(unclaimed[0]["extra"]["detected"], "none");
    assert_eq!(unclaimed[0]["dst_ip"], net.sensor_ip.as_str());
    assert_eq!(unclaimed[0]["src_ip"], net.peer_ip.as_str());

    let banner = of(events, "tcp.connection", 2222);
    assert_eq!(banner[0]["extra"]["service"], "ssh");
    assert_eq!(banner[0]["extra"]["detected"], "banner");
    assert!(has(events, "ssh.connection", 2222));

    for (port, service) in [(2200, "ssh"), (8081, "http"), (9443, "https")] {
        let connection = of(events, "tcp.connection", port);
        assert_eq!(connection.len(), 1, "{port}: {events:#?}");
        assert_eq!(connection[0]["extra"]["service"], service, "{port}");
        assert_eq!(connection[0]["extra"]["detected"], "port", "{port}");
        assert_eq!(
            of(events, &format!("{service}.connection"), port).len(),
            1,
            "{port}"
        );
    }
    let ssh = of(events, "ssh.login", 2200);
    assert_eq!(ssh[0]["extra"]["username"], "admin");
    assert_eq!(ssh[0]["extra"]["password"], "S3cr3t!");
    let http = of(events, "http.login", 8081);
    assert_eq!(http[0]["extra"]["username"], "alice");
    assert_eq!(http[0]["extra"]["password"], "wonder");
    let https = of(events, "https.login", 9443);
    assert_eq!(https[0]["extra"]["username"], "bob");
    assert_eq!(https[0]["extra"]["password"], "s3cret");

    let sniffed = of(events, "tcp.connection", 8082);
    assert_eq!(sniffed[0]["extra"]["service"], "http");
    assert_eq!(sniffed[0]["extra"]["detected"], "sniff");
    assert!(
        sniffed[0]["data"]
            .as_str()
            .unwrap()
            .starts_with(&hex(b"GET / HTTP/1.1\r\n")),
        "{}",
        sniffed[0]["data"]
    );

    assert!(
        of(events, "tcp.connection", 2121).is_empty(),
        "a configured service's port is not steered: {events:#?}"
    );
    assert_eq!(of(events, "ftp.connection", 2121).len(), 1);
    assert!(
        events.iter().all(|e| e["dst_port"] != 10022
            || e["logtype"] == "portscan.query"
            || e["logtype"] == "portscan.flood"),
        "no service event for a port outside the ranges: {events:#?}"
    );
    assert_eq!(
        run.stats["services"]["decoy_connections"], 6,
        "{}",
        run.stats
    );
    assert_eq!(
        run.stats["services"]["decoys_unclaimed"], 1,
        "{}",
        run.stats
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn kill_9_leaves_no_sk_lookup_or_xdp_program_attached() {
    require_root!();
    let net = TestNet::new();
    let state = state_dir("kill");
    assert!(net.sk_lookup_links().is_empty());
    let sensor = RunningSensor::start(&net.sensor, &config(&net, &state), &[]);
    assert_eq!(
        net.sk_lookup_links().len(),
        1,
        "one sk_lookup link on the sensor's namespace"
    );
    assert_eq!(net.xdp_mode(), Some(1));
    let _ = sensor.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (!net.sk_lookup_links().is_empty() || net.xdp_mode().is_some())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&state);
    assert!(
        net.sk_lookup_links().is_empty(),
        "no sk_lookup link after kill -9"
    );
    assert_eq!(net.xdp_mode(), None, "no XDP program after kill -9");
}

/// A kernel that refuses the `sk_lookup` program (here: a sensor without `CAP_BPF` and
/// `CAP_SYS_ADMIN`, which the kernel answers as it does a kernel without the program type)
/// costs the any-port decoys only: the sensor starts, says so in one `sensor.degraded` event,
/// the configured service answers, a decoy port is refused by the kernel as before, and the
/// sensor stops cleanly.
#[test]
fn a_kernel_that_refuses_sk_lookup_costs_only_the_any_port_decoys() {
    require_root!();
    let net = TestNet::new();
    let state = state_dir("refused");
    let wrapper = [
        "setpriv",
        "--bounding-set",
        "-bpf,-sys_admin",
        "--inh-caps",
        "-bpf,-sys_admin",
        "--",
    ];
    let sensor = RunningSensor::start_wrapped(
        &net.sensor,
        &wrapper,
        &config(&net, &state),
        &["--capture", "none"],
    );
    let degraded = |events: &[Value]| {
        events
            .iter()
            .any(|e| e["logtype"] == "sensor.degraded" && e["extra"]["decoy"] == "tcp")
    };
    let reported = sensor.wait_for_events(LIMIT, degraded);
    assert!(net.sk_lookup_links().is_empty(), "no program attached");
    let ip = net.sensor_ip.clone();
    // The configured service answers.
    let out = peer(&net, "nc", &["-w", "3", &ip, "2121"], b"");
    let greeting = String::from_utf8_lossy(&out.stdout).into_owned();
    // A decoy port is the kernel's again: refused at once.
    let refused = peer(&net, "nc", &["-z", "-w", "3", &ip, "4444"], b"");
    let run = sensor.stop();
    let _ = std::fs::remove_dir_all(&state);
    assert!(
        reported,
        "no sensor.degraded for the decoys: {:?}",
        run.events
    );
    let event = run
        .events
        .iter()
        .find(|e| e["logtype"] == "sensor.degraded" && e["extra"]["decoy"] == "tcp")
        .expect("the degraded event");
    assert!(
        event["extra"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{event}"
    );
    assert!(greeting.starts_with("220"), "the FTP decoy: {out:?}");
    assert!(!refused.status.success(), "port 4444 accepted: {refused:?}");
    assert!(run.clean_exit, "{:?}", run.stderr);
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("Any-port decoys unavailable")),
        "{:?}",
        run.stderr
    );
}
