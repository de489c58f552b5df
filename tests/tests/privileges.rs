//! Least privilege: once started, the sensor runs as an unprivileged user with no capability on
//! any thread, and scans and services still work. Started as root it switches to
//! `sensor.run_as`; started as a non-root user holding only CAP_BPF, CAP_NET_ADMIN,
//! CAP_PERFMON and CAP_NET_BIND_SERVICE (as systemd's `AmbientCapabilities=` does) it attaches,
//! binds port 21, then drops them.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpStream,
    os::unix::fs::chown,
    time::Duration,
};

use serde_json::{Value, json};
use tests::{
    net::{TestNet, run_bounded},
    require_root,
    sensor::{RunningSensor, SensorRun},
};

/// `nobody` on Debian: exists everywhere, owns nothing.
const NOBODY: u32 = 65_534;

fn config(interface: &str, run_as: Option<&str>) -> String {
    let mut sensor = json!({
        "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1},
        "portscan": {"threshold": 3, "idle_timeout_ms": 2000, "max_window_secs": 120},
    });
    if let Some(user) = run_as {
        sensor["run_as"] = json!(user);
    }
    json!({
        "id": "it-sensor",
        "interface": interface,
        "whitelist_ips": [],
        "services": {"ftp": [{"port": 21}]},
        "logger": {"output": "terminal", "format": "default", "kwargs": {}},
        "sensor": sensor,
    })
    .to_string()
}

/// `Uid:` (real, effective, saved, fs) and `CapEff:` of every thread of `pid`.
fn credentials(pid: i32) -> Vec<(Vec<u32>, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("task list");
    tasks
        .map(|t| {
            let status = std::fs::read_to_string(t.expect("task").path().join("status"))
                .expect("task status");
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_else(|| panic!("{name} in {status}"))
                    .trim()
                    .to_owned()
            };
            let uids = field("Uid:")
                .split_whitespace()
                .map(|u| u.parse().expect("uid"))
                .collect();
            let eff = u64::from_str_radix(&field("CapEff:"), 16).expect("CapEff");
            (uids, eff)
        })
        .collect()
}

/// Logs in to the FTP decoy from the peer namespace.
fn ftp_login(net: &TestNet) {
    let target = format!("{}:21", net.sensor_ip);
    let answer = net.peer.run(move || {
        let mut s = TcpStream::connect(&target).expect("connect to the FTP decoy");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut reader = BufReader::new(s.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("banner");
        s.write_all(b"USER admin\r\n").expect("user");
        line.clear();
        reader.read_line(&mut line).expect("331");
        s.write_all(b"PASS hunter2\r\n").expect("pass");
        line.clear();
        reader.read_line(&mut line).expect("530");
        line
    });
    assert!(answer.starts_with("530"), "{answer}");
}

fn scan_and_login(net: &TestNet, sensor: RunningSensor) -> SensorRun {
    let mut cmd = net.peer.command("nmap");
    cmd.args([
        "-n",
        "-Pn",
        "--max-retries",
        "2",
        "-T4",
        "-sS",
        "-p",
        "1-100",
    ])
    .arg(&net.sensor_ip);
    let out = run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ftp_login(net);
    let stats = sensor.wait_for_stats(Duration::from_secs(10), |s| {
        s["kernel"]["probes"].as_u64().is_some_and(|p| p >= 100)
    });
    assert!(
        stats["kernel"]["probes"].as_u64().unwrap() >= 100,
        "{stats}"
    );
    sensor.stop()
}

fn assert_worked(run: &SensorRun) {
    assert!(run.clean_exit, "{:#?}", run.stderr);
    let scans = run.portscans();
    assert_eq!(scans.len(), 1, "{:#?}", run.events);
    assert_eq!(scans[0]["extra"]["ports"].as_array().unwrap().len(), 100);
    let logins: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["logtype"] == "ftp.login")
        .collect();
    assert_eq!(logins.len(), 1, "{:#?}", run.events);
    assert_eq!(logins[0]["extra"]["username"], "admin");
    assert_eq!(logins[0]["extra"]["password"], "hunter2");
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("Privileges dropped: no capability left.")),
        "{:#?}",
        run.stderr
    );
}

fn prepare_dir(net: &TestNet) {
    let dir = RunningSensor::dir_for(&net.sensor);
    std::fs::create_dir_all(&dir).unwrap();
    chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
}

#[test]
fn started_as_root_it_runs_as_run_as_with_no_capability() {
    require_root!();
    let net = TestNet::new();
    prepare_dir(&net);
    let sensor = RunningSensor::start(&net.sensor, &config(&net.sensor_if, Some("nobody")), &[]);
    let creds = credentials(sensor.pid());
    assert!(creds.len() > 1, "a multi-threaded agent: {creds:?}");
    for (uids, eff) in &creds {
        assert_eq!(uids, &[NOBODY; 4]);
        assert_eq!(*eff, 0);
    }
    let run = scan_and_login(&net, sensor);
    assert_worked(&run);
}

#[test]
fn started_as_non_root_with_four_capabilities_it_works_and_drops_them() {
    require_root!();
    let net = TestNet::new();
    prepare_dir(&net);
    let caps = "+bpf,+net_admin,+perfmon,+net_bind_service";
    let wrapper = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all,+bpf,+net_admin,+perfmon,+net_bind_service",
        &format!("--ambient-caps={caps}"),
        "--bounding-set=-all,+bpf,+net_admin,+perfmon,+net_bind_service",
        "--",
    ];
    let sensor =
        RunningSensor::start_wrapped(&net.sensor, &wrapper, &config(&net.sensor_if, None), &[]);
    for (uids, eff) in credentials(sensor.pid()) {
        assert_eq!(uids, [NOBODY; 4]);
        assert_eq!(eff, 0);
    }
    let run = scan_and_login(&net, sensor);
    assert_worked(&run);
}

#[test]
fn a_missing_run_as_user_is_refused_naming_the_field() {
    require_root!();
    let net = TestNet::new();
    let dir = RunningSensor::dir_for(&net.sensor);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trapster.conf");
    std::fs::write(&path, config(&net.sensor_if, Some("no-such-sensor-user"))).unwrap();
    let bin = tests::sensor::sensor_bin();
    let mut cmd = net.sensor.command(bin.to_str().unwrap());
    cmd.args(["run", "-c"]).arg(&path);
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("field `sensor.run_as`: no user `no-such-sensor-user` on this system"),
        "{stderr}"
    );
}
