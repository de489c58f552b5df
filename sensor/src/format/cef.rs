//! ArcSight Common Event Format (`cef`):
//! `CEF:0|Ballpoint|Trapster|<version>|<channel>|<category>|<severity>|<extensions>`, the header
//! Trapster's syslog integration sends, so SIEM rules written for it match. Header fields escape
//! `\` and `|`; extension values escape `\`, `=`, and CR/LF as `\r`/`\n`; other control
//! characters (C0, DEL, C1) become spaces. Extensions come in a fixed order. One line, newline-terminated.

use std::fmt::Write as _;

use bytes::{BufMut as _, BytesMut};
use serde_json::Value;

use super::{FormatContext, hex_data};
use crate::event::{Event, display_ip};

/// CEF device vendor.
pub const VENDOR: &str = "Ballpoint";
/// CEF device product.
pub const PRODUCT: &str = "Trapster";

/// A header field, escaped.
pub(crate) fn escape_header(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    header(&mut out, text);
    out
}

/// An extension value, escaped.
pub(crate) fn escape_extension(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    value(&mut out, text);
    out
}

/// Escapes a header field.
fn header(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
}

/// Escapes an extension value.
fn value(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
}

fn ext(out: &mut String, key: &str, text: &str) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    value(out, text);
}

/// The CEF line for `event`, without the trailing newline.
#[must_use]
pub fn line(event: &Event, ctx: &FormatContext) -> String {
    let mut s = String::with_capacity(512);
    s.push_str("CEF:0|");
    header(&mut s, VENDOR);
    s.push('|');
    header(&mut s, PRODUCT);
    s.push('|');
    header(&mut s, env!("CARGO_PKG_VERSION"));
    s.push('|');
    header(&mut s, event.service.as_str());
    s.push('|');
    header(&mut s, event.action.as_str());
    let _ = write!(s, "|{}|", ctx.cef_severity.min(10));
    let mut ext_s = String::with_capacity(256);
    ext(
        &mut ext_s,
        "rt",
        &event.timestamp.timestamp_millis().to_string(),
    );
    ext(
        &mut ext_s,
        "src",
        &display_ip(event.session.src_ip).to_string(),
    );
    ext(&mut ext_s, "spt", &event.session.src_port.to_string());
    ext(
        &mut ext_s,
        "dst",
        &display_ip(event.session.dst_ip).to_string(),
    );
    ext(&mut ext_s, "dpt", &event.session.dst_port.to_string());
    ext(
        &mut ext_s,
        "proto",
        &event.service.transport().to_uppercase(),
    );
    ext(&mut ext_s, "app", event.service.as_str());
    ext(&mut ext_s, "act", &event.logtype().to_string());
    if let Some(user) = event.extra.get("username").and_then(Value::as_str) {
        ext(&mut ext_s, "suser", user);
    }
    ext(&mut ext_s, "dvchost", &ctx.identity.device_name);
    ext(&mut ext_s, "externalId", &event.id.to_string());
    ext(
        &mut ext_s,
        "msg",
        &format!(
            "{} from {}",
            event.logtype(),
            display_ip(event.session.src_ip)
        ),
    );
    ext(&mut ext_s, "cs1Label", "device");
    ext(&mut ext_s, "cs1", &ctx.identity.device_id);
    ext(&mut ext_s, "cs2Label", "extra");
    ext(
        &mut ext_s,
        "cs2",
        &ascii_controls(&Value::from(event.extra.clone()).to_string()),
    );
    ext(&mut ext_s, "cs3Label", "data");
    ext(&mut ext_s, "cs3", &hex_data(event));
    s.push_str(ext_s.trim_start());
    s
}

/// JSON text with every control character still raw in it (DEL, C1) written as a `\uXXXX`
/// escape, so the CEF layer has nothing to replace and the JSON round-trips exactly.
fn ascii_controls(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Appends `event` as one CEF line to `out`.
pub fn encode(event: &Event, ctx: &FormatContext, out: &mut BytesMut) {
    out.put_slice(line(event, ctx).as_bytes());
    out.put_u8(b'\n');
}

/// A minimal CEF parser, for tests: header fields and extensions, unescaped.
#[cfg(test)]
pub(crate) fn parse(line: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut header = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    while header.len() < 7 {
        match chars.next() {
            Some('\\') => field.push(chars.next().unwrap_or('\\')),
            Some('|') => header.push(std::mem::take(&mut field)),
            Some(c) => field.push(c),
            None => break,
        }
    }
    let rest: String = chars.collect();
    // Extension keys are alphanumeric, preceded by a space (or the start) and followed by an
    // unescaped '='; values run until the next such key.
    let bytes: Vec<char> = rest.chars().collect();
    let mut starts = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if (i == 0 || bytes[i - 1] == ' ') && bytes[i].is_ascii_alphanumeric() {
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_alphanumeric() {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == '=' && (j == 0 || bytes[j - 1] != '\\') {
                starts.push((i, j));
            }
        }
        i += 1;
    }
    let mut ext = Vec::new();
    for (n, (k0, k1)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(bytes.len(), |(next, _)| next - 1);
        let key: String = bytes[*k0..*k1].iter().collect();
        let raw: String = bytes[k1 + 1..end].iter().collect();
        let mut v = String::new();
        let mut it = raw.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => v.push('\n'),
                    Some('r') => v.push('\r'),
                    Some(o) => v.push(o),
                    None => v.push('\\'),
                }
            } else {
                v.push(c);
            }
        }
        ext.push((key, v));
    }
    (header, ext)
}

#[cfg(test)]
mod tests {
    use super::{line, parse};
    use crate::format::{FormatContext, golden};

    fn get<'a>(ext: &'a [(String, String)], key: &str) -> &'a str {
        ext.iter()
            .find(|(k, _)| k == key)
            .map_or("<missing>", |(_, v)| v.as_str())
    }

    #[test]
    fn golden_portscan_line() {
        let event = &golden::catalogue_events()[0];
        let text = line(event, &FormatContext::for_device("trapster-1"));
        assert_eq!(
            text,
            format!(
                "CEF:0|Ballpoint|Trapster|{}|portscan|query|10|rt=1770987609677 src=1.2.3.4 spt=1 \
                 dst=5.6.7.8 dpt=1 proto=TCP app=portscan act=portscan.query dvchost=trapster-1 \
                 externalId=28213110-e616-4193-a545-a98d61984a18 msg=portscan.query from 1.2.3.4 \
                 cs1Label=device cs1=trapster-1 cs2Label=extra \
                 cs2={{\"flags\":[\"SYN\"],\"ports\":[\"1\",\"3\",\"25\"]}} cs3Label=data cs3=",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    /// Every attacker-controlled field survives a round trip through a CEF parser, and nothing
    /// an attacker sends can add a line, a header field or an extension.
    #[test]
    fn hostile_values_round_trip() {
        let mut payloads: Vec<Vec<u8>> = golden::NASTY.iter().map(|p| p.to_vec()).collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..500 {
            let mut p = Vec::new();
            for _ in 0..(n % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let alphabet = b"|=\\\n\r a=b\x00\xff\x7fZ";
                p.push(alphabet[usize::try_from(seed % alphabet.len() as u64).unwrap()]);
            }
            payloads.push(p);
        }
        for payload in &payloads {
            let event = golden::hostile(payload);
            let mut ctx = FormatContext::for_device("dev|ice=1");
            ctx.identity.device_name = "host\nname".to_owned();
            let text = line(&event, &ctx);
            assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
            let (header, ext) = parse(&text);
            assert_eq!(header.len(), 7, "{text}");
            assert_eq!(
                &header[1..7],
                [
                    "Ballpoint",
                    "Trapster",
                    env!("CARGO_PKG_VERSION"),
                    "ftp",
                    "login",
                    "10"
                ]
            );
            let text_value = String::from_utf8_lossy(payload);
            let cleaned: String = text_value
                .chars()
                .map(|c| {
                    if c.is_control() && c != '\n' && c != '\r' {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
            assert_eq!(get(&ext, "suser"), cleaned, "{text}");
            assert_eq!(get(&ext, "cs1"), "dev|ice=1");
            assert_eq!(get(&ext, "cs3"), hex::encode(payload));
            assert_eq!(get(&ext, "src"), "2001:db8::66");
            let keys: Vec<&str> = ext.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "rt",
                    "src",
                    "spt",
                    "dst",
                    "dpt",
                    "proto",
                    "app",
                    "act",
                    "suser",
                    "dvchost",
                    "externalId",
                    "msg",
                    "cs1Label",
                    "cs1",
                    "cs2Label",
                    "cs2",
                    "cs3Label",
                    "cs3"
                ],
                "{text}"
            );
            let extra: serde_json::Value = serde_json::from_str(get(&ext, "cs2")).unwrap();
            assert_eq!(extra["password"], text_value.as_ref());
        }
    }
}
