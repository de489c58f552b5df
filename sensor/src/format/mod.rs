//! Formats: pure functions from an [`Event`] to bytes, one file each. No I/O here; framing
//! (the trailing newline of NDJSON, syslog octet counting) is part of each encoder's contract
//! as documented on it.
//!
//! - `default`: Trapster community JSON ([`community`]).
//! - `trapster`: the enterprise/webhook envelope ([`trapster`]).
//! - `ecs`: Elastic Common Schema ([`ecs`]).
//! - `cef`: ArcSight Common Event Format ([`cef`]).
//! - incidents: Trapster's enterprise incident envelope, or a CEF line ([`incident`]);
//!   [`encode_message`] picks the encoder for an event or an incident.

pub mod cef;
pub mod chat;
pub mod community;
pub mod ecs;
pub mod incident;
pub mod trapster;

use bytes::BytesMut;
use serde::Deserialize;

use crate::event::{Event, Message};

/// A format, as named in `logger.format` and in each output's `format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Trapster community JSON.
    #[default]
    Default,
    /// Trapster enterprise envelope JSON.
    Trapster,
    /// Elastic Common Schema JSON.
    Ecs,
    /// Common Event Format text.
    Cef,
}

impl Format {
    /// Every format.
    pub const ALL: [Self; 4] = [Self::Default, Self::Trapster, Self::Ecs, Self::Cef];
}

/// Who the sensor is, as the formats report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Device id (configuration `id`).
    pub device_id: String,
    /// Device name (configuration `hostname`, else `id`).
    pub device_name: String,
    /// Device template (Trapster enterprise); `None` is rendered as JSON null.
    pub template: Option<String>,
    /// Namespace id; `None` is rendered as JSON null.
    pub namespace_id: Option<String>,
    /// Namespace name.
    pub namespace_name: String,
}

/// Everything a format needs besides the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatContext {
    /// The sensor's identity.
    pub identity: Identity,
    /// The ECS format's options (Trapster's `format_kwargs`).
    pub ecs: ecs::EcsOptions,
    /// CEF header severity (0–10).
    pub cef_severity: u8,
}

impl FormatContext {
    /// A context for a device id, with every other field at its default.
    #[must_use]
    pub fn for_device(device_id: &str) -> Self {
        Self {
            identity: Identity {
                device_id: device_id.to_owned(),
                device_name: device_id.to_owned(),
                template: Some("custom".to_owned()),
                namespace_id: None,
                namespace_name: "default".to_owned(),
            },
            ecs: ecs::EcsOptions::default(),
            cef_severity: 10,
        }
    }
}

/// A format failed (only JSON serialisation can, and plain values never make it fail).
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// JSON serialisation failed.
    #[error("JSON encoding failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// Appends `event` in `format` to `out`, one record terminated by a newline.
///
/// # Errors
/// [`FormatError`] if serialisation fails.
pub fn encode(
    format: Format,
    event: &Event,
    ctx: &FormatContext,
    out: &mut BytesMut,
) -> Result<(), FormatError> {
    match format {
        Format::Default => community::encode(event, &ctx.identity.device_id, out)?,
        Format::Trapster => trapster::encode(event, ctx, out)?,
        Format::Ecs => ecs::encode(event, ctx, out)?,
        Format::Cef => cef::encode(event, ctx, out),
    }
    Ok(())
}

/// Appends `message` in `format` to `out`: events as the format says, incidents as the
/// enterprise envelope (JSON formats) or a CEF line.
///
/// # Errors
/// [`FormatError`] if serialisation fails.
pub fn encode_message(
    format: Format,
    message: &Message,
    ctx: &FormatContext,
    out: &mut BytesMut,
) -> Result<(), FormatError> {
    match message {
        Message::Event(e) => encode(format, e, ctx, out),
        Message::Incident(i) => match format {
            Format::Cef => {
                incident::encode_cef(i, ctx, out);
                Ok(())
            }
            Format::Default | Format::Trapster | Format::Ecs => incident::encode_json(i, ctx, out),
        },
    }
}

/// UTC timestamp as Trapster's envelope writes it: `2026-02-13 13:00:09.677008+00:00`.
#[must_use]
pub fn trapster_timestamp(event: &Event) -> String {
    event
        .timestamp
        .format("%Y-%m-%d %H:%M:%S%.6f+00:00")
        .to_string()
}

/// `data` as lowercase hex, as every Trapster format carries it.
#[must_use]
pub fn hex_data(event: &Event) -> String {
    hex::encode(&event.data)
}

#[cfg(test)]
pub(crate) mod golden {
    //! Events shared by the format tests: one per catalogue kind plus hostile ones.

    use bytes::Bytes;
    use chrono::{TimeZone as _, Utc};
    use serde_json::json;
    use uuid::Uuid;

    use crate::event::{Action, Event, Extra, Service, SessionIdentity, kind::CATALOGUE};

    /// A deterministic event of each catalogue kind.
    pub(crate) fn catalogue_events() -> Vec<Event> {
        CATALOGUE
            .iter()
            .map(|k| Event {
                id: Uuid::from_u128(0x2821_3110_e616_4193_a545_a98d_6198_4a18),
                timestamp: Utc.with_ymd_and_hms(2026, 2, 13, 13, 0, 9).unwrap()
                    + chrono::Duration::microseconds(677_008),
                session: SessionIdentity {
                    src_ip: "1.2.3.4".parse().unwrap(),
                    src_port: 1,
                    dst_ip: "5.6.7.8".parse().unwrap(),
                    dst_port: 1,
                },
                service: k.logtype.service,
                action: k.logtype.action,
                data: match k.logtype.action {
                    Action::Data | Action::Login if k.logtype.service != Service::Portscan => {
                        Bytes::from_static(b"PASS admin\r\n")
                    }
                    _ => Bytes::new(),
                },
                extra: compact(
                    example_extra(k.logtype.service, k.logtype.action)
                        .as_object()
                        .unwrap()
                        .clone()
                        .into(),
                ),
            })
            .collect()
    }

    /// `extra` with its `"ports"` strings held compactly, as the scan path holds them.
    pub(crate) fn compact(mut extra: Extra) -> Extra {
        if let Some(serde_json::Value::Array(ports)) = extra.get("ports").cloned() {
            let ports: Vec<u16> = ports
                .iter()
                .map(|p| p.as_str().unwrap().parse().unwrap())
                .collect();
            extra.set_ports(ports);
        }
        extra
    }

    /// A typical `extra` for a kind.
    fn example_extra(service: Service, action: Action) -> serde_json::Value {
        match (service, action) {
            (Service::Portscan, _) => json!({"flags": ["SYN"], "ports": ["1", "3", "25"]}),
            (Service::Sensor, Action::Heartbeat) => json!({
                "uptime_secs": 3600, "version": "0.1.0", "commit": "0123abc",
                "interfaces": ["ens3"], "events": 42, "scans_reported": 3,
                "outputs": {"siem": {"sent": 42, "dropped": 0, "failing_secs": null}},
                "kernel": {"packets": 1000, "records": 40, "ring_buffer_full": 0},
                "degraded_decoys": ["telnet:23"]
            }),
            (Service::Sensor, _) => {
                json!({"output": "siem", "dropped": 12, "reason": "spool full"})
            }
            (Service::Http | Service::Https, Action::Query | Action::Login) => json!({
                "skin": "default_apache", "method": "POST", "target": "/login",
                "headers": {"host": "5.6.7.8", "user-agent": "curl/8.5.0"}, "status_code": 200,
                "username": "admin", "password": "admin",
                "session_id": "0b7e1c52-8d1c-4c59-9a43-5f0f3a2f7d10"
            }),
            (Service::Llmnr | Service::Nbns, Action::Query) => json!({
                "name": "SRV01", "answers": ["5.6.7.8"], "interface": "eth0",
                "query_type": "A"
            }),
            (_, Action::Poisoning) => json!({
                "name": "FILESRV02", "answers": ["1.2.3.4"], "interface": "eth0",
                "query_type": "A"
            }),
            (Service::Ftp, Action::Upload) => json!({
                "command": "STOR", "filename": "drop.sh", "path": "/upload/drop.sh",
                "size": 12, "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "complete": true, "stored_bytes": 12, "username": "admin",
                "stored": "/var/lib/trapster-sensor/uploads/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "session_id": "0b7e1c52-8d1c-4c59-9a43-5f0f3a2f7d10"
            }),
            (_, Action::Login) => json!({
                "username": "admin", "password": "admin",
                "session_id": "0b7e1c52-8d1c-4c59-9a43-5f0f3a2f7d10"
            }),
            (Service::Ssh, Action::Upload) => json!({
                "username": "bob", "mode": "sftp", "path": "/tmp/x.sh", "size": 12,
                "sha256": "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447",
                "stored": "/var/lib/trapster-sensor/ssh-uploads/a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447",
                "session_id": "0b7e1c52-8d1c-4c59-9a43-5f0f3a2f7d10"
            }),
            (Service::Tcp, Action::Flood) => json!({
                "service": "ssh", "sources": 1500, "connections": 4210,
                "events_folded": 12630, "logins_folded": 4210, "reported_sources": 200,
                "window_secs": 60,
                "top_sources": [{"ip": "10.9.0.7", "connections": 12}],
                "sample": ["10.9.0.7", "10.9.1.3"]
            }),
            (Service::Tcp, Action::Connection) => json!({
                "service": "http", "detected": "sniff",
                "session_id": "0b7e1c52-8d1c-4c59-9a43-5f0f3a2f7d10"
            }),
            _ => json!({"session_id": "0b7e1c52-8d1c-4c59-9a43-5f0f3a2f7d10"}),
        }
    }

    /// An event whose attacker-controlled fields hold every dangerous character.
    pub(crate) fn hostile(payload: &[u8]) -> Event {
        let text = String::from_utf8_lossy(payload).into_owned();
        Event {
            id: Uuid::nil(),
            timestamp: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            session: SessionIdentity {
                src_ip: "2001:db8::66".parse().unwrap(),
                src_port: 40_000,
                dst_ip: "2001:db8::1".parse().unwrap(),
                dst_port: 21,
            },
            service: Service::Ftp,
            action: Action::Login,
            data: Bytes::copy_from_slice(payload),
            extra: json!({"username": text, "password": text, "banner": {"nested": text}})
                .as_object()
                .unwrap()
                .clone()
                .into(),
        }
    }

    /// The hostile payloads plus 300 pseudo-random byte strings (any byte, up to 96 long).
    pub(crate) fn payloads() -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = NASTY.iter().map(|p| p.to_vec()).collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for n in 0..300 {
            let mut p = Vec::new();
            for _ in 0..(n % 97) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                p.push(seed.to_le_bytes()[3]);
            }
            out.push(p);
        }
        out
    }

    /// Encodes every hostile and random event with `encode` and checks each result is exactly
    /// one newline-terminated JSON document; returns the documents with their payloads.
    pub(crate) fn hostile_json(
        encode: impl Fn(&Event, &mut bytes::BytesMut),
    ) -> Vec<(Vec<u8>, serde_json::Value)> {
        payloads()
            .into_iter()
            .map(|payload| {
                let mut out = bytes::BytesMut::new();
                encode(&hostile(&payload), &mut out);
                assert_eq!(
                    out.iter().filter(|b| **b == b'\n').count(),
                    1,
                    "{payload:?}"
                );
                assert!(out.ends_with(b"\n"));
                let v = serde_json::from_slice(&out).unwrap();
                (payload, v)
            })
            .collect()
    }

    /// Payloads that break naive encoders.
    pub(crate) const NASTY: &[&[u8]] = &[
        b"",
        b"admin\nCEF:0|fake|fake|1|x|y|10|src=6.6.6.6",
        b"a|b=c\\d\r\ne",
        b"\"},{\"injected\":true}",
        b"\x00\x01\x1b[31m\x7f",
        b"\xff\xfe\xc3\x28 invalid utf-8",
        b"\xe2\x80\xa8line separator\xe2\x80\xa9",
        b"=\\=\\\\|||",
    ];
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::{Format, FormatContext, encode, golden};

    fn name(format: Format) -> &'static str {
        match format {
            Format::Default => "default",
            Format::Trapster => "trapster",
            Format::Ecs => "ecs",
            Format::Cef => "cef",
        }
    }

    /// A scan's compact port list encodes, in every format, exactly as the same list held as
    /// JSON strings in the map.
    #[test]
    fn compact_ports_encode_as_the_plain_map_in_every_format() {
        let ctx = FormatContext::for_device("trapster-1");
        let scans: Vec<_> = golden::catalogue_events()
            .into_iter()
            .filter(|e| e.extra.ports().is_some())
            .collect();
        assert!(!scans.is_empty());
        for compact in scans {
            let mut plain = compact.clone();
            plain.extra = compact.extra.to_map().into();
            assert_eq!(plain.extra.ports(), None);
            for format in Format::ALL {
                let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
                encode(format, &compact, &ctx, &mut a).unwrap();
                encode(format, &plain, &ctx, &mut b).unwrap();
                assert_eq!(a, b, "{}", name(format));
                assert!(
                    String::from_utf8_lossy(&a).contains(r#""ports""#)
                        || String::from_utf8_lossy(&a).contains(r#"\"ports\""#),
                    "{}",
                    name(format)
                );
            }
        }
    }

    /// Every catalogue kind has a committed golden output in every format
    /// (`UPDATE_GOLDEN=1 cargo test -p sensor golden` rewrites them after a deliberate change).
    #[test]
    fn golden_output_for_every_kind_in_every_format() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
        let ctx = FormatContext::for_device("trapster-1");
        for event in golden::catalogue_events() {
            for format in Format::ALL {
                let mut out = BytesMut::new();
                encode(format, &event, &ctx, &mut out).unwrap();
                let path = dir.join(format!("{}.{}", event.logtype(), name(format)));
                if std::env::var_os("UPDATE_GOLDEN").is_some() {
                    std::fs::write(&path, &out).unwrap();
                }
                let want = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display())
                });
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&want),
                    "{}",
                    path.display()
                );
            }
        }
    }
}
