//! The `api` output against a local HTTP receiver started here on loopback, which can answer
//! 200, 429, 503 or 400 and can start late: batching, gzip, headers, retries, refusals, and
//! no secret (URL key, header token) in anything logged, at trace level.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod support;

use std::{
    collections::VecDeque,
    io::Read as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{TimeZone as _, Utc};
use sensor::{
    event::{Action, Event, Service, SessionIdentity},
    format::{Format, FormatContext},
    output::{Fanout, OutputConfig, Transport},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A receiver answering from a script of statuses (then 200).
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn serve(&self, listener: TcpListener) {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // Read one request head and body (keep-alive).
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let headers: Vec<(String, String)> = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 65536];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let mut body = buf[head_end..head_end + len].to_vec();
                    buf.drain(..head_end + len);
                    let gzip = headers
                        .iter()
                        .any(|(k, v)| k.eq_ignore_ascii_case("content-encoding") && v == "gzip");
                    if gzip {
                        let mut plain = Vec::new();
                        flate2::read::GzDecoder::new(&body[..])
                            .read_to_end(&mut plain)
                            .unwrap();
                        body = plain;
                    }
                    let status = me.script.lock().unwrap().pop_front().unwrap_or(200);
                    me.requests.lock().unwrap().push(Request { headers, body });
                    let extra = if status == 429 {
                        "Retry-After: 1\r\n"
                    } else {
                        ""
                    };
                    let reply = format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\n\r\n");
                    if conn.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn start_receiver(script: &[u16]) -> (Receiver, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = Receiver::default();
    receiver.script.lock().unwrap().extend(script);
    let r = receiver.clone();
    tokio::spawn(async move { r.serve(listener).await });
    (receiver, addr)
}

fn api(url: &str, extra: serde_json::Value) -> OutputConfig {
    let mut transport = serde_json::json!({"type": "api", "url": url,
        "headers": {"Authorization": "Bearer HDR-SECRET-TOKEN"}});
    for (k, v) in extra.as_object().unwrap() {
        transport[k] = v.clone();
    }
    let transport: Transport = serde_json::from_value(transport).unwrap();
    OutputConfig::new(Format::Trapster, transport)
}

fn event(n: u16) -> Event {
    Event {
        id: uuid::Uuid::from_u128(u128::from(n)),
        timestamp: Utc.with_ymd_and_hms(2026, 2, 13, 13, 0, 9).unwrap(),
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

fn ids(requests: &[Request]) -> Vec<u128> {
    requests
        .iter()
        .flat_map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| {
                // NDJSON
                serde_json::Value::Array(
                    r.body
                        .split(|b| *b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(|l| serde_json::from_slice(l).unwrap())
                        .collect(),
                )
            });
            match v {
                serde_json::Value::Array(items) => items,
                one => vec![one],
            }
        })
        .map(|e| {
            uuid::Uuid::parse_str(e["id"].as_str().unwrap())
                .unwrap()
                .as_u128()
        })
        .collect()
}

async fn deliver(
    config: OutputConfig,
    events: u16,
    grace: Duration,
) -> Vec<sensor::output::OutputStats> {
    let fanout = Fanout::start(&[config], &FormatContext::for_device("s1"));
    for n in 1..=events {
        fanout.send(event(n));
    }
    fanout.finish(grace).await
}

#[tokio::test]
async fn one_event_per_request_with_headers() {
    let (rx, addr) = start_receiver(&[]).await;
    let stats = deliver(
        api(&format!("http://{addr}/events"), serde_json::json!({})),
        5,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (5, 0),
        "{stats:?}"
    );
    let requests = rx.requests();
    assert_eq!(requests.len(), 5);
    assert_eq!(ids(&requests), (1..=5).collect::<Vec<_>>());
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer HDR-SECRET-TOKEN"))
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("content-type") == Some("application/json"))
    );
    let first: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(first["logtype"], "portscan.query");
    assert_eq!(first["action"], "event_new");
}

#[tokio::test]
async fn gzip_arrays_and_ndjson_batches_keep_every_event_in_order() {
    for mode in ["array", "ndjson"] {
        let (rx, addr) = start_receiver(&[]).await;
        let cfg = api(
            &format!("http://{addr}/bulk"),
            serde_json::json!({"batch": mode, "max_batch": 8, "gzip": true}),
        );
        let stats = deliver(cfg, 20, Duration::from_secs(10)).await;
        assert_eq!(stats[0].counts.sent, 20, "{mode}: {stats:?}");
        let requests = rx.requests();
        assert!(requests.len() >= 3, "{mode}: at most 8 events per request");
        assert!(
            requests
                .iter()
                .all(|r| r.header("content-encoding") == Some("gzip"))
        );
        assert_eq!(ids(&requests), (1..=20).collect::<Vec<_>>(), "{mode}");
    }
}

#[tokio::test]
async fn retries_on_503_and_honours_429_retry_after() {
    let (rx, addr) = start_receiver(&[503, 429]).await;
    let started = Instant::now();
    let stats = deliver(
        api(&format!("http://{addr}/e"), serde_json::json!({})),
        3,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (3, 0),
        "{stats:?}"
    );
    assert_eq!(stats[0].retried, 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(ids(&rx.requests()), vec![1, 1, 1, 2, 3]);
}

#[tokio::test]
async fn other_4xx_is_not_retried_and_is_counted() {
    let (rx, addr) = start_receiver(&[400, 400]).await;
    let stats = deliver(
        api(&format!("http://{addr}/e"), serde_json::json!({})),
        4,
        Duration::from_secs(10),
    )
    .await;
    // One event per request: event 3 arrives, then one report of the two refused, then 4.
    assert_eq!(
        (
            stats[0].counts.received,
            stats[0].counts.sent,
            stats[0].counts.dropped,
            stats[0].retried
        ),
        (5, 3, 2, 0),
        "{stats:?}"
    );
    let requests = rx.requests();
    assert_eq!(requests.len(), 5, "each refused event was sent once");
    let report: serde_json::Value = serde_json::from_slice(&requests[3].body).unwrap();
    assert_eq!(report["logtype"], "sensor.degraded", "{report}");
    assert_eq!(report["extra"]["dropped"], 2, "{report}");
    assert_eq!(report["extra"]["reason"], "receiver refused", "{report}");
}

#[tokio::test]
async fn a_receiver_that_starts_late_gets_everything_in_order() {
    let hold = support::PortHold::new();
    let cfg = api(
        &format!("http://127.0.0.1:{}/e", hold.port()),
        serde_json::json!({"batch": "ndjson"}),
    );
    let fanout = Fanout::start(&[cfg], &FormatContext::for_device("s1"));
    for n in 1..=30 {
        fanout.send(event(n));
    }
    // The receiver comes up once a delivery has failed, not after a guessed pause.
    assert!(
        support::wait_until(Duration::from_secs(30), || fanout.stats()[0].retried > 0).await,
        "a refused delivery is retried: {:?}",
        fanout.stats()
    );
    let rx = listen(hold).await;
    let stats = fanout.finish(Duration::from_secs(60)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (30, 0),
        "{stats:?}"
    );
    assert_eq!(ids(&rx.requests()), (1..=30).collect::<Vec<_>>());
}

/// Logs at trace level, from this crate and from the HTTP stack, never show the URL's key or
/// the header token, even while deliveries fail.
#[test]
fn no_secret_in_logs_at_trace_level() {
    let logs = support::LogCapture::install();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_rx, addr) = start_receiver(&[503, 503, 400]).await;
        let url = format!("http://{addr}/e?key=URL-SECRET-KEY");
        deliver(api(&url, serde_json::json!({})), 1, Duration::from_secs(10)).await;
        // And a receiver that is not there at all.
        deliver(
            api(
                "http://127.0.0.1:9/e?key=URL-SECRET-KEY",
                serde_json::json!({}),
            ),
            1,
            Duration::from_secs(2),
        )
        .await;
    });
    let text = logs.text();
    assert!(
        text.contains("retrying"),
        "the failures were logged: {text}"
    );
    assert!(!text.contains("URL-SECRET-KEY"), "URL key leaked:\n{text}");
    assert!(
        !text.contains("HDR-SECRET-TOKEN"),
        "header token leaked:\n{text}"
    );
}

fn spooled(url: &str, dir: &std::path::Path, max_bytes: u64) -> OutputConfig {
    let mut cfg = api(url, serde_json::json!({}));
    cfg.spool = Some(
        serde_json::from_value(serde_json::json!({"dir": dir, "max_bytes": max_bytes})).unwrap(),
    );
    cfg
}

fn spool_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sensor-api-spool-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A port nothing listens on (yet), held so that no other test is handed it.
fn closed_port() -> support::PortHold {
    support::PortHold::new()
}

async fn listen(port: support::PortHold) -> Receiver {
    let listener = port.listen();
    let rx = Receiver::default();
    let r = rx.clone();
    tokio::spawn(async move { r.serve(listener).await });
    rx
}

#[tokio::test]
async fn spooled_events_survive_a_restart_and_arrive_in_order_once() {
    let dir = spool_dir("restart");
    let port = closed_port();
    let url = format!("http://127.0.0.1:{}/e", port.port());
    // First run: the receiver is down the whole time.
    let first = Fanout::start(
        &[spooled(&url, &dir, 1 << 20)],
        &FormatContext::for_device("s1"),
    );
    for n in 1..=20 {
        first.send(event(n));
    }
    let stats = first.finish(Duration::from_secs(1)).await;
    assert_eq!(
        (
            stats[0].counts.spooled,
            stats[0].counts.sent,
            stats[0].counts.dropped
        ),
        (20, 0, 0),
        "{stats:?}"
    );
    // Second run: the receiver is back; old events first, then new ones.
    let rx = listen(port).await;
    let second = Fanout::start(
        &[spooled(&url, &dir, 1 << 20)],
        &FormatContext::for_device("s1"),
    );
    for n in 21..=25 {
        second.send(event(n));
    }
    let stats = second.finish(Duration::from_secs(30)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (25, 0),
        "{stats:?}"
    );
    assert_eq!(ids(&rx.requests()), (1..=25).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_full_spool_drops_and_counts_exactly() {
    let dir = spool_dir("full");
    let port = closed_port();
    let url = format!("http://127.0.0.1:{}/e", port.port());
    let first = Fanout::start(
        &[spooled(&url, &dir, 8_000)],
        &FormatContext::for_device("s1"),
    );
    for n in 1..=100 {
        first.send(event(n));
    }
    let a = first.finish(Duration::from_secs(1)).await;
    assert!(a[0].counts.dropped > 0 && a[0].counts.spooled > 0, "{a:?}");
    assert_eq!(a[0].counts.spooled + a[0].counts.dropped, 100, "{a:?}");
    let rx = listen(port).await;
    let second = Fanout::start(
        &[spooled(&url, &dir, 8_000)],
        &FormatContext::for_device("s1"),
    );
    let b = second.finish(Duration::from_secs(30)).await;
    let got = ids(&rx.requests());
    assert_eq!(got.len() as u64, a[0].counts.spooled, "{b:?}");
    assert_eq!(
        got,
        (1..=u128::from(a[0].counts.spooled as u16)).collect::<Vec<_>>(),
        "the oldest were kept, in order"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The receiver is away for more than a minute while events keep coming; when it is back,
/// every event arrives, in order, once.
#[tokio::test]
async fn a_receiver_down_for_a_minute_loses_nothing() {
    let dir = spool_dir("minute");
    let port = closed_port();
    let url = format!("http://127.0.0.1:{}/e", port.port());
    let fanout = Fanout::start(
        &[spooled(&url, &dir, 1 << 20)],
        &FormatContext::for_device("s1"),
    );
    let started = Instant::now();
    let mut n = 0u16;
    while started.elapsed() < Duration::from_secs(62) {
        n += 1;
        fanout.send(event(n));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let rx = listen(port).await;
    let stats = fanout.finish(Duration::from_secs(60)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (u64::from(n), 0),
        "{stats:?}"
    );
    assert!(stats[0].retried > 0);
    assert_eq!(ids(&rx.requests()), (1..=u128::from(n)).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn drops_are_reported_as_a_degraded_event_once_the_output_is_back() {
    let dir = spool_dir("degraded");
    let port = closed_port();
    let url = format!("http://127.0.0.1:{}/e", port.port());
    let fanout = Fanout::start(
        &[spooled(&url, &dir, 8_000)],
        &FormatContext::for_device("s1"),
    );
    for n in 1..=100 {
        fanout.send(event(n));
    }
    // The receiver comes back once the spool is full and dropping, however long that takes.
    assert!(
        support::wait_until(Duration::from_secs(30), || fanout.stats()[0].counts.dropped
            > 0)
        .await,
        "the full spool drops: {:?}",
        fanout.stats()
    );
    let rx = listen(port).await;
    let stats = fanout.finish(Duration::from_secs(40)).await;
    let s = &stats[0];
    assert!(s.counts.dropped > 0, "{s:?}");
    let requests = rx.requests();
    let bodies: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let last = bodies.last().unwrap();
    assert_eq!(last["logtype"], "sensor.degraded", "{last}");
    assert_eq!(last["extra"]["dropped"], s.counts.dropped, "{last}");
    assert_eq!(last["extra"]["reason"], "spool full");
    assert_eq!(
        bodies.len() as u64 + s.counts.dropped,
        101,
        "every event delivered or counted, plus the report"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A receiver that accepts connections and never reads from them: a blackholed collector.
async fn blackhole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    (addr, task)
}

fn with_policy(mut cfg: OutputConfig, when_full: &str, queue_size: usize) -> OutputConfig {
    cfg.when_full = serde_json::from_value(serde_json::json!(when_full)).unwrap();
    cfg.queue_size = queue_size;
    cfg.block_ms = 200;
    cfg
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blackholed_output_never_stalls_send_nor_the_other_output_under_every_policy() {
    for policy in ["block", "drop_newest", "drop_oldest"] {
        let (dead, hole) = blackhole().await;
        let (rx, good) = start_receiver(&[]).await;
        let mut dead_cfg = with_policy(
            api(
                &format!("http://{dead}/e"),
                serde_json::json!({"timeout_secs": 30}),
            ),
            policy,
            10,
        );
        dead_cfg.name = Some("dead".to_owned());
        let good_cfg = api(&format!("http://{good}/e"), serde_json::json!({}));
        let fanout = Fanout::start(&[dead_cfg, good_cfg], &FormatContext::for_device("s1"));
        // `send` is a plain call: 300 messages into a queue of 10 cannot wait for the receiver.
        for n in 1..=300 {
            fanout.send(event(n));
        }
        let stats = fanout.finish(Duration::from_secs(2)).await;
        let (d, g) = (&stats[0], &stats[1]);
        assert_eq!(
            (d.counts.received, d.counts.sent, d.counts.dropped),
            (300, 0, 300),
            "{policy}: {d:?}"
        );
        // Queue of 10, overflow of 10 (block), the batch in flight: everything else found the
        // queue full.
        assert!(d.counts.dropped_queue_full >= 300 - 21, "{policy}: {d:?}");
        assert_eq!(
            (g.counts.received, g.counts.sent, g.counts.dropped),
            (300, 300, 0),
            "{policy}: {g:?}"
        );
        assert_eq!(
            ids(&rx.requests()),
            (1..=300).collect::<Vec<_>>(),
            "{policy}"
        );
        hole.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_stall_one_degraded_event_reports_the_exact_loss() {
    for policy in ["block", "drop_newest", "drop_oldest"] {
        // The first connection is accepted and never answered; the next ones are served.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rx = Receiver::default();
        let r = rx.clone();
        let (stuck_tx, stuck_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            let (stuck, _) = listener.accept().await.unwrap();
            let _ = stuck_tx.send(());
            r.serve(listener).await;
            drop(stuck);
        });
        let cfg = with_policy(
            api(
                &format!("http://{addr}/e"),
                serde_json::json!({"timeout_secs": 1}),
            ),
            policy,
            10,
        );
        let fanout = Fanout::start(&[cfg], &FormatContext::for_device("s1"));
        fanout.send(event(1));
        // Once the first request holds the stuck connection, overflow the queue.
        tokio::time::timeout(Duration::from_secs(10), stuck_rx)
            .await
            .expect("the first delivery connects")
            .unwrap();
        for n in 2..=100 {
            fanout.send(event(n));
        }
        let stats = fanout.finish(Duration::from_secs(20)).await;
        let s = &stats[0];
        let bodies: Vec<serde_json::Value> = rx
            .requests()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        let reports: Vec<&serde_json::Value> = bodies
            .iter()
            .filter(|b| b["logtype"] == "sensor.degraded")
            .collect();
        assert!(s.counts.dropped > 0, "{policy}: {s:?}");
        assert_eq!(
            reports.len(),
            1,
            "{policy}: exactly one report: {reports:?}"
        );
        assert_eq!(reports[0]["extra"]["dropped"], s.counts.dropped, "{policy}");
        assert_eq!(reports[0]["extra"]["reason"], "queue full", "{policy}");
        assert_eq!(reports[0]["extra"]["output"], "api-0", "{policy}");
        assert_eq!(reports[0]["src_ip"], "0.0.0.0", "{policy}");
        // Every message delivered or counted: 100 events plus the report.
        assert_eq!(s.counts.received, 101, "{policy}: {s:?}");
        assert_eq!(s.counts.sent + s.counts.dropped, 101, "{policy}: {s:?}");
        assert_eq!(bodies.len() as u64, s.counts.sent, "{policy}");
        server.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn finish_accounts_for_every_message_sent_dropped_or_left_in_the_spool() {
    let dir = spool_dir("accounting");
    let (dead, hole) = blackhole().await;
    let mut cfg = spooled(&format!("http://{dead}/e"), &dir, 1 << 20);
    cfg = with_policy(cfg, "spool", 10);
    let fanout = Fanout::start(&[cfg], &FormatContext::for_device("s1"));
    for n in 1..=200 {
        fanout.send(event(n));
    }
    let stats = fanout.finish(Duration::from_secs(2)).await;
    let s = &stats[0];
    // What the spool still holds, read back from disk.
    let left: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .map(|p| {
            std::fs::read(p)
                .unwrap()
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64
        })
        .sum();
    assert_eq!(s.counts.received, 200, "{s:?}");
    assert_eq!(s.counts.sent, 0, "{s:?}");
    assert_eq!(
        s.counts.received,
        s.counts.sent + s.counts.dropped + left,
        "{s:?}, {left} left"
    );
    assert_eq!(s.counts.spooled, left, "{s:?}");
    hole.abort();
    std::fs::remove_dir_all(&dir).ok();
}
