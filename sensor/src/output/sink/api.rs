//! `api` output: HTTP(S) POST of events to a collector. One event per request (`single`), a
//! JSON array (`array`) or NDJSON (`ndjson`) per batch, optional gzip, configurable headers.
//! Connection errors, timeouts, 429 (with its `Retry-After`, seconds or HTTP date) and 5xx are
//! retryable (the driver retries them); any other 4xx is not: the batch is dropped, counted and
//! logged with the status. TLS certificates are verified unless `insecure` is set, which logs a
//! warning naming the output at every start. The URL's query and path and every header value are
//! treated as secrets: logs show only the scheme, host and port. Certificates are verified
//! against the shared root store ([`crate::output::client::http`]).

use std::{collections::BTreeMap, io::Write as _, time::Duration};

use serde::Deserialize;

use crate::output::{
    client::http::{self, without_url},
    client::secret::Secret,
    sink::{Body, Record, Sink, WriteError},
};

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
    /// Events one after the other, newline-separated, as `application/json` (Splunk HEC).
    Concatenated,
    /// `{"jsons": ["<event>", ...]}`: each event as a JSON string (Sekoia.io's `/jsons`).
    Jsons,
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
    /// Signs each body with HMAC-SHA256 under this key, in `signature_header`.
    #[serde(default)]
    pub hmac_secret: Option<Secret>,
    /// Header of the signature (`sha256=<hex>`); default `X-Trapster-Signature-256`.
    #[serde(default)]
    pub signature_header: Option<String>,
    /// Least time between two requests, ms (chat webhooks: about one message per second).
    #[serde(default)]
    pub min_interval_ms: u64,
    /// PEM CA bundle trusted in addition to the system roots (an internal CA).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

impl ApiConfig {
    /// One event per request to `url`, every other option at its default.
    #[must_use]
    pub fn to(url: Secret) -> Self {
        Self {
            url,
            headers: BTreeMap::new(),
            batch: BatchMode::Single,
            max_batch: default_max_batch(),
            gzip: false,
            insecure: false,
            timeout_secs: default_timeout(),
            hmac_secret: None,
            signature_header: None,
            min_interval_ms: 0,
            ca_file: None,
        }
    }
}

/// An HTTP output.
pub struct ApiOutput {
    config: ApiConfig,
    name: String,
    body: Body,
    /// When the last request was sent, for `min_interval_ms`.
    last_request: std::sync::Mutex<Option<tokio::time::Instant>>,
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
        let shown = http::shown_url(config.url.expose());
        let client = http::output_client(
            name,
            &shown,
            config.ca_file.as_deref(),
            config.insecure,
            Duration::from_secs(config.timeout_secs.max(1)),
        );
        Self {
            config,
            name: name.to_owned(),
            body: Body::Format(crate::format::Format::Default),
            last_request: std::sync::Mutex::new(None),
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
            BatchMode::Array | BatchMode::Ndjson | BatchMode::Concatenated | BatchMode::Jsons => {
                records
                    .chunks(self.config.max_batch.max(1))
                    .map(|chunk| {
                        let mut body = Vec::new();
                        if self.config.batch == BatchMode::Jsons {
                            let strings: Vec<String> = chunk
                                .iter()
                                .map(|r| String::from_utf8_lossy(r).into_owned())
                                .collect();
                            let wrapped = serde_json::json!({ "jsons": strings });
                            body = serde_json::to_vec(&wrapped).unwrap_or_default();
                            (body, chunk.len(), "application/json")
                        } else if self.config.batch == BatchMode::Array {
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
                            let content_type = if self.config.batch == BatchMode::Concatenated {
                                "application/json"
                            } else {
                                "application/x-ndjson"
                            };
                            (body, chunk.len(), content_type)
                        }
                    })
                    .collect()
            }
        }
    }

    async fn post(&self, client: &reqwest::Client, body: &[u8], content_type: &str) -> Outcome {
        self.pace().await;
        let mut request = self.request(client, body, content_type);
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
                        .and_then(|v| retry_after(v, std::time::SystemTime::now()));
                    Outcome::Retry(after, "HTTP 429".to_owned())
                } else if status.is_server_error() {
                    Outcome::Retry(None, format!("HTTP {}", status.as_u16()))
                } else {
                    Outcome::Refused(status.as_u16())
                }
            }
        }
    }

    /// A POST of `body` with the configured headers and, with `hmac_secret`, its signature
    /// (computed over the body as sent, before any gzip).
    fn request(
        &self,
        client: &reqwest::Client,
        body: &[u8],
        content_type: &str,
    ) -> reqwest::RequestBuilder {
        let mut request = client
            .post(self.config.url.expose())
            .header("Content-Type", content_type);
        for (name, value) in &self.config.headers {
            request = request.header(name, value.expose());
        }
        if let Some(key) = &self.config.hmac_secret {
            let header = self
                .config
                .signature_header
                .as_deref()
                .unwrap_or("X-Trapster-Signature-256");
            let mac = hmac_sha256(key.expose().as_bytes(), body);
            request = request.header(header, format!("sha256={}", hex::encode(mac)));
        }
        request
    }

    /// Waits until `min_interval_ms` has passed since the previous request.
    async fn pace(&self) {
        let interval = Duration::from_millis(self.config.min_interval_ms);
        if interval.is_zero() {
            return;
        }
        let wait = {
            let mut last = self
                .last_request
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = tokio::time::Instant::now();
            let next = last.map_or(now, |t| (t + interval).max(now));
            *last = Some(next);
            next
        };
        tokio::time::sleep_until(wait).await;
    }

    /// Sends one record as its own request and returns the receiver's answer (status and the
    /// start of its body), for `sensor send-test`.
    ///
    /// # Errors
    /// A connection failure (URL-free).
    pub async fn probe(&self, record: &[u8]) -> Result<String, String> {
        let client = self.client.clone()?;
        let Some((body, _, content_type)) = self.bodies(&[record]).into_iter().next() else {
            return Err("nothing to send".to_owned());
        };
        let response = self
            .request(&client, &body, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| without_url(&e))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
        Ok(format!("{} from {}: {text}", status, self.shown))
    }

    /// Events per request: 1 in `single` mode, `max_batch` otherwise.
    #[must_use]
    pub fn per_request(&self) -> usize {
        match self.config.batch {
            BatchMode::Single => 1,
            BatchMode::Array | BatchMode::Ndjson | BatchMode::Concatenated | BatchMode::Jsons => {
                self.config.max_batch.max(1)
            }
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

    /// Encodes as `body` says.
    #[must_use]
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

#[async_trait::async_trait]
impl Sink for ApiOutput {
    fn body(&self) -> &Body {
        &self.body
    }

    fn batch_size(&self) -> usize {
        self.per_request()
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    async fn write(&mut self, batch: &[Record<'_>]) -> Result<u64, WriteError> {
        let records: Vec<&[u8]> = batch.iter().map(|r| r.bytes).collect();
        let name = self.name.clone();
        self.try_write(&records, &name)
            .await
            .map_err(|(after, reason)| WriteError::Retry { reason, after })
    }
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key` (the `hmac` crate).
#[must_use]
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Mac as _, SimpleHmac};
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let Ok(mut mac) = SimpleHmac::<sha2::Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The delay a `Retry-After` value asks for: delay-seconds or an HTTP date (RFC 9110 10.2.3),
/// at most [`MAX_BACKOFF`].
#[must_use]
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let after = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(after.min(MAX_BACKOFF))
}

#[cfg(test)]
mod hmac_tests {
    use std::time::{Duration, SystemTime};

    use super::{hmac_sha256, retry_after};

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2026 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // In the past: now; far away: capped.
        assert_eq!(
            retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("86400", now), Some(Duration::from_secs(60)));
        assert_eq!(retry_after("soon", SystemTime::UNIX_EPOCH), None);
    }

    #[test]
    fn rfc_4231_test_cases() {
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (test case 6).
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
