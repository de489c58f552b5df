//! BER framing and writing for LDAP.
//!
//! Decoding the messages themselves is `rasn-ldap`'s work; this file only does what that crate
//! cannot do for a server facing hostile input:
//!
//! - [`frame_len`]: how long the next message on the stream is, from its tag and length alone, so
//!   the session reads exactly one message and refuses lengths past the limit before buffering
//!   them.
//! - [`nesting_ok`]: a bounded walk over the element tree, so a filter nested thousands deep
//!   (`(!(!(!...)))`) is refused before the recursive decoder would exhaust the stack.
//! - [`Writer`]: responses encoded as Active Directory encodes them. `rasn`'s encoder writes the
//!   shortest lengths (DER); AD writes every constructed element's length in the 4-byte long form
//!   (`30 84 00 00 00 nn`), and `nmap -sV`'s Active Directory signature matches those bytes.

/// Why a message cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first byte is not a SEQUENCE: another protocol, or garbage.
    #[error("not an LDAP message (tag {0:#04x})")]
    NotLdap(u8),
    /// Indefinite length (`0x80`), which LDAP forbids.
    #[error("indefinite length")]
    Indefinite,
    /// A length in more than 4 bytes, or past the limit.
    #[error("message of {0} bytes exceeds the limit")]
    TooLong(u64),
}

/// The element's header length and content length at the start of `buf`: `Ok(None)` while the
/// header is incomplete.
///
/// # Errors
/// [`FrameError::Indefinite`] or [`FrameError::TooLong`] (length in more than 4 bytes).
fn header(buf: &[u8]) -> Result<Option<(usize, u64)>, FrameError> {
    let Some(&first) = buf.get(1) else {
        return Ok(None);
    };
    if first < 0x80 {
        return Ok(Some((2, u64::from(first))));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 {
        return Err(FrameError::Indefinite);
    }
    if count > 4 {
        return Err(FrameError::TooLong(u64::MAX));
    }
    let Some(bytes) = buf.get(2..2 + count) else {
        return Ok(None);
    };
    let len = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    Ok(Some((2 + count, len)))
}

/// The total length (header and content) of the LDAP message at the start of `buf`, once its
/// header is complete (`Ok(None)` before).
///
/// # Errors
/// [`FrameError`] when the bytes cannot start an LDAP message of at most `max` bytes.
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    if tag != 0x30 {
        return Err(FrameError::NotLdap(tag));
    }
    let Some((head, len)) = header(buf)? else {
        return Ok(None);
    };
    let total = u64::try_from(head)
        .ok()
        .and_then(|h| h.checked_add(len))
        .unwrap_or(u64::MAX);
    match usize::try_from(total) {
        Ok(total) if total <= max => Ok(Some(total)),
        _ => Err(FrameError::TooLong(total)),
    }
}

/// Whether the elements in `buf` nest at most `max_depth` deep, every length fits inside its
/// parent and the walk visits at most `max_elements` elements. Iterative, so it cannot itself
/// overflow the stack.
#[must_use]
pub fn nesting_ok(buf: &[u8], max_depth: usize, max_elements: usize) -> bool {
    // Each entry is the end offset of an open constructed element.
    let mut open: Vec<usize> = Vec::new();
    let mut pos = 0usize;
    let mut end = buf.len();
    let mut seen = 0usize;
    loop {
        while pos == end {
            let Some(parent_end) = open.pop() else {
                return true;
            };
            pos = end;
            end = parent_end;
        }
        seen = seen.saturating_add(1);
        if seen > max_elements {
            return false;
        }
        let Some(rest) = buf.get(pos..end) else {
            return false;
        };
        let Some(&tag) = rest.first() else {
            return false;
        };
        if tag & 0x1f == 0x1f {
            // High tag numbers do not occur in LDAP.
            return false;
        }
        let Ok(Some((head, len))) = header(rest) else {
            return false;
        };
        let Some(content_end) = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(head)?.checked_add(l))
            .filter(|&e| e <= end)
        else {
            return false;
        };
        if tag & 0x20 != 0 {
            if open.len() >= max_depth {
                return false;
            }
            open.push(end);
            pos = pos.saturating_add(head);
            end = content_end;
        } else {
            pos = content_end;
        }
    }
}

/// Encodes BER as Active Directory does: constructed elements with 4-byte lengths, primitive
/// ones with the shortest length.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    #[must_use]
    pub const fn new() -> Self {
        Self { out: Vec::new() }
    }

    /// The encoded bytes.
    #[must_use]
    pub fn finish(self) -> Vec<u8> {
        self.out
    }

    /// A constructed element of `tag` whose content `body` writes.
    pub fn constructed(&mut self, tag: u8, body: impl FnOnce(&mut Self)) {
        self.out.push(tag);
        self.out.push(0x84);
        let at = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        let start = self.out.len();
        body(self);
        let len = u32::try_from(self.out.len().saturating_sub(start)).unwrap_or(u32::MAX);
        if let Some(slot) = self.out.get_mut(at..at + 4) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
    }

    /// A primitive element of `tag` holding `bytes`.
    pub fn primitive(&mut self, tag: u8, bytes: &[u8]) {
        self.out.push(tag);
        let len = bytes.len();
        if len < 0x80 {
            self.out.push(u8::try_from(len).unwrap_or(0x7f));
        } else {
            let be = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
            let skip = be.iter().take_while(|&&b| b == 0).count();
            let used = be.get(skip..).unwrap_or(&be);
            self.out.push(0x80 | u8::try_from(used.len()).unwrap_or(4));
            self.out.extend_from_slice(used);
        }
        self.out.extend_from_slice(bytes);
    }

    /// An OCTET STRING.
    pub fn octets(&mut self, bytes: &[u8]) {
        self.primitive(0x04, bytes);
    }

    /// An INTEGER (tag `0x02`) or ENUMERATED (`0x0a`) of `value`, shortest two's complement.
    pub fn integer(&mut self, tag: u8, value: i64) {
        let be = value.to_be_bytes();
        let mut skip = 0;
        while skip < 7 {
            let (Some(&b), Some(&next)) = (be.get(skip), be.get(skip + 1)) else {
                break;
            };
            let redundant = (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
            if !redundant {
                break;
            }
            skip += 1;
        }
        self.primitive(tag, be.get(skip..).unwrap_or(&be));
    }
}

#[cfg(test)]
mod tests {
    use super::{FrameError, Writer, frame_len, nesting_ok};

    #[test]
    fn frames_short_and_long_lengths_and_refuses_the_rest() {
        assert_eq!(frame_len(&[], 100), Ok(None));
        assert_eq!(frame_len(&[0x30], 100), Ok(None));
        assert_eq!(frame_len(&[0x30, 0x05], 100), Ok(Some(7)));
        assert_eq!(frame_len(&[0x30, 0x84, 0, 0], 100), Ok(None));
        assert_eq!(frame_len(&[0x30, 0x84, 0, 0, 0, 0x10], 100), Ok(Some(22)));
        assert_eq!(frame_len(&[0x30, 0x82, 0x01, 0x00], 1000), Ok(Some(260)));
        assert_eq!(
            frame_len(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], 1 << 20),
            Err(FrameError::TooLong(0xffff_ffff + 6))
        );
        assert_eq!(
            frame_len(&[0x30, 0x88, 0, 0, 0, 0, 0, 0, 0, 1], 100),
            Err(FrameError::TooLong(u64::MAX))
        );
        assert_eq!(frame_len(&[0x30, 0x80], 100), Err(FrameError::Indefinite));
        assert_eq!(frame_len(b"GET /", 100), Err(FrameError::NotLdap(b'G')));
    }

    #[test]
    fn nesting_is_bounded_and_lengths_must_fit() {
        // 30 06 | 02 01 01 | 04 01 41
        assert!(nesting_ok(&[0x30, 6, 2, 1, 1, 4, 1, 0x41], 4, 100));
        // The inner length runs past its parent.
        assert!(!nesting_ok(&[0x30, 3, 4, 5, 0x41], 4, 100));
        // 200 nested NOT filters.
        let mut deep = vec![0x87, 0x01, b'a'];
        for _ in 0..200 {
            let mut outer = vec![0xa2];
            let len = deep.len();
            outer.extend_from_slice(&[0x82, u8::try_from(len >> 8).unwrap(), len as u8]);
            outer.extend_from_slice(&deep);
            deep = outer;
        }
        assert!(!nesting_ok(&deep, 32, 10_000));
        assert!(nesting_ok(&deep, 256, 10_000));
        assert!(!nesting_ok(&deep, 256, 100), "element budget");
        assert!(!nesting_ok(&[0x30], 4, 100));
        assert!(!nesting_ok(&[0x1f, 0x01, 0x00], 4, 100));
    }

    #[test]
    fn writes_ad_style_lengths() {
        let mut w = Writer::new();
        w.constructed(0x30, |w| {
            w.integer(0x02, 1);
            w.integer(0x0a, 49);
            w.integer(0x02, 128);
            w.integer(0x02, -1);
            w.octets(&[0x41; 130]);
        });
        let out = w.finish();
        assert_eq!(&out[..6], &[0x30, 0x84, 0, 0, 0, 3 + 3 + 4 + 3 + 133]);
        assert_eq!(
            &out[6..19],
            &[2, 1, 1, 0x0a, 1, 49, 2, 2, 0, 128, 2, 1, 0xff]
        );
        assert_eq!(&out[19..22], &[4, 0x81, 130]);
        assert_eq!(out.len(), 6 + 146);
    }
}
