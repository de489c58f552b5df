//! Port-scan detection in userspace: probe observations are merged per (source, destination,
//! protocol) into scans, and finished scans become `portscan.query` events, with the scanner
//! attribution and OS hint of [`attribution`].

pub mod attribution;
mod config;
pub mod flood;
mod merger;
mod portset;

pub use config::PortscanConfig;
pub use flood::FloodSummary;
pub use merger::{Merger, MergerStats, ScanReport};
pub use portset::PortSet;

use serde_json::Value;
use uuid::Uuid;

use crate::{
    clock::WallClock,
    event::{Action, Event, Extra, Service, SessionIdentity},
};

/// Turns a scan report into the `portscan.query` event Trapster emits: `dst_port` is the lowest
/// probed port, `src_port` is 1, `data` is empty, `extra.flags` lists the probe kinds and
/// `extra.ports` every distinct port, ascending, as strings. The timestamp is the first probe's.
///
/// Added to Trapster's keys: `extra.protocol` (`tcp`, `udp`, or `icmp` for host discovery,
/// whose `extra.icmp_types` names the requests seen and whose `ports` is empty),
/// `extra.tool`, `extra.os` and `extra.os_signature` ([`attribution`]).
///
/// A flood summary ([`ScanReport::flood`]) becomes a `portscan.flood` event instead
/// ([`flood_event`]).
#[must_use]
pub fn to_event(report: &ScanReport, clock: &WallClock) -> Event {
    if let Some(summary) = &report.flood {
        return flood_event(report, summary, clock);
    }
    let mut extra = Extra::new();
    extra.insert("flags".to_owned(), flags(report));
    extra.set_ports(report.ports.as_slice());
    extra.insert(
        "protocol".to_owned(),
        Value::from(protocol_name(report.protocol)),
    );
    if report.protocol == sensor_common::protocol::ICMP {
        extra.insert(
            "icmp_types".to_owned(),
            Value::Array(
                report
                    .icmp_types
                    .iter()
                    .map(|t| Value::from(icmp_type_name(*t)))
                    .collect(),
            ),
        );
    }
    extra.insert("tool".to_owned(), Value::from(report.tool.as_str()));
    extra.insert("os".to_owned(), Value::from(report.os.label));
    extra.insert(
        "os_signature".to_owned(),
        Value::from(report.os.signature.clone()),
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

/// `extra.flags`: the probe kinds seen, as tokens.
fn flags(report: &ScanReport) -> Value {
    Value::Array(
        report
            .kinds
            .iter()
            .map(|k| Value::from(k.token()))
            .collect(),
    )
}

/// `extra.ports`: ports as strings, in the given (ascending) order.
fn ports(ports: &[u16]) -> Value {
    Value::Array(ports.iter().map(|p| Value::from(p.to_string())).collect())
}

/// `extra.protocol` of an IP protocol number.
const fn protocol_name(protocol: u8) -> &'static str {
    match protocol {
        sensor_common::protocol::UDP => "udp",
        sensor_common::protocol::ICMP => "icmp",
        _ => "tcp",
    }
}

/// The `portscan.flood` event of a summary: `src_ip` is the unspecified address (many
/// sources), `dst_port` the lowest port; `extra`: `sources` and `probes` (folded into this
/// summary), `reported` (few-port sources of the window already reported one by one),
/// `ports` (every distinct port, ascending, as strings), `flags`, `protocol`, `top_sources`
/// (`[{"ip", "probes"}]`, most probes first) and `sample` (`[{"ip", "ports"}]`, first folded).
/// The timestamp is the first folded probe's.
#[must_use]
pub fn flood_event(report: &ScanReport, summary: &FloodSummary, clock: &WallClock) -> Event {
    let mut extra = Extra::new();
    extra.insert("sources".to_owned(), Value::from(summary.sources));
    extra.insert("probes".to_owned(), Value::from(summary.probes));
    extra.insert("reported".to_owned(), Value::from(summary.reported));
    extra.set_ports(summary.ports.as_slice());
    extra.insert("flags".to_owned(), flags(report));
    extra.insert(
        "protocol".to_owned(),
        Value::from(protocol_name(report.protocol)),
    );
    extra.insert(
        "top_sources".to_owned(),
        Value::Array(
            summary
                .top_sources
                .iter()
                .map(|(ip, n)| {
                    serde_json::json!({"ip": crate::event::display_ip(*ip).to_string(), "probes": n})
                })
                .collect(),
        ),
    );
    extra.insert(
        "sample".to_owned(),
        Value::Array(
            summary
                .sample
                .iter()
                .map(|(ip, ps)| {
                    serde_json::json!({"ip": crate::event::display_ip(*ip).to_string(), "ports": ports(ps)})
                })
                .collect(),
        ),
    );
    Event {
        id: Uuid::new_v4(),
        timestamp: clock.to_wall(report.first_ns),
        session: SessionIdentity {
            src_ip: report.src,
            src_port: 0,
            dst_ip: report.dst,
            dst_port: summary.ports.first().copied().unwrap_or(0),
        },
        service: Service::Portscan,
        action: Action::Flood,
        data: bytes::Bytes::new(),
        extra,
    }
}

/// The `extra.icmp_types` name of an ICMP (ICMPv6 from 128) request type.
fn icmp_type_name(t: u8) -> String {
    use sensor_common::classify::icmp;
    match t {
        icmp::ECHO | icmp::V6_ECHO => "echo".to_owned(),
        icmp::TIMESTAMP => "timestamp".to_owned(),
        icmp::ADDRESS_MASK => "address_mask".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use sensor_common::ProbeKind;

    use super::{
        ScanReport,
        attribution::{OsHint, Tool},
        to_event,
    };
    use crate::clock::WallClock;

    #[test]
    fn report_becomes_trapster_shaped_event() {
        let report = ScanReport {
            src: "1.2.3.4".parse().unwrap(),
            dst: "5.6.7.8".parse().unwrap(),
            ports: vec![1, 3, 25],
            kinds: vec![ProbeKind::Syn, ProbeKind::Xmas],
            protocol: 6,
            icmp_types: vec![],
            tool: Tool::Nmap,
            os: OsHint {
                label: "Linux/Unix",
                signature: "4:64+0:0:1460:1024,*:mss::0".to_owned(),
            },
            first_ns: 2_000,
            last_ns: 9_000,
            follow_up: false,
            probes: 3,
            flood: None,
        };
        let clock =
            WallClock::anchored(Utc.with_ymd_and_hms(2026, 2, 13, 13, 0, 9).unwrap(), 1_000);
        let event = to_event(&report, &clock);
        assert_eq!(event.logtype().to_string(), "portscan.query");
        assert_eq!(event.session.dst_port, 1);
        assert_eq!(event.session.src_port, 1);
        assert!(event.data.is_empty());
        assert_eq!(
            serde_json::Value::from(event.extra.clone()),
            serde_json::json!({
                "flags": ["SYN", "XMAS"], "ports": ["1", "3", "25"], "protocol": "tcp",
                "tool": "nmap", "os": "Linux/Unix", "os_signature": "4:64+0:0:1460:1024,*:mss::0"
            })
        );
        assert_eq!(event.timestamp.timestamp_subsec_nanos(), 1_000);
        let ping = ScanReport {
            ports: vec![],
            kinds: vec![ProbeKind::Ping],
            protocol: 1,
            icmp_types: vec![8, 13, 17],
            tool: Tool::Unknown,
            ..report
        };
        let event = to_event(&ping, &clock);
        assert_eq!(event.session.dst_port, 0);
        assert_eq!(event.extra["flags"], serde_json::json!(["PING"]));
        assert_eq!(event.extra.ports(), Some(&[][..]));
        assert_eq!(
            serde_json::Value::from(event.extra.clone())["ports"],
            serde_json::json!([])
        );
        assert_eq!(event.extra["protocol"], "icmp");
        assert_eq!(
            event.extra["icmp_types"],
            serde_json::json!(["echo", "timestamp", "address_mask"])
        );
        assert_eq!(event.extra["tool"], "unknown");
    }
}
