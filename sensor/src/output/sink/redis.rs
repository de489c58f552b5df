//! `redis` output: by default `ZADD events <unix-ts> <event>`, as Trapster community's Redis
//! logger does; also `RPUSH`/`LPUSH <key> <event>`, `XADD <key> * event <event>` and
//! `PUBLISH <key> <event>`. One pipeline per attempt; the driver retries a failed batch with
//! the shared policy ([`crate::output::retry`]) or, with a spool, delivers from disk.
//! The password never appears in a log line or an error (connections are built from parts,
//! never from a URL, and the configuration's `Debug` redacts it).
//!
//! TLS (`tls: true`) verifies the server against the shared root store (system store plus
//! `ca_file`), optionally with a client certificate; `insecure` skips verification and says so
//! at every start.

use std::{fmt, time::Duration};

use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, RedisConnectionInfo,
    aio::MultiplexedConnection,
};
use serde::Deserialize;

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
}

/// A Redis output with its (lazily opened) connection.
pub struct RedisOutput {
    config: RedisConfig,
    conn: Option<MultiplexedConnection>,
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

    fn client(&self) -> redis::RedisResult<redis::Client> {
        let addr = if self.config.tls {
            ConnectionAddr::TcpTls {
                host: self.config.host.clone(),
                port: self.config.port,
                insecure: self.config.insecure,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(self.config.host.clone(), self.config.port)
        };
        let info = ConnectionInfo {
            addr,
            redis: RedisConnectionInfo {
                db: self.config.db,
                username: self.config.username.clone(),
                password: self.config.password.as_ref().map(|p| p.expose().to_owned()),
                ..RedisConnectionInfo::default()
            },
        };
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "cannot read a TLS file",
                    format!("{}: {e}", path.display()),
                ))
            })
        };
        let client_tls = match (&self.config.client_cert_file, &self.config.client_key_file) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert)?,
                client_key: read(key)?,
            }),
            _ => None,
        };
        // Verified TLS trusts the root store every output shares (system store plus
        // `ca_file`); `insecure` verifies nothing.
        let root_cert = if self.config.tls && !self.config.insecure {
            Some(
                crate::output::client::tls::pem_bundle(self.config.ca_file.as_deref()).map_err(
                    |e| {
                        redis::RedisError::from((
                            redis::ErrorKind::InvalidClientConfig,
                            "cannot load the trusted certificates",
                            e,
                        ))
                    },
                )?,
            )
        } else {
            self.config.ca_file.as_deref().map(read).transpose()?
        };
        if self.config.tls && (root_cert.is_some() || client_tls.is_some()) {
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls,
                    root_cert,
                },
            )
        } else {
            redis::Client::open(info)
        }
    }

    async fn connection(&mut self) -> redis::RedisResult<&mut MultiplexedConnection> {
        if self.conn.is_none() {
            let client = self.client()?;
            let timeouts = AsyncConnectionConfig::new()
                .set_connection_timeout(Duration::from_secs(5))
                .set_response_timeout(Duration::from_secs(10));
            self.conn = Some(
                client
                    .get_multiplexed_async_connection_with_config(&timeouts)
                    .await?,
            );
        }
        self.conn
            .as_mut()
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::IoError, "not connected")))
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
        let result = match self.connection().await {
            Ok(conn) => pipe.query_async::<()>(conn).await,
            Err(err) => Err(err),
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
        format!("{}:{}", self.config.host, self.config.port)
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
