//! The TDS TLS engine against an OpenSSL client in memory: the suites SChannel would pick, the
//! fallback certificate's shape, TLS 1.0, the alert for a hello without a shared suite, and
//! garbage.

use openssl::{
    nid::Nid,
    ssl::{Ssl, SslContext, SslContextBuilder, SslMethod, SslStream, SslVerifyMode, SslVersion},
    x509::X509,
};

use super::{Engine, FALLBACK_NAME, Pipe, TlsError, context, fallback_certificate};
use crate::services::proto::mssql::wire::{self, Version};

fn server_context(version: &str) -> (SslContext, X509) {
    let version = wire::version(version).unwrap();
    let (cert, key) = fallback_certificate(version).unwrap();
    let ctx = context(version, std::slice::from_ref(&cert), &key).unwrap();
    (ctx, cert)
}

fn server(version: &str) -> (Engine, X509) {
    let (ctx, cert) = server_context(version);
    (Engine::new(&ctx).unwrap(), cert)
}

fn client(suites: &str, max: SslVersion) -> SslStream<Pipe> {
    let mut ctx = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
    ctx.set_security_level(0);
    ctx.set_verify(SslVerifyMode::NONE);
    ctx.set_cipher_list(suites).unwrap();
    ctx.set_min_proto_version(Some(SslVersion::TLS1)).unwrap();
    ctx.set_max_proto_version(Some(max)).unwrap();
    let ssl = Ssl::new(&ctx.build()).unwrap();
    SslStream::new(ssl, Pipe::default()).unwrap()
}

/// Shuttles records until both sides are done: the client's negotiated suite and version.
fn handshake(server: &mut Engine, client: &mut SslStream<Pipe>) -> (String, String) {
    for _ in 0..10 {
        let client_done = client.connect().is_ok();
        let out = std::mem::take(&mut client.get_mut().outgoing);
        server.feed(&out);
        let server_done = server.handshake().unwrap();
        let back = server.take_output();
        client.get_mut().incoming.extend_from_slice(&back);
        if client_done && server_done && back.is_empty() {
            let ssl = client.ssl();
            return (
                ssl.current_cipher().unwrap().name().to_owned(),
                ssl.version_str().to_owned(),
            );
        }
    }
    panic!("the handshake did not finish in 10 rounds");
}

#[test]
fn static_rsa_cbc_as_nmap_offers_it_is_served_with_the_fallback_certificate() {
    let (mut server, cert) = server("2019");
    let mut client = client("AES128-SHA:AES256-SHA", SslVersion::TLS1_2);
    assert_eq!(
        handshake(&mut server, &mut client),
        ("AES256-SHA".to_owned(), "TLSv1.2".to_owned()),
        "SChannel's order: AES-256 first"
    );
    let seen = client.ssl().peer_certificate().unwrap();
    assert_eq!(seen.to_der().unwrap(), cert.to_der().unwrap());
    let cn = |name: &openssl::x509::X509NameRef| {
        let entry = name.entries_by_nid(Nid::COMMONNAME).next().unwrap();
        entry.data().to_string().unwrap()
    };
    assert_eq!(cn(seen.subject_name()), FALLBACK_NAME);
    assert_eq!(cn(seen.issuer_name()), FALLBACK_NAME);
    assert_eq!(seen.version(), 2, "X.509 v3");
    assert_eq!(seen.public_key().unwrap().bits(), 2048);
    assert_eq!(
        seen.signature_algorithm().object().nid(),
        Nid::SHA256WITHRSAENCRYPTION
    );
    let serial = seen.serial_number().to_bn().unwrap();
    assert_eq!(serial.num_bytes(), 16);
    assert!(!serial.is_negative());
    let days = seen.not_before().diff(seen.not_after()).unwrap();
    assert!((10_957..=10_958).contains(&days.days), "30 years: {days:?}");
    // No extensions: the TBSCertificate ends with the key (no [3] tag after it).
    let text = String::from_utf8(seen.to_text().unwrap()).unwrap();
    assert!(!text.contains("X509v3"), "{text}");

    // Data both ways once the handshake is done.
    server.write(b"\x04\x01\x00\x0bhello").unwrap();
    let records = server.take_output();
    client.get_mut().incoming.extend_from_slice(&records);
    let mut got = [0u8; 64];
    let n = client.ssl_read(&mut got).unwrap();
    assert_eq!(&got[..n], b"\x04\x01\x00\x0bhello");
    client.ssl_write(b"LOGIN7").unwrap();
    let out = std::mem::take(&mut client.get_mut().outgoing);
    server.feed(&out);
    let mut plain = Vec::new();
    server.read_into(&mut plain, 1024).unwrap();
    assert_eq!(plain, b"LOGIN7");
}

#[test]
fn the_server_order_wins_as_schannel_orders_it_per_release() {
    let both = "AES128-SHA:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-GCM-SHA384";
    let (mut s2019, _) = server("2019");
    let (suite, _) = handshake(&mut s2019, &mut client(both, SslVersion::TLS1_2));
    assert_eq!(suite, "ECDHE-RSA-AES256-GCM-SHA384");
    // Windows Server 2012 R2 puts ECDHE-RSA CBC before every GCM suite.
    let (mut s2014, _) = server("2014");
    let (suite, _) = handshake(&mut s2014, &mut client(both, SslVersion::TLS1_2));
    assert_eq!(suite, "ECDHE-RSA-AES128-SHA256");
    let (mut s2012, _) = server("2012");
    let rsa = "AES256-SHA:AES128-GCM-SHA256";
    let (suite, _) = handshake(&mut s2012, &mut client(rsa, SslVersion::TLS1_2));
    assert_eq!(suite, "AES128-GCM-SHA256");
}

#[test]
fn tls_1_0_and_1_1_are_served_as_windows_enables_them() {
    for (max, name) in [(SslVersion::TLS1, "TLSv1"), (SslVersion::TLS1_1, "TLSv1.1")] {
        let (mut server, _) = server("2017");
        let got = handshake(&mut server, &mut client("AES128-SHA:AES256-SHA", max));
        assert_eq!(got, ("AES256-SHA".to_owned(), name.to_owned()));
    }
}

#[test]
fn sql_server_2022_makes_a_3072_bit_key() {
    let (cert, _) = fallback_certificate(Version {
        major: 16,
        minor: 0,
        build: 1000,
    })
    .unwrap();
    assert_eq!(cert.public_key().unwrap().bits(), 3072);
}

#[test]
fn a_hello_without_a_shared_suite_gets_a_handshake_failure_alert() {
    let (mut server, _) = server("2019");
    let mut client = client("NULL-SHA", SslVersion::TLS1_2);
    let _ = client.connect();
    let hello = std::mem::take(&mut client.get_mut().outgoing);
    server.feed(&hello);
    assert!(matches!(server.handshake(), Err(TlsError::Protocol(_))));
    // One alert record: fatal (2), handshake_failure (40).
    assert_eq!(
        server.take_output(),
        vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40]
    );
}

#[test]
fn garbage_and_every_truncated_hello_never_complete() {
    let mut client = client("AES128-SHA", SslVersion::TLS1_2);
    let _ = client.connect();
    let hello = std::mem::take(&mut client.get_mut().outgoing);
    let (ctx, _) = server_context("2019");
    for cut in 0..hello.len() {
        let mut server = Engine::new(&ctx).unwrap();
        server.feed(&hello[..cut]);
        // A cut hello waits, or is refused once its header is wrong; it never completes.
        assert!(!matches!(server.handshake(), Ok(true)), "cut {cut}");
    }
    let mut server = Engine::new(&ctx).unwrap();
    server.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(matches!(server.handshake(), Err(TlsError::Protocol(_))));
    let mut plain = Vec::new();
    assert!(server.read_into(&mut plain, 100).is_err());
    assert!(plain.is_empty());
}
