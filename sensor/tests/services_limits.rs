//! Each limit of the service framework, one test each: handshake, idle and session timeouts,
//! line length, buffered bytes, raw bytes kept per event, events per session, global and
//! per-source connection caps, and bind errors that name the service and port.

#![expect(
    clippy::unwrap_used,
    reason = "the shared test helpers fail loudly on purpose"
)]

mod harness;
mod support;

use std::time::{Duration, Instant};

use harness::Harness;
use sensor::event::{Action, Service};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// Reads until the server closes; returns what it sent and when it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .expect("server closes in time");
    (out, start.elapsed())
}

fn secs(handshake: u64, idle: u64, session: u64) -> serde_json::Value {
    json!({"handshake_timeout_secs": handshake, "idle_timeout_secs": idle, "session_timeout_secs": session})
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_timeout_closes_a_silent_client() {
    let h = Harness::start(json!({"http": [{"port": 0}]}), secs(1, 30, 60)).await;
    let mut s = TcpStream::connect(h.addr(Service::Http)).await.unwrap();
    let (_, took) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Counted as the session ends, which may be just after the client sees the close.
    assert!(
        support::wait_until(Duration::from_secs(5), || h.counters()["timeouts"] == 1).await,
        "{}",
        h.counters()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_timeout_closes_a_client_that_stops_talking() {
    let h = Harness::start(json!({"ftp": [{"port": 0}]}), secs(30, 1, 60)).await;
    let mut s = TcpStream::connect(h.addr(Service::Ftp)).await.unwrap();
    s.write_all(b"USER a\r\n").await.unwrap();
    let (out, took) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    // IIS's farewell, with the idle timeout in force.
    assert!(out.ends_with(
        b"331 Password required\r\n421 Timeout (1 seconds): closing control connection.\r\n"
    ));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn session_timeout_ends_a_client_that_keeps_talking() {
    let h = Harness::start(json!({"ftp": [{"port": 0}]}), secs(30, 1, 2)).await;
    let s = TcpStream::connect(h.addr(Service::Ftp)).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let talk = tokio::spawn(async move {
        for _ in 0..100 {
            if w.write_all(b"NOOP\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(6), r.read(&mut buf))
            .await
            .unwrap()
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let took = start.elapsed();
    talk.abort();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_longer_than_the_limit_close_the_connection() {
    let mut h = Harness::start(json!({"ftp": [{"port": 0}]}), json!({"max_line_bytes": 64})).await;
    let mut s = TcpStream::connect(h.addr(Service::Ftp)).await.unwrap();
    s.write_all(format!("USER {}\r\n", "a".repeat(50)).as_bytes())
        .await
        .unwrap();
    s.write_all(format!("PASS {}\r\n", "b".repeat(100)).as_bytes())
        .await
        .unwrap();
    let (out, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(
        out.windows(3).filter(|w| w == b"331").count(),
        1,
        "the short line is served"
    );
    assert!(
        !String::from_utf8_lossy(&out).contains("530"),
        "the long one is not"
    );
    let events = h
        .drain(Duration::from_millis(300), Duration::from_secs(5))
        .await;
    assert!(events.iter().all(|e| e.action != Action::Login));
    assert!(
        support::wait_until(Duration::from_secs(5), || h.counters()["protocol_errors"]
            == 1)
        .await,
        "{}",
        h.counters()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_larger_than_the_buffer_close_the_connection() {
    let h = Harness::start(
        json!({"postgres": [{"port": 0, "ssl": false, "auth": "cleartext"}], "http": [{"port": 0}]}),
        json!({"max_buffer_bytes": 4096}),
    )
    .await;
    // A PostgreSQL startup packet announcing 9,000 bytes (PostgreSQL allows 10,000).
    let mut s = TcpStream::connect(h.addr(Service::Postgres)).await.unwrap();
    let mut packet = 9000u32.to_be_bytes().to_vec();
    packet.extend_from_slice(&196_608u32.to_be_bytes());
    packet.extend_from_slice(&vec![b'x'; 8992]);
    let _ = s.write_all(&packet).await;
    let (out, took) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(out.is_empty() && took < Duration::from_secs(2));
    // An HTTP body larger than the buffer: 413, then closed.
    let mut s = TcpStream::connect(h.addr(Service::Http)).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    let (out, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 413 Request Entity Too Large\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_bytes_kept_per_event_are_capped_and_flagged() {
    let mut h = Harness::start(json!({"ftp": [{"port": 0}]}), json!({"max_data_bytes": 16})).await;
    let mut s = TcpStream::connect(h.addr(Service::Ftp)).await.unwrap();
    let line = format!("USER {}\r\n", "z".repeat(100));
    s.write_all(line.as_bytes()).await.unwrap();
    let events = h.until(Action::Data, 1, Duration::from_secs(5)).await;
    let data = events.iter().find(|e| e.action == Action::Data).unwrap();
    assert_eq!(&data.data[..], &line.as_bytes()[..16]);
    assert_eq!(data.extra["data_truncated"], true);
    assert_eq!(data.extra["data_length"], line.len());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_per_session_are_capped() {
    let mut h = Harness::start(
        json!({"ftp": [{"port": 0}]}),
        json!({"max_events_per_session": 5}),
    )
    .await;
    let mut s = TcpStream::connect(h.addr(Service::Ftp)).await.unwrap();
    s.write_all(&b"NOOP\r\n".repeat(50)).await.unwrap();
    s.write_all(b"QUIT\r\n").await.unwrap();
    let _ = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let events = h
        .drain(Duration::from_millis(300), Duration::from_secs(5))
        .await;
    assert_eq!(events.len(), 5);
    assert_eq!(events[4].extra["events_capped"], true);
    assert_eq!(h.counters()["events_suppressed"], 47);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn global_cap_closes_excess_connections_at_once() {
    let h = Harness::start(json!({"ftp": [{"port": 0}]}), json!({"max_connections": 3})).await;
    let addr = h.addr(Service::Ftp);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut banner = [0u8; 64];
        let n = s.read(&mut banner).await.unwrap();
        assert!(banner[..n].starts_with(b"220 "));
        held.push(s);
    }
    // Reset at once: the connect itself may already see it.
    if let Ok(mut extra) = TcpStream::connect(addr).await {
        let (out, took) = read_until_closed(&mut extra, Duration::from_secs(5)).await;
        assert!(out.is_empty() && took < Duration::from_secs(1), "{took:?}");
    }
    support::wait_until(Duration::from_secs(5), || {
        h.counters()["rejected_global"] == 1
    })
    .await;
    assert_eq!(h.counters()["rejected_global"], 1);
    drop(held);
    assert!(h.wait_idle(Duration::from_secs(5)).await);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn per_source_cap_closes_excess_connections_at_once() {
    let h = Harness::start(
        json!({"telnet": [{"port": 0}]}),
        json!({"max_connections_per_source": 2}),
    )
    .await;
    let addr = h.addr(Service::Telnet);
    let a = TcpStream::connect(addr).await.unwrap();
    let b = TcpStream::connect(addr).await.unwrap();
    assert!(
        support::wait_until(Duration::from_secs(5), || h.open() == 2).await,
        "both admitted"
    );
    // Reset at once: the connect itself may already see it.
    if let Ok(mut c) = TcpStream::connect(addr).await {
        let (out, _) = read_until_closed(&mut c, Duration::from_secs(2)).await;
        assert!(out.is_empty());
    }
    support::wait_until(Duration::from_secs(5), || {
        h.counters()["rejected_source"] == 1
    })
    .await;
    assert_eq!(h.counters()["rejected_source"], 1);
    drop((a, b));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_errors_name_the_service_and_port() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let config = json!({
        "interface": "lo",
        "services": {"mysql": [{"port": port}]},
        // Strict: a decoy that cannot bind fails the start (by default it is reported down).
        "sensor": {"services": {"state_dir": harness::temp_dir("bind"), "strict": true}}
    });
    let config = sensor::config::Config::parse(&config.to_string(), "test").unwrap();
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let err = sensor::services::start(
        &config.services_plan(),
        tx,
        &sensor::shutdown::CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("mysql: cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        err.contains("another program listens on this port"),
        "{err}"
    );
}
