//! The hand-off from a decoy to a spooled output survives `kill -9`: a real sensor answers FTP
//! logins (ProFTPD profile: the `530` comes at once, no failed-login delay) only once each login
//! event is in the spool on disk, so a sensor killed with SIGKILL the moment its clients have
//! their answers has every answered login in the spool, and delivers each after the restart.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod support;

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{io::AsyncWriteExt as _, net::TcpListener};

/// Kill rounds, and clients logging in at once in each.
const ROUNDS: usize = 3;
const CLIENTS: usize = 8;

fn unused_port() -> u16 {
    support::ports::unused_port()
}

fn start(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["run", "--capture", "none", "-c"])
        .arg(config)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sensor")
}

fn config(dir: &Path, ftp: u16, receiver: u16) -> PathBuf {
    let path = dir.join("sensor.conf");
    let text = serde_json::json!({
        "id": "handoff-1",
        "interface": "lo",
        "services": {"ftp": [{"port": ftp, "product": "proftpd"}]},
        "outputs": [{
            "name": "siem",
            "format": "trapster",
            "transport": {"type": "api", "url": format!("http://127.0.0.1:{receiver}/events")},
            "spool": {"dir": dir.join("spool"), "max_bytes": 16 << 20}
        }],
        "sensor": {"services": {"state_dir": dir.join("state")}}
    });
    std::fs::write(&path, text.to_string()).expect("config");
    path
}

/// Reads lines until one starts with `code` (a reply of that code), at most 10 s.
fn expect_reply(reader: &mut BufReader<std::net::TcpStream>, code: &str) {
    for _ in 0..20 {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).expect("a reply line") > 0,
            "closed before {code}"
        );
        if line.starts_with(&format!("{code} ")) {
            return;
        }
    }
    panic!("no {code} reply");
}

/// Connects (waiting up to 20 s for the service), logs in as `user` and returns once the
/// failed-login answer arrived, keeping the connection open.
fn login_until_answered(port: u16, user: &str) -> std::net::TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(Instant::now() < deadline, "the FTP service never listened");
        std::thread::sleep(Duration::from_millis(50));
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    expect_reply(&mut reader, "220");
    let mut writer = stream;
    writer
        .write_all(format!("USER {user}\r\n").as_bytes())
        .expect("USER");
    expect_reply(&mut reader, "331");
    writer
        .write_all(format!("PASS secret-{user}\r\n").as_bytes())
        .expect("PASS");
    expect_reply(&mut reader, "530");
    writer
}

/// The usernames of the `ftp.login` records in the spool's segments.
fn spooled_logins(spool: &Path) -> BTreeSet<String> {
    let mut users = BTreeSet::new();
    for entry in std::fs::read_dir(spool).expect("spool dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "seg") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("segment");
        for line in text.lines() {
            let record: serde_json::Value = serde_json::from_str(line).expect("a JSON record");
            if record["logtype"] == "ftp.login" {
                users.insert(record["extra"]["username"].as_str().unwrap().to_owned());
            }
        }
    }
    users
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answered_login_is_in_the_spool_after_kill_9() {
    let dir = std::env::temp_dir().join(format!("sensor-handoff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (ftp, api) = (unused_port(), unused_port());
    let config = config(&dir, ftp, api);
    let mut answered = BTreeSet::new();
    for round in 0..ROUNDS {
        // The receiver is down: every event waits in the spool.
        let mut sensor = start(&config);
        let clients: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let user = format!("r{round}u{n}");
                std::thread::spawn(move || (login_until_answered(ftp, &user), user))
            })
            .collect();
        let mut open = Vec::new();
        for client in clients {
            let (stream, user) = client.join().expect("client");
            open.push(stream);
            answered.insert(user);
        }
        // Every client has its answer: kill -9 at once, connections still open.
        sensor.kill().expect("SIGKILL");
        sensor.wait().expect("reaped");
        drop(open);
        let spooled = spooled_logins(&dir.join("spool"));
        let missing: Vec<_> = answered.difference(&spooled).collect();
        assert!(
            missing.is_empty(),
            "round {round}: answered but not spooled: {missing:?}"
        );
    }

    // The restart delivers every answered login.
    let got = receiver(api).await;
    let mut sensor = start(&config);
    let seen = Arc::clone(&got);
    let expected = answered.clone();
    let delivered = tokio::task::spawn_blocking(move || {
        support::wait_until_blocking(Duration::from_secs(60), || {
            seen.lock().unwrap().is_superset(&expected)
        })
    })
    .await
    .unwrap();
    sensor.kill().expect("SIGKILL");
    sensor.wait().expect("reaped");
    let got = got.lock().unwrap().clone();
    assert!(delivered, "delivered {got:?}, answered {answered:?}");
    assert_eq!(got, answered, "every answered login, none invented");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An HTTP receiver on `port` that answers 200 and keeps the `ftp.login` usernames.
async fn receiver(port: u16) -> Arc<Mutex<BTreeSet<String>>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let got: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let store = Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                while let Some(request) = support::read_http_request(&mut stream).await {
                    let event: serde_json::Value =
                        serde_json::from_slice(&request.plain_body()).expect("a JSON event");
                    if event["logtype"] == "ftp.login" {
                        let user = event["extra"]["username"].as_str().unwrap().to_owned();
                        store.lock().unwrap().insert(user);
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    got
}
