//! `sekoia` output: the Sekoia.io HTTP intake, on the HTTP sink ([`super::api`]): the
//! enterprise envelopes as JSON strings in `{"jsons": [...]}`, with the intake key header.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::api::{ApiConfig, BatchMode};
use crate::output::client::secret::Secret;

const fn default_timeout() -> u64 {
    10
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
