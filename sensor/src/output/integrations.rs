//! SIEM, chat and webhook integrations built on the HTTP transport: Splunk HEC, Sekoia.io,
//! Slack, Microsoft Teams (Workflows) and a custom webhook. Each is a configuration of
//! [`super::api::ApiOutput`] (URL, headers, batching, retries, spool) plus the body it sends.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    api::{ApiConfig, BatchMode},
    secret::Secret,
};
use crate::format::chat::HecMeta;

const fn default_timeout() -> u64 {
    10
}

const fn yes() -> bool {
    true
}

const fn one_second() -> u64 {
    1_000
}

/// `{"type": "splunk_hec", "url": "https://splunk:8088", "token": "...", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HecConfig {
    /// Base URL of the HEC endpoint (`/services/collector/event` is appended).
    pub url: Secret,
    /// HEC token (sent as `Authorization: Splunk <token>`; never logged).
    pub token: Secret,
    /// Index; the token's default when absent.
    #[serde(default)]
    pub index: Option<String>,
    /// `source`; default `trapster-sensor`.
    #[serde(default)]
    pub source: Option<String>,
    /// `sourcetype`; default `trapster`.
    #[serde(default)]
    pub sourcetype: Option<String>,
    /// gzip bodies (default true).
    #[serde(default = "yes")]
    pub gzip: bool,
    /// Skip certificate verification (warned at start).
    #[serde(default)]
    pub insecure: bool,
    /// PEM CA bundle trusted in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl HecConfig {
    /// The event metadata.
    #[must_use]
    pub fn meta(&self) -> HecMeta {
        HecMeta {
            source: self
                .source
                .clone()
                .unwrap_or_else(|| "trapster-sensor".to_owned()),
            sourcetype: self
                .sourcetype
                .clone()
                .unwrap_or_else(|| "trapster".to_owned()),
            index: self.index.clone(),
        }
    }

    /// The HTTP transport it runs on.
    #[must_use]
    pub fn api(&self) -> ApiConfig {
        let base = self.url.expose().trim_end_matches('/');
        let mut headers = BTreeMap::new();
        headers.insert(
            "Authorization".to_owned(),
            Secret::new(format!("Splunk {}", self.token.expose())),
        );
        ApiConfig {
            headers,
            batch: BatchMode::Concatenated,
            gzip: self.gzip,
            insecure: self.insecure,
            timeout_secs: self.timeout_secs,
            ca_file: self.ca_file.clone(),
            ..ApiConfig::to(Secret::new(format!("{base}/services/collector/event")))
        }
    }
}

/// `{"type": "sekoia", "intake_key": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SekoiaConfig {
    /// The intake key (header `X-SEKOIAIO-INTAKE-KEY`; never logged).
    pub intake_key: Secret,
    /// Intake base URL; default `https://intake.sekoia.io`.
    #[serde(default)]
    pub url: Option<Secret>,
    /// Skip certificate verification (warned at start).
    #[serde(default)]
    pub insecure: bool,
    /// PEM CA bundle trusted in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl SekoiaConfig {
    /// The HTTP transport it runs on: `POST <url>/jsons` with `{"jsons": [...]}`.
    #[must_use]
    pub fn api(&self) -> ApiConfig {
        let base = self
            .url
            .as_ref()
            .map_or("https://intake.sekoia.io", Secret::expose)
            .trim_end_matches('/')
            .to_owned();
        let mut headers = BTreeMap::new();
        headers.insert("X-SEKOIAIO-INTAKE-KEY".to_owned(), self.intake_key.clone());
        ApiConfig {
            headers,
            batch: BatchMode::Jsons,
            insecure: self.insecure,
            timeout_secs: self.timeout_secs,
            ca_file: self.ca_file.clone(),
            ..ApiConfig::to(Secret::new(format!("{base}/jsons")))
        }
    }
}

/// `{"type": "slack" | "teams", "webhook_url": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    /// The incoming-webhook (Slack) or Workflows (Teams) URL; a secret.
    pub webhook_url: Secret,
    /// Least time between two messages (default 1000 ms: Slack's and Teams' rate).
    #[serde(default = "one_second")]
    pub min_interval_ms: u64,
    /// Skip certificate verification (warned at start).
    #[serde(default)]
    pub insecure: bool,
    /// PEM CA bundle trusted in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl ChatConfig {
    /// The HTTP transport it runs on: one message per request, paced.
    #[must_use]
    pub fn api(&self) -> ApiConfig {
        ApiConfig {
            insecure: self.insecure,
            timeout_secs: self.timeout_secs,
            min_interval_ms: self.min_interval_ms,
            ca_file: self.ca_file.clone(),
            ..ApiConfig::to(self.webhook_url.clone())
        }
    }
}

/// `{"type": "webhook", "url": "...", "headers": {...}, "hmac_secret": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Receiver URL (a secret).
    pub url: Secret,
    /// Extra headers (values are secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Signs each body: `<signature_header>: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub hmac_secret: Option<Secret>,
    /// Header carrying the signature; default `X-Trapster-Signature-256`.
    #[serde(default)]
    pub signature_header: Option<String>,
    /// Least time between two requests, ms (default 0).
    #[serde(default)]
    pub min_interval_ms: u64,
    /// Skip certificate verification (warned at start).
    #[serde(default)]
    pub insecure: bool,
    /// PEM CA bundle trusted in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl WebhookConfig {
    /// The HTTP transport it runs on: the envelope JSON, one message per request.
    #[must_use]
    pub fn api(&self) -> ApiConfig {
        ApiConfig {
            headers: self.headers.clone(),
            insecure: self.insecure,
            timeout_secs: self.timeout_secs,
            hmac_secret: self.hmac_secret.clone(),
            signature_header: Some(
                self.signature_header
                    .clone()
                    .unwrap_or_else(|| "X-Trapster-Signature-256".to_owned()),
            ),
            min_interval_ms: self.min_interval_ms,
            ca_file: self.ca_file.clone(),
            ..ApiConfig::to(self.url.clone())
        }
    }
}
