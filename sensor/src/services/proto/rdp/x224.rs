//! TPKT (RFC 1006) and the X.224 connection request/confirm of RDP (MS-RDPBCGR 2.2.1.1-2):
//! the routing cookie, the requested security protocols and the server's choice.
//!
//! Hand-written: a handful of fixed bytes with a length; no maintained crate parses the
//! server side without a whole RDP stack.

/// A TPKT header announces at most this many bytes in a Connection Request worth reading.
pub const MAX_TPKT: usize = 4096;

/// Security protocols (`requestedProtocols` / `selectedProtocol`).
pub mod protocol {
    /// Standard RDP security.
    pub const RDP: u32 = 0;
    /// TLS.
    pub const SSL: u32 = 1;
    /// CredSSP (NLA).
    pub const HYBRID: u32 = 2;
    /// CredSSP with the early user authorization result.
    pub const HYBRID_EX: u32 = 8;
}

/// The length a TPKT header announces (version 3), when it is within `7..=MAX_TPKT`.
#[must_use]
pub fn tpkt_length(header: [u8; 4]) -> Option<usize> {
    let [version, _, hi, lo] = header;
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    (version == 3 && (7..=MAX_TPKT).contains(&len)).then_some(len)
}

/// What a Connection Request says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionRequest {
    /// `Cookie: mstshash=<user>` value, if sent.
    pub cookie: Option<String>,
    /// A routing token (load balancer) if sent instead.
    pub routing_token: Option<String>,
    /// `requestedProtocols` of an RDP_NEG_REQ, if one came.
    pub requested: Option<u32>,
}

/// Parses a TPKT-framed X.224 Connection Request (the whole TPKT packet).
#[must_use]
pub fn parse_request(packet: &[u8]) -> Option<ConnectionRequest> {
    let tpdu = packet.get(4..)?;
    let li = usize::from(*tpdu.first()?);
    // Code 0xE0 (CR), dst-ref, src-ref, class.
    if tpdu.get(1)? & 0xf0 != 0xe0 || li < 6 {
        return None;
    }
    let mut rest = tpdu.get(7..=li)?;
    let mut out = ConnectionRequest::default();
    if let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(rest.get(..end)?).into_owned();
        if let Some(user) = line.strip_prefix("Cookie: mstshash=") {
            out.cookie = Some(user.to_owned());
        } else {
            out.routing_token = Some(line);
        }
        rest = rest.get(end.checked_add(2)?..)?;
    }
    if rest.len() >= 8 && rest.first() == Some(&1) {
        out.requested = Some(u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?));
    }
    Some(out)
}

/// The protocol a Windows Server with NLA picks from `requested`: CredSSP when offered, TLS
/// otherwise; `None` for a client offering standard RDP security only (refused).
#[must_use]
pub const fn select(requested: u32) -> Option<u32> {
    if requested & (protocol::HYBRID | protocol::HYBRID_EX) != 0 {
        Some(protocol::HYBRID)
    } else if requested & protocol::SSL != 0 {
        Some(protocol::SSL)
    } else {
        None
    }
}

/// The Connection Confirm: with an RDP_NEG_RSP selecting `selected`, an RDP_NEG_FAILURE
/// (`HYBRID_REQUIRED_BY_SERVER`) for a client that offered neither TLS nor CredSSP, or bare
/// for a client that sent no negotiation request (as old servers answer).
#[must_use]
pub fn confirm(req: &ConnectionRequest) -> Vec<u8> {
    let mut tpdu = vec![0, 0xd0, 0, 0, 0x12, 0x34, 0];
    match req.requested.map(select) {
        Some(Some(selected)) => {
            // EXTENDED_CLIENT_DATA | DYNVC_GFX | (reserved) | RESTRICTED_ADMIN | REDIRECTED_AUTH.
            tpdu.extend_from_slice(&[2, 0x1f, 8, 0]);
            tpdu.extend_from_slice(&selected.to_le_bytes());
        }
        Some(None) => {
            tpdu.extend_from_slice(&[3, 0, 8, 0]);
            tpdu.extend_from_slice(&5u32.to_le_bytes());
        }
        None => {}
    }
    tpdu[0] = u8::try_from(tpdu.len() - 1).unwrap_or(6);
    let mut out = vec![3, 0];
    out.extend_from_slice(&u16::try_from(tpdu.len() + 4).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&tpdu);
    out
}
