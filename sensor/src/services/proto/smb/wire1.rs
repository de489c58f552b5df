//! SMB1 wire formats (MS-CIFS 2.2.3, MS-SMB 2.2.4): the header, the parameter words and data
//! bytes of a message, and the NT LM 0.12 NEGOTIATE, SESSION_SETUP_ANDX and TREE_CONNECT_ANDX
//! a Windows Server with SMB1 enabled answers before anyone is let in.
//!
//! Hand-written for the reason `wire` is: fixed little-endian structures, every field read with
//! bounds checks.

/// SMB1 header length.
pub const HEADER: usize = 32;
/// The dialect a Windows server picks among SMB1's.
pub const NT_LM_012: &str = "NT LM 0.12";

/// SMB1 commands.
pub mod command {
    /// TREE_DISCONNECT.
    pub const TREE_DISCONNECT: u8 = 0x71;
    /// NEGOTIATE.
    pub const NEGOTIATE: u8 = 0x72;
    /// SESSION_SETUP_ANDX.
    pub const SESSION_SETUP_ANDX: u8 = 0x73;
    /// LOGOFF_ANDX.
    pub const LOGOFF_ANDX: u8 = 0x74;
    /// TREE_CONNECT_ANDX.
    pub const TREE_CONNECT_ANDX: u8 = 0x75;
}

/// Flags2 bits.
pub mod flags2 {
    /// The client knows long names.
    pub const LONG_NAMES: u16 = 0x0001;
    /// Extended attributes.
    pub const EAS: u16 = 0x0002;
    /// Message signing.
    pub const SIGNATURE: u16 = 0x0004;
    /// Path names are long names.
    pub const IS_LONG_NAME: u16 = 0x0040;
    /// Extended security (SPNEGO in SESSION_SETUP).
    pub const EXTENDED_SECURITY: u16 = 0x0800;
    /// 32-bit NT status codes.
    pub const NT_STATUS: u16 = 0x4000;
    /// Strings are UTF-16LE.
    pub const UNICODE: u16 = 0x8000;
}

/// Capabilities Windows Server 2008 R2 to 2016 announce (Unicode, large files, NT SMBs, RPC,
/// NT status, level II oplocks, lock-and-read, NT find, DFS, pass-through levels, large
/// read/write, LWIO), without extended security.
pub const CAPABILITIES: u32 = 0x0001_f3fc;
/// CAP_EXTENDED_SECURITY.
pub const CAP_EXTENDED_SECURITY: u32 = 0x8000_0000;
/// Security mode: user-level security, encrypted passwords; signing not enabled, as a member
/// server's SMB1 default is.
pub const SECURITY_MODE: u8 = 0x03;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The fields of a request header the server echoes or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Command.
    pub command: u8,
    /// Flags2.
    pub flags2: u16,
    /// High half of the process id.
    pub pid_high: u16,
    /// Tree id.
    pub tid: u16,
    /// Process id.
    pub pid: u16,
    /// User id.
    pub uid: u16,
    /// Multiplex id.
    pub mid: u16,
}

impl Header {
    /// Whether the request's strings are UTF-16LE.
    #[must_use]
    pub const fn unicode(&self) -> bool {
        self.flags2 & flags2::UNICODE != 0
    }
}

/// A request: its header, parameter words and data bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Header.
    pub header: Header,
    /// Parameter words (2 × WordCount bytes).
    pub words: &'a [u8],
    /// Data bytes (ByteCount bytes).
    pub bytes: &'a [u8],
    /// Offset of `bytes` in the message (string alignment counts from the header's start).
    pub bytes_at: usize,
}

/// Parses an SMB1 message; `None` unless it starts with `\xffSMB` and its word and byte counts
/// fit in it.
#[must_use]
pub fn parse(msg: &[u8]) -> Option<Request<'_>> {
    if msg.get(..4)? != b"\xffSMB" {
        return None;
    }
    let header = Header {
        command: *msg.get(4)?,
        flags2: u16_at(msg, 10)?,
        pid_high: u16_at(msg, 12)?,
        tid: u16_at(msg, 24)?,
        pid: u16_at(msg, 26)?,
        uid: u16_at(msg, 28)?,
        mid: u16_at(msg, 30)?,
    };
    let words_len = usize::from(*msg.get(HEADER)?).checked_mul(2)?;
    let words_at = HEADER.checked_add(1)?;
    let words = msg.get(words_at..words_at.checked_add(words_len)?)?;
    let count_at = words_at.checked_add(words_len)?;
    let count = usize::from(u16_at(msg, count_at)?);
    let bytes_at = count_at.checked_add(2)?;
    let bytes = msg.get(bytes_at..bytes_at.checked_add(count)?)?;
    Some(Request {
        header,
        words,
        bytes,
        bytes_at,
    })
}

/// A response to `req`: `status`, the server's `flags2`, the session's `uid`, then `words` and
/// `bytes` with their counts.
#[must_use]
pub fn response(
    req: &Header,
    status: u32,
    flags2: u16,
    uid: u16,
    words: &[u8],
    bytes: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 3 + words.len() + bytes.len());
    out.extend_from_slice(b"\xffSMB");
    out.push(req.command);
    out.extend_from_slice(&status.to_le_bytes());
    // SMB_FLAGS_REPLY | SMB_FLAGS_CASE_INSENSITIVE, as Windows answers.
    out.push(0x88);
    out.extend_from_slice(&flags2.to_le_bytes());
    out.extend_from_slice(&req.pid_high.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // security signature
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&req.tid.to_le_bytes());
    out.extend_from_slice(&req.pid.to_le_bytes());
    out.extend_from_slice(&uid.to_le_bytes());
    out.extend_from_slice(&req.mid.to_le_bytes());
    out.push(u8::try_from(words.len() / 2).unwrap_or(0));
    out.extend_from_slice(words);
    out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The flags2 Windows answers a client's with: its long-name, EA, Unicode and extended
/// security bits echoed, NT status codes always.
#[must_use]
pub const fn answer_flags2(client: u16) -> u16 {
    use flags2::{EAS, EXTENDED_SECURITY, IS_LONG_NAME, LONG_NAMES, NT_STATUS, UNICODE};
    (client & (LONG_NAMES | EAS | IS_LONG_NAME | EXTENDED_SECURITY | UNICODE)) | NT_STATUS
}

/// Appends `s` NUL-terminated: UTF-16LE (aligned to 2 from the header's start, `base` being
/// where `out` begins in the message) or OEM bytes.
pub fn push_string(out: &mut Vec<u8>, base: usize, s: &str, unicode: bool) {
    if unicode {
        if base.saturating_add(out.len()) % 2 == 1 {
            out.push(0);
        }
        out.extend(s.encode_utf16().chain([0]).flat_map(u16::to_le_bytes));
    } else {
        out.extend(s.bytes().filter(u8::is_ascii).chain([0]));
    }
}

/// Most characters read from one string field.
const MAX_CHARS: usize = 256;

/// Reads NUL-terminated strings from `msg` at `at` (UTF-16LE ones aligned to 2); returns them
/// and the position after them. A string running off the end reads as what is there.
#[must_use]
pub fn read_strings(msg: &[u8], mut at: usize, unicode: bool, count: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if unicode {
            at = at.saturating_add(at % 2);
            let mut units = Vec::new();
            while let Some(u) = u16_at(msg, at) {
                at = at.saturating_add(2);
                if u == 0 {
                    break;
                }
                if units.len() < MAX_CHARS {
                    units.push(u);
                }
            }
            out.push(String::from_utf16_lossy(&units));
        } else {
            let mut s = String::new();
            while let Some(&b) = msg.get(at) {
                at = at.saturating_add(1);
                if b == 0 {
                    break;
                }
                if s.len() < MAX_CHARS {
                    s.push(char::from(b));
                }
            }
            out.push(s);
        }
    }
    out
}

/// What the server says about itself in an NT LM 0.12 NEGOTIATE response.
#[derive(Debug, Clone, Copy)]
pub struct Negotiation<'a> {
    /// Index of `NT LM 0.12` in the client's list.
    pub index: u16,
    /// Extended security (GUID and SPNEGO blob) rather than a challenge and names.
    pub extended: bool,
    /// System time (FILETIME).
    pub time: u64,
    /// Server GUID (extended security).
    pub guid: [u8; 16],
    /// SPNEGO NegTokenInit (extended security).
    pub blob: &'a [u8],
    /// The 8-byte challenge (without extended security).
    pub challenge: [u8; 8],
    /// NetBIOS domain name (without extended security).
    pub domain: &'a str,
    /// NetBIOS computer name (without extended security).
    pub server: &'a str,
}

/// The parameter words and data bytes of an NT LM 0.12 NEGOTIATE response.
#[must_use]
pub fn negotiate_response(n: &Negotiation<'_>) -> (Vec<u8>, Vec<u8>) {
    let mut w = Vec::with_capacity(34);
    w.extend_from_slice(&n.index.to_le_bytes());
    w.push(SECURITY_MODE);
    w.extend_from_slice(&50u16.to_le_bytes()); // MaxMpxCount
    w.extend_from_slice(&1u16.to_le_bytes()); // MaxNumberVcs
    w.extend_from_slice(&16_644u32.to_le_bytes()); // MaxBufferSize
    w.extend_from_slice(&65_536u32.to_le_bytes()); // MaxRawSize
    w.extend_from_slice(&0u32.to_le_bytes()); // SessionKey
    let caps = if n.extended {
        CAPABILITIES | CAP_EXTENDED_SECURITY
    } else {
        CAPABILITIES
    };
    w.extend_from_slice(&caps.to_le_bytes());
    w.extend_from_slice(&n.time.to_le_bytes());
    w.extend_from_slice(&0u16.to_le_bytes()); // ServerTimeZone (UTC)
    let mut b = Vec::new();
    if n.extended {
        w.push(0);
        b.extend_from_slice(&n.guid);
        b.extend_from_slice(n.blob);
    } else {
        w.push(8);
        b.extend_from_slice(&n.challenge);
        // Windows writes both names in UTF-16LE whatever the client's flags say.
        for name in [n.domain, n.server] {
            b.extend(name.encode_utf16().chain([0]).flat_map(u16::to_le_bytes));
        }
    }
    (w, b)
}

/// The answer to a NEGOTIATE offering no dialect the server speaks: DialectIndex 0xFFFF.
pub const NO_DIALECT: [u8; 2] = [0xff, 0xff];

/// A SESSION_SETUP_ANDX request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setup<'a> {
    /// Extended security: a SPNEGO (or bare NTLMSSP) token.
    Extended {
        /// The security blob.
        blob: &'a [u8],
        /// The client's NativeOS.
        native_os: String,
    },
    /// NT LM 0.12 without extended security: LM and NT responses to the NEGOTIATE's challenge.
    Basic {
        /// OEM (LM) password response.
        lm: &'a [u8],
        /// Unicode (NT) password response.
        nt: &'a [u8],
        /// Account name.
        account: String,
        /// Primary domain.
        domain: String,
        /// The client's NativeOS.
        native_os: String,
    },
}

/// Reads a SESSION_SETUP_ANDX request (`msg` whole, `req` parsed from it).
#[must_use]
pub fn session_setup<'a>(msg: &'a [u8], req: &Request<'a>) -> Option<Setup<'a>> {
    let unicode = req.header.unicode();
    match req.words.len() {
        24 => {
            let len = usize::from(u16_at(req.words, 14)?);
            let blob = req.bytes.get(..len)?;
            let strings = read_strings(msg, req.bytes_at.checked_add(len)?, unicode, 1);
            Some(Setup::Extended {
                blob,
                native_os: strings.into_iter().next().unwrap_or_default(),
            })
        }
        26 => {
            let oem = usize::from(u16_at(req.words, 14)?);
            let uni = usize::from(u16_at(req.words, 16)?);
            let lm = req.bytes.get(..oem)?;
            let nt = req.bytes.get(oem..oem.checked_add(uni)?)?;
            let at = req.bytes_at.checked_add(oem)?.checked_add(uni)?;
            let mut s = read_strings(msg, at, unicode, 3).into_iter();
            Some(Setup::Basic {
                lm,
                nt,
                account: s.next().unwrap_or_default(),
                domain: s.next().unwrap_or_default(),
                native_os: s.next().unwrap_or_default(),
            })
        }
        _ => None,
    }
}

/// Where the data bytes of a response with `words` parameter bytes start in the message.
#[must_use]
pub const fn bytes_offset(words: usize) -> usize {
    HEADER + 1 + words + 2
}

/// The SESSION_SETUP_ANDX response of an extended-security exchange: `action`, the server's
/// `blob`, then its NativeOS and NativeLanMan.
#[must_use]
pub fn setup_response_extended(
    action: u16,
    blob: &[u8],
    os: &str,
    lanman: &str,
    unicode: bool,
) -> (Vec<u8>, Vec<u8>) {
    let mut b = blob.to_vec();
    let base = bytes_offset(8);
    push_string(&mut b, base, os, unicode);
    push_string(&mut b, base, lanman, unicode);
    let mut w = vec![0xff, 0];
    let end = u16::try_from(base.saturating_add(b.len())).unwrap_or(0);
    w.extend_from_slice(&end.to_le_bytes());
    w.extend_from_slice(&action.to_le_bytes());
    w.extend_from_slice(&u16::try_from(blob.len()).unwrap_or(0).to_le_bytes());
    (w, b)
}

/// The SESSION_SETUP_ANDX response without extended security: `action`, then NativeOS,
/// NativeLanMan and the primary domain.
#[must_use]
pub fn setup_response_basic(
    action: u16,
    os: &str,
    lanman: &str,
    domain: &str,
    unicode: bool,
) -> (Vec<u8>, Vec<u8>) {
    let mut b = Vec::new();
    let base = bytes_offset(6);
    for s in [os, lanman, domain] {
        push_string(&mut b, base, s, unicode);
    }
    let mut w = vec![0xff, 0];
    let end = u16::try_from(base.saturating_add(b.len())).unwrap_or(0);
    w.extend_from_slice(&end.to_le_bytes());
    w.extend_from_slice(&action.to_le_bytes());
    (w, b)
}

/// The share path of a TREE_CONNECT_ANDX request (`\\server\share`).
#[must_use]
pub fn tree_connect_path(msg: &[u8], req: &Request<'_>) -> Option<String> {
    if req.words.len() != 8 {
        return None;
    }
    let password = usize::from(u16_at(req.words, 6)?);
    let at = req.bytes_at.checked_add(password)?;
    read_strings(msg, at, req.header.unicode(), 1)
        .into_iter()
        .next()
}
