//! LLMNR poisoning detection over IPv6, the whitelist of trusted answerers, and the sensor
//! answering queries for its own name, end to end: the real `sensor` binary (no capture, only
//! `sensor.poisoning`) in one namespace; in the peer namespace a Responder-like answerer (IPv4
//! LLMNR and NBT-NS, and LLMNR on ff02::1:3) or a querying client, both small Python scripts.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{
    net::{ChildGuard, TestNet, run_bounded},
    require_root,
    sensor::RunningSensor,
};

/// A Responder-like answerer: answers every LLMNR question (IPv4 and IPv6) with an A record
/// of its IPv4 address and every NBT-NS name query with a positive answer; logs each query as
/// `<llmnr|llmnr6|nbns> NAME`.
const ANSWERER: &str = r#"
import socket, struct, sys, select
me, ifname, log, ready = sys.argv[1:5]
index = socket.if_nametoindex(ifname)
llmnr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
llmnr.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
llmnr.bind(("0.0.0.0", 5355))
llmnr.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton("224.0.0.252") + socket.inet_aton(me))
llmnr6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
llmnr6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
llmnr6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
llmnr6.bind(("::", 5355))
llmnr6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                  socket.inet_pton(socket.AF_INET6, "ff02::1:3") + struct.pack("@I", index))
nbns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
nbns.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
nbns.bind(("0.0.0.0", 137))
open(ready, "w").write("ready")
def qname(p, at):
    labels = []
    while p[at]:
        n = p[at]; labels.append(p[at + 1:at + 1 + n].decode()); at += 1 + n
    return ".".join(labels), at + 1
def nb_decode(e):
    raw = bytes(((e[i] - 65) << 4) | (e[i + 1] - 65) for i in range(0, 32, 2))
    return raw[:15].decode().rstrip()
while True:
    for s in select.select([llmnr, llmnr6, nbns], [], [])[0]:
        p, peer = s.recvfrom(2048)
        if len(p) < 12 or p[2] & 0x80:
            continue
        if s is nbns:
            name = nb_decode(p[13:45])
            open(log, "a").write("nbns %s\n" % name)
            answer = p[:2] + b"\x85\x00\x00\x00\x00\x01\x00\x00\x00\x00" + p[12:46]
            answer += b"\x00\x20\x00\x01\x00\x00\x00\xa5\x00\x06\x00\x00" + socket.inet_aton(me)
        else:
            name, end = qname(p, 12)
            open(log, "a").write("%s %s\n" % ("llmnr" if s is llmnr else "llmnr6", name))
            answer = p[:2] + b"\x80\x00" + b"\x00\x01\x00\x01\x00\x00\x00\x00" + p[12:end + 4]
            answer += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04" + socket.inet_aton(me)
        s.sendto(answer, peer)
"#;

/// A querying client: asks `name` over LLMNR (A over IPv4 multicast, AAAA over IPv6
/// multicast) and NBT-NS (broadcast), and prints one JSON object of the answers per way:
/// `{"llmnr4": [...], "llmnr6": [...], "nbns": [...]}` (addresses; empty: no answer). The
/// multicast interface is set for both families (the namespace has no default route). Own-name
/// questions are asked up to three times (the sensor may still be opening its sockets).
const CLIENT: &str = r#"
import json, random, socket, struct, sys
ifname, me, broadcast, name, tries = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
index = socket.if_nametoindex(ifname)
def question(qtype):
    qid = random.randint(0, 65535)
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.split("."))
    return qid, struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + labels + b"\x00" + struct.pack(">HH", qtype, 1)
def rrs(p, qid):
    if len(p) < 12 or struct.unpack(">H", p[:2])[0] != qid or not p[2] & 0x80:
        return None
    an = struct.unpack(">H", p[6:8])[0]
    at = 12
    while p[at]: at += 1 + p[at]
    at += 5
    out = []
    for _ in range(an):
        if p[at] & 0xc0 == 0xc0:
            at += 2
        else:
            while p[at]: at += 1 + p[at]
            at += 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", p[at:at + 10]); at += 10
        data = p[at:at + rdlen]; at += rdlen
        if rtype == 1: out.append(socket.inet_ntop(socket.AF_INET, data))
        if rtype == 28: out.append(socket.inet_ntop(socket.AF_INET6, data))
    return out
def ask(family, target, qtype):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(me))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s.settimeout(1.0)
    for _ in range(tries):
        qid, q = question(qtype)
        s.sendto(q, target)
        try:
            while True:
                got = rrs(s.recv(2048), qid)
                if got is not None: return got
        except socket.timeout:
            pass
    return []
def nb():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.settimeout(1.0)
    raw = name.upper().ljust(15)[:15].encode() + b"\x20"
    enc = bytes(b for c in raw for b in (65 + (c >> 4), 65 + (c & 15)))
    for _ in range(tries):
        qid = random.randint(0, 65535)
        s.sendto(struct.pack(">HHHHHH", qid, 0x0110, 1, 0, 0, 0) + b"\x20" + enc + b"\x00\x00\x20\x00\x01", (broadcast, 137))
        try:
            while True:
                p = s.recv(2048)
                if len(p) >= 62 and struct.unpack(">H", p[:2])[0] == qid and p[2] & 0x80:
                    return [socket.inet_ntop(socket.AF_INET, p[58:62])]
        except socket.timeout:
            pass
    return []
print(json.dumps({
    "llmnr4": ask(socket.AF_INET, ("224.0.0.252", 5355), 1),
    "llmnr6": ask(socket.AF_INET6, ("ff02::1:3", 5355, 0, index), 28),
    "nbns": nb(),
}))
"#;

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("poisoning6-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn config(net: &TestNet, poisoning: &Value) -> String {
    let mut p = json!({
        "enabled": true,
        "interval_secs": 2,
        "jitter_secs": 0,
        "wait_ms": 1000,
        "names": ["FILESRV42"],
        "protocols": ["llmnr", "nbns"]
    });
    for (k, v) in poisoning.as_object().expect("object") {
        p[k] = v.clone();
    }
    json!({
        "id": "it-sensor",
        "hostname": "FILESRV01.corp.local",
        "interface": net.sensor_if,
        "services": {},
        "outputs": [{"transport": {"type": "terminal"}}],
        "sensor": {"poisoning": p}
    })
    .to_string()
}

/// Starts the answerer in the peer namespace and waits (at most 10 s) until it listens.
fn answerer(net: &TestNet, dir: &Path) -> ChildGuard {
    let script = dir.join("answerer.py");
    std::fs::write(&script, ANSWERER).expect("write answerer");
    let ready = dir.join("ready");
    let mut cmd = net.peer.command("python3");
    cmd.arg(&script)
        .arg(&net.peer_ip)
        .arg(&net.peer_if)
        .arg(dir.join("queries.log"))
        .arg(&ready);
    let guard = ChildGuard::spawn(&mut cmd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the answerer did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    guard
}

/// Waits (at most 5 s) until both ends can send IPv6 multicast: the kernel adds the `ff00::/8`
/// route of a veth only once it has seen the carrier, some hundreds of milliseconds after
/// `link set up`; before that, sending to ff02::1:3 fails with "Network is unreachable".
fn ipv6_multicast_ready(net: &TestNet) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for (ns, ifname) in [(&net.sensor, &net.sensor_if), (&net.peer, &net.peer_if)] {
        loop {
            let out = std::process::Command::new("ip")
                .args([
                    "-n", &ns.name, "-6", "route", "show", "table", "local", "ff00::/8",
                ])
                .args(["dev", ifname])
                .output()
                .expect("ip route");
            if !out.stdout.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no IPv6 multicast route on {ifname}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn of<'a>(events: &'a [Value], logtype: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["logtype"] == logtype).collect()
}

#[test]
fn llmnr_poisoning_over_ipv6_names_the_answerer_s_ipv6_address() {
    require_root!();
    let net = TestNet::new();
    ipv6_multicast_ready(&net);
    let dir = temp("v6");
    let _answerer = answerer(&net, &dir);
    let sensor = RunningSensor::start(
        &net.sensor,
        &config(&net, &json!({"protocols": ["llmnr"]})),
        &["--capture", "none"],
    );
    std::thread::sleep(Duration::from_millis(3500));
    let run = sensor.stop();
    let llmnr = of(&run.events, "llmnr.poisoning");
    let over = |ip: &str| -> Vec<&&Value> { llmnr.iter().filter(|e| e["src_ip"] == ip).collect() };
    let v4 = over(&net.peer_ip);
    let v6 = over(&net.peer_ip6);
    assert!(!v4.is_empty(), "{:?}", run.events);
    assert!(!v6.is_empty(), "{:?}", run.events);
    assert_eq!(
        v4.len() + v6.len(),
        llmnr.len(),
        "no other answerer: {llmnr:?}"
    );
    for e in v6 {
        assert_eq!(e["src_port"], json!(5355), "{e}");
        assert_eq!(
            e["dst_ip"],
            json!(net.sensor_ip6),
            "asked from the global address: {e}"
        );
        assert_eq!(e["extra"]["name"], json!("FILESRV42"), "{e}");
        assert_eq!(e["extra"]["answers"], json!([net.peer_ip]), "{e}");
        assert_eq!(e["extra"]["interface"], json!(net.sensor_if), "{e}");
    }
    // Only LLMNR was configured: no NBT-NS query, and no mDNS over either family.
    assert!(of(&run.events, "nbns.poisoning").is_empty());
    let seen = std::fs::read_to_string(dir.join("queries.log")).unwrap_or_default();
    assert!(seen.lines().any(|l| l == "llmnr6 FILESRV42"), "{seen}");
    assert!(!seen.lines().any(|l| l.starts_with("nbns")), "{seen}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn answers_from_whitelisted_hosts_are_not_poisoning() {
    require_root!();
    let net = TestNet::new();
    ipv6_multicast_ready(&net);
    let dir = temp("whitelist");
    let _answerer = answerer(&net, &dir);
    let poisoning = json!({"whitelist_ips": [net.peer_ip, format!("{}/64", net.peer_ip6)]});
    let sensor = RunningSensor::start(
        &net.sensor,
        &config(&net, &poisoning),
        &["--capture", "none"],
    );
    std::thread::sleep(Duration::from_millis(3500));
    let run = sensor.stop();
    let poisoned: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| {
            e["logtype"]
                .as_str()
                .is_some_and(|l| l.ends_with(".poisoning"))
        })
        .collect();
    assert!(poisoned.is_empty(), "{poisoned:?}");
    // The answerer was asked and answered every way.
    let seen = std::fs::read_to_string(dir.join("queries.log")).unwrap_or_default();
    for line in ["llmnr FILESRV42", "llmnr6 FILESRV42", "nbns FILESRV42"] {
        assert!(seen.lines().any(|l| l == line), "{line}: {seen}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the client in the peer namespace for `name`.
fn client(net: &TestNet, dir: &Path, name: &str, tries: u32) -> Value {
    let script = dir.join("client.py");
    std::fs::write(&script, CLIENT).expect("write client");
    let broadcast = net.peer_ip.rsplit_once('.').expect("dotted").0.to_owned() + ".255";
    let mut cmd = net.peer.command("python3");
    cmd.arg(&script)
        .arg(&net.peer_if)
        .arg(&net.peer_ip)
        .arg(&broadcast)
        .arg(name)
        .arg(tries.to_string());
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("client JSON")
}

#[test]
fn the_sensor_answers_queries_for_its_own_name_and_no_other() {
    require_root!();
    let net = TestNet::new();
    ipv6_multicast_ready(&net);
    let dir = temp("answer");
    // Answering only: no probes of its own.
    let poisoning = json!({"enabled": false, "answer_own_name": true});
    let sensor = RunningSensor::start(
        &net.sensor,
        &config(&net, &poisoning),
        &["--capture", "none"],
    );
    let own = client(&net, &dir, "filesrv01", 3);
    assert_eq!(own["llmnr4"], json!([net.sensor_ip]), "{own}");
    assert!(
        own["llmnr6"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(net.sensor_ip6))),
        "{own}"
    );
    assert_eq!(own["nbns"], json!([net.sensor_ip]), "{own}");
    // Another name: never answered, whatever the way.
    let other = client(&net, &dir, "FILESRV42", 1);
    assert_eq!(other, json!({"llmnr4": [], "llmnr6": [], "nbns": []}));
    std::thread::sleep(Duration::from_millis(300));
    let run = sensor.stop();
    assert!(run.clean_exit, "{:?}", run.stderr);
    let llmnr = of(&run.events, "llmnr.query");
    let nbns = of(&run.events, "nbns.query");
    assert!(
        llmnr.iter().any(|e| e["src_ip"] == json!(net.peer_ip)
            && e["dst_ip"] == json!(net.sensor_ip)
            && e["extra"]["query_type"] == "A"
            && e["extra"]["answers"] == json!([net.sensor_ip])),
        "{llmnr:?}"
    );
    assert!(
        llmnr.iter().any(|e| e["extra"]["query_type"] == "AAAA"
            && e["src_ip"].as_str().is_some_and(|s| s.contains(':'))),
        "{llmnr:?}"
    );
    assert!(
        llmnr.iter().all(|e| e["extra"]["name"] == "filesrv01"),
        "{llmnr:?}"
    );
    assert!(!nbns.is_empty(), "{:?}", run.events);
    for e in &nbns {
        assert_eq!(e["extra"]["name"], json!("FILESRV01<20>"), "{e}");
        assert_eq!(e["extra"]["answers"], json!([net.sensor_ip]), "{e}");
        assert_eq!(e["src_ip"], json!(net.peer_ip), "{e}");
    }
    assert!(of(&run.events, "llmnr.poisoning").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
