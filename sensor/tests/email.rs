//! The email output against a real SMTP server (aiosmtpd, Debian `python3-aiosmtpd`) started
//! here on loopback with STARTTLS and AUTH required: the incident mail arrives over TLS,
//! authenticated, with a subject naming severity, source and service, and text and HTML parts;
//! `sensor send-test` prints the server's answer. The password never appears in logs.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod support;

use std::{
    io::BufRead as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::Engine as _;
use chrono::Utc;
use sensor::{
    format::FormatContext,
    incident::{Incident, IncidentAction, Severity},
    output::{Fanout, OutputConfig},
};
use serde_json::{Value, json};

struct Smtp {
    child: Child,
    dir: PathBuf,
    port: u16,
    ca: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn smtp_server() -> Smtp {
    smtp_server_offering(&[])
}

/// The server, with extra arguments (`login-only`: it offers AUTH LOGIN and not PLAIN).
fn smtp_server_offering(extra: &[&str]) -> Smtp {
    let dir = std::env::temp_dir().join(format!("sensor-smtp-{}", uuid::Uuid::new_v4()));
    let mail = dir.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let _pki = support::Pki::new(&dir);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smtp_server.py");
    // The port is held until the server serves it; one taken anyway is tried again.
    let (child, port) = (0..5)
        .find_map(|_| {
            let hold = support::PortHold::new();
            let port = hold.port();
            let mut child = Command::new("/usr/bin/python3")
                .arg(script)
                .arg(port.to_string())
                .arg(dir.join("server.pem"))
                .arg(dir.join("server.key"))
                .arg(&mail)
                .args(["sensor", "MAIL-SECRET-PASSWORD"])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("python3 with aiosmtpd (Debian python3-aiosmtpd)");
            let mut ready = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut ready)
                .unwrap();
            let serving = ready.trim() == "ready"
                && support::wait_serving(&mut child, &[(port, false)], Duration::from_secs(10));
            drop(hold);
            if serving {
                Some((child, port))
            } else {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        })
        .expect("the SMTP server did not start");
    let ca = dir.join("ca.pem");
    Smtp {
        child,
        dir,
        port,
        ca,
    }
}

fn email_output(smtp: &Smtp) -> Value {
    json!({
        "name": "mail",
        "transport": {
            "type": "email", "host": "127.0.0.1", "port": smtp.port,
            "username": "sensor", "password": "MAIL-SECRET-PASSWORD",
            "from": "sensor@corp.example", "to": ["soc@corp.example", "oncall@corp.example"],
            "ca_file": smtp.ca
        }
    })
}

/// The mails the server saved so far, in arrival order: (raw text, what the server saw).
fn read_mails(smtp: &Smtp) -> Vec<(String, Value)> {
    let mut mails: Vec<PathBuf> = std::fs::read_dir(smtp.dir.join("mail"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    mails.sort();
    mails
        .iter()
        .map(|p| {
            let meta = std::fs::read_to_string(p.with_extension("json")).unwrap();
            // Long headers may be folded (RFC 5322 2.2.3): unfold them.
            let raw = std::fs::read_to_string(p)
                .unwrap()
                .replace("\r\n ", " ")
                .replace("\r\n\t", "\t");
            (raw, serde_json::from_str(&meta).unwrap())
        })
        .collect()
}

fn wait_mail(smtp: &Smtp, n: usize) -> Vec<(String, Value)> {
    support::wait_until_blocking(Duration::from_secs(20), || read_mails(smtp).len() >= n);
    read_mails(smtp)
}

/// The decoded body of the part with this content type.
fn part(mail: &str, content_type: &str) -> String {
    let start = mail.find(&format!("Content-Type: {content_type}")).unwrap();
    let rest = &mail[start..];
    let body_start = rest.find("\r\n\r\n").unwrap() + 4;
    let body_end = rest[body_start..].find("\r\n--").unwrap() + body_start;
    let b64: String = rest[body_start..body_end].split_whitespace().collect();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn incident_mail_goes_over_starttls_with_auth() {
    let smtp = smtp_server();
    let out: OutputConfig = serde_json::from_value(email_output(&smtp)).unwrap();
    let fanout = Fanout::start(&[out], &FormatContext::for_device("fw01"));
    let incident = Incident {
        id: uuid::Uuid::new_v4(),
        action: IncidentAction::Created,
        channel: "ssh".to_owned(),
        category: "login".to_owned(),
        description: "Login attempt on SSH".to_owned(),
        src_ip: "198.51.100.7".parse().unwrap(),
        src_port: Some(50_000),
        dst_ip: Some("192.0.2.10".parse().unwrap()),
        dst_port: Some(22),
        start_time: Utc::now(),
        end_time: Utc::now(),
        events_count: 2,
        acknowledged: false,
        severity: Severity::High,
        login_services: vec!["ssh".to_owned()],
    };
    fanout.send(incident.clone());
    // An update is not mailed without a digest, so this output does not take it: it is not
    // counted as sent (nor dropped).
    let mut updated = incident.clone();
    updated.action = IncidentAction::Updated;
    updated.severity = Severity::Critical;
    fanout.send(updated);
    let stats = fanout.finish(Duration::from_secs(20)).await;
    assert_eq!(
        (
            stats[0].counts.received,
            stats[0].counts.sent,
            stats[0].counts.dropped
        ),
        (1, 1, 0),
        "{stats:?}"
    );
    let mails = wait_mail(&smtp, 1);
    assert_eq!(mails.len(), 1);
    let (mail, meta) = &mails[0];
    assert_eq!(meta["tls"], true);
    assert_eq!(meta["authenticated"], true);
    assert_eq!(meta["mail_from"], "sensor@corp.example");
    assert_eq!(
        meta["rcpt_tos"],
        json!(["soc@corp.example", "oncall@corp.example"])
    );
    assert!(
        mail.contains(
            "\r\nSubject: [Trapster sensor] HIGH: Login attempt on SSH from 198.51.100.7 (ssh)\r\n"
        ),
        "{mail}"
    );
    assert!(mail.contains("Content-Type: multipart/alternative;"));
    let text = part(mail, "text/plain");
    assert!(
        text.contains("Source: 198.51.100.7") && text.contains("Events: 2"),
        "{text}"
    );
    let html = part(mail, "text/html");
    assert!(
        html.contains("<th align=\"left\">Severity</th><td>HIGH</td>"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_go_into_a_digest_mail() {
    let smtp = smtp_server();
    let mut cfg = email_output(&smtp);
    cfg["transport"]["digest_interval_secs"] = json!(1);
    let out: OutputConfig = serde_json::from_value(cfg).unwrap();
    let fanout = Fanout::start(&[out], &FormatContext::for_device("fw01"));
    let mut incident = Incident {
        id: uuid::Uuid::new_v4(),
        action: IncidentAction::Created,
        channel: "ftp".to_owned(),
        category: "connection".to_owned(),
        description: "Connection to FTP".to_owned(),
        src_ip: "203.0.113.5".parse().unwrap(),
        src_port: Some(41_000),
        dst_ip: Some("192.0.2.10".parse().unwrap()),
        dst_port: Some(21),
        start_time: Utc::now(),
        end_time: Utc::now(),
        events_count: 1,
        acknowledged: false,
        severity: Severity::Low,
        login_services: Vec::new(),
    };
    fanout.send(incident.clone());
    for (severity, description) in [
        (Severity::Medium, "Data sent to FTP"),
        (Severity::High, "Login attempt on FTP"),
    ] {
        incident.action = IncidentAction::Updated;
        incident.severity = severity;
        incident.description = description.to_owned();
        fanout.send(incident.clone());
    }
    // The digest goes out on its timer, without waiting for another message. The timer may
    // tick between the two updates, and then they come in two digests: what is guaranteed is
    // the new incident's own mail, then digests that carry both updates between them, in order.
    let digested = |mails: &[(String, Value)]| -> usize {
        mails
            .iter()
            .skip(1)
            .filter_map(|(raw, _)| {
                let count = raw.split("Subject: [Trapster sensor] digest: ").nth(1)?;
                count.split(' ').next()?.parse::<usize>().ok()
            })
            .sum()
    };
    let mails = tokio::task::spawn_blocking(move || {
        support::wait_until_blocking(Duration::from_secs(20), || {
            digested(&read_mails(&smtp)) >= 2
        });
        (read_mails(&smtp), smtp)
    })
    .await
    .unwrap();
    let (mails, _smtp) = mails;
    assert_eq!(digested(&mails), 2, "both updates in digests");
    assert!(
        mails[0]
            .0
            .contains("Subject: [Trapster sensor] LOW: Connection to FTP from 203.0.113.5 (ftp)")
    );
    assert!(
        mails[1..]
            .iter()
            .all(|(raw, _)| raw.contains("Subject: [Trapster sensor] digest: ")),
        "after the new incident's mail only digests: {mails:?}"
    );
    let text: String = mails[1..]
        .iter()
        .map(|(raw, _)| part(raw, "text/plain"))
        .collect();
    let medium = text.find("MEDIUM: Data sent to FTP");
    let high = text.find("HIGH: Login attempt on FTP");
    assert!(
        medium.is_some() && high.is_some() && medium < high,
        "{text}"
    );
    let stats = fanout.finish(Duration::from_secs(10)).await;
    assert_eq!(stats[0].counts.dropped, 0);
}

#[test]
fn send_test_prints_the_servers_answer_and_keeps_the_password_out() {
    let smtp = smtp_server();
    let config = json!({"id": "fw01", "outputs": [email_output(&smtp)]});
    let path = smtp.dir.join("sensor.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["send-test", "-c", path.to_str().unwrap(), "-o", "mail"])
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("mail (email): OK: accepted by 127.0.0.1: 250 OK queued as test-0"),
        "{stdout}"
    );
    assert!(!stdout.contains("MAIL-SECRET-PASSWORD") && !stderr.contains("MAIL-SECRET-PASSWORD"));
    let mails = wait_mail(&smtp, 1);
    assert!(
        mails[0]
            .0
            .contains("Subject: [Trapster sensor] HIGH: Test incident from 192.0.2.1 (test)"),
        "{}",
        mails[0].0
    );
    // A wrong name is an error that lists the outputs.
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["send-test", "-c", path.to_str().unwrap(), "-o", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no output named `nope` (outputs: mail)")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_offering_only_auth_login_gets_the_mail() {
    let smtp = smtp_server_offering(&["login-only"]);
    let out: OutputConfig = serde_json::from_value(email_output(&smtp)).unwrap();
    let fanout = Fanout::start(&[out], &FormatContext::for_device("fw01"));
    fanout.send(sensor::incident::test_incident(Utc::now()));
    let stats = fanout.finish(Duration::from_secs(20)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (1, 0),
        "{stats:?}"
    );
    let mails = wait_mail(&smtp, 1);
    assert_eq!(mails.len(), 1);
    let (raw, meta) = &mails[0];
    assert_eq!(meta["tls"], true, "{meta}");
    assert_eq!(meta["authenticated"], true, "{meta}");
    assert!(
        raw.contains("Subject: [Trapster sensor] HIGH: Test incident"),
        "{raw}"
    );
    assert!(part(raw, "text/plain").contains("Test incident"));
}
