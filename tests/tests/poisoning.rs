//! LLMNR / NBT-NS poisoning detection end to end: the real `sensor` binary (no capture, only
//! `sensor.poisoning`) in one namespace; in the peer namespace a small Responder-like answerer
//! that answers every LLMNR and NBT-NS name query with its own address. Each poisoned answer
//! gives an event naming the answerer and the name asked; the answerer never answers mDNS, so
//! no `mdns.poisoning` appears. With the same listener only recording (no answers), the
//! queries are seen and no event is produced.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{
    net::{ChildGuard, TestNet},
    require_root,
    sensor::RunningSensor,
};

/// A Responder-like answerer: joins 224.0.0.252, listens on UDP 5355 and 137, answers every
/// query with an A record (LLMNR) or a positive NB answer (NBT-NS) giving its own address,
/// unless `--silent`; logs each query's protocol and name, one per line, to the log file.
const ANSWERER: &str = r#"
import socket, struct, sys, select
me, log, ready, silent = sys.argv[1], sys.argv[2], sys.argv[3], len(sys.argv) > 4
llmnr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
llmnr.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
llmnr.bind(("0.0.0.0", 5355))
llmnr.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton("224.0.0.252") + socket.inet_aton(me))
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
    for s in select.select([llmnr, nbns], [], [])[0]:
        p, peer = s.recvfrom(2048)
        if len(p) < 12 or p[2] & 0x80:
            continue
        if s is llmnr:
            name, end = qname(p, 12)
            open(log, "a").write("llmnr %s\n" % name)
            if silent: continue
            answer = p[:2] + b"\x80\x00" + b"\x00\x01\x00\x01\x00\x00\x00\x00" + p[12:end + 4]
            answer += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04" + socket.inet_aton(me)
        else:
            name = nb_decode(p[13:45])
            open(log, "a").write("nbns %s\n" % name)
            if silent: continue
            answer = p[:2] + b"\x85\x00\x00\x00\x00\x01\x00\x00\x00\x00" + p[12:46]
            answer += b"\x00\x20\x00\x01\x00\x00\x00\xa5\x00\x06\x00\x00" + socket.inet_aton(me)
        s.sendto(answer, peer)
"#;

fn config(net: &TestNet) -> String {
    json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {},
        "outputs": [{"transport": {"type": "terminal"}}],
        "sensor": {
            "poisoning": {
                "enabled": true,
                "interval_secs": 2,
                "jitter_secs": 0,
                "wait_ms": 1000,
                "names": ["FILESRV42"],
                "protocols": ["llmnr", "nbns", "mdns"]
            }
        }
    })
    .to_string()
}

/// Starts the answerer in the peer namespace and waits (at most 10 s) until it listens.
fn answerer(net: &TestNet, dir: &Path, silent: bool) -> ChildGuard {
    let script = dir.join("answerer.py");
    std::fs::write(&script, ANSWERER).expect("write answerer");
    let ready = dir.join("ready");
    let mut cmd = net.peer.command("python3");
    cmd.arg(&script)
        .arg(&net.peer_ip)
        .arg(dir.join("queries.log"))
        .arg(&ready);
    if silent {
        cmd.arg("--silent");
    }
    let guard = ChildGuard::spawn(&mut cmd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the answerer did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    guard
}

fn poisoning_events(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| {
            e["logtype"]
                .as_str()
                .is_some_and(|l| l.ends_with(".poisoning"))
        })
        .collect()
}

fn temp(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("poisoning-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn poisoning_by_a_responder_answering_llmnr_and_nbns_is_reported_with_its_address_and_the_name() {
    require_root!();
    let net = TestNet::new();
    let dir = temp("answer");
    let _answerer = answerer(&net, &dir, false);
    let sensor = RunningSensor::start(&net.sensor, &config(&net), &["--capture", "none"]);
    // Rounds start at once and every 2 s; two rounds fit in 4.5 s.
    std::thread::sleep(Duration::from_millis(4500));
    let run = sensor.stop();
    let found = poisoning_events(&run.events);
    let by = |logtype: &str| -> Vec<&&Value> {
        found.iter().filter(|e| e["logtype"] == logtype).collect()
    };
    let llmnr = by("llmnr.poisoning");
    let nbns = by("nbns.poisoning");
    assert!(!llmnr.is_empty(), "{:?}", run.events);
    assert!(!nbns.is_empty(), "{:?}", run.events);
    assert!(by("mdns.poisoning").is_empty(), "nobody answered mDNS");
    for (events, name, port) in [(&llmnr, "FILESRV42", 5355), (&nbns, "FILESRV42", 137)] {
        for e in events {
            assert_eq!(e["src_ip"], json!(net.peer_ip), "{e}");
            assert_eq!(e["src_port"], json!(port), "{e}");
            assert_eq!(e["dst_ip"], json!(net.sensor_ip), "{e}");
            assert_eq!(e["extra"]["name"], json!(name), "{e}");
            assert_eq!(e["extra"]["answers"], json!([net.peer_ip]), "{e}");
            assert_eq!(e["extra"]["interface"], json!(net.sensor_if), "{e}");
        }
    }
    // One event per answering host, protocol and round.
    assert!(llmnr.len() <= 3 && nbns.len() <= 3, "{found:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn poisoning_queries_nobody_answers_give_no_event() {
    require_root!();
    let net = TestNet::new();
    let dir = temp("silent");
    let _listener = answerer(&net, &dir, true);
    let sensor = RunningSensor::start(&net.sensor, &config(&net), &["--capture", "none"]);
    std::thread::sleep(Duration::from_millis(3500));
    let run = sensor.stop();
    assert!(poisoning_events(&run.events).is_empty(), "{:?}", run.events);
    // The queries did go out: the listener saw both kinds for the configured name.
    let seen = std::fs::read_to_string(dir.join("queries.log")).unwrap_or_default();
    assert!(seen.lines().any(|l| l == "llmnr FILESRV42"), "{seen}");
    assert!(seen.lines().any(|l| l == "nbns FILESRV42"), "{seen}");
    let _ = std::fs::remove_dir_all(&dir);
}
