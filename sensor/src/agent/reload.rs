//! Configuration reload on SIGHUP: the file given with `-c` is read and checked again, as
//! `sensor check` would; a configuration that does not pass is refused (the error logged) and
//! the running one stays. An accepted one is applied part by part, each only when it changed:
//!
//! - `whitelist_ips`: the allow-list is replaced while capturing, the XDP program's kernel map
//!   in place (still attached, its link unchanged) or the list the libpcap threads apply from
//!   their next frame (`--capture pcap`); the decoys' listeners check the new list at once;
//! - the outputs (`outputs`, `logger`, identity and format settings): new outputs start, the
//!   old ones drain what they hold within their deadline in the background;
//! - `sensor.portscan`, `sensor.source_prefix`: scans in progress are reported with the old
//!   settings, new ones are merged with the new;
//! - `sensor.breadcrumbs`, `sensor.honeytokens`, `sensor.heartbeat`: replaced;
//! - the decoys (`services`, `hostname`, `domain`, `sensor.services`), instance by instance
//!   ([`Services::reload`](crate::services::Services::reload)): an instance is its protocol and
//!   port. Unchanged instances keep running untouched, their listeners and open sessions
//!   included; removed ones stop (their sessions end within the grace period and their sockets
//!   close); added and changed ones start. A changed instance, or a new one on the port of one
//!   that stops, takes over the already bound socket for the same address, port and transport
//!   instead of binding again, so decoys on ports below `net.ipv4.ip_unprivileged_port_start`
//!   can change after the privilege drop; only a port below it that no stopping instance held
//!   is refused (that decoy is down, logged with the port, `CAP_NET_BIND_SERVICE` and that a
//!   restart applies it, and a `sensor.degraded` event). A top-level `hostname` or `domain`
//!   restarts the instances that do not set their own (the sensor cannot tell which protocols
//!   present the names, most do); `sensor.services` and `sensor.source_prefix` restart every
//!   instance (their sockets are taken over all the same). Decoys that were down are tried
//!   again at every reload. With `sensor.services.strict`, a reload in which one instance
//!   cannot start changes no decoy. The any-port decoys (`sensor.decoys`) follow too, turned
//!   on or off ([`super::decoys`]).
//!
//! Settings read only at start (`interface`, `sensor.xdp`, `sensor.metrics`, `sensor.run_as`,
//! `sensor.poisoning`, `sensor.incidents`) keep their running values, each named in a warning.

use std::path::Path;

use super::{OUTPUT_GRACE, Running, SERVICE_GRACE};
use crate::{config::Config, output::Fanout, scan::Merger};

/// The decoys' settings without the whitelist (reloaded on its own), for comparison.
fn services_key(config: &Config) -> String {
    let mut plan = config.services_plan();
    plan.whitelist = Vec::new();
    format!("{plan:?}")
}

/// The settings only a restart applies that differ between `old` and `new`.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let s = (&old.sensor, &new.sensor);
    [
        ("interface", old.interface != new.interface),
        (
            "sensor.xdp",
            format!("{:?}", s.0.xdp) != format!("{:?}", s.1.xdp),
        ),
        (
            "sensor.metrics",
            format!("{:?}", s.0.metrics) != format!("{:?}", s.1.metrics),
        ),
        ("sensor.run_as", s.0.run_as != s.1.run_as),
        (
            "sensor.poisoning",
            format!("{:?}", s.0.poisoning) != format!("{:?}", s.1.poisoning),
        ),
        (
            "sensor.incidents",
            format!("{:?}", s.0.incidents) != format!("{:?}", s.1.incidents),
        ),
    ]
    .into_iter()
    .filter_map(|(field, changed)| changed.then_some(field))
    .collect()
}

impl Running {
    /// Reads `path` again and applies what changed (see the module documentation).
    pub(super) async fn reload(&mut self, path: &Path) {
        let new = match Config::from_file(path) {
            Ok(new) => new,
            Err(err) => {
                tracing::error!(error = %err, "Configuration reload refused; the running configuration stays.");
                return;
            }
        };
        for warning in &new.warnings {
            tracing::warn!(field = %warning.field, problem = %warning.message, "Configuration accepted with a warning.");
        }
        let mut applied: Vec<&'static str> = Vec::new();
        if new.whitelist_ips != self.config.whitelist_ips {
            if let Err(err) = self.source.set_allowlist(&new.whitelist_ips) {
                tracing::error!(error = %err, "Configuration reload refused: the kernel allow-list could not be updated; the running configuration stays.");
                // Put back what the kernel may have half taken.
                if let Err(err) = self.source.set_allowlist(&self.config.whitelist_ips) {
                    tracing::error!(error = %err, "Restoring the kernel allow-list failed.");
                }
                return;
            }
            if let Some(services) = &self.services {
                services.set_whitelist(new.whitelist_ips.clone());
            }
            applied.push("whitelist_ips");
        }
        if new.effective_outputs() != self.config.effective_outputs()
            || new.format_context() != self.config.format_context()
        {
            let fanout = Fanout::start(&new.effective_outputs(), &new.format_context());
            let old = std::mem::replace(&mut self.pipeline.fanout, fanout);
            tokio::spawn(async move {
                let stats = old.finish(OUTPUT_GRACE).await;
                for output in stats {
                    tracing::info!(output = %output.name, sent = output.counts.sent, dropped = output.counts.dropped, "Output replaced by the reloaded configuration; it has drained.");
                }
            });
            applied.push("outputs");
        }
        if format!("{:?}", new.sensor.portscan) != format!("{:?}", self.config.sensor.portscan)
            || new.sensor.source_prefix != self.config.sensor.source_prefix
        {
            self.merger.flush(&mut self.pipeline.reports);
            self.pipeline.emit_reports();
            self.merger =
                Merger::new(&new.sensor.portscan).with_source_prefix(new.sensor.source_prefix);
            applied.push("sensor.portscan");
        }
        if new.sensor.breadcrumbs != self.config.sensor.breadcrumbs {
            self.pipeline.breadcrumbs =
                crate::incident::Breadcrumbs::new(new.sensor.breadcrumbs.clone());
            applied.push("sensor.breadcrumbs");
        }
        if new.sensor.honeytokens != self.config.sensor.honeytokens {
            self.pipeline.honeytokens = new.sensor.honeytokens.clone();
            applied.push("sensor.honeytokens");
        }
        if new.sensor.heartbeat != self.config.sensor.heartbeat {
            self.heartbeat
                .set_interval(new.sensor.heartbeat.interval_secs);
            applied.push("sensor.heartbeat");
        }
        let down = self.services.as_ref().is_some_and(|s| !s.down().is_empty());
        if (down || services_key(&new) != services_key(&self.config))
            && self.reload_services(&new).await
        {
            applied.push("services");
        }
        let kept = restart_only(&self.config, &new);
        if !kept.is_empty() {
            tracing::warn!(fields = ?kept, "These settings change only at the next start; their running values stay.");
        }
        tracing::info!(applied = ?applied, path = %path.display(), "Configuration reloaded.");
        // What was not applied stays as it runs, so the next reload compares with that.
        let mut running = new;
        running.interface.clone_from(&self.config.interface);
        running.sensor.xdp = self.config.sensor.xdp.clone();
        running.sensor.metrics = self.config.sensor.metrics.clone();
        running.sensor.run_as.clone_from(&self.config.sensor.run_as);
        running.sensor.poisoning = self.config.sensor.poisoning.clone();
        running.sensor.incidents = self.config.sensor.incidents.clone();
        if !applied.contains(&"services") && services_key(&running) != services_key(&self.config) {
            running.services = self.config.services.clone();
            running.hostname.clone_from(&self.config.hostname);
            running.domain.clone_from(&self.config.domain);
            running.sensor.services = self.config.sensor.services.clone();
        }
        self.config = running;
    }

    /// Applies `new`'s decoys instance by instance, delivering service events meanwhile;
    /// false (logged) when the change was refused and the running decoys stay as they were.
    async fn reload_services(&mut self, new: &Config) -> bool {
        let plan = new.services_plan();
        let Some(services) = self.services.as_mut() else {
            // The decoys are not running (a failed start): start them afresh.
            return match crate::services::start(&plan, self.sink.clone(), &self.shutdown).await {
                Ok(services) => {
                    for down in services.down() {
                        self.pipeline.deliver(down.event());
                    }
                    self.services = Some(services);
                    true
                }
                Err(err) => {
                    tracing::error!(error = %err, "The reloaded services could not start; the decoys stay down until the next reload or restart.");
                    false
                }
            };
        };
        let outcome = {
            let reloading = services.reload(&plan, SERVICE_GRACE);
            tokio::pin!(reloading);
            loop {
                tokio::select! {
                    outcome = &mut reloading => break outcome,
                    Some(event) = self.service_events.recv() => self.pipeline.deliver(event),
                }
            }
        };
        match outcome {
            Ok(reloaded) => {
                let names = |keys: &[crate::services::instances::InstanceKey]| -> Vec<String> {
                    keys.iter().map(ToString::to_string).collect()
                };
                tracing::info!(kept = ?names(&reloaded.kept), stopped = ?names(&reloaded.stopped), started = ?names(&reloaded.started), "Decoys reloaded instance by instance; the kept ones were not touched.");
                if let Some(services) = &self.services {
                    for down in services.down() {
                        self.pipeline.deliver(down.event());
                    }
                    match &mut self.decoys {
                        Some(attached) => super::decoys::refresh(attached, services),
                        None if services.decoys().is_some() => {
                            // No program from the start (not an XDP capture, or refused then):
                            // loading one now works while the capabilities are still there.
                            let mut events = Vec::new();
                            self.decoys =
                                super::decoys::attach(services, |e| events.push(e), false);
                            for event in events {
                                self.pipeline.deliver(event);
                            }
                            if self.decoys.is_none() {
                                tracing::warn!(
                                    "sensor.decoys is on in the reloaded configuration, but the sk_lookup program could not be loaded now; restart the sensor to steer decoy ports."
                                );
                            }
                        }
                        None => {}
                    }
                }
                true
            }
            Err(err) => {
                tracing::error!(error = %err, "The services change was refused; every running decoy stays as it was.");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_start_time_settings_are_named_as_needing_a_restart() {
        let old = Config::parse(r#"{"interface": "lo"}"#, "old").unwrap();
        let same = Config::parse(
            r#"{"interface": "lo", "whitelist_ips": ["10.0.0.0/8"],
                "sensor": {"portscan": {"threshold": 9}}}"#,
            "new",
        )
        .unwrap();
        assert_eq!(restart_only(&old, &same), Vec::<&str>::new());
        let moved = Config::parse(
            r#"{"interface": "eth9", "sensor": {"run_as": "root", "xdp": {"mode": "skb"}}}"#,
            "new",
        )
        .unwrap();
        assert_eq!(
            restart_only(&old, &moved),
            vec!["interface", "sensor.xdp", "sensor.run_as"]
        );
    }

    #[test]
    fn the_services_key_ignores_the_whitelist_and_sees_a_port_change() {
        let base = Config::parse(r#"{"services": {"ftp": [{"port": 2121}]}}"#, "a").unwrap();
        let whitelisted = Config::parse(
            r#"{"whitelist_ips": ["192.0.2.0/24"], "services": {"ftp": [{"port": 2121}]}}"#,
            "b",
        )
        .unwrap();
        let moved = Config::parse(r#"{"services": {"ftp": [{"port": 2122}]}}"#, "c").unwrap();
        assert_eq!(services_key(&base), services_key(&whitelisted));
        assert_ne!(services_key(&base), services_key(&moved));
    }
}
