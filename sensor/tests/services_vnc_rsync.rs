//! The VNC and rsync services against real clients on loopback (`rsync` with `RSYNC_PASSWORD`,
//! `vncdo` from vncdotool, `nmap -sV --script vnc-info`), the captured login lines checked
//! against the password used, and more than fifty hostile inputs per service.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod harness;

use std::{net::SocketAddr, time::Duration};

use des::cipher::{BlockCipherDecrypt as _, KeyInit as _};
use harness::{Harness, assert_well_formed, expected, normalized, run};
use sensor::{
    event::{Action, Event, Service},
    services::proto::{
        rsync::{Digest, response_for},
        vnc,
    },
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

const LIMIT: Duration = Duration::from_secs(30);

fn addrs(h: &Harness, service: Service) -> Vec<SocketAddr> {
    h.services
        .as_ref()
        .unwrap()
        .bound()
        .iter()
        .filter(|(s, a)| *s == service && a.is_ipv4())
        .map(|(_, a)| *a)
        .collect()
}

fn logins(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.action == Action::Login)
        .collect()
}

fn text(e: &Event, key: &str) -> String {
    e.extra[key].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn rsync_lists_modules_and_captures_logins_that_verify_against_the_password() {
    let mut h = Harness::start(
        json!({"rsync": [
            {"port": 0, "modules": [{"name": "Backup", "comment": "Nightly backups"}, "Users"]},
            {"port": 0, "auth_digests": ["md5", "md4"]},
        ]}),
        json!({}),
    )
    .await;
    let [first, second] = addrs(&h, Service::Rsync)[..] else {
        panic!("two rsync instances")
    };
    let port = first.port();

    // The listing.
    let out = run(
        "rsync",
        &[&format!("rsync://alice@127.0.0.1:{port}/")],
        &[],
        LIMIT,
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Backup         \tNightly backups\nUsers          \t\n"
    );
    assert!(out.status.success(), "{out:?}");
    let events = h.until(Action::Query, 1, LIMIT).await;
    assert_well_formed(&events);
    let got: Vec<Value> = events.iter().map(normalized).collect();
    assert_eq!(
        got,
        vec![
            expected("rsync", "connection", port, b"", json!({})),
            expected("rsync", "query", port, b"\n", json!({"listing": true})),
        ]
    );

    // A module with a path: asked for a password, refused as rsyncd refuses.
    let password = "Winter2025!";
    let out = run(
        "rsync",
        &[&format!("rsync://alice@127.0.0.1:{port}/Backup/etc/shadow")],
        &[("RSYNC_PASSWORD", password)],
        LIMIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("@ERROR: auth failed on module Backup"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        normalized(&events[1]),
        expected(
            "rsync",
            "query",
            port,
            b"Backup\n",
            json!({"module": "Backup", "known": true})
        )
    );
    let login = logins(&events)[0];
    let challenge = text(login, "challenge");
    assert_eq!(challenge.len(), 22, "16 bytes in unpadded base64");
    assert_eq!(text(login, "username"), "alice");
    assert_eq!(text(login, "module"), "Backup");
    assert_eq!(text(login, "digest"), "sha512");
    let response = response_for(Digest::Sha512, password, &challenge);
    assert_eq!(text(login, "response"), response);
    let hash = hex::encode(Digest::Sha512.hash(password.as_bytes(), challenge.as_bytes()));
    assert_eq!(text(login, "hash"), hash);
    assert_eq!(text(login, "hashcat"), format!("{hash}:{challenge}"));
    assert_eq!(login.extra["hashcat_mode"], json!(1710));
    assert_eq!(
        login.data.as_ref(),
        format!("alice {response}\n").as_bytes()
    );

    // A daemon announcing only md5 and md4 gets an MD5 answer (hashcat -m 10).
    let out = run(
        "rsync",
        &[&format!("rsync://bob@127.0.0.1:{}/Users/", second.port())],
        &[("RSYNC_PASSWORD", "hunter2")],
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = logins(&events)[0];
    let challenge = text(login, "challenge");
    assert_eq!(text(login, "digest"), "md5");
    assert_eq!(
        text(login, "response"),
        response_for(Digest::Md5, "hunter2", &challenge)
    );
    assert_eq!(login.extra["hashcat_mode"], json!(10));

    // An unknown module.
    let out = run(
        "rsync",
        &[&format!("rsync://127.0.0.1:{port}/secret/")],
        &[],
        LIMIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("@ERROR: Unknown module 'secret'"),
        "{stderr}"
    );
    let events = h.until(Action::Query, 1, LIMIT).await;
    assert_eq!(
        normalized(&events[1]),
        expected(
            "rsync",
            "query",
            port,
            b"secret\n",
            json!({"module": "secret", "known": false})
        )
    );
    assert!(logins(&events).is_empty());
    h.stop().await;
}

/// Decrypts a VNC response with the password's key (the `des` crate directly, not the
/// sensor's code) and checks it gives the challenge back.
fn vnc_response_matches(password: &str, challenge_hex: &str, response_hex: &str) -> bool {
    let key = vnc::des_key(password.as_bytes());
    let cipher = des::Des::new(&key.into());
    let mut back = hex::decode(response_hex).unwrap();
    for chunk in back.chunks_exact_mut(8) {
        let mut block = [0u8; 8];
        block.copy_from_slice(chunk);
        let mut block = block.into();
        cipher.decrypt_block(&mut block);
        chunk.copy_from_slice(&block);
    }
    hex::encode(back) == challenge_hex
}

#[tokio::test(flavor = "multi_thread")]
async fn vnc_logins_from_vncdotool_verify_and_the_configured_password_gets_a_screen() {
    let mut h = Harness::start(
        json!({"vnc": [
            {"port": 0},
            {"port": 0, "password": "s3cret", "desktop_name": "WIN-FS01", "width": 64, "height": 48},
        ]}),
        json!({}),
    )
    .await;
    let [open, guarded] = addrs(&h, Service::Vnc)[..] else {
        panic!("two vnc instances")
    };
    let dir = harness::temp_dir("vnc");
    let shot = dir.join("screen.png");
    let shot = shot.to_str().unwrap();

    // A wrong password: refused, the line verifies against what the client typed.
    let out = run(
        "vncdo",
        &[
            "-s",
            &format!("127.0.0.1::{}", open.port()),
            "-p",
            "Winter25",
            "--timeout",
            "10",
            "capture",
            shot,
        ],
        &[],
        LIMIT,
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let login = logins(&events)[0];
    let (challenge, response) = (text(login, "challenge"), text(login, "response"));
    assert!(vnc_response_matches("Winter25", &challenge, &response));
    assert!(!vnc_response_matches("Winter26", &challenge, &response));
    assert_eq!(
        text(login, "john"),
        format!(
            "$vnc$*{}*{}",
            challenge.to_uppercase(),
            response.to_uppercase()
        )
    );
    assert_eq!(
        text(login, "hashcat"),
        format!("{}:{}", &response[..16], &challenge[..16])
    );
    assert_eq!(text(login, "client_version"), "RFB 003.008");
    assert_eq!(login.extra["authenticated"], json!(false));
    assert!(login.extra.get("password").is_none());

    // The configured password: let in, gets a (blank) screen of the configured size.
    let out = run(
        "vncdo",
        &[
            "-s",
            &format!("127.0.0.1::{}", guarded.port()),
            "-p",
            "s3cret",
            "--timeout",
            "10",
            "capture",
            shot,
        ],
        &[],
        LIMIT,
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let png = std::fs::read(shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 64);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 48);
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = logins(&events)[0];
    assert_eq!(login.extra["authenticated"], json!(true));
    assert_eq!(login.extra["password"], json!("s3cret"));
    let queries: Vec<&str> = events
        .iter()
        .filter(|e| e.action == Action::Query)
        .map(|e| e.extra["message"].as_str().unwrap())
        .collect();
    assert!(queries.starts_with(&["ClientInit"]), "{queries:?}");
    assert!(queries.contains(&"SetEncodings"), "{queries:?}");
    let _ = std::fs::remove_dir_all(&dir);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nmap_identifies_vnc_and_rsync_and_vnc_info_lists_vnc_authentication_only() {
    let h = Harness::start(
        json!({"vnc": [{"port": 0}], "rsync": [{"port": 0}]}),
        json!({}),
    )
    .await;
    let vnc_port = h.addr(Service::Vnc).port().to_string();
    let rsync_port = h.addr(Service::Rsync).port().to_string();
    let out = run(
        "nmap",
        &[
            "-sV",
            "-Pn",
            "-n",
            "--script",
            "vnc-info",
            "-p",
            &format!("{vnc_port},{rsync_port}"),
            "127.0.0.1",
        ],
        &[],
        Duration::from_secs(180),
    )
    .await;
    let report = String::from_utf8_lossy(&out.stdout);
    let line = |port: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{port}/tcp")))
            .unwrap_or_else(|| panic!("no line for {port}: {report}"))
            .to_owned()
    };
    assert!(line(&vnc_port).contains("VNC (protocol 3.8)"), "{report}");
    assert!(line(&rsync_port).contains("rsync"), "{report}");
    assert!(
        line(&rsync_port).contains("protocol version 31"),
        "{report}"
    );
    assert!(report.contains("Protocol version: 3.8"), "{report}");
    assert!(report.contains("VNC Authentication (2)"), "{report}");
    assert_eq!(
        report.matches("(2)").count(),
        1,
        "one security type: {report}"
    );
    h.stop().await;
}

/// Reads what the server sends until it closes (bounded).
async fn exchange(addr: SocketAddr, chunks: &[&[u8]]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for chunk in chunks {
        let _ = s.write_all(chunk).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server closes")
        .ok();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn each_rfb_version_has_its_own_handshake_bytes() {
    let h = Harness::start(
        json!({"vnc": [
            {"port": 0, "version": "RFB_33"},
            {"port": 0, "version": "RFB_37"},
            {"port": 0},
        ]}),
        json!({}),
    )
    .await;
    let [v33, v37, v38] = addrs(&h, Service::Vnc)[..] else {
        panic!("three instances")
    };
    let response = [0u8; 16];
    // 3.3: the server names the type (a u32), then the challenge; failure without reason.
    let out = exchange(v33, &[b"RFB 003.003\n", &response]).await;
    assert_eq!(&out[..12], b"RFB 003.003\n");
    assert_eq!(&out[12..16], &[0, 0, 0, 2]);
    assert_eq!(&out[32..], &[0, 0, 0, 1]);
    // 3.7: one type offered, chosen by the client; failure without reason.
    let out = exchange(v37, &[b"RFB 003.007\n", &[2], &response]).await;
    assert_eq!(&out[..14], b"RFB 003.007\n\x01\x02");
    assert_eq!(&out[30..], &[0, 0, 0, 1]);
    // 3.8: the reason string follows.
    let out = exchange(v38, &[b"RFB 003.008\n", &[2], &response]).await;
    assert_eq!(&out[..14], b"RFB 003.008\n\x01\x02");
    assert_eq!(&out[30..38], &[0, 0, 0, 1, 0, 0, 0, 22]);
    assert_eq!(&out[38..], b"Authentication failure");
    // A 3.8 server speaks 3.3 to a 3.3 client.
    let out = exchange(v38, &[b"RFB 003.003\n", &response]).await;
    assert_eq!(&out[12..16], &[0, 0, 0, 2]);
    assert_eq!(&out[32..], &[0, 0, 0, 1]);
    // An unoffered type: 3.8 says why.
    let out = exchange(v38, &[b"RFB 003.008\n", &[1]]).await;
    assert_eq!(&out[14..18], &[0, 0, 0, 1]);
    assert_eq!(&out[22..], b"Security type not supported");
    h.stop().await;
}
