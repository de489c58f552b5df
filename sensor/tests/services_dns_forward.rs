//! Trapster's `target_dns` against `dig`: recursive queries outside the zone are forwarded to
//! an upstream the test runs on loopback (UDP and TCP), and its answer comes back in the
//! decoy's own message: the decoy's NSID and flags, never the upstream's, nothing of the
//! client's EDNS options sent upstream, `version.bind` and the zone never forwarded, large
//! answers fetched over TCP, and SERVFAIL when the upstream does not answer.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod harness;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use harness::{Harness, normalized, run};
use hickory_proto::{
    op::{Edns, Message, MessageType},
    rr::{
        RData, Record,
        rdata::{
            A, TXT,
            opt::{EdnsOption, NSIDPayload},
        },
    },
};
use sensor::event::{Action, Service};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, UdpSocket},
};

const LIMIT: Duration = Duration::from_secs(10);
/// How many TXT records the upstream gives `big.example` (far more than 1232 bytes).
const BIG: usize = 60;

/// What the upstream saw: (transport, the query as parsed).
type Seen = Arc<Mutex<Vec<(&'static str, Message)>>>;

/// The upstream's answer to `query`: authoritative (which the decoy must not relay), with
/// its own NSID, an A record for any name and many TXT records for `big.example`.
fn upstream_answer(query: &Message, udp: bool) -> Vec<u8> {
    let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
    answer.metadata.recursion_available = true;
    answer.metadata.authoritative = true;
    answer.metadata.recursion_desired = query.metadata.recursion_desired;
    answer.add_queries(query.queries.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns.options_mut().insert(EdnsOption::NSID(
        NSIDPayload::new(b"upstream-resolver-7".to_vec()).unwrap(),
    ));
    answer.set_edns(edns);
    let q = &query.queries[0];
    if q.name().to_ascii().starts_with("big.example") {
        for i in 0..BIG {
            answer.add_answer(Record::from_rdata(
                q.name().clone(),
                300,
                RData::TXT(TXT::new(vec![format!("{i:03} {}", "x".repeat(40))])),
            ));
        }
        if udp {
            let mut cut = answer.truncate();
            cut.metadata.message_type = MessageType::Response;
            return cut.to_vec().unwrap();
        }
    } else {
        answer.add_answer(Record::from_rdata(
            q.name().clone(),
            300,
            RData::A(A::new(192, 0, 2, 55)),
        ));
    }
    answer.to_vec().unwrap()
}

/// Runs an upstream on one loopback port (UDP and TCP) until the test ends.
async fn upstream() -> (SocketAddr, Seen) {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let query = Message::from_vec(&buf[..n]).unwrap();
            let reply = upstream_answer(&query, true);
            log.lock().unwrap().push(("udp", query));
            udp.send_to(&reply, from).await.unwrap();
        }
    });
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            let mut prefix = [0u8; 2];
            stream.read_exact(&mut prefix).await.unwrap();
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
            stream.read_exact(&mut query).await.unwrap();
            let query = Message::from_vec(&query).unwrap();
            let reply = upstream_answer(&query, false);
            log.lock().unwrap().push(("tcp", query));
            let mut framed = u16::try_from(reply.len()).unwrap().to_be_bytes().to_vec();
            framed.extend(reply);
            stream.write_all(&framed).await.unwrap();
        }
    });
    (addr, seen)
}

async fn start(target: &str) -> (Harness, SocketAddr) {
    let h = Harness::start(
        json!({"dns": [{"port": 0, "domain": "corp.local", "server_id": "ns1.corp.local",
            "version": "9.18.28-1~deb12u2-Debian", "target_dns": target}]}),
        json!({"udp_replies_per_source_per_sec": 1000}),
    )
    .await;
    let udp = h
        .services
        .as_ref()
        .unwrap()
        .udp_bound()
        .iter()
        .find(|(s, a)| *s == Service::Dns && a.is_ipv4())
        .map(|(_, a)| *a)
        .unwrap();
    (h, udp)
}

async fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let port = addr.port().to_string();
    let mut all = vec!["@127.0.0.1", "-p", &port, "+tries=1", "+time=4"];
    all.extend(args);
    let out = run("dig", &all, &[], LIMIT).await;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The flags `dig` printed (`;; flags: qr rd ra;`).
fn flags(out: &str) -> Vec<String> {
    let line = out
        .lines()
        .find(|l| l.contains(";; flags:"))
        .unwrap_or_else(|| panic!("no flags in {out}"));
    let after = line.split(";; flags:").nth(1).unwrap();
    after
        .split(';')
        .next()
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn recursive_queries_are_forwarded_and_relayed_in_the_decoys_words() {
    let (upstream, seen) = upstream().await;
    let (mut h, addr) = start(&upstream.to_string()).await;
    let port = addr.port();

    let out = dig(addr, &["+nsid", "www.example.org", "A"]).await;
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("www.example.org.") && l.ends_with("192.0.2.55")),
        "{out}"
    );
    assert_eq!(flags(&out), ["qr", "rd", "ra"], "{out}");
    assert!(
        out.contains("NSID: 6e 73 31 2e 63 6f 72 70 2e 6c 6f 63 61 6c"),
        "{out}"
    );
    assert!(!out.contains("upstream-resolver-7"), "{out}");
    let events = h.until(Action::Query, 1, LIMIT).await;
    let got: Vec<_> = events
        .iter()
        .filter(|e| e.action == Action::Query)
        .map(normalized)
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["dst_port"], port);
    assert_eq!(
        got[0]["extra"],
        json!({"qname": "www.example.org", "qtype": "A", "qclass": "IN", "transport": "udp",
            "recursion_desired": true, "forwarded": true, "session_id": "*"})
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (transport, query) = &seen[0];
        assert_eq!(*transport, "udp");
        assert!(query.metadata.recursion_desired);
        assert_eq!(query.queries.len(), 1);
        assert_eq!(query.queries[0].name().to_ascii(), "www.example.org.");
        // dig sends a COOKIE and asked NSID: neither goes upstream.
        let edns = query.edns.as_ref().unwrap();
        assert_eq!(edns.options().as_ref().len(), 0, "{edns:?}");
        assert_eq!(edns.max_payload(), 1232);
    }

    // Never forwarded: the zone, the host's version, a query without recursion.
    let version = dig(addr, &["+short", "version.bind", "CH", "TXT"]).await;
    assert_eq!(version, "\"9.18.28-1~deb12u2-Debian\"\n");
    let local = dig(addr, &["+short", "srv01.corp.local", "A"]).await;
    assert_eq!(local, "127.0.0.1\n");
    let norec = dig(addr, &["+norecurse", "www.example.org", "A"]).await;
    assert!(norec.contains("status: REFUSED"), "{norec}");
    assert_eq!(flags(&norec), ["qr", "ra"], "{norec}");
    h.until(Action::Query, 3, LIMIT).await;
    assert_eq!(seen.lock().unwrap().len(), 1);

    // A large answer: the upstream truncates over UDP, the decoy asks again over TCP and
    // truncates its own UDP reply, and dig gets every record over TCP.
    let big = dig(addr, &["+short", "big.example", "TXT"]).await;
    assert_eq!(big.lines().count(), BIG, "{big}");
    let transports: Vec<&str> = seen.lock().unwrap().iter().map(|(t, _)| *t).collect();
    assert_eq!(transports, ["udp", "udp", "tcp", "udp", "tcp"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_does_not_answer_gives_servfail() {
    // A loopback port nobody listens on: the upstream's ICMP refusal (or silence) is a
    // SERVFAIL within the forwarding timeout.
    let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (mut h, addr) = start(&target).await;
    let out = dig(addr, &["www.example.org", "A"]).await;
    assert!(out.contains("status: SERVFAIL"), "{out}");
    let events = h.until(Action::Query, 1, LIMIT).await;
    assert_eq!(
        events.iter().filter(|e| e.action == Action::Query).count(),
        1
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_dns_that_points_back_at_the_decoy_does_not_loop() {
    // The decoy's own port as its upstream: its forwarded query comes back to it, is known as
    // its own, and is answered REFUSED (outside the zone, not forwarded again); that answer is
    // relayed to the client, after one hop.
    let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut h = Harness::start(
        json!({"dns": [{"port": port, "target_dns": format!("127.0.0.1:{port}")}]}),
        json!({"udp_replies_per_source_per_sec": 1000}),
    )
    .await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let out = dig(addr, &["www.example.org", "A"]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
    let events = h.until(Action::Query, 2, LIMIT).await;
    let forwarded: Vec<_> = events
        .iter()
        .filter(|e| e.action == Action::Query)
        .map(|e| normalized(e)["extra"]["forwarded"].clone())
        .collect();
    // The client's query (forwarded) and the decoy's own (answered here).
    assert_eq!(forwarded, [json!(true), json!(null)]);
    let more = h
        .drain(Duration::from_millis(500), Duration::from_secs(3))
        .await;
    assert!(more.iter().all(|e| e.action != Action::Query), "{more:?}");
    h.stop().await;
}
