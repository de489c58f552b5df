//! NTLM logins the earlier Windows tests did not drive, on loopback: impacket's LDAP client
//! binding with Sicily (AD's own NTLM bind) and with SASL GSS-SPNEGO, ldap3's NTLM (Sicily),
//! over LDAP and LDAPS; `ldapsearch -Y GSS-SPNEGO` with gss-ntlmssp's NTLM; impacket's and
//! Samba's SMB1 clients against a Windows Server 2012 R2 decoy. Every hashcat line is
//! recomputed here from the password the client typed (MD4, HMAC-MD5), independently of the
//! sensor's own code, and checked not to verify another password.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod harness;

use std::time::Duration;

use harness::{Harness, assert_well_formed, run, temp_dir};
use sensor::{
    event::{Action, Event, Service},
    services::proto::shared::ntlm::crypto::verify_hashcat,
};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

/// Recomputes a `-m 5600` line's NTProofStr from `password`, and checks another password fails.
fn assert_netntlmv2(line: &str, user: &str, password: &str) {
    harness::ntlm::assert_netntlmv2(line, user, password);
    assert!(verify_hashcat(line, password), "{line}");
    assert!(!verify_hashcat(line, &format!("{password}x")), "{line}");
}

fn logins(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.action == Action::Login)
        .collect()
}

async fn python(script: &str) -> String {
    let out = run("python3", &["-c", script], &[], LIMIT).await;
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// impacket's `LDAPConnection` dials 389/636 only: its `getaddrinfo` gets the test's port.
/// `signing` is the connection's `signing` argument (impacket's default is `True`).
fn ldap_script(url: &str, port: u16, signing: bool, body: &str) -> String {
    let signing = if signing { "True" } else { "False" };
    format!(
        "import socket\n\
         from impacket.ldap import ldap\n\
         real = socket.getaddrinfo\n\
         socket.getaddrinfo = lambda host, _port, *a, **k: real(host, {port}, *a, **k)\n\
         c = ldap.LDAPConnection('{url}', 'DC=acme,DC=local', signing={signing})\n\
         {body}"
    )
}

/// The harness, with the domain the Windows decoys present.
async fn start_windows(services_block: Value) -> Harness {
    Harness::start_in_domain(services_block, "corp.local", "windows-ntlm").await
}

#[tokio::test(flavor = "multi_thread")]
async fn impacket_sicily_bind_gives_a_netntlmv2_line_that_verifies() {
    let mut h = start_windows(
        json!({"ldap": [{"port": 0, "server": "DC01", "domain": "acme", "tld": "local"}]}),
    )
    .await;
    let port = h.addr(Service::Ldap).port();
    let body = "print('discovery', c.login(authenticationChoice='sicilyPackageDiscovery'))\n\
                try:\n    c.login('alice', 'Spring2026!', 'ACME', authenticationChoice='sicilyNegotiate')\n\
                except Exception as e:\n    print('refused', e)\n";
    // impacket 0.13's Sicily path cannot sign: with `signing=True` a successful bind (here the
    // discovery, which AD answers with success as MS-ADTS 5.1.1.1.3 says) makes it try to seal
    // the next request and raise a `str` ("exceptions must derive from BaseException").
    let text = python(&ldap_script("ldap://127.0.0.1", port, false, body)).await;
    assert!(text.contains("discovery True"), "{text}");
    assert!(
        text.contains("refused Error in bindRequest -> invalidCredentials: 80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 52e, v4563"),
        "{text}"
    );
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let found = logins(&events);
    assert_eq!(found.len(), 1, "{events:?}");
    let login = found[0];
    assert_eq!(login.service, Service::Ldap);
    for (key, want) in [
        ("username", json!("alice")),
        ("domain", json!("ACME")),
        ("mechanism", json!("sicily")),
        ("ntlm_version", json!("NTLMv2")),
        ("tls", json!(false)),
        ("version", json!(3)),
    ] {
        assert_eq!(login.extra[key], want, "{key}: {login:?}");
    }
    assert_netntlmv2(
        login.extra["hashcat"].as_str().unwrap(),
        "alice",
        "Spring2026!",
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ldap3_ntlm_binds_over_ldap_and_ldaps_are_sicily_and_verify() {
    // ldap3's `authentication=NTLM` (what BloodHound.py, ldapdomaindump and NetExec bind with):
    // package discovery, then Sicily NEGOTIATE and RESPONSE on the same connection.
    for (list, secure, user, password) in [
        ("ldap", false, "frank", "Summer-2026"),
        ("ldaps", true, "heidi", "Frost*2026"),
    ] {
        let mut h = start_windows(
            json!({list: [{"port": 0, "server": "DC01", "domain": "acme", "tld": "local"}]}),
        )
        .await;
        let port = h.addr(Service::Ldap).port();
        let ssl = if secure { "True" } else { "False" };
        let script = format!(
            "import ldap3\n\
             s = ldap3.Server('127.0.0.1', port={port}, use_ssl={ssl}, get_info=ldap3.NONE)\n\
             c = ldap3.Connection(s, user='ACME\\\\{user}', password='{password}', \
             authentication=ldap3.NTLM)\n\
             print('bound', c.bind(), c.result['description'], repr(c.result['message']))\n"
        );
        let text = python(&script).await;
        assert!(
            text.contains("bound False invalidCredentials '80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 52e, v4563\\x00'"),
            "{text}"
        );
        let events = h.until(Action::Login, 1, LIMIT).await;
        assert_well_formed(&events);
        let found = logins(&events);
        assert_eq!(found.len(), 1, "{events:?}");
        let login = found[0];
        for (key, want) in [
            ("username", json!(user)),
            ("domain", json!("ACME")),
            ("mechanism", json!("sicily")),
            ("ntlm_version", json!("NTLMv2")),
            ("tls", json!(secure)),
            ("version", json!(3)),
        ] {
            assert_eq!(login.extra[key], want, "{key}: {login:?}");
        }
        assert_netntlmv2(login.extra["hashcat"].as_str().unwrap(), user, password);
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn impacket_gss_spnego_binds_over_ldap_and_ldaps_verify_too() {
    for (list, url, secure, user, password) in [
        ("ldap", "ldap://127.0.0.1", false, "bob", "Winter#2025"),
        ("ldaps", "ldaps://127.0.0.1", true, "carol", "Autumn!23"),
    ] {
        let mut h = start_windows(
            json!({list: [{"port": 0, "server": "DC01", "domain": "acme", "tld": "local"}]}),
        )
        .await;
        let port = h.addr(Service::Ldap).port();
        // impacket's default: SASL GSS-SPNEGO carrying NTLM, with a MIC.
        let body = format!(
            "try:\n    c.login('{user}', '{password}', 'ACME')\n\
             except Exception as e:\n    print('refused', e)\n"
        );
        let text = python(&ldap_script(url, port, true, &body)).await;
        assert!(
            text.contains("refused") && text.contains("data 52e"),
            "{text}"
        );
        let events = h.until(Action::Login, 1, LIMIT).await;
        assert_well_formed(&events);
        let found = logins(&events);
        assert_eq!(found.len(), 1, "{events:?}");
        let login = found[0];
        assert_eq!(login.extra["username"], user);
        assert_eq!(login.extra["domain"], "ACME");
        assert_eq!(login.extra["mechanism"], "GSS-SPNEGO");
        assert_eq!(login.extra["tls"], secure);
        assert_netntlmv2(login.extra["hashcat"].as_str().unwrap(), user, password);
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ldapsearch_gss_spnego_bind_over_gss_ntlmssp_gives_a_netntlmv2_line_that_verifies() {
    // Cyrus SASL's GSS-SPNEGO (the gssapiv2 plugin) over MIT GSSAPI, whose SPNEGO picks
    // gss-ntlmssp's NTLM mechanism: its credentials come from `NTLM_USER_FILE`.
    let mut h = start_windows(
        json!({"ldap": [{"port": 0, "server": "DC01", "domain": "acme", "tld": "local"}]}),
    )
    .await;
    let port = h.addr(Service::Ldap).port();
    let dir = temp_dir("gss-ntlmssp");
    let creds = dir.join("ntlm_user_file");
    std::fs::write(&creds, "ACME:grace:Harvest=2026\n").unwrap();
    let url = format!("ldap://127.0.0.1:{port}");
    let out = run(
        "ldapsearch",
        &[
            "-N",
            "-Y",
            "GSS-SPNEGO",
            "-H",
            &url,
            "-b",
            "DC=acme,DC=local",
        ],
        &[("NTLM_USER_FILE", creds.to_str().unwrap())],
        LIMIT,
    )
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(49), "{text}");
    assert!(
        text.contains("80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 52e, v4563"),
        "{text}"
    );
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let found = logins(&events);
    assert_eq!(found.len(), 1, "{events:?}");
    let login = found[0];
    for (key, want) in [
        ("username", json!("grace")),
        ("domain", json!("ACME")),
        ("mechanism", json!("GSS-SPNEGO")),
        ("ntlm_version", json!("NTLMv2")),
        ("tls", json!(false)),
        ("version", json!(3)),
    ] {
        assert_eq!(login.extra[key], want, "{key}: {login:?}");
    }
    // gss-ntlmssp names the client's host.
    assert!(
        !login.extra["workstation"].as_str().unwrap().is_empty(),
        "{login:?}"
    );
    assert_netntlmv2(
        login.extra["hashcat"].as_str().unwrap(),
        "grace",
        "Harvest=2026",
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn impacket_smb1_login_gives_a_netntlmv2_line_that_verifies() {
    let mut h = start_windows(json!({"smb": [{"port": 0, "version": "2012"}]})).await;
    let port = h.addr(Service::Smb).port();
    let script = format!(
        "from impacket.smbconnection import SMBConnection\n\
         from impacket.smb import SMB_DIALECT\n\
         c = SMBConnection('127.0.0.1', '127.0.0.1', sess_port={port}, preferredDialect=SMB_DIALECT)\n\
         print('dialect', c.getDialect() == SMB_DIALECT)\n\
         try:\n    c.login('bob', 'Winter#2025', 'CORP')\n\
         except Exception as e:\n    print('refused', e)\n\
         print('names', repr((c.getServerOS(), c.getServerName(), c.getServerDomain(), \
         c.getServerDNSDomainName(), c.getServerDNSHostName())))\n"
    );
    let text = python(&script).await;
    assert!(text.contains("dialect True"), "{text}");
    assert!(
        text.contains("refused SMB SessionError: code: 0xc000006d - STATUS_LOGON_FAILURE"),
        "{text}"
    );
    // What the NEGOTIATE (OS) and the CHALLENGE (names) told impacket.
    assert!(
        text.contains(
            "names ('Windows Server 2012 R2 Standard 9600', 'SRV01', 'CORP', 'corp.local', 'srv01.corp.local')"
        ),
        "{text}"
    );
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let found = logins(&events);
    assert_eq!(found.len(), 1, "{events:?}");
    let login = found[0];
    assert_eq!(login.service, Service::Smb);
    assert_eq!(login.extra["username"], "bob");
    assert_eq!(login.extra["domain"], "CORP");
    assert_eq!(login.extra["dialect"], "NT LM 0.12");
    assert_eq!(login.extra["ntlm_version"], "NTLMv2");
    assert_netntlmv2(
        login.extra["hashcat"].as_str().unwrap(),
        "bob",
        "Winter#2025",
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn smbclient_over_smb1_gives_a_netntlmv2_line_that_verifies() {
    let mut h = start_windows(json!({"smb": [{"port": 0, "version": "2012"}]})).await;
    let port = h.addr(Service::Smb).port().to_string();
    let out = run(
        "smbclient",
        &[
            "-U",
            "dave%Spring-2026",
            "-W",
            "CORP",
            "-m",
            "NT1",
            "--option=client min protocol=NT1",
            "-L",
            "//127.0.0.1",
            "-p",
            &port,
        ],
        &[],
        LIMIT,
    )
    .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("NT_STATUS_LOGON_FAILURE"), "{text}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let found = logins(&events);
    let login = found.first().unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(login.extra["username"], "dave");
    assert_eq!(login.extra["domain"], "CORP");
    assert_eq!(login.extra["dialect"], "NT LM 0.12");
    assert!(!login.extra["workstation"].as_str().unwrap().is_empty());
    assert_netntlmv2(
        login.extra["hashcat"].as_str().unwrap(),
        "dave",
        "Spring-2026",
    );
    h.stop().await;
}

/// An SMB1 request in its direct-TCP frame: `command`, `flags2`, then `words` and `bytes`.
fn smb1(command: u8, flags2: u16, words: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut m = b"\xffSMB".to_vec();
    m.push(command);
    m.extend_from_slice(&[0; 4]);
    m.push(0x18);
    m.extend_from_slice(&flags2.to_le_bytes());
    m.extend_from_slice(&[0; 20]);
    m.push(u8::try_from(words.len() / 2).unwrap());
    m.extend_from_slice(words);
    m.extend_from_slice(&u16::try_from(bytes.len()).unwrap().to_le_bytes());
    m.extend_from_slice(bytes);
    m
}

fn framed(m: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(m.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(m);
    out
}

/// Sends `bytes`, half-closes, and reads until the server closes (or 10 s pass).
async fn send_and_wait(addr: std::net::SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await {
        Ok(_) => Ok(out),
        Err(_) => Err("still open".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_smb1_clients_are_closed_and_the_next_client_is_served() {
    let mut h = start_windows(json!({"smb": [{"port": 0, "version": "2012"}]})).await;
    let addr = h.addr(Service::Smb);
    let negotiate = smb1(0x72, 0xc853, &[], b"\x02NT LM 0.12\0");
    let mut setup_words = vec![0xff, 0, 0, 0, 0xff, 0xff, 1, 0, 1, 0, 0, 0, 0, 0];
    setup_words.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0, 0x50, 0, 0, 0x80]);
    let setup = smb1(0x73, 0xc853, &setup_words, b"\x60\x03abc");
    let mut cases: Vec<Vec<u8>> = Vec::new();
    // Every truncation of a NEGOTIATE, in a frame that says so.
    for cut in 0..negotiate.len() {
        cases.push(framed(&negotiate[..cut]));
    }
    // A SESSION_SETUP before any NEGOTIATE, and after it with the blob length at its maximum;
    // word and byte counts at their maximum; a frame longer than what follows.
    cases.push(framed(&setup));
    cases.push([framed(&negotiate), framed(&setup)].concat());
    let mut wc = negotiate.clone();
    wc[32] = 0xff;
    cases.push(framed(&wc));
    let mut bc = negotiate.clone();
    bc[33..35].copy_from_slice(&[0xff, 0xff]);
    cases.push(framed(&bc));
    cases.push(b"\x00\x00\xff\xff\xffSMBr".to_vec());
    // Random bytes after the signature, and unknown commands after a NEGOTIATE.
    for seed in 1..=16u64 {
        let mut x = seed;
        let mut m = b"\xffSMB".to_vec();
        for _ in 0..(seed * 11 % 200) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.push(x.to_le_bytes()[3]);
        }
        cases.push(framed(&m));
        cases.push([framed(&negotiate), framed(&smb1(0x2e, 0xc853, &[], &[]))].concat());
    }
    assert!(cases.len() >= 50, "{}", cases.len());
    for case in &cases {
        send_and_wait(addr, case)
            .await
            .unwrap_or_else(|e| panic!("{e}: {case:?}"));
    }
    let _ = h
        .drain(Duration::from_millis(500), Duration::from_secs(10))
        .await;
    // Still served: impacket's SMB1 login.
    let script = format!(
        "from impacket.smbconnection import SMBConnection\n\
         from impacket.smb import SMB_DIALECT\n\
         c = SMBConnection('127.0.0.1', '127.0.0.1', sess_port={}, preferredDialect=SMB_DIALECT)\n\
         c.login('erin', 'Spring-2026', 'CORP')\n",
        addr.port()
    );
    let text = python(&script).await;
    assert!(text.contains("STATUS_LOGON_FAILURE"), "{text}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = logins(&events)[0];
    assert_netntlmv2(
        login.extra["hashcat"].as_str().unwrap(),
        "erin",
        "Spring-2026",
    );
    h.stop().await;
}
