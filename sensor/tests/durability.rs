//! Durability as the README states it: an output with a spool delivers at least once across
//! `kill -9`. A real sensor process logs FTP logins while its `api` receiver is down, is killed,
//! then killed again in the middle of draining its spool, and a third run delivers the rest:
//! every event arrives, duplicates are counted (at most the request in flight at each kill).

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{io::AsyncWriteExt as _, net::TcpListener};

const LOGINS: usize = 40;
/// USER, PASS and QUIT lines, the login and the connection: five events per session.
const EVENTS: usize = LOGINS * 5;

fn unused_port() -> u16 {
    support::ports::unused_port()
}

fn start(config: &Path, stats: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["run", "--capture", "none", "-c"])
        .arg(config)
        .arg("--stats-file")
        .arg(stats)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sensor")
}

fn kill_9(mut child: Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// Logs in over FTP as `user` (waiting up to 20 s for the service) and quits.
fn ftp_login(port: u16, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(Instant::now() < deadline, "the FTP service never listened");
        std::thread::sleep(Duration::from_millis(50));
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(format!("USER {user}\r\nPASS secret-{user}\r\nQUIT\r\n").as_bytes())
        .expect("send");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert!(reply.ends_with(b"221 Goodbye.\r\n"), "{reply:?}");
}

/// The output counters of the last stats file write.
fn output_stats(stats: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(stats).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["outputs"].get(0).cloned()
}

/// Polls (every 100 ms, at most `limit`) until `done` holds.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every event body the receiver took (one event per request), in arrival order.
type Received = Arc<Mutex<Vec<serde_json::Value>>>;

/// An HTTP receiver on `port` that answers 200 to every request after `delay`.
async fn receiver(port: u16, delay: Duration) -> Received {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let got: Received = Arc::default();
    let store = Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                while let Some(request) = support::read_http_request(&mut stream).await {
                    tokio::time::sleep(delay).await;
                    let event: serde_json::Value =
                        serde_json::from_slice(&request.plain_body()).expect("a JSON event");
                    store.lock().unwrap().push(event);
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

fn config(dir: &Path, ftp: u16, receiver: u16) -> PathBuf {
    let path = dir.join("sensor.conf");
    let text = serde_json::json!({
        "id": "durable-1",
        "interface": "lo",
        "services": {"ftp": [{"port": ftp}]},
        "outputs": [{
            "name": "siem",
            "format": "trapster",
            "transport": {"type": "api", "url": format!("http://127.0.0.1:{receiver}/events")},
            "spool": {"dir": dir.join("spool"), "max_bytes": 16 << 20}
        }],
        "sensor": {
            "services": {"state_dir": dir.join("state")},
            "xdp": {"stats_interval_secs": 1}
        }
    });
    std::fs::write(&path, text.to_string()).expect("config");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn spooled_events_survive_two_kill_9_one_mid_drain_and_arrive_at_least_once() {
    let dir = std::env::temp_dir().join(format!("sensor-durability-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (ftp, api) = (unused_port(), unused_port());
    let config = config(&dir, ftp, api);
    let stats = dir.join("stats.json");

    // 1. The receiver is down: every event goes to the spool; then kill -9.
    let first = start(&config, &stats);
    for n in 0..LOGINS {
        ftp_login(ftp, &format!("user{n}"));
    }
    wait_for(Duration::from_secs(30), "all events spooled", || {
        output_stats(&stats).is_some_and(|o| o["spooled"].as_u64() >= Some(EVENTS as u64))
    });
    kill_9(first);

    // 2. The receiver is up but slow; kill -9 in the middle of the drain.
    let got = receiver(api, Duration::from_millis(20)).await;
    let _ = std::fs::remove_file(&stats);
    let second = start(&config, &stats);
    let seen = Arc::clone(&got);
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "a third of the events", || {
            seen.lock().unwrap().len() >= EVENTS / 3
        });
    })
    .await
    .unwrap();
    kill_9(second);
    let at_kill = got.lock().unwrap().len();
    assert!(at_kill < EVENTS, "the drain was over before the kill");

    // 3. A third run delivers the rest.
    let third = start(&config, &stats);
    let seen = Arc::clone(&got);
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "every event delivered", || {
            let ids: BTreeSet<String> = seen
                .lock()
                .unwrap()
                .iter()
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect();
            ids.len() >= EVENTS
        });
    })
    .await
    .unwrap();
    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(i32::try_from(third.id()).expect("pid"), libc::SIGTERM) };
    let status = third.wait_with_output().expect("exits").status;
    assert!(status.success());

    let got = got.lock().unwrap().clone();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for event in &got {
        *per_id
            .entry(event["id"].as_str().expect("an id").to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), EVENTS, "every event, none invented");
    let duplicates = got.len() - per_id.len();
    eprintln!(
        "delivered {} requests for {} events: {duplicates} duplicates, {at_kill} before the mid-drain kill",
        got.len(),
        per_id.len()
    );
    // At least once: only a request in flight at the second kill may come again.
    assert!(duplicates <= 1, "{duplicates} duplicates");
    let users: BTreeSet<String> = got
        .iter()
        .filter(|e| e["logtype"] == "ftp.login")
        .filter_map(|e| e["extra"]["username"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = (0..LOGINS).map(|n| format!("user{n}")).collect();
    assert_eq!(users, expected);
    // The spool holds nothing more once everything is delivered.
    let final_stats = output_stats(&stats).expect("final stats");
    assert_eq!(final_stats["dropped"], 0, "{final_stats}");
    let _ = std::fs::remove_dir_all(&dir);
}
