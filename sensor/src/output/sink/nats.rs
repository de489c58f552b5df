//! `nats` output: every message published to a NATS subject, by default into JetStream with a
//! publish acknowledgement for each (`async-nats`, the NATS maintainers' client).
//!
//! - `subject` is a template (`trapster.{channel}` by default): `{channel}`, `{logtype}`,
//!   `{category}` and `{device}` are read from the encoded JSON message (the `trapster` format
//!   and the others carry them; a field a message lacks, or a CEF line, gives `unknown`); values
//!   are made subject-safe (no spaces, `*`, `>`; dots kept, so `{logtype}` nests).
//! - With `jetstream` (default), a batch counts as delivered only when the stream acknowledged
//!   every message; each carries `Nats-Msg-Id` (the message's `id`, else a SHA-256 of its
//!   bytes), so a batch retried after a partial failure is de-duplicated by the server within
//!   its duplicate window instead of stored twice. Without `jetstream`, core NATS publish plus a
//!   flush (at most once).
//! - Authentication: `credentials_file` (`.creds`), `token`, or `username`/`password`; TLS with
//!   the root store every output shares (system plus `ca_file`), `insecure` to skip checks.
//!
//! A failure drops the client; the driver's backoff reconnects (or, with a spool, delivers from
//! disk), so a server restart loses nothing that was spooled.

use std::{fmt, path::PathBuf, time::Duration};

use serde::Deserialize;
use serde_json::Value;
use sha2::Digest as _;

use crate::output::{
    client::secret::Secret,
    sink::{Body, Record, Sink, WriteError},
};

/// `transport: {"type": "nats", "url": "nats://10.0.0.9:4222", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated (`nats://` or `tls://`).
    pub url: String,
    /// Subject template.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Publish into JetStream and wait for each acknowledgement.
    #[serde(default = "default_true")]
    pub jetstream: bool,
    /// A `.creds` file (JWT and NKey seed).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Token authentication.
    #[serde(default)]
    pub token: Option<Secret>,
    /// User for user/password authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for user/password authentication.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Require TLS.
    #[serde(default)]
    pub tls: bool,
    /// PEM CA bundle added to the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (logged at every start).
    #[serde(default)]
    pub insecure: bool,
    /// Connection and acknowledgement timeout.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_subject() -> String {
    "trapster.{channel}".to_owned()
}

const fn default_true() -> bool {
    true
}

const fn default_timeout() -> u64 {
    10
}

impl NatsConfig {
    /// The mistakes `check` reports: no URL, a URL of another scheme, a subject template with
    /// wildcards or spaces.
    ///
    /// # Errors
    /// The field and the reason.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let urls: Vec<&str> = self.url.split(',').map(str::trim).collect();
        if urls.iter().any(|u| u.is_empty()) {
            return Err((
                "url",
                "needs a server URL such as nats://10.0.0.9:4222".to_owned(),
            ));
        }
        for url in urls {
            let scheme = url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("nats" | "tls")) {
                return Err((
                    "url",
                    format!("`{url}`: use nats://host:port (or tls://host:port)"),
                ));
            }
        }
        if self.subject.is_empty()
            || self
                .subject
                .chars()
                .any(|c| c.is_whitespace() || c == '*' || c == '>')
        {
            return Err((
                "subject",
                "a subject has no spaces or wildcards (`*`, `>`)".to_owned(),
            ));
        }
        Ok(())
    }
}

/// The subject for one encoded message.
fn subject(template: &str, record: &[u8]) -> String {
    super::template::fill(template, record, super::template::Safe::Name)
}

/// The JetStream de-duplication id of one message: its `id`, else a hash of its bytes.
fn message_id(record: &[u8]) -> String {
    serde_json::from_slice::<Value>(record)
        .ok()
        .and_then(|j| j.get("id").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| hex::encode(sha2::Sha256::digest(record)))
}

/// A NATS output with its (lazily opened) client.
pub struct NatsOutput {
    config: NatsConfig,
    client: Option<async_nats::Client>,
    body: Body,
}

impl fmt::Debug for NatsOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsOutput")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl NatsOutput {
    /// Prepares the output; connecting happens on first write.
    #[must_use]
    pub fn new(config: NatsConfig, name: &str) -> Self {
        if config.insecure {
            tracing::warn!(
                output = name,
                "TLS certificate verification is OFF for this output (insecure: true)."
            );
        }
        Self {
            config,
            client: None,
            body: Body::Format(crate::format::Format::Trapster),
        }
    }

    /// Encodes as `body` says.
    #[must_use]
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs.max(1))
    }

    async fn connect(&self) -> Result<async_nats::Client, String> {
        let c = &self.config;
        let mut options = match &c.credentials_file {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?,
            None => async_nats::ConnectOptions::new(),
        };
        if let Some(token) = &c.token {
            options = options.token(token.expose().to_owned());
        }
        if let (Some(user), Some(password)) = (&c.username, &c.password) {
            options = options.user_and_password(user.clone(), password.expose().to_owned());
        }
        if c.tls || c.url.contains("tls://") {
            let tls =
                crate::output::client::tls::client_config(c.ca_file.as_deref(), None, c.insecure)?;
            options = options.require_tls(true).tls_client_config(tls);
        }
        let urls: Vec<async_nats::ServerAddr> = c
            .url
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("server URL: {e}"))?;
        options
            .connection_timeout(self.timeout())
            .request_timeout(Some(self.timeout()))
            // The driver retries; the client must not queue messages for a server that is gone.
            .max_reconnects(Some(0))
            .connect(urls)
            .await
            .map_err(|e| format!("connecting: {e}"))
    }

    /// One attempt at publishing `records`; with JetStream, every acknowledgement awaited.
    ///
    /// # Errors
    /// The step that failed, without secrets.
    pub async fn try_write(&mut self, records: &[&[u8]]) -> Result<Vec<String>, String> {
        if self.client.is_none() {
            self.client = Some(self.connect().await?);
        }
        let Some(client) = self.client.clone() else {
            return Err("not connected".to_owned());
        };
        let outcome = self.publish(&client, records).await;
        if outcome.is_err() {
            self.client = None;
        }
        outcome
    }

    async fn publish(
        &self,
        client: &async_nats::Client,
        records: &[&[u8]],
    ) -> Result<Vec<String>, String> {
        let mut acks = Vec::with_capacity(records.len());
        if self.config.jetstream {
            let js = async_nats::jetstream::new(client.clone());
            let mut pending = Vec::with_capacity(records.len());
            for record in records {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", message_id(record).as_str());
                let future = js
                    .publish_with_headers(
                        subject(&self.config.subject, record),
                        headers,
                        bytes::Bytes::copy_from_slice(record),
                    )
                    .await
                    .map_err(|e| format!("publishing: {e}"))?;
                pending.push(future);
            }
            for future in pending {
                let ack = tokio::time::timeout(self.timeout(), future.into_future())
                    .await
                    .map_err(|_| "no acknowledgement in time".to_owned())?
                    .map_err(|e| format!("acknowledgement: {e}"))?;
                acks.push(format!(
                    "stream {} seq {}{}",
                    ack.stream,
                    ack.sequence,
                    if ack.duplicate { " (duplicate)" } else { "" }
                ));
            }
        } else {
            for record in records {
                client
                    .publish(
                        subject(&self.config.subject, record),
                        bytes::Bytes::copy_from_slice(record),
                    )
                    .await
                    .map_err(|e| format!("publishing: {e}"))?;
            }
            tokio::time::timeout(self.timeout(), client.flush())
                .await
                .map_err(|_| "flush timed out".to_owned())?
                .map_err(|e| format!("flush: {e}"))?;
        }
        Ok(acks)
    }
}

#[async_trait::async_trait]
impl Sink for NatsOutput {
    fn body(&self) -> &Body {
        &self.body
    }

    fn batch_size(&self) -> usize {
        256
    }

    fn describe(&self) -> String {
        self.config.url.clone()
    }

    async fn write(&mut self, batch: &[Record<'_>]) -> Result<u64, WriteError> {
        let records: Vec<&[u8]> = batch.iter().map(|r| r.bytes).collect();
        self.try_write(&records)
            .await
            .map(|_| 0)
            .map_err(WriteError::retry)
    }
}

#[cfg(test)]
mod tests {
    use super::{NatsConfig, message_id, subject};

    #[test]
    fn subjects_come_from_the_message_and_are_safe() {
        let envelope = br#"{"id":"7f0c","channel":"ssh","logtype":"ssh.login","category":"login","device":"fw 01"}"#;
        assert_eq!(subject("trapster.{channel}", envelope), "trapster.ssh");
        assert_eq!(
            subject("t.{logtype}.{device}", envelope),
            "t.ssh.login.fw_01"
        );
        let community = br#"{"device":"s1","logtype":"ftp.login"}"#;
        assert_eq!(subject("trapster.{channel}", community), "trapster.ftp");
        assert_eq!(subject("x.{category}", community), "x.unknown");
        assert_eq!(subject("cef.{channel}", b"CEF:0|..."), "cef.unknown");
        assert_eq!(message_id(envelope), "7f0c");
        assert_eq!(message_id(b"CEF:0|x").len(), 64);
    }

    #[test]
    fn check_names_url_and_subject_mistakes() {
        let config =
            |json: serde_json::Value| -> NatsConfig { serde_json::from_value(json).unwrap() };
        assert!(
            config(serde_json::json!({"url": "nats://10.0.0.9:4222"}))
                .check()
                .is_ok()
        );
        assert!(
            config(serde_json::json!({"url": "nats://a:4222, tls://b:4222"}))
                .check()
                .is_ok()
        );
        assert_eq!(
            config(serde_json::json!({"url": "http://10.0.0.9"}))
                .check()
                .unwrap_err()
                .0,
            "url"
        );
        assert_eq!(
            config(serde_json::json!({"url": "nats://a:1", "subject": "t.>"}))
                .check()
                .unwrap_err()
                .0,
            "subject"
        );
    }
}
