//! Incident messages in Trapster's enterprise envelope, key for key as the incident samples of
//! Sekoia's Trapster intake (`type` 2), plus `severity` and `login_services`; and as a CEF line
//! for syslog receivers.

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{FormatContext, FormatError};
use crate::event::Incident;

#[derive(Serialize)]
struct Device<'a> {
    id: &'a str,
    name: &'a str,
    template: Option<&'a str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    source: &'static str,
    action: &'static str,
    id: String,
    device: Device<'a>,
    group: Option<()>,
    channel: &'a str,
    category: &'a str,
    description: &'a str,
    src_ip: String,
    src_ip_reverse: Option<()>,
    src_port: Option<u16>,
    dst_ip: Option<String>,
    dst_port: Option<u16>,
    start_time: String,
    end_time: String,
    acknowledged: bool,
    events_count: u64,
    severity: &'static str,
    login_services: &'a [String],
    #[serde(rename = "type")]
    kind: u8,
}

/// `2026-01-21T15:57:50.375491+00:00`, as the samples write times.
#[must_use]
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// The envelope as a JSON value.
#[must_use]
pub fn to_value(incident: &Incident, ctx: &FormatContext) -> serde_json::Value {
    let id = &ctx.identity;
    let envelope = Envelope {
        source: "Trapster",
        action: incident.action.as_str(),
        id: incident.id.to_string(),
        device: Device {
            id: &id.device_id,
            name: &id.device_name,
            template: id.template.as_deref(),
        },
        group: None,
        channel: &incident.channel,
        category: &incident.category,
        description: &incident.description,
        src_ip: crate::event::display_ip(incident.src_ip).to_string(),
        src_ip_reverse: None,
        src_port: incident.src_port,
        dst_ip: incident
            .dst_ip
            .map(|ip| crate::event::display_ip(ip).to_string()),
        dst_port: incident.dst_port,
        start_time: iso(incident.start_time),
        end_time: iso(incident.end_time),
        acknowledged: incident.acknowledged,
        events_count: incident.events_count,
        severity: incident.severity.as_str(),
        login_services: &incident.login_services,
        kind: 2,
    };
    serde_json::to_value(envelope).unwrap_or(serde_json::Value::Null)
}

/// Appends the envelope as one JSON line.
///
/// # Errors
/// [`FormatError`] if serialisation fails.
pub fn encode_json(
    incident: &Incident,
    ctx: &FormatContext,
    out: &mut BytesMut,
) -> Result<(), FormatError> {
    let value = to_value(incident, ctx);
    serde_json::to_writer((&mut *out).writer(), &value)?;
    out.put_u8(b'\n');
    Ok(())
}

/// Appends the incident as one CEF line:
/// `CEF:0|Ballpoint|Trapster|<version>|<channel>|<action>|<severity 0-10>|<extension>`.
pub fn encode_cef(incident: &Incident, ctx: &FormatContext, out: &mut BytesMut) {
    use crate::format::cef::{escape_extension, escape_header};
    let header = format!(
        "CEF:0|Ballpoint|Trapster|{}|{}|{}|{}|",
        escape_header(env!("CARGO_PKG_VERSION")),
        escape_header(&incident.channel),
        escape_header(incident.action.as_str()),
        incident.severity.cef()
    );
    out.put_slice(header.as_bytes());
    let mut ext = vec![
        ("rt", incident.end_time.timestamp_millis().to_string()),
        ("start", incident.start_time.timestamp_millis().to_string()),
        ("end", incident.end_time.timestamp_millis().to_string()),
        ("src", crate::event::display_ip(incident.src_ip).to_string()),
    ];
    if let Some(ip) = incident.dst_ip {
        ext.push(("dst", crate::event::display_ip(ip).to_string()));
    }
    if let Some(port) = incident.dst_port {
        ext.push(("dpt", port.to_string()));
    }
    ext.extend([
        ("cnt", incident.events_count.to_string()),
        ("cat", incident.category.clone()),
        ("msg", incident.description.clone()),
        ("externalId", incident.id.to_string()),
        ("dvchost", ctx.identity.device_name.clone()),
        ("cs1Label", "severity".to_owned()),
        ("cs1", incident.severity.as_str().to_owned()),
        ("cs2Label", "device".to_owned()),
        ("cs2", ctx.identity.device_id.clone()),
    ]);
    for (i, (k, v)) in ext.iter().enumerate() {
        if i > 0 {
            out.put_u8(b' ');
        }
        out.put_slice(k.as_bytes());
        out.put_u8(b'=');
        out.put_slice(escape_extension(v).as_bytes());
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::{encode_cef, to_value};
    use crate::{
        format::FormatContext,
        incident::{IncidentAction, test_incident},
    };

    #[test]
    fn envelope_has_the_sample_keys_in_order() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 1, 20, 15, 39, 55)
            .unwrap();
        let mut incident = test_incident(t);
        incident.action = IncidentAction::Test;
        let v = to_value(&incident, &FormatContext::for_device("s1"));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "source",
                "action",
                "id",
                "device",
                "group",
                "channel",
                "category",
                "description",
                "src_ip",
                "src_ip_reverse",
                "src_port",
                "dst_ip",
                "dst_port",
                "start_time",
                "end_time",
                "acknowledged",
                "events_count",
                "severity",
                "login_services",
                "type"
            ]
        );
        assert_eq!(v["action"], "incident_test");
        assert_eq!(v["start_time"], "2026-01-20T15:39:55.000000+00:00");
        assert_eq!(v["type"], 2);
        assert_eq!(v["description"], "Test incident");
    }

    /// Committed golden outputs of a deterministic incident (`UPDATE_GOLDEN=1` rewrites them).
    #[test]
    fn golden_incident_messages() {
        let t = chrono::Utc.with_ymd_and_hms(2026, 2, 13, 13, 0, 9).unwrap();
        let mut incident = test_incident(t);
        incident.id = uuid::Uuid::from_u128(0x3333_3333_3333_3333_3333_3333_3333_3333);
        incident.action = IncidentAction::Updated;
        incident.channel = "ssh".to_owned();
        incident.category = "login".to_owned();
        incident.description = "Login attempt on SSH after a port scan".to_owned();
        incident.src_ip = "1.2.3.4".parse().unwrap();
        incident.dst_ip = Some("5.6.7.8".parse().unwrap());
        incident.events_count = 2;
        incident.severity = crate::event::Severity::Critical;
        incident.login_services = vec!["ssh".to_owned()];
        incident.end_time = t + chrono::Duration::seconds(40);
        let ctx = FormatContext::for_device("trapster-1");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
        let mut json = bytes::BytesMut::new();
        super::encode_json(&incident, &ctx, &mut json).unwrap();
        let mut cef = bytes::BytesMut::new();
        encode_cef(&incident, &ctx, &mut cef);
        for (name, out) in [
            ("incident_updated.json", json),
            ("incident_updated.cef", cef),
        ] {
            let path = dir.join(name);
            if std::env::var_os("UPDATE_GOLDEN").is_some() {
                std::fs::write(&path, &out).unwrap();
            }
            let want = std::fs::read(&path).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want),
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn cef_line_is_one_line_with_escaped_values() {
        let mut incident = test_incident(chrono::Utc::now());
        incident.description = "a|b=c\\d\ne".to_owned();
        let mut out = bytes::BytesMut::new();
        encode_cef(&incident, &FormatContext::for_device("s1"), &mut out);
        let line = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.starts_with("CEF:0|Ballpoint|Trapster|"));
        assert!(line.contains("msg=a|b\\=c\\\\d\\ne"), "{line}");
    }
}
