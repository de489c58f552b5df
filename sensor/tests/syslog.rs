//! The syslog output against a real rsyslogd (Debian `rsyslog` + `rsyslog-gnutls`) started here
//! on loopback: CEF over UDP, TCP (newline framing), TLS (octet counting, certificate
//! verified against the test's CA) and TLS with a client certificate rsyslog requires
//! (`x509/certvalid`) received intact. A CEF parser recovers every field of
//! hostile events: attacker strings full of `|`, `=`, `\`, newlines and invalid UTF-8.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use chrono::Utc;
use sensor::{
    event::{Action, Event, Service, SessionIdentity},
    format::FormatContext,
    output::{Fanout, OutputConfig},
};
use serde_json::{Value, json};

struct Rsyslog {
    child: Child,
    dir: PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ports of the inputs of one rsyslogd.
struct Ports {
    udp: u16,
    tcp: u16,
    tls: u16,
    mtls: u16,
}

/// Starts rsyslogd on ports of its own (tried again on others when one was taken before it
/// bound it), with a UDP, a TCP and two TLS inputs, each written raw to its own file.
fn rsyslog() -> (Rsyslog, Ports) {
    for _ in 0..5 {
        // Distinct ports, held at once until rsyslogd serves them (ports taken one after
        // another may repeat, and then the TCP output talks to the TLS input).
        let holds: [support::PortHold; 3] = std::array::from_fn(|_| support::PortHold::new());
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let ports = Ports {
            udp: udp.local_addr().unwrap().port(),
            tcp: holds[0].port(),
            tls: holds[1].port(),
            mtls: holds[2].port(),
        };
        // Not held: a second UDP socket on the port could take datagrams. It is free a moment
        // before rsyslogd binds it; one taken meanwhile is tried again.
        drop(udp);
        let mut server = spawn_rsyslog(&ports);
        let serving = support::wait_serving(
            &mut server.child,
            &[
                (ports.udp, true),
                (ports.tcp, false),
                (ports.tls, false),
                (ports.mtls, false),
            ],
            Duration::from_secs(15),
        );
        drop(holds);
        if serving {
            return (server, ports);
        }
    }
    panic!("rsyslogd never served its ports");
}

fn spawn_rsyslog(ports: &Ports) -> Rsyslog {
    let &Ports {
        udp,
        tcp,
        tls,
        mtls,
    } = ports;
    let dir = std::env::temp_dir().join(format!("sensor-rsyslog-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let _pki = support::Pki::new(&dir);
    let d = dir.display();
    let conf = format!(
        r#"global(workDirectory="{d}" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="{d}/ca.pem"
       defaultNetstreamDriverCertFile="{d}/server.pem"
       defaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imudp")
module(load="imtcp" maxSessions="50")
template(name="raw" type="string" string="%rawmsg%\n")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{mtls}" ruleset="mtls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
ruleset(name="mtls") {{ action(type="omfile" file="{d}/mtls.log" template="raw") }}
ruleset(name="udp") {{ action(type="omfile" file="{d}/udp.log" template="raw") }}
ruleset(name="tcp") {{ action(type="omfile" file="{d}/tcp.log" template="raw") }}
ruleset(name="tls") {{ action(type="omfile" file="{d}/tls.log" template="raw") }}
"#
    );
    std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
    let child = Command::new("rsyslogd")
        .args(["-n", "-f"])
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("rsyslogd (Debian packages rsyslog rsyslog-gnutls)");
    Rsyslog { child, dir }
}

/// A minimal CEF parser: header fields and extensions, unescaped.
fn parse_cef(line: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut header = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    while header.len() < 7 {
        match chars.next() {
            Some('\\') => field.push(chars.next().unwrap_or('\\')),
            Some('|') => header.push(std::mem::take(&mut field)),
            Some(c) => field.push(c),
            None => break,
        }
    }
    let rest: Vec<char> = chars.collect();
    let mut starts = Vec::new();
    for i in 0..rest.len() {
        if (i == 0 || rest[i - 1] == ' ') && rest[i].is_ascii_alphanumeric() {
            let mut j = i;
            while j < rest.len() && rest[j].is_ascii_alphanumeric() {
                j += 1;
            }
            if j < rest.len() && rest[j] == '=' && rest[j - 1] != '\\' {
                starts.push((i, j));
            }
        }
    }
    let mut ext = Vec::new();
    for (n, (k0, k1)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(rest.len(), |(next, _)| next - 1);
        let key: String = rest[*k0..*k1].iter().collect();
        let mut v = String::new();
        let mut it = rest[k1 + 1..end].iter();
        while let Some(&c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => v.push('\n'),
                    Some('r') => v.push('\r'),
                    Some(&o) => v.push(o),
                    None => v.push('\\'),
                }
            } else {
                v.push(c);
            }
        }
        ext.push((key, v));
    }
    (header, ext)
}

const NASTY: &[&[u8]] = &[
    b"admin|root=1\\x",
    b"line1\nline2\r\nCEF:0|forged|x|1|y|z|10|src=6.6.6.6",
    b"\xff\xfe\xc3\x28 invalid utf-8 = | \\",
    b"<13>1 2026-01-01T00:00:00Z forged app - - - injected",
    b"\x00\x01\x1b[31m\x7f",
    b"=\\=\\\\|||",
];

fn hostile(i: usize, payload: &[u8]) -> Event {
    let text = String::from_utf8_lossy(payload).into_owned();
    Event {
        id: uuid::Uuid::new_v4(),
        timestamp: Utc::now(),
        session: SessionIdentity {
            src_ip: "198.51.100.9".parse().unwrap(),
            src_port: 40_000 + u16::try_from(i).unwrap(),
            dst_ip: "192.0.2.10".parse().unwrap(),
            dst_port: 21,
        },
        service: Service::Ftp,
        action: Action::Login,
        data: Bytes::copy_from_slice(payload),
        extra: json!({"username": text, "password": text})
            .as_object()
            .unwrap()
            .clone()
            .into(),
    }
}

fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let lines = || -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().map(str::to_owned).collect()
    };
    support::wait_until_blocking(Duration::from_secs(20), || lines().len() >= n);
    lines()
}

#[tokio::test(flavor = "multi_thread")]
async fn cef_over_udp_tcp_and_tls_reaches_rsyslog_intact() {
    let (server, ports) = rsyslog();
    let Ports {
        udp,
        tcp,
        tls,
        mtls,
    } = ports;
    let ca = server.dir.join("ca.pem");
    let (client_cert, client_key) = (server.dir.join("client.pem"), server.dir.join("client.key"));
    let outputs: Vec<OutputConfig> = vec![
        serde_json::from_value(json!({"name": "udp", "transport": {"type": "syslog", "host": "127.0.0.1", "port": udp}})).unwrap(),
        serde_json::from_value(json!({"name": "tcp", "transport": {"type": "syslog", "host": "127.0.0.1", "port": tcp, "protocol": "tcp", "framing": "newline"}})).unwrap(),
        serde_json::from_value(json!({"name": "tls", "transport": {"type": "syslog", "host": "localhost", "port": tls, "protocol": "tls", "ca_file": ca, "rfc": "rfc3164"}})).unwrap(),
        // rsyslog requires a client certificate signed by the CA on this input.
        serde_json::from_value(json!({"name": "mtls", "transport": {"type": "syslog", "host": "localhost", "port": mtls, "protocol": "tls", "ca_file": ca, "client_cert_file": client_cert, "client_key_file": client_key}})).unwrap(),
    ];
    // Without the client certificate that input refuses the connection: nothing may count as
    // delivered.
    let refused: OutputConfig = serde_json::from_value(json!({"name": "refused", "transport": {"type": "syslog", "host": "localhost", "port": mtls, "protocol": "tls", "ca_file": ca}})).unwrap();
    let fanout = Fanout::start(&[refused], &FormatContext::for_device("sensor-syslog"));
    fanout.send(hostile(0, b"x"));
    let stats = fanout.finish(Duration::from_secs(2)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (0, 1),
        "{stats:?}"
    );
    let fanout = Fanout::start(&outputs, &FormatContext::for_device("sensor-syslog"));
    let events: Vec<Event> = NASTY
        .iter()
        .enumerate()
        .map(|(i, p)| hostile(i, p))
        .collect();
    for e in &events {
        fanout.send(e.clone());
    }
    let stats = fanout.finish(Duration::from_secs(20)).await;
    for s in &stats {
        assert_eq!(
            (s.counts.sent, s.counts.dropped),
            (NASTY.len() as u64, 0),
            "{s:?}"
        );
    }
    for name in ["udp", "tcp", "tls", "mtls"] {
        let lines = wait_lines(&server.dir.join(format!("{name}.log")), NASTY.len());
        assert_eq!(lines.len(), NASTY.len(), "{name}: {lines:#?}");
        for (line, event) in lines.iter().zip(&events) {
            assert!(line.starts_with("<132>"), "{name}: {line}");
            let cef = &line[line
                .find("CEF:0|")
                .unwrap_or_else(|| panic!("{name}: {line}"))..];
            let (header, ext) = parse_cef(cef);
            assert_eq!(
                header[1..7],
                [
                    "Ballpoint",
                    "Trapster",
                    env!("CARGO_PKG_VERSION"),
                    "ftp",
                    "login",
                    "10"
                ]
            );
            let get = |k: &str| {
                ext.iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let text = event.extra["username"].as_str().unwrap();
            let expected: String = text
                .chars()
                .map(|c| {
                    if c.is_control() && c != '\n' && c != '\r' {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
            assert_eq!(get("suser"), expected, "{name}: {cef}");
            let extra: Value = serde_json::from_str(&get("cs2")).unwrap();
            assert_eq!(extra["password"], event.extra["password"], "{name}");
            assert_eq!(get("cs3"), hex::encode(&event.data));
            assert_eq!(get("spt"), event.session.src_port.to_string());
            assert_eq!(get("src"), "198.51.100.9");
        }
    }
}
