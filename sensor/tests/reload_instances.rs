//! Configuration reload on SIGHUP, decoy by decoy, without privileges (`--capture none`): an
//! unchanged decoy keeps its listener and an open session (which still works and is reported
//! after the reload), a changed one serves its new settings on the same port from the same
//! socket, a removed one stops listening, a new one starts, and a new one on a port below the
//! unprivileged port start is refused (the sensor gave up `CAP_NET_BIND_SERVICE`), named with
//! the fix.

#![expect(
    clippy::unwrap_used,
    reason = "the shared test helpers fail loudly on purpose"
)]

mod support;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

fn config(dir: &Path, services: &Value) -> String {
    json!({
        "id": "reload-instances",
        "interface": "lo",
        "services": services,
        "outputs": [{"name": "events", "transport": {"type": "file", "path": dir.join("events.log")}}],
        "sensor": {"services": {"state_dir": dir.join("state")}},
    })
    .to_string()
}

fn events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("events.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn start(path: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["run", "--capture", "none", "-c", path.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn hangup(child: &Child) {
    // SAFETY: sending SIGHUP to our own child.
    assert_eq!(
        unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGHUP) },
        0
    );
}

/// The first line a new connection to `port` gets (empty when the connection closes first).
fn first_line(port: u16) -> String {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line
}

/// The inode of the socket process `pid` listens with on 127.0.0.1:`port` (TCP).
fn listener_inode(pid: u32, port: u16) -> Option<String> {
    let owned: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .ok()?
        .lines()
        .skip(1)
        .find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let listening = cols.get(1) == Some(&local.as_str()) && cols.get(3) == Some(&"0A");
            let inode = (*cols.get(9)?).to_owned();
            (listening && owned.contains(&inode)).then_some(inode)
        })
}

/// The first port an unprivileged process may bind on this host.
fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1024)
}

#[test]
fn sighup_restarts_only_the_decoys_whose_own_block_changed() {
    let dir = std::env::temp_dir().join(format!("sensor-reload-inst-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let holds: Vec<support::PortHold> = (0..3).map(|_| support::PortHold::new()).collect();
    let [kept, changed, removed] = [0, 1, 2].map(|i| holds[i].port());
    let added_hold = support::PortHold::new();
    let added = added_hold.port();
    // A port below the unprivileged start, for a decoy new at the reload (none when the host
    // lets anyone bind every port).
    let privileged = unprivileged_port_start().checked_sub(1).filter(|p| *p > 0);
    let path = dir.join("sensor.conf");
    std::fs::write(
        &path,
        config(
            &dir,
            &json!({
                "ftp": [{"port": kept, "banner": "kept"}, {"port": changed, "banner": "before"}],
                "telnet": [{"port": removed}],
            }),
        ),
    )
    .unwrap();
    let mut child = start(&path);
    drop(holds);
    assert!(
        support::wait_serving(
            &mut child,
            &[(kept, false), (changed, false), (removed, false)],
            Duration::from_secs(20)
        ),
        "the decoys never listened"
    );
    let pid = child.id();
    let (kept_inode, changed_inode) = (
        listener_inode(pid, kept).unwrap(),
        listener_inode(pid, changed).unwrap(),
    );
    assert_eq!(first_line(changed), "220 before\r\n");
    // A session on the unchanged decoy, open across the reload.
    let mut open = TcpStream::connect(("127.0.0.1", kept)).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut banner = [0u8; 64];
    let n = open.read(&mut banner).unwrap();
    assert_eq!(&banner[..n], b"220 kept\r\n");

    let mut services = json!({
        "ftp": [{"port": kept, "banner": "kept"}, {"port": changed, "banner": "after"}],
        "http": [{"port": added}],
    });
    if let Some(port) = privileged {
        services["telnet"] = json!([{"port": port}]);
    }
    std::fs::write(&path, config(&dir, &services)).unwrap();
    drop(added_hold);
    hangup(&child);
    // Connections to the changed decoy never fail (its socket stays bound); once one gets the
    // new banner, the new instance serves, and the removed one (stopped first) is closed.
    assert!(
        support::wait_until_blocking(Duration::from_secs(20), || first_line(changed)
            == "220 after\r\n"),
        "the changed decoy never served its new banner"
    );
    assert_eq!(
        listener_inode(pid, changed).as_deref(),
        Some(changed_inode.as_str()),
        "the changed decoy bound a new socket instead of taking over its own"
    );
    assert_eq!(
        listener_inode(pid, kept).as_deref(),
        Some(kept_inode.as_str())
    );
    assert!(
        !support::process_listens(pid, removed, false),
        "the removed decoy still listens"
    );
    assert!(TcpStream::connect(("127.0.0.1", removed)).is_err());
    let mut http = TcpStream::connect(("127.0.0.1", added)).unwrap();
    http.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: decoy\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = http.read_to_end(&mut reply);
    assert!(
        reply.starts_with(b"HTTP/1.1 "),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    if let Some(port) = privileged {
        assert!(!support::process_listens(pid, port, false));
    }

    // The session opened before the reload still works, and its login is reported.
    open.write_all(b"USER root\r\nPASS across-the-reload\r\nQUIT\r\n")
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
            events(&dir).iter().any(|e| {
                e["logtype"] == "ftp.login"
                    && e["extra"]["password"] == "across-the-reload"
                    && e["dst_port"] == kept
            })
        }),
        "the open session's login was not reported: {:#?}",
        events(&dir)
    );

    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.contains("Decoys reloaded instance by instance"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        summary.contains(&format!("kept=[\"ftp:{kept}\"]")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!(
            "stopped=[\"ftp:{changed}\", \"telnet:{removed}\"]"
        )),
        "{summary}"
    );
    if let Some(port) = privileged {
        let warning = stderr
            .lines()
            .find(|l| l.contains("New decoy on a privileged port not started"))
            .unwrap_or_else(|| panic!("{stderr}"));
        assert!(warning.contains(&format!("port={port}")), "{warning}");
        assert!(warning.contains("CAP_NET_BIND_SERVICE"), "{warning}");
        assert!(warning.contains("restart the sensor"), "{warning}");
        let degraded: Vec<Value> = events(&dir)
            .into_iter()
            .filter(|e| e["logtype"] == "sensor.degraded")
            .collect();
        assert_eq!(degraded.len(), 1, "{degraded:#?}");
        assert_eq!(degraded[0]["extra"]["decoy"], "telnet");
        assert_eq!(degraded[0]["extra"]["port"], port);
    } else {
        eprintln!("every port is unprivileged on this host: the refusal is not exercised");
    }
    let _ = std::fs::remove_dir_all(dir);
}
