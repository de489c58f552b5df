//! SMB wire formats (MS-SMB2 2.2, MS-SMB 2.2.4.52 for the SMB1 opening): the direct-TCP
//! session framing, the SMB2 header, and the requests and responses the decoy handles.
//!
//! Hand-written: the messages are little-endian fixed structures read with bounds checks; no
//! maintained crate parses the server side of SMB2 without a full file server behind it.

use crate::services::proto::shared::ntlm::ProductVersion;

/// Largest SMB message accepted before authentication (a SESSION_SETUP is a few KiB).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// SMB2 header length.
pub const HEADER: usize = 64;

/// SMB2 commands.
pub mod command {
    /// NEGOTIATE.
    pub const NEGOTIATE: u16 = 0;
    /// SESSION_SETUP.
    pub const SESSION_SETUP: u16 = 1;
    /// LOGOFF.
    pub const LOGOFF: u16 = 2;
    /// TREE_CONNECT.
    pub const TREE_CONNECT: u16 = 3;
    /// ECHO.
    pub const ECHO: u16 = 13;
}

/// NT status codes sent.
pub mod status {
    /// Success.
    pub const SUCCESS: u32 = 0;
    /// More processing required (NTLM CHALLENGE sent).
    pub const MORE_PROCESSING_REQUIRED: u32 = 0xc000_0016;
    /// Wrong user name or password.
    pub const LOGON_FAILURE: u32 = 0xc000_006d;
    /// Access denied.
    pub const ACCESS_DENIED: u32 = 0xc000_0022;
    /// Not supported.
    pub const NOT_SUPPORTED: u32 = 0xc000_00bb;
    /// Invalid parameter.
    pub const INVALID_PARAMETER: u32 = 0xc000_000d;
    /// The session is gone.
    pub const USER_SESSION_DELETED: u32 = 0xc000_0203;
}

/// Dialects the server speaks, best first.
pub const DIALECTS: [u16; 5] = [0x0311, 0x0302, 0x0300, 0x0210, 0x0202];
/// The wildcard dialect answered to an SMB1 NEGOTIATE offering "SMB 2.???".
pub const DIALECT_WILDCARD: u16 = 0x02ff;

/// The payload length a direct-TCP header announces (`\0` then 24 bits, big-endian), or
/// `None` for another NetBIOS message type (whose length is returned in the error).
#[must_use]
pub fn frame_length(header: [u8; 4]) -> (u8, usize) {
    let [kind, a, b, c] = header;
    (
        kind,
        usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c),
    )
}

/// A framed message.
#[must_use]
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0) & 0x00ff_ffff;
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The fields of an SMB2 request header the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Command.
    pub command: u16,
    /// Credits requested.
    pub credits: u16,
    /// Flags.
    pub flags: u32,
    /// Message id.
    pub message_id: u64,
    /// Process id (sync) field.
    pub process_id: u32,
    /// Tree id.
    pub tree_id: u32,
    /// Session id.
    pub session_id: u64,
}

/// Parses an SMB2 header; `None` unless the message starts with `\xfeSMB` and a 64-byte header.
#[must_use]
pub fn parse_header(msg: &[u8]) -> Option<Header> {
    if msg.get(..4)? != b"\xfeSMB" || u16_at(msg, 4)? != 64 {
        return None;
    }
    Some(Header {
        command: u16_at(msg, 12)?,
        credits: u16_at(msg, 14)?,
        flags: u32_at(msg, 16)?,
        message_id: u64_at(msg, 24)?,
        process_id: u32_at(msg, 32)?,
        tree_id: u32_at(msg, 36)?,
        session_id: u64_at(msg, 40)?,
    })
}

/// A response header answering `req`.
#[must_use]
pub fn response_header(req: &Header, status: u32, session_id: u64, tree_id: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(b"\xfeSMB");
    h.extend_from_slice(&64u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&status.to_le_bytes());
    h.extend_from_slice(&req.command.to_le_bytes());
    let granted = if req.command == command::NEGOTIATE {
        1
    } else {
        req.credits.clamp(1, 64)
    };
    h.extend_from_slice(&granted.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // SMB2_FLAGS_SERVER_TO_REDIR
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&req.message_id.to_le_bytes());
    h.extend_from_slice(&req.process_id.to_le_bytes());
    h.extend_from_slice(&tree_id.to_le_bytes());
    h.extend_from_slice(&session_id.to_le_bytes());
    h.extend_from_slice(&[0; 16]);
    h
}

/// The ERROR response body (MS-SMB2 2.2.2).
pub const ERROR_BODY: [u8; 9] = [9, 0, 0, 0, 0, 0, 0, 0, 0];

/// What an SMB2 NEGOTIATE request offers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NegotiateRequest {
    /// Dialects offered.
    pub dialects: Vec<u16>,
    /// Client security mode (1: signing enabled, 2: required).
    pub security_mode: u16,
    /// Client GUID.
    pub client_guid: [u8; 16],
    /// Ciphers of an ENCRYPTION_CAPABILITIES context (3.1.1).
    pub ciphers: Option<Vec<u16>>,
    /// Whether a PREAUTH_INTEGRITY_CAPABILITIES context came.
    pub preauth: bool,
    /// Host name of a NETNAME_NEGOTIATE_CONTEXT_ID (what the client thinks it reaches).
    pub netname: Option<String>,
}

/// Parses an SMB2 NEGOTIATE request body (after the header); `msg` is the whole message.
#[must_use]
pub fn parse_negotiate(msg: &[u8]) -> Option<NegotiateRequest> {
    let body = msg.get(HEADER..)?;
    if u16_at(body, 0)? != 36 {
        return None;
    }
    let count = usize::from(u16_at(body, 2)?);
    let mut out = NegotiateRequest {
        security_mode: u16_at(body, 4)?,
        client_guid: body.get(12..28)?.try_into().ok()?,
        ..NegotiateRequest::default()
    };
    for i in 0..count.min(64) {
        out.dialects
            .push(u16_at(body, 36usize.checked_add(i.checked_mul(2)?)?)?);
    }
    if out.dialects.contains(&0x0311) {
        let offset = usize::try_from(u32_at(body, 28)?).ok()?;
        let contexts = usize::from(u16_at(body, 32)?);
        let mut at = offset;
        for _ in 0..contexts.min(16) {
            let (Some(kind), Some(len)) = (u16_at(msg, at), u16_at(msg, at.saturating_add(2)))
            else {
                break;
            };
            let data_at = at.saturating_add(8);
            let Some(data) = msg.get(data_at..data_at.saturating_add(usize::from(len))) else {
                break;
            };
            match kind {
                1 => out.preauth = true,
                2 => {
                    let n = usize::from(u16_at(data, 0).unwrap_or(0)).min(16);
                    out.ciphers = Some((0..n).filter_map(|i| u16_at(data, 2 + 2 * i)).collect());
                }
                5 => {
                    out.netname = Some(crate::services::proto::shared::ntlm::message::text(
                        data, true,
                    ));
                }
                _ => {}
            }
            at = data_at.saturating_add(usize::from(len)).saturating_add(7) & !7;
        }
    }
    Some(out)
}

/// The dialect chosen from the client's list, if any is spoken up to `max`.
#[must_use]
pub fn choose_dialect(offered: &[u16], max: u16) -> Option<u16> {
    DIALECTS
        .iter()
        .copied()
        .find(|&d| d <= max && offered.contains(&d))
}

/// The newest SMB2 dialect a Windows release speaks: 3.1.1 from Windows 10 / Server 2016, 3.0.2
/// for 2012 R2, 3.0 for 2012, 2.1 for 2008 R2, 2.0.2 before.
#[must_use]
pub const fn max_dialect(v: ProductVersion) -> u16 {
    match (v.major, v.minor) {
        (major, _) if major >= 10 => 0x0311,
        (6, minor) if minor >= 3 => 0x0302,
        (6, 2) => 0x0300,
        (6, 1) => 0x0210,
        _ => 0x0202,
    }
}

/// What the server says about itself in a NEGOTIATE response.
#[derive(Debug, Clone, Copy)]
pub struct ServerInfo<'a> {
    /// Server GUID.
    pub guid: [u8; 16],
    /// System time (FILETIME).
    pub time: u64,
    /// The SPNEGO NegTokenInit.
    pub security_blob: &'a [u8],
    /// 32 random bytes for the preauth integrity salt.
    pub salt: [u8; 32],
}

/// The NEGOTIATE response body for `dialect` (`DIALECT_WILDCARD` for an SMB1 opening).
#[must_use]
pub fn negotiate_response(
    dialect: u16,
    req: Option<&NegotiateRequest>,
    info: &ServerInfo<'_>,
) -> Vec<u8> {
    let capabilities: u32 = match dialect {
        0x0202 | DIALECT_WILDCARD => 0x01,
        0x0210 => 0x07,
        // DFS, leasing, large MTU, multichannel, directory leasing, (3.0/3.0.2) encryption.
        0x0300 | 0x0302 => 0x6f,
        _ => 0x2f,
    };
    let mut contexts = Vec::new();
    let mut context_count = 0u16;
    if dialect == 0x0311 {
        let mut push = |kind: u16, data: &[u8]| {
            while !contexts.len().is_multiple_of(8) {
                contexts.push(0);
            }
            contexts.extend_from_slice(&kind.to_le_bytes());
            contexts.extend_from_slice(&u16::try_from(data.len()).unwrap_or(0).to_le_bytes());
            contexts.extend_from_slice(&[0; 4]);
            contexts.extend_from_slice(data);
            context_count = context_count.saturating_add(1);
        };
        let mut preauth = vec![1, 0, 32, 0, 1, 0];
        preauth.extend_from_slice(&info.salt);
        push(1, &preauth);
        if let Some(ciphers) = req.and_then(|r| r.ciphers.as_ref()) {
            // AES-128-GCM, then AES-128-CCM, as Windows Server 2019 prefers.
            let chosen = [2u16, 1]
                .into_iter()
                .find(|c| ciphers.contains(c))
                .unwrap_or(0);
            let mut data = 1u16.to_le_bytes().to_vec();
            data.extend_from_slice(&chosen.to_le_bytes());
            push(2, &data);
        }
    }
    let blob_offset = HEADER + 64;
    let mut b = Vec::with_capacity(64 + info.security_blob.len() + contexts.len() + 8);
    b.extend_from_slice(&65u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // signing enabled, not required
    b.extend_from_slice(&dialect.to_le_bytes());
    b.extend_from_slice(&context_count.to_le_bytes());
    b.extend_from_slice(&info.guid);
    b.extend_from_slice(&capabilities.to_le_bytes());
    for _ in 0..3 {
        b.extend_from_slice(&8_388_608u32.to_le_bytes());
    }
    b.extend_from_slice(&info.time.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&u16::try_from(blob_offset).unwrap_or(0).to_le_bytes());
    b.extend_from_slice(
        &u16::try_from(info.security_blob.len())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    let after_blob = blob_offset + info.security_blob.len();
    let contexts_at = (after_blob + 7) & !7;
    let context_offset = if context_count > 0 { contexts_at } else { 0 };
    b.extend_from_slice(&u32::try_from(context_offset).unwrap_or(0).to_le_bytes());
    b.extend_from_slice(info.security_blob);
    if context_count > 0 {
        b.resize(contexts_at - HEADER, 0);
        b.extend_from_slice(&contexts);
    }
    b
}

/// The security buffer of a SESSION_SETUP request, and its previous session id.
#[must_use]
pub fn session_setup_blob(msg: &[u8]) -> Option<&[u8]> {
    let body = msg.get(HEADER..)?;
    if u16_at(body, 0)? != 25 {
        return None;
    }
    let offset = usize::from(u16_at(body, 12)?);
    let len = usize::from(u16_at(body, 14)?);
    msg.get(offset..offset.checked_add(len)?)
}

/// A SESSION_SETUP response body.
#[must_use]
pub fn session_setup_response(session_flags: u16, blob: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + blob.len());
    b.extend_from_slice(&9u16.to_le_bytes());
    b.extend_from_slice(&session_flags.to_le_bytes());
    b.extend_from_slice(&u16::try_from(HEADER + 8).unwrap_or(0).to_le_bytes());
    b.extend_from_slice(&u16::try_from(blob.len()).unwrap_or(0).to_le_bytes());
    b.extend_from_slice(blob);
    if blob.is_empty() {
        b.push(0);
    }
    b
}

/// The UNC path of a TREE_CONNECT request (`\\server\share`).
#[must_use]
pub fn tree_connect_path(msg: &[u8]) -> Option<String> {
    let body = msg.get(HEADER..)?;
    if u16_at(body, 0)? != 9 {
        return None;
    }
    let offset = usize::from(u16_at(body, 4)?);
    let len = usize::from(u16_at(body, 6)?);
    let raw = msg.get(offset..offset.checked_add(len)?)?;
    Some(crate::services::proto::shared::ntlm::message::text(
        raw, true,
    ))
}

/// The dialect strings of an SMB1 NEGOTIATE (`\xffSMB`, command 0x72), if it is one.
#[must_use]
pub fn smb1_dialects(msg: &[u8]) -> Option<Vec<String>> {
    if msg.get(..4)? != b"\xffSMB" || *msg.get(4)? != 0x72 {
        return None;
    }
    // 32-byte header, word count (0), byte count, then 0x02-prefixed NUL-terminated strings.
    let count = usize::from(u16_at(msg, 33)?);
    let bytes = msg.get(35..35usize.checked_add(count)?.min(msg.len()))?;
    Some(
        bytes
            .split(|&b| b == 0)
            .filter_map(|s| s.strip_prefix(&[2]))
            .take(32)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}
