//! nmap's NSE scripts against the Windows decoys, on loopback: `ms-sql-ntlm-info` reads the
//! MSSQL decoy's NTLM CHALLENGE, and over SMB1 (a Windows Server 2012 R2 with the feature, as
//! it ships) `smb-os-discovery` prints the OS, computer, domain and FQDN, `smb-protocols` the
//! release's dialects, `smb2-security-mode` its signing, and `-sV` names it. The logins the
//! scripts make are captured, their hashcat lines recomputed from the (empty) guest password.
//! (`ssl-cert` and `ssl-enum-ciphers` over TDS are in `services_mssql_tls.rs`.) nmap 7.93's
//! own bugs in two of these scripts are fixed in a private `--datadir` (see [`NMAP_FIXES`]);
//! the decoy is never adapted to them.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod harness;

use std::time::Duration;

use harness::{Harness, assert_well_formed, run, temp_dir};
use sensor::{
    event::{Action, Service},
    services::proto::shared::ntlm::crypto::verify_hashcat,
};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(120);

/// Where Debian's nmap keeps its scripts and libraries.
const NMAP_SHARE: &str = "/usr/share/nmap";

/// Two bugs of nmap 7.93 (Debian 12's) that fail the scripts against any server, and the fix
/// of each: (file, the buggy text, its replacement).
///
/// - `mssql.lua`: `GetTargetInstances` takes the one value `GetDiscoveredInstances` returns
///   as a status and iterates the missing second one ("attempt to index a nil value", nmap
///   issues #2572 and #2622), then counts a table keyed by instance name with `#`, which is
///   always 0: every `ms-sql-*` portrule script fails or prints nothing.
/// - `smb-os-discovery.nse`: after printing, it looks a port other than 139/445 up as UDP to
///   refine `-sV`, and indexes the nil it gets (a real host answers on 445; the test's decoy
///   is on an ephemeral port). Only the refinement reads the fixed line.
///
/// The scripts and libraries are otherwise nmap's own: the copies go in a `--datadir` that
/// nmap reads before its own, and only when the installed file still has the bug.
const NMAP_FIXES: &[(&str, &str, &str)] = &[
    (
        "nselib/mssql.lua",
        "      local status, instances = Helper.GetDiscoveredInstances(host, port)\n      if status then",
        "      local instances = Helper.GetDiscoveredInstances(host, port)\n      if instances then",
    ),
    (
        "nselib/mssql.lua",
        "      if #output > 0 then",
        "      if next(output) then",
    ),
    (
        "scripts/smb-os-discovery.nse",
        "    if result.port == 445 or result.port == 139 then",
        "    if result.port == 445 or result.port == 139 \
         or nmap.get_port_state(host, {number = result.port, protocol = 'tcp'}) then",
    ),
];

/// A `--datadir` holding the fixed copies of the files [`NMAP_FIXES`] names.
fn nmap_datadir() -> std::path::PathBuf {
    let dir = temp_dir("nmap-datadir");
    let mut files: Vec<(&str, String)> = Vec::new();
    for (file, buggy, fixed) in NMAP_FIXES {
        let text = match files.iter_mut().find(|(f, _)| f == file) {
            Some((_, text)) => text,
            None => {
                let stock = std::fs::read_to_string(format!("{NMAP_SHARE}/{file}")).unwrap();
                files.push((file, stock));
                &mut files.last_mut().unwrap().1
            }
        };
        if text.matches(buggy).count() == 1 {
            *text = text.replace(buggy, fixed);
        }
    }
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

async fn nmap(args: &[&str]) -> String {
    let datadir = nmap_datadir();
    let mut all = vec!["--datadir", datadir.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run("nmap", &all, &[], LIMIT).await;
    std::fs::remove_dir_all(&datadir).unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of the script `name`'s block (`| name:` up to the line starting `|_`).
fn script_block<'a>(report: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = report
        .lines()
        .skip_while(|l| !l.starts_with(&format!("| {name}:")));
    let mut out = Vec::new();
    for l in lines.by_ref() {
        out.push(l);
        if l.starts_with("|_") {
            break;
        }
    }
    out
}

/// The harness, with the domain the Windows decoys present.
async fn start_windows(services_block: Value) -> Harness {
    Harness::start_in_domain(services_block, "corp.local", "windows-nse").await
}

#[tokio::test(flavor = "multi_thread")]
async fn ms_sql_ntlm_info_reads_the_names_and_version_of_the_challenge() {
    let mut h =
        start_windows(json!({"mssql": [{"port": 0, "hostname": "SQL01", "version": "2019"}]}))
            .await;
    let port = h.addr(Service::Mssql).port().to_string();
    let report = nmap(&[
        "-Pn",
        "-n",
        "-p",
        &port,
        "--script",
        "ms-sql-ntlm-info",
        "--script-args",
        &format!("mssql.instance-port={port}"),
        "127.0.0.1",
    ])
    .await;
    let block = script_block(&report, "ms-sql-ntlm-info");
    let fields: Vec<&str> = block
        .iter()
        .skip(2)
        .map(|l| l.trim_start_matches(['|', '_']).trim())
        .collect();
    assert_eq!(
        fields,
        [
            "Target_Name: CORP",
            "NetBIOS_Domain_Name: CORP",
            "NetBIOS_Computer_Name: SQL01",
            "DNS_Domain_Name: corp.local",
            "DNS_Computer_Name: sql01.corp.local",
            "DNS_Tree_Name: corp.local",
            "Product_Version: 10.0.17763",
        ],
        "{report}"
    );
    assert_eq!(
        block.get(1).map(|l| l.trim()),
        Some(format!("|   127.0.0.1:{port}:").trim()),
        "{report}"
    );
    // The script leaves after the CHALLENGE: a connection, no login, nothing undecoded.
    let events = h
        .drain(Duration::from_secs(1), Duration::from_secs(5))
        .await;
    assert_well_formed(&events);
    assert!(
        events.iter().any(|e| e.action == Action::Connection),
        "{events:?}"
    );
    assert!(
        events.iter().all(|e| e.action == Action::Connection),
        "{events:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn smb1_scripts_see_a_windows_server_2012_r2() {
    let mut h = start_windows(json!({"smb": [{"port": 0, "version": "2012"}]})).await;
    let port = h.addr(Service::Smb).port().to_string();
    let report = nmap(&[
        "-sV",
        "-Pn",
        "-n",
        "-p",
        &port,
        "--script",
        "smb-os-discovery,smb-protocols,smb2-security-mode",
        "--script-args",
        &format!("smbport={port}"),
        "127.0.0.1",
    ])
    .await;
    let os = script_block(&report, "smb-os-discovery").join("\n");
    for want in [
        "OS: Windows Server 2012 R2 Standard 9600 (Windows Server 2012 R2 Standard 6.3)",
        "OS CPE: cpe:/o:microsoft:windows_server_2012::-",
        "Computer name: srv01",
        "NetBIOS computer name: SRV01",
        "Domain name: corp.local",
        "Forest name: corp.local",
        "FQDN: srv01.corp.local",
        "System time: ",
    ] {
        assert!(os.contains(want), "{want} in {report}");
    }
    let protocols = script_block(&report, "smb-protocols").join("\n");
    for want in [
        "NT LM 0.12 (SMBv1) [dangerous, but default]",
        "202",
        "210",
        "300",
        "302",
    ] {
        assert!(protocols.contains(want), "{want} in {report}");
    }
    // 2012 R2 stops at 3.0.2.
    assert!(
        !protocols.contains("311") && !protocols.contains("3:1:1"),
        "{report}"
    );
    let mode = script_block(&report, "smb2-security-mode").join("\n");
    assert!(
        (mode.contains("302:") || mode.contains("3:0:2:"))
            && mode.contains("Message signing enabled but not required"),
        "{report}"
    );
    // -sV: nmap's SMB1 probe matches Windows Server 2008 R2 - 2012, which smb-os-discovery
    // then refines to the release it read.
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("{port}/tcp")))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(line.contains("open"), "{report}");
    assert!(
        line.contains("Windows Server 2012 R2 Standard 9600 microsoft-ds (workgroup: CORP)"),
        "{report}"
    );
    // The scripts' logins: guest (empty password, refused) then the null session (let in).
    let events = h
        .drain(Duration::from_secs(1), Duration::from_secs(5))
        .await;
    assert_well_formed(&events);
    let logins: Vec<&sensor::event::Event> = events
        .iter()
        .filter(|e| e.action == Action::Login)
        .collect();
    let guest = logins
        .iter()
        .find(|e| e.extra["username"] == "guest" && e.extra.get("hashcat").is_some())
        .unwrap_or_else(|| panic!("{logins:?}"));
    assert_eq!(guest.extra["dialect"], "NT LM 0.12");
    assert_eq!(guest.extra["client_os"], "Nmap");
    let line = guest.extra["hashcat"].as_str().unwrap();
    assert!(verify_hashcat(line, ""), "{line}");
    assert!(!verify_hashcat(line, "guest"), "{line}");
    assert!(
        logins
            .iter()
            .any(|e| e.extra["ntlm_version"] == "anonymous" && e.extra["dialect"] == "NT LM 0.12"),
        "{logins:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_server_2019_has_no_smb1_and_speaks_3_1_1() {
    let h = start_windows(json!({"smb": [{"port": 0}]})).await;
    let port = h.addr(Service::Smb).port().to_string();
    let report = nmap(&[
        "-Pn",
        "-n",
        "-p",
        &port,
        "--script",
        "smb-protocols,smb-os-discovery",
        "--script-args",
        &format!("smbport={port}"),
        "127.0.0.1",
    ])
    .await;
    let protocols = script_block(&report, "smb-protocols").join("\n");
    assert!(!protocols.contains("SMBv1"), "{report}");
    for want in ["202", "210", "300", "302", "311"] {
        assert!(protocols.contains(want), "{want} in {report}");
    }
    // smb-os-discovery speaks SMB1 only: it gets nothing from 2019.
    assert!(!report.contains("smb-os-discovery"), "{report}");
    h.stop().await;
}
