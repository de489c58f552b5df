//! Hostile clients against the VNC and rsync services, more than fifty cases each: random
//! bytes, 1 MiB lines, NUL and invalid UTF-8, other protocols' openings, bad version lines,
//! numbers at their maximum (RFB lengths and counts after a login, rsync versions), every
//! prefix of a valid exchange, silence and resets. For each service: every connection closed
//! within the session timeout, none left open, a normal client still served, every event
//! well-formed, and the exact answer to the malformed openings.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod harness;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use harness::{Harness, assert_well_formed};
use sensor::event::{Action, Service};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

const SESSION: u64 = 6;
const PER_SOURCE: usize = 64;

fn limits() -> serde_json::Value {
    json!({
        "handshake_timeout_secs": 2,
        "idle_timeout_secs": 2,
        "session_timeout_secs": SESSION,
        "max_line_bytes": 1024,
        "max_buffer_bytes": 16384,
        "max_data_bytes": 256,
        "max_events_per_session": 64,
        "max_connections_per_source": PER_SOURCE,
    })
}

/// What a case does.
#[derive(Debug, Clone)]
enum Act {
    /// Send, then half-close.
    Send(Vec<u8>),
    /// Send and keep the socket open.
    Hold(Vec<u8>),
    /// Reset at once.
    Reset,
}

/// The cases both services get.
fn common() -> Vec<Act> {
    let mut v: Vec<Act> = (0..8u64)
        .map(|seed| Act::Send(harness::noise(64 << seed, seed + 11)))
        .collect();
    v.extend([
        Act::Hold(vec![b'A'; 1 << 20]),
        Act::Hold(b"\r\n".repeat(1 << 18)),
        Act::Hold(vec![0; 10_000]),
        Act::Send(b"\xff\xfe\xc3\x28\xa0\xa1\r\n".repeat(50)),
        Act::Send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        Act::Send(b"SSH-2.0-libssh_0.9.6\r\n".to_vec()),
        Act::Send(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec()),
        Act::Send(b"%s%n%x{{7*7}}${jndi:ldap://x}\n".repeat(10)),
        Act::Hold(Vec::new()),
        Act::Send(Vec::new()),
        Act::Reset,
    ]);
    v
}

fn vnc_cases() -> Vec<Act> {
    let mut v = common();
    let opening = [&b"RFB 003.008\n"[..], &[2], &[0x55; 16]].concat();
    for cut in 0..opening.len() {
        v.push(Act::Send(opening[..cut].to_vec()));
    }
    for version in [
        &b"RFB 003.008\r"[..],
        b"RFB 999.999\n",
        b"RFB -01.008\n",
        b"rfb 003.008\n",
        b"RFB 003.0088\n",
    ] {
        v.push(Act::Send(version.to_vec()));
    }
    for ty in [0u8, 1, 16, 255] {
        v.push(Act::Send([&b"RFB 003.008\n"[..], &[ty]].concat()));
    }
    v
}

fn rsync_cases() -> Vec<Act> {
    let mut v = common();
    let opening = b"@RSYNCD: 31.0 md5\nBackup\nalice AAAAAAAAAAAAAAAAAAAAAA\n";
    for cut in 0..opening.len() {
        v.push(Act::Send(opening[..cut].to_vec()));
    }
    for bad in [
        &b"@RSYNCD: 99999999999999999999999.0\n"[..],
        b"@RSYNCD: 31\n",
        b"@RSYNCD: -1.0\n",
        b"@RSYNCD:\n",
        b"@RSYNCD: 31.0\n#list\n#list\n",
        b"@RSYNCD: 31.0\nBackup\n\n",
        b"@RSYNCD: 31.0\nBackup\nalice\n",
    ] {
        v.push(Act::Send(bad.to_vec()));
    }
    let long_module = [&b"@RSYNCD: 31.0\n"[..], &[b'm'; 2000], b"\n"].concat();
    v.push(Act::Send(long_module));
    v
}

async fn run_case(addr: SocketAddr, act: Act) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match act {
        Act::Send(bytes) => {
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        }
        Act::Hold(bytes) => {
            let _ = s.write_all(&bytes).await;
        }
        Act::Reset => {
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            return Ok(start.elapsed());
        }
    }
    let mut buf = vec![0u8; 65_536];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(SESSION + 3), read_all)
        .await
        .map_err(|_| "still open".to_owned())?;
    Ok(start.elapsed())
}

async fn answer(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(SESSION + 3), s.read_to_end(&mut out))
        .await
        .unwrap()
        .ok();
    out
}

async fn hostile(service: Service, cases: Vec<Act>) {
    let config = match service {
        Service::Vnc => json!({"vnc": [{"port": 0}]}),
        _ => json!({"rsync": [{"port": 0}]}),
    };
    let mut h = Harness::start(config, limits()).await;
    let addr = h.addr(service);
    let count = cases.len();
    assert!(count >= 50, "{service:?}: {count} cases");
    let mut failures = Vec::new();
    for batch in cases.chunks(PER_SOURCE / 2) {
        let handles: Vec<_> = batch
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, act)| tokio::spawn(async move { (i, run_case(addr, act).await) }))
            .collect();
        for handle in handles {
            match handle.await.unwrap() {
                (_, Ok(took)) if took <= Duration::from_secs(SESSION + 2) => {}
                (i, outcome) => failures.push(format!("case {i}: {outcome:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{service:?}: {failures:?}");
    assert!(
        h.wait_idle(Duration::from_secs(SESSION + 3)).await,
        "{service:?}: {} still open",
        h.open()
    );
    // The malformed openings get exactly what the real servers say, then the close.
    match service {
        Service::Vnc => {
            assert_eq!(answer(addr, b"GET / HTTP/1.1\r\n").await, b"RFB 003.008\n");
            let out = answer(addr, b"RFB 003.008\n\x02").await;
            assert_eq!(out.len(), 12 + 2 + 16, "version, types, challenge");
        }
        _ => {
            let greeting = b"@RSYNCD: 31.0 sha512 sha256 sha1 md5 md4\n";
            let mut want = greeting.to_vec();
            want.extend_from_slice(b"@ERROR: protocol startup error\n");
            assert_eq!(answer(addr, b"GET / HTTP/1.1\r\n").await, want);
            let mut want = greeting.to_vec();
            want.extend_from_slice(
                b"@ERROR: your client omitted the subprotocol value: @RSYNCD: 31\n",
            );
            assert_eq!(answer(addr, b"@RSYNCD: 31\n").await, want);
            let out = answer(addr, b"@RSYNCD: 31.0\nBackup\nalice\n").await;
            assert!(out.ends_with(b"@ERROR: auth failed on module Backup\n"));
        }
    }
    let events = h
        .drain(Duration::from_millis(500), Duration::from_secs(20))
        .await;
    assert_well_formed(&events);
    assert!(events.iter().all(|e| e.data.len() <= 256), "data capped");
    assert!(events.iter().any(|e| e.action == Action::Data));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_inputs_against_vnc() {
    hostile(Service::Vnc, vnc_cases()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_inputs_against_rsync() {
    hostile(Service::Rsync, rsync_cases()).await;
}

/// After a login with the configured password, RFB lengths and counts at their maximum end
/// the session (logged as `vnc.data`) without reading what they announce.
#[tokio::test(flavor = "multi_thread")]
async fn vnc_lengths_at_their_maximum_after_a_login_are_refused() {
    let mut h = Harness::start(json!({"vnc": [{"port": 0, "password": "pw"}]}), limits()).await;
    let addr = h.addr(Service::Vnc);
    let cases: [(&str, &[u8]); 4] = [
        ("cut text u32::MAX", b"\x06\x00\x00\x00\xff\xff\xff\xff"),
        ("65535 encodings", b"\x02\x00\xff\xff"),
        ("unknown message", b"\xfe"),
        ("truncated pointer event", b"\x05\x00"),
    ];
    for (name, message) in cases {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut head = [0u8; 30];
        s.write_all(b"RFB 003.008\n").await.unwrap();
        s.read_exact(&mut head[..14]).await.unwrap();
        s.write_all(&[2]).await.unwrap();
        s.read_exact(&mut head[14..30]).await.unwrap();
        let challenge: [u8; 16] = head[14..30].try_into().unwrap();
        let response = sensor::services::proto::vnc::response_for(b"pw", &challenge);
        s.write_all(&response).await.unwrap();
        let mut ok = [0u8; 4];
        s.read_exact(&mut ok).await.unwrap();
        assert_eq!(ok, [0, 0, 0, 0], "{name}: logged in");
        s.write_all(&[1]).await.unwrap();
        s.write_all(message).await.unwrap();
        if name.starts_with("truncated") {
            s.shutdown().await.unwrap();
        }
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(SESSION + 3), s.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("{name}: not closed"))
            .ok();
        assert!(
            rest.starts_with(&[4, 0, 3, 0, 32, 24]),
            "{name}: ServerInit first"
        );
    }
    let events = h
        .drain(Duration::from_millis(500), Duration::from_secs(10))
        .await;
    assert_well_formed(&events);
    let data: Vec<Vec<u8>> = events
        .iter()
        .filter(|e| e.action == Action::Data)
        .map(|e| e.data.to_vec())
        .collect();
    assert_eq!(
        data,
        vec![
            b"\x00\x00\x00\xff\xff\xff\xff".to_vec(),
            b"\x00\xff\xff".to_vec(),
            b"\xfe".to_vec(),
        ]
    );
    h.stop().await;
}
