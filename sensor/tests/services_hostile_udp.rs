//! Hostile datagrams against the UDP decoys over real sockets (the protocol modules' own
//! tests feed the same kinds of input to the handlers directly): for SNMP and DNS each, more
//! than fifty truncated, oversized, self-referencing and random datagrams from one peer. None
//! may take the service down (a valid question still gets its answer afterwards), every
//! datagram is counted once, replies never exceed the reflection budget, SNMP answers none of
//! them, and whatever DNS answers is a well-formed response.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod harness;

use std::{net::SocketAddr, time::Duration};

use harness::{Harness, noise};
use sensor::event::Service;
use serde_json::{Value, json};
use tokio::net::UdpSocket;

const LIMIT: Duration = Duration::from_secs(10);

/// `udp_reply_factor` and allowance of the tests.
const FACTOR: u64 = 2;
const ALLOWANCE: u64 = 512;

fn limits() -> Value {
    json!({"udp_reply_factor": FACTOR, "udp_reply_allowance_bytes": ALLOWANCE,
        "udp_replies_per_source_per_sec": 100_000, "max_events_per_session": 100_000})
}

fn udp_addr(h: &Harness, service: Service) -> SocketAddr {
    h.services
        .as_ref()
        .unwrap()
        .udp_bound()
        .iter()
        .find(|(s, a)| *s == service && a.is_ipv4())
        .map(|(_, a)| *a)
        .unwrap()
}

/// A v2c get-request for sysName.0 with community `public`, request id 0x01020304.
const SNMP_GET: [u8; 43] = [
    0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x1c, 0x02,
    0x04, 0x01, 0x02, 0x03, 0x04, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c, 0x06,
    0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x05, 0x00, 0x05, 0x00,
];

/// The id of the valid question sent last (the hostile ones never use it).
const VALID_ID: u16 = 0x7777;

/// A DNS question for `srv01.corp.local A`.
fn dns_query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["srv01", "corp", "local"] {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn snmp_cases() -> Vec<Vec<u8>> {
    let mut cases: Vec<Vec<u8>> = (0..SNMP_GET.len())
        .map(|n| SNMP_GET[..n].to_vec())
        .collect();
    for header in [
        &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..],
        &[0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00],
        &[0x30, 0x06, 0x02, 0x84, 0x7f, 0xff, 0xff, 0xff],
        &[0x30, 0x00],
    ] {
        cases.push(header.to_vec());
    }
    // A wrong version, a PDU tag no agent knows, 2,000 nested indefinite sequences.
    let mut v9 = SNMP_GET.to_vec();
    v9[4] = 9;
    cases.push(v9);
    let mut odd_pdu = SNMP_GET.to_vec();
    odd_pdu[13] = 0xbf;
    cases.push(odd_pdu);
    cases.push([0x30, 0x80].repeat(2_000));
    for seed in 1..=20u64 {
        cases.push(noise(usize::try_from(seed * 11).unwrap(), seed));
    }
    cases
}

fn dns_cases() -> Vec<Vec<u8>> {
    let valid = dns_query(0x4242);
    let mut cases: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
    let header = |qd: u16| {
        let mut h = vec![0xab, 0xcd, 0x01, 0x00];
        h.extend(qd.to_be_bytes());
        h.extend([0, 0, 0, 0, 0, 0]);
        h
    };
    for name in [
        &[0xc0, 0x0c][..],
        &[0x01, b'a', 0xc0, 0x0c],
        &[0xc0, 0x0e, 0xc0, 0x0c],
        &[0xc0, 0xff],
        &[0x40, b'a'],
        &[0xff; 300],
    ] {
        let mut m = header(1);
        m.extend(name);
        m.extend([0, 1, 0, 1]);
        cases.push(m);
    }
    let mut lying = header(u16::MAX);
    lying.extend([0x01, b'a', 0x00, 0, 1, 0, 1]);
    cases.push(lying);
    // A response sent to the server, an unknown opcode, a 60 KiB datagram.
    let mut response = valid.clone();
    response[2] |= 0x80;
    cases.push(response);
    let mut opcode = valid.clone();
    opcode[2] = 0x78;
    cases.push(opcode);
    let mut big = valid.clone();
    big.resize(60 * 1024, 0x3f);
    cases.push(big);
    for seed in 1..=20u64 {
        cases.push(noise(usize::try_from(seed * 9).unwrap(), seed));
    }
    cases
}

/// Sends every case from one peer, then the valid question; returns the replies received
/// before the valid one's (which must come) and the valid reply.
async fn hostile(
    service: Service,
    instance: Value,
    cases: &[Vec<u8>],
    valid: &[u8],
) -> (Vec<Vec<u8>>, Vec<u8>, Value) {
    let mut services = serde_json::Map::new();
    services.insert(service.as_str().to_owned(), json!([instance]));
    let mut h = Harness::start(Value::Object(services), limits()).await;
    let server = udp_addr(&h, service);
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for case in cases {
        peer.send_to(case, server).await.unwrap();
    }
    peer.send_to(valid, server).await.unwrap();
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let last = loop {
        let (n, from) = tokio::time::timeout(LIMIT, peer.recv_from(&mut buf))
            .await
            .expect("the valid question is still answered")
            .unwrap();
        assert_eq!(from, server);
        let reply = buf[..n].to_vec();
        // The valid question's answer carries its id (DNS 0x4242; SNMP's request id).
        let is_last = match service {
            Service::Dns => reply.starts_with(&VALID_ID.to_be_bytes()),
            _ => reply.windows(4).any(|w| w == [0x01, 0x02, 0x03, 0x04]),
        };
        if is_last {
            break reply;
        }
        replies.push(reply);
    };
    // The server counts a reply once its send returned, which may be after the peer read it:
    // the counters are read once the server has gone quiet.
    let _ = h
        .drain(Duration::from_millis(100), Duration::from_secs(2))
        .await;
    let counters = h.counters();
    h.stop().await;
    (replies, last, counters)
}

fn check_budget(counters: &Value, sent: &[Vec<u8>], valid: &[u8]) {
    let received: u64 = sent.iter().map(|c| c.len() as u64).sum::<u64>() + valid.len() as u64;
    assert_eq!(
        counters["udp_datagrams"],
        json!(sent.len() + 1),
        "{counters}"
    );
    assert_eq!(
        counters["udp_bytes_received"],
        json!(received),
        "{counters}"
    );
    assert_eq!(counters["udp_table_full"], json!(0), "{counters}");
    let replied = counters["udp_bytes_replied"].as_u64().unwrap();
    assert!(replied <= FACTOR * received + ALLOWANCE, "{counters}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_datagrams_against_snmp() {
    let cases = snmp_cases();
    assert!(cases.len() >= 50, "{}", cases.len());
    let (replies, last, counters) = hostile(
        Service::Snmp,
        json!({"port": 0, "communities": ["public"]}),
        &cases,
        &SNMP_GET,
    )
    .await;
    assert!(
        replies.is_empty(),
        "SNMP answered hostile input: {replies:02x?}"
    );
    // The answer to the valid get: a response PDU (0xa2) naming sysName's OID.
    assert_eq!(last[0], 0x30);
    assert!(last.contains(&0xa2), "{last:02x?}");
    assert!(
        last.windows(8)
            .any(|w| w == [0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x05, 0x00])
    );
    assert_eq!(counters["udp_replies"], json!(1), "{counters}");
    check_budget(&counters, &cases, &SNMP_GET);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_datagrams_against_dns() {
    let cases = dns_cases();
    assert!(cases.len() >= 50, "{}", cases.len());
    let valid = dns_query(VALID_ID);
    let (replies, last, counters) = hostile(Service::Dns, json!({"port": 0}), &cases, &valid).await;
    for reply in &replies {
        // Only ever a response (QR set), never longer than a classic datagram.
        assert!(reply.len() >= 12 && reply.len() <= 512, "{reply:02x?}");
        assert_ne!(reply[2] & 0x80, 0, "{reply:02x?}");
    }
    assert_eq!(last[2] & 0x80, 0x80);
    assert_eq!(
        u16::from_be_bytes([last[6], last[7]]),
        1,
        "one answer: {last:02x?}"
    );
    assert_eq!(
        counters["udp_replies"],
        json!(replies.len() + 1),
        "{counters}"
    );
    check_budget(&counters, &cases, &valid);
}
