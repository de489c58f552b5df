//! SMB, RDP, MSSQL and LDAP against hostile clients on loopback, with tight limits: every truncation of
//! a valid opening (closed and held open), maximal length prefixes, random bytes, other
//! protocols' openings, silence and slow drip. Each connection must be closed within the
//! session timeout, none left open, events well-formed and capped, and a real client served
//! afterwards.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod harness;

use std::time::Duration;

use harness::{Harness, assert_well_formed, run, temp_dir};
use sensor::{
    config::Config,
    event::{Action, Service},
    services,
    shutdown::CancellationToken,
};
use serde_json::json;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(60);

/// A TDS message of `kind` (one packet, end of message) carrying `data`.
fn tds(kind: u8, id: u8, data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len() + 8).unwrap();
    let mut out = vec![kind, 1];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0, id, 0]);
    out.extend_from_slice(data);
    out
}

/// A client's valid opening: an SMB2 NEGOTIATE in its frame, an X.224 request, an LDAP simple
/// bind, or a TDS
/// PRELOGIN asking for encryption followed by a TLS hello in PRELOGIN (nmap's static-RSA and
/// CBC offer), so that cuts land inside the TLS engine too.
fn opening(service: Service) -> Vec<u8> {
    match service {
        Service::Ldap => {
            b"\x30\x16\x02\x01\x01\x60\x11\x02\x01\x03\x04\x05admin\x80\x05guess".to_vec()
        }
        Service::Mssql => {
            let prelogin = b"\x00\x00\x1a\x00\x06\x01\x00\x20\x00\x01\x02\x00\x21\x00\x01\x03\x00\x22\x00\x04\x04\x00\x26\x00\x01\xff\x08\x00\x01\x55\x00\x00\x01\x00\x00\x00\x00\x00\x00";
            let mut hello = b"\x16\x03\x00\x00\x2d\x01\x00\x00\x29\x03\x03".to_vec();
            hello.extend_from_slice(&[0x5a; 32]);
            hello.extend_from_slice(b"\x00\x00\x04\x00\x2f\x00\x35\x01\x00");
            hello[4] = u8::try_from(hello.len() - 5).unwrap();
            hello[8] = u8::try_from(hello.len() - 9).unwrap();
            [tds(0x12, 1, prelogin), tds(0x12, 2, &hello)].concat()
        }
        Service::Smb => {
            let mut m = b"\xfeSMB\x40\0".to_vec();
            m.resize(64, 0);
            m.extend_from_slice(&36u16.to_le_bytes());
            m.extend_from_slice(&2u16.to_le_bytes());
            m.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
            m.extend_from_slice(&[0x11; 16]);
            m.extend_from_slice(&[0; 8]);
            m.extend_from_slice(&[0x02, 0x02, 0x10, 0x02]);
            let mut framed = u32::try_from(m.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&m);
            framed
        }
        _ => {
            b"\x03\0\0\x2b\x26\xe0\0\0\0\0\0Cookie: mstshash=eve\r\n\x01\0\x08\0\x0b\0\0\0".to_vec()
        }
    }
}

/// Sends `bytes` (then half-closes when `close`), or drips; returns how long until the server
/// closed, or an error when it is still open after the session timeout and a margin.
async fn hostile_case(
    addr: std::net::SocketAddr,
    bytes: Vec<u8>,
    close: bool,
    drip: bool,
) -> Result<Duration, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let start = std::time::Instant::now();
    let s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        if drip {
            for b in bytes.iter().cycle().take(1000) {
                if w.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        } else {
            let _ = w.write_all(&bytes).await;
            if close {
                let _ = w.shutdown().await;
            }
            // Keep the write half open otherwise.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    let mut buf = vec![0u8; 65_536];
    let read_all = async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(9), read_all).await;
    writer.abort();
    closed
        .map(|()| start.elapsed())
        .map_err(|_| "still open".to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_clients_are_closed_in_time_and_the_next_client_is_served() {
    let state = temp_dir("smb-rdp-hostile");
    let config = json!({
        "id": "sensor-test",
        "interface": "lo",
        "hostname": "srv01",
        "services": {"smb": [{"port": 0}], "rdp": [{"port": 0}], "mssql": [{"port": 0}],
                     "ldap": [{"port": 0}]},
        "sensor": {"services": {
            "state_dir": state, "ephemeral_ports": true,
            "handshake_timeout_secs": 2, "idle_timeout_secs": 2, "session_timeout_secs": 6,
            "max_buffer_bytes": 16384, "max_data_bytes": 256, "max_connections_per_source": 64,
        }},
    });
    let config = Config::parse(&config.to_string(), "test").unwrap();
    let (tx, events) = mpsc::channel(100_000);
    let token = CancellationToken::new();
    let services = services::start(&config.services_plan(), tx, &token)
        .await
        .unwrap();
    let mut h = Harness {
        services: Some(services),
        events,
        token,
        state,
    };
    for service in [Service::Smb, Service::Rdp, Service::Mssql, Service::Ldap] {
        let addr = h.addr(service);
        let open = opening(service);
        let mut cases: Vec<(String, Vec<u8>, bool, bool)> = Vec::new();
        for cut in 0..open.len() {
            cases.push((
                format!("truncated at {cut}"),
                open[..cut].to_vec(),
                true,
                false,
            ));
            cases.push((format!("held at {cut}"), open[..cut].to_vec(), false, false));
        }
        cases.push((
            "max SMB frame".into(),
            b"\x00\xff\xff\xff\xfeSMB".to_vec(),
            false,
            false,
        ));
        cases.push((
            "max TPKT".into(),
            b"\x03\x00\xff\xff\x06\xe0".to_vec(),
            false,
            false,
        ));
        cases.push((
            "max TDS packet".into(),
            b"\x12\x01\xff\xff\x00\x00\x01\x00".to_vec(),
            false,
            false,
        ));
        if service == Service::Ldap {
            cases.push((
                "max BER length".into(),
                b"\x30\x84\xff\xff\xff\xff\x02\x01\x01".to_vec(),
                false,
                false,
            ));
        }
        if service == Service::Mssql {
            // The PRELOGIN (47 bytes), then a TLS record and a hello at their maximum lengths.
            cases.push((
                "max TLS record in PRELOGIN".into(),
                [
                    &open[..47],
                    &tds(0x12, 2, b"\x16\x03\x03\xff\xff\x01\xff\xff\xff")[..],
                ]
                .concat(),
                false,
                false,
            ));
        }
        cases.push((
            "NetBIOS type".into(),
            b"\x42\0\0\x04abcd".to_vec(),
            false,
            false,
        ));
        cases.push(("random 4 KiB".into(), harness::noise(4096, 1), true, false));
        cases.push((
            "random 64 KiB".into(),
            harness::noise(65_536, 2),
            false,
            false,
        ));
        cases.push((
            "opening then noise".into(),
            [open.clone(), harness::noise(8192, 3)].concat(),
            false,
            false,
        ));
        cases.push(("opening 300 times".into(), open.repeat(300), false, false));
        cases.push((
            "HTTP".into(),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            true,
            false,
        ));
        cases.push((
            "SSH".into(),
            b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
            true,
            false,
        ));
        cases.push((
            "TLS hello".into(),
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(),
            false,
            false,
        ));
        cases.push(("silent".into(), Vec::new(), false, false));
        cases.push(("slow drip".into(), open.clone(), false, true));
        assert!(cases.len() >= 50, "{}", cases.len());
        let mut failures = Vec::new();
        for batch in cases.chunks(32) {
            let handles: Vec<_> = batch
                .iter()
                .cloned()
                .map(|(name, bytes, close, drip)| {
                    tokio::spawn(
                        async move { (name, hostile_case(addr, bytes, close, drip).await) },
                    )
                })
                .collect();
            for handle in handles {
                let (name, outcome) = handle.await.unwrap();
                match outcome {
                    Ok(took) if took <= Duration::from_secs(8) => {}
                    Ok(took) => failures.push(format!("{name}: closed after {took:?}")),
                    Err(err) => failures.push(format!("{name}: {err}")),
                }
            }
        }
        assert!(failures.is_empty(), "{service:?}: {failures:?}");
        assert!(
            h.wait_idle(Duration::from_secs(9)).await,
            "{service:?}: {} open",
            h.open()
        );
    }
    // Still served: smbclient's login and the RDP confirm.
    let port = h.addr(Service::Smb).port().to_string();
    run(
        "smbclient",
        &["-U", "dave%pw", "-L", "//127.0.0.1", "-p", &port],
        &[],
        LIMIT,
    )
    .await;
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    assert!(events.iter().any(|e| e.service == Service::Smb
        && e.action == Action::Login
        && e.extra.get("username") == Some(&json!("dave"))));
    for e in &events {
        assert!(e.data.len() <= 256, "data capped");
    }
    // And tsql's login, TLS inside TDS included.
    let port = h.addr(Service::Mssql).port().to_string();
    run(
        "tsql",
        &["-H", "127.0.0.1", "-p", &port, "-U", "sa", "-P", "pw"],
        &[("TDSVER", "7.4")],
        LIMIT,
    )
    .await;
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert!(
        events.iter().any(|e| e.service == Service::Mssql
            && e.extra.get("username") == Some(&json!("sa"))
            && e.extra.get("tls") == Some(&json!(true))),
        "{events:?}"
    );
    h.stop().await;
}
