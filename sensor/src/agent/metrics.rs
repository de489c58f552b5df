//! `sensor.metrics`: an HTTP listener (off by default; a bare port means loopback) serving
//!
//! - `GET /metrics`: Prometheus text format 0.0.4 (`prometheus-client`), every counter of the
//!   stats file (`--stats-file`) under the same path, `trapster_sensor_<section>_<key>_total`
//!   (outputs labelled `output` and `type`), plus the gauges `trapster_sensor_merger_tracked`,
//!   `trapster_sensor_incidents_open`, `trapster_sensor_output_failing_seconds`,
//!   `trapster_sensor_capture_attached` and (XDP capture) `trapster_sensor_ring_buffer_used_bytes`
//!   and `trapster_sensor_ring_buffer_size_bytes`;
//! - `GET /healthz`: `200 ok`, or `503` with one line per problem: a watched interface is gone
//!   (the capture is detached), an output has been failing longer than
//!   `sensor.metrics.output_failing_secs`, or the agent stopped refreshing its values.
//!
//! The agent publishes a [`Snapshot`] at every stats tick (the one the stats file gets) and every
//! `sensor.metrics.refresh_secs`; requests only read the latest one.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::shutdown::CancellationToken;

/// Every metric name starts with this.
const PREFIX: &str = "trapster_sensor";

/// What the agent last published.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The stats file's JSON ([`super::RunSummary::to_json`]).
    pub counters: Value,
    /// Scans being merged.
    pub tracked: u64,
    /// Open incidents.
    pub incidents: u64,
    /// Per output: name and how long it has been failing (seconds), if it is.
    pub failing: Vec<(String, Option<u64>)>,
    /// Watched interfaces that no longer exist (empty without capture).
    pub gone: Vec<String>,
    /// Whether a capture engine runs.
    pub capturing: bool,
    /// Ring buffer bytes in use and its size (XDP capture only).
    pub ring: Option<(u64, u64)>,
    /// When it was published.
    pub at: Instant,
}

/// The latest snapshot, shared between the agent and the listener.
#[derive(Debug, Clone)]
pub struct Published {
    latest: Arc<Mutex<Option<Snapshot>>>,
    failing_limit: Duration,
    stale_after: Duration,
}

impl Published {
    /// Nothing published yet; `/healthz` fails past `failing_limit` of output failure, or when
    /// nothing was published for `stale_after`.
    #[must_use]
    pub fn new(failing_limit: Duration, stale_after: Duration) -> Self {
        Self {
            latest: Arc::new(Mutex::new(None)),
            failing_limit,
            stale_after,
        }
    }

    /// Replaces the snapshot.
    pub fn publish(&self, snapshot: Snapshot) {
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(snapshot);
        }
    }

    fn latest(&self) -> Option<Snapshot> {
        self.latest.lock().ok().and_then(|l| l.clone())
    }

    /// The health problems, one sentence each; empty when healthy.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let Some(s) = self.latest() else {
            return vec!["the agent has published no values yet".to_owned()];
        };
        let mut problems = Vec::new();
        if s.at.elapsed() > self.stale_after {
            problems.push(format!(
                "the agent last refreshed its values {} s ago",
                s.at.elapsed().as_secs()
            ));
        }
        for iface in &s.gone {
            problems.push(format!("capture detached: interface {iface} is gone"));
        }
        for (name, failing) in &s.failing {
            if let Some(secs) = failing
                && Duration::from_secs(*secs) >= self.failing_limit
            {
                problems.push(format!("output {name} has been failing for {secs} s"));
            }
        }
        problems
    }
}

/// A sample's labels.
type Labels = Vec<(String, String)>;

/// A gauge family: name (after the prefix), help, samples.
type GaugeFamily = (&'static str, &'static str, Vec<(Labels, i64)>);

/// One sample: family name, labels, value.
type Sample = (String, Labels, u64);

/// Leaves of the stats JSON that are levels, not totals (an output's `queued`, `in_spool`):
/// exported as gauges.
const GAUGE_KEYS: [&str; 2] = ["queued", "in_spool"];

/// Every numeric leaf of the stats JSON but the [`GAUGE_KEYS`] as a counter sample named by its
/// path; arrays of objects with a `name` (the outputs) become one label set per element
/// (`output`, `type`).
#[must_use]
pub fn counter_samples(stats: &Value) -> Vec<Sample> {
    samples(stats, false)
}

/// The [`GAUGE_KEYS`] leaves of the stats JSON, named and labelled as [`counter_samples`].
#[must_use]
pub fn gauge_samples(stats: &Value) -> Vec<Sample> {
    samples(stats, true)
}

fn samples(stats: &Value, gauges: bool) -> Vec<Sample> {
    fn walk(
        path: &str,
        v: &Value,
        labels: &[(String, String)],
        gauges: bool,
        out: &mut Vec<Sample>,
    ) {
        match v {
            Value::Object(map) => {
                for (key, child) in map {
                    let is_gauge = GAUGE_KEYS.contains(&key.as_str()) && !child.is_object();
                    if child.is_object() || child.is_array() || is_gauge == gauges {
                        walk(&format!("{path}_{key}"), child, labels, gauges, out);
                    }
                }
            }
            Value::Array(items) => {
                let singular = path.strip_suffix('s').unwrap_or(path);
                let label = singular.rsplit('_').next().unwrap_or(singular).to_owned();
                for item in items {
                    let mut own = labels.to_vec();
                    if let Some(name) = item.get("name").and_then(Value::as_str) {
                        own.push((label.clone(), name.to_owned()));
                    }
                    if let Some(kind) = item.get("type").and_then(Value::as_str) {
                        own.push(("type".to_owned(), kind.to_owned()));
                    }
                    walk(singular, item, &own, gauges, out);
                }
            }
            Value::Number(n) => {
                if let Some(n) = n.as_u64() {
                    out.push((path.to_owned(), labels.to_vec(), n));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(PREFIX, stats, &[], gauges, &mut out);
    out
}

/// Encodes a published snapshot on each scrape.
#[derive(Debug)]
struct SnapshotCollector(Published);

fn families(samples: Vec<Sample>) -> BTreeMap<String, Vec<(Labels, u64)>> {
    let mut families: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (name, labels, value) in samples {
        families.entry(name).or_default().push((labels, value));
    }
    families
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = self.0.latest() else {
            return Ok(());
        };
        for (name, samples) in families(counter_samples(&s.counters)) {
            let help = format!(
                "Stats file counter {}.",
                name.trim_start_matches("trapster_sensor_")
            );
            let mut family = encoder.encode_descriptor(
                &name,
                &help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (labels, value) in samples {
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let ring = |pick: fn((u64, u64)) -> u64| {
            s.ring
                .map(|r| vec![(vec![], saturating(pick(r)))])
                .unwrap_or_default()
        };
        let gauges: [GaugeFamily; 6] = [
            (
                "ring_buffer_used_bytes",
                "Bytes of probe records in the kernel ring buffer not yet read (XDP capture).",
                ring(|(used, _)| used),
            ),
            (
                "ring_buffer_size_bytes",
                "Size of the kernel ring buffer (XDP capture).",
                ring(|(_, size)| size),
            ),
            (
                "merger_tracked",
                "Scans being merged.",
                vec![(vec![], saturating(s.tracked))],
            ),
            (
                "incidents_open",
                "Open incidents.",
                vec![(vec![], saturating(s.incidents))],
            ),
            (
                "capture_attached",
                "1 while the capture runs on every watched interface.",
                vec![(vec![], i64::from(s.capturing && s.gone.is_empty()))],
            ),
            (
                "output_failing_seconds",
                "How long each output's writes have been failing (0 while delivering).",
                s.failing
                    .iter()
                    .map(|(name, f)| {
                        (
                            vec![("output".to_owned(), name.clone())],
                            saturating(f.unwrap_or(0)),
                        )
                    })
                    .collect(),
            ),
        ];
        let levels = families(gauge_samples(&s.counters))
            .into_iter()
            .map(|(name, samples)| {
                let short = name.trim_start_matches("trapster_sensor_").to_owned();
                let help = format!("Stats file level {short}.");
                let samples = samples
                    .into_iter()
                    .map(|(labels, v)| (labels, saturating(v)))
                    .collect();
                (short, help, samples)
            });
        let fixed = gauges
            .into_iter()
            .map(|(name, help, samples)| (name.to_owned(), help.to_owned(), samples));
        for (name, help, samples) in fixed.chain(levels) {
            let full = format!("{PREFIX}_{name}");
            let mut family = encoder.encode_descriptor(
                &full,
                &help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (labels, value) in samples {
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn saturating(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The `/metrics` body for `published`.
#[must_use]
pub fn render(published: &Published) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(published.clone())));
    let mut text = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).is_err() {
        text.clear();
        let _ = writeln!(text, "# encoding the metrics failed");
    }
    text
}

fn respond(published: &Published, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render(published),
        ),
        "/healthz" => {
            let problems = published.problems();
            if problems.is_empty() {
                (
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    "ok\n".to_owned(),
                )
            } else {
                let mut body = String::new();
                for p in &problems {
                    let _ = writeln!(body, "{p}");
                }
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    body,
                )
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: /metrics, /healthz\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Binds the listener (before privileges are dropped, so any port works).
///
/// # Errors
/// Binding failed.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics` and `/healthz` until `shutdown`; each connection is its own task, bounded
/// to 10 s.
pub async fn serve(listener: TcpListener, published: Published, shutdown: CancellationToken) {
    /// Longest a scrape connection may stay open.
    const CONNECTION_LIMIT: Duration = Duration::from_secs(10);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(error = %err, "Accepting a metrics connection failed.");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let published = published.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = respond(&published, req.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn snapshot(failing: Option<u64>) -> Snapshot {
        Snapshot {
            counters: json!({
                "kernel": {"packets": 7, "probes": 3},
                "pcap": null,
                "merger": {"reports": 1},
                "events": 2,
                "outputs": [{"name": "siem", "type": "api", "sent": 2, "dropped": 0}],
            }),
            tracked: 4,
            incidents: 1,
            failing: vec![("siem".to_owned(), failing)],
            gone: vec![],
            capturing: true,
            ring: Some((4096, 262_144)),
            at: Instant::now(),
        }
    }

    #[test]
    fn every_stats_counter_becomes_a_sample_named_by_its_path() {
        let samples = counter_samples(&snapshot(None).counters);
        let labels = vec![
            ("output".to_owned(), "siem".to_owned()),
            ("type".to_owned(), "api".to_owned()),
        ];
        assert_eq!(
            samples,
            vec![
                ("trapster_sensor_kernel_packets".to_owned(), vec![], 7),
                ("trapster_sensor_kernel_probes".to_owned(), vec![], 3),
                ("trapster_sensor_merger_reports".to_owned(), vec![], 1),
                ("trapster_sensor_events".to_owned(), vec![], 2),
                ("trapster_sensor_output_sent".to_owned(), labels.clone(), 2),
                ("trapster_sensor_output_dropped".to_owned(), labels, 0),
            ]
        );
    }

    #[test]
    fn the_text_has_every_counter_and_gauge() {
        let published = Published::new(Duration::from_secs(60), Duration::from_secs(60));
        published.publish(snapshot(None));
        let text = render(&published);
        for line in [
            "# TYPE trapster_sensor_kernel_packets_total counter",
            "trapster_sensor_kernel_packets_total 7",
            "trapster_sensor_output_sent_total{output=\"siem\",type=\"api\"} 2",
            "trapster_sensor_events_total 2",
            "trapster_sensor_merger_tracked 4",
            "trapster_sensor_incidents_open 1",
            "trapster_sensor_capture_attached 1",
            "trapster_sensor_output_failing_seconds{output=\"siem\"} 0",
            "# TYPE trapster_sensor_ring_buffer_used_bytes gauge",
            "trapster_sensor_ring_buffer_used_bytes 4096",
            "trapster_sensor_ring_buffer_size_bytes 262144",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn health_fails_once_an_output_fails_past_its_limit() {
        let published = Published::new(Duration::from_secs(30), Duration::from_secs(60));
        assert_eq!(
            published.problems(),
            ["the agent has published no values yet"]
        );
        published.publish(snapshot(Some(29)));
        assert_eq!(published.problems(), Vec::<String>::new());
        published.publish(snapshot(Some(30)));
        assert_eq!(
            published.problems(),
            ["output siem has been failing for 30 s"]
        );
        let mut gone = snapshot(None);
        gone.gone = vec!["ens3".to_owned()];
        published.publish(gone);
        assert_eq!(
            published.problems(),
            ["capture detached: interface ens3 is gone"]
        );
    }

    #[test]
    fn a_bare_port_listens_on_loopback() {
        let cfg = |listen: &str| crate::config::MetricsConfig {
            listen: Some(listen.to_owned()),
            ..crate::config::MetricsConfig::default()
        };
        assert_eq!(
            cfg("9464").address().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(
            cfg("[::]:9464").address().unwrap(),
            Some("[::]:9464".parse().unwrap())
        );
        assert!(cfg("localhost").address().is_err());
        assert_eq!(
            crate::config::MetricsConfig::default().address().unwrap(),
            None
        );
    }
}
