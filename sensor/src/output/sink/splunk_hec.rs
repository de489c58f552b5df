//! `splunk_hec` output: Splunk HTTP Event Collector, on the HTTP sink ([`super::api`]): HEC
//! event objects, concatenated and gzipped, `Authorization: Splunk <token>`; 503 is retried,
//! 403 (a bad token) is not.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::api::{ApiConfig, BatchMode};
use crate::{format::chat::HecMeta, output::client::secret::Secret};

const fn default_timeout() -> u64 {
    10
}

const fn yes() -> bool {
    true
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
