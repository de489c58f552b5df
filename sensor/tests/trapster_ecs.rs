//! The `ecs` format side by side with Trapster 1.2's `EcsFormatter`: Trapster from PyPI and the
//! sensor run the same services on loopback, the same clients log in and query both, and every
//! ECS document Trapster writes has its twin, field for field, in the sensor's file; only
//! timestamps and ports are normalised. The two files are also compared byte for byte after
//! the same normalisation (Python `json.dump` text).

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod trapster;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::Command,
    time::Duration,
};

use serde_json::{Value, json};

/// Ports of one side: ftp, http, ssh, mysql.
#[derive(Clone, Copy)]
struct Ports {
    ftp: u16,
    http: u16,
    ssh: u16,
    mysql: u16,
}

fn config(ports: Ports, logfile: &Path) -> String {
    json!({
        "id": "sbs-1", "interface": "", "hostname": "DC01", "domain": "corp.local",
        "services": {
            "ftp": [{"port": ports.ftp, "banner": "Microsoft FTP Service"}],
            "http": [{"port": ports.http, "skin": "default_apache"}],
            "ssh": [{"port": ports.ssh}],
            "mysql": [{"port": ports.mysql, "version": "8.4.3"}]
        },
        "logger": {"output": "file", "format": "ecs", "kwargs": {
            "output_kwargs": {"logfile": logfile, "mode": "w+"},
            "format_kwargs": {"environment": "lab", "service_version": "1.2.3",
                              "observer_name": "decoys", "host_name": "dc01.corp.local",
                              "ecs_version": "8.11.0"}
        }}
    })
    .to_string()
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One FTP login, a command at a time (Trapster reads one command per segment).
fn ftp_login(port: u16) {
    let mut s = BufReader::new(connect(port));
    let mut line = String::new();
    s.read_line(&mut line).unwrap();
    assert!(line.starts_with("220"), "{line}");
    for (cmd, code) in [("USER anna\r\n", "331"), ("PASS s3cr3t\r\n", "530")] {
        s.get_mut().write_all(cmd.as_bytes()).unwrap();
        line.clear();
        s.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "{cmd:?}: {line}");
    }
}

/// One HTTP query with fixed headers.
fn http_query(port: u16) {
    let mut s = connect(port);
    s.write_all(
        b"GET /admin?q=1 HTTP/1.1\r\nHost: decoy.test\r\nUser-Agent: sbs/1.0\r\n\
          Accept: */*\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(
        reply.starts_with(b"HTTP/1.1 404"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
}

/// One SSH password login with the OpenSSH client (refused).
fn ssh_login(port: u16) {
    let out = Command::new("sshpass")
        .args(["-p", "toor", "ssh", "-o", "StrictHostKeyChecking=no", "-o"])
        .args([
            "UserKnownHostsFile=/dev/null",
            "-o",
            "PreferredAuthentications=password",
        ])
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .args([
            "-o",
            "ConnectTimeout=10",
            "-p",
            &port.to_string(),
            "root@127.0.0.1",
            "true",
        ])
        .output()
        .expect("sshpass and ssh are installed");
    assert!(!out.status.success());
}

/// One MySQL handshake response with fixed bytes (user `bob`, a 20-byte auth response,
/// no attributes), read by both as a login.
fn mysql_login(port: u16) {
    let mut s = connect(port);
    let mut greeting = [0u8; 4];
    s.read_exact(&mut greeting).unwrap();
    let len = usize::from(greeting[0]) | usize::from(greeting[1]) << 8;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let mut payload = Vec::new();
    payload.extend_from_slice(&0x000a_a205u32.to_le_bytes()); // PROTOCOL_41 | SECURE_CONNECTION | ...
    payload.extend_from_slice(&0x0100_0000u32.to_le_bytes());
    payload.push(0x21);
    payload.extend_from_slice(&[0; 23]);
    payload.extend_from_slice(b"bob\0");
    payload.push(20);
    payload.extend_from_slice(&[0x11; 20]);
    payload.extend_from_slice(b"mysql_native_password\0");
    let mut packet = vec![payload.len() as u8, 0, 0, 1];
    packet.extend_from_slice(&payload);
    s.write_all(&packet).unwrap();
    // Trapster refuses (ERR 1045); the sensor first asks for the cleartext password
    // (auth switch), which this client does not send.
    let mut reply = [0u8; 5];
    s.read_exact(&mut reply).unwrap();
    assert!(matches!(reply[4], 0xff | 0xfe), "{reply:?}");
}

/// Replaces what differs between two runs: times and ports (and the `Host` header's port).
fn normalise(mut doc: Value) -> Value {
    doc["@timestamp"] = json!("T");
    doc["source"]["port"] = json!(0);
    doc["destination"]["port"] = json!(0);
    doc
}

fn documents(path: &Path) -> Vec<(String, Value)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (l.to_owned(), v)
        })
        .collect()
}

fn key(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["event"]["dataset"].as_str().unwrap_or(""),
        doc["event"]["action"].as_str().unwrap_or("")
    )
}

/// Python `json.dumps` text of a normalised document (the sensor's own encoder is the one
/// under test, so the text is rebuilt from a document in the sensor's file by replacing the
/// normalised values in place).
fn normalised_line(line: &str, doc: &Value) -> String {
    let mut text = line.to_owned();
    for (from, to) in [
        (
            format!(
                "\"@timestamp\": \"{}\"",
                doc["@timestamp"].as_str().unwrap()
            ),
            "\"@timestamp\": \"T\"".to_owned(),
        ),
        (
            format!("\"port\": {}", doc["source"]["port"]),
            "\"port\": 0".to_owned(),
        ),
        (
            format!("\"port\": {}", doc["destination"]["port"]),
            "\"port\": 0".to_owned(),
        ),
    ] {
        text = text.replace(&from, &to);
    }
    text
}

#[test]
fn ecs_documents_equal_trapsters_field_by_field() {
    let Some(trapster) = trapster::install() else {
        return;
    };
    trapster.install_skin("default_apache");
    let dir = trapster::temp_dir("trapster-ecs");
    let p = trapster::free_ports(8);
    let (tp, sp) = (
        Ports {
            ftp: p[0],
            http: p[1],
            ssh: p[2],
            mysql: p[3],
        },
        Ports {
            ftp: p[4],
            http: p[5],
            ssh: p[6],
            mysql: p[7],
        },
    );
    let (t_log, s_log) = (dir.join("trapster.ndjson"), dir.join("sensor.ndjson"));
    std::fs::write(dir.join("trapster.conf"), config(tp, &t_log)).unwrap();
    let mut sensor_conf: Value = serde_json::from_str(&config(sp, &s_log)).unwrap();
    sensor_conf["sensor"] = json!({"services": {"state_dir": dir.join("state")}});
    std::fs::write(dir.join("sensor.conf"), sensor_conf.to_string()).unwrap();
    let _t = trapster.start(&dir.join("trapster.conf"), &dir.join("trapster.log"));
    let _s = trapster::start_sensor(&dir.join("sensor.conf"), &dir.join("sensor.log"));
    trapster::wait_listening(
        &[tp.ftp, tp.http, tp.ssh, tp.mysql],
        "trapster",
        &dir.join("trapster.log"),
    );
    trapster::wait_listening(
        &[sp.ftp, sp.http, sp.ssh, sp.mysql],
        "sensor",
        &dir.join("sensor.log"),
    );
    for ports in [tp, sp] {
        ftp_login(ports.ftp);
        http_query(ports.http);
        ssh_login(ports.ssh);
        mysql_login(ports.mysql);
    }
    // Both write as events happen; wait (bounded) for the four logins and the query.
    let wanted = [
        "trapster.ftp/login",
        "trapster.http/query",
        "trapster.ssh/login",
        "trapster.mysql/login",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (theirs, ours) = loop {
        let (t, s) = (documents(&t_log), documents(&s_log));
        let has = |docs: &[(String, Value)], k: &str| docs.iter().any(|(_, d)| key(d) == k);
        if wanted.iter().all(|k| has(&t, k) && has(&s, k)) || std::time::Instant::now() > deadline {
            break (t, s);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut compared = Vec::new();
    let mut not_produced = std::collections::BTreeSet::new();
    for (line, doc) in &theirs {
        let k = key(doc);
        let Some((our_line, our_doc)) = ours
            .iter()
            .find(|(_, d)| key(d) == k && normalise(d.clone()) == normalise(doc.clone()))
            .or_else(|| ours.iter().find(|(_, d)| key(d) == k))
        else {
            not_produced.insert(k);
            continue;
        };
        assert_eq!(
            normalise(our_doc.clone()),
            normalise(doc.clone()),
            "{k}\ntrapster: {line}\nsensor:   {our_line}"
        );
        assert_eq!(
            normalised_line(our_line, our_doc),
            normalised_line(line, doc),
            "{k}: text"
        );
        compared.push(k);
    }
    for k in wanted {
        assert!(
            compared.iter().any(|c| c == k),
            "{k} not compared: {compared:?}"
        );
    }
    // The one service-level difference: the sensor reports a MySQL handshake it understood as
    // the login only, Trapster also as data.
    assert_eq!(
        not_produced.into_iter().collect::<Vec<_>>(),
        ["trapster.mysql/data"],
        "sensor: {ours:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
