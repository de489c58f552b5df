//! `slack` output (and the configuration `teams` shares): an incoming webhook on the HTTP
//! sink ([`super::api`]), one message per request, paced by `min_interval_ms`, honouring
//! `Retry-After`. The message itself is [`crate::format::chat::slack`].

use serde::Deserialize;

use super::api::ApiConfig;
use crate::output::client::secret::Secret;

const fn default_timeout() -> u64 {
    10
}

const fn one_second() -> u64 {
    1_000
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
