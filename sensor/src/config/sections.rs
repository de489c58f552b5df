//! The typed sections of the configuration: the community `logger` block and the sensor's
//! own `sensor` section (XDP, port-scan merging, identity), each with its defaults.

use serde::Deserialize;
use serde_json::Value;

use crate::format::Format;
pub use crate::{
    capture::{XdpConfig, XdpMode},
    scan::PortscanConfig,
};

/// The community `logger` block: `output` `terminal`, `file` (kwargs `logfile`, `mode`),
/// `redis` (kwargs `host`, `port`) or `api` (kwargs `url`, `headers`), or a legacy `name`
/// (`JsonLogger`, `FileLogger`, `EcsLogger`, `RedisLogger`, `ApiLogger`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LoggerConfig {
    /// `terminal` (default).
    #[serde(default)]
    pub output: Option<String>,
    /// `default` (Trapster community JSON), `trapster`, `ecs` or `cef`.
    #[serde(default)]
    pub format: Format,
    /// Output options (none for `terminal`).
    #[serde(default)]
    pub kwargs: Value,
    /// Legacy logger class name (`JsonLogger`), meaning the terminal output.
    #[serde(default)]
    pub name: Option<String>,
}

/// Keys of Trapster's ECS format options.
pub const FORMAT_KWARGS: [&str; 5] = [
    "service_version",
    "environment",
    "host_name",
    "observer_name",
    "ecs_version",
];

impl LoggerConfig {
    /// Trapster's format options: `kwargs.format_kwargs`, else the same keys given flat in
    /// `kwargs` (Trapster's convenience form and its `EcsLogger` arguments).
    #[must_use]
    pub fn format_kwargs(&self) -> serde_json::Map<String, Value> {
        if let Some(Value::Object(nested)) = self.kwargs.get("format_kwargs") {
            return nested.clone();
        }
        FORMAT_KWARGS
            .iter()
            .filter_map(|k| self.kwargs.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect()
    }

    /// Trapster's output options: `kwargs.output_kwargs`, else the same keys given flat in
    /// `kwargs`.
    #[must_use]
    pub fn output_kwargs(&self) -> serde_json::Map<String, Value> {
        if let Some(Value::Object(nested)) = self.kwargs.get("output_kwargs") {
            return nested.clone();
        }
        OUTPUT_KWARGS
            .iter()
            .filter_map(|k| self.kwargs.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect()
    }
}

/// Keys of Trapster's output options.
pub const OUTPUT_KWARGS: [&str; 6] = ["logfile", "mode", "url", "headers", "host", "port"];

/// `sensor.identity`: how the sensor names itself in the `trapster`, `ecs` and `cef` formats.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Device name; default: `hostname`, else `id`.
    pub device_name: Option<String>,
    /// Device template (Trapster enterprise); default `custom`.
    pub template: Option<String>,
    /// Namespace id; default null.
    pub namespace_id: Option<String>,
    /// Namespace name; default `default`.
    pub namespace_name: Option<String>,
    /// `ecs.version` of the ECS format; default 8.11.0 (as Trapster).
    pub ecs_version: Option<String>,
    /// CEF header severity, 0–10; default 10.
    pub cef_severity: Option<u8>,
    /// The ECS format adds the sensor's fields Trapster does not write (`event.id`,
    /// `message`, `source.address`, `url.original`, ...); default false.
    pub ecs_extended: bool,
}

/// The `sensor` section: settings Trapster does not have.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSection {
    /// XDP capture settings.
    #[serde(default)]
    pub xdp: XdpConfig,
    /// Port-scan merging settings.
    #[serde(default)]
    pub portscan: PortscanConfig,
    /// Names used by the event formats.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Limits and state of the emulated services.
    #[serde(default)]
    pub services: crate::services::ServiceLimits,
    /// How events fold into incidents.
    #[serde(default)]
    pub incidents: crate::incident::IncidentConfig,
    /// Planted credentials: a login with one of them also emits `breadcrumb.login` and makes
    /// the incident critical.
    #[serde(default)]
    pub breadcrumbs: Vec<crate::incident::Breadcrumb>,
    /// Honeytokens: URL paths on the HTTP/HTTPS decoys whose fetch emits `honeytoken.url`.
    #[serde(default)]
    pub honeytokens: crate::incident::HoneytokenConfig,
    /// What one source is, for every per-source limit and for incidents: IPv4 /32 and IPv6 /64
    /// by default.
    #[serde(default)]
    pub source_prefix: crate::net::SourcePrefix,
    /// LLMNR / NBT-NS / mDNS poisoning detection (off by default).
    #[serde(default)]
    pub poisoning: crate::poisoning::PoisoningConfig,
    /// The user the sensor switches to once started as root (`root` to stay root); default
    /// `trapster-sensor` when that user exists. Every capability is dropped either way.
    #[serde(default)]
    pub run_as: Option<String>,
    /// The Prometheus `/metrics` and `/healthz` listener (off by default).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The periodic `sensor.heartbeat` event (off by default).
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    /// Any-port decoys: TCP and UDP ports steered to the agent by the `sk_lookup` program and
    /// handed to the emulated services (off by default).
    #[serde(default)]
    pub decoys: crate::services::framework::anyport::config::DecoysConfig,
    /// The machine the decoys present together (`debian-12-server`, `windows-server-2022`,
    /// `cisco-ios`, or `none` for each service's own defaults); default `debian-12-server`.
    #[serde(default)]
    pub persona: crate::services::Persona,
}

/// `sensor.heartbeat`: a `sensor.heartbeat` event through every output at a fixed interval, so
/// a SIEM can alert on a sensor gone silent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// Seconds between two heartbeats; 0 (the default) sends none.
    pub interval_secs: u64,
}

/// `sensor.metrics`: an HTTP listener serving `/metrics` (Prometheus text) and `/healthz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `address:port`, or a port alone for `127.0.0.1:port`; absent: no listener.
    pub listen: Option<String>,
    /// How often the served values are refreshed, seconds (the stats file's ticks refresh
    /// them too).
    pub refresh_secs: u64,
    /// `/healthz` fails once an output has been failing this long, seconds.
    pub output_failing_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            refresh_secs: 10,
            output_failing_secs: 300,
        }
    }
}

impl MetricsConfig {
    /// The address to listen on, if on: a bare port means loopback.
    ///
    /// # Errors
    /// The problem with `listen`, for the field's error message.
    pub fn address(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let Some(listen) = self.listen.as_deref() else {
            return Ok(None);
        };
        if let Ok(port) = listen.parse::<u16>() {
            return Ok(Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))));
        }
        listen
            .parse()
            .map(Some)
            .map_err(|_| format!("`{listen}` is neither a port nor address:port"))
    }
}
