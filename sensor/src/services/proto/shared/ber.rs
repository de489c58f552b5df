//! A structural check of BER before `yasna` reads it.
//!
//! yasna 0.5 adds a definite length to its position unchecked when it skips an element
//! (`reader::skip_general`): a length near `usize::MAX` overflows, which panics in a debug
//! build and, in a release build, wraps the position backwards and can loop forever on one
//! message (found by the `ntlm_tokens` and `smb_message` fuzz targets). Every BER blob from a
//! client therefore goes through [`check`] first: it walks the element tree with checked
//! arithmetic and refuses any length that does not fit in what encloses it, indefinite
//! lengths on primitive elements, tag numbers over four bytes, lengths over eight bytes and
//! nesting deeper than [`MAX_DEPTH`]. What passes has every length inside the buffer, so
//! yasna's sums cannot overflow. Hand-written: it is the guard for the crate, not a parser.

/// Deepest nesting accepted (SPNEGO and CredSSP nest about six deep).
pub const MAX_DEPTH: usize = 32;

/// Whether the first element of `blob` (and everything inside it) is structurally sound BER.
#[must_use]
pub fn check(blob: &[u8]) -> bool {
    element(blob, 0, 0).is_some()
}

/// Walks the element at `pos`; returns the position after it.
fn element(buf: &[u8], pos: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let first = *buf.get(pos)?;
    let constructed = first & 0x20 != 0;
    let mut at = pos.checked_add(1)?;
    if first & 0x1f == 0x1f {
        // High tag number: base-128 bytes, the last without the top bit.
        let mut n = 0;
        loop {
            let b = *buf.get(at)?;
            at = at.checked_add(1)?;
            n += 1;
            if n > 4 {
                return None;
            }
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    let len_byte = *buf.get(at)?;
    at = at.checked_add(1)?;
    match len_byte {
        0x80 => {
            // Indefinite: constructed only, children until end-of-contents (00 00).
            if !constructed {
                return None;
            }
            loop {
                if buf.get(at..at.checked_add(2)?)? == [0, 0] {
                    return at.checked_add(2);
                }
                at = element(buf, at, depth.checked_add(1)?)?;
            }
        }
        short if short < 0x80 => definite(buf, at, usize::from(short), constructed, depth),
        long => {
            let n = usize::from(long & 0x7f);
            if n > 8 {
                return None;
            }
            let bytes = buf.get(at..at.checked_add(n)?)?;
            let len = bytes.iter().try_fold(0u64, |acc, &b| {
                acc.checked_mul(256)?.checked_add(u64::from(b))
            })?;
            definite(
                buf,
                at.checked_add(n)?,
                usize::try_from(len).ok()?,
                constructed,
                depth,
            )
        }
    }
}

/// Checks the `len` content bytes at `at` (children, when constructed); the position after.
fn definite(buf: &[u8], at: usize, len: usize, constructed: bool, depth: usize) -> Option<usize> {
    let end = at.checked_add(len)?;
    let content = buf.get(..end)?;
    if constructed {
        let mut child = at;
        while child < end {
            child = element(content, child, depth.checked_add(1)?)?;
        }
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sound_ber_passes() {
        // SEQUENCE { INTEGER 5, [0] { OCTET STRING "ab" } }, definite and indefinite.
        assert!(check(&[
            0x30, 0x09, 0x02, 0x01, 0x05, 0xa0, 0x04, 0x04, 0x02, b'a', b'b'
        ]));
        assert!(check(&[
            0x30, 0x80, 0x02, 0x01, 0x05, 0xa0, 0x80, 0x04, 0x02, b'a', b'b', 0, 0, 0, 0
        ]));
        // Long-form length and a high tag number.
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend([0u8; 256]);
        assert!(check(&long));
        assert!(check(&[0x5f, 0x81, 0x01, 0x01, 0x00]));
    }

    #[test]
    fn lengths_that_do_not_fit_are_refused() {
        // A child longer than its parent, a length past the buffer, a huge long-form length.
        assert!(!check(&[0x30, 0x03, 0x04, 0x05, 0x00, 0x00, 0x00]));
        assert!(!check(&[0x04, 0x05, 0x00]));
        assert!(!check(&[
            0x30, 0x80, 0x04, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0
        ]));
        assert!(!check(&[0x04, 0x89, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        // Indefinite length on a primitive, and an unterminated indefinite element.
        assert!(!check(&[0x04, 0x80, 0, 0]));
        assert!(!check(&[0x30, 0x80, 0x02, 0x01, 0x05]));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut deep = Vec::new();
        for _ in 0..=MAX_DEPTH + 1 {
            deep.extend([0x30, 0x80]);
        }
        for _ in 0..=MAX_DEPTH + 1 {
            deep.extend([0, 0]);
        }
        assert!(!check(&deep));
    }

    /// The inputs the fuzz targets found: yasna overflowed on them before this check.
    #[test]
    fn the_fuzzers_crashes_are_refused_and_parse_to_nothing() {
        for blob in [
            &include_bytes!("ber_fixtures/ntlm_tokens-crash-1adeaebc")[..],
            &include_bytes!("ber_fixtures/smb_message-crash-835e6c74")[..],
        ] {
            assert!(!check(blob));
            assert!(super::super::ntlm::spnego::parse_client(blob).is_none());
        }
    }
}
