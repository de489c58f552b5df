//! Port-scan detection in userspace: probe observations are merged per (source, destination)
//! into scans, and finished scans become `portscan.query` events.

mod config;
mod merger;
mod portset;

pub use config::PortscanConfig;
pub use merger::{Merger, MergerStats, ScanReport};
pub use portset::PortSet;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{
    clock::WallClock,
    event::{Action, Event, Service, SessionIdentity},
};

/// Turns a scan report into the `portscan.query` event Trapster emits: `dst_port` is the lowest
/// probed port, `src_port` is 1, `data` is empty, `extra.flags` lists the probe kinds and
/// `extra.ports` every distinct port, ascending, as strings. The timestamp is the first probe's.
#[must_use]
pub fn to_event(report: &ScanReport, clock: &WallClock) -> Event {
    let mut extra = Map::new();
    extra.insert(
        "flags".to_owned(),
        Value::Array(
            report
                .kinds
                .iter()
                .map(|k| Value::from(k.token()))
                .collect(),
        ),
    );
    extra.insert(
        "ports".to_owned(),
        Value::Array(
            report
                .ports
                .iter()
                .map(|p| Value::from(p.to_string()))
                .collect(),
        ),
    );
    Event {
        id: Uuid::new_v4(),
        timestamp: clock.to_wall(report.first_ns),
        session: SessionIdentity {
            src_ip: report.src,
            src_port: 1,
            dst_ip: report.dst,
            dst_port: report.ports.first().copied().unwrap_or(0),
        },
        service: Service::Portscan,
        action: Action::Query,
        data: bytes::Bytes::new(),
        extra,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use sensor_common::ProbeKind;

    use super::{ScanReport, to_event};
    use crate::clock::WallClock;

    #[test]
    fn report_becomes_trapster_shaped_event() {
        let report = ScanReport {
            src: "1.2.3.4".parse().unwrap(),
            dst: "5.6.7.8".parse().unwrap(),
            ports: vec![1, 3, 25],
            kinds: vec![ProbeKind::Syn, ProbeKind::Xmas],
            first_ns: 2_000,
            last_ns: 9_000,
            follow_up: false,
        };
        let clock =
            WallClock::anchored(Utc.with_ymd_and_hms(2026, 2, 13, 13, 0, 9).unwrap(), 1_000);
        let event = to_event(&report, &clock);
        assert_eq!(event.logtype().to_string(), "portscan.query");
        assert_eq!(event.session.dst_port, 1);
        assert_eq!(event.session.src_port, 1);
        assert!(event.data.is_empty());
        assert_eq!(
            serde_json::Value::Object(event.extra.clone()),
            serde_json::json!({
                "flags": ["SYN", "XMAS"], "ports": ["1", "3", "25"]
            })
        );
        assert_eq!(event.timestamp.timestamp_subsec_nanos(), 1_000);
    }
}
