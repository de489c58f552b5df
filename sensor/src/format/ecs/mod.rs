//! Elastic Common Schema (`ecs`): one JSON document per event, newline-terminated, equal key
//! for key, value for value and byte for byte to what Trapster 1.2's `EcsFormatter` writes
//! through its file output (Python `json.dump` text, see [`pyjson`]):
//!
//! - `event.kind` `event`, `event.action` the logtype's action (`login`), `event.dataset`
//!   `trapster.<protocol>`, categories and types as Trapster derives them from the action;
//! - `observer` `{name, id, type: honeypot, vendor: Ballpoint, product: Trapster}`, `service`
//!   `{version, environment}` and `host.name` from the format options ([`EcsOptions`], Trapster's
//!   `format_kwargs`);
//! - `network.{transport, protocol, application, type}`, `source.{ip, port, user.name}`,
//!   `destination`, `related`, `user.name`;
//! - `trapster.raw` (hex of the bytes), `trapster.login.{username, password}` and
//!   `trapster.<protocol>` holding the rest of `extra`; for HTTP(S) `http.{version, request.
//!   {method, headers}, response.status_code}` and `url.path`;
//! - nulls, empty objects and empty lists removed at every depth (Trapster's `_compact`).
//!
//! Fields Trapster does not have are added only where it has no value (`network.transport` of
//! protocols it does not emulate) or when [`EcsOptions::extended`] asks for them (`event.id`,
//! `message`, `source.address`, `destination.address`, `url.original`, `user_agent.original`).

mod pyjson;

use bytes::{BufMut as _, BytesMut};
use serde_json::{Map, Value, json};

use super::{FormatContext, hex_data};
use crate::event::{Action, Event, Service, display_ip};

/// The ECS options: Trapster's `format_kwargs` plus the sensor's `extended` switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsOptions {
    /// `ecs.version` (Trapster `ecs_version`, default 8.11.0).
    pub ecs_version: String,
    /// `observer.name` (Trapster `observer_name`, default `Trapster`).
    pub observer_name: String,
    /// `service.environment` (Trapster `environment`); absent when `None`.
    pub environment: Option<String>,
    /// `host.name` (Trapster `host_name`); the sensor `id` when `None`.
    pub host_name: Option<String>,
    /// `service.version` (Trapster `service_version`); absent when `None`.
    pub service_version: Option<String>,
    /// Adds the sensor's fields Trapster does not write (`sensor.identity.ecs_extended`).
    pub extended: bool,
}

impl Default for EcsOptions {
    fn default() -> Self {
        Self {
            ecs_version: "8.11.0".to_owned(),
            observer_name: "Trapster".to_owned(),
            environment: None,
            host_name: None,
            service_version: None,
            extended: false,
        }
    }
}

/// Trapster's `PROTOCOL_TRANSPORT_MAP`; other services get their own transport, except the
/// port scan (TCP or UDP probes alike) and the sensor's health events.
fn transport(service: Service) -> Option<&'static str> {
    match service {
        Service::Portscan | Service::Sensor => None,
        other => Some(other.transport()),
    }
}

/// `event.category`, `event.type` and `event.outcome`, as Trapster derives them.
fn classify(event: &Event) -> (Vec<&'static str>, Vec<&'static str>, &'static str) {
    match event.action {
        Action::Login => (
            vec!["authentication", "network"],
            vec!["start", "info"],
            "failure",
        ),
        Action::Connection => (vec!["network"], vec!["connection", "start"], "success"),
        Action::Query
            if matches!(
                event.service,
                Service::Mysql | Service::Postgres | Service::Mssql
            ) =>
        {
            (
                vec!["network", "database"],
                vec!["access", "info"],
                "unknown",
            )
        }
        Action::Query => (vec!["network"], vec!["access", "info"], "unknown"),
        Action::Flood => (
            vec!["intrusion_detection", "network"],
            vec!["info"],
            "unknown",
        ),
        Action::Data => (vec!["network"], vec!["info"], "unknown"),
        // Not a Trapster logtype: the sensor's own health.
        Action::Degraded => (vec!["host"], vec!["info"], "failure"),
        Action::Heartbeat => (vec!["host"], vec!["info"], "success"),
        // Not a Trapster logtype: a host answered a name the sensor made up.
        Action::Poisoning => (
            vec!["intrusion_detection", "network"],
            vec!["indicator"],
            "unknown",
        ),
        Action::Url | Action::JsClone => {
            (vec!["network", "web"], vec!["access", "info"], "unknown")
        }
        // Not a Trapster logtype: a file written to the decoy.
        Action::Upload => (vec!["network", "file"], vec!["creation", "info"], "unknown"),
    }
}

/// Python `datetime.isoformat()` of a UTC time with `+00:00` replaced by `Z`: microseconds
/// only when there are some.
fn iso_timestamp(event: &Event) -> String {
    use chrono::Timelike as _;
    if event.timestamp.nanosecond() / 1000 == 0 {
        event.timestamp.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        event.timestamp.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

/// Trapster's `_compact`: drops nulls, and objects and lists left empty, at every depth.
fn compact(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| compact(v).map(|v| (k, v)))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items.into_iter().filter_map(compact).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        other => Some(other),
    }
}

/// Keys Trapster writes in `extra` for a service, where this sensor writes more; `None` where
/// the sensor's keys are Trapster's (every key kept but the sensor's `session_id`).
fn trapster_keys(service: Service) -> Option<&'static [&'static str]> {
    Some(match service {
        Service::Ftp => &[],
        Service::Ssh => &["key_type", "key_data", "fingerprint"],
        Service::Mysql => &["details"],
        Service::Http | Service::Https => &[
            "skin",
            "method",
            "target",
            "version",
            "headers",
            "status_code",
            "auth_scheme",
            "auth_token",
            "form",
        ],
        _ => return None,
    })
}

/// `trapster.<protocol>` as Trapster fills it: `extra` without the login fields, the sensor's
/// own keys left out; a MySQL login's `details` (what follows the auth response: the plugin
/// name, NUL-terminated) rebuilt from the sensor's `auth_plugin`.
fn trapster_extra(event: &Event) -> Map<String, Value> {
    let keys = trapster_keys(event.service);
    let mut out: Map<String, Value> = event.extra.to_map_where(|k| {
        k != "username"
            && k != "password"
            && keys.map_or(k != "session_id", |keys| keys.contains(&k))
    });
    if event.service == Service::Mysql
        && event.action == Action::Login
        && !out.contains_key("details")
        && let Some(plugin) = event.extra.get("auth_plugin").and_then(Value::as_str)
    {
        out.insert("details".to_owned(), Value::from(format!("{plugin}\0")));
    }
    out
}

fn header<'a>(extra: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    extra
        .get("headers")
        .and_then(Value::as_object)?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Builds the ECS document for `event`.
#[must_use]
pub fn document(event: &Event, ctx: &FormatContext) -> Value {
    let opts = &ctx.ecs;
    let src = display_ip(event.session.src_ip);
    let dst = display_ip(event.session.dst_ip);
    let (src_text, dst_text) = (src.to_string(), dst.to_string());
    let protocol = event.service.as_str();
    let (category, kind_type, outcome) = classify(event);
    let extra = &event.extra;
    let username = extra.get("username").cloned().unwrap_or(Value::Null);
    let password = extra.get("password").cloned().unwrap_or(Value::Null);
    let protocol_extra = if opts.extended {
        extra.to_map_where(|k| k != "username" && k != "password")
    } else {
        trapster_extra(event)
    };
    // Trapster logs the hashed auth response (hex) as the MySQL password.
    let password = if password.is_null()
        && !opts.extended
        && event.service == Service::Mysql
        && event.action == Action::Login
    {
        extra.get("auth_response").cloned().unwrap_or(Value::Null)
    } else {
        password
    };
    let mut related_ip = vec![src_text.clone()];
    if dst_text != src_text {
        related_ip.push(dst_text.clone());
    }
    let related_user: Vec<Value> = if username.is_null() {
        Vec::new()
    } else {
        vec![username.clone()]
    };
    let mut trapster = Map::new();
    trapster.insert("raw".to_owned(), Value::from(hex_data(event)));
    trapster.insert(
        "login".to_owned(),
        json!({"username": username, "password": password}),
    );
    trapster.insert(protocol.to_owned(), Value::Object(protocol_extra));
    let mut doc = json!({
        "@timestamp": iso_timestamp(event),
        "ecs": {"version": opts.ecs_version},
        "event": {
            "kind": "event",
            "category": category,
            "type": kind_type,
            "action": event.action.as_str(),
            "outcome": outcome,
            "dataset": format!("trapster.{protocol}"),
        },
        "observer": {
            "name": opts.observer_name,
            "id": ctx.identity.device_id,
            "type": "honeypot",
            "vendor": "Ballpoint",
            "product": "Trapster",
        },
        "service": {"version": opts.service_version, "environment": opts.environment},
        "host": {"name": opts.host_name.as_deref().unwrap_or(&ctx.identity.device_id)},
        "network": {
            "transport": transport(event.service),
            "protocol": protocol,
            "application": protocol,
            "type": if src.is_ipv4() { "ipv4" } else { "ipv6" },
        },
        "source": {"ip": src_text, "port": event.session.src_port, "user": {"name": username}},
        "destination": {"ip": dst_text, "port": event.session.dst_port},
        "related": {"ip": related_ip, "user": related_user},
        "user": {"name": username},
        "trapster": trapster,
    });
    let web = matches!(event.service, Service::Http | Service::Https);
    if let Some(root) = doc.as_object_mut() {
        if web {
            let get = |k: &str| extra.get(k).cloned().unwrap_or(Value::Null);
            root.insert(
                "http".to_owned(),
                json!({
                    "version": get("version"),
                    "request": {"method": get("method"), "headers": get("headers")},
                    "response": {"status_code": get("status_code")},
                }),
            );
            root.insert("url".to_owned(), json!({"path": get("target")}));
        }
        if opts.extended {
            extend(root, event, web);
        }
    }
    compact(doc).unwrap_or_else(|| Value::Object(Map::new()))
}

/// The sensor's fields Trapster does not write ([`EcsOptions::extended`]).
fn extend(root: &mut Map<String, Value>, event: &Event, web: bool) {
    let mut put = |object: &str, key: &str, value: Value| {
        if let Some(Value::Object(o)) = root.get_mut(object) {
            o.insert(key.to_owned(), value);
        } else {
            root.insert(object.to_owned(), json!({ key: value }));
        }
    };
    let (src, dst) = (
        display_ip(event.session.src_ip).to_string(),
        display_ip(event.session.dst_ip).to_string(),
    );
    put("event", "id", Value::from(event.id.to_string()));
    put("source", "address", Value::from(src.clone()));
    put("destination", "address", Value::from(dst.clone()));
    if web {
        if let Some(target) = event.extra.get("target") {
            put("url", "original", target.clone());
        }
        if let Some(agent) = header(&event.extra, "user-agent") {
            put("user_agent", "original", agent.clone());
        }
    }
    root.insert(
        "message".to_owned(),
        Value::from(format!(
            "{} from {src}:{} to {dst}:{}",
            event.logtype(),
            event.session.src_port,
            event.session.dst_port
        )),
    );
}

/// Appends `event` as one ECS JSON line to `out`, in Python `json.dump` text.
///
/// # Errors
/// Only if serialisation fails, which plain values cannot cause.
pub fn encode(
    event: &Event,
    ctx: &FormatContext,
    out: &mut BytesMut,
) -> Result<(), serde_json::Error> {
    let mut writer = out.writer();
    pyjson::to_writer(&mut writer, &document(event, ctx))?;
    writer.into_inner().put_u8(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests;
