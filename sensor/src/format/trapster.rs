//! Trapster enterprise envelope (`trapster`): the JSON Trapster's webhooks and Sekoia.io's
//! intake carry. Keys in Trapster's order: `source, action, id, device{id,name,template},
//! namespace{id,name}, channel, category, logtype, src_ip, src_ip_reverse, src_port, dst_ip,
//! dst_port, timestamp, data, extra, type`; one line, newline-terminated.

use bytes::{BufMut as _, BytesMut};
use serde::Serialize;

use super::{FormatContext, hex_data, trapster_timestamp};
use crate::event::{Event, Extra, display_ip};

#[derive(Serialize)]
struct Device<'a> {
    id: &'a str,
    name: &'a str,
    template: Option<&'a str>,
}

#[derive(Serialize)]
struct Namespace<'a> {
    id: Option<&'a str>,
    name: &'a str,
}

#[derive(Serialize)]
struct Envelope<'a> {
    source: &'static str,
    action: &'static str,
    id: String,
    device: Device<'a>,
    namespace: Namespace<'a>,
    channel: &'static str,
    category: &'static str,
    logtype: String,
    src_ip: String,
    src_ip_reverse: Option<&'a str>,
    src_port: u16,
    dst_ip: String,
    dst_port: u16,
    timestamp: String,
    data: String,
    extra: &'a Extra,
    #[serde(rename = "type")]
    kind: u8,
}

/// Appends `event` as one envelope line to `out`.
///
/// # Errors
/// Only if serialisation fails, which plain values cannot cause.
pub fn encode(
    event: &Event,
    ctx: &FormatContext,
    out: &mut BytesMut,
) -> Result<(), serde_json::Error> {
    let id = &ctx.identity;
    let envelope = Envelope {
        source: "Trapster",
        action: "event_new",
        id: event.id.to_string(),
        device: Device {
            id: &id.device_id,
            name: &id.device_name,
            template: id.template.as_deref(),
        },
        namespace: Namespace {
            id: id.namespace_id.as_deref(),
            name: &id.namespace_name,
        },
        channel: event.service.as_str(),
        category: event.action.as_str(),
        logtype: event.logtype().to_string(),
        src_ip: display_ip(event.session.src_ip).to_string(),
        // The sensor never resolves names: that would be an outbound connection.
        src_ip_reverse: None,
        src_port: event.session.src_port,
        dst_ip: display_ip(event.session.dst_ip).to_string(),
        dst_port: event.session.dst_port,
        timestamp: trapster_timestamp(event),
        data: hex_data(event),
        extra: &event.extra,
        kind: 0,
    };
    let mut writer = out.writer();
    serde_json::to_writer(&mut writer, &envelope)?;
    writer.into_inner().put_u8(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use chrono::{DateTime, Utc};
    use serde_json::Value;

    use super::encode;
    use crate::{
        event::{Action, Event, Service, SessionIdentity},
        format::{FormatContext, Identity, golden},
    };

    const SAMPLES: &str = include_str!("../../tests/fixtures/trapster_event_samples.json");

    fn service(channel: &str) -> Service {
        Service::ALL
            .into_iter()
            .find(|s| s.as_str() == channel)
            .unwrap()
    }

    fn action(category: &str) -> Action {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == category)
            .unwrap()
    }

    /// Rebuilds each raw event sample of Sekoia's Trapster intake from an equivalent Event and
    /// compares field by field.
    #[test]
    fn rebuilds_the_sekoia_samples_field_by_field() {
        let samples: Vec<Value> = serde_json::from_str(SAMPLES).unwrap();
        assert_eq!(samples.len(), 5);
        for sample in &samples {
            let ts = sample["timestamp"]
                .as_str()
                .unwrap()
                .replace("+00:00", "Z")
                .replacen(' ', "T", 1);
            let event = Event {
                id: sample["id"].as_str().unwrap().parse().unwrap(),
                timestamp: ts.parse::<DateTime<Utc>>().unwrap(),
                session: SessionIdentity {
                    src_ip: sample["src_ip"].as_str().unwrap().parse().unwrap(),
                    src_port: u16::try_from(sample["src_port"].as_u64().unwrap()).unwrap(),
                    dst_ip: sample["dst_ip"].as_str().unwrap().parse().unwrap(),
                    dst_port: u16::try_from(sample["dst_port"].as_u64().unwrap()).unwrap(),
                },
                service: service(sample["channel"].as_str().unwrap()),
                action: action(sample["category"].as_str().unwrap()),
                data: Bytes::from(hex::decode(sample["data"].as_str().unwrap()).unwrap()),
                extra: golden::compact(sample["extra"].as_object().unwrap().clone().into()),
            };
            let ctx = FormatContext {
                identity: Identity {
                    device_id: sample["device"]["id"].as_str().unwrap().to_owned(),
                    device_name: sample["device"]["name"].as_str().unwrap().to_owned(),
                    template: sample["device"]["template"].as_str().map(str::to_owned),
                    namespace_id: sample["namespace"]["id"].as_str().map(str::to_owned),
                    namespace_name: sample["namespace"]["name"].as_str().unwrap().to_owned(),
                },
                ..FormatContext::for_device("unused")
            };
            let mut out = BytesMut::new();
            encode(&event, &ctx, &mut out).unwrap();
            assert!(out.ends_with(b"\n") && out.iter().filter(|b| **b == b'\n').count() == 1);
            let ours: Value = serde_json::from_slice(&out).unwrap();
            let logtype = sample["logtype"].as_str().unwrap();
            for (key, want) in sample.as_object().unwrap() {
                assert_eq!(&ours[key], want, "{logtype}: field `{key}`");
            }
            for key in ours.as_object().unwrap().keys() {
                assert!(
                    sample.get(key).is_some() || key == "src_ip_reverse",
                    "{logtype}: extra field `{key}`"
                );
            }
        }
    }

    #[test]
    fn key_order_is_trapsters() {
        let mut out = BytesMut::new();
        let event = &golden::catalogue_events()[0];
        encode(event, &FormatContext::for_device("s1"), &mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "source",
                "action",
                "id",
                "device",
                "namespace",
                "channel",
                "category",
                "logtype",
                "src_ip",
                "src_ip_reverse",
                "src_port",
                "dst_ip",
                "dst_port",
                "timestamp",
                "data",
                "extra",
                "type"
            ]
        );
    }

    #[test]
    fn hostile_bytes_stay_one_json_line() {
        let ctx = FormatContext::for_device("s1");
        for (payload, v) in golden::hostile_json(|e, out| encode(e, &ctx, out).unwrap()) {
            assert_eq!(v["data"], hex::encode(&payload));
            assert_eq!(
                v["extra"]["username"],
                String::from_utf8_lossy(&payload).as_ref()
            );
        }
    }
}
