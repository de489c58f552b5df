//! The MSSQL decoy against FreeTDS's `tsql`, impacket's `mssqlclient.py` (SQL and Windows
//! authentication) and `nmap -sV`, on loopback; plus
//! hostile input over a socket. Each credential event is compared whole; NetNTLMv2 lines are
//! recomputed from the password.

mod harness;

use std::time::Duration;

use harness::{Harness, assert_well_formed, expected, normalized, run};
use sensor::event::Action;
use sensor::{event::Service, services::proto::shared::ntlm::crypto::verify_hashcat};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const LIMIT: Duration = Duration::from_secs(30);

fn mssql(version: &str) -> Value {
    json!({"mssql": [{"port": 0, "hostname": "SQL01", "version": version}]})
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn tsql_logs_in_with_login_only_encryption() {
    let mut h = Harness::start(mssql("2019"), json!({})).await;
    let port = h.addr(Service::Mssql).port();
    let out = run(
        "tsql",
        &[
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "sa",
            "-P",
            "Summer2026!",
            "-D",
            "master",
        ],
        &[("TDSVER", "7.4")],
        LIMIT,
    )
    .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Msg 18456 (severity 14, state 1)"), "{text}");
    assert!(text.contains("Login failed for user 'sa'."), "{text}");
    assert!(text.contains("from SQL01"), "{text}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let got: Vec<Value> = events.iter().map(normalized).collect();
    assert_eq!(
        got,
        [
            expected("mssql", "connection", port, b"", json!({})),
            expected(
                "mssql",
                "login",
                port,
                b"",
                json!({"username": "sa", "password": "Summer2026!", "hostname": local_hostname(),
                       "app_name": "TSQL", "server_name": "127.0.0.1", "database": "master",
                       "library": "TDS-Library", "language": "us_english", "tds_version": "7.4",
                       "encryption": "off", "tls": true, "windows_auth": false})
            ),
        ]
    );
    h.stop().await;
}

async fn mssqlclient(args: &[&str]) -> String {
    let out = run("mssqlclient.py", args, &[], LIMIT).await;
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn impacket_sql_and_windows_logins_are_captured() {
    let mut h = Harness::start(mssql("2017"), json!({})).await;
    let port = h.addr(Service::Mssql).port();
    let target = "sa:P@ssw0rd-2017@127.0.0.1";
    let text = mssqlclient(&["-port", &port.to_string(), target]).await;
    assert!(text.contains("Login failed for user 'sa'."), "{text}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let mut got: Vec<Value> = events.iter().map(normalized).collect();
    // impacket sends a random workstation name, DESKTOP- and 8 characters.
    let host = got[1]["extra"]["hostname"].as_str().unwrap().to_owned();
    assert!(host.starts_with("DESKTOP-") && host.len() == 16, "{host}");
    got[1]["extra"]["hostname"] = json!("*");
    assert_eq!(
        got,
        [
            expected("mssql", "connection", port, b"", json!({})),
            expected(
                "mssql",
                "login",
                port,
                b"",
                json!({"username": "sa", "password": "P@ssw0rd-2017", "hostname": "*",
                       "app_name": "Microsoft SQL Server Management Studio - Query",
                       "server_name": "127.0.0.1", "database": "",
                       "library": "Microsoft SQL Server Management Studio - Query",
                       "language": "", "tds_version": "7.1",
                       "encryption": "off", "tls": true, "windows_auth": false})
            ),
        ]
    );
    // Windows authentication: NTLM in SSPI tokens, the NetNTLMv2 line checked against the
    // password.
    let text = mssqlclient(&[
        "-windows-auth",
        "-port",
        &port.to_string(),
        "CORP/alice:Spring2026!@127.0.0.1",
    ])
    .await;
    assert!(
        text.contains("Login failed for user 'CORP\\alice'."),
        "{text}"
    );
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let mut got: Vec<Value> = events.iter().map(normalized).collect();
    let hashcat = got[1]["extra"]["hashcat"].as_str().unwrap().to_owned();
    assert!(hashcat.starts_with("alice::CORP:"), "{hashcat}");
    check_hashcat(&hashcat, "Spring2026!");
    assert!(!verify_hashcat(&hashcat, "Spring2025!"));
    got[1]["extra"]["hashcat"] = json!("*");
    got[1]["extra"]["hostname"] = json!("*");
    assert_eq!(
        got,
        [
            expected("mssql", "connection", port, b"", json!({})),
            expected(
                "mssql",
                "login",
                port,
                b"",
                json!({"username": "alice", "domain": "CORP", "workstation": "", "ntlm_version": "NTLMv2",
                       "hashcat": "*", "client_version": "10.0.20348", "hostname": "*",
                       "app_name": "Microsoft SQL Server Management Studio - Query",
                       "server_name": "127.0.0.1", "database": "",
                       "library": "Microsoft SQL Server Management Studio - Query",
                       "language": "", "tds_version": "7.1",
                       "encryption": "off", "tls": true, "windows_auth": true})
            ),
        ]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nmap_names_sql_server_per_version() {
    let h = Harness::start(
        json!({"mssql": [
            {"port": 0, "hostname": "SQL01", "version": "2019"},
            {"port": 0, "hostname": "SQL02", "version": "2016"}
        ]}),
        json!({}),
    )
    .await;
    let ports: Vec<String> = h
        .services
        .as_ref()
        .unwrap()
        .bound()
        .iter()
        .filter(|(s, a)| *s == Service::Mssql && a.is_ipv4())
        .map(|(_, a)| a.port().to_string())
        .collect();
    let out = run(
        "nmap",
        &["-sV", "-Pn", "-n", "-p", &ports.join(","), "127.0.0.1"],
        &[],
        Duration::from_secs(240),
    )
    .await;
    let report = String::from_utf8_lossy(&out.stdout);
    let products: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("/tcp"))
        .map(|l| {
            if l.contains("Microsoft SQL Server 2019 15.00.2000") {
                "2019"
            } else if l.contains("Microsoft SQL Server 2016 13.00.1601") {
                "2016"
            } else {
                l
            }
        })
        .collect();
    let mut sorted = products.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["2016", "2019"], "{report}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bytes_are_logged_and_the_connection_closed() {
    let mut h = Harness::start(mssql("2019"), json!({})).await;
    let addr = h.addr(Service::Mssql);
    let port = addr.port();
    let openings: [&[u8]; 6] = [
        b"GET / HTTP/1.1\r\nHost: sql01\r\n\r\n",
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
        b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00",
        b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00",
        b"\x00\x00\x00\x54\xfeSMB@\x00",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ];
    for opening in openings {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(opening).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut buf))
            .await
            .expect("closed");
        assert!(buf.is_empty(), "{opening:?}");
        let events = h.until(Action::Data, 1, LIMIT).await;
        let got: Vec<Value> = events.iter().map(normalized).collect();
        assert_eq!(
            got,
            [
                expected("mssql", "connection", port, b"", json!({})),
                expected("mssql", "data", port, opening, json!({}))
            ],
            "{opening:?}"
        );
    }
    // A PRELOGIN whose option table points past its end, and one whose packet length is
    // shorter than the header: logged and closed.
    for bad in [
        &b"\x12\x01\x00\x0e\x00\x00\x01\x00\x00\xff\xf0\x00\x06\xff"[..],
        &b"\x12\x01\x00\x04\x00\x00\x01\x00"[..],
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(bad).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut buf))
            .await
            .expect("closed");
        let events = h.until(Action::Data, 1, LIMIT).await;
        assert_eq!(events.len(), 2, "{bad:?}: {events:?}");
        assert_eq!(events[1].action, Action::Data);
    }
    h.stop().await;
}

fn check_hashcat(line: &str, password: &str) {
    assert!(verify_hashcat(line, password), "{line}");
}
