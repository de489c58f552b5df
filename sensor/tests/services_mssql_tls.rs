//! The MSSQL decoy's TLS inside TDS as nmap sees it, on loopback: `ssl-cert` and
//! `ssl-enum-ciphers` (their own TLS hellos, static RSA and CBC suites, wrapped in PRELOGIN
//! packets) read SQL Server's `SSL_Self_Signed_Fallback` certificate and SChannel's suites in
//! the server's order; a hand-built hello in nmap's shape gets the ServerHello and the
//! certificate inside PRELOGIN, and a hello offering only a NULL suite gets SChannel's alert,
//! inside TDS too. Trapster-style `key`/`certificate` files replace the fallback certificate.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod harness;

use std::time::Duration;

use harness::{Harness, run};
use sensor::event::Service;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const LIMIT: Duration = Duration::from_secs(120);

async fn start(version: &str) -> Harness {
    Harness::start_in_domain(
        json!({"mssql": [{"port": 0, "hostname": "SQL01", "version": version}]}),
        "corp.local",
        "mssql-tls",
    )
    .await
}

/// The lines of the script `name`'s block (`| name:` up to the line starting `|_`).
fn script_block<'a>(report: &'a str, name: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for l in report
        .lines()
        .skip_while(|l| !l.starts_with(&format!("| {name}:")))
    {
        out.push(l);
        if l.starts_with("|_") {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn nmap_ssl_cert_and_ssl_enum_ciphers_see_sql_servers_certificate_and_schannels_suites() {
    let h = start("2019").await;
    let port = h.addr(Service::Mssql).port().to_string();
    let out = run(
        "nmap",
        &[
            "-Pn",
            "-n",
            "-sV",
            "-p",
            &port,
            "--script",
            "ssl-cert,ssl-enum-ciphers",
            "127.0.0.1",
        ],
        &[],
        LIMIT,
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("Microsoft SQL Server 2019"), "{report}");
    let cert = script_block(&report, "ssl-cert");
    assert_eq!(
        cert.first().copied(),
        Some("| ssl-cert: Subject: commonName=SSL_Self_Signed_Fallback"),
        "{report}"
    );
    // Valid from now to the same second 30 years on.
    let date = |prefix: &str| {
        let line = cert.iter().find(|l| l.contains(prefix)).unwrap();
        line.split(prefix).nth(1).unwrap().trim().to_owned()
    };
    let (from, to) = (date("Not valid before:"), date("Not valid after:"));
    let year = |d: &str| d.get(..4).unwrap().parse::<i32>().unwrap();
    assert_eq!(year(&to), year(&from) + 30, "{report}");
    assert_eq!(from.get(4..), to.get(4..), "{report}");

    let ciphers = script_block(&report, "ssl-enum-ciphers").join("\n");
    // The suites of one version's block, as ssl-enum-ciphers lists them: the server's order.
    let suites = |version: &str| -> Vec<String> {
        let block = ciphers.split(version).nth(1).unwrap_or_default();
        block
            .split("compressors:")
            .next()
            .unwrap()
            .lines()
            .map(|l| l.trim_start_matches(['|', '_', ' ']))
            .filter(|l| l.starts_with("TLS_"))
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    // TLS 1.0 and 1.1, as Windows Server 2019 enables them: the SHA-1 CBC suites.
    for version in ["TLSv1.0:", "TLSv1.1:"] {
        assert_eq!(
            suites(version),
            [
                "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
                "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
                "TLS_RSA_WITH_AES_256_CBC_SHA",
                "TLS_RSA_WITH_AES_128_CBC_SHA",
            ],
            "{version} {ciphers}"
        );
    }
    assert_eq!(
        suites("TLSv1.2:"),
        [
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            "TLS_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_RSA_WITH_AES_256_CBC_SHA256",
            "TLS_RSA_WITH_AES_128_CBC_SHA256",
            "TLS_RSA_WITH_AES_256_CBC_SHA",
            "TLS_RSA_WITH_AES_128_CBC_SHA",
        ],
        "{ciphers}"
    );
    assert!(ciphers.contains("(rsa 2048)"), "{ciphers}");
    assert!(ciphers.contains("cipher preference: server"), "{ciphers}");
    h.stop().await;
}

/// A TDS message of `kind` (one packet, end of message) carrying `data`.
fn tds(kind: u8, id: u8, data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len() + 8).unwrap();
    let mut out = vec![kind, 1];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0, id, 0]);
    out.extend_from_slice(data);
    out
}

/// A TLS 1.2 ClientHello without extensions offering `suites`, in NSE's `tls.lua` shape.
fn hello(suites: &[u16]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x5a; 32]);
    body.push(0);
    let list: Vec<u8> = suites.iter().flat_map(|s| s.to_be_bytes()).collect();
    body.extend_from_slice(&u16::try_from(list.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&list);
    body.extend_from_slice(&[1, 0]);
    let mut handshake = vec![0x01, 0];
    handshake.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x00];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// PRELOGIN with ENCRYPTION=ON, its answer read; then `hello` in a PRELOGIN message: all the
/// decoy sends until it closes or `quiet` passes without a byte.
async fn send_hello(h: &Harness, hello: &[u8]) -> Vec<u8> {
    let prelogin = b"\x00\x00\x1a\x00\x06\x01\x00\x20\x00\x01\x02\x00\x21\x00\x01\x03\x00\x22\x00\x04\x04\x00\x26\x00\x01\xff\x08\x00\x01\x55\x00\x00\x01\x00\x00\x00\x00\x00\x00".to_vec();
    assert_eq!(prelogin[32], 1, "ENCRYPTION=ON");
    let mut s = tokio::net::TcpStream::connect(h.addr(Service::Mssql))
        .await
        .unwrap();
    s.write_all(&tds(0x12, 1, &prelogin)).await.unwrap();
    let mut head = [0u8; 8];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 0x04, "a TABULAR answer");
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[2], head[3]])) - 8];
    s.read_exact(&mut body).await.unwrap();
    s.write_all(&tds(0x12, 2, hello)).await.unwrap();
    let mut rest = Vec::new();
    let mut chunk = [0u8; 8192];
    // Bounded: the flight is a few kilobytes, then the decoy waits for the client's keys.
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => rest.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("{e}"),
        }
    }
    rest
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hello_in_nmaps_shape_gets_the_server_hello_and_certificate_inside_prelogin() {
    let h = start("2019").await;
    // tls.lua's static-RSA and CBC offer (AES128-SHA, 3DES, DHE-DSS-3DES, DHE-RSA-AES256-SHA,
    // RC4-MD5).
    let rest = send_hello(&h, &hello(&[0x002f, 0x000a, 0x0013, 0x0039, 0x0004])).await;
    // One PRELOGIN message (end of message set) with ServerHello, Certificate, ServerHelloDone.
    assert_eq!(&rest[..2], &[0x12, 0x01], "{rest:02x?}");
    let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
    assert_eq!(len, rest.len(), "a single packet");
    let tls = &rest[8..];
    assert_eq!(&tls[..3], &[0x16, 0x03, 0x03], "a TLS 1.2 handshake record");
    assert_eq!(tls[5], 0x02, "ServerHello");
    // ServerHello: type, length (3), version (2), random (32), session id (1 + n), suite.
    let sid = usize::from(tls[5 + 38]);
    let suite = u16::from_be_bytes([tls[5 + 39 + sid], tls[5 + 40 + sid]]);
    assert_eq!(
        suite, 0x002f,
        "AES128-SHA: SChannel's first of what was offered"
    );
    let name = b"SSL_Self_Signed_Fallback";
    assert!(tls.windows(name.len()).any(|w| w == name), "{tls:02x?}");
    assert_eq!(
        &tls[tls.len() - 4..],
        &[0x0e, 0, 0, 0],
        "ServerHelloDone last"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hello_without_a_shared_suite_gets_its_alert_inside_tds() {
    let h = start("2019").await;
    // TLS_RSA_WITH_NULL_SHA only: no Windows default offers it.
    let rest = send_hello(&h, &hello(&[0x0002])).await;
    // A PRELOGIN packet holding one fatal handshake_failure alert, then the close.
    assert_eq!(
        rest, b"\x12\x01\x00\x0f\x00\x00\x01\x00\x15\x03\x03\x00\x02\x02\x28",
        "{rest:02x?}"
    );
    h.stop().await;
}

/// An RSA 2048 certificate for `cn` and its key, as PEM files in `dir`: (key, certificate).
fn own_certificate(dir: &std::path::Path, cn: &str) -> (String, String) {
    use openssl::{
        asn1::Asn1Time,
        hash::MessageDigest,
        nid::Nid,
        pkey::PKey,
        rsa::Rsa,
        x509::{X509Builder, X509NameBuilder},
    };
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut cert = X509Builder::new().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(365).unwrap())
        .unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    let (key_path, cert_path) = (dir.join("sql.key"), dir.join("sql.crt"));
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    std::fs::write(&cert_path, cert.build().to_pem().unwrap()).unwrap();
    (
        key_path.to_str().unwrap().to_owned(),
        cert_path.to_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_key_and_certificate_are_presented_instead_of_the_fallback() {
    let dir = harness::temp_dir("mssql-tls-own");
    let (key, certificate) = own_certificate(&dir, "sql01.corp.local");
    let h = Harness::start_in_domain(
        json!({"mssql": [{"port": 0, "hostname": "SQL01", "version": "2016",
                          "key": key, "certificate": certificate}]}),
        "corp.local",
        "mssql-tls-own",
    )
    .await;
    let rest = send_hello(&h, &hello(&[0x0035, 0x002f])).await;
    assert_eq!(&rest[..2], &[0x12, 0x01], "{rest:02x?}");
    let name = b"sql01.corp.local";
    assert!(rest.windows(name.len()).any(|w| w == name), "{rest:02x?}");
    let fallback = b"SSL_Self_Signed_Fallback";
    assert!(!rest.windows(fallback.len()).any(|w| w == fallback));
    h.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
