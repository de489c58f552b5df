//! Hostile clients against every emulated service, with tight limits: random bytes, 1 MiB
//! lines, NUL and invalid UTF-8, other protocols' openings, huge length prefixes, truncated
//! handshakes at every prefix, slow drip, half-open sockets held past the timeouts, resets, and
//! 200 concurrent connections from one source. For each service: no panic (a normal client is
//! still served afterwards), every hostile connection closed within its timeout, no connection
//! left open, memory back near its baseline, and every event well-formed.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod harness;
mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use harness::{Harness, assert_well_formed, rss_kib};
use sensor::event::Service;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

const HANDSHAKE: u64 = 2;
const IDLE: u64 = 2;
const SESSION: u64 = 6;
const PER_SOURCE: usize = 64;

fn limits() -> serde_json::Value {
    json!({
        "handshake_timeout_secs": HANDSHAKE,
        "idle_timeout_secs": IDLE,
        "session_timeout_secs": SESSION,
        "max_line_bytes": 1024,
        "max_buffer_bytes": 16384,
        "max_data_bytes": 256,
        "max_events_per_session": 64,
        "max_connections_per_source": PER_SOURCE,
        "max_connections": 4096,
    })
}

/// A valid client opening for each service, cut at every prefix by the truncation case.
fn transcript(service: Service) -> Vec<u8> {
    match service {
        Service::Ftp => b"USER admin\r\nPASS secret\r\nSYST\r\nQUIT\r\n".to_vec(),
        Service::Telnet => {
            b"\xff\xfd\x01\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0admin\r\nsecret\r\n"
                .to_vec()
        }
        Service::Ssh => b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\x00\x01\x0c\x0a\x14".to_vec(),
        Service::Http => {
            b"POST /login HTTP/1.1\r\nHost: h\r\nContent-Length: 21\r\n\r\nusername=a&password=b"
                .to_vec()
        }
        Service::Https => {
            let mut hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec();
            hello.extend_from_slice(&harness::noise(32, 7));
            hello.extend_from_slice(b"\x00\x00\x04\x13\x01\x13\x02\x01\x00");
            hello
        }
        Service::Mysql => {
            let mut p = Vec::new();
            let caps: u32 = (1 << 9) | (1 << 15) | (1 << 19) | (1 << 3);
            p.extend_from_slice(&caps.to_le_bytes());
            p.extend_from_slice(&[0; 28]);
            p.extend_from_slice(b"root\0\x14");
            p.extend_from_slice(&harness::noise(20, 3));
            p.extend_from_slice(b"db\0mysql_native_password\0");
            let mut out = vec![u8::try_from(p.len()).unwrap(), 0, 0, 1];
            out.extend_from_slice(&p);
            out
        }
        Service::Postgres => {
            let body = b"\x00\x03\x00\x00user\0bob\0database\0db\0\0";
            let mut out = u32::try_from(body.len() + 4)
                .unwrap()
                .to_be_bytes()
                .to_vec();
            out.extend_from_slice(body);
            out.extend_from_slice(b"p\x00\x00\x00\x0bsecret\0");
            out
        }
        _ => Vec::new(),
    }
}

/// What a case does on its connection.
#[derive(Debug, Clone)]
enum Act {
    /// Send these bytes, then half-close.
    SendClose(Vec<u8>),
    /// Send these bytes (ignoring errors: the server may hang up mid-way), keep the socket open.
    SendHold(Vec<u8>),
    /// Send nothing at all.
    Silent,
    /// One byte every 300 ms, for ever.
    Drip,
    /// Reset at once.
    Reset,
}

fn cases(service: Service) -> Vec<(&'static str, Act)> {
    let mib_line = vec![b'A'; 1 << 20];
    let mib_newlines = b"\r\n".repeat(1 << 19);
    let mut v = vec![
        ("random 4 KiB", Act::SendClose(harness::noise(4096, 1))),
        (
            "random 64 KiB held",
            Act::SendHold(harness::noise(65_536, 2)),
        ),
        ("1 MiB line", Act::SendHold(mib_line)),
        ("1 MiB of CRLF", Act::SendHold(mib_newlines)),
        ("NUL bytes", Act::SendHold(vec![0; 10_000])),
        (
            "invalid UTF-8",
            Act::SendClose(b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\r\n".repeat(50)),
        ),
        ("CRLF only", Act::SendClose(b"\r\n".repeat(1000))),
        (
            "TLS ClientHello",
            Act::SendClose(transcript(Service::Https)),
        ),
        (
            "HTTP request",
            Act::SendClose(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ),
        (
            "SSH identification",
            Act::SendClose(b"SSH-2.0-libssh_0.9.6\r\n".to_vec()),
        ),
        ("IAC flood", Act::SendHold(vec![0xff; 20_000])),
        (
            "endless subnegotiation",
            Act::SendHold([&[0xff, 0xfa, 0x18][..], &[b'x'; 5000][..]].concat()),
        ),
        (
            "huge MySQL length",
            Act::SendHold(b"\xff\xff\xff\x01AAAA".to_vec()),
        ),
        (
            "huge PostgreSQL length",
            Act::SendHold(b"\x7f\xff\xff\xff\x00\x03\x00\x00".to_vec()),
        ),
        ("half-open, silent", Act::Silent),
        ("slow drip", Act::Drip),
        ("reset at once", Act::Reset),
        ("immediate half-close", Act::SendClose(Vec::new())),
        (
            "valid opening then noise",
            Act::SendHold([transcript(service), harness::noise(8192, 5)].concat()),
        ),
        (
            "opening repeated 500 times",
            Act::SendHold(transcript(service).repeat(500)),
        ),
        (
            "format strings and markup",
            Act::SendClose(b"%s%n%x%d{{7*7}}${jndi:ldap://x}<script>\r\n".repeat(20)),
        ),
    ];
    let opening = transcript(service);
    for cut in 0..opening.len() {
        v.push(("truncated opening", Act::SendClose(opening[..cut].to_vec())));
    }
    v
}

/// Runs one case; returns how long the server took to close the connection.
async fn run_case(addr: SocketAddr, act: Act) -> Result<Duration, String> {
    let start = Instant::now();
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return Err("connect failed".to_owned());
    };
    match act {
        Act::SendClose(bytes) => {
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        }
        Act::SendHold(bytes) => {
            let _ = s.write_all(&bytes).await;
        }
        Act::Silent => {}
        Act::Drip => {
            let (mut r, mut w) = s.into_split();
            let drip = tokio::spawn(async move {
                for i in 0..1000u32 {
                    if w.write_all(&[b'a' + (i % 26) as u8]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
            let closed = wait_closed(&mut r).await;
            drip.abort();
            return closed.map(|()| start.elapsed());
        }
        Act::Reset => {
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
            return Ok(start.elapsed());
        }
    }
    wait_closed(&mut s).await.map(|()| start.elapsed())
}

/// Reads until the server closes; errors after the longest allowed time.
async fn wait_closed<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Result<(), String> {
    let limit = Duration::from_secs(SESSION + 3);
    let mut buf = vec![0u8; 65_536];
    let read_all = async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_all)
        .await
        .map_err(|_| format!("still open after {limit:?}"))
}

/// A normal client still gets the service's opening.
async fn still_serves(service: Service, addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let probe: &[u8] = match service {
        Service::Http => b"GET / HTTP/1.0\r\n\r\n",
        Service::Postgres => b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        Service::Https => &[],
        _ => b"",
    };
    if service == Service::Https {
        // A TLS handshake completes.
        s.write_all(&transcript(Service::Https)).await.unwrap();
        let mut first = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut first))
            .await
            .unwrap()
            .unwrap();
        assert!(n == 0 || first[0] == 0x15 || first[0] == 0x16, "TLS answer");
        return;
    }
    s.write_all(probe).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0, "{service:?} answered nothing");
}

async fn hostile(service: Service, config: serde_json::Value) {
    let mut h = Harness::start(config, limits()).await;
    let addr = h.addr(service);
    still_serves(service, addr).await;
    let baseline = rss_kib();
    let all = cases(service);
    let count = all.len();
    assert!(count >= 20, "{count} cases");
    // Cases run concurrently in batches below the per-source cap.
    let mut failures = Vec::new();
    for batch in all.chunks(PER_SOURCE / 2) {
        let handles: Vec<_> = batch
            .iter()
            .map(|(name, act)| {
                let act = act.clone();
                let name = *name;
                tokio::spawn(async move { (name, run_case(addr, act).await) })
            })
            .collect();
        for handle in handles {
            let (name, outcome) = handle.await.unwrap();
            match outcome {
                Ok(took) if took <= Duration::from_secs(SESSION + 2) => {}
                Ok(took) => failures.push(format!("{name}: closed after {took:?}")),
                Err(err) => failures.push(format!("{name}: {err}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{service:?}: {failures:?} counters {} open {}",
        h.counters(),
        h.open()
    );

    // 200 concurrent connections from one source: the cap admits 64, the rest are closed.
    let before = h.counters();
    let mut held = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(addr).await {
            held.push(s);
        }
    }
    // The accept loop counts each refusal as it gets to it: wait for the count, bounded.
    let refused = || {
        h.counters()["rejected_source"].as_u64().unwrap()
            - before["rejected_source"].as_u64().unwrap()
    };
    support::wait_until(Duration::from_secs(10), || {
        refused() >= 200 - PER_SOURCE as u64
    })
    .await;
    let refused = refused();
    assert!(
        refused >= 200 - PER_SOURCE as u64,
        "{service:?}: refused {refused}"
    );
    assert!(h.open() <= PER_SOURCE);
    drop(held);

    assert!(
        h.wait_idle(Duration::from_secs(SESSION + 3)).await,
        "{service:?}: {} still open",
        h.open()
    );
    still_serves(service, addr).await;
    let events = h
        .drain(Duration::from_millis(500), Duration::from_secs(20))
        .await;
    assert_well_formed(&events);
    for e in &events {
        assert!(e.data.len() <= 256, "data capped");
    }
    assert!(h.counters()["events_suppressed"].as_u64().unwrap() > 0 || service != Service::Ftp);
    let grown = rss_kib().saturating_sub(baseline);
    assert!(
        grown < 64 * 1024,
        "{service:?}: resident memory grew by {grown} KiB"
    );
    println!(
        "{service:?}: {count} hostile cases, {} events, RSS +{grown} KiB",
        events.len()
    );
    h.stop().await;
}

/// Resident memory is the whole process's: the tests of this file never run at once, so one
/// test's connections never count as another's growth.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One service after the other, so that resident memory is measured without the other
/// services' traffic in the same process.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_inputs_against_every_service() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let all = [
        (Service::Ftp, json!({"ftp": [{"port": 0}]})),
        (Service::Telnet, json!({"telnet": [{"port": 0}]})),
        (Service::Ssh, json!({"ssh": [{"port": 0}]})),
        (Service::Http, json!({"http": [{"port": 0}]})),
        (Service::Https, json!({"https": [{"port": 0}]})),
        (Service::Mysql, json!({"mysql": [{"port": 0}]})),
        (Service::Postgres, json!({"postgres": [{"port": 0}]})),
    ];
    for (service, config) in all {
        hostile(service, config).await;
    }
}

/// Sends `bytes` on a fresh connection and reads until the server closes (bounded).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(SESSION + 3), read)
        .await
        .expect("the server closes");
    out
}

fn status_line(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    text.lines().next().unwrap_or("").to_owned()
}

/// Every number an attacker sends, at and past its type's maximum: chunk sizes, content
/// lengths, MySQL's 3-byte and PostgreSQL's int32 lengths, Telnet subnegotiations and FTP lines.
/// Each gets the protocol's own error (and a `<service>.data` event for malformed input), the
/// connection is closed, nothing panics or wraps, and the next client is served.
#[tokio::test(flavor = "multi_thread")]
async fn attacker_numbers_at_their_maximum_are_refused_and_the_next_client_is_served() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut h = Harness::start(
        json!({
            "http": [{"port": 0}],
            "mysql": [{"port": 0}],
            "postgres": [{"port": 0, "ssl": false, "auth": "cleartext"}],
            "telnet": [{"port": 0}],
            "ftp": [{"port": 0}],
        }),
        limits(),
    )
    .await;
    let http = h.addr(Service::Http);
    let post = |head: &str, body: &str| {
        format!("POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n\r\n{body}")
            .into_bytes()
    };
    let chunked = "Transfer-Encoding: chunked";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "chunk size usize::MAX",
            post(chunked, "ffffffffffffffff\r\n"),
            "HTTP/1.1 413 Request Entity Too Large",
        ),
        (
            "chunk size usize::MAX after a first chunk (the sum overflows)",
            post(chunked, "5\r\nhello\r\nffffffffffffffff\r\n"),
            "HTTP/1.1 413 Request Entity Too Large",
        ),
        (
            "chunk size above usize::MAX",
            post(chunked, "10000000000000000\r\n"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "negative chunk size",
            post(chunked, "-1\r\n"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "Content-Length above u64::MAX",
            post("Content-Length: 18446744073709551616", ""),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "Content-Length u64::MAX",
            post("Content-Length: 18446744073709551615", ""),
            "HTTP/1.1 413 Request Entity Too Large",
        ),
        (
            "negative Content-Length",
            post("Content-Length: -1", ""),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "signed Content-Length",
            post("Content-Length: +5", "hello"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "two different Content-Length headers",
            post("Content-Length: 5\r\nContent-Length: 6", "hello!"),
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "a Content-Length list that disagrees",
            post("Content-Length: 5, 6", "hello!"),
            "HTTP/1.1 400 Bad Request",
        ),
    ];
    // Refused requests, malformed (400) or too large (413), are logged as `http.data`.
    let bad_requests = cases
        .iter()
        .filter(|(_, _, status)| status.contains("400") || status.contains("413"))
        .count();
    for (name, request, status) in &cases {
        let out = exchange(http, request).await;
        assert_eq!(status_line(&out), *status, "{name}");
        let next = exchange(http, b"GET / HTTP/1.0\r\n\r\n").await;
        assert_eq!(status_line(&next), "HTTP/1.1 200 OK", "served after {name}");
    }
    // Repeating the same length is allowed (RFC 9112 6.3) and answered like a single one.
    let single = exchange(http, &post("Content-Length: 5", "hello")).await;
    let repeated = exchange(
        http,
        &post("Content-Length: 5\r\nContent-Length: 5", "hello"),
    )
    .await;
    assert_eq!(status_line(&repeated), status_line(&single));
    assert!(status_line(&single).starts_with("HTTP/1.1 "));
    assert_ne!(status_line(&single), "HTTP/1.1 400 Bad Request");

    // MySQL: the largest 3-byte length (16 MiB - 1) is over max_allowed_packet.
    let mysql = h.addr(Service::Mysql);
    let out = exchange(mysql, b"\xff\xff\xff\x01AAAA").await;
    let message = b"Got a packet bigger than 'max_allowed_packet' bytes";
    let mut err = vec![0xff, 0x81, 0x04, b'#'];
    err.extend_from_slice(b"08S01");
    err.extend_from_slice(message);
    let mut expected = vec![u8::try_from(err.len()).unwrap(), 0, 0, 2];
    expected.extend_from_slice(&err);
    assert!(
        out.ends_with(&expected),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(out[4], 10, "the greeting came first");
    let mut s = TcpStream::connect(mysql).await.unwrap();
    let mut greeting = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut greeting))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(greeting[4], 10, "MySQL still greets");
    drop(s);

    // PostgreSQL: int32 lengths negative, short or past what the server accepts.
    let postgres = h.addr(Service::Postgres);
    let lengths = [i32::MAX, -1, i32::MIN, 0, 7, 10_001];
    for len in lengths {
        let mut packet = len.to_be_bytes().to_vec();
        packet.extend_from_slice(&196_608u32.to_be_bytes());
        assert!(exchange(postgres, &packet).await.is_empty(), "{len}");
    }
    // A password message whose length is u32::MAX.
    let body = b"\x00\x03\x00\x00user\0bob\0\0";
    let mut startup = u32::try_from(body.len() + 4)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    startup.extend_from_slice(body);
    let mut with_password = startup.clone();
    with_password.extend_from_slice(b"p\xff\xff\xff\xff");
    let out = exchange(postgres, &with_password).await;
    assert_eq!(
        out, b"R\x00\x00\x00\x08\x00\x00\x00\x03",
        "only the password request"
    );
    let mut s = TcpStream::connect(postgres).await.unwrap();
    s.write_all(&startup).await.unwrap();
    let mut auth = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut auth))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &auth, b"R\x00\x00\x00\x08\x00\x00\x00\x03",
        "PostgreSQL still asks"
    );
    drop(s);

    // Telnet: a subnegotiation one byte past the line limit; FTP: a line one byte past it.
    let telnet = h.addr(Service::Telnet);
    let sub = [&[0xff, 0xfa, 0x18][..], &[b'x'; 1025][..]].concat();
    let out = exchange(telnet, &sub).await;
    assert!(
        out.starts_with(&[0xff, 0xfb, 0x01]),
        "negotiation, then closed"
    );
    let ftp = h.addr(Service::Ftp);
    let long = [&b"USER "[..], &[b'a'; 1020][..], b"\r\n"].concat();
    let out = exchange(ftp, &long).await;
    assert_eq!(
        out, b"220 Microsoft FTP Service\r\n",
        "greeting only, then closed"
    );
    for (service, addr, opening) in [
        (Service::Telnet, telnet, &[0xff, 0xfb, 0x01][..]),
        (Service::Ftp, ftp, &b"220 "[..]),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut first = vec![0u8; opening.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut first))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, opening, "{service:?} still answers");
    }

    // Every session has ended: its events are queued and its error counted.
    assert!(h.wait_idle(Duration::from_secs(SESSION + 3)).await);
    let events = h
        .drain(Duration::from_millis(500), Duration::from_secs(10))
        .await;
    assert_well_formed(&events);
    let data = |service: Service| -> Vec<Vec<u8>> {
        events
            .iter()
            .filter(|e| e.service == service && e.action == sensor::event::Action::Data)
            .map(|e| e.data.to_vec())
            .collect()
    };
    assert_eq!(data(Service::Http).len(), bad_requests);
    assert_eq!(data(Service::Mysql), vec![b"\xff\xff\xff\x01".to_vec()]);
    let mut expected_pg: Vec<Vec<u8>> = lengths
        .iter()
        .map(|len| [&len.to_be_bytes()[..], &196_608u32.to_be_bytes()[..]].concat())
        .collect();
    expected_pg.push(b"p\xff\xff\xff\xff".to_vec());
    assert_eq!(data(Service::Postgres), expected_pg);
    assert_eq!(data(Service::Telnet).len(), 1);
    assert_eq!(data(Service::Ftp).len(), 1);
    assert!(data(Service::Ftp)[0].starts_with(b"USER aaaa"));
    // Every refused connection is counted: the HTTP cases, MySQL, PostgreSQL, Telnet and FTP.
    let refused = cases.len() + 1 + expected_pg.len() + 2;
    assert_eq!(
        h.counters()["protocol_errors"],
        json!(u64::try_from(refused).unwrap())
    );
    h.stop().await;
}
