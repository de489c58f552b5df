//! `webhook` output: the enterprise envelope JSON to any HTTP receiver, on the HTTP sink
//! ([`super::api`]), optionally signed with HMAC-SHA256 (`hmac_secret`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::api::ApiConfig;
use crate::output::client::secret::Secret;

const fn default_timeout() -> u64 {
    10
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
