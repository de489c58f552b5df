//! `redis` output: by default `ZADD events <unix-ts> <event>`, as Trapster community's Redis
//! logger does; also `RPUSH`/`LPUSH <key> <event>`, `XADD <key> * event <event>` and
//! `PUBLISH <key> <event>`. One pipeline per attempt; the driver retries a failed batch with
//! the shared policy ([`crate::output::retry`]) or, with a spool, delivers from disk.
//! The password never appears in a log line or an error (connections are built from parts,
//! never from a URL, and the configuration's `Debug` redacts it).
//!
//! One server, a Redis Cluster (`cluster`: seed nodes) or the master a set of Sentinels names
//! (`sentinel`), see [`connect`]; streams can be trimmed (`max_len`).
//!
//! TLS (`tls: true`) verifies the server against the shared root store (system store plus
//! `ca_file`), optionally with a client certificate; `insecure` skips verification and says so
//! at every start.

mod connect;

use std::fmt;

use serde::Deserialize;

use self::connect::Conn;

pub use crate::output::client::secret::Secret;
use crate::output::sink::{Body, Record, Sink, WriteError};

/// The Redis command each event is written with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisCommand {
    /// `ZADD <key> <unix-ts> <event>` (Trapster community).
    #[default]
    Zadd,
    /// `RPUSH <key> <event>`.
    Rpush,
    /// `LPUSH <key> <event>`.
    Lpush,
    /// `XADD <key> * event <event>`.
    Xadd,
    /// `PUBLISH <key> <event>`.
    Publish,
}

fn default_host() -> String {
    "localhost".to_owned()
}

const fn default_port() -> u16 {
    6379
}

fn default_key() -> String {
    "events".to_owned()
}

/// `transport: {"type": "redis", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Server host.
    #[serde(default = "default_host")]
    pub host: String,
    /// Server port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Database number.
    #[serde(default)]
    pub db: i64,
    /// ACL user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (`AUTH`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Command.
    #[serde(default)]
    pub command: RedisCommand,
    /// Key (sorted set, list, stream) or channel.
    #[serde(default = "default_key")]
    pub key: String,
    /// `xadd` only: trim the stream to about this many entries on every add
    /// (`XADD <key> MAXLEN ~ <n> * ...`, Redis trims whole nodes, so it may keep a few more);
    /// unbounded when absent.
    #[serde(default)]
    pub max_len: Option<u64>,
    /// Connect with TLS (`rediss`), verifying the server certificate.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA that signed the server certificate (default: the system's roots).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM files of a client certificate and key (mutual TLS).
    #[serde(default)]
    pub client_cert_file: Option<std::path::PathBuf>,
    /// See `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<std::path::PathBuf>,
    /// Skip certificate verification (logged as a warning at every start).
    #[serde(default)]
    pub insecure: bool,
    /// Redis Cluster: seed nodes (`host:port`); when set, `host`/`port` are not used, `db`
    /// must be 0, and the client follows the cluster's slots, redirections and failovers.
    #[serde(default)]
    pub cluster: Vec<String>,
    /// Redis Sentinel: the master is asked of these sentinels at every (re)connection, so a
    /// failover is followed; `host`/`port` are not used.
    #[serde(default)]
    pub sentinel: Option<SentinelConfig>,
}

/// `sentinel: {"master": "mymaster", "nodes": ["10.0.0.1:26379", ...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The monitored master's name.
    pub master: String,
    /// Sentinel addresses (`host:port`).
    pub nodes: Vec<String>,
    /// ACL user name for the sentinels themselves.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for the sentinels themselves (the master's is `password`).
    #[serde(default)]
    pub password: Option<Secret>,
}

impl RedisConfig {
    /// What the configuration cannot mean: a cluster and sentinels at once, a database other
    /// than 0 on a cluster, an empty sentinel list, a node that is not `host:port`.
    ///
    /// # Errors
    /// The field and the reason.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.cluster.is_empty() && self.sentinel.is_some() {
            return Err((
                "sentinel",
                "`cluster` and `sentinel` exclude each other".to_owned(),
            ));
        }
        if !self.cluster.is_empty() && self.db != 0 {
            return Err(("db", "a Redis Cluster has only database 0".to_owned()));
        }
        for node in &self.cluster {
            connect::node(node, false, false).map_err(|e| ("cluster", e))?;
        }
        if let Some(sentinel) = &self.sentinel {
            if sentinel.nodes.is_empty() {
                return Err(("sentinel.nodes", "name at least one sentinel".to_owned()));
            }
            for node in &sentinel.nodes {
                connect::node(node, false, false).map_err(|e| ("sentinel.nodes", e))?;
            }
        }
        Ok(())
    }
}

/// A Redis output with its (lazily opened) connection.
pub struct RedisOutput {
    config: RedisConfig,
    conn: Option<Conn>,
    body: Body,
}

impl fmt::Debug for RedisOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOutput")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisOutput {
    /// Prepares the output; connecting happens on first write.
    #[must_use]
    pub fn new(config: RedisConfig, name: &str) -> Self {
        if config.tls && config.insecure {
            tracing::warn!(output = name, host = %config.host, port = config.port, "TLS certificate verification is OFF for this output (insecure: true).");
        }
        Self {
            config,
            conn: None,
            body: Body::Format(crate::format::Format::Default),
        }
    }

    /// Encodes as `body` says.
    #[must_use]
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    fn pipeline(&self, records: &[(f64, &[u8])]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let key = &self.config.key;
        for (score, member) in records {
            match self.config.command {
                RedisCommand::Zadd => pipe.cmd("ZADD").arg(key).arg(*score).arg(*member),
                RedisCommand::Rpush => pipe.cmd("RPUSH").arg(key).arg(*member),
                RedisCommand::Lpush => pipe.cmd("LPUSH").arg(key).arg(*member),
                RedisCommand::Xadd => {
                    let cmd = pipe.cmd("XADD").arg(key);
                    if let Some(max) = self.config.max_len {
                        cmd.arg("MAXLEN").arg("~").arg(max);
                    }
                    cmd.arg("*").arg("event").arg(*member)
                }
                RedisCommand::Publish => pipe.cmd("PUBLISH").arg(key).arg(*member),
            };
            pipe.ignore();
        }
        pipe
    }

    /// One attempt at writing `records` (score = Unix time in seconds, member = encoded event
    /// without its newline); the error text never holds the password.
    ///
    /// # Errors
    /// The connection or the pipeline failed.
    pub async fn try_write(&mut self, records: &[(f64, &[u8])]) -> Result<(), String> {
        let pipe = self.pipeline(records);
        if self.conn.is_none() {
            match connect::connect(&self.config).await {
                Ok(conn) => self.conn = Some(conn),
                Err(err) => return Err(err.to_string()),
            }
        }
        let result = match &mut self.conn {
            Some(conn) => conn.run(&pipe).await,
            None => Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "not connected",
            ))),
        };
        result.map_err(|err| {
            self.conn = None;
            err.to_string()
        })
    }
}

#[async_trait::async_trait]
impl Sink for RedisOutput {
    fn body(&self) -> &Body {
        &self.body
    }

    fn describe(&self) -> String {
        if let Some(sentinel) = &self.config.sentinel {
            format!(
                "master `{}` of sentinels {}",
                sentinel.master,
                sentinel.nodes.join(",")
            )
        } else if !self.config.cluster.is_empty() {
            format!("cluster {}", self.config.cluster.join(","))
        } else {
            format!("{}:{}", self.config.host, self.config.port)
        }
    }

    async fn write(&mut self, batch: &[Record<'_>]) -> Result<u64, WriteError> {
        let scored: Vec<(f64, &[u8])> = batch.iter().map(|r| (r.time, r.bytes)).collect();
        self.try_write(&scored).await.map_err(WriteError::retry)?;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::RedisConfig;

    #[test]
    fn the_password_is_never_shown() {
        let config: RedisConfig =
            serde_json::from_str(r#"{"host": "10.0.0.5", "password": "hunter2-secret"}"#).unwrap();
        assert_eq!(
            config.password.as_ref().map(super::Secret::expose),
            Some("hunter2-secret")
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(config.key, "events");
        assert_eq!(config.port, 6379);
    }
}
