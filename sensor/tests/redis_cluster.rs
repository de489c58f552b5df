//! The `redis` output against a real Redis Cluster (three masters, three replicas) and a real
//! Sentinel set-up (a master, a replica, one sentinel), all on loopback and started here: events
//! land where the cluster says, and a master that dies mid-run is survived through the failover
//! with nothing lost. Without `redis-server` the tests skip, except under CI, where they fail.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod support;

use std::time::Duration;

use sensor::{
    event::Event,
    format::FormatContext,
    output::{Fanout, OutputConfig},
};
use support::redis_server::{cli, cluster, have_redis, serve_on_own_port, start, wait_for};

fn event(n: usize) -> Event {
    support::login_event(&format!("user{n}"))
}

fn output(transport: serde_json::Value) -> OutputConfig {
    serde_json::from_value(serde_json::json!({"name": "redis", "transport": transport})).unwrap()
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sensor-redis-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The port of the master that serves `key` now, asked of `port` (any node).
fn master_of(port: u16, key: &str) -> u16 {
    let slot = cli(port, &["CLUSTER", "KEYSLOT", key]);
    let slot: u32 = slot.parse().unwrap();
    for line in cli(port, &["CLUSTER", "NODES"]).lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if !fields[2].contains("master") || fields[2].contains("fail") {
            continue;
        }
        let port: u16 = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
        for range in &fields[8..] {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            if (lo.parse::<u32>().unwrap()..=hi.parse::<u32>().unwrap()).contains(&slot) {
                return port;
            }
        }
    }
    panic!("no master serves slot {slot}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_output_writes_where_the_slots_say_and_survives_a_master_failover() {
    if !have_redis() {
        return;
    }
    let dir = scratch("cluster");
    let mut nodes = cluster(&dir);
    let ports: Vec<u16> = nodes.iter().map(|(p, _)| *p).collect();
    let seeds: Vec<String> = ports[..3]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let fanout = Fanout::start(
        &[output(serde_json::json!({
            "type": "redis", "command": "zadd", "key": "events", "cluster": seeds}))],
        &FormatContext::for_device("cluster-1"),
    );
    for n in 0..100 {
        fanout.send(event(n));
    }
    let master = master_of(ports[0], "events");
    wait_for(Duration::from_secs(20), "the first 100 events", || {
        cli(master, &["ZCARD", "events"]) == "100"
    });
    // Replicated before the crash, then the master dies while events keep coming.
    // The replica may still be syncing on a loaded machine: WAIT until it acknowledges.
    wait_for(
        Duration::from_secs(30),
        "the replica to acknowledge",
        || cli(master, &["WAIT", "1", "1000"]) == "1",
    );
    let at = nodes.iter().position(|(p, _)| *p == master).unwrap();
    nodes.remove(at).1.crash();
    for n in 100..200 {
        fanout.send(event(n));
    }
    let stats = fanout.finish(Duration::from_secs(60)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (200, 0),
        "{stats:?}"
    );
    let alive = nodes[0].0;
    let promoted = master_of(alive, "events");
    assert_ne!(promoted, master, "a replica took over");
    assert_eq!(cli(promoted, &["ZCARD", "events"]), "200");
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sentinel_output_follows_the_failover_to_the_new_master() {
    if !have_redis() {
        return;
    }
    let dir = scratch("sentinel");
    let (master_port, master) = start(|_| dir.join("master"), |_| Vec::new());
    let replica_of = format!("127.0.0.1 {master_port}");
    let (replica_port, _replica) = start(
        |_| dir.join("replica"),
        |_| vec!["--replicaof".to_owned(), replica_of.clone()],
    );
    std::fs::create_dir_all(dir.join("sentinel")).unwrap();
    let conf = dir.join("sentinel").join("sentinel.conf");
    let (sentinel_port, _sentinel) = serve_on_own_port("redis-server", |port| {
        // A sentinel rewrites its file: a fresh one for each try.
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 3000\n"
            ),
        )
        .unwrap();
        vec![
            conf.to_string_lossy().into_owned(),
            "--sentinel".to_owned(),
            "--port".to_owned(),
            port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
        ]
    });
    wait_for(
        Duration::from_secs(20),
        "the sentinel to see the replica",
        || {
            cli(sentinel_port, &["SENTINEL", "REPLICAS", "mymaster"])
                .contains(&replica_port.to_string())
        },
    );
    let fanout = Fanout::start(
        &[output(serde_json::json!({
            "type": "redis", "command": "rpush", "key": "events",
            "sentinel": {"master": "mymaster", "nodes": [format!("127.0.0.1:{sentinel_port}")]}}))],
        &FormatContext::for_device("sentinel-1"),
    );
    for n in 0..50 {
        fanout.send(event(n));
    }
    wait_for(Duration::from_secs(20), "the first 50 events", || {
        cli(master_port, &["LLEN", "events"]) == "50"
    });
    // The replica may still be syncing on a loaded machine: WAIT until it acknowledges.
    wait_for(
        Duration::from_secs(30),
        "the replica to acknowledge",
        || cli(master_port, &["WAIT", "1", "1000"]) == "1",
    );
    master.crash();
    for n in 50..100 {
        fanout.send(event(n));
    }
    let stats = fanout.finish(Duration::from_secs(60)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (100, 0),
        "{stats:?}"
    );
    let named = cli(
        sentinel_port,
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
    );
    assert!(named.contains(&replica_port.to_string()), "{named}");
    assert_eq!(cli(replica_port, &["LLEN", "events"]), "100");
    let _ = std::fs::remove_dir_all(&dir);
}
