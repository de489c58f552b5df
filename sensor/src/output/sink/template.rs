//! Templates that name a destination or a key from the message itself (`trapster.{channel}`,
//! `{src_ip}`), shared by the outputs that route by content (NATS subjects, Kafka topics and
//! keys).
//!
//! A `{path}` is read from the encoded JSON message: a top-level field, or a dotted path into
//! nested objects (`{source.ip}` in ECS). A field a message lacks, or a message that is not JSON
//! (CEF), gives `unknown`, except for two fallbacks: the community format has no `channel` (the
//! first part of its `logtype` is it), and ECS documents carry the source address as
//! `source.ip`, not `src_ip`. Strings are used as they are, numbers and booleans as JSON writes
//! them. With [`Safe::Name`], characters other than ASCII letters, digits, `.`, `-` and `_`
//! become `_` (safe in NATS subjects and Kafka topic names).

use serde_json::Value;

/// What a filled value may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safe {
    /// A subject or topic name: `[A-Za-z0-9._-]`, anything else becomes `_`.
    Name,
    /// Any text (record keys).
    Any,
}

/// The value of `path` in `json`, with the fallbacks described in the module doc.
fn lookup(json: Option<&Value>, path: &str) -> Option<String> {
    let at = |path: &str| -> Option<String> {
        let mut value = json?;
        for part in path.split('.') {
            value = value.get(part)?;
        }
        match value {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    at(path).or_else(|| match path {
        "channel" => at("logtype").and_then(|l| l.split('.').next().map(str::to_owned)),
        "src_ip" => at("source.ip"),
        _ => None,
    })
}

/// `template` with every `{path}` replaced by the message's value; an unclosed `{` is kept as
/// written.
#[must_use]
pub fn fill(template: &str, record: &[u8], safe: Safe) -> String {
    let json: Option<Value> = serde_json::from_slice(record).ok();
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let Some(close) = after.find('}') else {
            out.push_str(after);
            return out;
        };
        let path = after.get(1..close).unwrap_or_default();
        let value = lookup(json.as_ref(), path).unwrap_or_else(|| "unknown".to_owned());
        match safe {
            Safe::Any => out.push_str(&value),
            Safe::Name => out.extend(value.chars().map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })),
        }
        rest = after.get(close.saturating_add(1)..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{Safe, fill};

    #[test]
    fn fields_paths_and_fallbacks() {
        let envelope =
            br#"{"channel":"ssh","src_ip":"2001:db8::1","src_port":50000,"device":"fw 01"}"#;
        assert_eq!(
            fill("t.{channel}.{device}", envelope, Safe::Name),
            "t.ssh.fw_01"
        );
        assert_eq!(fill("{src_ip}", envelope, Safe::Any), "2001:db8::1");
        assert_eq!(
            fill("{src_ip}:{src_port}", envelope, Safe::Name),
            "2001_db8__1:50000"
        );
        let ecs = br#"{"source":{"ip":"198.51.100.7"},"event":{"category":["network"]}}"#;
        assert_eq!(fill("{src_ip}", ecs, Safe::Any), "198.51.100.7");
        assert_eq!(
            fill("{source.ip}|{event.kind}", ecs, Safe::Any),
            "198.51.100.7|unknown"
        );
        assert_eq!(fill("open {brace", envelope, Safe::Any), "open {brace");
        assert_eq!(fill("plain", b"CEF:0|x", Safe::Name), "plain");
    }
}
