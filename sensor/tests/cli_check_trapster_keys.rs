//! Every key Trapster 1.2's own source reads from a service instance (`trapster/modules/*.py`
//! and `trapster.py`, read for this table), for each of the 15 services its shipped
//! `trapster.conf` names: `sensor check` on a configuration with that one key either accepts it
//! silently (the sensor honours it) or names it in a warning (`services.http[0].deploy_seed`);
//! it never refuses it and never drops it without a word.

use std::process::Command;

use serde_json::{Value, json};

/// What `check` does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Accepted without a warning: the sensor honours the key.
    Honoured,
    /// Accepted with a warning naming `services.<service>[0].<key>`.
    Warned,
}

use Outcome::{Honoured, Warned};

/// (service, key, a value Trapster accepts, what `check` does).
fn table(dir: &std::path::Path) -> Vec<(&'static str, &'static str, Value, Outcome)> {
    let file = |name: &str| json!(dir.join(name));
    vec![
        ("ftp", "banner", json!("Microsoft FTP Service"), Honoured),
        ("ftp", "username", json!(null), Honoured),
        ("ftp", "password", json!(null), Honoured),
        ("http", "skin", json!("default_apache"), Honoured),
        ("http", "basic_auth", json!(true), Honoured),
        ("http", "username", json!("admin"), Honoured),
        ("http", "password", json!("admin"), Honoured),
        // Trapster seeds its skins' template ETags with it; our skins have no templated ETag.
        ("http", "deploy_seed", json!("0123456789abcdef"), Warned),
        ("https", "skin", json!("default_apache"), Honoured),
        ("https", "basic_auth", json!(false), Honoured),
        ("https", "username", json!("admin"), Honoured),
        ("https", "password", json!("admin"), Honoured),
        ("https", "deploy_seed", json!("0123456789abcdef"), Warned),
        ("https", "common_name", json!("server.internal"), Honoured),
        ("https", "organization_name", json!("Corp"), Honoured),
        ("https", "country_name", json!("FR"), Honoured),
        ("https", "state_or_province_name", json!("IDF"), Honoured),
        ("https", "locality_name", json!("Paris"), Honoured),
        (
            "https",
            "not_valid_before",
            json!("2024-01-01T00:00:00"),
            Honoured,
        ),
        (
            "https",
            "not_valid_after",
            json!("2034-01-01T00:00:00"),
            Honoured,
        ),
        ("https", "key", file("https-key.pem"), Honoured),
        ("https", "certificate", file("https-cert.pem"), Honoured),
        (
            "ssh",
            "version",
            json!("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7"),
            Honoured,
        ),
        ("ssh", "banner", json!("Authorised use only"), Honoured),
        ("ssh", "users", json!({"root": "toor"}), Honoured),
        ("dns", "target_dns", json!("127.0.0.1"), Honoured),
        ("vnc", "version", json!("RFB_38"), Honoured),
        ("mysql", "version", json!("8.4.3"), Honoured),
        (
            "mysql",
            "auth_plugin",
            json!("mysql_native_password"),
            Honoured,
        ),
        ("mssql", "version", json!("2019"), Honoured),
        ("mssql", "hostname", json!("SQL01"), Honoured),
        ("ldap", "hostname", json!("DC01"), Honoured),
        ("ldap", "server", json!("DC01"), Honoured),
        ("ldap", "domain", json!("corp"), Honoured),
        ("ldap", "tld", json!("local"), Honoured),
        ("ldap", "level", json!("WinThreshold"), Honoured),
        ("ldaps", "hostname", json!("DC01"), Honoured),
        ("ldaps", "domain", json!("corp.local"), Honoured),
        ("ldaps", "level", json!("WinThreshold"), Honoured),
        ("ldaps", "key", file("ldaps-key.pem"), Honoured),
        ("ldaps", "certificate", file("ldaps-cert.pem"), Honoured),
        ("rdp", "version", json!("2019"), Honoured),
        ("rdp", "ntlm_hostname", json!("WIN-RDP"), Honoured),
        ("rdp", "ntlm_domain", json!("WORKGROUP"), Honoured),
        ("rdp", "key", file("rdp-key.pem"), Honoured),
        ("rdp", "certificate", file("rdp-cert.pem"), Honoured),
        (
            "telnet",
            "version",
            json!("Cisco router telnetd / IOS"),
            Honoured,
        ),
        ("telnet", "hostname", json!("router"), Honoured),
        ("rsync", "version", json!("31.0"), Honoured),
        ("rsync", "modules", json!(["Backup", "Users"]), Honoured),
        // `port` is the only key Trapster's postgres and snmp read.
        ("postgres", "port", json!(0), Honoured),
        ("snmp", "port", json!(0), Honoured),
    ]
}

#[test]
fn every_key_trapster_reads_is_honoured_or_warned_by_name_at_check() {
    let dir = std::env::temp_dir().join(format!("sensor-trapster-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rows = table(&dir);
    let services: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.0).collect();
    assert_eq!(services.len(), 15, "{services:?}");
    let mut wrong = Vec::new();
    for (service, key, value, expected) in rows {
        let mut instance = json!({"port": 0});
        instance[key] = value;
        let config = json!({
            "id": "keys", "interface": "", "services": {service: [instance]},
            "logger": {"name": "JsonLogger", "kwargs": {}},
            // Port 0 lets the kernel pick, so no row depends on a free port.
            "sensor": {"services": {"ephemeral_ports": true, "state_dir": dir.join("state")}}
        });
        let path = dir.join(format!("{service}-{key}.conf"));
        std::fs::write(&path, config.to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
            .args(["check", "-c"])
            .arg(&path)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let field = format!("services.{service}[0].{key}");
        let named = stdout
            .lines()
            .any(|l| l.starts_with(&format!("warning: {field}")));
        let got = match (out.status.code(), named) {
            (Some(0), false) => Some(Honoured),
            (Some(0), true) => Some(Warned),
            _ => None,
        };
        // No other warning: the key is the only thing in the instance besides `port`.
        let others: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("warning:") && !l.starts_with(&format!("warning: {field}")))
            .collect();
        if got != Some(expected) || !others.is_empty() {
            wrong.push(format!(
                "{field}: expected {expected:?}, got {got:?} (exit {:?}): {stdout}{stderr}",
                out.status.code()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
