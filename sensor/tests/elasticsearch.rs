//! The Elasticsearch / OpenSearch output against a `_bulk` receiver started here (HTTPS on
//! loopback, a CA of its own): NDJSON framing (action and document pairs, daily index names,
//! data stream `create`), gzip, basic and API-key authentication, ECS documents, and the
//! per-item contract: 201 delivered, 429 resent alone, 400 dropped, counted and logged without
//! the document; whole-request 503 retried, 401 fatal.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod support;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use chrono::{TimeZone as _, Utc};
use sensor::{
    format::FormatContext,
    output::{
        Fanout, OutputConfig, Transport,
        probe::send_test,
        sink::elasticsearch::{ElasticsearchConfig, ElasticsearchOutput},
        sink::{Record, Sink as _, WriteError},
    },
};
use serde_json::{Value, json};
use support::{incident, login_event_at};
use tokio::io::AsyncWriteExt as _;

type Request = support::HttpRequest;

impl Request {
    /// The (action, document) pairs of the NDJSON body.
    fn pairs(&self) -> Vec<(Value, Value)> {
        let plain = self.plain_body();
        let text = std::str::from_utf8(&plain).unwrap();
        assert!(text.ends_with('\n'), "trailing newline: {text:?}");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() % 2, 0, "action/document pairs: {text}");
        lines
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect()
    }
}

/// Decides each item's status from its document and how often that document was seen before.
type Policy = dyn Fn(&Value, usize) -> u16 + Send + Sync;

struct Receiver {
    addr: SocketAddr,
    ca: std::path::PathBuf,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// A `_bulk` receiver: the first requests get the whole-request statuses of `script` (0: item
/// by item; 1: no answer, the connection closed after 3 s); the others, and those, are answered item by item as `policy` says, in
/// Elasticsearch's answer format.
async fn receiver(script: &[u16], policy: Box<Policy>) -> Receiver {
    let dir = std::env::temp_dir().join(format!("sensor-es-{}", uuid::Uuid::new_v4()));
    let pki = support::Pki::new(&dir);
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(script.to_vec()));
    let policy: Arc<Policy> = Arc::from(policy);
    let seen_docs: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = Arc::clone(&requests);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen, script, policy, seen_docs) = (
                acceptor.clone(),
                Arc::clone(&seen),
                Arc::clone(&script),
                Arc::clone(&policy),
                Arc::clone(&seen_docs),
            );
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                while let Some(req) = support::read_http_request(&mut s).await {
                    seen.lock().unwrap().push(req.clone());
                    let whole = {
                        let mut script = script.lock().unwrap();
                        (!script.is_empty())
                            .then(|| script.remove(0))
                            .filter(|s| *s != 0)
                    };
                    if whole == Some(1) {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        return;
                    }
                    let (status, body) = match whole {
                        Some(status) => (status, json!({"error": "scripted"})),
                        None => {
                            let mut errors = false;
                            let items: Vec<Value> = req
                                .pairs()
                                .iter()
                                .map(|(action, doc)| {
                                    let key = doc.to_string();
                                    let times = {
                                        let mut docs = seen_docs.lock().unwrap();
                                        let n = docs.entry(key).or_insert(0);
                                        *n += 1;
                                        *n - 1
                                    };
                                    let status = policy(doc, times);
                                    let (op, meta) =
                                        action.as_object().unwrap().iter().next().unwrap();
                                    let mut item = json!({"_index": meta["_index"], "status": status});
                                    if status >= 300 {
                                        errors = true;
                                        item["error"] = json!({
                                            "type": if status == 429 { "es_rejected_execution_exception" } else { "mapper_parsing_exception" },
                                            "reason": format!("item status {status}"),
                                        });
                                    }
                                    let mut wrapped = serde_json::Map::new();
                                    wrapped.insert(op.clone(), item);
                                    Value::Object(wrapped)
                                })
                                .collect();
                            (200, json!({"took": 1, "errors": errors, "items": items}))
                        }
                    };
                    let body = body.to_string();
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Receiver {
        addr,
        ca: pki.ca,
        requests,
    }
}

fn output(transport: Value) -> OutputConfig {
    serde_json::from_value(json!({"name": "es", "transport": transport, "receive": "both"}))
        .unwrap()
}

fn ctx() -> FormatContext {
    FormatContext::for_device("sensor-es")
}

/// Every (action, document) pair the receiver got, in order.
fn all_pairs(rx: &Receiver) -> Vec<(Value, Value)> {
    rx.requests().iter().flat_map(Request::pairs).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_ndjson_has_daily_indices_ecs_documents_gzip_and_basic_auth() {
    let rx = receiver(&[], Box::new(|_, _| 201)).await;
    let out = output(json!({
        "type": "elasticsearch", "url": format!("{}/", rx.url()),
        "username": "sensor", "password": "ES-SECRET-PASSWORD", "ca_file": rx.ca
    }));
    let fanout = Fanout::start(&[out], &ctx());
    let day1 = Utc.with_ymd_and_hms(2026, 12, 1, 23, 59, 59).unwrap();
    let day2 = Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 1).unwrap();
    fanout.send(login_event_at("root", day1));
    fanout.send(login_event_at("admin", day2));
    fanout.send(incident());
    let stats = fanout.finish(Duration::from_secs(20)).await;
    assert_eq!(
        (
            stats[0].counts.sent,
            stats[0].counts.dropped,
            stats[0].retried
        ),
        (3, 0, 0),
        "{stats:?}"
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("sensor:ES-SECRET-PASSWORD")
    );
    for r in rx.requests() {
        assert_eq!(r.path, "/_bulk");
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("authorization"), Some(basic.as_str()));
    }
    let pairs = all_pairs(&rx);
    assert_eq!(pairs.len(), 3);
    assert_eq!(
        pairs[0].0,
        json!({"index": {"_index": "trapster-2026.12.01"}})
    );
    assert_eq!(
        pairs[1].0,
        json!({"index": {"_index": "trapster-2026.12.02"}})
    );
    // The incident goes to the index of its own time (today, or yesterday across midnight).
    let incident_index = pairs[2].0["index"]["_index"].as_str().unwrap();
    let days = [Utc::now(), Utc::now() - chrono::Duration::days(1)]
        .map(|d| format!("trapster-{}", d.format("%Y.%m.%d")));
    assert!(days.iter().any(|d| d == incident_index), "{incident_index}");
    let doc = &pairs[0].1;
    assert_eq!(doc["@timestamp"], "2026-12-01T23:59:59Z");
    assert_eq!(doc["event"]["action"], "login");
    assert_eq!(doc["event"]["dataset"], "trapster.ssh");
    assert_eq!(doc["source"]["ip"], "198.51.100.7");
    assert_eq!(doc["source"]["port"], 50_000);
    assert_eq!(doc["destination"]["port"], 22);
    assert_eq!(doc["user"]["name"], "root");
    assert_eq!(doc["host"]["name"], "sensor-es");
    assert_eq!(pairs[1].1["user"]["name"], "admin");
    // The incident: the JSON envelope.
    assert_eq!(pairs[2].1["action"], "incident_created");
}

/// Mixed item results, all through the fan-out and its driver: the 429 items are resent
/// (alone), the 400 item is dropped, counted and logged by type and reason only.
#[test]
fn item_429_is_resent_alone_and_item_400_is_dropped_and_counted() {
    let logs = support::LogCapture::install();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (rx, stats) = runtime.block_on(async {
        let policy = |doc: &Value, times: usize| match doc["user"]["name"].as_str() {
            Some("busy-1" | "busy-3") if times == 0 => 429,
            Some("REFUSED-DOCUMENT-MARKER") => 400,
            _ => 201,
        };
        let rx = receiver(&[], Box::new(policy)).await;
        let out = output(json!({
            "type": "opensearch", "url": rx.url(), "data_stream": "logs-trapster-default",
            "api_key": "ES-SECRET-API-KEY", "gzip": false, "ca_file": rx.ca
        }));
        let fanout = Fanout::start(&[out], &ctx());
        for user in [
            "ok-0",
            "busy-1",
            "REFUSED-DOCUMENT-MARKER",
            "busy-3",
            "ok-4",
        ] {
            fanout.send(login_event_at(user, Utc::now()));
        }
        let stats = fanout.finish(Duration::from_secs(20)).await;
        (rx, stats)
    });
    // Four documents stored, one refused; then the drop is reported once, through the output
    // itself, by a `sensor.degraded` event (the driver's outage report): five sent.
    assert_eq!(
        (
            stats[0].counts.received,
            stats[0].counts.sent,
            stats[0].counts.dropped
        ),
        (6, 5, 1),
        "{stats:?}"
    );
    assert!(stats[0].retried >= 1, "{stats:?}");
    let requests = rx.requests();
    for r in &requests {
        assert_eq!(r.path, "/_bulk");
        assert_eq!(r.header("authorization"), Some("ApiKey ES-SECRET-API-KEY"));
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    }
    let mut pairs = all_pairs(&rx);
    for (action, _) in &pairs {
        assert_eq!(
            action,
            &json!({"create": {"_index": "logs-trapster-default"}})
        );
    }
    let (reports, logins): (Vec<_>, Vec<_>) = pairs
        .drain(..)
        .partition(|(_, doc)| doc["event"]["dataset"] == "trapster.sensor");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].1["event"]["action"], "degraded");
    let report = &reports[0].1["trapster"]["sensor"];
    assert_eq!(report["dropped"], 1);
    assert_eq!(report["reason"], "receiver refused");
    let pairs = logins;
    let mut count: HashMap<String, usize> = HashMap::new();
    for (_, doc) in &pairs {
        *count
            .entry(doc["user"]["name"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let expected: HashMap<String, usize> = [
        ("ok-0", 1),
        ("busy-1", 2),
        ("REFUSED-DOCUMENT-MARKER", 1),
        ("busy-3", 2),
        ("ok-4", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(
        count, expected,
        "each document sent once, the 429 ones twice"
    );
    // A request that resends a document carries only resent documents, all of them 429 ones.
    let mut seen: Vec<String> = Vec::new();
    for r in &requests {
        let users: Vec<String> = r
            .pairs()
            .iter()
            .filter_map(|(_, d)| d["user"]["name"].as_str().map(str::to_owned))
            .collect();
        if users.iter().any(|u| seen.contains(u)) {
            assert!(
                users
                    .iter()
                    .all(|u| seen.contains(u) && u.starts_with("busy-")),
                "{users:?}"
            );
        }
        seen.extend(users);
    }
    let text = logs.text();
    assert!(text.contains("mapper_parsing_exception"), "{text}");
    assert!(text.contains("item status 400"), "{text}");
    for secret in [
        "REFUSED-DOCUMENT-MARKER",
        "ES-SECRET-API-KEY",
        "ES-SECRET-PASSWORD",
    ] {
        assert!(!text.contains(secret), "{secret} in logs:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_timing_out_is_retried() {
    let rx = receiver(&[1], Box::new(|_, _| 201)).await;
    let out = output(json!({
        "type": "elasticsearch", "url": rx.url(), "timeout_secs": 1, "ca_file": rx.ca
    }));
    let fanout = Fanout::start(&[out], &ctx());
    fanout.send(login_event_at("root", Utc::now()));
    let stats = fanout.finish(Duration::from_secs(20)).await;
    assert_eq!(
        (
            stats[0].counts.sent,
            stats[0].counts.dropped,
            stats[0].retried
        ),
        (1, 0, 1)
    );
    let requests = rx.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].plain_body(), requests[1].plain_body());
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_request_503_is_retried_and_401_is_fatal() {
    let rx = receiver(&[503], Box::new(|_, _| 201)).await;
    let out = output(json!({"type": "elasticsearch", "url": rx.url(), "ca_file": rx.ca}));
    let fanout = Fanout::start(&[out], &ctx());
    fanout.send(login_event_at("root", Utc::now()));
    let stats = fanout.finish(Duration::from_secs(20)).await;
    assert_eq!(
        (
            stats[0].counts.sent,
            stats[0].counts.dropped,
            stats[0].retried
        ),
        (1, 0, 1)
    );
    assert_eq!(rx.requests().len(), 2);
    assert_eq!(rx.requests()[0].plain_body(), rx.requests()[1].plain_body());
    assert_eq!(rx.requests()[0].header("authorization"), None);

    let rx = receiver(&[401], Box::new(|_, _| 201)).await;
    let out = output(json!({
        "type": "elasticsearch", "url": rx.url(), "api_key": "WRONG", "ca_file": rx.ca
    }));
    let fanout = Fanout::start(&[out], &ctx());
    fanout.send(login_event_at("root", Utc::now()));
    let stats = fanout.finish(Duration::from_secs(10)).await;
    assert_eq!(
        (
            stats[0].counts.sent,
            stats[0].counts.dropped,
            stats[0].retried
        ),
        (0, 1, 0)
    );
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn send_test_stores_the_test_incident_and_reports_refusals() {
    let rx = receiver(&[], Box::new(|_, _| 201)).await;
    let out = output(json!({
        "type": "elasticsearch", "url": rx.url(), "index": "honey-%Y", "ca_file": rx.ca
    }));
    let answer = send_test(&out, "es", &ctx()).await.unwrap();
    let index = format!("honey-{}", Utc::now().format("%Y"));
    assert!(
        answer.contains(&format!("stored in index {index}")),
        "{answer}"
    );
    let pairs = all_pairs(&rx);
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].0, json!({"index": {"_index": index}}));
    assert_eq!(pairs[0].1["action"], "incident_test");

    let rx = receiver(&[], Box::new(|_, _| 400)).await;
    let out = output(json!({"type": "elasticsearch", "url": rx.url(), "ca_file": rx.ca}));
    let refused = send_test(&out, "es", &ctx()).await.unwrap_err();
    assert!(
        refused.contains("400 mapper_parsing_exception: item status 400"),
        "{refused}"
    );
}

#[test]
fn configuration_errors_name_the_field() {
    let parse = |transport: Value| {
        serde_json::from_value::<OutputConfig>(json!({ "transport": transport }))
            .map_err(|e| e.to_string())
    };
    let ok = parse(json!({"type": "opensearch", "url": "https://os:9200"})).unwrap();
    assert!(matches!(ok.transport, Transport::Elasticsearch(_)));
    assert_eq!(ok.transport.kind(), "elasticsearch");
    for (transport, field) in [
        (
            json!({"type": "elasticsearch", "url": "u", "index": "a", "data_stream": "b"}),
            "`data_stream`",
        ),
        (
            json!({"type": "elasticsearch", "url": "u", "index": "x-%Q"}),
            "`index`",
        ),
        (
            json!({"type": "elasticsearch", "url": "u", "username": "a"}),
            "`password`",
        ),
        (
            json!({"type": "elasticsearch", "url": "u", "api_key": "k", "password": "p"}),
            "`api_key`",
        ),
        (
            json!({"type": "elasticsearch", "url": "u", "max_batch": 0}),
            "`max_batch`",
        ),
        (
            json!({"type": "elasticsearch", "url": "u", "shards": 3}),
            "shards",
        ),
    ] {
        let err = parse(transport.clone()).unwrap_err();
        assert!(err.contains(field), "{transport}: {err}");
    }
}

/// The users of the documents of each request.
fn users_per_request(rx: &Receiver) -> Vec<Vec<String>> {
    rx.requests()
        .iter()
        .map(|r| {
            r.pairs()
                .iter()
                .map(|(_, d)| d["user"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// The sink alone, attempt by attempt, as the driver calls it: between attempts of one batch
/// it keeps the unsettled records, and its `Ok` counts every refusal of every attempt.
#[tokio::test(flavor = "multi_thread")]
async fn the_sink_keeps_the_unsettled_records_between_attempts_of_a_batch() {
    let policy = |doc: &Value, times: usize| match doc["user"]["name"].as_str() {
        Some(u) if u.starts_with("busy") && times == 0 => 429,
        Some(u) if u.starts_with("bad") => 400,
        _ => 201,
    };
    // Requests 1-3 item by item, then a 401.
    let rx = receiver(&[0, 0, 0, 401], Box::new(policy)).await;
    let cfg: ElasticsearchConfig = serde_json::from_value(json!({
        "url": rx.url(), "ca_file": rx.ca, "max_batch": 2
    }))
    .unwrap();
    let mut sink = ElasticsearchOutput::new(cfg, "es");
    let docs: Vec<Vec<u8>> = ["ok-a", "busy-b", "bad-c", "ok-d", "busy-e"]
        .iter()
        .map(|u| json!({"user": {"name": u}}).to_string().into_bytes())
        .collect();
    let records = |range: std::ops::Range<usize>| -> Vec<Record<'_>> {
        docs[range]
            .iter()
            .map(|d| Record {
                bytes: d,
                time: 1_796_169_599.0,
            })
            .collect()
    };
    // Batch 1 (requests of at most 2): busy-b is answered 429; the attempt stops there and
    // holds bad-c back, the receiver being busy.
    let batch = records(0..3);
    let first = sink.write(&batch).await;
    assert!(
        matches!(&first, Err(WriteError::Retry { reason, .. }) if reason.contains("1 documents answered 429")),
        "{first:?}"
    );
    // The retry sends busy-b and bad-c, never ok-a again; bad-c's 400 is the one refusal.
    assert_eq!(sink.write(&batch).await.unwrap(), 1);
    assert_eq!(
        users_per_request(&rx),
        vec![vec!["ok-a", "busy-b"], vec!["busy-b", "bad-c"]]
    );
    // Batch 2: ok-d stored, busy-e 429; then the credentials are refused (401): ok-d stays
    // delivered, busy-e is returned as refused.
    let batch = records(3..5);
    assert!(sink.write(&batch).await.is_err());
    assert_eq!(sink.write(&batch).await.unwrap(), 1);
    assert_eq!(users_per_request(&rx).len(), 4);
    assert_eq!(users_per_request(&rx)[2], vec!["ok-d", "busy-e"]);
    assert_eq!(users_per_request(&rx)[3], vec!["busy-e"]);
    // Nothing delivered yet: a 401 is fatal.
    let rx = receiver(&[401], Box::new(policy)).await;
    let cfg: ElasticsearchConfig =
        serde_json::from_value(json!({"url": rx.url(), "ca_file": rx.ca})).unwrap();
    let mut sink = ElasticsearchOutput::new(cfg, "es");
    let batch = records(0..1);
    assert!(matches!(
        sink.write(&batch).await,
        Err(WriteError::Fatal(_))
    ));
}

/// With a disk spool the spooled driver retries from the spool: the same records come back,
/// and again only the 429 ones are resent.
#[tokio::test(flavor = "multi_thread")]
async fn spooled_output_also_resends_only_the_429_items() {
    let policy = |doc: &Value, times: usize| match doc["user"]["name"].as_str() {
        Some("busy-1") if times == 0 => 429,
        Some("bad-2") => 400,
        _ => 201,
    };
    let rx = receiver(&[], Box::new(policy)).await;
    let dir = std::env::temp_dir().join(format!("sensor-es-spool-{}", uuid::Uuid::new_v4()));
    let out: OutputConfig = serde_json::from_value(json!({
        "name": "es", "receive": "both",
        "spool": {"dir": dir},
        "transport": {"type": "elasticsearch", "url": rx.url(), "ca_file": rx.ca}
    }))
    .unwrap();
    let fanout = Fanout::start(&[out], &ctx());
    for user in ["ok-0", "busy-1", "bad-2", "ok-3"] {
        fanout.send(login_event_at(user, Utc::now()));
    }
    let stats = fanout.finish(Duration::from_secs(20)).await;
    std::fs::remove_dir_all(&dir).ok();
    // Three stored, one refused, plus the one `sensor.degraded` report of the refusal.
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (4, 1),
        "{stats:?}"
    );
    let mut count: HashMap<String, usize> = HashMap::new();
    for (_, doc) in all_pairs(&rx) {
        let key = doc["user"]["name"]
            .as_str()
            .or_else(|| doc["event"]["dataset"].as_str())
            .unwrap()
            .to_owned();
        *count.entry(key).or_default() += 1;
    }
    let expected: HashMap<String, usize> = [
        ("ok-0", 1),
        ("busy-1", 2),
        ("bad-2", 1),
        ("ok-3", 1),
        ("trapster.sensor", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(count, expected);
}
