//! The DNS decoy against `dig` (Debian `bind9-dnsutils`) over UDP and TCP, zone transfers,
//! `version.bind`, and `nmap -sU -sV` with the `dns-nsid` and `dns-recursion` scripts, on
//! loopback: answers as configured, nothing forwarded, exact events.

mod harness;

use std::{net::SocketAddr, time::Duration};

use harness::{Harness, expected, normalized, run};
use sensor::event::{Action, Event, Service};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

async fn start(allow_transfer: bool) -> (Harness, SocketAddr) {
    let h = Harness::start(
        json!({"dns": [{"port": 0, "domain": "corp.local", "allow_transfer": allow_transfer,
            "version": "9.18.28-1~deb12u2-Debian", "server_id": "ns1.corp.local",
            "records": [{"name": "files", "type": "A", "value": "192.0.2.7"}]}]}),
        json!({"udp_replies_per_source_per_sec": 1000}),
    )
    .await;
    let udp = h
        .services
        .as_ref()
        .expect("as the test set up")
        .udp_bound()
        .iter()
        .find(|(s, a)| *s == Service::Dns && a.is_ipv4())
        .map(|(_, a)| *a)
        .expect("bound on UDP");
    // One instance, both transports, one port.
    assert_eq!(h.addr(Service::Dns).port(), udp.port());
    (h, udp)
}

async fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let port = addr.port().to_string();
    let mut all = vec!["@127.0.0.1", "-p", &port, "+tries=1", "+time=2"];
    all.extend(args);
    let out = run("dig", &all, &[], LIMIT).await;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn queries(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.action == Action::Query)
        .map(normalized)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dig_over_udp_and_tcp() {
    let (mut h, addr) = start(false).await;
    let port = addr.port();
    let short = dig(addr, &["+short", "srv01.corp.local", "A"]).await;
    assert_eq!(short, "127.0.0.1\n");
    let events = h.until(Action::Query, 1, LIMIT).await;
    assert_eq!(
        queries(&events),
        [expected(
            "dns",
            "query",
            port,
            b"",
            json!({"qname": "srv01.corp.local", "qtype": "A",
            "qclass": "IN", "transport": "udp", "rcode": "NOERROR", "recursion_desired": true})
        )]
    );
    let srv = dig(addr, &["+short", "+tcp", "_ldap._tcp.corp.local", "SRV"]).await;
    assert_eq!(srv, "0 100 389 srv01.corp.local.\n");
    let events = h.until(Action::Query, 1, LIMIT).await;
    let q = &queries(&events)[0];
    assert_eq!(q["extra"]["transport"], "tcp");
    assert_eq!(q["extra"]["qtype"], "SRV");
    for (name, kind, want) in [
        (
            "_kerberos._tcp.corp.local",
            "SRV",
            "0 100 88 srv01.corp.local.\n",
        ),
        (
            "_gc._tcp.corp.local",
            "SRV",
            "0 100 3268 srv01.corp.local.\n",
        ),
        ("corp.local", "MX", "10 srv01.corp.local.\n"),
        ("files.corp.local", "A", "192.0.2.7\n"),
        ("1.0.0.127.in-addr.arpa", "PTR", "srv01.corp.local.\n"),
    ] {
        assert_eq!(
            dig(addr, &["+short", name, kind]).await,
            want,
            "{name} {kind}"
        );
    }
    // Recursion: refused, nothing from anywhere else.
    let out = dig(addr, &["www.example.org", "A"]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
    assert!(out.contains("ANSWER: 0"), "{out}");
    assert!(!out.contains(" ra"), "{out}");
    let nx = dig(addr, &["nope.corp.local", "A"]).await;
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(nx.contains("flags: qr aa rd;"), "{nx}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn version_bind_and_zone_transfers() {
    let (mut h, addr) = start(false).await;
    let port = addr.port();
    let version = dig(addr, &["+short", "version.bind", "CH", "TXT"]).await;
    assert_eq!(version, "\"9.18.28-1~deb12u2-Debian\"\n");
    let id = dig(addr, &["+short", "hostname.bind", "CH", "TXT"]).await;
    assert_eq!(id, "\"ns1.corp.local\"\n");
    let refused = dig(addr, &["corp.local", "AXFR"]).await;
    assert!(refused.contains("Transfer failed."), "{refused}");
    let events = h.drain(Duration::from_millis(300), LIMIT).await;
    let all = queries(&events);
    assert_eq!(
        all[0],
        expected(
            "dns",
            "query",
            port,
            b"",
            json!({"qname": "version.bind", "qtype": "TXT",
            "qclass": "CH", "transport": "udp", "rcode": "NOERROR", "recursion_desired": true})
        )
    );
    let axfr = all
        .iter()
        .find(|q| q["extra"]["qtype"] == "AXFR")
        .expect("as the test set up");
    assert_eq!(
        axfr["extra"],
        json!({"qname": "corp.local", "qtype": "AXFR", "qclass": "IN", "transport": "tcp",
            "rcode": "REFUSED", "recursion_desired": false, "session_id": axfr["extra"]["session_id"]})
    );
    h.stop().await;

    let (h, addr) = start(true).await;
    let zone = dig(addr, &["+noall", "+answer", "corp.local", "AXFR"]).await;
    let records: Vec<&str> = zone.lines().collect();
    assert_eq!(records.len(), 14, "{zone}");
    assert!(
        records[0].contains("SOA\tsrv01.corp.local. hostmaster.corp.local. 2024112201"),
        "{zone}"
    );
    assert!(records[13].contains("SOA"), "{zone}");
    assert!(
        zone.contains("files.corp.local.\t3600\tIN\tA\t192.0.2.7"),
        "{zone}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn big_answers_over_udp_set_tc_and_dig_retries_over_tcp() {
    let records: Vec<Value> = (0..30)
        .map(|i| json!({"name": "big", "type": "TXT", "value": format!("{i:02} {}", "x".repeat(40))}))
        .collect();
    let mut h = Harness::start(
        json!({"dns": [{"port": 0, "records": records}]}),
        json!({"udp_replies_per_source_per_sec": 1000}),
    )
    .await;
    let addr = h.addr(Service::Dns);
    let out = dig(
        addr,
        &["+noedns", "+noall", "+answer", "big.corp.local", "TXT"],
    )
    .await;
    assert_eq!(out.lines().count(), 30, "{out}");
    let events = h.until(Action::Query, 2, LIMIT).await;
    let all = queries(&events);
    assert_eq!(all[0]["extra"]["transport"], "udp");
    assert_eq!(all[0]["extra"]["truncated"], true);
    assert_eq!(all[1]["extra"]["transport"], "tcp");
    assert_eq!(all[1]["extra"].get("truncated"), None);
    h.stop().await;
}

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
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn nmap_sees_bind_and_no_recursion() {
    let (h, addr) = start(false).await;
    let port = addr.port().to_string();
    let report = nmap(&[
        "-sU",
        "-sV",
        "-Pn",
        "-n",
        "-p",
        &port,
        "--script",
        "dns-nsid,dns-recursion",
        "127.0.0.1",
    ])
    .await;
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("{port}/udp")))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(line.contains(" open "), "{line}");
    assert!(
        line.contains("ISC BIND 9.18.28-1~deb12u2 (Debian Linux)"),
        "{line}\n{report}"
    );
    assert!(report.contains("NSID: ns1.corp.local"), "{report}");
    assert!(report.contains("id.server: ns1.corp.local"), "{report}");
    assert!(
        report.contains("bind.version: 9.18.28-1~deb12u2-Debian"),
        "{report}"
    );
    assert!(!report.contains("dns-recursion"), "{report}");
    h.stop().await;
}

fn wire(id: u16, name: &str, qtype: hickory_proto::rr::RecordType) -> Vec<u8> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(name.parse().expect("a name"), qtype));
    message.to_vec().expect("encodes")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_from_one_source_gets_one_reply_and_no_amplification() {
    use hickory_proto::rr::RecordType;
    // One reply a second per source, and never more than twice the bytes received.
    let mut h = Harness::start(
        json!({"dns": [{"port": 0}]}),
        json!({"udp_replies_per_source_per_sec": 1, "udp_reply_factor": 2,
            "udp_reply_allowance_bytes": 0}),
    )
    .await;
    let server = h.addr(Service::Dns);
    // The zone's ANY answer is many times its question: refused by the reflection budget,
    // however often it is asked (the budget is per pseudo-session: one peer here).
    let any = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let question = wire(1, "corp.local.", RecordType::ANY);
    // (About 150 bytes for a 28-byte question: twice asked is a budget of 112.)
    for _ in 0..2 {
        any.send_to(&question, server).await.expect("send");
    }
    // 200 peers (ports) of one source, each asking once for a small answer, within far less
    // than a second: the source's one token goes to the first, the rest are refused or not
    // even admitted.
    let mut peers = Vec::new();
    for i in 0..200u16 {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        s.send_to(&wire(i, "srv01.corp.local.", RecordType::A), server)
            .await
            .expect("send");
        peers.push(s);
    }
    // The gate admits 64 pseudo-sessions per source (`max_connections_per_source`): the ANY
    // peer and 63 of the 200; the other 137 datagrams are dropped before any protocol code.
    let events = h.until(Action::Query, 65, LIMIT).await;
    assert_eq!(
        events.iter().filter(|e| e.action == Action::Query).count(),
        65
    );
    let c = h.counters();
    assert_eq!(c["udp_datagrams"], 202);
    assert_eq!(c["udp_sessions"], 64);
    assert_eq!(c["rejected_source"], 137);
    assert_eq!(c["udp_refused_reflection"], 2);
    assert_eq!(c["udp_replies"], 1);
    assert_eq!(c["udp_refused_rate"], 62);
    // The one reply is a real answer, to the first peer.
    let mut buf = [0u8; 512];
    let (n, from) = tokio::time::timeout(LIMIT, peers[0].recv_from(&mut buf))
        .await
        .expect("a reply")
        .expect("received");
    assert_eq!(from.port(), server.port());
    let reply = hickory_proto::op::Message::from_vec(&buf[..n]).expect("parses");
    assert_eq!(reply.answers.len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_garbage_gets_formerr_and_the_connection_goes_on() {
    use hickory_proto::{op::ResponseCode, rr::RecordType};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut h, _) = start(false).await;
    let mut s = tokio::net::TcpStream::connect(h.addr(Service::Dns))
        .await
        .expect("connects");
    let garbage = [0x12, 0x34, 0x00, 0x00, 0xff, 0xff, 0xc0];
    let mut framed = vec![0, 7];
    framed.extend(garbage);
    let query = wire(9, "srv01.corp.local.", RecordType::A);
    framed.extend(u16::try_from(query.len()).expect("small").to_be_bytes());
    framed.extend(&query);
    s.write_all(&framed).await.expect("writes");
    let mut replies = Vec::new();
    for _ in 0..2 {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.expect("length");
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut body).await.expect("body");
        replies.push(hickory_proto::op::Message::from_vec(&body).expect("parses"));
    }
    assert_eq!(replies[0].metadata.id, 0x1234);
    assert_eq!(replies[0].metadata.response_code, ResponseCode::FormErr);
    assert_eq!(replies[1].metadata.id, 9);
    assert_eq!(replies[1].answers.len(), 1);
    let events = h.until(Action::Query, 1, LIMIT).await;
    let data: Vec<Value> = events
        .iter()
        .filter(|e| e.action == Action::Data)
        .map(normalized)
        .collect();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["data"], hex::encode(garbage));
    h.stop().await;
}
