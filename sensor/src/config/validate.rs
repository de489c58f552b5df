//! The checks `parse` runs after reading: every value `run` would refuse is refused here, with
//! the field named, so `sensor check` catches it first. What is accepted but worth hearing
//! about comes back as [`ConfigWarning`]s, also named by field.

use super::{Config, ConfigError, ConfigWarning, outputs};
use crate::{capture::sizing, net::fds, output::Transport};

impl Config {
    pub(super) fn validate(&self, origin: &str) -> Result<Vec<ConfigWarning>, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            field: field.to_owned(),
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
        if let Err((field, message)) = self.sensor.poisoning.check() {
            return Err(invalid(&format!("sensor.poisoning.{field}"), message));
        }
        if let Err((field, message)) = self.sensor.decoys.check() {
            return Err(invalid(&format!("sensor.decoys.{field}"), message));
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
        if scan.flood_few_ports == 0 {
            return Err(invalid(
                "sensor.portscan.flood_few_ports",
                "must be at least 1".to_owned(),
            ));
        }
        if scan.flood_window_secs == 0 {
            return Err(invalid(
                "sensor.portscan.flood_window_secs",
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
        if let Err(err) = self.sensor.metrics.address() {
            return Err(invalid("sensor.metrics.listen", err));
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
            outputs::check(&output.transport).map_err(|(key, message)| {
                invalid(&format!("outputs[{i}].transport.{key}"), message)
            })?;
        }
        let mut warnings = Vec::new();
        if self.outputs.is_empty() {
            self.check_logger(&mut warnings)
                .map_err(|(field, message)| invalid(&field, message))?;
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
                Some(limits.session_timeout_secs),
            ),
        ] {
            if value == Some(0) {
                return Err(invalid(field, "must be at least 1 second".to_owned()));
            }
        }
        for (field, secs) in [
            (
                "sensor.services.udp_flood_window_secs",
                limits.udp_flood_window_secs,
            ),
            (
                "sensor.services.tcp_flood_window_secs",
                limits.tcp_flood_window_secs,
            ),
        ] {
            if secs == 0 {
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
            .check(limits.ephemeral_ports)
            .map_err(|source| ConfigError::Service {
                origin: origin.to_owned(),
                source,
            })?;
        warnings.extend(self.unknown.iter().map(|key| ConfigWarning {
            field: key.clone(),
            message: "unknown top-level key, ignored".to_owned(),
        }));
        warnings.extend(self.services.unknown().map(|name| ConfigWarning {
            field: format!("services.{name}"),
            message: "protocol not emulated by this version, its instances are ignored".to_owned(),
        }));
        warnings.extend(
            self.services
                .unknown_keys()
                .into_iter()
                .map(|field| ConfigWarning {
                    field,
                    message: "unknown key, ignored".to_owned(),
                }),
        );
        for protocol in ["http", "https"] {
            for (i, instance) in self.services.listed(protocol).iter().enumerate() {
                let Some(skin) = instance.get("skin").and_then(serde_json::Value::as_str) else {
                    continue;
                };
                if let Some(fallback) = crate::services::proto::http::skin::fallback_for(
                    skin,
                    &self.sensor.services.skin_dirs,
                ) {
                    warnings.push(ConfigWarning {
                        field: format!("services.{protocol}[{i}].skin"),
                        message: format!(
                            "skin `{skin}` is not in the skin directories nor built in: the \
                             built-in `{fallback}` (same kind) is served instead"
                        ),
                    });
                }
            }
        }
        // `run` raises the soft limit to the hard one first (net::fds::raise) and refuses what
        // does not fit then; `check` refuses it the same way, with what this process could
        // reach.
        if let Ok(limit) = fds::current()
            && let Err(err) =
                fds::check_connections(limits.max_connections, fds::target(limit).min(limit.hard))
        {
            return Err(invalid("sensor.services.max_connections", err.to_string()));
        }
        // Replies from UDP decoy ports below the unprivileged port start need a raw socket
        // opened at start (`CAP_NET_RAW`): without it `run` reports those datagrams but cannot
        // answer them. Tried here as `run` tries it.
        let first_free = crate::services::instances::unprivileged_port_start();
        if self.sensor.decoys.steers_udp_below(first_free)
            && let Err(err) = crate::net::raw_udp::RawUdp::open(first_free)
        {
            warnings.push(ConfigWarning {
                field: "sensor.decoys.udp".to_owned(),
                message: format!(
                    "UDP decoy ports below {first_free} (net.ipv4.ip_unprivileged_port_start) \
                     are answered through a raw socket opened at start, which needs CAP_NET_RAW \
                     ({err}): without it their datagrams are reported but not answered"
                ),
            });
        }
        if self.sensor.identity.cef_severity.is_some_and(|s| s > 10) {
            return Err(invalid(
                "sensor.identity.cef_severity",
                "must be 0 to 10".to_owned(),
            ));
        }
        for (i, crumb) in self.sensor.breadcrumbs.iter().enumerate() {
            if crumb.username.is_empty() {
                return Err(invalid(
                    &format!("sensor.breadcrumbs[{i}].username"),
                    "must not be empty".to_owned(),
                ));
            }
            if let Some(service) = &crumb.service
                && !crate::event::Service::ALL.iter().any(|s| {
                    s.as_str().eq_ignore_ascii_case(service)
                        && !matches!(
                            s,
                            crate::event::Service::Portscan
                                | crate::event::Service::Sensor
                                | crate::event::Service::Breadcrumb
                        )
                })
            {
                return Err(invalid(
                    &format!("sensor.breadcrumbs[{i}].service"),
                    format!("`{service}` is not a service with logins (ftp, ssh, http, ...)"),
                ));
            }
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
        Ok(warnings)
    }

    /// The one output the community `logger` block defines, with its `kwargs` named.
    fn check_logger(&self, warnings: &mut Vec<ConfigWarning>) -> Result<(), (String, String)> {
        let output = self
            .logger_output()
            .map_err(|(field, message)| (field.to_owned(), message))?;
        warnings.extend(self.logger_warnings());
        outputs::check(&output.transport).map_err(|(key, message)| {
            let key = match key {
                "path" => "logfile",
                other => other,
            };
            (format!("logger.kwargs.{key}"), message)
        })
    }
}

/// `sensor.run_as` must name a user of this system (or `root`): an unknown one is refused with
/// the line and column of the value, so `check` catches what `run` would fail on.
pub(super) fn run_as(user: Option<&str>, text: &str, origin: &str) -> Result<(), ConfigError> {
    let Some(user) = user.filter(|u| *u != "root") else {
        return Ok(());
    };
    let message = match nix::unistd::User::from_name(user) {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => format!(
            "no user `{user}` on this system (create it with `useradd --system \
             --no-create-home --shell /usr/sbin/nologin {user}`, or install the package, which \
             creates `trapster-sensor`)"
        ),
        Err(err) => format!("looking up user `{user}` failed: {err}"),
    };
    let (line, column) = position_of_key(text, "run_as");
    Err(ConfigError::Parse {
        origin: origin.to_owned(),
        field: "sensor.run_as".to_owned(),
        message,
        line,
        column,
    })
}

/// The 1-based line and column of the first `"key"` in `text` (1, 1 when absent).
fn position_of_key(text: &str, key: &str) -> (usize, usize) {
    let quoted = format!("\"{key}\"");
    let Some(at) = text.find(&quoted) else {
        return (1, 1);
    };
    let before = text.get(..at).unwrap_or_default();
    let line = before.matches('\n').count().saturating_add(1);
    let column = before
        .rfind('\n')
        .map_or(at, |nl| at.saturating_sub(nl).saturating_sub(1))
        .saturating_add(1);
    (line, column)
}
