//! `kafka` output: every message produced to a Kafka topic through librdkafka (`rdkafka`, built
//! from the crate's bundled sources), a record counting as sent only once its delivery report
//! says the brokers stored it.
//!
//! - `topic` is a template (`trapster.{channel}` by default) and `key` another (`{src_ip}` by
//!   default, so one attacker's events land in one partition, in order; empty for none); both
//!   are filled from the encoded message by [`super::template`], the topic made name-safe.
//! - `acks` (`all` by default), the idempotent producer (default: librdkafka's own retries
//!   neither duplicate nor reorder), `compression`, SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512
//!   and TLS (CA, client certificate, `insecure`).
//! - One [`Sink::write`] is one attempt: every record of the batch is enqueued, then every
//!   delivery report awaited (each arrives within `timeout_secs`, librdkafka's
//!   `message.timeout.ms`). Records the brokers refuse for good (too large, invalid) are dropped
//!   and counted; records that failed otherwise (timeout, broker down, retriable errors left
//!   after librdkafka's `retries`) stay open and the attempt fails, so the driver retries or
//!   spools them. A retried batch re-sends only its open records, never one already stored.
//!
//! The SASL password is handed to librdkafka only; it is never logged and scrubbed from any
//! error text.

mod config;

use std::{fmt, time::Duration};

use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::{FutureProducer, FutureRecord},
};

pub use self::config::{Compression, KafkaConfig, Mechanism, Sasl};
use super::{
    Body, Record, Sink, WriteError,
    elasticsearch::fingerprint,
    template::{Safe, fill},
};

/// What is left of a batch an attempt did not finish.
struct Pending {
    /// [`fingerprint`] of the batch.
    key: u64,
    /// Positions not yet delivered nor refused, ascending.
    open: Vec<usize>,
    /// Records refused by earlier attempts.
    refused: u64,
}

/// How one record's delivery went.
enum Outcome {
    Delivered,
    Refused(String),
    Retry(String),
}

/// Whether the brokers refused `code` for good (another try gets the same answer).
const fn permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::InvalidTimestamp
    )
}

fn outcome(error: &KafkaError) -> Outcome {
    match error.rdkafka_error_code() {
        Some(code) if permanent(code) => Outcome::Refused(error.to_string()),
        _ => Outcome::Retry(error.to_string()),
    }
}

/// The Kafka output with its (lazily created) producer.
pub struct KafkaOutput {
    config: KafkaConfig,
    name: String,
    body: Body,
    producer: Option<FutureProducer>,
    pending: Option<Pending>,
}

impl fmt::Debug for KafkaOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaOutput")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaOutput {
    /// Prepares the output; the producer is created at the first write.
    #[must_use]
    pub fn new(config: KafkaConfig, name: &str) -> Self {
        if config.insecure {
            tracing::warn!(
                output = name,
                "TLS certificate verification is OFF for this output (insecure: true)."
            );
        }
        Self {
            config,
            name: name.to_owned(),
            body: Body::Format(crate::format::Format::Trapster),
            producer: None,
            pending: None,
        }
    }

    /// Encodes as `body` says.
    #[must_use]
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// `text` without the SASL password.
    fn scrub(&self, text: &str) -> String {
        match &self.config.sasl {
            Some(sasl) if !sasl.password.expose().is_empty() => {
                text.replace(sasl.password.expose(), "***")
            }
            _ => text.to_owned(),
        }
    }

    fn producer(&mut self) -> Result<FutureProducer, String> {
        if let Some(p) = &self.producer {
            return Ok(p.clone());
        }
        let producer: FutureProducer = self
            .config
            .client_config()
            .create()
            .map_err(|e| self.scrub(&format!("creating the producer: {e}")))?;
        self.producer = Some(producer.clone());
        Ok(producer)
    }

    /// Produces the records at `positions` of `records` and waits for their delivery reports,
    /// in order of `positions`.
    async fn produce(
        &self,
        producer: &FutureProducer,
        records: &[&[u8]],
        positions: &[usize],
    ) -> Vec<(usize, Outcome)> {
        let mut reports = Vec::with_capacity(positions.len());
        let mut outcomes = Vec::with_capacity(positions.len());
        for (n, &position) in positions.iter().enumerate() {
            let Some(record) = records.get(position) else {
                continue;
            };
            let topic = fill(&self.config.topic, record, Safe::Name);
            let key =
                (!self.config.key.is_empty()).then(|| fill(&self.config.key, record, Safe::Any));
            let mut message = FutureRecord::<String, [u8]>::to(&topic).payload(*record);
            if let Some(key) = &key {
                message = message.key(key);
            }
            match producer.send_result(message) {
                Ok(report) => reports.push((position, report)),
                Err((error, _)) => {
                    // The local queue is full: this one and the rest wait for the next attempt.
                    let why = format!("enqueueing: {error}");
                    outcomes.extend(
                        positions
                            .iter()
                            .skip(n)
                            .map(|&p| (p, Outcome::Retry(why.clone()))),
                    );
                    break;
                }
            }
        }
        // Every report arrives within message.timeout.ms; the margin only guards a stuck client.
        let limit = Duration::from_secs(self.config.timeout_secs.max(1).saturating_mul(2))
            .saturating_add(Duration::from_secs(5));
        let deadline = tokio::time::Instant::now() + limit;
        for (position, report) in reports {
            let result = tokio::time::timeout_at(deadline, report).await;
            outcomes.push((
                position,
                match result {
                    Ok(Ok(Ok(_))) => Outcome::Delivered,
                    Ok(Ok(Err((error, _)))) => outcome(&error),
                    Ok(Err(_)) => Outcome::Retry("the producer went away".to_owned()),
                    Err(_) => Outcome::Retry("no delivery report in time".to_owned()),
                },
            ));
        }
        outcomes.sort_by_key(|(p, _)| *p);
        outcomes
    }

    /// One attempt at `records`, for `sensor test-output`: what the brokers said.
    ///
    /// # Errors
    /// Why a record was not stored, without secrets.
    pub async fn try_write(&mut self, records: &[&[u8]]) -> Result<String, String> {
        let producer = self.producer()?;
        let positions: Vec<usize> = (0..records.len()).collect();
        for (_, outcome) in self.produce(&producer, records, &positions).await {
            match outcome {
                Outcome::Delivered => {}
                Outcome::Refused(why) | Outcome::Retry(why) => return Err(self.scrub(&why)),
            }
        }
        Ok(format!("stored by {}", self.config.brokers))
    }
}

#[async_trait::async_trait]
impl Sink for KafkaOutput {
    fn body(&self) -> &Body {
        &self.body
    }

    fn batch_size(&self) -> usize {
        512
    }

    fn describe(&self) -> String {
        self.config.brokers.clone()
    }

    async fn write(&mut self, batch: &[Record<'_>]) -> Result<u64, WriteError> {
        let key = fingerprint(batch);
        let (open, mut refused) = match self.pending.take() {
            Some(p) if p.key == key => (p.open, p.refused),
            _ => ((0..batch.len()).collect(), 0),
        };
        let producer = self.producer().map_err(WriteError::Fatal)?;
        let records: Vec<&[u8]> = batch.iter().map(|r| r.bytes).collect();
        let mut still = Vec::new();
        let mut failure = None;
        for (position, outcome) in self.produce(&producer, &records, &open).await {
            match outcome {
                Outcome::Delivered => {}
                Outcome::Refused(why) => {
                    tracing::error!(output = %self.name, brokers = %self.config.brokers, error = %self.scrub(&why), "Kafka refused a record (no retry for this error); dropped.");
                    refused = refused.saturating_add(1);
                }
                Outcome::Retry(why) => {
                    still.push(position);
                    failure.get_or_insert(why);
                }
            }
        }
        match failure {
            None => Ok(refused),
            Some(why) => {
                let reason = self.scrub(&format!("{} records not stored: {why}", still.len()));
                self.pending = Some(Pending {
                    key,
                    open: still,
                    refused,
                });
                Err(WriteError::retry(reason))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{KafkaConfig, KafkaOutput};

    fn config(json: serde_json::Value) -> KafkaConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn check_names_the_field() {
        let ok = config(serde_json::json!({"brokers": "10.0.0.9:9092, k2:9093"}));
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(
            (ok.topic.as_str(), ok.key.as_str(), ok.acks.as_str()),
            ("trapster.{channel}", "{src_ip}", "all")
        );
        let field = |json: serde_json::Value| config(json).check().unwrap_err().0;
        assert_eq!(
            field(serde_json::json!({"brokers": "kafka://k:9092"})),
            "brokers"
        );
        assert_eq!(field(serde_json::json!({"brokers": "k"})), "brokers");
        assert_eq!(
            field(serde_json::json!({"brokers": "k:1", "topic": "a b.{channel}"})),
            "topic"
        );
        assert_eq!(
            field(serde_json::json!({"brokers": "k:1", "acks": 2})),
            "acks"
        );
        assert_eq!(
            field(serde_json::json!({"brokers": "k:1", "acks": 1})),
            "acks"
        );
        assert_eq!(
            field(serde_json::json!({"brokers": "k:1", "retries": 0})),
            "retries"
        );
        assert_eq!(
            field(serde_json::json!({"brokers": "k:1", "cert_file": "/c"})),
            "key_file"
        );
        let relaxed = config(
            serde_json::json!({"brokers": "k:1", "acks": 1, "idempotent": false, "retries": 0}),
        );
        assert_eq!(relaxed.check(), Ok(()));
        let bad: Result<KafkaConfig, _> =
            serde_json::from_value(serde_json::json!({"brokers": "k:1", "compression": "brotli"}));
        assert!(bad.unwrap_err().to_string().contains("brotli"));
    }

    #[test]
    fn properties_follow_the_options_and_errors_hide_the_password() {
        let c = config(serde_json::json!({
            "brokers": "k1:9093", "tls": true, "compression": "zstd",
            "sasl": {"mechanism": "SCRAM-SHA-512", "username": "sensor", "password": "s3cr3t-pw"}
        }));
        let props = c.client_config();
        assert_eq!(props.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(props.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(props.get("compression.codec"), Some("zstd"));
        assert_eq!(props.get("enable.idempotence"), Some("true"));
        assert_eq!(props.get("message.timeout.ms"), Some("30000"));
        let out = KafkaOutput::new(c, "k");
        assert_eq!(
            out.scrub("auth with s3cr3t-pw failed"),
            "auth with *** failed"
        );
        assert!(!format!("{out:?}").contains("s3cr3t-pw"));
        let plain = config(serde_json::json!({"brokers": "k1:9092"})).client_config();
        assert_eq!(plain.get("security.protocol"), Some("plaintext"));
        assert_eq!(plain.get("sasl.mechanism"), None);
    }
}
