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
//! After an attempt that left records unsettled, the sink keeps [`Pending`]: a fingerprint of
//! the batch (its record bytes), the positions still to send, and the refusals so far. The next
//! `write` of the same batch sends only those positions; any other batch discards the state.
//! When every record is settled, `Ok` carries all refusals of every attempt, so the driver
//! counts `sent` and `dropped` exactly. A fatal error or a driver giving up at shutdown counts
//! the whole batch as failed, including records an earlier attempt had delivered.

use std::{
    collections::BTreeMap,
    hash::{Hash as _, Hasher as _},
    io::Write as _,
    path::PathBuf,
    time::Duration,
};

use serde::Deserialize;

use super::{Body, Record, Sink, WriteError, api::retry_after};
use crate::output::client::{
    http::{self, without_url},
    secret::Secret,
};

/// Most bytes of a bulk answer read (an answer carries about 200 bytes per item).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Longest `error.reason` logged.
const MAX_REASON: usize = 200;

/// Refused items logged one by one per request; the rest are only counted.
const LOGGED_REFUSALS: usize = 3;

/// Where documents go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `index` actions into the index the strftime pattern names for the event's UTC time.
    Index(String),
    /// `create` actions into this data stream.
    DataStream(String),
}

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP basic.
    Basic {
        /// User name.
        username: String,
        /// Password (secret).
        password: Secret,
    },
    /// `Authorization: ApiKey <key>` (the base64 `encoded` form Elasticsearch returns).
    ApiKey(Secret),
}

/// `transport: {"type": "elasticsearch", "url": "https://es:9200", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct ElasticsearchConfig {
    /// Base URL (`/_bulk` is appended); a secret.
    pub url: Secret,
    /// Index pattern or data stream.
    pub target: Target,
    /// Credentials, if any.
    pub auth: Option<Auth>,
    /// gzip request bodies.
    pub gzip: bool,
    /// Most records per request.
    pub max_batch: usize,
    /// Most body bytes per request, before gzip (a single larger record goes alone).
    pub max_bytes: usize,
    /// Per-request timeout, seconds.
    pub timeout_secs: u64,
    /// PEM CA bundle trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (warned at every start).
    pub insecure: bool,
}

const fn default_timeout() -> u64 {
    10
}

const fn yes() -> bool {
    true
}

const fn default_max_batch() -> usize {
    500
}

const fn default_max_bytes() -> usize {
    5 * 1024 * 1024
}

/// The configuration as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    url: Secret,
    #[serde(default)]
    index: Option<String>,
    #[serde(default)]
    data_stream: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    api_key: Option<Secret>,
    #[serde(default = "yes")]
    gzip: bool,
    #[serde(default = "default_max_batch")]
    max_batch: usize,
    #[serde(default = "default_max_bytes")]
    max_bytes: usize,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
}

impl TryFrom<RawConfig> for ElasticsearchConfig {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        let target = match (raw.index, raw.data_stream) {
            (Some(_), Some(_)) => return Err("`index` and `data_stream` exclude each other".into()),
            (None, Some(stream)) if stream.is_empty() => {
                return Err("`data_stream` must not be empty".into());
            }
            (None, Some(stream)) => Target::DataStream(stream),
            (index, None) => {
                let pattern = index.unwrap_or_else(|| "trapster-%Y.%m.%d".to_owned());
                check_pattern(&pattern).map_err(|e| format!("`index`: {e}"))?;
                Target::Index(pattern)
            }
        };
        let auth = match (raw.username, raw.password, raw.api_key) {
            (None, None, None) => None,
            (Some(username), Some(password), None) => Some(Auth::Basic { username, password }),
            (None, None, Some(key)) => Some(Auth::ApiKey(key)),
            (_, _, Some(_)) => {
                return Err("`api_key` excludes `username` and `password`".into());
            }
            (Some(_), None, None) => return Err("`username` needs a `password`".into()),
            (None, Some(_), None) => return Err("`password` needs a `username`".into()),
        };
        if raw.max_batch == 0 || raw.max_bytes == 0 {
            return Err("`max_batch` and `max_bytes` must be at least 1".into());
        }
        Ok(Self {
            url: raw.url,
            target,
            auth,
            gzip: raw.gzip,
            max_batch: raw.max_batch,
            max_bytes: raw.max_bytes,
            timeout_secs: raw.timeout_secs,
            ca_file: raw.ca_file,
            insecure: raw.insecure,
        })
    }
}

/// Whether `pattern` is a strftime pattern chrono can format.
///
/// # Errors
/// Names the pattern.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if pattern.is_empty() {
        return Err("empty index pattern".to_owned());
    }
    if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
        return Err(format!("`{pattern}` is not a valid strftime pattern"));
    }
    Ok(())
}

/// The index `pattern` names for Unix time `time` (seconds, UTC), lowercased as Elasticsearch
/// requires. A pattern chrono cannot format (rejected at configuration) is returned as is.
#[must_use]
pub fn index_name(pattern: &str, time: f64) -> String {
    use std::fmt::Write as _;
    let micros = (time * 1e6).round() as i64;
    let at = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    let mut out = String::new();
    if write!(out, "{}", at.format(pattern)).is_err() {
        return pattern.to_owned();
    }
    out.to_lowercase()
}

/// What the receiver said of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Stored (200, 201).
    Accepted,
    /// Worth another try (429, 5xx).
    Retry,
    /// Not storable (mapping error, 400...): dropped.
    Refused {
        /// The item's status.
        status: u16,
        /// `error.type`.
        kind: String,
        /// `error.reason`, shortened, without control characters.
        reason: String,
    },
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<BTreeMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The outcome of each of the `expected` actions of a request, from its bulk answer.
///
/// # Errors
/// The answer is not a bulk answer, or (with `errors: true`) has not one item per action.
pub fn parse_bulk(body: &[u8], expected: usize) -> Result<Vec<ItemOutcome>, String> {
    let response: BulkResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable bulk answer: {e}"))?;
    if !response.errors {
        return Ok(vec![ItemOutcome::Accepted; expected]);
    }
    if response.items.len() != expected {
        return Err(format!(
            "bulk answer has {} items for {expected} actions",
            response.items.len()
        ));
    }
    Ok(response
        .items
        .iter()
        .map(|item| match item.values().next() {
            None => ItemOutcome::Retry,
            Some(BulkItem { status, .. }) if (200..300).contains(status) => ItemOutcome::Accepted,
            Some(BulkItem { status, .. }) if *status == 429 || *status >= 500 => ItemOutcome::Retry,
            Some(BulkItem { status, error }) => {
                let field = |name: &str| {
                    error
                        .as_ref()
                        .and_then(|e| e.get(name))
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(MAX_REASON)
                        .collect::<String>()
                };
                ItemOutcome::Refused {
                    status: *status,
                    kind: field("type"),
                    reason: field("reason"),
                }
            }
        })
        .collect())
}

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
fn fingerprint(batch: &[Record<'_>]) -> u64 {
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
        let shown = reqwest::Url::parse(config.url.expose()).map_or_else(
            |_| "<unparsable url>".to_owned(),
            |u| {
                format!(
                    "{}://{}:{}",
                    u.scheme(),
                    u.host_str().unwrap_or("?"),
                    u.port_or_known_default().unwrap_or(0)
                )
            },
        );
        if config.insecure {
            tracing::warn!(output = name, url = %shown, "TLS certificate verification is OFF for this output (insecure: true).");
        }
        let client = http::client(
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
        let key = fingerprint(batch);
        let (open, mut refused) = match self.pending.take() {
            Some(p) if p.key == key => (p.open, p.refused),
            _ => ((0..batch.len()).collect(), 0),
        };
        let client = self.client.clone().map_err(WriteError::Fatal)?;
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
                            ItemOutcome::Accepted => {}
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
                    return Err(WriteError::Fatal(why));
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
                    key,
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
    use super::{ItemOutcome, check_pattern, index_name, parse_bulk};

    #[test]
    fn index_names_follow_the_pattern_in_utc_and_lowercase() {
        // 2026-12-01T23:59:59.5Z
        let t = 1_796_169_599.5;
        assert_eq!(index_name("trapster-%Y.%m.%d", t), "trapster-2026.12.01");
        assert_eq!(index_name("Honey-%b-%Y", t), "honey-dec-2026");
        assert_eq!(index_name("fixed", t), "fixed");
        assert_eq!(index_name("t-%Y.%m.%d", t + 0.5), "t-2026.12.02");
        assert!(check_pattern("trapster-%Y.%m.%d").is_ok());
        assert!(check_pattern("bad-%Q").is_err());
        assert!(check_pattern("").is_err());
    }

    #[test]
    fn bulk_answers_are_read_item_by_item() {
        let all_ok = br#"{"took":3,"errors":false,"items":[]}"#;
        assert_eq!(
            parse_bulk(all_ok, 2).unwrap(),
            vec![ItemOutcome::Accepted, ItemOutcome::Accepted]
        );
        let mixed = br#"{"took":3,"errors":true,"items":[
            {"index":{"_index":"a","status":201}},
            {"create":{"_index":"a","status":429,"error":{"type":"es_rejected_execution_exception","reason":"busy"}}},
            {"index":{"_index":"a","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse\n[x]"}}},
            {"index":{"_index":"a","status":503}},
            {"index":{"_index":"a","status":200}}]}"#;
        assert_eq!(
            parse_bulk(mixed, 5).unwrap(),
            vec![
                ItemOutcome::Accepted,
                ItemOutcome::Retry,
                ItemOutcome::Refused {
                    status: 400,
                    kind: "mapper_parsing_exception".to_owned(),
                    reason: "failed to parse[x]".to_owned(),
                },
                ItemOutcome::Retry,
                ItemOutcome::Accepted,
            ]
        );
        assert!(parse_bulk(mixed, 4).unwrap_err().contains("5 items for 4"));
        assert!(parse_bulk(b"<html>", 1).is_err());
        let long = format!(
            r#"{{"errors":true,"items":[{{"index":{{"status":409,"error":{{"type":"t","reason":"{}"}}}}}}]}}"#,
            "r".repeat(1000)
        );
        let ItemOutcome::Refused { reason, .. } = &parse_bulk(long.as_bytes(), 1).unwrap()[0]
        else {
            panic!("refused expected");
        };
        assert_eq!(reason.len(), 200);
    }
}
