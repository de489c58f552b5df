//! The periodic `sensor.heartbeat` event (`sensor.heartbeat.interval_secs`, off by default): it
//! goes through the Event pipeline to every output, so a SIEM can alert on a sensor gone silent
//! (Trapster Enterprise's "Trapster disconnected" incident) and see at a glance whether it is
//! healthy: uptime, version, what it has seen and sent, and which decoys are down.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::RunSummary;
use crate::{
    event::{Action, Event},
    services::DownService,
};

/// When the next heartbeat is due, and since when the sensor runs.
#[derive(Debug)]
pub(super) struct Heartbeat {
    started: Instant,
    tick: Option<tokio::time::Interval>,
}

impl Heartbeat {
    /// A heartbeat every `interval_secs` (none when 0); the first one after one interval.
    pub(super) fn new(interval_secs: u64) -> Self {
        let tick = (interval_secs > 0).then(|| {
            let period = Duration::from_secs(interval_secs);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        Self {
            started: Instant::now(),
            tick,
        }
    }

    /// Changes the interval (configuration reload); the uptime keeps counting.
    pub(super) fn set_interval(&mut self, interval_secs: u64) {
        let started = self.started;
        *self = Self::new(interval_secs);
        self.started = started;
    }

    /// Waits for the next heartbeat; never resolves when heartbeats are off.
    pub(super) async fn due(&mut self) {
        match &mut self.tick {
            Some(tick) => {
                tick.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// The heartbeat event for the counters in `summary`.
    pub(super) fn event(
        &self,
        summary: &RunSummary,
        down: &[DownService],
        interfaces: &[String],
    ) -> Event {
        Event::health(
            Action::Heartbeat,
            extra(self.started.elapsed(), summary, down, interfaces),
        )
    }
}

/// The heartbeat's `extra`: `uptime_secs`, `version`, `commit`, `interfaces`, `events`,
/// `scans_reported`, `outputs` (per output `sent`, `dropped`, `failing_secs`), `kernel`
/// (`packets`, `records`, `ring_buffer_full`; null without XDP) and `degraded_decoys`
/// (`service:port`).
fn extra(
    uptime: Duration,
    summary: &RunSummary,
    down: &[DownService],
    interfaces: &[String],
) -> Map<String, Value> {
    use sensor_common::Counter;
    let outputs: Map<String, Value> = summary
        .outputs
        .iter()
        .map(|o| {
            (
                o.name.clone(),
                json!({"sent": o.counts.sent, "dropped": o.counts.dropped, "failing_secs": o.failing_secs}),
            )
        })
        .collect();
    let kernel = summary.kernel.map_or(Value::Null, |k| {
        json!({
            "packets": k.get(Counter::Packets),
            "records": k.get(Counter::RecordsSent),
            "ring_buffer_full": k.get(Counter::RingBufFull),
        })
    });
    let decoys: Vec<Value> = down
        .iter()
        .map(|d| Value::from(format!("{}:{}", d.service.as_str(), d.port)))
        .collect();
    let mut extra = Map::new();
    extra.insert("uptime_secs".to_owned(), uptime.as_secs().into());
    extra.insert("version".to_owned(), env!("CARGO_PKG_VERSION").into());
    extra.insert("commit".to_owned(), env!("SENSOR_GIT_COMMIT").into());
    extra.insert("interfaces".to_owned(), interfaces.into());
    extra.insert("events".to_owned(), summary.events.into());
    extra.insert("scans_reported".to_owned(), summary.merger.reports.into());
    extra.insert("outputs".to_owned(), outputs.into());
    extra.insert("kernel".to_owned(), kernel);
    extra.insert("degraded_decoys".to_owned(), decoys.into());
    extra
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::Service, output::OutputStats, scan::MergerStats, services::ServiceError};

    fn summary() -> RunSummary {
        RunSummary {
            kernel: None,
            pcap: None,
            merger: MergerStats {
                reports: 3,
                ..MergerStats::default()
            },
            undecodable: 0,
            aggregate: None,
            events: 7,
            outputs: vec![OutputStats {
                name: "siem".to_owned(),
                kind: "http",
                counts: crate::output::ledger::Snapshot {
                    received: 7,
                    sent: 5,
                    dropped: 2,
                    ..Default::default()
                },
                retried: 0,
                failing_secs: Some(40),
            }],
            services: Value::Null,
        }
    }

    #[test]
    fn the_heartbeat_names_uptime_version_counters_and_decoys_down() {
        let down = [DownService {
            service: Service::Ftp,
            port: 21,
            error: ServiceError::Setup {
                service: "ftp",
                port: 21,
                message: "port held".to_owned(),
            },
        }];
        let extra = extra(
            Duration::from_secs(125),
            &summary(),
            &down,
            &["ens3".to_owned()],
        );
        assert_eq!(
            Value::Object(extra),
            json!({
                "uptime_secs": 125,
                "version": env!("CARGO_PKG_VERSION"),
                "commit": env!("SENSOR_GIT_COMMIT"),
                "interfaces": ["ens3"],
                "events": 7,
                "scans_reported": 3,
                "outputs": {"siem": {"sent": 5, "dropped": 2, "failing_secs": 40}},
                "kernel": null,
                "degraded_decoys": ["ftp:21"],
            })
        );
    }

    #[test]
    fn the_event_is_sensor_heartbeat_with_unspecified_addresses() {
        let beat = Heartbeat::new(0);
        let event = beat.event(&summary(), &[], &[]);
        assert_eq!(event.logtype().to_string(), "sensor.heartbeat");
        assert_eq!(event.session.src_port, 0);
        assert!(event.session.dst_ip.is_unspecified());
    }
}
