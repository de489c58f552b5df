//! The `nats` output against a real `nats-server -js` (Debian `nats-server`) on loopback,
//! started and stopped here: events land in a JetStream stream on the templated subjects, each
//! acknowledged, and a server restart in the middle of the run loses nothing with a spool.
//! Without `nats-server` the test skips, except under CI (`CI` set), where it fails.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod support;

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use sensor::{
    event::Event,
    format::FormatContext,
    output::{Fanout, OutputConfig},
};
use support::redis_server::{Server, serve_on_own_port};

/// A nats-server child, killed on drop.
fn have_nats() -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("CI").is_none(),
        "nats-server is required in CI"
    );
    if !found {
        eprintln!("skipped: nats-server not installed (apt-get install nats-server)");
    }
    found
}

fn nats_args(port: u16, store: &Path) -> Vec<String> {
    vec![
        "-js".to_owned(),
        "-a".to_owned(),
        "127.0.0.1".to_owned(),
        "-p".to_owned(),
        port.to_string(),
        "-sd".to_owned(),
        store.to_string_lossy().into_owned(),
    ]
}

/// Starts nats-server again on `port` (its clients know that port), once it serves it itself.
fn restart_nats(port: u16, store: &Path) -> Server {
    let mut server = Server(
        Command::new("nats-server")
            .args(nats_args(port, store))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server"),
    );
    assert!(
        support::wait_serving(&mut server.0, &[(port, false)], Duration::from_secs(10)),
        "nats-server did not serve port {port} again"
    );
    server
}

fn event(n: usize) -> Event {
    support::login_event(&format!("user{n}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn jetstream_gets_every_event_once_across_a_server_restart() {
    if !have_nats() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sensor-nats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = dir.join("store");
    let (port, server) = serve_on_own_port("nats-server", |port| nats_args(port, &store));
    let url = format!("nats://127.0.0.1:{port}");
    let mut server = Some(server);

    // The stream the SOC's pipeline would have: every trapster subject.
    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "TRAPSTER".to_owned(),
        subjects: vec!["trapster.>".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();

    let out: OutputConfig = serde_json::from_value(serde_json::json!({
        "name": "nats",
        "format": "trapster",
        "transport": {"type": "nats", "url": url, "subject": "trapster.{channel}.{category}"},
        "spool": {"dir": dir.join("spool"), "max_bytes": 16 << 20}
    }))
    .unwrap();
    let fanout = Fanout::start(&[out], &FormatContext::for_device("nats-1"));
    for n in 0..100 {
        fanout.send(event(n));
    }
    // The first half is stored, then the server goes away while events keep coming.
    let stream_len = |js: async_nats::jetstream::Context| async move {
        let mut stream = js.get_stream("TRAPSTER").await.ok()?;
        stream.info().await.ok().map(|i| i.state.messages)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stream_len(js.clone()).await != Some(100) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first 100 never landed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server.take());
    for n in 100..200 {
        fanout.send(event(n));
    }
    // The outage is real before the server comes back: the second hundred waits in the spool
    // and a delivery attempt has failed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = fanout.stats().remove(0);
        if s.counts.in_spool >= 100 && s.retried > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no outage seen: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server = Some(restart_nats(port, &store));
    let stats = fanout.finish(Duration::from_secs(60)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (200, 0),
        "{stats:?}"
    );

    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("TRAPSTER").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    assert_eq!(state.messages, 200, "every event once");
    let mut users = BTreeSet::new();
    for seq in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(message.subject.as_str(), "trapster.ssh.login");
        let envelope: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(envelope["logtype"], "ssh.login");
        assert_eq!(
            message.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            envelope["id"].as_str()
        );
        users.insert(envelope["extra"]["username"].as_str().unwrap().to_owned());
    }

    assert_eq!(users.len(), 200);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
