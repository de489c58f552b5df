//! CredSSP's TSRequest (MS-CSSP 2.2.1), DER through `yasna` like SPNEGO: the NTLM tokens in
//! `negoTokens`, and the server's `errorCode` that ends a failed logon.

use yasna::{ASN1Result, BERReaderSeq, Tag};

/// Largest TSRequest accepted (an AUTHENTICATE with its pubKeyAuth is about 1 KiB).
pub const MAX_TSREQUEST: usize = 16 * 1024;

/// What a client's TSRequest carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TsRequest {
    /// CredSSP version.
    pub version: i64,
    /// The first `negoToken` (an NTLM message, bare or SPNEGO).
    pub token: Option<Vec<u8>>,
    /// Whether `pubKeyAuth` was sent (with the AUTHENTICATE).
    pub pub_key_auth: bool,
}

/// The total length of the DER value whose first bytes are `head` (tag, length), once enough
/// of it is known: `Ok(Some(n))`, `Ok(None)` for "need more bytes", `Err(())` when it is not a
/// SEQUENCE or exceeds [`MAX_TSREQUEST`].
#[expect(clippy::result_unit_err, reason = "the caller only needs yes or no")]
pub fn der_length(head: &[u8]) -> Result<Option<usize>, ()> {
    let (Some(&tag), Some(&first)) = (head.first(), head.get(1)) else {
        return Ok(None);
    };
    if tag != 0x30 {
        return Err(());
    }
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 2 {
            return Err(());
        }
        let Some(bytes) = head.get(2..2 + n) else {
            return Ok(None);
        };
        (
            bytes
                .iter()
                .fold(0usize, |acc, &b| acc << 8 | usize::from(b)),
            2 + n,
        )
    };
    let total = len.checked_add(header).ok_or(())?;
    if total > MAX_TSREQUEST {
        return Err(());
    }
    Ok(Some(total))
}

/// Parses a client's TSRequest.
#[must_use]
pub fn parse(der: &[u8]) -> Option<TsRequest> {
    if !crate::services::proto::shared::ber::check(der) {
        return None;
    }
    yasna::parse_ber(der, |r| r.read_sequence(fields)).ok()
}

fn fields(seq: &mut BERReaderSeq<'_, '_>) -> ASN1Result<TsRequest> {
    let version = seq.next().read_tagged(Tag::context(0), |r| r.read_i64())?;
    let mut token = None;
    seq.read_optional(|r| {
        r.read_tagged(Tag::context(1), |r| {
            r.read_sequence_of(|r| {
                let t =
                    r.read_sequence(|s| s.next().read_tagged(Tag::context(0), |r| r.read_bytes()))?;
                if token.is_none() {
                    token = Some(t);
                }
                Ok(())
            })
        })
    })?;
    seq.read_optional(|r| r.read_tagged(Tag::context(2), |r| r.read_bytes()))?;
    let pub_key_auth = seq
        .read_optional(|r| r.read_tagged(Tag::context(3), |r| r.read_bytes()))?
        .is_some();
    seq.read_optional(|r| r.read_tagged(Tag::context(4), |r| r.read_i64()))?;
    seq.read_optional(|r| r.read_tagged(Tag::context(5), |r| r.read_bytes()))?;
    Ok(TsRequest {
        version,
        token,
        pub_key_auth,
    })
}

/// The server's TSRequest carrying `token`.
#[must_use]
pub fn with_token(version: i64, token: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next()
                .write_tagged(Tag::context(0), |w| w.write_i64(version));
            w.next().write_tagged(Tag::context(1), |w| {
                w.write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next()
                            .write_tagged(Tag::context(0), |w| w.write_bytes(token));
                    });
                });
            });
        });
    })
}

/// The server's TSRequest ending the exchange with NTSTATUS `status` (version 3 and later).
#[must_use]
pub fn with_error(version: i64, status: u32) -> Vec<u8> {
    // NTSTATUS as a 32-bit two's complement INTEGER, as Windows encodes it.
    let code = i64::from(i32::from_ne_bytes(status.to_ne_bytes()));
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next()
                .write_tagged(Tag::context(0), |w| w.write_i64(version));
            w.next()
                .write_tagged(Tag::context(4), |w| w.write_i64(code));
        });
    })
}
