//! The `kafka` transport's configuration, its `check`, and the librdkafka properties it
//! becomes.

use std::path::PathBuf;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::output::client::secret::Secret;

/// `transport: {"type": "kafka", "brokers": "10.0.0.9:9092", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// Topic template (`trapster.{channel}` by default).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Record key template (`{src_ip}` by default, so one attacker's events stay in one
    /// partition, in order); empty for no key.
    #[serde(default = "default_key")]
    pub key: String,
    /// `all` (default), `1` or `0`: which replicas acknowledge before a record counts as sent.
    #[serde(default = "default_acks", deserialize_with = "string_or_number")]
    pub acks: String,
    /// librdkafka's idempotent producer (needs `acks: all`): its own retries never duplicate or
    /// reorder records.
    #[serde(default = "default_true")]
    pub idempotent: bool,
    /// `none` (default), `gzip`, `snappy`, `lz4` or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// SASL authentication.
    #[serde(default)]
    pub sasl: Option<Sasl>,
    /// Connect with TLS.
    #[serde(default)]
    pub tls: bool,
    /// PEM CA bundle verifying the brokers (else the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM client key (mutual TLS).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Skip certificate verification (logged at every start).
    #[serde(default)]
    pub insecure: bool,
    /// How long one attempt waits for every delivery report (librdkafka's
    /// `message.timeout.ms`); a record not acknowledged in time is retried by the output.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// librdkafka's own retries of a failed produce request inside one attempt (default 2; at
    /// least 1 with `idempotent`).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

/// Record batch compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// `sasl: {"mechanism": "SCRAM-SHA-512", "username": "sensor", "password": {"env": "KAFKA_PW"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// User name.
    pub username: String,
    /// Password (inline, `{"env": ...}` or `{"file": ...}`).
    pub password: Secret,
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Mechanism {
    /// PLAIN (send it over TLS only).
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    /// SCRAM-SHA-256.
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
}

impl Mechanism {
    const fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

fn default_topic() -> String {
    "trapster.{channel}".to_owned()
}

fn default_key() -> String {
    "{src_ip}".to_owned()
}

fn default_acks() -> String {
    "all".to_owned()
}

const fn default_true() -> bool {
    true
}

const fn default_timeout() -> u64 {
    30
}

const fn default_retries() -> u32 {
    2
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom("acks is \"all\", 1 or 0")),
    }
}

impl KafkaConfig {
    /// The mistakes `check` reports, each naming its field.
    ///
    /// # Errors
    /// The field and the reason.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let brokers: Vec<&str> = self.brokers.split(',').map(str::trim).collect();
        for broker in brokers {
            let port = broker.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if broker.is_empty() || broker.contains("://") || !matches!(port, Some(Ok(1..))) {
                return Err((
                    "brokers",
                    format!("`{broker}`: list brokers as host:port, comma-separated"),
                ));
            }
        }
        // What the template itself contributes must be a legal topic name; filled values are
        // made safe when sending.
        let literal = self.topic.split('{').enumerate().all(|(i, part)| {
            let text = if i == 0 {
                part
            } else {
                part.split_once('}').map_or("", |(_, t)| t)
            };
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        });
        if self.topic.is_empty() || self.topic.len() > 249 || !literal {
            return Err((
                "topic",
                "a topic has 1 to 249 of [A-Za-z0-9._-] (and {field} placeholders)".to_owned(),
            ));
        }
        if !matches!(self.acks.as_str(), "all" | "-1" | "1" | "0") {
            return Err(("acks", format!("`{}`: use \"all\", 1 or 0", self.acks)));
        }
        if self.idempotent && !matches!(self.acks.as_str(), "all" | "-1") {
            return Err((
                "acks",
                "the idempotent producer needs acks \"all\" (or set idempotent: false)".to_owned(),
            ));
        }
        if self.idempotent && self.retries == 0 {
            return Err((
                "retries",
                "the idempotent producer needs at least 1 (or set idempotent: false)".to_owned(),
            ));
        }
        if self.timeout_secs == 0 {
            return Err(("timeout_secs", "must be at least 1".to_owned()));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err((
                if self.cert_file.is_some() {
                    "key_file"
                } else {
                    "cert_file"
                },
                "a client certificate needs both cert_file and key_file".to_owned(),
            ));
        }
        if let Some(sasl) = &self.sasl
            && sasl.username.is_empty()
        {
            return Err(("sasl.username", "must not be empty".to_owned()));
        }
        Ok(())
    }

    /// The librdkafka producer properties.
    pub(super) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        let timeout_ms = self.timeout_secs.max(1).saturating_mul(1000).to_string();
        let tls = self.tls || self.ca_file.is_some() || self.cert_file.is_some();
        let protocol = match (&self.sasl, tls) {
            (None, false) => "plaintext",
            (None, true) => "ssl",
            (Some(_), false) => "sasl_plaintext",
            (Some(_), true) => "sasl_ssl",
        };
        c.set("bootstrap.servers", self.brokers.replace(' ', ""))
            .set("acks", &self.acks)
            .set("enable.idempotence", self.idempotent.to_string())
            .set("compression.codec", self.compression.name())
            .set("message.timeout.ms", &timeout_ms)
            .set("socket.timeout.ms", &timeout_ms)
            .set("message.send.max.retries", self.retries.to_string())
            .set("retry.backoff.ms", "100")
            .set("linger.ms", "5")
            .set("security.protocol", protocol);
        if let Some(sasl) = &self.sasl {
            c.set("sasl.mechanism", sasl.mechanism.name())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", sasl.password.expose());
        }
        if let Some(ca) = &self.ca_file {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            c.set("ssl.certificate.location", cert.display().to_string())
                .set("ssl.key.location", key.display().to_string());
        }
        if self.insecure {
            c.set("enable.ssl.certificate.verification", "false");
        }
        c
    }
}
