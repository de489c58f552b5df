//! The `redis` output against a real `redis-server` on loopback, started and stopped here:
//! every command, delivery after the server comes up late, and passwords kept out of errors.
//! Without `redis-server` the tests skip, except under CI (`CI=true`), where they fail.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod support;

use support::redis_server::have_redis;

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use chrono::{TimeZone as _, Utc};
use sensor::{
    event::{Action, Event, Service, SessionIdentity},
    format::{Format, FormatContext},
    output::{
        Fanout, OutputConfig, Transport,
        sink::redis::{RedisCommand, RedisConfig},
    },
};

/// A redis-server child, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` (a redis-server told to listen on `hold`'s port) until it serves that port
/// itself; `None` when it exits first (the port was taken after all).
fn serve(mut cmd: Command, hold: support::PortHold) -> Option<Server> {
    let mut server = Server(cmd.spawn().expect("spawn redis-server"));
    let serving = support::wait_serving(
        &mut server.0,
        &[(hold.port(), false)],
        Duration::from_secs(10),
    );
    drop(hold);
    serving.then_some(server)
}

fn redis_server(port: u16, password: Option<&str>) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args(support::redis_server::plain_args(port))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(p) = password {
        cmd.args(["--requirepass", p]);
    }
    cmd
}

/// A redis-server on a port of its own, and that port.
fn start(password: Option<&str>) -> (Server, u16) {
    for _ in 0..5 {
        let hold = support::PortHold::new();
        let port = hold.port();
        if let Some(server) = serve(redis_server(port, password), hold) {
            return (server, port);
        }
    }
    panic!("redis-server did not start");
}

fn redis(port: u16, command: RedisCommand, password: Option<&str>) -> OutputConfig {
    let config: RedisConfig = serde_json::from_value(serde_json::json!({
        "host": "127.0.0.1", "port": port, "command": command_name(command), "key": "events",
        "password": password,
    }))
    .unwrap();
    OutputConfig::new(Format::Default, Transport::Redis(config))
}

fn command_name(c: RedisCommand) -> &'static str {
    match c {
        RedisCommand::Zadd => "zadd",
        RedisCommand::Rpush => "rpush",
        RedisCommand::Lpush => "lpush",
        RedisCommand::Xadd => "xadd",
        RedisCommand::Publish => "publish",
    }
}

fn event(n: u16) -> Event {
    Event {
        id: uuid::Uuid::from_u128(u128::from(n)),
        timestamp: Utc.with_ymd_and_hms(2026, 2, 13, 13, 0, 9).unwrap()
            + chrono::Duration::seconds(i64::from(n)),
        session: SessionIdentity {
            src_ip: "198.18.0.2".parse().unwrap(),
            src_port: 1,
            dst_ip: "198.18.0.1".parse().unwrap(),
            dst_port: n,
        },
        service: Service::Portscan,
        action: Action::Query,
        data: Bytes::new(),
        extra: serde_json::json!({"flags": ["SYN"], "ports": [n.to_string()]})
            .as_object()
            .unwrap()
            .clone()
            .into(),
    }
}

async fn query(port: u16, password: Option<&str>, args: &[&str]) -> redis::Value {
    let mut info: redis::ConnectionInfo = ("127.0.0.1", port).into_connection_info().unwrap();
    info.redis.password = password.map(str::to_owned);
    let client = redis::Client::open(info).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await.unwrap()
}

use redis::IntoConnectionInfo as _;

fn strings(v: &redis::Value) -> Vec<String> {
    match v {
        redis::Value::Array(items) => items.iter().flat_map(strings).collect(),
        redis::Value::BulkString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        redis::Value::SimpleString(s) => vec![s.clone()],
        other => vec![format!("{other:?}")],
    }
}

#[tokio::test]
async fn zadd_like_trapster_and_the_other_commands() {
    if !have_redis() {
        return;
    }
    let (_server, port) = start(None);
    let ctx = FormatContext::for_device("trapster-1");
    for command in [RedisCommand::Zadd, RedisCommand::Rpush, RedisCommand::Xadd] {
        let _: redis::Value = query(port, None, &["DEL", "events"]).await;
        let fanout = Fanout::start(&[redis(port, command, None)], &ctx);
        for n in 1..=20 {
            fanout.send(event(n));
        }
        let stats = fanout.finish(Duration::from_secs(10)).await;
        assert_eq!(
            (stats[0].counts.sent, stats[0].counts.dropped),
            (20, 0),
            "{command:?}: {stats:?}"
        );
        let stored = match command {
            RedisCommand::Zadd => {
                strings(&query(port, None, &["ZRANGE", "events", "0", "-1", "WITHSCORES"]).await)
            }
            RedisCommand::Rpush => {
                strings(&query(port, None, &["LRANGE", "events", "0", "-1"]).await)
            }
            _ => strings(&query(port, None, &["XRANGE", "events", "-", "+"]).await),
        };
        let events: Vec<serde_json::Value> = stored
            .iter()
            .filter_map(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .filter(|v| v.is_object())
            .collect();
        assert_eq!(events.len(), 20, "{command:?}: {stored:?}");
        assert!(
            events
                .iter()
                .all(|e| e["logtype"] == "portscan.query" && e["device"] == "trapster-1")
        );
        if command == RedisCommand::Zadd {
            // Scores are the events' Unix times, so ZRANGEBYSCORE works as with Trapster.
            let first_score: f64 = stored[1].parse().unwrap();
            assert!(
                (first_score - 1_770_987_610.0).abs() < 1e-3,
                "{first_score}"
            );
        }
    }
}

#[tokio::test]
async fn a_stream_is_trimmed_to_about_max_len() {
    if !have_redis() {
        return;
    }
    let (_server, port) = start(None);
    let config: RedisConfig = serde_json::from_value(serde_json::json!({
        "host": "127.0.0.1", "port": port, "command": "xadd", "key": "events", "max_len": 100,
    }))
    .unwrap();
    let out = OutputConfig::new(Format::Default, Transport::Redis(config));
    let fanout = Fanout::start(&[out], &FormatContext::for_device("trapster-1"));
    for n in 1..=1_000 {
        fanout.send(event(n));
    }
    let stats = fanout.finish(Duration::from_secs(10)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (1_000, 0),
        "{stats:?}"
    );
    let len = match query(port, None, &["XLEN", "events"]).await {
        redis::Value::Int(n) => n,
        other => panic!("{other:?}"),
    };
    // `MAXLEN ~` trims whole nodes (100 entries each by default): at least 100 stay, and far
    // fewer than the 1,000 added.
    assert!((100..=200).contains(&len), "{len}");
    // What stays is the newest.
    let last = strings(&query(port, None, &["XREVRANGE", "events", "+", "-", "COUNT", "1"]).await);
    let newest: serde_json::Value = last
        .iter()
        .find_map(|s| {
            serde_json::from_str(s)
                .ok()
                .filter(serde_json::Value::is_object)
        })
        .unwrap();
    assert_eq!(newest["dst_port"], 1_000);
}

#[tokio::test]
async fn events_wait_for_a_server_that_comes_up_late() {
    if !have_redis() {
        return;
    }
    let hold = support::PortHold::new();
    let port = hold.port();
    let fanout = Fanout::start(
        &[redis(port, RedisCommand::Zadd, None)],
        &FormatContext::for_device("s1"),
    );
    for n in 1..=30 {
        fanout.send(event(n));
    }
    // The server comes up once a delivery has failed, not after a guessed pause.
    assert!(
        support::wait_until(Duration::from_secs(30), || fanout.stats()[0].retried > 0).await,
        "a refused delivery is retried: {:?}",
        fanout.stats()
    );
    let _server = serve(redis_server(port, None), hold).expect("redis-server on the held port");
    let stats = fanout.finish(Duration::from_secs(40)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (30, 0),
        "{stats:?}"
    );
    let count = query(port, None, &["ZCARD", "events"]).await;
    assert_eq!(count, redis::Value::Int(30));
}

#[tokio::test]
async fn passwords_authenticate_and_never_leak_into_errors() {
    if !have_redis() {
        return;
    }
    let (_server, port) = start(Some("s3cret-pass"));
    let ctx = FormatContext::for_device("s1");
    let good = Fanout::start(
        &[redis(port, RedisCommand::Rpush, Some("s3cret-pass"))],
        &ctx,
    );
    good.send(event(1));
    let stats = good.finish(Duration::from_secs(10)).await;
    assert_eq!(stats[0].counts.sent, 1, "{stats:?}");
    let mut wrong = sensor::output::sink::redis::RedisOutput::new(
        serde_json::from_value(
            serde_json::json!({"host": "127.0.0.1", "port": port, "password": "wrong-pass-xyz"}),
        )
        .unwrap(),
        "wrong-password",
    );
    let err = wrong.try_write(&[(1.0, b"{}")]).await.unwrap_err();
    assert!(
        !err.contains("wrong-pass-xyz") && !err.contains("s3cret"),
        "{err}"
    );
    assert!(format!("{wrong:?}").contains("***"));
}

/// Writes a CA and a server certificate for 127.0.0.1 signed by it; returns (ca, cert, key).
fn tls_files(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let pki = support::Pki::new(dir);
    (pki.ca, pki.cert, pki.key)
}

#[tokio::test]
async fn tls_is_verified_against_the_configured_ca() {
    if !have_redis() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sensor-redis-tls-{}", uuid::Uuid::new_v4()));
    let (ca, cert, key) = tls_files(&dir);
    let tls_server = |port: u16| {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&ca)
        .args(["--tls-auth-clients", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd
    };
    let (_server, port) = (0..5)
        .find_map(|_| {
            let hold = support::PortHold::new();
            let port = hold.port();
            serve(tls_server(port), hold).map(|server| (server, port))
        })
        .expect("redis-server (TLS) did not start");
    let output = |extra: serde_json::Value| {
        let mut cfg =
            serde_json::json!({"host": "127.0.0.1", "port": port, "tls": true, "command": "rpush"});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        sensor::output::sink::redis::RedisOutput::new(
            serde_json::from_value(cfg).unwrap(),
            "tls-test",
        )
    };
    // Verified against our CA: delivered.
    let mut verified = output(serde_json::json!({"ca_file": ca}));
    verified.try_write(&[(1.0, b"{\"n\":1}")]).await.unwrap();
    // The system roots do not know our CA: refused.
    let mut unknown = output(serde_json::json!({}));
    assert!(unknown.try_write(&[(1.0, b"{\"n\":2}")]).await.is_err());
    // Told to skip verification: delivered.
    let mut insecure = output(serde_json::json!({"insecure": true}));
    insecure.try_write(&[(1.0, b"{\"n\":3}")]).await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
