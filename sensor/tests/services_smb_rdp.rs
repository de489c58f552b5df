//! SMB and RDP against the real clients attackers use (Samba's `smbclient`, impacket's
//! `smbclient.py` and `rdp_check.py`, FreeRDP's `xfreerdp +auth-only`) and `nmap`, on loopback.
//! Every captured hashcat line is recomputed here from the password the client typed, with the
//! MD4/HMAC-MD5 of NTLMv2, independently of the sensor's own code.

mod harness;

use std::time::Duration;

use harness::{Harness, assert_well_formed, ntlm::assert_netntlmv2, run, temp_dir};
use sensor::event::{Action, Event, Service};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

fn login_of(events: &[Event]) -> &Event {
    events
        .iter()
        .find(|e| e.action == Action::Login)
        .unwrap_or_else(|| panic!("no login in {events:?}"))
}

/// The harness, with the domain the Windows decoys present.
async fn start_windows(services_block: Value) -> Harness {
    Harness::start_in_domain(services_block, "corp.local", "smb-rdp").await
}

#[tokio::test(flavor = "multi_thread")]
async fn smbclient_login_gives_a_netntlmv2_line_that_verifies() {
    let mut h = start_windows(json!({"smb": [{"port": 0}]})).await;
    let port = h.addr(Service::Smb).port().to_string();
    let out = run(
        "smbclient",
        &[
            "-U",
            "alice%Summer2024!",
            "-W",
            "CORP",
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
    let login = login_of(&events);
    assert_eq!(login.service, Service::Smb);
    assert_eq!(login.extra["username"], "alice");
    assert_eq!(login.extra["domain"], "CORP");
    assert_eq!(login.extra["ntlm_version"], "NTLMv2");
    assert_eq!(login.extra["dialect"], "3.1.1");
    assert!(!login.extra["workstation"].as_str().unwrap().is_empty());
    assert_netntlmv2(
        login.extra["hashcat"].as_str().unwrap(),
        "alice",
        "Summer2024!",
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn smbclient_anonymous_listing_is_logged_as_a_share_query() {
    let mut h = start_windows(json!({"smb": [{"port": 0}]})).await;
    let port = h.addr(Service::Smb).port().to_string();
    let out = run(
        "smbclient",
        &["-N", "-L", "//127.0.0.1", "-p", &port],
        &[],
        LIMIT,
    )
    .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("NT_STATUS_ACCESS_DENIED"), "{text}");
    let events = h.until(Action::Query, 1, LIMIT).await;
    let login = login_of(&events);
    assert_eq!(login.extra["ntlm_version"], "anonymous");
    assert!(login.extra.get("hashcat").is_none());
    let query = events.iter().find(|e| e.action == Action::Query).unwrap();
    assert_eq!(query.extra["path"], "\\\\127.0.0.1\\IPC$");
    assert_eq!(query.extra["share"], "IPC$");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn impacket_smbclient_login_verifies_too() {
    let mut h = start_windows(json!({"smb": [{"port": 0}]})).await;
    let port = h.addr(Service::Smb).port().to_string();
    // impacket's `smbclient.py` only takes ports 139 and 445: its SMBConnection, as the
    // script uses it, on the test's port.
    let script = format!(
        "from impacket.smbconnection import SMBConnection\n\
         c = SMBConnection('127.0.0.1', '127.0.0.1', sess_port={port})\n\
         c.login('bob', 'Winter#2025', 'CORP')\n"
    );
    let out = run("python3", &["-c", &script], &[], LIMIT).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("STATUS_LOGON_FAILURE"), "{text}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = login_of(&events);
    assert_eq!(login.extra["username"], "bob");
    assert_eq!(login.extra["domain"], "CORP");
    assert_netntlmv2(
        login.extra["hashcat"].as_str().unwrap(),
        "bob",
        "Winter#2025",
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nmap_scripts_read_the_configured_names_from_smb() {
    let h = start_windows(json!({"smb": [{"port": 0}]})).await;
    let port = h.addr(Service::Smb).port();
    let out = run(
        "nmap",
        &[
            "-Pn",
            "-n",
            "-p",
            &port.to_string(),
            "--script",
            "smb2-security-mode,smb2-time",
            "--script-args",
            &format!("smbport={port}"),
            "127.0.0.1",
        ],
        &[],
        LIMIT,
    )
    .await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("Message signing enabled but not required"),
        "{report}"
    );
    // nmap 7.93 prints the dialect as "311", later versions as "3:1:1".
    assert!(
        report.contains("311:") || report.contains("3:1:1:"),
        "{report}"
    );
    assert!(
        report.contains("smb2-time:") && report.contains("date: "),
        "{report}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn xfreerdp_nla_login_gives_a_netntlmv2_line_that_verifies() {
    let mut h = start_windows(json!({"rdp": [{"port": 0}]})).await;
    let target = format!("/v:127.0.0.1:{}", h.addr(Service::Rdp).port());
    let out = run(
        "xvfb-run",
        &[
            "-a",
            "xfreerdp",
            &target,
            "/u:carol",
            "/p:Autumn!23",
            "/d:CORP",
            "+auth-only",
            "/cert:ignore",
        ],
        &[],
        LIMIT,
    )
    .await;
    assert!(!out.status.success(), "the login must fail");
    let events = h.until(Action::Login, 2, LIMIT).await;
    assert_well_formed(&events);
    let logins: Vec<&Event> = events
        .iter()
        .filter(|e| e.action == Action::Login)
        .collect();
    let cookie = logins
        .iter()
        .find(|e| e.extra["source"] == "mstshash")
        .unwrap_or_else(|| panic!("{logins:?}"));
    assert_eq!(cookie.extra["username"], "carol");
    let nla = logins
        .iter()
        .find(|e| e.extra["source"] == "credssp")
        .unwrap();
    assert_eq!(nla.service, Service::Rdp);
    assert_eq!(nla.extra["username"], "carol");
    assert_eq!(nla.extra["domain"], "CORP");
    assert_eq!(nla.extra["ntlm_version"], "NTLMv2");
    assert_netntlmv2(nla.extra["hashcat"].as_str().unwrap(), "carol", "Autumn!23");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nmap_names_rdp_and_smb_and_reads_the_ntlm_names() {
    // Trapster's `certificate`/`key`: a certificate of the user's, presented as is.
    let dir = temp_dir("rdp-cert");
    let mut params = rcgen::CertificateParams::new(vec!["ts01.corp.local".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ts01.corp.local");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("rdp.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("rdp.key"), key.serialize_pem()).unwrap();
    let h = start_windows(json!({
        "rdp": [{
            "port": 0, "ntlm_hostname": "ts01", "ntlm_domain": "corp.local", "version": "2022",
            "certificate": dir.join("rdp.crt"), "key": dir.join("rdp.key"),
        }],
        "smb": [{"port": 0}],
    }))
    .await;
    let rdp = h.addr(Service::Rdp).port();
    let smb = h.addr(Service::Smb).port();
    let out = run(
        "nmap",
        &[
            "-sV",
            "-Pn",
            "-n",
            "-p",
            &format!("{rdp},{smb}"),
            "--script",
            "rdp-ntlm-info,ssl-cert",
            "127.0.0.1",
        ],
        &[],
        Duration::from_secs(240),
    )
    .await;
    let report = String::from_utf8_lossy(&out.stdout);
    let line = |port: u16| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{port}/tcp")))
            .unwrap_or_else(|| panic!("no line for {port}: {report}"))
            .to_owned()
    };
    assert!(line(rdp).contains("ms-wbt-server"), "{report}");
    assert!(
        line(rdp).contains("Microsoft Terminal Services"),
        "{report}"
    );
    // Windows Server 2019 has no SMB1, so nmap's only SMB probe (SMB1-only dialects) gets no
    // answer: nmap names such a server by its port alone ("microsoft-ds?" on 445), and claims
    // no other product on another port.
    assert!(line(smb).contains("open"), "{report}");
    assert!(!line(smb).contains("ms-wbt-server"), "{report}");
    for want in [
        "Target_Name: CORP",
        "NetBIOS_Domain_Name: CORP",
        "NetBIOS_Computer_Name: TS01",
        "DNS_Domain_Name: corp.local",
        "DNS_Computer_Name: ts01.corp.local",
        "DNS_Tree_Name: corp.local",
        "Product_Version: 10.0.20348",
        "ssl-cert: Subject: commonName=ts01.corp.local",
    ] {
        assert!(report.contains(want), "{want} in {report}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn smbclient_with_ntlmv1_gives_a_netntlmv1_line_that_verifies() {
    let mut h = start_windows(json!({"smb": [{"port": 0}]})).await;
    let port = h.addr(Service::Smb).port().to_string();
    run(
        "smbclient",
        &[
            "-U",
            "erin%Spring-2026",
            "-W",
            "CORP",
            "--option=client ntlmv2 auth=no",
            "-L",
            "//127.0.0.1",
            "-p",
            &port,
        ],
        &[],
        LIMIT,
    )
    .await;
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = login_of(&events);
    assert_eq!(login.extra["username"], "erin");
    let kind = login.extra["ntlm_version"].as_str().unwrap();
    assert!(kind == "NTLMv1" || kind == "NTLMv1-ESS", "{kind}");
    let line = login.extra["hashcat"].as_str().unwrap();
    // `-m 5500`: user::domain:lm:nt:challenge, 24-byte responses.
    let f: Vec<&str> = line.split(':').collect();
    assert_eq!(
        (f.len(), f[3].len(), f[4].len(), f[5].len()),
        (6, 48, 48, 16),
        "{line}"
    );
    // DES of the NT hash, recomputed (the sensor's checker is itself checked against MS-NLMP
    // 4.2.2 and 4.2.3 in its unit tests).
    use sensor::services::proto::shared::ntlm::crypto::verify_hashcat;
    assert!(verify_hashcat(line, "Spring-2026"), "{line}");
    assert!(!verify_hashcat(line, "Spring-2025"), "{line}");
    h.stop().await;
}
