//! Configuration: the community `trapster.conf` JSON, accepted as is, plus the sensor's own
//! `sensor` section. One tree, one parse step that names the field, line and column of any error.

mod sections;

use std::path::Path;

pub use crate::net::{Cidr, CidrError, SourcePrefix};
pub use sections::{
    IdentityConfig, LoggerConfig, PortscanConfig, SensorSection, XdpConfig, XdpMode,
};

use crate::{
    capture::sizing,
    format::{Format, FormatContext, Identity},
    output::{OutputConfig, Transport, file::FileConfig},
};

/// Where Trapster's file logger writes by default.
const TRAPSTER_LOGFILE: &str = "/var/log/trapster-community.log";
use serde::Deserialize;
use serde_json::Value;

/// The default configuration embedded in the binary: `sensor run` works with no file at all.
pub const DEFAULT_CONFIG: &str = include_str!("default.json");

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Sensor identity, reported as `device` in every event (Trapster `id`).
    #[serde(default = "default_id")]
    pub id: String,
    /// Free text (Trapster `description`).
    #[serde(default)]
    pub description: Option<String>,
    /// Interface the services bind on and, unless `sensor.xdp.interfaces` says otherwise, the
    /// interface the XDP program attaches to. Empty means "none named".
    #[serde(default)]
    pub interface: String,
    /// Sources that never produce events (Trapster `whitelist_ips`): addresses or CIDRs, IPv4
    /// or IPv6. Applied in the kernel for scan detection.
    #[serde(default)]
    pub whitelist_ips: Vec<Cidr>,
    /// Host name presented by emulated services (Trapster `hostname`).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Domain presented by emulated services (Trapster `domain`).
    #[serde(default)]
    pub domain: Option<String>,
    /// Emulated services, per protocol a list of instances (Trapster `services`); each
    /// instance is checked against its protocol in [`crate::services::registry`].
    #[serde(default)]
    pub services: crate::services::ServicesSection,
    /// Community logger block (`output`, `format`, `kwargs`, legacy `name`).
    #[serde(default)]
    pub logger: LoggerConfig,
    /// Several outputs at once, each with its own format and queue (this sensor's addition);
    /// when absent, the community `logger` block defines the one output.
    #[serde(default)]
    pub outputs: Vec<OutputConfig>,
    /// The sensor's own settings.
    #[serde(default)]
    pub sensor: SensorSection,
    /// Top-level keys this version does not know; reported as a warning, never fatal, so newer
    /// Trapster files keep loading.
    #[serde(skip)]
    pub unknown: Vec<String>,
}

/// Top-level keys of the community file and of this sensor.
const KNOWN_KEYS: [&str; 10] = [
    "id",
    "description",
    "interface",
    "whitelist_ips",
    "hostname",
    "domain",
    "services",
    "logger",
    "outputs",
    "sensor",
];

fn default_id() -> String {
    "trapster-1".to_owned()
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The JSON is malformed or a field has the wrong type or value.
    #[error("{origin}: field `{field}`: {message} at line {line} column {column}")]
    Parse {
        /// File path, or `<embedded default>`.
        origin: String,
        /// Dotted path of the offending field (`.` for the document itself).
        field: String,
        /// What is wrong.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// An instance in the `services` block does not fit its protocol.
    #[error("{origin}: {source}")]
    Service {
        /// File path, or `<embedded default>`.
        origin: String,
        /// The field and what is wrong with it.
        source: crate::services::SectionError,
    },
    /// Fields are individually valid but do not fit together.
    #[error("{origin}: field `{field}`: {message}")]
    Invalid {
        /// File path, or `<embedded default>`.
        origin: String,
        /// Dotted path of the offending field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field, line and column.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The embedded default configuration.
    ///
    /// # Errors
    /// Never in a released build (a unit test parses it); typed for uniformity.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::parse(DEFAULT_CONFIG, "<embedded default>")
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field, line and column.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let mut config: Self = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let field = err.path().to_string();
            let inner = err.into_inner();
            let message = inner.to_string();
            // serde_json appends " at line L column C"; it is reported separately.
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(head, _)| head)
                .to_owned();
            ConfigError::Parse {
                origin: origin.to_owned(),
                field,
                message,
                line: inner.line(),
                column: inner.column(),
            }
        })?;
        de.end().map_err(|inner| ConfigError::Parse {
            origin: origin.to_owned(),
            field: ".".to_owned(),
            message: "trailing characters after the configuration object".to_owned(),
            line: inner.line(),
            column: inner.column(),
        })?;
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) {
            config.unknown = map
                .keys()
                .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
                .cloned()
                .collect();
        }
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            field,
            message,
        };
        let xdp = &self.sensor.xdp;
        let scan = &self.sensor.portscan;
        if !xdp.ring_buffer_bytes.is_power_of_two() || xdp.ring_buffer_bytes < 4096 {
            return Err(invalid(
                "sensor.xdp.ring_buffer_bytes",
                format!(
                    "{} is not a power of two of at least 4096",
                    xdp.ring_buffer_bytes
                ),
            ));
        }
        if xdp.drain_interval_ms == 0 || xdp.drain_interval_ms > 1_000 {
            return Err(invalid(
                "sensor.xdp.drain_interval_ms",
                format!("{} is outside 1..=1000", xdp.drain_interval_ms),
            ));
        }
        for (field, value, min, max) in [
            (
                "sensor.xdp.dedup_slots",
                xdp.dedup_slots,
                sizing::MIN_DEDUP_SLOTS,
                sizing::MAX_DEDUP_SLOTS,
            ),
            (
                "sensor.xdp.source_slots",
                xdp.source_slots,
                sizing::MIN_SOURCE_SLOTS,
                sizing::MAX_SOURCE_SLOTS,
            ),
        ] {
            if let Err(err) = sizing::check_slots(field, value, min, max) {
                return Err(invalid(field, err.to_string()));
            }
        }
        // The bound must hold the budget table and the smallest cache of one CPU; whether it
        // fits this host's CPUs is checked (and logged) when the maps are created.
        if let Err(err) = sizing::plan(&xdp.map_request(), 1) {
            return Err(invalid("sensor.xdp.max_map_memory_mib", err.to_string()));
        }
        if xdp.drain_batch == 0 || xdp.drain_batch > 1 << 20 {
            return Err(invalid(
                "sensor.xdp.drain_batch",
                format!("{} is outside 1..=1048576", xdp.drain_batch),
            ));
        }
        if scan.threshold == 0 {
            return Err(invalid(
                "sensor.portscan.threshold",
                "must be at least 1".to_owned(),
            ));
        }
        if scan.idle_timeout_ms == 0 {
            return Err(invalid(
                "sensor.portscan.idle_timeout_ms",
                "must be positive".to_owned(),
            ));
        }
        if xdp.dedup_window_ms >= scan.idle_timeout_ms {
            return Err(invalid(
                "sensor.xdp.dedup_window_ms",
                format!(
                    "{} ms must be shorter than sensor.portscan.idle_timeout_ms ({} ms), or a \
                     scan repeated right after the previous one closed would go unreported",
                    xdp.dedup_window_ms, scan.idle_timeout_ms
                ),
            ));
        }
        if scan.max_window_secs == 0 || scan.max_window() <= scan.idle_timeout() {
            return Err(invalid(
                "sensor.portscan.max_window_secs",
                "must be longer than sensor.portscan.idle_timeout_ms".to_owned(),
            ));
        }
        if scan.max_memory_mib == 0 {
            return Err(invalid(
                "sensor.portscan.max_memory_mib",
                "must be at least 1".to_owned(),
            ));
        }
        if scan.max_tracked == 0 {
            return Err(invalid(
                "sensor.portscan.max_tracked",
                "must be at least 1".to_owned(),
            ));
        }
        if let Err(err) = self.sensor.source_prefix.validate() {
            return Err(invalid("sensor.source_prefix", err.to_string()));
        }
        if self.outputs.is_empty() {
            self.logger_output()
                .map_err(|(field, message)| invalid(field, message))?;
        }
        for (i, output) in self.outputs.iter().enumerate() {
            if output.spool.is_some()
                && matches!(output.transport, Transport::Terminal | Transport::File(_))
            {
                return Err(invalid(
                    "outputs[].spool",
                    format!("output {i}: terminal and file outputs have no spool"),
                ));
            }
            if output.when_full == crate::output::WhenFull::Spool && output.spool.is_none() {
                return Err(invalid(
                    "outputs[].when_full",
                    format!("output {i}: `spool` needs the output's `spool` directory"),
                ));
            }
            if output.queue_size == 0 {
                return Err(invalid(
                    "outputs[].queue_size",
                    format!("output {i}: must be at least 1"),
                ));
            }
        }
        let limits = &self.sensor.services;
        for (field, value) in [
            ("sensor.services.max_connections", limits.max_connections),
            (
                "sensor.services.max_connections_per_source",
                limits.max_connections_per_source,
            ),
            ("sensor.services.max_buffer_bytes", limits.max_buffer_bytes),
            ("sensor.services.max_line_bytes", limits.max_line_bytes),
            (
                "sensor.services.max_events_per_session",
                limits.max_events_per_session,
            ),
            ("sensor.services.udp_max_sessions", limits.udp_max_sessions),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1".to_owned()));
            }
        }
        for (field, value) in [
            (
                "sensor.services.handshake_timeout_secs",
                limits.handshake_timeout_secs,
            ),
            (
                "sensor.services.idle_timeout_secs",
                limits.idle_timeout_secs,
            ),
            (
                "sensor.services.session_timeout_secs",
                limits.session_timeout_secs,
            ),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1 second".to_owned()));
            }
        }
        if limits.udp_idle_timeout_ms == 0 {
            return Err(invalid(
                "sensor.services.udp_idle_timeout_ms",
                "must be at least 1 ms".to_owned(),
            ));
        }
        self.services
            .check()
            .map_err(|source| ConfigError::Service {
                origin: origin.to_owned(),
                source,
            })?;
        if self.sensor.identity.cef_severity.is_some_and(|s| s > 10) {
            return Err(invalid(
                "sensor.identity.cef_severity",
                "must be 0 to 10".to_owned(),
            ));
        }
        let allow_max = sensor_common::ALLOWLIST_MAX_ENTRIES as usize;
        if self.whitelist_ips.len() > allow_max {
            return Err(invalid(
                "whitelist_ips",
                format!(
                    "{} entries, at most {allow_max} are supported",
                    self.whitelist_ips.len()
                ),
            ));
        }
        Ok(())
    }

    /// The outputs to run: the `outputs` list, or the one the community `logger` block names.
    #[must_use]
    pub fn effective_outputs(&self) -> Vec<OutputConfig> {
        if !self.outputs.is_empty() {
            return self.outputs.clone();
        }
        // Validated at parse time; the fallback only guards a hand-built Config.
        self.logger_output().map_or_else(
            |_| vec![OutputConfig::new(Format::Default, Transport::Terminal)],
            |o| vec![o],
        )
    }

    fn logger_output(&self) -> Result<OutputConfig, (&'static str, String)> {
        let logger = &self.logger;
        let kwargs = &logger.kwargs;
        let kwarg = |key: &str| kwargs.get(key).and_then(Value::as_str).map(str::to_owned);
        let file = || {
            Transport::File(FileConfig {
                path: kwarg("logfile")
                    .unwrap_or_else(|| TRAPSTER_LOGFILE.to_owned())
                    .into(),
                mode: kwarg("mode"),
            })
        };
        let redis = || {
            let port = kwargs
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            Transport::Redis(crate::output::redis::RedisConfig {
                host: kwarg("host").unwrap_or_else(|| "localhost".to_owned()),
                port: port.unwrap_or(6379),
                db: 0,
                username: None,
                password: None,
                command: crate::output::redis::RedisCommand::Zadd,
                key: "events".to_owned(),
                tls: false,
                ca_file: None,
                client_cert_file: None,
                client_key_file: None,
                insecure: false,
            })
        };
        let api = || {
            let url = kwarg("url")
                .ok_or(("logger.kwargs.url", "the api output needs a url".to_owned()))?;
            let headers = kwargs
                .get("headers")
                .cloned()
                .unwrap_or(Value::Object(serde_json::Map::new()));
            serde_json::from_value(serde_json::json!({"url": url, "headers": headers}))
                .map(Transport::Api)
                .map_err(|e| ("logger.kwargs", e.to_string()))
        };
        if let Some(name) = logger.name.as_deref() {
            return match name {
                "JsonLogger" => Ok(OutputConfig::new(Format::Default, Transport::Terminal)),
                "EcsLogger" => Ok(OutputConfig::new(Format::Ecs, Transport::Terminal)),
                "FileLogger" => Ok(OutputConfig::new(logger.format, file())),
                "ApiLogger" | "RedisLogger" => Err((
                    "logger.name",
                    format!("`{name}` is not available in this version"),
                )),
                other => Err(("logger.name", format!("unknown logger `{other}`"))),
            };
        }
        match logger.output.as_deref().unwrap_or("terminal") {
            "terminal" => Ok(OutputConfig::new(logger.format, Transport::Terminal)),
            "file" => Ok(OutputConfig::new(logger.format, file())),
            "redis" => Ok(OutputConfig::new(logger.format, redis())),
            "api" => Ok(OutputConfig::new(logger.format, api()?)),
            other => Err((
                "logger.output",
                format!("unknown output `{other}` (terminal, file, api or redis)"),
            )),
        }
    }

    /// What the formats need: identity names, ECS version, CEF severity.
    #[must_use]
    pub fn format_context(&self) -> FormatContext {
        let mut ctx = FormatContext::for_device(&self.id);
        let id = &self.sensor.identity;
        ctx.identity = Identity {
            device_id: self.id.clone(),
            device_name: id
                .device_name
                .clone()
                .or_else(|| self.hostname.clone())
                .unwrap_or_else(|| self.id.clone()),
            template: Some(id.template.clone().unwrap_or_else(|| "custom".to_owned())),
            namespace_id: id.namespace_id.clone(),
            namespace_name: id
                .namespace_name
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
        };
        if let Some(v) = &id.ecs_version {
            ctx.ecs_version.clone_from(v);
        }
        if let Some(s) = id.cef_severity {
            ctx.cef_severity = s;
        }
        ctx
    }

    /// What the emulated services start from: names presented, interface, whitelist, source
    /// prefix, limits and the `services` block.
    #[must_use]
    pub fn services_plan(&self) -> crate::services::ServicesPlan {
        crate::services::ServicesPlan {
            hostname: self.hostname.clone().unwrap_or_default(),
            domain: self.domain.clone().unwrap_or_default(),
            interface: self.interface.clone(),
            whitelist: self.whitelist_ips.clone(),
            source_prefix: self.sensor.source_prefix,
            limits: self.sensor.services.clone(),
            services: self.services.clone(),
        }
    }

    /// Interfaces the XDP program attaches to: `sensor.xdp.interfaces`, else `interface`.
    #[must_use]
    pub fn xdp_interfaces(&self) -> Vec<String> {
        if !self.sensor.xdp.interfaces.is_empty() {
            return self.sensor.xdp.interfaces.clone();
        }
        if self.interface.is_empty() {
            Vec::new()
        } else {
            vec![self.interface.clone()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, ConfigError, XdpMode};

    /// The community example file, as Trapster ships it.
    const COMMUNITY: &str = r#"{
  "id": "trapster-1",
  "description": "example configuration file",
  "whitelist_ips": ["127.0.0.1"],
  "interface": "",
  "services": {
    "ftp": [ { "port": 2121, "username": null, "password": null, "banner": "Microsoft FTP Service" } ],
    "ssh": [ { "port": 2222, "version": "SSH-2.0-OpenSSH_8.1p1 Debian-1", "banner": null, "users": {} } ],
    "vnc": [ { "port": 5901, "version": "RFB_38" } ]
  },
  "logger": { "name": "JsonLogger", "kwargs": {} }
}"#;

    #[test]
    fn service_mistakes_are_named() {
        let dup = r#"{"services": {"ftp": [{"port": 21}], "http": [{"port": 21}]}}"#;
        let err = Config::parse(dup, "t").unwrap_err().to_string();
        assert!(err.contains("http and ftp both use port 21"), "{err}");
        let zero = r#"{"sensor": {"services": {"idle_timeout_secs": 0}}}"#;
        let err = Config::parse(zero, "t").unwrap_err().to_string();
        assert!(err.contains("sensor.services.idle_timeout_secs"), "{err}");
        for field in ["udp_idle_timeout_ms", "udp_max_sessions"] {
            let zero = format!(r#"{{"sensor": {{"services": {{"{field}": 0}}}}}}"#);
            let err = Config::parse(&zero, "t").unwrap_err().to_string();
            assert!(err.contains(&format!("sensor.services.{field}")), "{err}");
        }
        let typo = r#"{"services": {"ssh": [{"port": "twenty-two"}]}}"#;
        let err = Config::parse(typo, "t").unwrap_err().to_string();
        assert!(err.contains("services.ssh[0].port"), "{err}");
        let unknown = r#"{"sensor": {"services": {"max_conns": 3}}}"#;
        let err = Config::parse(unknown, "t").unwrap_err().to_string();
        assert!(err.contains("max_conns"), "{err}");
    }

    #[test]
    fn community_file_is_accepted_unchanged() {
        let config = Config::parse(COMMUNITY, "trapster.conf").unwrap();
        assert_eq!(config.id, "trapster-1");
        assert_eq!(config.whitelist_ips.len(), 1);
        assert_eq!(config.services.listed("ftp").len(), 1);
        assert_eq!(
            config.services.listed("ftp")[0]["banner"],
            "Microsoft FTP Service"
        );
        assert_eq!(config.services.ports(), vec![("ftp", 2121), ("ssh", 2222)]);
        assert_eq!(config.services.unknown().collect::<Vec<_>>(), vec!["vnc"]);
        assert_eq!(config.sensor.portscan.threshold, 3);
        assert!(config.xdp_interfaces().is_empty());
    }

    #[test]
    fn embedded_default_parses() {
        let config = Config::embedded_default().unwrap();
        assert!(config.unknown.is_empty(), "{:?}", config.unknown);
    }

    #[test]
    fn readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let marker = "<!-- config-example -->\n```json\n";
        let start = readme
            .find(marker)
            .expect("README has a marked config example")
            + marker.len();
        let end = start + readme[start..].find("```").unwrap();
        let config = Config::parse(&readme[start..end], "README.md").unwrap();
        assert!(config.unknown.is_empty(), "{:?}", config.unknown);
        assert_eq!(config.whitelist_ips.len(), 3);
    }

    #[test]
    fn sensor_section_is_read() {
        let text = r#"{"id": "s1", "interface": "eth0",
            "sensor": {"xdp": {"mode": "skb", "interfaces": ["veth0"]},
                       "portscan": {"threshold": 10, "idle_timeout_ms": 2000}}}"#;
        let config = Config::parse(text, "t").unwrap();
        assert_eq!(config.sensor.xdp.mode, XdpMode::Skb);
        assert_eq!(config.xdp_interfaces(), vec!["veth0".to_owned()]);
        assert_eq!(config.sensor.portscan.threshold, 10);
    }

    #[test]
    fn errors_name_field_line_and_column() {
        let text = "{\n  \"id\": \"s\",\n  \"sensor\": {\n    \"portscan\": {\"threshold\": \"many\"}\n  }\n}";
        let err = Config::parse(text, "x.conf").unwrap_err();
        let ConfigError::Parse {
            field,
            line,
            column,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(field, "sensor.portscan.threshold");
        assert_eq!(*line, 4);
        assert!(*column > 20, "{column}");
        let shown = err.to_string();
        assert!(
            shown.contains("x.conf") && shown.contains("line 4"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_sensor_keys_are_rejected_by_name() {
        let text = "{\"sensor\": {\"portscan\": {\"treshold\": 3}}}";
        let err = Config::parse(text, "x").unwrap_err().to_string();
        assert!(err.contains("treshold"), "{err}");
    }

    #[test]
    fn bad_cidr_is_reported_with_position() {
        let text = "{\n\"whitelist_ips\": [\"10.0.0.0/8\", \"10.0.0.300\"]\n}";
        let err = Config::parse(text, "x").unwrap_err();
        let ConfigError::Parse { field, line, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(field, "whitelist_ips[1]");
        assert_eq!(*line, 2);
    }

    #[test]
    fn dedup_window_must_be_shorter_than_idle_timeout() {
        let text = r#"{"sensor": {"xdp": {"dedup_window_ms": 5000}, "portscan": {"idle_timeout_ms": 5000}}}"#;
        let err = Config::parse(text, "x").unwrap_err().to_string();
        assert!(err.contains("sensor.xdp.dedup_window_ms"), "{err}");
    }

    #[test]
    fn map_sizes_and_drain_batch_are_checked_by_name() {
        let config = Config::parse("{}", "x").unwrap();
        let xdp = &config.sensor.xdp;
        assert_eq!(
            (
                xdp.dedup_slots,
                xdp.source_slots,
                xdp.max_map_memory_mib,
                xdp.drain_batch
            ),
            (65_536, 65_536, 64, 4_096)
        );
        for (text, field) in [
            (r#"{"dedup_slots": 3000}"#, "sensor.xdp.dedup_slots"),
            (r#"{"dedup_slots": 512}"#, "sensor.xdp.dedup_slots"),
            (r#"{"source_slots": 0}"#, "sensor.xdp.source_slots"),
            (r#"{"source_slots": 33554432}"#, "sensor.xdp.source_slots"),
            (
                r#"{"max_map_memory_mib": 1}"#,
                "sensor.xdp.max_map_memory_mib",
            ),
            (r#"{"drain_batch": 0}"#, "sensor.xdp.drain_batch"),
        ] {
            let text = format!(r#"{{"sensor": {{"xdp": {text}}}}}"#);
            let err = Config::parse(&text, "x").unwrap_err();
            let ConfigError::Invalid { field: got, .. } = &err else {
                panic!("{text}: {err}")
            };
            assert_eq!(*got, field, "{text}: {err}");
        }
        let ok = r#"{"sensor": {"xdp": {"dedup_slots": 1024, "source_slots": 1024,
            "max_map_memory_mib": 1, "drain_batch": 1}}}"#;
        assert_eq!(Config::parse(ok, "x").unwrap().sensor.xdp.drain_batch, 1);
    }

    #[test]
    fn unknown_top_level_keys_are_kept_not_fatal() {
        let config = Config::parse(r#"{"future_key": 1}"#, "x").unwrap();
        assert_eq!(config.unknown, vec!["future_key".to_owned()]);
    }

    #[test]
    fn logger_format_and_identity_are_read() {
        let text = r#"{"id": "s1", "hostname": "files-02",
            "logger": {"output": "terminal", "format": "cef", "kwargs": {}},
            "sensor": {"identity": {"namespace_name": "prod", "cef_severity": 7}}}"#;
        let config = Config::parse(text, "t").unwrap();
        assert_eq!(config.logger.format, crate::format::Format::Cef);
        let ctx = config.format_context();
        assert_eq!(ctx.identity.device_name, "files-02");
        assert_eq!(ctx.identity.namespace_name, "prod");
        assert_eq!(ctx.cef_severity, 7);
    }

    #[test]
    fn bad_outputs_and_formats_are_refused_by_name() {
        let err = Config::parse(r#"{"logger": {"output": "api"}}"#, "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("logger.kwargs.url"), "{err}");
        let err = Config::parse(r#"{"logger": {"output": "carrier-pigeon"}}"#, "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("logger.output") && err.contains("carrier-pigeon"),
            "{err}"
        );
        let api = Config::parse(
            r#"{"logger": {"output": "api", "kwargs": {"url": "https://siem.example/in", "headers": {"X-Key": "k"}}}}"#,
            "x",
        )
        .unwrap();
        assert!(matches!(
            api.effective_outputs()[0].transport,
            crate::output::Transport::Api(_)
        ));
        let redis = Config::parse(
            r#"{"logger": {"output": "redis", "kwargs": {"host": "10.1.2.3", "port": 6380}}}"#,
            "x",
        )
        .unwrap();
        let crate::output::Transport::Redis(r) = &redis.effective_outputs()[0].transport else {
            panic!("not redis")
        };
        assert_eq!(
            (r.host.as_str(), r.port, r.key.as_str()),
            ("10.1.2.3", 6380, "events")
        );
        let err = Config::parse("{\"logger\":\n {\"format\": \"xml\"}}", "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("logger.format") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn community_logger_blocks_become_outputs() {
        use crate::output::Transport;
        let file = Config::parse(
            r#"{"logger": {"output": "file", "format": "ecs", "kwargs": {"logfile": "/tmp/t.log", "mode": "640"}}}"#,
            "x",
        )
        .unwrap();
        let outputs = file.effective_outputs();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].format, crate::format::Format::Ecs);
        let Transport::File(f) = &outputs[0].transport else {
            panic!("{outputs:?}")
        };
        assert_eq!(f.path, std::path::Path::new("/tmp/t.log"));
        let legacy =
            Config::parse(r#"{"logger": {"name": "FileLogger", "kwargs": {}}}"#, "x").unwrap();
        let Transport::File(f) = &legacy.effective_outputs()[0].transport else {
            panic!()
        };
        assert_eq!(
            f.path,
            std::path::Path::new("/var/log/trapster-community.log")
        );
        let ecs = Config::parse(r#"{"logger": {"name": "EcsLogger", "kwargs": {}}}"#, "x").unwrap();
        assert_eq!(
            ecs.effective_outputs()[0].format,
            crate::format::Format::Ecs
        );
    }

    #[test]
    fn when_full_policies_parse_and_spool_needs_a_spool() {
        let text = r#"{"outputs": [
            {"when_full": "block", "block_ms": 250, "transport": {"type": "terminal"}},
            {"when_full": "drop_oldest", "transport": {"type": "terminal"}},
            {"when_full": "spool", "spool": {"dir": "/var/spool/sensor/api"},
             "transport": {"type": "api", "url": "https://collector.example/e"}}
        ]}"#;
        // Parsing validates.
        let config = Config::parse(text, "x").unwrap();
        let outputs = config.effective_outputs();
        assert_eq!(outputs[0].block_ms, 250);
        assert_eq!(outputs[1].when_full, crate::output::WhenFull::DropOldest);
        assert_eq!(outputs[1].block_ms, 1000);
        assert_eq!(outputs[2].when_full, crate::output::WhenFull::Spool);
        let text = r#"{"outputs": [{"when_full": "spool",
            "transport": {"type": "api", "url": "https://collector.example/e"}}]}"#;
        let err = Config::parse(text, "x").unwrap_err().to_string();
        assert!(err.contains("outputs[].when_full"), "{err}");
    }

    #[test]
    fn the_outputs_list_configures_several_outputs() {
        let text = r#"{"outputs": [
            {"name": "console", "transport": {"type": "terminal"}},
            {"format": "cef", "when_full": "drop_newest", "queue_size": 100,
             "transport": {"type": "file", "path": "/var/log/sensor.cef"}}
        ]}"#;
        let config = Config::parse(text, "x").unwrap();
        let outputs = config.effective_outputs();
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[1].format, crate::format::Format::Cef);
        assert_eq!(outputs[1].when_full, crate::output::WhenFull::DropNewest);
        let err = Config::parse(r#"{"outputs": [{"transport": {"type": "file"}}]}"#, "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("outputs[0].transport") && err.contains("path"),
            "{err}"
        );
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        assert!(Config::parse("{} x", "x").is_err());
    }
}
