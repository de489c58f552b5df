//! PRELOGIN options (MS-TDS 2.2.6.5) and the token stream of a failed login (ERROR, DONE).

/// VERSION option.
const VERSION: u8 = 0x00;
/// ENCRYPTION option.
const ENCRYPTION: u8 = 0x01;
/// INSTOPT option.
const INSTOPT: u8 = 0x02;
/// THREADID option.
const THREADID: u8 = 0x03;
/// MARS option.
const MARS: u8 = 0x04;
/// Terminator.
const TERMINATOR: u8 = 0xff;

/// Encryption: on for the login packet only.
pub const ENCRYPT_OFF: u8 = 0x00;
/// Encryption: on for the whole session.
pub const ENCRYPT_ON: u8 = 0x01;
/// Encryption: not supported.
pub const ENCRYPT_NOT_SUP: u8 = 0x02;
/// Encryption: required.
pub const ENCRYPT_REQ: u8 = 0x03;

/// A server version as PRELOGIN carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Major (15 = SQL Server 2019).
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Build.
    pub build: u16,
}

/// Trapster's `version` values and the RTM build each announces.
pub const VERSIONS: [(&str, Version); 8] = [
    (
        "2008",
        Version {
            major: 10,
            minor: 0,
            build: 1600,
        },
    ),
    (
        "2008R2",
        Version {
            major: 10,
            minor: 50,
            build: 1600,
        },
    ),
    (
        "2012",
        Version {
            major: 11,
            minor: 0,
            build: 2100,
        },
    ),
    (
        "2014",
        Version {
            major: 12,
            minor: 0,
            build: 2000,
        },
    ),
    (
        "2016",
        Version {
            major: 13,
            minor: 0,
            build: 1601,
        },
    ),
    (
        "2017",
        Version {
            major: 14,
            minor: 0,
            build: 1000,
        },
    ),
    (
        "2019",
        Version {
            major: 15,
            minor: 0,
            build: 2000,
        },
    ),
    (
        "2022",
        Version {
            major: 16,
            minor: 0,
            build: 1000,
        },
    ),
];

/// The version named `name` (`2019`, case-insensitive `2008r2`).
#[must_use]
pub fn version(name: &str) -> Option<Version> {
    VERSIONS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|(_, v)| *v)
}

/// What a client's PRELOGIN says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientPrelogin {
    /// Its ENCRYPTION value (`None` when absent).
    pub encryption: Option<u8>,
    /// Whether it sent MARS (the answer then carries MARS too).
    pub mars: bool,
    /// Its version, as `major.minor.build` packed in 6 bytes.
    pub version: Option<[u8; 6]>,
}

/// Reads a PRELOGIN option list; `None` when an option points outside the payload or the list
/// has no terminator (not a PRELOGIN).
#[must_use]
pub fn parse_prelogin(b: &[u8]) -> Option<ClientPrelogin> {
    let mut out = ClientPrelogin::default();
    let mut at = 0usize;
    // 5 bytes per option; a PRELOGIN has fewer than 16 kinds.
    for _ in 0..32 {
        let &token = b.get(at)?;
        if token == TERMINATOR {
            return Some(out);
        }
        let entry = b.get(at + 1..at + 5)?;
        let offset = usize::from(u16::from_be_bytes([*entry.first()?, *entry.get(1)?]));
        let len = usize::from(u16::from_be_bytes([*entry.get(2)?, *entry.get(3)?]));
        let value = b.get(offset..offset.checked_add(len)?)?;
        match token {
            VERSION => out.version = value.get(..6).and_then(|v| v.try_into().ok()),
            ENCRYPTION => out.encryption = value.first().copied(),
            MARS => out.mars = true,
            _ => {}
        }
        at += 5;
    }
    None
}

/// The encryption SQL Server answers to `client` when it has a certificate and does not force
/// encryption: login-only for `OFF`, full for `ON`/`REQ`, none for `NOT_SUP`.
#[must_use]
pub const fn negotiate(client: Option<u8>) -> u8 {
    match client {
        Some(ENCRYPT_ON | ENCRYPT_REQ) => ENCRYPT_ON,
        Some(ENCRYPT_NOT_SUP) => ENCRYPT_NOT_SUP,
        _ => ENCRYPT_OFF,
    }
}

/// The server's PRELOGIN payload: VERSION, ENCRYPTION, INSTOPT, THREADID (empty) and MARS when
/// asked, in SQL Server's layout.
#[must_use]
pub fn prelogin_response(version: Version, encryption: u8, mars: bool) -> Vec<u8> {
    let mut values: Vec<(u8, Vec<u8>)> = vec![
        (VERSION, {
            let mut v = vec![version.major, version.minor];
            v.extend_from_slice(&version.build.to_be_bytes());
            v.extend_from_slice(&[0, 0]);
            v
        }),
        (ENCRYPTION, vec![encryption]),
        (INSTOPT, vec![0]),
        (THREADID, Vec::new()),
    ];
    if mars {
        values.push((MARS, vec![0]));
    }
    let table = values.len() * 5 + 1;
    let mut head = Vec::with_capacity(table);
    let mut body = Vec::new();
    for (token, value) in &values {
        let offset = u16::try_from(table + body.len()).unwrap_or(0);
        head.push(*token);
        head.extend_from_slice(&offset.to_be_bytes());
        head.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_be_bytes());
        body.extend_from_slice(value);
    }
    head.push(TERMINATOR);
    head.extend_from_slice(&body);
    head
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// The ERROR and DONE tokens SQL Server sends for a failed login (error 18456, state 1,
/// class 14), from server `server`.
#[must_use]
pub fn login_failed(user: &str, server: &str) -> Vec<u8> {
    let user: String = user.chars().take(128).collect();
    error_done(18456, &format!("Login failed for user '{user}'."), server)
}

/// An ERROR token (`number`, state 1, class 14, `text`, from `server`, line 1) and a DONE token
/// with DONE_ERROR.
#[must_use]
pub fn error_done(number: u32, text: &str, server: &str) -> Vec<u8> {
    let server: String = server.chars().take(128).collect();
    let mut error = Vec::new();
    error.extend_from_slice(&number.to_le_bytes());
    error.push(1); // state
    error.push(14); // class
    error.extend_from_slice(
        &u16::try_from(text.encode_utf16().count())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    error.extend_from_slice(&utf16(text));
    error.push(u8::try_from(server.encode_utf16().count()).unwrap_or(0));
    error.extend_from_slice(&utf16(&server));
    error.push(0); // procedure name
    error.extend_from_slice(&1u32.to_le_bytes()); // line number
    let mut out = vec![0xaa];
    out.extend_from_slice(&u16::try_from(error.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&error);
    // DONE: status DONE_ERROR, command 0, row count 0.
    out.push(0xfd);
    out.extend_from_slice(&0x0002u16.to_le_bytes());
    out.extend_from_slice(&[0; 10]);
    out
}

#[cfg(test)]
mod tests {
    use super::{
        ENCRYPT_NOT_SUP, ENCRYPT_OFF, ENCRYPT_ON, ENCRYPT_REQ, login_failed, negotiate,
        parse_prelogin, prelogin_response, version,
    };
    use crate::services::proto::shared::tds;

    #[test]
    fn answers_nmaps_probe_as_its_signature_expects() {
        // nmap-service-probes' ms-sql-s probe payload.
        let probe: &[u8] = b"\x00\x00\x15\x00\x06\x01\x00\x1b\x00\x01\x02\x00\x1c\x00\x0c\x03\x00\x28\x00\x04\xff\x08\x00\x01\x55\x00\x00\x00\x4d\x53\x53\x51\x4c\x53\x65\x72\x76\x65\x72\x00\x48\x0f\x00\x00";
        let client = parse_prelogin(probe).unwrap();
        assert_eq!(client.encryption, Some(ENCRYPT_OFF));
        assert!(!client.mars);
        let v = version("2019").unwrap();
        let wire = tds::message(
            tds::TABULAR,
            &prelogin_response(v, negotiate(client.encryption), false),
        );
        // The 2019 line: ^\x04\x01\x00\x25\x00\x00\x01\x00 ... \xff\x0f\x00(..)
        let expected_head: &[u8] = b"\x04\x01\x00\x25\x00\x00\x01\x00\x00\x00\x15\x00\x06\x01\x00\x1b\x00\x01\x02\x00\x1c\x00\x01\x03\x00\x1d\x00\x00\xff\x0f\x00";
        assert_eq!(&wire[..expected_head.len()], expected_head);
        assert_eq!(
            &wire[expected_head.len()..],
            &[0x07, 0xd0, 0, 0, ENCRYPT_OFF, 0]
        );
    }

    #[test]
    fn encryption_follows_sql_server() {
        assert_eq!(negotiate(Some(ENCRYPT_OFF)), ENCRYPT_OFF);
        assert_eq!(negotiate(Some(ENCRYPT_ON)), ENCRYPT_ON);
        assert_eq!(negotiate(Some(ENCRYPT_REQ)), ENCRYPT_ON);
        assert_eq!(negotiate(Some(ENCRYPT_NOT_SUP)), ENCRYPT_NOT_SUP);
        assert_eq!(negotiate(None), ENCRYPT_OFF);
        assert_eq!(version("2008r2").unwrap().minor, 50);
        assert!(version("2005").is_none());
    }

    #[test]
    fn the_login_error_is_a_proper_token_stream() {
        let t = login_failed("sa", "SQL01");
        assert_eq!(t[0], 0xaa);
        let len = usize::from(u16::from_le_bytes([t[1], t[2]]));
        assert_eq!(&t[3..7], &18456u32.to_le_bytes());
        assert_eq!((t[7], t[8]), (1, 14));
        let text = "Login failed for user 'sa'.";
        assert_eq!(usize::from(u16::from_le_bytes([t[9], t[10]])), text.len());
        let done = &t[3 + len..];
        assert_eq!(done, &[0xfd, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(&t[11..11 + utf16.len()], &utf16[..]);
    }

    #[test]
    fn prelogin_lists_out_of_range_are_refused() {
        assert!(parse_prelogin(b"").is_none());
        assert!(parse_prelogin(b"\x00\xff\xff\x00\x06\xff").is_none());
        assert!(parse_prelogin(&[0x01; 200]).is_none());
        assert_eq!(parse_prelogin(b"\xff"), Some(Default::default()));
    }
}
