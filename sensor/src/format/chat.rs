//! Bodies for chat webhooks and Splunk HEC, pure functions of a message:
//! - Slack incoming webhooks: `text` (the notification fallback) and `blocks` (header, fields),
//!   every attacker-controlled string escaped for mrkdwn (`&`, `<`, `>`) and kept out of
//!   formatting (inside code spans, backticks replaced);
//! - Microsoft Teams Workflows webhooks: a message with one Adaptive Card (1.4) attachment;
//! - Splunk HEC: `{"time","host","source","sourcetype","index","event"}` with the enterprise
//!   envelope as `event`.

use bytes::{BufMut as _, BytesMut};
use serde_json::{Value, json};

use super::{FormatContext, FormatError, incident as envelope, trapster};
use crate::event::{Event, Incident, Message, display_ip};

/// Longest attacker string shown in a chat message.
const MAX_SHOWN: usize = 200;

/// Escapes text for Slack mrkdwn.
#[must_use]
pub fn mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().take(MAX_SHOWN) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push('\''),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Plain text for a card: control characters replaced, bounded.
fn plain(text: &str) -> String {
    text.chars()
        .take(MAX_SHOWN)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// (title, facts) describing a message.
fn summary(message: &Message, ctx: &FormatContext) -> (String, Vec<(&'static str, String)>) {
    match message {
        Message::Incident(i) => incident_summary(i, ctx),
        Message::Event(e) => event_summary(e, ctx),
    }
}

fn incident_summary(i: &Incident, ctx: &FormatContext) -> (String, Vec<(&'static str, String)>) {
    let verb = match i.action {
        crate::event::IncidentAction::Created => "New incident",
        crate::event::IncidentAction::Updated => "Incident escalated",
        crate::event::IncidentAction::Test => "Test incident",
    };
    let title = format!(
        "{verb} [{}]: {} from {}",
        i.severity.as_str().to_uppercase(),
        i.description,
        display_ip(i.src_ip)
    );
    let mut facts = vec![
        ("Severity", i.severity.as_str().to_owned()),
        ("Source", display_ip(i.src_ip).to_string()),
        ("Service", i.channel.clone()),
        ("Events", i.events_count.to_string()),
        ("Sensor", ctx.identity.device_name.clone()),
        ("First seen", envelope::iso(i.start_time)),
        ("Last seen", envelope::iso(i.end_time)),
    ];
    if let Some(port) = i.dst_port {
        facts.insert(3, ("Port", port.to_string()));
    }
    (title, facts)
}

fn event_summary(e: &Event, ctx: &FormatContext) -> (String, Vec<(&'static str, String)>) {
    let title = format!(
        "{} from {} to port {}",
        e.logtype(),
        display_ip(e.session.src_ip),
        e.session.dst_port
    );
    let mut facts = vec![
        (
            "Source",
            format!("{}:{}", display_ip(e.session.src_ip), e.session.src_port),
        ),
        (
            "Target",
            format!("{}:{}", display_ip(e.session.dst_ip), e.session.dst_port),
        ),
        ("Sensor", ctx.identity.device_name.clone()),
        ("Time", super::trapster_timestamp(e)),
    ];
    if let Some(Value::String(user)) = e.extra.get("username") {
        facts.push(("Username", user.clone()));
    }
    (title, facts)
}

/// A Slack incoming-webhook body.
pub fn slack(
    message: &Message,
    ctx: &FormatContext,
    out: &mut BytesMut,
) -> Result<(), FormatError> {
    let (title, facts) = summary(message, ctx);
    let fields: Vec<Value> = facts
        .iter()
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n`{}`", mrkdwn(v))}))
        .collect();
    let body = json!({
        "text": mrkdwn(&title),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": plain(&title).chars().take(150).collect::<String>()}},
            {"type": "section", "fields": fields.into_iter().take(10).collect::<Vec<_>>()},
        ],
    });
    serde_json::to_writer(out.writer(), &body)?;
    Ok(())
}

/// A Microsoft Teams Workflows webhook body with one Adaptive Card.
pub fn teams(
    message: &Message,
    ctx: &FormatContext,
    out: &mut BytesMut,
) -> Result<(), FormatError> {
    let (title, facts) = summary(message, ctx);
    let facts: Vec<Value> = facts
        .iter()
        .map(|(k, v)| json!({"title": k, "value": plain(v)}))
        .collect();
    let body = json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": plain(&title)},
                    {"type": "FactSet", "facts": facts},
                ],
            },
        }],
    });
    serde_json::to_writer(out.writer(), &body)?;
    Ok(())
}

/// HEC event metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HecMeta {
    /// `source`.
    pub source: String,
    /// `sourcetype`.
    pub sourcetype: String,
    /// `index`, omitted when `None` (the token's default index).
    pub index: Option<String>,
}

/// The enterprise envelope of a message as a JSON value.
///
/// # Errors
/// [`FormatError`] if serialisation fails.
pub fn envelope_value(message: &Message, ctx: &FormatContext) -> Result<Value, FormatError> {
    match message {
        Message::Incident(i) => Ok(envelope::to_value(i, ctx)),
        Message::Event(e) => {
            let mut out = BytesMut::new();
            trapster::encode(e, ctx, &mut out)?;
            Ok(serde_json::from_slice(&out)?)
        }
    }
}

/// A Splunk HEC event object (one per message; HEC accepts several concatenated).
pub fn hec(
    message: &Message,
    ctx: &FormatContext,
    meta: &HecMeta,
    out: &mut BytesMut,
) -> Result<(), FormatError> {
    let micros = message.timestamp().timestamp_micros();
    let mut body = json!({
        "time": micros as f64 / 1e6,
        "host": ctx.identity.device_name,
        "source": meta.source,
        "sourcetype": meta.sourcetype,
    });
    if let Some(index) = &meta.index {
        body["index"] = json!(index);
    }
    body["event"] = envelope_value(message, ctx)?;
    serde_json::to_writer((&mut *out).writer(), &body)?;
    out.put_u8(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{HecMeta, hec, mrkdwn, slack, teams};
    use crate::{
        event::{Message, test_incident},
        format::{FormatContext, golden},
    };

    #[test]
    fn mrkdwn_escapes_what_slack_interprets() {
        assert_eq!(mrkdwn("<@here> & `x`\n"), "&lt;@here&gt; &amp; 'x' ");
    }

    #[test]
    fn bodies_are_valid_json_for_hostile_events_and_incidents() {
        let ctx = FormatContext::for_device("s1");
        let meta = HecMeta {
            source: "sensor".to_owned(),
            sourcetype: "trapster".to_owned(),
            index: Some("deception".to_owned()),
        };
        let mut messages: Vec<Message> = golden::payloads()
            .iter()
            .map(|p| Message::Event(golden::hostile(p)))
            .collect();
        messages.push(Message::Incident(test_incident(chrono::Utc::now())));
        for m in &messages {
            for encode in [slack, teams] {
                let mut out = bytes::BytesMut::new();
                encode(m, &ctx, &mut out).unwrap();
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert!(v.is_object());
                let text = String::from_utf8_lossy(&out);
                assert!(!text.contains("<@"), "unescaped mention in {text}");
            }
            let mut out = bytes::BytesMut::new();
            hec(m, &ctx, &meta, &mut out).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["index"], "deception");
            assert_eq!(v["sourcetype"], "trapster");
            assert!(v["event"]["action"].is_string());
        }
    }
}
