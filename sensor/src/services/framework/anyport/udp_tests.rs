//! The UDP hand-off without the kernel program: datagrams sent straight to the catch-all UDP
//! socket on loopback take the same path as steered ones (their original destination is then
//! the socket's own address).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::{net::UdpSocket, sync::mpsc};

use super::{super::Detected, Dispatch, sniff};
use crate::{
    event::{Action, Event, Service},
    services::{
        ServiceLimits, ServicesPlan, ServicesSection,
        framework::udp::{Exchange, UdpHandler, UdpSession},
        start,
    },
    shutdown::CancellationToken,
};

const LIMIT: Duration = Duration::from_secs(20);

/// `dig example.com A` as sent (id 0x1234, RD, one question, no EDNS).
const DNS_QUERY: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\
\x07example\x03com\x00\x00\x01\x00\x01";

/// `snmpget -v2c -c public <host> sysDescr.0` as sent (request id 1).
const SNMP_GET: &[u8] = b"\x30\x29\x02\x01\x01\x04\x06public\xa0\x1c\x02\x04\x00\x00\x00\x01\
\x02\x01\x00\x02\x01\x00\x30\x0e\x30\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x01\x00\x05\x00";

#[test]
fn a_dns_query_and_an_snmp_message_are_recognised_from_their_form() {
    assert_eq!(sniff(DNS_QUERY), Some("dns"));
    assert_eq!(sniff(SNMP_GET), Some("snmp"));
    // A DNS response (QR set) is no query to answer.
    let mut response = DNS_QUERY.to_vec();
    response[2] |= 0x80;
    assert_eq!(sniff(&response), None);
    // Cut short, or noise.
    assert_eq!(sniff(&DNS_QUERY[..20]), None);
    assert_eq!(sniff(&SNMP_GET[..30]), None);
    assert_eq!(sniff(b""), None);
    assert_eq!(sniff(b"hello\n"), None);
    assert_eq!(sniff(&[0x30, 0x80, 0x00, 0x00]), None);
}

struct Quiet;

impl UdpSession for Quiet {
    fn handle(&mut self, _datagram: &[u8], _out: &mut Exchange) -> Option<Vec<u8>> {
        None
    }
}

#[test]
fn the_udp_port_map_wins_then_the_datagram_form() {
    let quiet: UdpHandler = Arc::new(|| Box::new(Quiet));
    let limits = Arc::new(ServiceLimits::default());
    let dispatch = Dispatch {
        handlers: BTreeMap::new(),
        ports: BTreeMap::new(),
        udp_handlers: [("dns", (Service::Dns, quiet, limits))]
            .into_iter()
            .collect(),
        udp_ports: [(53, "dns"), (161, "snmp"), (5300, "dns")]
            .into_iter()
            .collect(),
        banner: None,
        sniff_timeout: Duration::from_millis(100),
        ttl: None,
    };
    assert_eq!(
        dispatch.choose_udp(5300, b"noise"),
        (Some("dns"), Detected::Port)
    );
    assert_eq!(
        dispatch.choose_udp(5353, DNS_QUERY),
        (Some("dns"), Detected::Sniff)
    );
    // Mapped or recognised, but no handler could be built for it.
    assert_eq!(dispatch.choose_udp(161, SNMP_GET), (None, Detected::None));
    assert_eq!(dispatch.choose_udp(1161, SNMP_GET), (None, Detected::None));
    assert_eq!(dispatch.choose_udp(9999, b"hi"), (None, Detected::None));
}

fn plan(decoys: Value) -> ServicesPlan {
    ServicesPlan {
        interface: "lo".to_owned(),
        limits: ServiceLimits {
            state_dir: "/dev/null/state".into(),
            ephemeral_ports: true,
            ..ServiceLimits::default()
        },
        services: ServicesSection::from_map(BTreeMap::new()),
        decoys: serde_json::from_value(decoys).unwrap(),
        ..ServicesPlan::default()
    }
}

/// The next `n` events (at most `LIMIT` in all).
async fn next(events: &mut mpsc::Receiver<Event>, n: usize) -> Vec<Event> {
    let mut got = Vec::new();
    let wait = async {
        while got.len() < n {
            match events.recv().await {
                Some(event) => got.push(event),
                None => break,
            }
        }
    };
    let _ = tokio::time::timeout(LIMIT, wait).await;
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dns_query_is_answered_and_noise_is_a_udp_connection_only() {
    let (sink, mut events) = mpsc::channel(64);
    let services = start(
        &plan(json!({"enabled": true, "udp": ["1-65535"]})),
        sink,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let sockets = services.decoys().expect("decoys enabled");
    let addr = sockets.udp_addresses[0];
    assert!(addr.is_ipv4() && addr.ip().is_loopback(), "{addr}");
    assert!(sockets.udp_v4.is_some());
    assert!(sockets.udp_ports.contains(&5353) && !sockets.udp_ports.contains(&addr.port()));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(DNS_QUERY, addr).await.unwrap();
    let mut reply = [0_u8; 512];
    let (n, from) = tokio::time::timeout(LIMIT, client.recv_from(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        from, addr,
        "the reply leaves from the address the query went to"
    );
    assert_eq!(&reply[..2], b"\x12\x34", "same id");
    assert_ne!(reply[2] & 0x80, 0, "a response");
    assert!(n >= DNS_QUERY.len());
    let got = next(&mut events, 3).await;
    assert_eq!(
        got.iter()
            .map(|e| (e.service, e.action))
            .collect::<Vec<_>>(),
        [
            (Service::Udp, Action::Connection),
            (Service::Dns, Action::Connection),
            (Service::Dns, Action::Query)
        ],
        "{got:?}"
    );
    assert_eq!(got[0].extra["service"], "dns");
    assert_eq!(got[0].extra["detected"], "sniff");
    assert_eq!(&got[0].data[..], DNS_QUERY);
    assert_eq!(got[0].session.dst_port, addr.port());
    assert_eq!(got[0].session.src_port, client.local_addr().unwrap().port());
    assert_eq!(got[1].session, got[0].session);
    assert_eq!(got[2].extra["qname"], "example.com");

    let noise = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    noise.send_to(b"\x01\x02hello", addr).await.unwrap();
    noise.send_to(b"\x01\x02again", addr).await.unwrap();
    let got = next(&mut events, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].service, got[0].action),
        (Service::Udp, Action::Connection)
    );
    assert_eq!(got[0].extra["service"], Value::Null);
    assert_eq!(got[0].extra["detected"], "none");
    assert_eq!(&got[0].data[..], b"\x01\x02hello");
    let mut buf = [0_u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), noise.recv_from(&mut buf))
            .await
            .is_err(),
        "no reply to noise"
    );
    let counters = services.counters().to_json();
    assert_eq!(counters["decoy_udp_sessions"], 2);
    assert_eq!(counters["decoy_udp_unclaimed"], 1);
    assert_eq!(counters["udp_replies"], 1);
    assert_eq!(counters["udp_datagrams"], 3);
    services.stop(Duration::from_secs(1)).await;
    assert!(
        events.try_recv().is_err(),
        "one event for the noise pseudo-session"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn decoy_replies_keep_the_reflection_budget_and_the_source_rate() {
    let (sink, mut events) = mpsc::channel(64);
    let mut plan = plan(json!({"enabled": true, "udp": ["1-65535"]}));
    // A budget of 10 bytes whatever is received, one reply per second per source.
    plan.limits.udp_reply_factor = 0;
    plan.limits.udp_reply_allowance_bytes = 10;
    plan.limits.udp_replies_per_source_per_sec = 1;
    let services = start(&plan, sink, &CancellationToken::new()).await.unwrap();
    let addr = services.decoys().expect("decoys enabled").udp_addresses[0];
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Every DNS answer repeats the question (29 bytes): over the budget, refused.
    client.send_to(DNS_QUERY, addr).await.unwrap();
    let got = next(&mut events, 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let mut buf = [0_u8; 512];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf))
            .await
            .is_err(),
        "no reply over the reflection budget"
    );
    let counters = services.counters().to_json();
    assert_eq!(counters["udp_refused_reflection"], 1, "{counters}");
    assert_eq!(counters["udp_replies"], 0, "{counters}");
    services.stop(Duration::from_secs(1)).await;

    // A generous budget, but one reply per second per source: twenty peers of one source get
    // at most one answer plus one per second the exchange took, whatever the machine's speed.
    let (sink, mut events) = mpsc::channel(128);
    plan.limits.udp_reply_factor = 10;
    plan.limits.udp_reply_allowance_bytes = 512;
    let services = start(&plan, sink, &CancellationToken::new()).await.unwrap();
    let addr = services.decoys().expect("decoys enabled").udp_addresses[0];
    let began = std::time::Instant::now();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(DNS_QUERY, addr).await.unwrap();
        clients.push(client);
    }
    let got = next(&mut events, 60).await;
    assert_eq!(got.len(), 60, "{got:?}");
    let settled = tokio::time::timeout(LIMIT, async {
        loop {
            let c = services.counters().to_json();
            let done = c["udp_replies"].as_u64().unwrap_or(0)
                + c["udp_refused_rate"].as_u64().unwrap_or(0);
            if done >= 20 {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every query answered or refused");
    let took = began.elapsed().as_secs();
    let replies = settled["udp_replies"].as_u64().unwrap();
    assert!(replies >= 1 && replies <= 1 + took, "{settled} in {took} s");
    assert_eq!(settled["udp_refused_rate"].as_u64().unwrap(), 20 - replies);
    let mut answered = 0;
    for client in &clients {
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(50), client.recv_from(&mut buf)).await
        {
            answered += 1;
        }
    }
    // Sent replies are already in the clients' queues.
    assert_eq!(answered, replies);
    services.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sources_past_the_flood_bound_fold_into_one_udp_flood_summary() {
    let (sink, mut events) = mpsc::channel(64);
    let mut plan = plan(json!({"enabled": true, "udp": ["1-65535"]}));
    plan.limits.udp_flood_max_sources = 2;
    let services = start(&plan, sink, &CancellationToken::new()).await.unwrap();
    let addr = services.decoys().expect("decoys enabled").udp_addresses[0];
    // Five sources (127.0.0.11–15), noise no service claims; the last one sends twice.
    let mut clients = Vec::new();
    for n in 11..=15u8 {
        let client = UdpSocket::bind(format!("127.0.0.{n}:0")).await.unwrap();
        client.send_to(b"\x01\x02hello", addr).await.unwrap();
        clients.push(client);
    }
    clients[4].send_to(b"\x01\x02again", addr).await.unwrap();
    let got = next(&mut events, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    for (event, n) in got.iter().zip(11..) {
        assert_eq!(
            (event.service, event.action),
            (Service::Udp, Action::Connection)
        );
        assert_eq!(event.session.src_ip.to_string(), format!("127.0.0.{n}"));
    }
    // Every datagram was taken before the summary is asked for.
    let seen = tokio::time::timeout(LIMIT, async {
        while services.counters().to_json()["udp_datagrams"] != 6 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(seen.is_ok(), "{}", services.counters().to_json());
    services.stop(Duration::from_secs(1)).await;
    let got = next(&mut events, 1).await;
    assert_eq!(got.len(), 1, "one summary: {got:?}");
    let flood = &got[0];
    assert_eq!((flood.service, flood.action), (Service::Udp, Action::Flood));
    assert!(flood.session.src_ip.is_unspecified());
    assert_eq!(flood.session.dst_port, addr.port());
    assert_eq!(flood.extra["sources"], 3);
    assert_eq!(flood.extra["datagrams"], 4);
    assert_eq!(flood.extra["bytes"], 28);
    // Each opening stood for one `udp.connection` (no service took the noise).
    assert_eq!(flood.extra["events_folded"], 3);
    assert_eq!(flood.extra["reported_sources"], 2);
    assert_eq!(flood.extra["ports"], json!([addr.port()]));
    assert_eq!(flood.extra["ports_count"], 1);
    assert_eq!(
        flood.extra["top_sources"][0],
        json!({"ip": "127.0.0.15", "datagrams": 2})
    );
    assert!(events.try_recv().is_err(), "nothing else");
}

/// Sends `datagram` to `to` and returns the reply with the TTL it arrived with.
fn reply_and_ttl(to: std::net::SocketAddr, datagram: &[u8]) -> (Vec<u8>, u8) {
    use std::{io::IoSliceMut, os::fd::AsRawFd as _};

    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
    };
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    setsockopt(&socket, sockopt::Ipv4RecvTtl, &true).unwrap();
    socket.send_to(datagram, to).unwrap();
    let mut buf = vec![0u8; 2048];
    let mut cmsg = nix::cmsg_space!(libc::c_int);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .expect("a reply");
    let len = msg.bytes;
    let ttl = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            ControlMessageOwned::Ipv4Ttl(ttl) => u8::try_from(ttl).ok(),
            _ => None,
        })
        .expect("IP_TTL control message");
    buf.truncate(len);
    (buf, ttl)
}

#[tokio::test(flavor = "multi_thread")]
async fn any_port_replies_carry_the_personas_ttl() {
    let default_ttl: u8 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(64);
    for (persona, want) in [
        (crate::services::Persona::WindowsServer2022, 128),
        (crate::services::Persona::CiscoIos, 255),
        (crate::services::Persona::None, default_ttl),
    ] {
        let (sink, _events) = mpsc::channel(64);
        let mut plan = plan(json!({"enabled": true, "udp": ["1-65535"]}));
        plan.persona = persona;
        let services = start(&plan, sink, &CancellationToken::new()).await.unwrap();
        let addr = services.decoys().expect("decoys enabled").udp_addresses[0];
        let (reply, ttl) = tokio::task::spawn_blocking(move || reply_and_ttl(addr, DNS_QUERY))
            .await
            .unwrap();
        assert_eq!(&reply[..2], &DNS_QUERY[..2], "the DNS answer");
        assert_eq!(ttl, want, "{persona:?}");
        services.stop(Duration::from_secs(1)).await;
    }
}
