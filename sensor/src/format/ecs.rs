//! Elastic Common Schema (`ecs`): one JSON document per event, newline-terminated. Port scans
//! are `intrusion_detection` alerts, logins `authentication`, connections `network`; the
//! Trapster fields are kept under `trapster.*` (Sekoia.io's parser reads the same ones under
//! `ballpoint.trapster.*`). HTTP events fill `url`, `http` and `user_agent` from `extra`.

use bytes::{BufMut as _, BytesMut};
use serde_json::{Map, Value, json};

use super::{FormatContext, hex_data};
use crate::event::{Action, Event, Service, display_ip};

fn categories(event: &Event) -> (Vec<&'static str>, Vec<&'static str>, &'static str) {
    let web = matches!(event.service, Service::Http | Service::Https);
    match (event.service, event.action) {
        (_, Action::Degraded) => (vec!["host"], vec!["info"], "failure"),
        (_, Action::Poisoning) => (
            vec!["intrusion_detection", "network"],
            vec!["indicator"],
            "unknown",
        ),
        (Service::Portscan, _) => (
            vec!["intrusion_detection", "network"],
            vec!["info"],
            "unknown",
        ),
        (_, Action::Connection) => (
            vec!["intrusion_detection", "network"],
            vec!["connection", "start"],
            "unknown",
        ),
        (_, Action::Data) => (
            vec!["intrusion_detection", "network"],
            vec!["info"],
            "unknown",
        ),
        (_, Action::Login) => (
            vec!["intrusion_detection", "authentication"],
            vec!["start"],
            "failure",
        ),
        (_, Action::Query) if web => (
            vec!["intrusion_detection", "web"],
            vec!["access"],
            "unknown",
        ),
        (_, Action::Query) => (vec!["intrusion_detection"], vec!["info"], "unknown"),
    }
}

fn string_field<'a>(extra: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    extra.get(key).and_then(Value::as_str)
}

fn header<'a>(extra: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    extra
        .get("headers")
        .and_then(Value::as_object)?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// Builds the ECS document for `event`.
#[must_use]
pub fn document(event: &Event, ctx: &FormatContext) -> Value {
    let src = display_ip(event.session.src_ip).to_string();
    let dst = display_ip(event.session.dst_ip).to_string();
    let (category, kind_type, outcome) = categories(event);
    let logtype = event.logtype().to_string();
    let id = &ctx.identity;
    let mut doc = json!({
        "@timestamp": event.timestamp.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "ecs": {"version": ctx.ecs_version},
        "event": {
            "id": event.id.to_string(),
            "kind": "alert",
            "category": category,
            "type": kind_type,
            "action": logtype,
            "outcome": outcome,
            "module": "trapster",
            "dataset": format!("trapster.{}", event.service.as_str()),
            "created": event.timestamp.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        },
        "message": format!("{logtype} from {src}:{} to {dst}:{}", event.session.src_port, event.session.dst_port),
        "source": {"ip": src, "address": src, "port": event.session.src_port},
        "destination": {"ip": dst, "address": dst, "port": event.session.dst_port},
        "network": {
            "transport": event.service.transport(),
            "type": if display_ip(event.session.src_ip).is_ipv4() { "ipv4" } else { "ipv6" },
        },
        "related": {"ip": [src, dst]},
        "host": {"name": id.device_name},
        "observer": {"type": "honeypot", "name": id.device_id, "hostname": id.device_name, "product": "sensor"},
        "trapster": {
            "logtype": logtype,
            "channel": event.service.as_str(),
            "category": event.action.as_str(),
            "data": hex_data(event),
            "extra": event.extra,
        },
    });
    let Some(root) = doc.as_object_mut() else {
        return doc;
    };
    if event.service != Service::Portscan
        && let Some(network) = root.get_mut("network").and_then(Value::as_object_mut)
    {
        network.insert("protocol".to_owned(), Value::from(event.service.as_str()));
    }
    if let Some(user) =
        string_field(&event.extra, "username").or_else(|| string_field(&event.extra, "user"))
    {
        root.insert("user".to_owned(), json!({"name": user}));
        if let Some(related) = root.get_mut("related").and_then(Value::as_object_mut) {
            related.insert("user".to_owned(), json!([user]));
        }
    }
    if matches!(event.service, Service::Http | Service::Https) {
        if let Some(target) = string_field(&event.extra, "target") {
            let path = target.split(['?', '#']).next().unwrap_or(target);
            root.insert("url".to_owned(), json!({"original": target, "path": path}));
        }
        let mut http = Map::new();
        if let Some(method) = string_field(&event.extra, "method") {
            http.insert("request".to_owned(), json!({"method": method}));
        }
        if let Some(status) = event.extra.get("status_code").and_then(Value::as_u64) {
            http.insert("response".to_owned(), json!({"status_code": status}));
        }
        if !http.is_empty() {
            root.insert("http".to_owned(), Value::Object(http));
        }
        if let Some(agent) = header(&event.extra, "user-agent") {
            root.insert("user_agent".to_owned(), json!({"original": agent}));
        }
    }
    doc
}

/// Appends `event` as one ECS JSON line to `out`.
///
/// # Errors
/// Only if serialisation fails, which plain values cannot cause.
pub fn encode(
    event: &Event,
    ctx: &FormatContext,
    out: &mut BytesMut,
) -> Result<(), serde_json::Error> {
    let mut writer = out.writer();
    serde_json::to_writer(&mut writer, &document(event, ctx))?;
    writer.into_inner().put_u8(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{document, encode};
    use crate::{
        event::{Action, Service},
        format::{FormatContext, golden},
    };

    #[test]
    fn portscan_is_an_intrusion_detection_alert() {
        let event = &golden::catalogue_events()[0];
        let doc = document(event, &FormatContext::for_device("s1"));
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(
            doc["event"]["category"],
            json!(["intrusion_detection", "network"])
        );
        assert_eq!(doc["event"]["action"], "portscan.query");
        assert_eq!(doc["ecs"]["version"], "8.11.0");
        assert_eq!(doc["@timestamp"], "2026-02-13T13:00:09.677008Z");
        assert_eq!(
            doc["source"],
            json!({"ip": "1.2.3.4", "address": "1.2.3.4", "port": 1})
        );
        assert_eq!(doc["destination"]["port"], 1);
        assert_eq!(doc["related"]["ip"], json!(["1.2.3.4", "5.6.7.8"]));
        assert_eq!(doc["trapster"]["extra"]["ports"], json!(["1", "3", "25"]));
        assert_eq!(doc["network"]["type"], "ipv4");
    }

    #[test]
    fn logins_and_http_fill_user_url_and_agent() {
        let mut event = golden::hostile(b"root");
        assert_eq!(event.action, Action::Login);
        let doc = document(&event, &FormatContext::for_device("s1"));
        assert_eq!(doc["user"]["name"], "root");
        assert_eq!(doc["related"]["user"], json!(["root"]));
        assert_eq!(
            doc["event"]["category"],
            json!(["intrusion_detection", "authentication"])
        );
        assert_eq!(doc["network"]["type"], "ipv6");
        event.service = Service::Http;
        event.action = Action::Query;
        event.extra = json!({"method": "GET", "target": "/admin?x=1", "status_code": 401,
                             "headers": {"User-Agent": "curl/8.5.0"}})
        .as_object()
        .unwrap()
        .clone();
        let doc = document(&event, &FormatContext::for_device("s1"));
        assert_eq!(
            doc["url"],
            json!({"original": "/admin?x=1", "path": "/admin"})
        );
        assert_eq!(doc["http"]["request"]["method"], "GET");
        assert_eq!(doc["http"]["response"]["status_code"], 401);
        assert_eq!(doc["user_agent"]["original"], "curl/8.5.0");
        assert_eq!(
            doc["event"]["category"],
            json!(["intrusion_detection", "web"])
        );
    }

    #[test]
    fn hostile_bytes_stay_one_json_line() {
        let ctx = FormatContext::for_device("s1");
        for (payload, v) in golden::hostile_json(|e, out| encode(e, &ctx, out).unwrap()) {
            assert_eq!(v["trapster"]["data"], hex::encode(&payload));
            assert_eq!(
                v["user"]["name"],
                String::from_utf8_lossy(&payload).as_ref()
            );
        }
    }
}
