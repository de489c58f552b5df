//! PostgreSQL message framing: lengths, startup parameters, ErrorResponse and the backend
//! messages of the startup phase, as PostgreSQL 15 writes them.

use bytes::{BufMut, BytesMut};

use crate::services::framework::session::lossy;

/// Protocol 3.0.
pub const PROTOCOL_3: u32 = 196_608;
/// `SSLRequest`.
pub const SSL_REQUEST: u32 = 80_877_103;
/// `GSSENCRequest`.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// `CancelRequest`.
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// PostgreSQL refuses startup packets longer than this.
pub const MAX_STARTUP: usize = 10_000;

/// One field of an ErrorResponse besides severity and code.
#[derive(Debug, Clone, Copy)]
pub struct Fatal<'a> {
    /// SQLSTATE.
    pub code: &'a str,
    /// `M`.
    pub message: &'a str,
    /// `H`, when the server gives one.
    pub hint: Option<&'a str>,
    /// `F`: source file.
    pub file: &'a str,
    /// `L`: source line (PostgreSQL 15.18 from Debian).
    pub line: &'a str,
    /// `R`: routine.
    pub routine: &'a str,
}

/// A FATAL `ErrorResponse` as the server builds it (fields in PostgreSQL's order).
#[must_use]
pub fn fatal(e: &Fatal<'_>) -> Vec<u8> {
    let mut body = BytesMut::new();
    let mut fields = vec![
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', e.code),
        (b'M', e.message),
    ];
    if let Some(hint) = e.hint {
        fields.push((b'H', hint));
    }
    fields.extend([(b'F', e.file), (b'L', e.line), (b'R', e.routine)]);
    for (tag, value) in fields {
        body.put_u8(tag);
        body.put_slice(value.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    message(b'E', &body)
}

/// A tagged backend message.
#[must_use]
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len().saturating_add(5));
    out.push(tag);
    out.extend_from_slice(
        &u32::try_from(body.len().saturating_add(4))
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// An `Authentication*` message: `R`, the request code, then its data.
#[must_use]
pub fn authentication(code: u32, data: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    message(b'R', &body)
}

/// `NegotiateProtocolVersion`: the newest version the server speaks (3.0) and the `_pq_.`
/// options it does not know.
#[must_use]
pub fn negotiate_protocol_version(unknown: &[String]) -> Vec<u8> {
    let mut body = PROTOCOL_3.to_be_bytes().to_vec();
    body.extend_from_slice(
        &u32::try_from(unknown.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for name in unknown {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
    }
    message(b'v', &body)
}

/// The body length a message's int32 length announces (the length counts itself and, for
/// startup packets, the code: `header` bytes), when it is within `header..=max`.
/// Negative lengths (the high bit set) and lengths shorter than the header are `None`.
#[must_use]
pub fn body_length(length: [u8; 4], header: usize, max: usize) -> Option<usize> {
    let len = usize::try_from(i32::from_be_bytes(length)).ok()?;
    if len > max {
        return None;
    }
    len.checked_sub(header)
}

/// Startup parameters: `key\0value\0 ... \0`.
#[must_use]
pub fn parse_parameters(body: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut parts = body.split(|&b| b == 0);
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        if k.is_empty() || out.len() >= 64 {
            break;
        }
        out.push((lossy(k), lossy(v)));
    }
    out
}

/// PostgreSQL's `parse_bool` (any unambiguous prefix of true/false/yes/no, `on`, `off`, 1, 0,
/// case-insensitive) or `database`: the values `replication` accepts.
#[must_use]
pub fn valid_replication(value: &str) -> bool {
    if value == "database" {
        return true;
    }
    let v = value.to_ascii_lowercase();
    if v.is_empty() {
        return false;
    }
    ["true", "false", "yes", "no"]
        .iter()
        .any(|word| word.starts_with(v.as_str()))
        || ["on", "of", "off", "1", "0"].contains(&v.as_str())
}

/// True when the parameter list ends with its empty terminator as the last byte, the layout
/// PostgreSQL requires.
#[must_use]
pub fn terminated(body: &[u8]) -> bool {
    let mut rest = body;
    // Each round consumes at least two bytes; bounded by the body's length.
    while let Some((key, after)) = split_cstr(rest) {
        if key.is_empty() {
            return after.is_empty();
        }
        let Some((_, after_value)) = split_cstr(after) else {
            return false;
        };
        rest = after_value;
    }
    false
}

/// A C string and what follows it.
#[must_use]
pub fn split_cstr(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = body.iter().position(|&b| b == 0)?;
    let (s, rest) = body.split_at(end);
    Some((s, rest.get(1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int32_lengths_are_refused_when_negative_short_or_huge() {
        let be = |n: i32| n.to_be_bytes();
        assert_eq!(body_length(be(8), 8, MAX_STARTUP), Some(0));
        assert_eq!(body_length(be(4), 4, MAX_STARTUP), Some(0));
        assert_eq!(body_length(be(100), 8, MAX_STARTUP), Some(92));
        let max = i32::try_from(MAX_STARTUP).unwrap();
        assert_eq!(body_length(be(max), 8, MAX_STARTUP), Some(MAX_STARTUP - 8));
        for bad in [max + 1, i32::MAX, -1, i32::MIN, 0, 7] {
            assert_eq!(body_length(be(bad), 8, MAX_STARTUP), None, "{bad}");
        }
        assert_eq!(body_length(be(3), 4, MAX_STARTUP), None);
    }

    #[test]
    fn parameters_parse_and_stop_at_the_terminator() {
        let p = parse_parameters(b"user\0bob\0database\0db\0\0junk");
        assert_eq!(
            p,
            vec![
                ("user".to_owned(), "bob".to_owned()),
                ("database".to_owned(), "db".to_owned())
            ]
        );
        assert!(parse_parameters(b"").is_empty());
        assert!(parse_parameters(b"user").is_empty());
    }

    #[test]
    fn replication_values_are_postgres_booleans_or_database() {
        for good in [
            "true", "t", "TR", "false", "f", "yes", "y", "no", "n", "on", "off", "of", "1", "0",
            "database",
        ] {
            assert!(valid_replication(good), "{good}");
        }
        for bad in ["bogus", "", "o", "2", "Database", "truee", "none"] {
            assert!(!valid_replication(bad), "{bad}");
        }
    }

    #[test]
    fn the_terminator_must_be_the_last_byte() {
        assert!(terminated(b"user\0bob\0\0"));
        assert!(terminated(b"\0"));
        for bad in [&b""[..], b"user\0bob\0", b"user\0bob", b"user\0bob\0\0x"] {
            assert!(!terminated(bad), "{bad:?}");
        }
    }

    #[test]
    fn messages_have_postgres_bytes() {
        assert_eq!(
            negotiate_protocol_version(&["_pq_.foo".to_owned()]),
            b"v\x00\x00\x00\x15\x00\x03\x00\x00\x00\x00\x00\x01_pq_.foo\x00"
        );
        assert_eq!(
            authentication(10, b"SCRAM-SHA-256\0\0"),
            b"R\x00\x00\x00\x17\x00\x00\x00\nSCRAM-SHA-256\x00\x00"
        );
        let e = fatal(&Fatal {
            code: "22023",
            message: "m",
            hint: Some("h"),
            file: "postmaster.c",
            line: "2286",
            routine: "ProcessStartupPacket",
        });
        assert_eq!(
            e,
            b"E\x00\x00\x00\x4aSFATAL\x00VFATAL\x00C22023\x00Mm\x00Hh\x00Fpostmaster.c\x00L2286\x00RProcessStartupPacket\x00\x00"
        );
    }
}
