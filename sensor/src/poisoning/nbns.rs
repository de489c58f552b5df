//! NetBIOS name service (RFC 1001/1002) name queries and their answers, by hand: no maintained
//! crate encodes NBT-NS, and the two messages needed here (a broadcast name query and its
//! positive answer) are a 12-byte header, the "first-level encoded" name (each byte of the
//! space-padded, upper-case name split into two nibbles written as `'A' + nibble`, 32 bytes in
//! one label) and one NB resource record.

/// The record type of NetBIOS general name service resource records.
const NB: u16 = 0x0020;
/// Class IN.
const IN: u16 = 0x0001;
/// The suffix asked for: the file server service (`<20>`), what Windows asks when a user
/// types `\\NAME`.
const FILE_SERVER: u8 = 0x20;
/// Addresses read from one answer at most.
const MAX_ADDRESSES: usize = 16;

/// A broadcast name query for `name` (at most 15 characters are used).
#[must_use]
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(50);
    out.extend_from_slice(&id.to_be_bytes());
    // Opcode query, recursion desired, broadcast.
    out.extend_from_slice(&0x0110u16.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.push(32);
    out.extend_from_slice(&encode_name(name));
    out.push(0);
    out.extend_from_slice(&NB.to_be_bytes());
    out.extend_from_slice(&IN.to_be_bytes());
    out
}

/// The 32 bytes of a first-level encoded name with the file server suffix.
fn encode_name(name: &str) -> [u8; 32] {
    let mut raw = [b' '; 16];
    for (slot, b) in raw.iter_mut().zip(name.bytes().take(15)) {
        *slot = b.to_ascii_uppercase();
    }
    raw[15] = FILE_SERVER;
    let mut out = [0u8; 32];
    for (pair, b) in out.chunks_exact_mut(2).zip(raw) {
        pair[0] = b'A' + (b >> 4);
        pair[1] = b'A' + (b & 0x0f);
    }
    out
}

/// Decodes 32 first-level encoded bytes: the name (trailing spaces removed) and its suffix.
pub(super) fn decode_name(encoded: &[u8]) -> Option<(String, u8)> {
    if encoded.len() != 32 {
        return None;
    }
    let mut raw = Vec::with_capacity(16);
    for pair in encoded.chunks_exact(2) {
        let hi = pair.first()?.checked_sub(b'A')?;
        let lo = pair.get(1)?.checked_sub(b'A')?;
        if hi > 15 || lo > 15 {
            return None;
        }
        raw.push(hi << 4 | lo);
    }
    let suffix = raw.pop()?;
    let name = String::from_utf8_lossy(&raw).trim_end().to_owned();
    Some((name, suffix))
}

/// A positive answer to our query: the name it answers and the addresses it gives.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The name answered (decoded, upper case).
    pub name: String,
    /// The addresses in the NB record.
    pub addresses: Vec<std::net::Ipv4Addr>,
}

/// Reads a positive name query response to query `id`; `None` for anything else (requests,
/// other ids, negative answers, malformed packets).
#[must_use]
pub fn parse_answer(packet: &[u8], id: u16) -> Option<Answer> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([
            *packet.get(at)?,
            *packet.get(at.checked_add(1)?)?,
        ]))
    };
    if be16(0)? != id {
        return None;
    }
    let flags = be16(2)?;
    // A response (R bit), opcode query, RCODE 0, at least one answer.
    if flags & 0x8000 == 0 || flags & 0x7800 != 0 || flags & 0x000f != 0 || be16(6)? == 0 {
        return None;
    }
    // The answer's name: a pointer to the question's, or the encoded name itself.
    let mut at = 12usize;
    let name = match *packet.get(at)? {
        32 => {
            let encoded = packet.get(at.checked_add(1)?..at.checked_add(33)?)?;
            at = at.checked_add(34)?;
            decode_name(encoded)?.0
        }
        _ => return None,
    };
    if be16(at)? != NB || be16(at.checked_add(2)?)? != IN {
        return None;
    }
    let rdlength = usize::from(be16(at.checked_add(8)?)?);
    let start = at.checked_add(10)?;
    let rdata = packet.get(start..start.checked_add(rdlength)?)?;
    let addresses = rdata
        .chunks_exact(6)
        .take(MAX_ADDRESSES)
        .filter_map(|entry| {
            let ip: [u8; 4] = entry.get(2..6)?.try_into().ok()?;
            Some(std::net::Ipv4Addr::from(ip))
        })
        .collect::<Vec<_>>();
    if addresses.is_empty() {
        return None;
    }
    Some(Answer { name, addresses })
}

#[cfg(test)]
mod tests {
    use super::{Answer, decode_name, encode_name, parse_answer, query};

    /// Builds a positive answer the way Responder's NBT-NS poisoner does.
    fn answer(id: u16, name: &str, ip: [u8; 4]) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        out.extend_from_slice(&[0x85, 0x00, 0, 0, 0, 1, 0, 0, 0, 0, 0x20]);
        out.extend_from_slice(&encode_name(name));
        out.extend_from_slice(&[0, 0, 0x20, 0, 1, 0, 0, 0, 0xa5, 0, 6, 0, 0]);
        out.extend_from_slice(&ip);
        out
    }

    #[test]
    fn names_are_first_level_encoded_as_rfc_1001_says() {
        // RFC 1001 14.1's example: "FRED" padded with spaces, here with the <20> suffix.
        let enc = encode_name("fred");
        assert_eq!(&enc[..8], b"EGFCEFEE");
        assert_eq!(&enc[8..30], b"CACACACACACACACACACACA");
        assert_eq!(&enc[30..], b"CA");
        assert_eq!(decode_name(&enc), Some(("FRED".to_owned(), 0x20)));
        assert_eq!(decode_name(b"short"), None);
        assert_eq!(decode_name(&[b'Z'; 32]), None);
    }

    #[test]
    fn the_query_is_a_broadcast_nb_question() {
        let q = query(0x1234, "filesrv02");
        assert_eq!(q.len(), 50);
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x10]);
        assert_eq!(&q[4..6], &[0, 1]);
        assert_eq!(q[12], 32);
        assert_eq!(&q[46..], &[0, 0x20, 0, 1]);
    }

    #[test]
    fn positive_answers_are_read_and_everything_else_refused() {
        let good = answer(7, "FILESRV02", [198, 18, 0, 2]);
        assert_eq!(
            parse_answer(&good, 7),
            Some(Answer {
                name: "FILESRV02".to_owned(),
                addresses: vec![[198, 18, 0, 2].into()]
            })
        );
        assert_eq!(parse_answer(&good, 8), None, "another id");
        assert_eq!(parse_answer(&query(7, "FILESRV02"), 7), None, "a request");
        let mut negative = good.clone();
        negative[3] = 0x03;
        assert_eq!(parse_answer(&negative, 7), None, "NXDOMAIN-like rcode");
        for cut in 0..good.len() {
            assert_eq!(parse_answer(&good[..cut], 7), None, "cut at {cut}");
        }
        let mut long_rd = good.clone();
        let n = long_rd.len();
        long_rd[n - 8] = 0xff;
        assert_eq!(parse_answer(&long_rd, 7), None, "rdlength past the end");
    }
}
