//! `api` output: HTTP(S) POST of events to a collector. One event per request (`single`), a
//! JSON array (`array`) or NDJSON (`ndjson`) per batch, optional gzip, configurable headers.
//! Retries with exponential backoff and jitter on connection errors, timeouts, 429 (honouring
//! `Retry-After`) and 5xx; any other 4xx is not retried: the batch is dropped, counted and
//! logged with the status. TLS certificates are verified unless `insecure` is set, which logs a
//! warning naming the output at every start. The URL's query and path and every header value are
//! treated as secrets: logs show only the scheme, host and port. With a spool configured, the
//! fan-out delivers from disk through [`ApiOutput::try_write`].

use std::{collections::BTreeMap, io::Write as _, time::Duration};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{redis::jittered, secret::Secret};

/// How events are grouped into request bodies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchMode {
    /// One event per request (Trapster community's API logger).
    #[default]
    Single,
    /// A JSON array of events per request (JSON formats only).
    Array,
    /// Newline-delimited events per request.
    Ndjson,
}

const fn default_timeout() -> u64 {
    10
}

const fn default_max_batch() -> usize {
    100
}

/// `transport: {"type": "api", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Collector URL (may carry a key: never logged beyond scheme, host and port).
    pub url: Secret,
    /// Extra request headers (values are secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Grouping.
    #[serde(default)]
    pub batch: BatchMode,
    /// Most events per request in `array`/`ndjson` mode.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// gzip the body (`Content-Encoding: gzip`).
    #[serde(default)]
    pub gzip: bool,
    /// Skip TLS certificate verification (logged as a warning at start).
    #[serde(default)]
    pub insecure: bool,
    /// Per-request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// What one delivery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Retries it took.
    pub retries: u64,
    /// Events dropped because the collector refused them (4xx other than 429).
    pub refused: u64,
}

/// An HTTP output.
#[derive(Debug)]
pub struct ApiOutput {
    config: ApiConfig,
    client: Result<reqwest::Client, String>,
    /// `scheme://host:port`, the only part of the URL ever logged.
    shown: String,
}

/// Longest `Retry-After` honoured.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

enum Outcome {
    Delivered,
    Retry(Option<Duration>, String),
    Refused(u16),
}

impl ApiOutput {
    /// Builds the client; a bad URL or TLS setup is reported at the first write.
    #[must_use]
    pub fn new(config: ApiConfig, name: &str) -> Self {
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
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .danger_accept_invalid_certs(config.insecure)
            .build()
            .map_err(|e| format!("building the HTTP client: {}", without_url(&e)));
        Self {
            config,
            client,
            shown,
        }
    }

    fn bodies(&self, records: &[&[u8]]) -> Vec<(Vec<u8>, usize, &'static str)> {
        match self.config.batch {
            BatchMode::Single => records
                .iter()
                .map(|r| (r.to_vec(), 1, "application/json"))
                .collect(),
            BatchMode::Array | BatchMode::Ndjson => records
                .chunks(self.config.max_batch.max(1))
                .map(|chunk| {
                    let mut body = Vec::new();
                    if self.config.batch == BatchMode::Array {
                        body.push(b'[');
                        for (i, r) in chunk.iter().enumerate() {
                            if i > 0 {
                                body.push(b',');
                            }
                            body.extend_from_slice(r);
                        }
                        body.push(b']');
                        (body, chunk.len(), "application/json")
                    } else {
                        for r in chunk {
                            body.extend_from_slice(r);
                            body.push(b'\n');
                        }
                        (body, chunk.len(), "application/x-ndjson")
                    }
                })
                .collect(),
        }
    }

    async fn post(&self, client: &reqwest::Client, body: &[u8], content_type: &str) -> Outcome {
        let mut request = client
            .post(self.config.url.expose())
            .header("Content-Type", content_type);
        for (name, value) in &self.config.headers {
            request = request.header(name, value.expose());
        }
        let body = if self.config.gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            if enc.write_all(body).is_err() {
                return Outcome::Retry(None, "gzip failed".to_owned());
            }
            request = request.header("Content-Encoding", "gzip");
            enc.finish().unwrap_or_default()
        } else {
            body.to_vec()
        };
        match request.body(body).send().await {
            Err(err) => Outcome::Retry(None, without_url(&err)),
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    Outcome::Delivered
                } else if status.as_u16() == 429 {
                    let after = resp
                        .headers()
                        .get("Retry-After")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(MAX_BACKOFF));
                    Outcome::Retry(after, "HTTP 429".to_owned())
                } else if status.is_server_error() {
                    Outcome::Retry(None, format!("HTTP {}", status.as_u16()))
                } else {
                    Outcome::Refused(status.as_u16())
                }
            }
        }
    }

    /// Events per request: 1 in `single` mode, `max_batch` otherwise.
    #[must_use]
    pub fn per_request(&self) -> usize {
        match self.config.batch {
            BatchMode::Single => 1,
            BatchMode::Array | BatchMode::Ndjson => self.config.max_batch.max(1),
        }
    }

    /// One attempt at delivering `records` (at most [`Self::per_request`] of them, one request).
    /// `Ok` carries how many the collector refused (not to be retried).
    ///
    /// # Errors
    /// A retryable failure: the delay the collector asked for, if any, and a URL-free reason.
    pub async fn try_write(
        &self,
        records: &[&[u8]],
        name: &str,
    ) -> Result<u64, (Option<Duration>, String)> {
        let client = self.client.clone().map_err(|e| (None, e))?;
        let mut refused = 0;
        for (body, events, content_type) in self.bodies(records) {
            match self.post(&client, &body, content_type).await {
                Outcome::Delivered => {}
                Outcome::Refused(status) => {
                    refused += events as u64;
                    tracing::error!(output = name, url = %self.shown, status, events, "Collector refused the events (no retry for this status); dropped.");
                }
                Outcome::Retry(after, why) => return Err((after, why)),
            }
        }
        Ok(refused)
    }

    /// Delivers `records` (encoded events without their newlines), retrying each request until
    /// it is delivered, refused, or `give_up` fires (then the last error, URL-free, is returned).
    pub async fn write(
        &mut self,
        records: &[&[u8]],
        name: &str,
        give_up: &CancellationToken,
    ) -> Result<Delivery, String> {
        let mut delivery = Delivery::default();
        for chunk in records.chunks(self.per_request()) {
            let mut backoff = super::redis::first_backoff();
            let mut attempts = 0u64;
            loop {
                match self.try_write(chunk, name).await {
                    Ok(refused) => {
                        delivery.refused += refused;
                        break;
                    }
                    Err((after, why)) => {
                        if attempts == 0 {
                            tracing::warn!(output = name, url = %self.shown, error = %why, "Delivery failed; retrying with backoff.");
                        }
                        attempts += 1;
                        delivery.retries += 1;
                        let wait = after.unwrap_or_else(|| jittered(backoff));
                        tokio::select! {
                            () = give_up.cancelled() => return Err(why),
                            () = tokio::time::sleep(wait) => {}
                        }
                        backoff = super::redis::next_backoff(backoff);
                    }
                }
            }
        }
        Ok(delivery)
    }
}

/// An HTTP error's text without the URL (which may carry a key): its kind and its cause.
fn without_url(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_builder() {
        "invalid request"
    } else {
        "request failed"
    };
    match std::error::Error::source(err) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}
