//! Any-port decoys beyond IPv4 TCP: UDP ranges steered to the agent (`dig` and `snmpget` to
//! ports nothing is bound to reach the DNS and SNMP emulations with the real port, other
//! datagrams are `udp.connection`), IPv6 steering of both transports between the test's
//! namespaces, and new ranges applied by a reload after the agent gave up its privileges.

use std::{os::unix::fs::chown, path::Path, process::Stdio, time::Duration};

use serde_json::{Value, json};
use tests::{
    net::{TestNet, run_bounded},
    require_root,
    sensor::RunningSensor,
};

const LIMIT: Duration = Duration::from_secs(30);

/// `nobody` on Debian: exists everywhere, owns nothing.
const NOBODY: u32 = 65_534;

fn config(net: &TestNet, state: &Path, decoys: &Value, run_as: Option<&str>) -> String {
    let mut sensor = json!({
        "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1},
        "portscan": {"threshold": 3, "idle_timeout_ms": 3000, "max_window_secs": 120},
        "services": {"state_dir": state},
        "decoys": decoys,
    });
    if let Some(user) = run_as {
        sensor["run_as"] = user.into();
    }
    json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {"ftp": [{"port": 2121}]},
        "logger": {"output": "terminal", "format": "default", "kwargs": {}},
        "sensor": sensor,
    })
    .to_string()
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

/// Runs `program args` in the peer namespace, bounded.
fn peer(net: &TestNet, program: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = net.peer.command(program);
    cmd.args(args).stdin(Stdio::null());
    run_bounded(&mut cmd, LIMIT)
}

/// `nc` from the peer namespace sending `bytes`, bounded (through a file: `run_bounded` does
/// not feed stdin).
fn nc(net: &TestNet, args: &[&str], bytes: &[u8]) -> std::process::Output {
    let path = std::env::temp_dir().join(format!("anyport-udp-{}-nc", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let mut cmd = net.peer.command("nc");
    cmd.args(args).stdin(std::fs::File::open(&path).unwrap());
    let out = run_bounded(&mut cmd, LIMIT);
    let _ = std::fs::remove_file(&path);
    out
}

/// `dig` for `example.com` to `server` on `port` from the peer namespace.
fn dig(net: &TestNet, server: &str, port: u16) -> std::process::Output {
    peer(
        net,
        "dig",
        &[
            "+tries=1",
            "+time=3",
            "-p",
            &port.to_string(),
            &format!("@{server}"),
            "example.com",
            "A",
        ],
    )
}

/// `snmpget` of `sysName.0` (v2c, community `public`) to `target` from the peer namespace.
fn snmpget(net: &TestNet, target: &str) -> std::process::Output {
    peer(
        net,
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-t",
            "3",
            "-r",
            "0",
            target,
            "1.3.6.1.2.1.1.5.0",
        ],
    )
}

/// One datagram `bytes` from the peer namespace to `target`.
fn datagram(net: &TestNet, target: String, bytes: &'static [u8]) {
    net.peer.run(move || {
        let bind = if target.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let socket = std::net::UdpSocket::bind(bind).unwrap();
        socket.send_to(bytes, &target).unwrap();
    });
}

fn state_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("anyport-udp-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn udp_decoy_ports_reach_dns_and_snmp_with_their_real_port() {
    require_root!();
    let net = TestNet::new();
    let state = state_dir("udp");
    let decoys = json!({"enabled": true, "tcp": ["2000-2100"], "udp": ["5000-5999"]});
    let sensor = RunningSensor::start(&net.sensor, &config(&net, &state, &decoys, None), &[]);
    let ip = net.sensor_ip.clone();

    let out = dig(&net, &ip, 5353);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("->>HEADER<<-"),
        "dig: {out:?}"
    );
    let out = snmpget(&net, &format!("{ip}:5161"));
    assert!(out.status.success(), "snmpget: {out:?}");
    datagram(&net, format!("{ip}:5999"), b"\x00\x01random datagram");
    // Outside the range: the kernel's own lookup, no event.
    datagram(&net, format!("{ip}:6001"), b"\x00\x01outside");

    let all = sensor.wait_for_events(LIMIT, |e| {
        has(e, "dns.query", 5353) && has(e, "snmp.query", 5161) && has(e, "udp.connection", 5999)
    });
    let run = sensor.stop();
    let _ = std::fs::remove_dir_all(&state);
    assert!(all, "{:#?}", run.events);
    let events = &run.events;
    for (port, service) in [(5353, "dns"), (5161, "snmp")] {
        let connection = of(events, "udp.connection", port);
        assert_eq!(connection.len(), 1, "{port}: {events:#?}");
        assert_eq!(connection[0]["extra"]["service"], service, "{port}");
        assert_eq!(connection[0]["extra"]["detected"], "sniff", "{port}");
        assert_eq!(connection[0]["dst_ip"], ip.as_str());
        assert_eq!(connection[0]["src_ip"], net.peer_ip.as_str());
        assert_eq!(of(events, &format!("{service}.connection"), port).len(), 1);
    }
    assert_eq!(
        of(events, "dns.query", 5353)[0]["extra"]["qname"],
        "example.com"
    );
    let snmp = of(events, "snmp.query", 5161);
    assert_eq!(snmp[0]["extra"]["varbind"], "1.3.6.1.2.1.1.5.0");
    assert_eq!(snmp[0]["extra"]["community"], "public");
    let unclaimed = of(events, "udp.connection", 5999);
    assert_eq!(unclaimed.len(), 1, "{events:#?}");
    assert_eq!(unclaimed[0]["extra"]["service"], Value::Null);
    assert_eq!(unclaimed[0]["extra"]["detected"], "none");
    assert_eq!(unclaimed[0]["data"], hex(b"\x00\x01random datagram"));
    assert!(
        events.iter().all(
            |e| e["dst_port"] != 6001 || e["logtype"].as_str().unwrap().starts_with("portscan")
        ),
        "no service event for a port outside the UDP range: {events:#?}"
    );
    assert_eq!(
        run.stats["services"]["decoy_udp_sessions"], 3,
        "{}",
        run.stats
    );
    assert_eq!(
        run.stats["services"]["decoy_udp_unclaimed"], 1,
        "{}",
        run.stats
    );
    assert_eq!(run.stats["services"]["udp_replies"], 2, "{}", run.stats);
}

#[test]
fn ipv6_tcp_and_udp_to_decoy_ports_reach_the_services_with_their_real_port() {
    require_root!();
    let net = TestNet::new();
    let state = state_dir("ipv6");
    let decoys = json!({"enabled": true, "tcp": ["2000-9999"], "udp": ["5000-5999"]});
    let sensor = RunningSensor::start(&net.sensor, &config(&net, &state, &decoys, None), &[]);
    let ip6 = net.sensor_ip6.clone();

    let out = nc(&net, &["-6", "-N", "-w", "5", &ip6, "4444"], b"hello\n");
    assert!(out.status.success(), "nc -6: {out:?}");
    let out = peer(
        &net,
        "curl",
        &[
            "-6",
            "-s",
            "--max-time",
            "10",
            &format!("http://[{ip6}]:8082/"),
        ],
    );
    assert!(out.status.success(), "curl -6: {out:?}");
    let out = dig(&net, &ip6, 5353);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("->>HEADER<<-"),
        "dig -6: {out:?}"
    );
    datagram(&net, format!("[{ip6}]:5999"), b"\x00\x02over ipv6");

    let all = sensor.wait_for_events(LIMIT, |e| {
        has(e, "tcp.connection", 4444)
            && has(e, "http.query", 8082)
            && has(e, "dns.query", 5353)
            && has(e, "udp.connection", 5999)
    });
    let run = sensor.stop();
    let _ = std::fs::remove_dir_all(&state);
    assert!(all, "{:#?}", run.events);
    let events = &run.events;
    for (logtype, port) in [
        ("tcp.connection", 4444),
        ("tcp.connection", 8082),
        ("http.query", 8082),
        ("udp.connection", 5353),
        ("dns.query", 5353),
        ("udp.connection", 5999),
    ] {
        let found = of(events, logtype, port);
        assert_eq!(found.len(), 1, "{logtype} {port}: {events:#?}");
        assert_eq!(found[0]["dst_ip"], ip6.as_str(), "{logtype} {port}");
        assert_eq!(
            found[0]["src_ip"],
            net.peer_ip6.as_str(),
            "{logtype} {port}"
        );
    }
    assert_eq!(
        of(events, "tcp.connection", 4444)[0]["data"],
        hex(b"hello\n")
    );
    assert_eq!(
        of(events, "tcp.connection", 8082)[0]["extra"]["service"],
        "http"
    );
    assert_eq!(
        of(events, "udp.connection", 5353)[0]["extra"]["service"],
        "dns"
    );
    assert_eq!(
        of(events, "udp.connection", 5999)[0]["extra"]["service"],
        Value::Null
    );
}

/// The state directory of a sensor that runs as `nobody`, inside its own directory, which
/// `nobody` owns.
fn nobodys_state_dir(net: &TestNet) -> std::path::PathBuf {
    let dir = RunningSensor::dir_for(&net.sensor);
    std::fs::create_dir_all(&dir).unwrap();
    chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    dir.join("state")
}

fn hangup(sensor: &RunningSensor) {
    // SAFETY: sending SIGHUP to our own child.
    assert_eq!(unsafe { libc::kill(sensor.pid(), libc::SIGHUP) }, 0);
}

#[test]
fn after_the_privilege_drop_a_reload_steers_the_new_decoy_ranges() {
    require_root!();
    let net = TestNet::new();
    let state = nobodys_state_dir(&net);
    let before = json!({"enabled": true, "tcp": ["3000-3099"], "udp": ["5000-5099"]});
    let sensor = RunningSensor::start(
        &net.sensor,
        &config(&net, &state, &before, Some("nobody")),
        &[],
    );
    let ip = net.sensor_ip.clone();
    let out = nc(&net, &["-N", "-w", "5", &ip, "3033"], b"before\n");
    assert!(out.status.success(), "nc: {out:?}");
    let out = nc(&net, &["-z", "-w", "3", &ip, "4444"], b"");
    assert!(!out.status.success(), "4444 is not steered yet: {out:?}");
    assert!(
        sensor.wait_for_events(LIMIT, |e| has(e, "tcp.connection", 3033)),
        "the first range is steered"
    );

    let after = json!({"enabled": true, "tcp": ["4400-4499"], "udp": ["5300-5399"]});
    std::fs::write(
        sensor.dir().join("trapster.conf"),
        config(&net, &state, &after, Some("nobody")),
    )
    .unwrap();
    hangup(&sensor);
    assert!(
        sensor.wait_for_log(Duration::from_secs(20), "Configuration reloaded.", 1),
        "the reload never finished"
    );
    let out = nc(&net, &["-N", "-w", "5", &ip, "4444"], b"after\n");
    assert!(out.status.success(), "nc: {out:?}");
    let out = dig(&net, &ip, 5353);
    assert!(out.status.success(), "dig: {out:?}");
    let out = nc(&net, &["-z", "-w", "3", &ip, "3033"], b"");
    assert!(!out.status.success(), "3033 is no longer steered: {out:?}");

    let all = sensor.wait_for_events(LIMIT, |e| {
        has(e, "tcp.connection", 4444) && has(e, "dns.query", 5353)
    });
    let run = sensor.stop();
    assert!(all, "{:#?} {:#?}", run.events, run.stderr);
    assert!(run.clean_exit, "{:#?}", run.stderr);
    let events = &run.events;
    assert_eq!(of(events, "tcp.connection", 3033).len(), 1, "{events:#?}");
    assert_eq!(of(events, "tcp.connection", 4444).len(), 1, "{events:#?}");
    assert_eq!(
        of(events, "tcp.connection", 4444)[0]["data"],
        hex(b"after\n")
    );
    assert_eq!(
        of(events, "udp.connection", 5353)[0]["extra"]["service"],
        "dns"
    );
    let stderr = run.stderr.join("\n");
    assert!(
        stderr.contains("Privileges dropped: no capability left."),
        "the reload came after the drop: {stderr}"
    );
    assert!(
        stderr.contains("Any-port decoys follow the reloaded services."),
        "{stderr}"
    );
    assert!(!stderr.contains("could not follow"), "{stderr}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn after_the_privilege_drop_a_decoy_udp_port_below_1024_answers_from_that_port() {
    require_root!();
    let net = TestNet::new();
    let state = nobodys_state_dir(&net);
    let decoys = json!({"enabled": true, "tcp": ["3000-3099"], "udp": ["600-700", "5000-5099"]});
    let sensor = RunningSensor::start(
        &net.sensor,
        &config(&net, &state, &decoys, Some("nobody")),
        &[],
    );
    let ip = net.sensor_ip.clone();
    // dig takes only a reply from the address and port it asked (else "reply from unexpected
    // source"), so an answer proves the source port.
    let out = dig(&net, &ip, 653);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("->>HEADER<<-") && !text.contains("unexpected"),
        "dig to 653: {out:?}"
    );
    let out = snmpget(&net, &format!("{ip}:661"));
    assert!(out.status.success(), "snmpget to 661: {out:?}");
    let all = sensor.wait_for_events(LIMIT, |e| {
        has(e, "dns.query", 653) && has(e, "udp.connection", 661)
    });
    let run = sensor.stop();
    assert!(all, "{:#?} {:#?}", run.events, run.stderr);
    assert!(run.clean_exit, "{:#?}", run.stderr);
    let stderr = run.stderr.join("\n");
    assert!(
        stderr.contains("Privileges dropped: no capability left."),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("UDP decoy replies from privileged ports go through a send-only raw socket."),
        "{stderr}"
    );
}
