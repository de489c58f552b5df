//! The MySQL decoy against the real `mariadb` client with and without TLS: connection ids grow
//! by one, TLS is offered, `caching_sha2_password`'s full authentication over TLS gives the
//! cleartext password and the fast-auth scramble cracks offline; `--ssl-verify-server-cert`
//! refuses the self-signed certificate before sending credentials, as against a real server.

mod harness;

use std::time::Duration;

use harness::{Harness, run};
use sensor::event::{Action, Service};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::io::AsyncReadExt as _;

const LIMIT: Duration = Duration::from_secs(30);

#[cfg(test)]
async fn mariadb(port: u16, extra_args: &[&str]) -> String {
    let port = port.to_string();
    let mut args = vec![
        "-h",
        "127.0.0.1",
        "-P",
        &port,
        "-u",
        "dbadmin",
        "-pTr0ub4dor",
        "--connect-timeout=10",
    ];
    args.extend_from_slice(extra_args);
    args.extend_from_slice(&["-e", "select 1"]);
    let out = run("mariadb", &args, &[], LIMIT).await;
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[cfg(test)]
/// SHA256(p) XOR SHA256(SHA256(SHA256(p)) || nonce), recomputed here independently.
fn sha2_scramble(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    let s1 = sha2::Sha256::digest(password);
    let s2 = sha2::Sha256::digest(s1);
    let mix = sha2::Sha256::new()
        .chain_update(s2)
        .chain_update(nonce)
        .finalize();
    s1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_ssl_gives_the_password_through_caching_sha2_full_authentication() {
    let mut h = Harness::start(
        json!({"mysql": [{"port": 0, "version": "8.0.36"}]}),
        json!({}),
    )
    .await;
    let port = h.addr(Service::Mysql).port();
    let err = mariadb(port, &["--ssl"]).await;
    assert!(
        err.contains(
            "ERROR 1045 (28000): Access denied for user 'dbadmin'@'127.0.0.1' (using password: YES)"
        ),
        "{err}"
    );
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = events.iter().find(|e| e.action == Action::Login).unwrap();
    let extra = Value::from(login.extra.clone());
    assert_eq!(extra["username"], "dbadmin");
    assert_eq!(extra["password"], "Tr0ub4dor");
    assert_eq!(extra["tls"], true);
    assert_eq!(extra["auth_plugin"], "caching_sha2_password");
    let line = extra["scramble_sha2"].as_str().unwrap();
    let (nonce, response) = line
        .strip_prefix("$mysql-sha2$")
        .unwrap()
        .split_once('*')
        .unwrap();
    let (nonce, response) = (hex::decode(nonce).unwrap(), hex::decode(response).unwrap());
    assert_eq!(nonce.len(), 20);
    assert_eq!(response, sha2_scramble(b"Tr0ub4dor", &nonce));
    assert_ne!(response, sha2_scramble(b"Tr0ub4dor!", &nonce));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_without_ssl_and_with_verification_are_captured_as_a_client_sees_them() {
    let mut h = Harness::start(
        json!({"mysql": [{"port": 0, "version": "8.0.36"}]}),
        json!({}),
    )
    .await;
    let port = h.addr(Service::Mysql).port();
    // Without TLS: the scramble, then the cleartext password through mysql_clear_password.
    let err = mariadb(port, &["--skip-ssl"]).await;
    assert!(err.contains("ERROR 1045 (28000)"), "{err}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = events.iter().find(|e| e.action == Action::Login).unwrap();
    assert_eq!(login.extra["password"], "Tr0ub4dor");
    assert!(login.extra.get("tls").is_none());
    assert!(
        login.extra["scramble_sha2"]
            .as_str()
            .unwrap()
            .starts_with("$mysql-sha2$")
    );
    // Verifying the certificate: the client refuses the self-signed one before any login.
    let err = mariadb(port, &["--ssl", "--ssl-verify-server-cert"]).await;
    assert!(err.contains("ERROR 2026"), "{err}");
    let events = h.drain(Duration::from_secs(1), LIMIT).await;
    assert!(
        events.iter().all(|e| e.action != Action::Login),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.action == Action::Connection));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_ids_grow_by_one_per_connection() {
    let h = Harness::start(json!({"mysql": [{"port": 0}]}), json!({})).await;
    let addr = h.addr(Service::Mysql);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = vec![0u8; 128];
        let n = tokio::time::timeout(LIMIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let g = &buf[4..n];
        let at = 1 + g[1..].iter().position(|&b| b == 0).unwrap() + 1;
        ids.push(u32::from_le_bytes(g[at..at + 4].try_into().unwrap()));
    }
    assert_eq!(ids[1], ids[0] + 1, "{ids:?}");
    assert_eq!(ids[2], ids[0] + 2, "{ids:?}");
    assert!((20..5_000).contains(&ids[0]), "{ids:?}");
    h.stop().await;
}
