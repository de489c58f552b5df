//! Shared pieces of the format targets: events built from fuzzer bytes and an independent CEF
//! parser (written from the CEF rules, not from the sensor's encoder).

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sensor::event::{Action, Event, Extra, Service, SessionIdentity};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// A JSON value of integers, strings, booleans, null, arrays and objects, `depth` levels deep
/// at most (no floats: the property is exact equality after a round trip).
pub fn json(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let pick = if depth == 0 {
        u.int_in_range(0..=4)?
    } else {
        u.int_in_range(0..=6)?
    };
    Ok(match pick {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        4 => Value::String(u.arbitrary()?),
        5 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array((0..n).map(|_| json(u, depth - 1)).collect::<Result<_>>()?)
        }
        _ => Value::Object(object(u, depth - 1)?),
    })
}

fn object(u: &mut Unstructured<'_>, depth: u32) -> Result<Map<String, Value>> {
    let n = u.int_in_range(0..=5)?;
    let mut map = Map::new();
    for _ in 0..n {
        let key = if u.arbitrary()? {
            "username".to_owned()
        } else {
            u.arbitrary()?
        };
        map.insert(key, json(u, depth)?);
    }
    Ok(map)
}

fn ip(u: &mut Unstructured<'_>) -> Result<IpAddr> {
    Ok(if u.arbitrary()? {
        IpAddr::V4(u.arbitrary::<[u8; 4]>()?.into())
    } else {
        IpAddr::V6(u.arbitrary::<[u8; 16]>()?.into())
    })
}

/// An event with every field drawn from the fuzzer.
pub fn event(u: &mut Unstructured<'_>) -> Result<Event> {
    let millis = u.int_in_range(0..=4_102_444_800_000i64)?;
    let timestamp = DateTime::<Utc>::from_timestamp_millis(millis).unwrap_or_default();
    Ok(Event {
        id: uuid::Uuid::from_bytes(u.arbitrary()?),
        timestamp,
        session: SessionIdentity {
            src_ip: ip(u)?,
            src_port: u.arbitrary()?,
            dst_ip: ip(u)?,
            dst_port: u.arbitrary()?,
        },
        service: *u.choose(&Service::ALL)?,
        action: *u.choose(&Action::ALL)?,
        data: Bytes::from(u.arbitrary::<Vec<u8>>()?),
        extra: extra(u)?,
    })
}

/// An `extra` object, with a compact port list (as scan events hold theirs) half the time.
fn extra(u: &mut Unstructured<'_>) -> Result<Extra> {
    let mut extra = Extra::from(object(u, 3)?);
    if u.arbitrary()? {
        extra.set_ports(u.arbitrary::<Vec<u16>>()?);
    }
    Ok(extra)
}

/// One item of an escaped CEF text: a character and whether it came from an escape.
#[derive(Clone, Copy)]
struct Item {
    c: char,
    escaped: bool,
}

fn unescape(text: &str, header: bool) -> Vec<Item> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(Item { c, escaped: false });
            continue;
        }
        let next = chars.next();
        let c = match next {
            Some('n') if !header => '\n',
            Some('r') if !header => '\r',
            Some(other) => other,
            None => '\\',
        };
        out.push(Item { c, escaped: true });
    }
    out
}

/// A parsed CEF line: the seven header fields and the extensions, unescaped, in order.
#[derive(Debug, Default)]
pub struct Cef {
    /// `CEF:0`, vendor, product, version, signature id, name, severity.
    pub header: Vec<String>,
    /// Extension key and value pairs.
    pub extensions: Vec<(String, String)>,
}

/// Parses one CEF line; `None` when it does not have seven header fields.
pub fn parse_cef(line: &str) -> Option<Cef> {
    let mut header = Vec::new();
    let mut field = String::new();
    let mut escaped = false;
    let mut rest_at = None;
    for (at, c) in line.char_indices() {
        if escaped {
            field.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '|' {
            header.push(std::mem::take(&mut field));
            if header.len() == 7 {
                rest_at = Some(at + 1);
                break;
            }
        } else {
            field.push(c);
        }
    }
    let rest = line.get(rest_at?..)?;
    let items = unescape(rest, false);
    // A key: alphanumerics after the start or a raw space, before a raw '='.
    let mut keys = Vec::new();
    for (eq, item) in items.iter().enumerate() {
        if item.c != '=' || item.escaped {
            continue;
        }
        let mut start = eq;
        while start > 0 && !items[start - 1].escaped && items[start - 1].c.is_ascii_alphanumeric() {
            start -= 1;
        }
        let boundary = start == 0 || (items[start - 1].c == ' ' && !items[start - 1].escaped);
        if start < eq && boundary {
            keys.push((start, eq));
        }
    }
    let mut extensions = Vec::new();
    for (n, &(start, eq)) in keys.iter().enumerate() {
        let end = keys.get(n + 1).map_or(items.len(), |&(next, _)| next - 1);
        let key: String = items[start..eq].iter().map(|i| i.c).collect();
        let value: String = items
            .get(eq + 1..end)
            .unwrap_or(&[])
            .iter()
            .map(|i| i.c)
            .collect();
        extensions.push((key, value));
    }
    Some(Cef { header, extensions })
}

impl Cef {
    /// The value of extension `key` (the first one).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What an extension value becomes after CEF's replacements: control characters other than
/// CR and LF turn into spaces.
pub fn cef_value(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\r' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// What a header field becomes: every control character turns into a space.
pub fn cef_header(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
