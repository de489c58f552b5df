//! TCP alert-flood control end to end: FTP logins from many real loopback addresses
//! (127.0.0.0/8 is all local, so each client binds its own source) to one decoy. The first
//! `tcp_flood_max_sources` sources of the window are reported one by one, the rest are served
//! the same and counted in one `tcp.flood` summary whose counts add up to what was sent.

mod harness;

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use harness::Harness;
use sensor::event::{Action, Event, Service};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
};

/// One FTP login from `source`: the banner, USER and PASS, the verdict, QUIT. Returns the
/// server's bytes.
async fn login(server: SocketAddr, source: Ipv4Addr, user: &str) -> Vec<u8> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind the client's loopback source");
    let mut stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(server))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let mut sent_user = false;
    let mut sent_pass = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Read until the verdict on PASS (a 5xx or 2xx line after PASS went out).
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let n = match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        seen.extend_from_slice(buf.get(..n).unwrap_or_default());
        let text = String::from_utf8_lossy(&seen).into_owned();
        if !sent_user && text.contains("220") {
            stream
                .write_all(format!("USER {user}\r\n").as_bytes())
                .await
                .expect("USER");
            sent_user = true;
        } else if sent_user && !sent_pass && text.contains("331") {
            stream
                .write_all(b"PASS Winter2026!\r\n")
                .await
                .expect("PASS");
            sent_pass = true;
        } else if sent_pass && (text.contains("530") || text.contains("230")) {
            break;
        }
    }
    let _ = stream.write_all(b"QUIT\r\n").await;
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
    seen
}

fn source(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

fn events_of(events: &[Event], ip: Ipv4Addr) -> usize {
    events
        .iter()
        .filter(|e| e.session.src_ip == IpAddr::V4(ip))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_from_sources_past_the_bound_fold_into_one_tcp_flood_with_exact_counts() {
    let mut h = Harness::start(
        json!({"ftp": [{"port": 0}]}),
        json!({"tcp_flood_max_sources": 3, "tcp_flood_window_secs": 10}),
    )
    .await;
    let server = h.addr(Service::Ftp);
    // Sources .2, .3 and .4 first, one at a time, so they are the window's reported three;
    // then seven more at once; then .2 again (a reported source stays reported).
    for n in 2..=4 {
        let reply = login(server, source(n), &format!("user{n}")).await;
        assert!(String::from_utf8_lossy(&reply).contains("530"), "{reply:?}");
    }
    let folded: Vec<u8> = (5..=11).collect();
    let runs = folded
        .iter()
        .map(|n| tokio::spawn(login(server, source(*n), "spray")));
    for run in runs {
        let reply = run.await.expect("client");
        // Served exactly as a reported client: the same verdict.
        assert!(String::from_utf8_lossy(&reply).contains("530"), "{reply:?}");
    }
    login(server, source(2), "user2").await;
    let events = h.until(Action::Flood, 1, Duration::from_secs(30)).await;
    harness::assert_well_formed(&events);

    let floods: Vec<&Event> = events
        .iter()
        .filter(|e| e.action == Action::Flood)
        .collect();
    assert_eq!(floods.len(), 1, "one summary for the window: {floods:?}");
    let flood = floods.first().expect("a tcp.flood event");
    assert_eq!(flood.service, Service::Tcp);
    assert_eq!(flood.session.src_ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(flood.session.dst_port, server.port());

    // Only the three first sources were reported, .2 twice.
    let logins: Vec<&Event> = events
        .iter()
        .filter(|e| e.service == Service::Ftp && e.action == Action::Login)
        .collect();
    let reported: BTreeSet<IpAddr> = logins.iter().map(|e| e.session.src_ip).collect();
    assert_eq!(
        reported,
        [2, 3, 4].map(|n| IpAddr::V4(source(n))).into(),
        "{logins:?}"
    );
    assert_eq!(logins.len(), 4);
    for n in folded.iter().copied() {
        assert_eq!(events_of(&events, source(n)), 0, "source {n} folded");
    }

    // The summary counts what the folded sessions would have sent: as many events per
    // session as a reported session of the same exchange sent.
    let per_session = events_of(&events, source(3));
    assert!(per_session >= 2, "connection and login at least");
    let extra = &flood.extra;
    assert_eq!(extra["service"], "ftp");
    assert_eq!(extra["sources"], 7);
    assert_eq!(extra["connections"], 7);
    assert_eq!(extra["logins_folded"], 7);
    assert_eq!(extra["events_folded"], json!(7 * per_session));
    assert_eq!(extra["reported_sources"], 3);
    assert_eq!(extra["window_secs"], 10);
    assert_eq!(extra["sample"].as_array().map(Vec::len), Some(5));
    assert_eq!(extra["top_sources"].as_array().map(Vec::len), Some(5));
    assert!(!extra.contains_key("ports"), "one listener, one port");
    let counters = h.counters();
    assert_eq!(counters["tcp_folded"], 7);
    assert_eq!(counters["tcp_flood_summaries"], 1);
    h.stop().await;
}
