//! Outputs: the fan-out ([`fanout`]) gives every output its own bounded queue ([`queue`]) fed
//! without ever waiting, so a slow or dead output never blocks detection, the services or the
//! other outputs; a driver per output ([`driver`], [`spooled`]) batches, encodes, writes
//! through its [`sink`] (one file per transport, one registry line each, [`sink::build`]),
//! retries by the one policy ([`retry`]) or spools ([`spool`]). Clients share one TLS root
//! store ([`client`]).
//!
//! What happens when a queue is full is each output's choice ([`WhenFull`], table in
//! [`queue`]); every drop is counted, and reported once by a `sensor.degraded` event through
//! the output when it delivers again.

#[cfg(test)]
mod books_tests;
pub mod client;
pub mod driver;
pub mod durable;
pub mod fanout;
pub mod filter;
pub mod ledger;
pub mod probe;
pub mod queue;
pub mod retry;
pub mod sink;
pub mod spool;
pub mod spooled;

use serde::Deserialize;

use crate::format::{Format, FormatError};

pub use crate::event::Message;
pub use fanout::{Fanout, OutputStats};
pub use filter::{Filter, Receive};

/// What an output does when its queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Hold the message in an overflow area (as large as the queue) for up to `block_ms`
    /// waiting for room; then spool it (outputs with a spool write everything to disk first)
    /// or drop and count it. The sender never waits.
    #[default]
    Block,
    /// Drop the new message and count it.
    DropNewest,
    /// Drop the oldest queued message, count it, and queue the new one.
    DropOldest,
    /// Overflow goes to the output's disk spool (a `spool` is required): messages wait, without
    /// deadline, in the overflow area for the disk, and only beyond it are dropped.
    Spool,
}

/// The transport of an output.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Transport {
    /// Standard output.
    Terminal,
    /// A file, appended to, reopened on SIGHUP (logrotate).
    File(sink::file::FileConfig),
    /// A Redis server (ZADD by default, as Trapster community).
    Redis(sink::redis::RedisConfig),
    /// An HTTP(S) collector.
    Api(sink::api::ApiConfig),
    /// Splunk HTTP Event Collector.
    #[serde(rename = "splunk_hec")]
    SplunkHec(sink::splunk_hec::HecConfig),
    /// Sekoia.io HTTP intake.
    Sekoia(sink::sekoia::SekoiaConfig),
    /// Slack incoming webhook.
    Slack(sink::slack::ChatConfig),
    /// Microsoft Teams Workflows webhook.
    Teams(sink::teams::ChatConfig),
    /// Custom HTTP webhook (envelope JSON, optional HMAC signature).
    Webhook(sink::webhook::WebhookConfig),
    /// Elasticsearch or OpenSearch `_bulk` API (ECS documents).
    #[serde(alias = "opensearch")]
    Elasticsearch(sink::elasticsearch::ElasticsearchConfig),
    /// NATS, by default JetStream with publish acknowledgements.
    Nats(sink::nats::NatsConfig),
    /// Kafka through librdkafka, each record confirmed by its delivery report.
    Kafka(sink::kafka::KafkaConfig),
    /// Syslog over UDP, TCP or TLS (CEF or JSON payload).
    Syslog(sink::syslog::SyslogConfig),
    /// Mail over SMTP: one per new incident, plus an optional digest.
    Email(sink::email::EmailConfig),
}

impl Transport {
    /// What this transport receives unless the output says otherwise: chat and mail get
    /// incidents only, so a scan never floods a channel or a mailbox.
    #[must_use]
    pub const fn default_receive(&self) -> Receive {
        match self {
            Self::Slack(_) | Self::Teams(_) | Self::Email(_) => Receive::Incidents,
            _ => Receive::Events,
        }
    }

    /// Lowercase name.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Terminal => "terminal",
            Self::File(_) => "file",
            Self::Redis(_) => "redis",
            Self::Api(_) => "api",
            Self::SplunkHec(_) => "splunk_hec",
            Self::Sekoia(_) => "sekoia",
            Self::Slack(_) => "slack",
            Self::Teams(_) => "teams",
            Self::Webhook(_) => "webhook",
            Self::Elasticsearch(_) => "elasticsearch",
            Self::Nats(_) => "nats",
            Self::Kafka(_) => "kafka",
            Self::Syslog(_) => "syslog",
            Self::Email(_) => "email",
        }
    }

    /// The HTTP configuration behind HTTP-based transports.
    #[must_use]
    pub fn http(&self) -> Option<sink::api::ApiConfig> {
        match self {
            Self::Api(c) => Some(c.clone()),
            Self::SplunkHec(c) => Some(c.api()),
            Self::Sekoia(c) => Some(c.api()),
            Self::Slack(c) | Self::Teams(c) => Some(c.api()),
            Self::Webhook(c) => Some(c.api()),
            // Elasticsearch has its own client (bulk answers are read per item).
            Self::Terminal
            | Self::File(_)
            | Self::Redis(_)
            | Self::Syslog(_)
            | Self::Email(_)
            | Self::Nats(_)
            | Self::Kafka(_)
            | Self::Elasticsearch(_) => None,
        }
    }
}

fn default_queue_size() -> usize {
    4096
}

const fn default_block_ms() -> u64 {
    1000
}

/// One entry of the `outputs` list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Name used in logs and statistics; default: the transport's kind and position.
    #[serde(default)]
    pub name: Option<String>,
    /// Event format.
    #[serde(default)]
    pub format: Format,
    /// Events queued for this output before `when_full` applies.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Full-queue policy.
    #[serde(default)]
    pub when_full: WhenFull,
    /// With `when_full: block`, how long a message that found the queue full waits for room
    /// before it is dropped and counted, milliseconds.
    #[serde(default = "default_block_ms")]
    pub block_ms: u64,
    /// Where the events go.
    pub transport: Transport,
    /// Disk spool for `redis` and `api`: every event is written there first and delivered from
    /// there, in order, surviving restarts.
    #[serde(default)]
    pub spool: Option<SpoolConfig>,
    /// `events`, `incidents` or `both`; default `incidents` for chat and email outputs,
    /// `events` for the others.
    #[serde(default)]
    pub receive: Option<Receive>,
    /// Messages below this severity (`low`, `medium`, `high`, `critical`) are not sent here.
    #[serde(default)]
    pub min_severity: crate::incident::Severity,
}

const fn default_spool_bytes() -> u64 {
    256 * 1024 * 1024
}

/// `spool: {"dir": ..., "max_bytes": 268435456}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of this output's spool (one per output).
    pub dir: std::path::PathBuf,
    /// Most undelivered data kept, bytes (default 256 MiB); beyond it new events are dropped
    /// and counted.
    #[serde(default = "default_spool_bytes")]
    pub max_bytes: u64,
}

impl OutputConfig {
    /// An output with default queue settings.
    #[must_use]
    pub fn new(format: Format, transport: Transport) -> Self {
        Self {
            name: None,
            format,
            queue_size: default_queue_size(),
            when_full: WhenFull::Block,
            block_ms: default_block_ms(),
            transport,
            spool: None,
            receive: None,
            min_severity: crate::incident::Severity::Low,
        }
    }

    /// Which messages this output takes.
    #[must_use]
    pub fn filter(&self) -> Filter {
        Filter {
            receive: self
                .receive
                .unwrap_or_else(|| self.transport.default_receive()),
            min_severity: self.min_severity,
            new_incidents_only: matches!(
                &self.transport,
                Transport::Email(mail) if mail.digest_interval_secs.is_none()
            ),
        }
    }
}

/// An output failed in a way that ends it.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Writing failed (closed pipe, full disk).
    #[error("writing events failed: {0}")]
    Io(#[from] std::io::Error),
    /// An event could not be encoded.
    #[error(transparent)]
    Format(#[from] FormatError),
}
