//! `elasticsearch` (alias `opensearch`) output: the `_bulk` API. Each record becomes an action
//! line (`index` into a daily index named by a strftime pattern of the event's UTC time, or
//! `create` into a data stream) and its document (events in the ECS format, incidents as the
//! JSON envelope), NDJSON, gzipped by default, at most `max_batch` records and `max_bytes`
//! bytes per request. Authentication is HTTP basic or an API key (`Authorization: ApiKey`);
//! the URL, the password and the key are secrets: logs show only scheme, host and port.
//!
//! The bulk answer is read per item: 200/201 are delivered; 429 and 5xx items are retried, and
//! only they; other statuses (mapping errors, 400) are refused, counted as dropped and logged
//! with `error.type` and a shortened `error.reason`, never the document. A whole request that
//! fails with a connection error, a timeout, 429 (honouring `Retry-After`) or 5xx is retried;
//! 401/403 are fatal (bad credentials); any other status refuses that request's records.
//!
//! Partial acceptance without a new driver interface: the driver retries a failed attempt by
//! calling [`Sink::write`] again with the same batch (both the direct and the spooled driver).
//! After an attempt that left records unsettled, the sink keeps a `Pending`: a fingerprint of
//! the batch (its record bytes), the positions still to send, and the refusals so far. The next
//! `write` of the same batch sends only those positions; any other batch discards the state.
//! Once a request of an attempt leaves records to retry, the attempt's later requests are held
//! back for the next attempt too (the receiver is busy), so the backoff applies to them.
//! When every record is settled, `Ok` carries all refusals of every attempt, so the driver
//! counts `sent` and `dropped` exactly; so does a 401/403 after part of the batch was stored
//! (the rest is returned as refused). Only a driver giving up at shutdown in the middle of
//! retries counts the whole batch as failed, including records an earlier attempt delivered.
//!
//! Hand-written on the shared HTTP client ([`crate::output::client`], so the one root store and
//! `ca_file` apply) rather than the `elasticsearch`/`opensearch` client crates, which bring a
//! transport and TLS setup of their own: the wire format is NDJSON out and two serde structs
//! in (`bulk.rs`). The configuration is checked when read (`config.rs`).

mod bulk;
mod config;

use std::{
    hash::{Hash as _, Hasher as _},
    io::Write as _,
    time::Duration,
};

pub use self::{
    bulk::{ItemOutcome, check_pattern, index_name, parse_bulk},
    config::{Auth, ElasticsearchConfig, Target},
};
use super::{Body, Record, Sink, WriteError, api::retry_after};
use crate::output::client::{
    http::{self, without_url},
    secret::Secret,
};

/// Most bytes of a bulk answer read (an answer carries about 200 bytes per item).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Refused items logged one by one per request; the rest are only counted.
const LOGGED_REFUSALS: usize = 3;

/// Records of a batch still to send after an attempt, and the refusals so far.
#[derive(Debug)]
struct Pending {
    /// [`fingerprint`] of the batch.
    key: u64,
    /// Positions in the batch not yet settled, ascending.
    open: Vec<usize>,
    /// Records refused by earlier attempts.
    refused: u64,
}

/// Identifies a batch across attempts by its records' bytes (event ids make them unique).
pub(crate) fn fingerprint(batch: &[Record<'_>]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    batch.len().hash(&mut hasher);
    for record in batch {
        record.bytes.hash(&mut hasher);
    }
    hasher.finish()
}

/// How one request went.
enum Sent {
    /// The answer of each item, in order.
    Items(Vec<ItemOutcome>),
    /// The whole request is worth another try.
    Retry(Option<Duration>, String),
    /// Credentials refused.
    Fatal(String),
    /// The whole request was refused with this status.
    Refused(u16),
}

/// The Elasticsearch / OpenSearch output.
pub struct ElasticsearchOutput {
    config: ElasticsearchConfig,
    name: String,
    body: Body,
    client: Result<reqwest::Client, String>,
    /// `<url>/_bulk`.
    bulk: Secret,
    /// `scheme://host:port`, the only part of the URL ever logged.
    shown: String,
    pending: Option<Pending>,
}

impl ElasticsearchOutput {
    /// Builds the client; a bad URL or TLS setup is reported at the first write.
    #[must_use]
    pub fn new(config: ElasticsearchConfig, name: &str) -> Self {
        let shown = http::shown_url(config.url.expose());
        let client = http::output_client(
            name,
            &shown,
            config.ca_file.as_deref(),
            config.insecure,
            Duration::from_secs(config.timeout_secs.max(1)),
        );
        let bulk = Secret::new(format!(
            "{}/_bulk",
            config.url.expose().trim_end_matches('/')
        ));
        Self {
            config,
            name: name.to_owned(),
            body: Body::Format(crate::format::Format::Ecs),
            client,
            bulk,
            shown,
            pending: None,
        }
    }

    /// Encodes as `body` says.
    #[must_use]
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// The action line of a record of Unix time `time`, with its newline.
    fn action(&self, time: f64) -> Vec<u8> {
        let action = match &self.config.target {
            Target::Index(pattern) => {
                serde_json::json!({"index": {"_index": index_name(pattern, time)}})
            }
            Target::DataStream(stream) => serde_json::json!({"create": {"_index": stream}}),
        };
        let mut line = serde_json::to_vec(&action).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// The NDJSON bodies for positions `open` of `batch`, each with its positions, within
    /// `max_batch` and `max_bytes`.
    fn requests(&self, batch: &[Record<'_>], open: &[usize]) -> Vec<(Vec<u8>, Vec<usize>)> {
        let mut out: Vec<(Vec<u8>, Vec<usize>)> = Vec::new();
        let mut body = Vec::new();
        let mut positions = Vec::new();
        for &i in open {
            let Some(record) = batch.get(i) else { continue };
            let action = self.action(record.time);
            let size = action
                .len()
                .saturating_add(record.bytes.len())
                .saturating_add(1);
            if !positions.is_empty()
                && (positions.len() >= self.config.max_batch
                    || body.len().saturating_add(size) > self.config.max_bytes)
            {
                out.push((std::mem::take(&mut body), std::mem::take(&mut positions)));
            }
            body.extend_from_slice(&action);
            body.extend_from_slice(record.bytes);
            body.push(b'\n');
            positions.push(i);
        }
        if !positions.is_empty() {
            out.push((body, positions));
        }
        out
    }

    /// One POST to `_bulk`.
    async fn post(&self, client: &reqwest::Client, body: Vec<u8>, actions: usize) -> Sent {
        let mut request = client
            .post(self.bulk.expose())
            .header("Content-Type", "application/x-ndjson");
        match &self.config.auth {
            Some(Auth::Basic { username, password }) => {
                request = request.basic_auth(username, Some(password.expose()));
            }
            Some(Auth::ApiKey(key)) => {
                request = request.header("Authorization", format!("ApiKey {}", key.expose()));
            }
            None => {}
        }
        let body = if self.config.gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            match enc.write_all(&body).and_then(|()| enc.finish()) {
                Ok(zipped) => {
                    request = request.header("Content-Encoding", "gzip");
                    zipped
                }
                Err(err) => return Sent::Retry(None, format!("gzip failed: {err}")),
            }
        } else {
            body
        };
        let mut response = match request.body(body).send().await {
            Ok(response) => response,
            Err(err) => return Sent::Retry(None, without_url(&err)),
        };
        let status = response.status().as_u16();
        let after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        match status {
            200..=299 => {}
            429 => return Sent::Retry(after, "HTTP 429".to_owned()),
            500.. => return Sent::Retry(after, format!("HTTP {status}")),
            401 | 403 => {
                return Sent::Fatal(format!("HTTP {status}: the credentials were refused"));
            }
            _ => return Sent::Refused(status),
        }
        let mut answer = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if answer.len().saturating_add(chunk.len()) > MAX_RESPONSE {
                        return Sent::Retry(None, "bulk answer too large".to_owned());
                    }
                    answer.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(err) => return Sent::Retry(None, without_url(&err)),
            }
        }
        match parse_bulk(&answer, actions) {
            Ok(items) => Sent::Items(items),
            Err(why) => Sent::Retry(after, why),
        }
    }

    /// Logs the refused items of one request (the first few, then a count).
    fn log_refusals(&self, items: &[ItemOutcome]) {
        let mut refused = 0usize;
        for item in items {
            if let ItemOutcome::Refused {
                status,
                kind,
                reason,
            } = item
            {
                refused = refused.saturating_add(1);
                if refused <= LOGGED_REFUSALS {
                    tracing::error!(output = %self.name, url = %self.shown, status, error.r#type = %kind, error.reason = %reason, "Elasticsearch refused a document (no retry for this status); dropped.");
                }
            }
        }
        if refused > LOGGED_REFUSALS {
            tracing::error!(output = %self.name, url = %self.shown, refused, "Elasticsearch refused more documents of one request; dropped.");
        }
    }

    /// Sends one record (the test incident) as one bulk request; returns the receiver's
    /// answer for `sensor send-test`.
    ///
    /// # Errors
    /// A failed request (URL-free), or the item's refusal.
    pub async fn probe(&self, record: &[u8], time: f64) -> Result<String, String> {
        let client = self.client.clone()?;
        let batch = [Record {
            bytes: record,
            time,
        }];
        let Some((body, _)) = self.requests(&batch, &[0]).into_iter().next() else {
            return Err("nothing to send".to_owned());
        };
        let target = match &self.config.target {
            Target::Index(pattern) => format!("index {}", index_name(pattern, time)),
            Target::DataStream(stream) => format!("data stream {stream}"),
        };
        match self.post(&client, body, 1).await {
            Sent::Items(items) => match items.first() {
                Some(ItemOutcome::Accepted) | None => {
                    Ok(format!("stored in {target} by {}", self.shown))
                }
                Some(ItemOutcome::Retry) => Err(format!("{} is busy (item 429/5xx)", self.shown)),
                Some(ItemOutcome::Refused {
                    status,
                    kind,
                    reason,
                }) => Err(format!(
                    "{} refused the document for {target}: {status} {kind}: {reason}",
                    self.shown
                )),
            },
            Sent::Retry(_, why) | Sent::Fatal(why) => Err(format!("{}: {why}", self.shown)),
            Sent::Refused(status) => Err(format!("{}: HTTP {status}", self.shown)),
        }
    }
}

#[async_trait::async_trait]
impl Sink for ElasticsearchOutput {
    fn body(&self) -> &Body {
        &self.body
    }

    fn batch_size(&self) -> usize {
        self.config.max_batch.max(1)
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    async fn write(&mut self, batch: &[Record<'_>]) -> Result<u64, WriteError> {
        let (open, mut refused) = match self.pending.take() {
            Some(p) if p.key == fingerprint(batch) => (p.open, p.refused),
            _ => ((0..batch.len()).collect(), 0),
        };
        let client = self.client.clone().map_err(WriteError::Fatal)?;
        // Delivered by earlier attempts of this batch, then by this one.
        let total = batch.len() as u64;
        let mut delivered = total
            .saturating_sub(open.len() as u64)
            .saturating_sub(refused);
        let mut still: Vec<usize> = Vec::new();
        let mut failure: Option<(Option<Duration>, String)> = None;
        for (body, positions) in self.requests(batch, &open) {
            if failure.is_some() {
                still.extend(positions);
                continue;
            }
            match self.post(&client, body, positions.len()).await {
                Sent::Items(items) => {
                    self.log_refusals(&items);
                    let mut busy = 0usize;
                    for (item, position) in items.iter().zip(positions) {
                        match item {
                            ItemOutcome::Accepted => delivered = delivered.saturating_add(1),
                            ItemOutcome::Retry => {
                                busy = busy.saturating_add(1);
                                still.push(position);
                            }
                            ItemOutcome::Refused { .. } => refused = refused.saturating_add(1),
                        }
                    }
                    if busy > 0 {
                        failure = Some((None, format!("{busy} documents answered 429/5xx")));
                    }
                }
                Sent::Retry(after, why) => {
                    still.extend(positions);
                    failure = Some((after, why));
                }
                Sent::Fatal(why) => {
                    tracing::error!(output = %self.name, url = %self.shown, error = %why, "Elasticsearch refused the credentials; events dropped.");
                    if delivered == 0 {
                        return Err(WriteError::Fatal(why));
                    }
                    // Part of the batch is stored: what is not counts as refused, so `sent`
                    // stays exact.
                    return Ok(total.saturating_sub(delivered));
                }
                Sent::Refused(status) => {
                    tracing::error!(output = %self.name, url = %self.shown, status, events = positions.len(), "Elasticsearch refused the request (no retry for this status); dropped.");
                    refused = refused.saturating_add(positions.len() as u64);
                }
            }
        }
        match failure {
            None => Ok(refused),
            Some((after, reason)) => {
                self.pending = Some(Pending {
                    key: fingerprint(batch),
                    open: still,
                    refused,
                });
                Err(WriteError::Retry { reason, after })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ElasticsearchConfig, ElasticsearchOutput, Record, fingerprint};

    fn sink(config: serde_json::Value) -> ElasticsearchOutput {
        let config: ElasticsearchConfig = serde_json::from_value(config).unwrap();
        ElasticsearchOutput::new(config, "t")
    }

    #[test]
    fn requests_hold_at_most_max_batch_records_and_max_bytes() {
        let docs = [&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}", b"{\"d\":4}"];
        let batch: Vec<Record<'_>> = docs
            .iter()
            .map(|d| Record {
                bytes: d,
                time: 1_796_169_599.0,
            })
            .collect();
        let action = "{\"index\":{\"_index\":\"trapster-2026.12.01\"}}\n";
        let pair = action.len() + 8;
        // By count.
        let by_count = sink(serde_json::json!({"url": "http://127.0.0.1:9", "max_batch": 3}));
        let requests = by_count.requests(&batch, &[0, 1, 2, 3]);
        let positions: Vec<&[usize]> = requests.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(positions, vec![&[0, 1, 2][..], &[3]]);
        assert_eq!(requests[1].0, format!("{action}{{\"d\":4}}\n").into_bytes());
        // By bytes: two pairs fit, three do not; a pair larger than the cap goes alone.
        let by_bytes = sink(serde_json::json!({
            "url": "http://127.0.0.1:9", "max_bytes": pair * 2 + 1, "data_stream": "logs-x"
        }));
        let requests = by_bytes.requests(&batch, &[1, 2, 3]);
        let positions: Vec<&[usize]> = requests.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(positions, vec![&[1, 2][..], &[3]]);
        assert!(
            requests[0]
                .0
                .starts_with(b"{\"create\":{\"_index\":\"logs-x\"}}\n{\"b\":2}\n")
        );
        let tiny = sink(serde_json::json!({"url": "http://127.0.0.1:9", "max_bytes": 1}));
        assert_eq!(tiny.requests(&batch, &[0, 1]).len(), 2);
    }

    #[test]
    fn batches_are_told_apart_by_their_records() {
        let a = [Record {
            bytes: b"{\"id\":1}",
            time: 1.0,
        }];
        let same_bytes_other_time = [Record {
            bytes: b"{\"id\":1}",
            time: 2.0,
        }];
        let b = [Record {
            bytes: b"{\"id\":2}",
            time: 1.0,
        }];
        assert_eq!(fingerprint(&a), fingerprint(&same_bytes_other_time));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&[a[0], a[0]]));
    }
}
