//! The `elasticsearch` transport's configuration as written (`url`, `index` or `data_stream`,
//! `username`/`password` or `api_key`, `gzip`, `max_batch`, `max_bytes`, `timeout_secs`,
//! `ca_file`, `insecure`), checked when it is read: a contradiction names the fields.

use std::path::PathBuf;

use serde::Deserialize;

use super::bulk::check_pattern;
use crate::output::client::secret::Secret;

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
