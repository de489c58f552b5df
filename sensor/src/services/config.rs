//! The `services` block of `trapster.conf`, typed: per protocol a list of instances, each with
//! its `port` and the protocol's keys, exactly as Trapster community writes them; and the
//! sensor's own `sensor.services` limits.
//!
//! Unknown keys inside an instance are accepted (Trapster files carry keys this sensor does not
//! use, such as `key`/`certificate` paths); protocols this sensor does not emulate yet are kept
//! and reported as a warning.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;
use serde_json::Value;

/// The `services` block.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServicesSection {
    /// FTP instances.
    #[serde(default)]
    pub ftp: Vec<FtpConfig>,
    /// Telnet instances.
    #[serde(default)]
    pub telnet: Vec<TelnetConfig>,
    /// SSH instances.
    #[serde(default)]
    pub ssh: Vec<SshConfig>,
    /// HTTP instances.
    #[serde(default)]
    pub http: Vec<HttpConfig>,
    /// HTTPS instances.
    #[serde(default)]
    pub https: Vec<HttpConfig>,
    /// MySQL instances.
    #[serde(default)]
    pub mysql: Vec<MysqlConfig>,
    /// PostgreSQL instances (Trapster spells the key `postgres`).
    #[serde(default, alias = "postgresql")]
    pub postgres: Vec<PostgresConfig>,
    /// Protocols not emulated by this version, kept as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl ServicesSection {
    /// (service, port) of every emulated instance, in configuration order.
    #[must_use]
    pub fn ports(&self) -> Vec<(&'static str, u16)> {
        let mut out = Vec::new();
        out.extend(self.ftp.iter().map(|c| ("ftp", c.port)));
        out.extend(self.telnet.iter().map(|c| ("telnet", c.port)));
        out.extend(self.ssh.iter().map(|c| ("ssh", c.port)));
        out.extend(self.http.iter().map(|c| ("http", c.port)));
        out.extend(self.https.iter().map(|c| ("https", c.port)));
        out.extend(self.mysql.iter().map(|c| ("mysql", c.port)));
        out.extend(self.postgres.iter().map(|c| ("postgres", c.port)));
        out
    }

    /// How many instances are configured for the protocols this version emulates.
    #[must_use]
    pub fn emulated(&self) -> usize {
        self.ftp.len()
            + self.telnet.len()
            + self.ssh.len()
            + self.http.len()
            + self.https.len()
            + self.mysql.len()
            + self.postgres.len()
    }
}

/// An FTP instance.
#[derive(Debug, Clone, Deserialize)]
pub struct FtpConfig {
    /// TCP port.
    pub port: u16,
    /// Greeting after `220 `; default `Microsoft FTP Service`.
    #[serde(default)]
    pub banner: Option<String>,
    /// Accepted user (Trapster `username`); when null every login fails.
    #[serde(default)]
    pub username: Option<String>,
    /// Accepted password.
    #[serde(default)]
    pub password: Option<String>,
}

/// A Telnet instance.
#[derive(Debug, Clone, Deserialize)]
pub struct TelnetConfig {
    /// TCP port.
    pub port: u16,
    /// The device imitated (Trapster `version`): `Cisco IOS`, `D-Link DSL router`, ...
    #[serde(default)]
    pub version: Option<String>,
}

/// An SSH instance.
#[derive(Debug, Clone, Deserialize)]
pub struct SshConfig {
    /// TCP port.
    pub port: u16,
    /// Identification string sent first; default `SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7`.
    #[serde(default)]
    pub version: Option<String>,
    /// Pre-authentication banner, if any.
    #[serde(default)]
    pub banner: Option<String>,
    /// Accepted user/password pairs (Trapster `users`); logins always fail when empty.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
}

/// An HTTP or HTTPS instance.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    /// TCP port.
    pub port: u16,
    /// Skin: a folder name under the skin directories; default `default_apache`.
    #[serde(default)]
    pub skin: Option<String>,
    /// Ask for HTTP Basic authentication on every request.
    #[serde(default)]
    pub basic_auth: bool,
    /// User accepted by Basic authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password accepted by Basic authentication.
    #[serde(default)]
    pub password: Option<String>,
    /// Certificate subject (HTTPS): common name; default the host name.
    #[serde(default)]
    pub common_name: Option<String>,
    /// Certificate subject: organisation.
    #[serde(default)]
    pub organization_name: Option<String>,
    /// Certificate subject: country (two letters).
    #[serde(default)]
    pub country_name: Option<String>,
    /// Certificate subject: state or province.
    #[serde(default)]
    pub state_or_province_name: Option<String>,
    /// Certificate subject: locality.
    #[serde(default)]
    pub locality_name: Option<String>,
}

/// A MySQL instance.
#[derive(Debug, Clone, Deserialize)]
pub struct MysqlConfig {
    /// TCP port.
    pub port: u16,
    /// Server version announced; default `8.0.36`.
    #[serde(default)]
    pub version: Option<String>,
    /// Authentication plugin announced; default `mysql_native_password`.
    #[serde(default)]
    pub auth_plugin: Option<String>,
    /// After the hashed response, ask the client to resend its password in cleartext
    /// (`mysql_clear_password`); clients that allow it reveal the password. Default true.
    #[serde(default)]
    pub ask_cleartext: Option<bool>,
}

/// A PostgreSQL instance.
#[derive(Debug, Clone, Deserialize)]
pub struct PostgresConfig {
    /// TCP port.
    pub port: u16,
    /// `server_version` reported; default `15.8`.
    #[serde(default)]
    pub version: Option<String>,
    /// Accept TLS (`SSLRequest`), so that `sslmode=require` clients log in too; default true.
    #[serde(default)]
    pub ssl: Option<bool>,
}

/// `sensor.services`: limits that keep hostile clients from exhausting the sensor, and where
/// generated keys and certificates are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceLimits {
    /// Connections open at once across all services; excess connections are closed at once.
    pub max_connections: usize,
    /// Connections open at once from one source address.
    pub max_connections_per_source: usize,
    /// Bytes a connection may have buffered and not yet processed (requests, frames).
    pub max_buffer_bytes: usize,
    /// Longest line (FTP, Telnet, HTTP request and header lines).
    pub max_line_bytes: usize,
    /// Time for a client to complete the protocol's handshake (first request, startup packet,
    /// TLS, key exchange).
    pub handshake_timeout_secs: u64,
    /// Time without a byte from the client before the connection is closed.
    pub idle_timeout_secs: u64,
    /// Longest session, whatever the client does.
    pub session_timeout_secs: u64,
    /// Raw client bytes kept in one event's `data` (hex); longer input is cut and flagged.
    pub max_data_bytes: usize,
    /// Events one session may emit; the last one allowed carries `extra.events_capped`, later
    /// ones are counted (`events_suppressed`) and dropped, so one client cannot flood the
    /// outputs with a line-per-event protocol.
    pub max_events_per_session: usize,
    /// Directory for generated host keys and certificates, created if missing.
    pub state_dir: PathBuf,
    /// Extra directories searched for HTTP skins, before the built-in ones.
    pub skin_dirs: Vec<PathBuf>,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            max_connections: 2_048,
            max_connections_per_source: 64,
            max_buffer_bytes: 64 * 1024,
            max_line_bytes: 8 * 1024,
            handshake_timeout_secs: 15,
            idle_timeout_secs: 60,
            session_timeout_secs: 600,
            max_data_bytes: 4 * 1024,
            max_events_per_session: 256,
            state_dir: PathBuf::from("/var/lib/trapster-sensor"),
            skin_dirs: Vec::new(),
        }
    }
}

impl ServiceLimits {
    /// Handshake timeout.
    #[must_use]
    pub const fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// Idle timeout.
    #[must_use]
    pub const fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// Session timeout.
    #[must_use]
    pub const fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.session_timeout_secs)
    }
}
