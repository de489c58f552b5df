//! Sinks: one per transport. A sink makes ONE attempt at writing an encoded batch and says how
//! it went ([`WriteError`] for failures); the driver ([`super::driver`]) batches, encodes,
//! retries with the one policy ([`super::retry`]) or spools, and counts. A sink chooses its
//! encoding ([`Sink::body`]) and its batch size, and may reopen on SIGHUP (file) or run a
//! periodic tick with a final flush (the email digest).
//!
//! A new output is one file here plus one line in [`build`].

pub mod api;
pub mod elasticsearch;
pub mod email;
pub mod file;
pub mod kafka;
pub mod nats;
pub mod redis;
pub mod sekoia;
pub mod slack;
pub mod splunk_hec;
pub mod syslog;
pub mod teams;
pub mod template;
pub mod terminal;
pub mod webhook;

use std::time::Duration;

use self::{
    api::ApiOutput, elasticsearch::ElasticsearchOutput, email::EmailOutput, file::FileOutput,
    redis::RedisOutput, syslog::SyslogOutput, terminal::Terminal,
};
use bytes::BytesMut;

use super::{Message, OutputConfig, Transport};
use crate::format::{self, FormatContext};

/// What each message becomes in the request or record.
#[derive(Clone)]
pub enum Body {
    /// The output's format.
    Format(format::Format),
    /// A Splunk HEC event object.
    Hec(format::chat::HecMeta),
    /// A Slack message.
    Slack,
    /// A Teams Adaptive Card message.
    Teams,
    /// A syslog message (header and payload).
    Syslog(Box<syslog::SyslogConfig>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Format(_) => "Format",
            Self::Hec(_) => "Hec",
            Self::Slack => "Slack",
            Self::Teams => "Teams",
            Self::Syslog(_) => "Syslog",
        })
    }
}

impl Body {
    /// The encoding an output's transport calls for.
    #[must_use]
    pub fn of(cfg: &OutputConfig) -> Self {
        match &cfg.transport {
            Transport::SplunkHec(hec) => Self::Hec(hec.meta()),
            Transport::Slack(_) => Self::Slack,
            Transport::Teams(_) => Self::Teams,
            Transport::Syslog(cfg) => Self::Syslog(Box::new(cfg.clone())),
            // Sekoia's Trapster parser and webhook receivers read the enterprise envelope.
            Transport::Sekoia(_) | Transport::Webhook(_) | Transport::Email(_) => {
                Self::Format(format::Format::Trapster)
            }
            // Elasticsearch stores ECS documents (incidents: the JSON envelope).
            Transport::Elasticsearch(_) => Self::Format(format::Format::Ecs),
            _ => Self::Format(cfg.format),
        }
    }

    /// Appends `message`, encoded, to `out` (one record, ending with a newline).
    ///
    /// # Errors
    /// The format could not serialise it.
    pub fn encode(
        &self,
        message: &Message,
        ctx: &FormatContext,
        out: &mut BytesMut,
    ) -> Result<(), format::FormatError> {
        match self {
            Self::Format(f) => format::encode_message(*f, message, ctx, out),
            Self::Hec(meta) => format::chat::hec(message, ctx, meta, out),
            Self::Syslog(cfg) => syslog::frame(message, cfg, ctx, out),
            Self::Slack => {
                format::chat::slack(message, ctx, out)?;
                out.extend_from_slice(b"\n");
                Ok(())
            }
            Self::Teams => {
                format::chat::teams(message, ctx, out)?;
                out.extend_from_slice(b"\n");
                Ok(())
            }
        }
    }
}

/// One encoded message, without its trailing newline, with its message's Unix time in seconds
/// (Redis scores).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The encoded message.
    pub bytes: &'a [u8],
    /// When it happened, Unix seconds.
    pub time: f64,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Worth another try (connection, timeout, 5xx, 429), after `after` when the receiver said.
    #[error("{reason}")]
    Retry {
        /// What went wrong, free of secrets.
        reason: String,
        /// The receiver's `Retry-After`.
        after: Option<Duration>,
    },
    /// Not worth retrying: the batch is lost (a broken configuration, a closed standard output).
    #[error("{0}")]
    Fatal(String),
}

impl WriteError {
    /// A retryable failure without a receiver-given delay.
    pub fn retry(reason: impl std::fmt::Display) -> Self {
        Self::Retry {
            reason: reason.to_string(),
            after: None,
        }
    }
}

/// One transport's writer.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// How messages are encoded for it.
    fn body(&self) -> &Body;

    /// Most records in one attempt.
    fn batch_size(&self) -> usize {
        1024
    }

    /// Where it writes, for logs (no secret).
    fn describe(&self) -> String;

    /// Whether its output may have a disk spool.
    fn spools(&self) -> bool {
        true
    }

    /// One attempt at writing `batch`; `Ok` carries how many the receiver refused (counted as
    /// dropped, not retried), the rest being delivered.
    async fn write(&mut self, batch: &[Record<'_>]) -> Result<u64, WriteError>;

    /// SIGHUP: reopen what must be (files, after logrotate).
    async fn reopen(&mut self) {}

    /// How often [`Self::flush`] wants to run, if at all.
    fn tick(&self) -> Option<Duration> {
        None
    }

    /// One attempt at sending what the sink holds back (a digest), when due or `force`d (at
    /// shutdown); the driver retries it like a write.
    async fn flush(&mut self, force: bool) -> Result<(), WriteError> {
        let _ = force;
        Ok(())
    }
}

/// The registry: the sink of each transport, one line each.
#[must_use]
pub fn build(cfg: &OutputConfig, name: &str, ctx: &FormatContext) -> Box<dyn Sink> {
    let body = Body::of(cfg);
    let device = &ctx.identity.device_name;
    match &cfg.transport {
        Transport::Terminal => Box::new(Terminal::new(body)),
        Transport::File(c) => Box::new(FileOutput::new(c.clone()).with_body(body)),
        Transport::Redis(c) => Box::new(RedisOutput::new(c.clone(), name).with_body(body)),
        Transport::Syslog(c) => Box::new(SyslogOutput::new(c.clone())),
        Transport::Email(c) => Box::new(EmailOutput::new(c.clone(), name, device)),
        Transport::Api(c) => Box::new(ApiOutput::new(c.clone(), name).with_body(body)),
        Transport::SplunkHec(c) => Box::new(ApiOutput::new(c.api(), name).with_body(body)),
        Transport::Sekoia(c) => Box::new(ApiOutput::new(c.api(), name).with_body(body)),
        Transport::Slack(c) => Box::new(ApiOutput::new(c.api(), name).with_body(body)),
        Transport::Teams(c) => Box::new(ApiOutput::new(c.api(), name).with_body(body)),
        Transport::Webhook(c) => Box::new(ApiOutput::new(c.api(), name).with_body(body)),
        Transport::Elasticsearch(c) => {
            Box::new(ElasticsearchOutput::new(c.clone(), name).with_body(body))
        }
        Transport::Nats(c) => Box::new(nats::NatsOutput::new(c.clone(), name).with_body(body)),
        Transport::Kafka(c) => Box::new(kafka::KafkaOutput::new(c.clone(), name).with_body(body)),
    }
}
