//! The LDAP and LDAPS decoys against OpenLDAP's `ldapsearch` (simple binds, StartTLS, LDAPS,
//! anonymous searches) and `nmap -sV` with the `ldap-rootdse` and `ssl-cert` scripts, on
//! loopback, and `ldapsearch -Y NTLM` (Cyrus SASL's NTLM plugin); plus hostile input over a socket. Each credential event is compared whole.

mod harness;

use std::time::Duration;

use harness::{Harness, assert_well_formed, expected, normalized, run};
use sensor::event::{Action, Service};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const LIMIT: Duration = Duration::from_secs(30);

/// One LDAP instance named as Trapster's example configuration names it.
fn ldap(port_key: &str) -> Value {
    json!({port_key: [{"port": 0, "server": "DC01", "domain": "acme", "tld": "local"}]})
}

async fn ldapsearch(args: &[&str]) -> (i32, String, String) {
    let out = run(
        "ldapsearch",
        args,
        &[
            ("LDAPTLS_REQCERT", "never"),
            ("LDAPCONF", "/dev/null"),
            ("LDAPRC", "/dev/null"),
        ],
        LIMIT,
    )
    .await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn ldapsearch_reads_the_root_dse_anonymously() {
    let mut h = Harness::start(ldap("ldap"), json!({})).await;
    let port = h.addr(Service::Ldap).port();
    let url = format!("ldap://127.0.0.1:{port}");
    let (code, out, err) = ldapsearch(&[
        "-x",
        "-o",
        "ldif-wrap=no",
        "-H",
        &url,
        "-s",
        "base",
        "-b",
        "",
        "(objectClass=*)",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    for line in [
        "defaultNamingContext: DC=acme,DC=local",
        "dnsHostName: DC01.acme.local",
        "ldapServiceName: acme.local:dc01$@ACME.LOCAL",
        "namingContexts: CN=Configuration,DC=acme,DC=local",
        "supportedSASLMechanisms: GSS-SPNEGO",
        "domainFunctionality: 7",
        "serverName: CN=DC01,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=acme,DC=local",
        "supportedCapabilities: 1.2.840.113556.1.4.800",
        "isGlobalCatalogReady: TRUE",
    ] {
        assert!(out.lines().any(|l| l == line), "{line}\n{out}");
    }
    let events = h.until(Action::Query, 1, LIMIT).await;
    assert_well_formed(&events);
    let got: Vec<Value> = events.iter().map(normalized).collect();
    assert_eq!(
        got,
        [
            expected("ldap", "connection", port, b"", json!({})),
            expected(
                "ldap",
                "query",
                port,
                b"",
                json!({"base": "", "scope": "base", "filter": "(objectClass=*)", "attributes": [], "tls": false})
            ),
        ]
    );
    // Below the root, an unbound connection is refused as AD refuses it.
    let (code, out, err) = ldapsearch(&[
        "-x",
        "-o",
        "ldif-wrap=no",
        "-H",
        &url,
        "-b",
        "DC=acme,DC=local",
        "(&(objectClass=user)(servicePrincipalName=*))",
        "sAMAccountName",
        "memberOf",
    ])
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("result: 1 Operations error"), "{out}");
    assert!(
        out.contains("text: 000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed on the connection., data 0, v4563"),
        "{out}"
    );
    let events = h.until(Action::Query, 1, LIMIT).await;
    let got: Vec<Value> = events.iter().map(normalized).collect();
    assert_eq!(
        got,
        [
            expected("ldap", "connection", port, b"", json!({})),
            expected(
                "ldap",
                "query",
                port,
                b"",
                json!({"base": "DC=acme,DC=local", "scope": "sub",
                       "filter": "(&(objectClass=user)(servicePrincipalName=*))",
                       "attributes": ["sAMAccountName", "memberOf"], "tls": false})
            ),
        ]
    );
    h.stop().await;
}

fn login(port: u16, dn: &str, password: &str, tls: bool) -> Value {
    expected(
        "ldap",
        "login",
        port,
        b"",
        json!({"username": dn, "version": 3, "tls": tls, "mechanism": "simple", "password": password}),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn simple_binds_over_plain_starttls_and_ldaps_are_captured() {
    let mut services = ldap("ldap");
    services["ldaps"] = ldap("ldaps")["ldaps"].clone();
    let mut h = Harness::start(services, json!({})).await;
    let mut ports: Vec<u16> = h
        .services
        .as_ref()
        .unwrap()
        .bound()
        .iter()
        .filter(|(s, a)| *s == Service::Ldap && a.is_ipv4())
        .map(|(_, a)| a.port())
        .collect();
    ports.sort_unstable();
    assert_eq!(ports.len(), 2);
    // Listed in configuration order: ldap first. Tell them apart by asking for StartTLS.
    let dn = "CN=Administrator,CN=Users,DC=acme,DC=local";
    let mut plain_port = 0;
    let mut ldaps_port = 0;
    for port in &ports {
        let (code, _, _) = ldapsearch(&[
            "-x",
            "-H",
            &format!("ldaps://127.0.0.1:{port}"),
            "-s",
            "base",
            "-b",
            "",
        ])
        .await;
        if code == 0 {
            ldaps_port = *port;
        } else {
            plain_port = *port;
        }
    }
    assert!(plain_port != 0 && ldaps_port != 0, "{ports:?}");
    let _ = h.drain(Duration::from_millis(300), LIMIT).await;
    let cases = [
        (
            format!("ldap://127.0.0.1:{plain_port}"),
            false,
            plain_port,
            "Winter2026!",
        ),
        (
            format!("ldap://127.0.0.1:{plain_port}"),
            true,
            plain_port,
            "p@ss w0rd",
        ),
        (
            format!("ldaps://127.0.0.1:{ldaps_port}"),
            false,
            ldaps_port,
            "Ünïcode-Pass",
        ),
    ];
    for (url, starttls, port, password) in &cases {
        let mut args = vec![
            "-x",
            "-H",
            url.as_str(),
            "-D",
            dn,
            "-w",
            password,
            "-b",
            "DC=acme,DC=local",
            "(sAMAccountName=adm*)",
        ];
        if *starttls {
            args.insert(0, "-ZZ");
        }
        let (code, _, err) = ldapsearch(&args).await;
        assert_eq!(code, 49, "{url}: {err}");
        assert!(err.contains("Invalid credentials (49)"), "{err}");
        assert!(
            err.contains("80090308: LdapErr: DSID-0C090439, comment: AcceptSecurityContext error, data 52e, v4563"),
            "{err}"
        );
        let events = h.until(Action::Login, 1, LIMIT).await;
        assert_well_formed(&events);
        let got: Vec<Value> = events.iter().map(normalized).collect();
        let tls = *starttls || url.starts_with("ldaps");
        assert_eq!(
            got,
            [
                expected("ldap", "connection", *port, b"", json!({})),
                login(*port, dn, password, tls)
            ],
            "{url} starttls={starttls}"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nmap_names_active_directory_and_its_scripts_read_the_names() {
    let mut services = ldap("ldap");
    services["ldaps"] = ldap("ldaps")["ldaps"].clone();
    let h = Harness::start(services, json!({})).await;
    let ports: Vec<String> = h
        .services
        .as_ref()
        .unwrap()
        .bound()
        .iter()
        .filter(|(s, a)| *s == Service::Ldap && a.is_ipv4())
        .map(|(_, a)| a.port().to_string())
        .collect();
    let out = run(
        "nmap",
        &[
            "-sV",
            "-Pn",
            "-n",
            "--script",
            "ldap-rootdse,ssl-cert",
            "-p",
            &ports.join(","),
            "127.0.0.1",
        ],
        &[],
        Duration::from_secs(240),
    )
    .await;
    let report = String::from_utf8_lossy(&out.stdout);
    for port in &ports {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("{port}/tcp")))
            .unwrap_or_else(|| panic!("no line for {port}: {report}"));
        assert!(
            line.contains("Microsoft Windows Active Directory LDAP (Domain: acme.local, Site: Default-First-Site-Name)"),
            "{line}\n{report}"
        );
    }
    for needle in [
        "dnsHostName: DC01.acme.local",
        "defaultNamingContext: DC=acme,DC=local",
        "Subject: commonName=DC01.acme.local",
    ] {
        assert!(report.contains(needle), "{needle}\n{report}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bytes_are_logged_and_the_connection_closed() {
    let mut h = Harness::start(ldap("ldap"), json!({})).await;
    let addr = h.addr(Service::Ldap);
    let port = addr.port();
    let openings: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: dc01\r\n\r\n",
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
        b"\x30\x84\xff\xff\xff\xff\x02\x01\x01",
        b"\x30\x80\x02\x01\x01\x00\x00",
        b"\x30\x05\x02\x01\x01\x4f\x00",
    ];
    for opening in openings {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(opening).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(LIMIT, s.read_to_end(&mut buf))
            .await
            .expect("closed");
        let events = h.until(Action::Data, 1, LIMIT).await;
        let got: Vec<Value> = events.iter().map(normalized).collect();
        assert_eq!(
            got,
            [
                expected("ldap", "connection", port, b"", json!({})),
                expected("ldap", "data", port, opening, json!({}))
            ],
            "{opening:?}"
        );
        // LDAP-looking openings get AD's notice of disconnection; others only the close.
        assert_eq!(!buf.is_empty(), opening[0] == 0x30, "{opening:?}: {buf:?}");
    }
    // A simple bind dripped one byte at a time still logs in.
    let bind: &[u8] = b"\x30\x16\x02\x01\x01\x60\x11\x02\x01\x03\x04\x05admin\x80\x05guess";
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for b in bind {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut reply = [0u8; 6];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply[..2], &[0x30, 0x84]);
    let events = h.until(Action::Login, 1, LIMIT).await;
    let got: Vec<Value> = events.iter().map(normalized).collect();
    assert_eq!(
        got,
        [
            expected("ldap", "connection", port, b"", json!({})),
            login(port, "admin", "guess", false)
        ]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_ntlm_bind_from_ldapsearch_gives_a_netntlm_line_that_verifies() {
    // Cyrus SASL's NTLM plugin answers with NTLMv1 (hashcat -m 5500).
    use sensor::services::proto::shared::ntlm::crypto::verify_hashcat;
    let mut h = Harness::start(ldap("ldap"), json!({})).await;
    let port = h.addr(Service::Ldap).port();
    let url = format!("ldap://127.0.0.1:{port}");
    let (code, out, err) = ldapsearch(&[
        "-N",
        "-Y",
        "NTLM",
        "-U",
        "alice",
        "-R",
        "ACME",
        "-w",
        "Autumn2026!",
        "-H",
        &url,
        "-b",
        "DC=acme,DC=local",
    ])
    .await;
    assert_eq!(code, 49, "{out}{err}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let mut got: Vec<Value> = events.iter().map(normalized).collect();
    let line = got[1]["extra"]["hashcat"].as_str().unwrap().to_owned();
    assert!(verify_hashcat(&line, "Autumn2026!"), "{line}");
    assert!(!verify_hashcat(&line, "autumn2026!"), "{line}");
    got[1]["extra"]["hashcat"] = json!("*");
    assert!(line.starts_with("alice::ACME:"), "{line}");
    assert_eq!(
        got,
        [
            expected("ldap", "connection", port, b"", json!({})),
            expected(
                "ldap",
                "login",
                port,
                b"",
                json!({"username": "alice", "version": 3, "tls": false, "mechanism": "NTLM",
                       "domain": "ACME", "workstation": "", "ntlm_version": "NTLMv1", "hashcat": "*"})
            )
        ],
        "{line}"
    );
    h.stop().await;
}
