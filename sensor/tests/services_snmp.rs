//! The SNMP decoy against net-snmp's own clients (`snmpget`, `snmpwalk`, `snmpbulkwalk`, Debian
//! `snmp`) and `nmap -sU -sV`, on loopback: answers as snmpd gives them, and the exact events,
//! the v3 hashcat line checked against the password the client used.

mod harness;

use std::{net::SocketAddr, time::Duration};

use harness::{Harness, expected, normalized, run};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sensor::event::{Action, Event, Service};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

/// Limits that let a client walk at full speed (the defaults throttle replies per source).
fn walk_limits() -> Value {
    json!({"udp_reply_factor": 8, "udp_replies_per_source_per_sec": 1000})
}

async fn start() -> (Harness, SocketAddr) {
    let h = Harness::start(
        json!({"snmp": [{"port": 0, "communities": ["public", "n0c-ro"], "uptime_offset_secs": 1000}]}),
        walk_limits(),
    )
    .await;
    let addr = udp_addr(&h, Service::Snmp);
    (h, addr)
}

fn udp_addr(h: &Harness, service: Service) -> SocketAddr {
    h.services
        .as_ref()
        .expect("as the test set up")
        .udp_bound()
        .iter()
        .find(|(s, a)| *s == service && a.is_ipv4())
        .map(|(_, a)| *a)
        .expect("bound on UDP")
}

fn target(addr: SocketAddr) -> String {
    format!("udp:127.0.0.1:{}", addr.port())
}

fn of(events: &[Event], action: Action) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.action == action)
        .map(normalized)
        .collect()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn snmpget_v2c_right_and_wrong_community() {
    let (mut h, addr) = start().await;
    let port = addr.port();
    let out = run(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-On",
            &target(addr),
            "1.3.6.1.2.1.1.5.0",
            "1.3.6.1.2.1.1.2.0",
        ],
        &[],
        LIMIT,
    )
    .await;
    assert_eq!(
        stdout(&out),
        ".1.3.6.1.2.1.1.5.0 = STRING: \"srv01\"\n.1.3.6.1.2.1.1.2.0 = OID: .1.3.6.1.4.1.8072.3.2.10\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = h.until(Action::Query, 1, LIMIT).await;
    assert_eq!(
        of(&events, Action::Login),
        [expected(
            "snmp",
            "login",
            port,
            b"",
            json!({"version": "2c", "community": "public", "matched": true})
        )]
    );
    assert_eq!(
        of(&events, Action::Query),
        [expected(
            "snmp",
            "query",
            port,
            b"",
            json!({"version": "2c", "pdu": "get",
            "varbind": "1.3.6.1.2.1.1.5.0 1.3.6.1.2.1.1.2.0",
            "oids": ["1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.2.0"],
            "community": "public", "matched": true})
        )]
    );

    let out = run(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "private",
            "-t",
            "0.5",
            "-r",
            "0",
            "-On",
            &target(addr),
            "1.3.6.1.2.1.1.1.0",
        ],
        &[],
        LIMIT,
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Timeout"));
    let events = h.until(Action::Query, 1, LIMIT).await;
    assert_eq!(
        of(&events, Action::Login),
        [expected(
            "snmp",
            "login",
            port,
            b"",
            json!({"version": "2c", "community": "private", "matched": false})
        )]
    );
    assert_eq!(of(&events, Action::Query)[0]["extra"]["matched"], false);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snmpwalk_v1_and_snmpbulkwalk_v2c_see_the_same_mib() {
    let (mut h, addr) = start().await;
    let walk = run(
        "snmpwalk",
        &["-v1", "-c", "n0c-ro", "-On", &target(addr), "1.3.6.1.2.1"],
        &[],
        LIMIT,
    )
    .await;
    let bulk = run(
        "snmpbulkwalk",
        &["-v2c", "-c", "public", "-On", &target(addr), "1.3.6.1.2.1"],
        &[],
        LIMIT,
    )
    .await;
    let walked = stdout(&walk);
    // v1 ends with noSuchName, which snmpwalk prints as "End of MIB".
    assert_eq!(walked.lines().last(), Some("End of MIB"), "{walked}");
    let lines: Vec<&str> = walked.lines().filter(|l| l.starts_with('.')).collect();
    assert_eq!(
        lines.len(),
        24,
        "{walked}{}",
        String::from_utf8_lossy(&walk.stderr)
    );
    assert!(
        lines[0].starts_with(".1.3.6.1.2.1.1.1.0 = STRING: \"Linux srv01 6.1.0-28-amd64"),
        "{}",
        lines[0]
    );
    assert!(
        lines[2].starts_with(".1.3.6.1.2.1.1.3.0 = Timeticks: ("),
        "{}",
        lines[2]
    );
    assert_eq!(
        lines[3],
        ".1.3.6.1.2.1.1.4.0 = STRING: \"Me <me@example.org>\""
    );
    assert_eq!(lines[7], ".1.3.6.1.2.1.2.1.0 = INTEGER: 2");
    assert_eq!(lines[10], ".1.3.6.1.2.1.2.2.1.2.1 = STRING: \"lo\"");
    assert_eq!(lines[11], ".1.3.6.1.2.1.2.2.1.2.2 = STRING: \"eth0\"");
    // The bulk walk sees the same objects (sysUpTime moves on).
    let bulked = stdout(&bulk);
    let mut blines: Vec<&str> = bulked.lines().collect();
    // v2c ends with endOfMibView, which snmpbulkwalk prints after the last object.
    assert_eq!(
        blines.pop(),
        Some(
            ".1.3.6.1.2.1.2.2.1.8.2 = No more variables left in this MIB View (It is past the end of the MIB tree)"
        )
    );
    assert_eq!(blines.len(), 24, "{bulked}");
    for (a, b) in lines.iter().zip(&blines) {
        if !a.starts_with(".1.3.6.1.2.1.1.3.0") {
            assert_eq!(a, b);
        }
    }
    let events = h.drain(Duration::from_millis(300), LIMIT).await;
    let logins = of(&events, Action::Login);
    let communities: Vec<&Value> = logins.iter().map(|l| &l["extra"]["community"]).collect();
    assert_eq!(communities, [&json!("n0c-ro"), &json!("public")]);
    let queries = of(&events, Action::Query);
    // snmpwalk: one get-next per object plus the one that ends; snmpbulkwalk: get-bulks.
    let pdus: Vec<&str> = queries
        .iter()
        .map(|q| q["extra"]["pdu"].as_str().expect("as the test set up"))
        .collect();
    assert_eq!(pdus.iter().filter(|p| **p == "getnext").count(), 25);
    assert!(pdus.iter().filter(|p| **p == "getbulk").count() >= 1);
    assert_eq!(queries[0]["extra"]["oids"], json!(["1.3.6.1.2.1"]));
    assert_eq!(h.counters()["udp_refused_reflection"], 0);
    assert_eq!(h.counters()["udp_refused_rate"], 0);
    h.stop().await;
}

/// RFC 3414 A.2.1 and 2.6: the password stretched to 1 MiB, hashed, localised to `engine`.
fn md5_key(password: &[u8], engine: &[u8]) -> Vec<u8> {
    let stream: Vec<u8> = password.iter().copied().cycle().take(1_048_576).collect();
    let ku = Md5::digest(&stream);
    let mut local = Md5::new();
    local.update(ku);
    local.update(engine);
    local.update(ku);
    local.finalize().to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn snmpget_v3_discovers_the_engine_and_leaves_a_crackable_line() {
    let (mut h, addr) = start().await;
    let out = run(
        "snmpget",
        &[
            "-v3",
            "-l",
            "authNoPriv",
            "-u",
            "admin",
            "-a",
            "MD5",
            "-A",
            "Winter2024!",
            "-t",
            "1",
            "-r",
            "0",
            &target(addr),
            "1.3.6.1.2.1.1.5.0",
        ],
        &[],
        LIMIT,
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unknown user name"), "{err}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    let logins = of(&events, Action::Login);
    assert_eq!(logins.len(), 1);
    let extra = &logins[0]["extra"];
    assert_eq!(extra["username"], "admin");
    assert_eq!(extra["security_level"], "authNoPriv");
    assert_eq!(extra["matched"], false);
    let engine = extra["engine_id"].as_str().expect("as the test set up");
    assert!(engine.starts_with("80001f8880"), "{engine}");
    assert_eq!(engine.len(), 34);
    let line = extra["hashcat"].as_str().expect("as the test set up");
    let fields: Vec<&str> = line.split('$').collect();
    assert_eq!(fields.len(), 7, "{line}");
    assert_eq!(fields[1..3], ["SNMPv3", "0"]);
    assert_eq!(fields[5], engine);
    assert_eq!(
        fields[6],
        extra["auth_params"].as_str().expect("as the test set up")
    );
    // The line verifies against the password snmpget used (HMAC-MD5-96), not another.
    let message = hex::decode(fields[4]).expect("as the test set up");
    let check = |password: &[u8]| {
        let mut mac = Hmac::<Md5>::new_from_slice(&md5_key(
            password,
            &hex::decode(engine).expect("as the test set up"),
        ))
        .expect("as the test set up");
        mac.update(&message);
        hex::encode(&mac.finalize().into_bytes()[..12])
    };
    assert_eq!(check(b"Winter2024!"), fields[6]);
    assert_ne!(check(b"Winter2025!"), fields[6]);
    // Discovery, then the authenticated get: two queries.
    let queries = of(&events, Action::Query);
    assert_eq!(queries.len(), 2);
    assert_eq!(queries[0]["extra"]["security_level"], "noAuthNoPriv");
    assert_eq!(queries[1]["extra"]["username"], "admin");
    assert_eq!(queries[1]["extra"]["oids"], json!(["1.3.6.1.2.1.1.5.0"]));
    h.stop().await;
}

/// `nmap` for a UDP scan: raw sockets need root.
async fn nmap(args: &[&str]) -> String {
    let root = std::fs::read_to_string("/proc/self/status")
        .expect("as the test set up")
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let out = if root {
        run("nmap", args, &[], Duration::from_secs(120)).await
    } else {
        let mut with = vec!["-n", "nmap"];
        with.extend(args);
        run("sudo", &with, &[], Duration::from_secs(120)).await
    };
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn nmap_identifies_net_snmp() {
    let (h, addr) = start().await;
    let port = addr.port().to_string();
    let report = nmap(&["-sU", "-sV", "-Pn", "-n", "-p", &port, "127.0.0.1"]).await;
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("{port}/udp")))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(line.contains(" open "), "{line}");
    assert!(
        line.contains("SNMPv1 server; net-snmp SNMPv3 server"),
        "{line}"
    );
    h.stop().await;
}
