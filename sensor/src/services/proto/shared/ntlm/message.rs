//! NTLM messages on the wire (MS-NLMP 2.2): NEGOTIATE and AUTHENTICATE parsed, CHALLENGE built.
//!
//! Hand-written: the messages are fixed little-endian headers with (length, offset) fields into
//! a payload, which no maintained crate parses for a server without also doing the
//! cryptography a honeypot must not (it never knows the password). Every field is read with
//! bounds checks; a field pointing outside the message reads as empty.

use super::{Identity, NtlmError, crypto::utf16le};

/// `NTLMSSP\0`, the first 8 bytes of every message.
pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// Message types.
pub const NEGOTIATE: u32 = 1;
/// CHALLENGE.
pub const CHALLENGE: u32 = 2;
/// AUTHENTICATE.
pub const AUTHENTICATE: u32 = 3;

/// Negotiate flags (MS-NLMP 2.2.2.5).
pub mod flags {
    /// Unicode strings.
    pub const UNICODE: u32 = 0x0000_0001;
    /// OEM strings.
    pub const OEM: u32 = 0x0000_0002;
    /// The client asks for the target name.
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    /// Signing.
    pub const SIGN: u32 = 0x0000_0010;
    /// Sealing.
    pub const SEAL: u32 = 0x0000_0020;
    /// LM session key.
    pub const LM_KEY: u32 = 0x0000_0080;
    /// NTLM v1 authentication.
    pub const NTLM: u32 = 0x0000_0200;
    /// Anonymous connection.
    pub const ANONYMOUS: u32 = 0x0000_0800;
    /// The NEGOTIATE carries a domain name.
    pub const OEM_DOMAIN_SUPPLIED: u32 = 0x0000_1000;
    /// The NEGOTIATE carries a workstation name.
    pub const OEM_WORKSTATION_SUPPLIED: u32 = 0x0000_2000;
    /// Always sign.
    pub const ALWAYS_SIGN: u32 = 0x0000_8000;
    /// The target is a domain.
    pub const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
    /// The target is a server.
    pub const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
    /// Extended session security (NTLM2 session response for v1).
    pub const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    /// Identify-level token.
    pub const IDENTIFY: u32 = 0x0010_0000;
    /// The CHALLENGE carries target info.
    pub const TARGET_INFO: u32 = 0x0080_0000;
    /// A version field is present.
    pub const VERSION: u32 = 0x0200_0000;
    /// 128-bit session keys.
    pub const KEY_128: u32 = 0x2000_0000;
    /// Key exchange.
    pub const KEY_EXCH: u32 = 0x4000_0000;
    /// 56-bit encryption.
    pub const KEY_56: u32 = 0x8000_0000;
}

/// A message's type, when it starts with the signature.
#[must_use]
pub fn message_type(msg: &[u8]) -> Option<u32> {
    if msg.get(..8)? != SIGNATURE {
        return None;
    }
    Some(u32::from_le_bytes(msg.get(8..12)?.try_into().ok()?))
}

pub(super) fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        msg.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub(super) fn u32_at(msg: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        msg.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The bytes a (length, max length, offset) field at `at` points to; empty when it points
/// outside the message.
pub(super) fn field(msg: &[u8], at: usize) -> Option<&[u8]> {
    let len = usize::from(u16_at(msg, at)?);
    let offset = usize::try_from(u32_at(msg, at.checked_add(4)?)?).ok()?;
    if len == 0 {
        return Some(&[]);
    }
    Some(
        msg.get(offset..offset.checked_add(len)?)
            .unwrap_or_default(),
    )
}

/// Text of a string field: UTF-16LE under `UNICODE`, otherwise OEM bytes (read as Latin-1).
#[must_use]
pub fn text(bytes: &[u8], unicode: bool) -> String {
    if unicode {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        bytes.iter().map(|&b| char::from(b)).collect()
    }
}

/// What a NEGOTIATE message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiate {
    /// The client's flags.
    pub flags: u32,
    /// Domain the client names, if any (OEM).
    pub domain: Option<String>,
    /// Workstation the client names, if any (OEM).
    pub workstation: Option<String>,
    /// The client's OS version (`major.minor.build`), if sent.
    pub version: Option<String>,
}

/// Parses a NEGOTIATE message.
///
/// # Errors
/// [`NtlmError::NotNtlm`], [`NtlmError::Unexpected`] or [`NtlmError::Truncated`].
pub fn parse_negotiate(msg: &[u8]) -> Result<Negotiate, NtlmError> {
    match message_type(msg) {
        None => return Err(NtlmError::NotNtlm),
        Some(NEGOTIATE) => {}
        Some(other) => return Err(NtlmError::Unexpected(other)),
    }
    let flags = u32_at(msg, 12).ok_or(NtlmError::Truncated)?;
    let named = |flag: u32, at: usize| {
        (flags & flag != 0)
            .then(|| field(msg, at))
            .flatten()
            .filter(|b| !b.is_empty())
            .map(|b| text(b, false))
    };
    Ok(Negotiate {
        flags,
        domain: named(flags::OEM_DOMAIN_SUPPLIED, 16),
        workstation: named(flags::OEM_WORKSTATION_SUPPLIED, 24),
        version: (flags & flags::VERSION != 0)
            .then(|| version_at(msg, 32))
            .flatten(),
    })
}

/// `major.minor.build` of a VERSION structure at `at`.
pub(super) fn version_at(msg: &[u8], at: usize) -> Option<String> {
    let v = msg.get(at..at.checked_add(8)?)?;
    if v.iter().all(|&b| b == 0) {
        return None;
    }
    Some(format!(
        "{}.{}.{}",
        v[0],
        v[1],
        u16::from_le_bytes([v[2], v[3]])
    ))
}

/// The flags a Windows server answers `client` flags with.
#[must_use]
pub fn answer_flags(client: u32, domain_joined: bool) -> u32 {
    use flags::{
        ALWAYS_SIGN, EXTENDED_SESSIONSECURITY, IDENTIFY, KEY_56, KEY_128, KEY_EXCH, NTLM, OEM,
        REQUEST_TARGET, SEAL, SIGN, TARGET_INFO, TARGET_TYPE_DOMAIN, TARGET_TYPE_SERVER, UNICODE,
        VERSION,
    };
    let echoed =
        REQUEST_TARGET | SIGN | SEAL | ALWAYS_SIGN | IDENTIFY | KEY_128 | KEY_EXCH | KEY_56;
    let mut out = (client & echoed) | NTLM | TARGET_INFO | VERSION;
    // Unicode when the client can, OEM only for a client that offers nothing else.
    out |= if client & UNICODE != 0 || client & OEM == 0 {
        UNICODE
    } else {
        OEM
    };
    // Extended session security whenever offered (Windows never falls back to LM keys).
    if client & EXTENDED_SESSIONSECURITY != 0 {
        out |= EXTENDED_SESSIONSECURITY;
    }
    if client & REQUEST_TARGET != 0 {
        out |= if domain_joined {
            TARGET_TYPE_DOMAIN
        } else {
            TARGET_TYPE_SERVER
        };
    }
    out
}

/// AV pair ids (MS-NLMP 2.2.2.1).
mod av {
    pub const EOL: u16 = 0;
    pub const NB_COMPUTER: u16 = 1;
    pub const NB_DOMAIN: u16 = 2;
    pub const DNS_COMPUTER: u16 = 3;
    pub const DNS_DOMAIN: u16 = 4;
    pub const DNS_TREE: u16 = 5;
    pub const TIMESTAMP: u16 = 7;
}

fn push_av(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(value);
}

/// The target info AV pairs a Windows server sends, in its order.
#[must_use]
pub fn target_info(identity: &Identity, filetime: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    push_av(&mut out, av::NB_DOMAIN, &utf16le(&identity.netbios_domain));
    push_av(
        &mut out,
        av::NB_COMPUTER,
        &utf16le(&identity.netbios_computer),
    );
    push_av(&mut out, av::DNS_DOMAIN, &utf16le(&identity.dns_domain));
    push_av(&mut out, av::DNS_COMPUTER, &utf16le(&identity.dns_computer));
    if let Some(tree) = &identity.dns_tree {
        push_av(&mut out, av::DNS_TREE, &utf16le(tree));
    }
    push_av(&mut out, av::TIMESTAMP, &filetime.to_le_bytes());
    push_av(&mut out, av::EOL, &[]);
    out
}

/// Builds the CHALLENGE message answering `client_flags`.
#[must_use]
pub fn build_challenge(
    identity: &Identity,
    client_flags: u32,
    server_challenge: &[u8; 8],
    filetime: u64,
) -> Vec<u8> {
    const HEADER: usize = 56;
    let flags = answer_flags(client_flags, identity.dns_tree.is_some());
    let target_name = if flags & flags::UNICODE != 0 {
        utf16le(&identity.netbios_domain)
    } else {
        identity.netbios_domain.as_bytes().to_vec()
    };
    let info = target_info(identity, filetime);
    let name_len = u16::try_from(target_name.len()).unwrap_or(0);
    let info_len = u16::try_from(info.len()).unwrap_or(0);
    let name_offset = u32::try_from(HEADER).unwrap_or(0);
    let info_offset = name_offset.saturating_add(u32::from(name_len));
    let mut out = Vec::with_capacity(HEADER + target_name.len() + info.len());
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&CHALLENGE.to_le_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(&name_offset.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(server_challenge);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&info_len.to_le_bytes());
    out.extend_from_slice(&info_len.to_le_bytes());
    out.extend_from_slice(&info_offset.to_le_bytes());
    let v = identity.version;
    out.push(v.major);
    out.push(v.minor);
    out.extend_from_slice(&v.build.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0x0f]);
    out.extend_from_slice(&target_name);
    out.extend_from_slice(&info);
    out
}

/// The fields of an AUTHENTICATE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate {
    /// LmChallengeResponse.
    pub lm_response: Vec<u8>,
    /// NtChallengeResponse.
    pub nt_response: Vec<u8>,
    /// Domain name.
    pub domain: String,
    /// User name.
    pub username: String,
    /// Workstation name.
    pub workstation: String,
    /// Flags.
    pub flags: u32,
    /// The client's OS version, if sent.
    pub version: Option<String>,
}

/// Parses an AUTHENTICATE message.
///
/// # Errors
/// [`NtlmError::NotNtlm`], [`NtlmError::Unexpected`] or [`NtlmError::Truncated`].
pub fn parse_authenticate(msg: &[u8]) -> Result<Authenticate, NtlmError> {
    match message_type(msg) {
        None => return Err(NtlmError::NotNtlm),
        Some(AUTHENTICATE) => {}
        Some(other) => return Err(NtlmError::Unexpected(other)),
    }
    let get = |at: usize| field(msg, at).ok_or(NtlmError::Truncated);
    let (lm, nt, domain, user, station) = (get(12)?, get(20)?, get(28)?, get(36)?, get(44)?);
    // The session key field (52) and flags (60) follow; old clients stop after the names.
    let flags = u32_at(msg, 60).unwrap_or(flags::UNICODE | flags::NTLM);
    let unicode = flags & flags::UNICODE != 0;
    let payload_start = [12usize, 20, 28, 36, 44]
        .iter()
        .filter_map(|&at| u32_at(msg, at.saturating_add(4)))
        .filter_map(|o| usize::try_from(o).ok())
        .filter(|&o| o >= 64)
        .min()
        .unwrap_or(0);
    let version = (flags & flags::VERSION != 0 && payload_start >= 72)
        .then(|| version_at(msg, 64))
        .flatten();
    Ok(Authenticate {
        lm_response: lm.to_vec(),
        nt_response: nt.to_vec(),
        domain: text(domain, unicode),
        username: text(user, unicode),
        workstation: text(station, unicode),
        flags,
        version,
    })
}
