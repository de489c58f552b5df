//! Configuration: the community `trapster.conf` JSON, accepted as is, plus the sensor's own
//! `sensor` section. One tree, one parse step that names the field, line and column of any error.

mod logger;
mod outputs;
mod sections;
mod show;
mod validate;

use std::path::Path;

pub use crate::net::{Cidr, CidrError, SourcePrefix};
pub use sections::{
    HeartbeatConfig, IdentityConfig, LoggerConfig, MetricsConfig, PortscanConfig, SensorSection,
    XdpConfig, XdpMode,
};
pub use show::{MASK, mask};

use crate::{
    format::{Format, FormatContext, Identity},
    output::{OutputConfig, Transport},
};

use serde::Deserialize;
use serde_json::Value;

/// Largest configuration file read: a bigger one is refused before parsing (a typo'd path to a
/// log or an image must not be read into memory whole).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

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
    /// What the checks accept but the operator should hear about (unknown protocols, unknown
    /// keys in a service instance, Trapster logger modes); `sensor
    /// check` prints them, `sensor run` logs them.
    #[serde(skip)]
    pub warnings: Vec<ConfigWarning>,
}

/// A mistake the checks accept, named by its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Dotted path of the field (`services.ftp[0].bannr`).
    pub field: String,
    /// What is wrong and what the sensor does about it.
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
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
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{path}: {size} bytes, larger than the {max} bytes a configuration may have")]
    TooLarge {
        /// The path given.
        path: String,
        /// Its size (at least; the read stops past the cap).
        size: u64,
        /// [`MAX_CONFIG_BYTES`].
        max: u64,
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
        /// Dotted path of the offending field (`outputs[2].transport.url`).
        field: String,
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
        use std::io::Read as _;
        let shown = path.display().to_string();
        let read_error = |source| ConfigError::Read {
            path: shown.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let too_large = |size| ConfigError::TooLarge {
            path: shown.clone(),
            size,
            max: MAX_CONFIG_BYTES,
        };
        let size = file.metadata().map_err(read_error)?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(too_large(size));
        }
        // The size can change under us (a pipe, a growing file): the read is capped as well.
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES.saturating_add(1))
            .read_to_string(&mut text)
            .map_err(read_error)?;
        let read = u64::try_from(text.len()).unwrap_or(u64::MAX);
        if read > MAX_CONFIG_BYTES {
            return Err(too_large(read));
        }
        Self::parse(&text, &shown)
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
        config.warnings = config.validate(origin)?;
        validate::run_as(config.sensor.run_as.as_deref(), text, origin)?;
        Ok(config)
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
        ctx.ecs = self.ecs_options();
        if let Some(s) = id.cef_severity {
            ctx.cef_severity = s;
        }
        ctx
    }

    /// The ECS options: Trapster's format kwargs (`logger.kwargs.format_kwargs`, else the same
    /// keys flat in `logger.kwargs`, as Trapster reads them), then `sensor.identity`.
    #[must_use]
    pub fn ecs_options(&self) -> crate::format::ecs::EcsOptions {
        let mut opts = crate::format::ecs::EcsOptions::default();
        let kwargs = self.logger.format_kwargs();
        let text = |key: &str| match kwargs.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        if let Some(v) = text("ecs_version") {
            opts.ecs_version = v;
        }
        if let Some(v) = text("observer_name") {
            opts.observer_name = v;
        }
        opts.environment = text("environment");
        opts.host_name = text("host_name");
        opts.service_version = text("service_version");
        let id = &self.sensor.identity;
        if let Some(v) = &id.ecs_version {
            opts.ecs_version.clone_from(v);
        }
        opts.extended = id.ecs_extended;
        opts
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
            decoys: self.sensor.decoys.clone(),
            persona: self.sensor.persona,
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
mod tests;
#[cfg(test)]
mod tests_checks;
#[cfg(test)]
mod tests_decoys;
#[cfg(test)]
mod tests_trapster;
