//! The `kafka` output against librdkafka's mock cluster (`rdkafka::mocking::MockCluster`, three
//! brokers on loopback, started here), read back with Debian's `kcat`: every event lands once,
//! on the templated topic, keyed by its source address; produce errors injected through the
//! mock's error API are retried and counted; a full outage goes to the spool and is delivered
//! once the brokers are back. Without `kcat` the tests skip, except under CI (`CI` set), where
//! they fail.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod support;

use std::{collections::BTreeMap, process::Command, time::Duration};

use rdkafka::{
    mocking::MockCluster,
    producer::DefaultProducerContext,
    types::{RDKafkaApiKey, RDKafkaRespErr},
};
use sensor::{
    event::{Event, Service},
    format::FormatContext,
    output::{Fanout, OutputConfig},
};

fn have_kcat() -> bool {
    let found = Command::new("kcat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("CI").is_none(),
        "kcat is required in CI"
    );
    if !found {
        eprintln!("skipped: kcat not installed (apt-get install kcat)");
    }
    found
}

/// A mock cluster of three brokers with the two topics the events go to.
fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(3).unwrap();
    for topic in ["trapster.ssh", "trapster.ftp"] {
        cluster.create_topic(topic, 4, 3).unwrap();
    }
    cluster
}

/// Event `n`: SSH for even, FTP for odd numbers, from one of five source addresses.
fn event(n: usize) -> Event {
    let mut event = support::login_event(&format!("user{n}"));
    if n % 2 == 1 {
        event.service = Service::Ftp;
        event.session.dst_port = 21;
    }
    event.session.src_ip = format!("198.51.100.{}", n % 5 + 1).parse().unwrap();
    event
}

fn output(transport: serde_json::Value, spool: Option<&std::path::Path>) -> OutputConfig {
    let mut json =
        serde_json::json!({"name": "kafka", "format": "trapster", "transport": transport});
    if let Some(dir) = spool {
        json["spool"] = serde_json::json!({"dir": dir, "max_bytes": 16 << 20});
    }
    serde_json::from_value(json).unwrap()
}

/// One record as `kcat -J` prints it.
#[derive(Debug)]
struct Consumed {
    partition: i64,
    key: String,
    envelope: serde_json::Value,
}

/// Everything in `topic`, read from the beginning to the end by `kcat`.
fn consume(bootstrap: &str, topic: &str) -> Vec<Consumed> {
    let out = Command::new("timeout")
        .args(["20", "kcat", "-C", "-b", bootstrap, "-t", topic])
        .args(["-o", "beginning", "-e", "-q", "-J"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(record["topic"], topic);
            Consumed {
                partition: record["partition"].as_i64().unwrap(),
                key: record["key"].as_str().unwrap_or_default().to_owned(),
                envelope: serde_json::from_str(record["payload"].as_str().unwrap()).unwrap(),
            }
        })
        .collect()
}

/// Asserts that events `0..count` are each in their topic once, keyed by their source
/// address, one key staying in one partition.
fn assert_each_once(bootstrap: &str, count: usize) {
    let mut users = BTreeMap::new();
    for (topic, channel) in [("trapster.ssh", "ssh"), ("trapster.ftp", "ftp")] {
        let mut partitions: BTreeMap<String, i64> = BTreeMap::new();
        for record in consume(bootstrap, topic) {
            assert_eq!(record.envelope["channel"], channel);
            assert_eq!(record.key, record.envelope["src_ip"].as_str().unwrap());
            let partition = *partitions
                .entry(record.key.clone())
                .or_insert(record.partition);
            assert_eq!(partition, record.partition, "one key, one partition");
            let user = record.envelope["extra"]["username"]
                .as_str()
                .unwrap()
                .to_owned();
            *users.entry(user).or_insert(0) += 1;
        }
    }
    let expected: BTreeMap<String, i32> = (0..count).map(|n| (format!("user{n}"), 1)).collect();
    assert_eq!(users, expected, "every event exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_lands_once_on_its_topic_keyed_by_source() {
    if !have_kcat() {
        return;
    }
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    // librdkafka's idempotent producer absorbs these itself (within `retries`).
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 2],
    );
    let fanout = Fanout::start(
        &[output(
            serde_json::json!({"type": "kafka", "brokers": bootstrap, "compression": "lz4"}),
            None,
        )],
        &FormatContext::for_device("kafka-1"),
    );
    for n in 0..60 {
        fanout.send(event(n));
    }
    let stats = fanout.finish(Duration::from_secs(20)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (60, 0),
        "{stats:?}"
    );
    assert_each_once(&bootstrap, 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_errors_are_retried_and_counted() {
    if !have_kcat() {
        return;
    }
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    // librdkafka does not retry (retries: 0), so the output's own retry must.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 4],
    );
    let fanout = Fanout::start(
        &[output(
            serde_json::json!({"type": "kafka", "brokers": bootstrap,
                "idempotent": false, "retries": 0, "timeout_secs": 5}),
            None,
        )],
        &FormatContext::for_device("kafka-1"),
    );
    for n in 0..20 {
        fanout.send(event(n));
    }
    let stats = fanout.finish(Duration::from_secs(30)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (20, 0),
        "{stats:?}"
    );
    assert!(stats[0].retried >= 1, "{stats:?}");
    assert_each_once(&bootstrap, 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_outage_goes_to_the_spool_and_is_delivered_after() {
    if !have_kcat() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sensor-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    let fanout = Fanout::start(
        &[output(
            serde_json::json!({"type": "kafka", "brokers": bootstrap, "timeout_secs": 1}),
            Some(&dir),
        )],
        &FormatContext::for_device("kafka-1"),
    );
    for n in 0..20 {
        fanout.send(event(n));
    }
    assert!(
        support::wait_until(Duration::from_secs(20), || fanout.stats()[0].counts.sent
            == 20)
        .await,
        "{:?}",
        fanout.stats()
    );
    cluster.broker_down(-1).unwrap();
    for n in 20..40 {
        fanout.send(event(n));
    }
    assert!(
        support::wait_until(Duration::from_secs(20), || {
            let s = &fanout.stats()[0];
            s.counts.spooled >= 40 && s.retried >= 1 && s.counts.sent == 20
        })
        .await,
        "{:?}",
        fanout.stats()
    );
    cluster.broker_up(-1).unwrap();
    assert!(
        support::wait_until(Duration::from_secs(30), || fanout.stats()[0].counts.sent
            == 40)
        .await,
        "{:?}",
        fanout.stats()
    );
    let stats = fanout.finish(Duration::from_secs(10)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (40, 0),
        "{stats:?}"
    );
    assert_each_once(&bootstrap, 40);
    let _ = std::fs::remove_dir_all(&dir);
}
