//! The typed sections of the configuration: the community `logger` block and the sensor's
//! own `sensor` section (XDP, port-scan merging, identity), each with its defaults.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::format::Format;

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
    /// What one source is, for every per-source limit and for incidents: IPv4 /32 and IPv6 /64
    /// by default.
    #[serde(default)]
    pub source_prefix: crate::net::SourcePrefix,
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode where the driver supports it, generic mode otherwise.
    #[default]
    Auto,
    /// Generic XDP, run by the kernel network stack; works on every interface.
    Skb,
    /// Native XDP, run by the driver; fails where the driver lacks support.
    Drv,
}

impl std::str::FromStr for XdpMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "skb" => Ok(Self::Skb),
            "drv" => Ok(Self::Drv),
            other => Err(format!(
                "unknown XDP mode `{other}` (expected auto, skb or drv)"
            )),
        }
    }
}

/// `sensor.xdp`: the kernel program and its ring buffer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XdpConfig {
    /// Interfaces to attach to; empty means the top-level `interface`.
    pub interfaces: Vec<String>,
    /// Attach mode.
    pub mode: XdpMode,
    /// Ring buffer size in bytes (power of two, at least one page).
    pub ring_buffer_bytes: u32,
    /// Identical probes (source, destination, port, kind) within this window give one record.
    pub dedup_window_ms: u64,
    /// Records per second allowed per source, all CPUs together (0: unlimited). A source is
    /// the address masked to `sensor.source_prefix` (IPv4 /32, IPv6 /64 by default).
    pub source_budget: u32,
    /// Records per second allowed per CPU (0: unlimited).
    pub cpu_budget: u32,
    /// Pending ring-buffer bytes that wake the reader early.
    pub wakeup_bytes: u32,
    /// The reader drains the ring buffer at least this often.
    pub drain_interval_ms: u64,
    /// Kernel counters are logged this often (0: only at exit).
    pub stats_interval_secs: u64,
    /// Deduplication slots per CPU at most (a power of two, 1024 to 4,194,304); fewer on hosts
    /// where `max_map_memory_mib` would be exceeded.
    pub dedup_slots: u32,
    /// Slots of the per-source budget table shared by all CPUs (a power of two, 1024 to
    /// 16,777,216).
    pub source_slots: u32,
    /// Memory the deduplication cache (per CPU) and the source-budget table may take together,
    /// MiB; the loader shrinks the cache per CPU to fit.
    pub max_map_memory_mib: u32,
    /// Records (XDP) or observations (libpcap) folded in per turn of the agent's loop, so
    /// that shutdown, service events and statistics interleave with draining under any load.
    pub drain_batch: usize,
}

impl Default for XdpConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            mode: XdpMode::Auto,
            ring_buffer_bytes: sensor_common::RECORDS_MAP_BYTES,
            dedup_window_ms: 1_000,
            source_budget: 200_000,
            cpu_budget: 4_000_000,
            wakeup_bytes: 64 * 1024,
            drain_interval_ms: 20,
            stats_interval_secs: 60,
            dedup_slots: sensor_common::DEDUP_SLOTS,
            source_slots: sensor_common::SOURCE_BUDGET_SLOTS,
            max_map_memory_mib: 64,
            drain_batch: 4_096,
        }
    }
}

/// `sensor.portscan`: how probe records are merged into `portscan.query` events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortscanConfig {
    /// Distinct destination ports a source must probe on one destination to be reported.
    pub threshold: usize,
    /// A scan ends when no new probe arrived for this long.
    pub idle_timeout_ms: u64,
    /// A scan still running after this long is reported, and later ports follow in
    /// follow-up events (one per window).
    pub max_window_secs: u64,
    /// Maximum (source, destination) pairs tracked at once; the least recently active is
    /// closed (and reported if it qualifies) when a new one arrives.
    pub max_tracked: usize,
    /// Memory the tracked port sets may hold, MiB (a full 65,536-port scan takes 8 KiB); when
    /// reached, the least recently active pairs are closed first.
    pub max_memory_mib: usize,
}

impl Default for PortscanConfig {
    fn default() -> Self {
        Self {
            threshold: 3,
            idle_timeout_ms: 5_000,
            max_window_secs: 60,
            max_tracked: 65_536,
            max_memory_mib: 64,
        }
    }
}

impl XdpConfig {
    /// The map sizes asked of the loader.
    #[must_use]
    pub fn map_request(&self) -> crate::capture::sizing::MapRequest {
        crate::capture::sizing::MapRequest {
            dedup_slots: self.dedup_slots,
            source_slots: self.source_slots,
            max_bytes: u64::from(self.max_map_memory_mib).saturating_mul(1 << 20),
        }
    }
}

impl PortscanConfig {
    /// The idle timeout as a duration.
    #[must_use]
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// The maximum window as a duration.
    #[must_use]
    pub fn max_window(&self) -> Duration {
        Duration::from_secs(self.max_window_secs)
    }
}
