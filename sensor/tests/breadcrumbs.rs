//! Breadcrumbs with real clients: planted credentials used over FTP (curl) and SSH (sshpass +
//! OpenSSH) produce `breadcrumb.login` after the service's own login and make the incident
//! critical ("Breadcrumb used on FTP", then "... on SSH").

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

#[path = "support/ports.rs"]
mod ports;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_ports() -> (u16, u16) {
    let p = ports::unused_ports(2);
    (p[0], p[1])
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn breadcrumbs_used_over_ftp_and_ssh_are_reported_and_critical() {
    let dir = std::env::temp_dir().join(format!("sensor-breadcrumbs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ftp, ssh) = free_ports();
    let events = dir.join("events.ndjson");
    let config = json!({
        "id": "crumbs", "interface": "",
        "services": {"ftp": [{"port": ftp}], "ssh": [{"port": ssh}]},
        "outputs": [{"name": "file", "format": "trapster", "receive": "both",
                     "transport": {"type": "file", "path": events}}],
        "sensor": {
            "services": {"state_dir": dir.join("state")},
            "breadcrumbs": [
                {"username": "svc_backup", "password": "Winter2026!"},
                {"username": "deploy", "password": "d3ploy", "service": "ssh"},
                {"username": "root", "password": "toor", "service": "ftp"}
            ]
        }
    });
    let path = dir.join("sensor.conf");
    std::fs::write(&path, config.to_string()).unwrap();
    let log = std::fs::File::create(dir.join("sensor.log")).unwrap();
    let _sensor = Guard(
        Command::new(env!("CARGO_BIN_EXE_sensor"))
            .args(["run", "--capture", "none", "-c"])
            .arg(&path)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    wait_listening(ftp);
    wait_listening(ssh);
    let curl = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(format!("ftp://svc_backup:Winter2026%21@127.0.0.1:{ftp}/"))
        .output()
        .expect("curl is installed");
    assert!(!curl.status.success(), "the decoy refuses every login");
    // `root`/`toor` is a breadcrumb for FTP only: over SSH it is an ordinary login.
    for (user, password) in [("root", "toor"), ("deploy", "d3ploy")] {
        let out = Command::new("sshpass")
            .args([
                "-p",
                password,
                "ssh",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
            ])
            .args([
                "UserKnownHostsFile=/dev/null",
                "-o",
                "PreferredAuthentications=password",
            ])
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .args(["-o", "ConnectTimeout=10", "-p", &ssh.to_string()])
            .arg(format!("{user}@127.0.0.1"))
            .arg("true")
            .output()
            .expect("sshpass and ssh are installed");
        assert!(!out.status.success());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let docs = loop {
        let docs = lines(&events);
        let done = docs
            .iter()
            .any(|d| d["description"] == "Breadcrumb used on SSH");
        if done || Instant::now() > deadline {
            break docs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let crumbs: Vec<&Value> = docs
        .iter()
        .filter(|d| d["logtype"] == "breadcrumb.login")
        .collect();
    assert_eq!(crumbs.len(), 2, "{docs:#?}");
    assert_eq!(
        crumbs[0]["extra"],
        json!({"password": "Winter2026!", "username": "svc_backup"})
    );
    assert_eq!(
        crumbs[1]["extra"],
        json!({"password": "d3ploy", "username": "deploy"})
    );
    for (crumb, port) in crumbs.iter().zip([ftp, ssh]) {
        assert_eq!(crumb["channel"], "breadcrumb");
        assert_eq!(crumb["category"], "login");
        assert_eq!(crumb["action"], "event_new");
        assert_eq!(crumb["data"], "");
        assert_eq!(crumb["src_ip"], "127.0.0.1");
        assert_eq!(crumb["dst_port"], port);
        assert_eq!(crumb["type"], 0);
    }
    // Each breadcrumb right after its service's login, same source port and time.
    for (service, crumb) in ["ftp.login", "ssh.login"].iter().zip(&crumbs) {
        let i = docs.iter().position(|d| d["id"] == crumb["id"]).unwrap();
        let login = docs[..i]
            .iter()
            .rev()
            .find(|d| d["logtype"] == *service)
            .unwrap();
        assert_eq!(login["src_port"], crumb["src_port"]);
        assert_eq!(login["timestamp"], crumb["timestamp"]);
        assert_eq!(login["extra"]["username"], crumb["extra"]["username"]);
    }
    let incidents: Vec<(&str, &str)> = docs
        .iter()
        .filter(|d| d["action"] == "incident_updated" || d["action"] == "incident_created")
        .map(|d| {
            (
                d["severity"].as_str().unwrap_or(""),
                d["description"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        incidents.contains(&("critical", "Breadcrumb used on FTP")),
        "{incidents:?}"
    );
    assert_eq!(
        incidents.last(),
        Some(&("critical", "Breadcrumb used on SSH")),
        "{incidents:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
