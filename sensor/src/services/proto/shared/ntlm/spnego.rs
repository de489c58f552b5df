//! SPNEGO (RFC 4178) as Windows wraps NTLM in it: the server's NegTokenInit that advertises
//! NTLMSSP (the SMB2 NEGOTIATE security buffer), the client's NegTokenInit carrying the
//! NEGOTIATE message, and NegTokenResp both ways. DER through `yasna` (already in the build for
//! certificate generation); clients' tokens are read as BER, which DER is a subset of.

use yasna::{ASN1Result, BERReader, BERReaderSeq, DERWriterSeq, Tag, models::ObjectIdentifier};

/// SPNEGO's mechanism OID, 1.3.6.1.5.5.2.
pub const SPNEGO_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 2];
/// NTLMSSP's mechanism OID, 1.3.6.1.4.1.311.2.2.10.
pub const NTLMSSP_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 2, 2, 10];
/// Microsoft's Kerberos OID, 1.2.840.48018.1.2.2.
pub const MS_KRB5_OID: &[u64] = &[1, 2, 840, 48018, 1, 2, 2];
/// Kerberos 5, 1.2.840.113554.1.2.2.
pub const KRB5_OID: &[u64] = &[1, 2, 840, 113_554, 1, 2, 2];

/// `negState` of a NegTokenResp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegState {
    /// accept-completed (0).
    AcceptCompleted,
    /// accept-incomplete (1).
    AcceptIncomplete,
    /// reject (2).
    Reject,
    /// request-mic (3).
    RequestMic,
}

impl NegState {
    const fn code(self) -> i64 {
        match self {
            Self::AcceptCompleted => 0,
            Self::AcceptIncomplete => 1,
            Self::Reject => 2,
            Self::RequestMic => 3,
        }
    }
}

/// A token a client sent, unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientToken {
    /// Mechanisms offered, dotted (a NegTokenInit's `mechTypes`; empty for a NegTokenResp).
    pub mechs: Vec<String>,
    /// The inner mechanism token (`mechToken` or `responseToken`), if any.
    pub token: Option<Vec<u8>>,
    /// `negState` of a NegTokenResp, if sent.
    pub state: Option<i64>,
}

fn dotted(oid: &ObjectIdentifier) -> String {
    oid.components()
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The server's NegTokenInit advertising `mechs` (GSS-API InitialContextToken framing), as
/// SMB2 puts in its NEGOTIATE response and LDAP never needs.
#[must_use]
pub fn server_init(mechs: &[&[u64]]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_tagged_implicit(Tag::application(0), |w| {
            w.write_sequence(|w| {
                w.next()
                    .write_oid(&ObjectIdentifier::from_slice(SPNEGO_OID));
                w.next().write_tagged(Tag::context(0), |w| {
                    w.write_sequence(|w| {
                        w.next().write_tagged(Tag::context(0), |w| {
                            w.write_sequence(|w| {
                                for mech in mechs {
                                    w.next().write_oid(&ObjectIdentifier::from_slice(mech));
                                }
                            });
                        });
                    });
                });
            });
        });
    })
}

/// A NegTokenResp (`[1]` choice, no GSS framing, as servers answer).
#[must_use]
pub fn resp(state: NegState, supported_mech: Option<&[u64]>, token: Option<&[u8]>) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_tagged(Tag::context(1), |w| {
            w.write_sequence(|w: &mut DERWriterSeq<'_>| {
                w.next()
                    .write_tagged(Tag::context(0), |w| w.write_enum(state.code()));
                if let Some(mech) = supported_mech {
                    w.next().write_tagged(Tag::context(1), |w| {
                        w.write_oid(&ObjectIdentifier::from_slice(mech));
                    });
                }
                if let Some(token) = token {
                    w.next()
                        .write_tagged(Tag::context(2), |w| w.write_bytes(token));
                }
            });
        });
    })
}

/// Whether `blob` looks like SPNEGO (a GSS InitialContextToken or a bare NegotiationToken).
#[must_use]
pub fn is_spnego(blob: &[u8]) -> bool {
    matches!(blob.first(), Some(0x60 | 0xa0 | 0xa1))
}

/// Unwraps a client's SPNEGO token: a GSS-framed or bare NegTokenInit, or a NegTokenResp.
/// `None` when it is not SPNEGO or is malformed.
#[must_use]
pub fn parse_client(blob: &[u8]) -> Option<ClientToken> {
    if !super::super::ber::check(blob) {
        return None;
    }
    yasna::parse_ber(blob, |r| match r.lookahead_tag()? {
        t if t == Tag::application(0) => r.read_tagged_implicit(Tag::application(0), |r| {
            r.read_sequence(|seq| {
                let oid = seq.next().read_oid()?;
                if oid.components().as_slice() != SPNEGO_OID {
                    return Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid));
                }
                negotiation_token(seq.next())
            })
        }),
        _ => negotiation_token(r),
    })
    .ok()
}

fn negotiation_token(r: BERReader<'_, '_>) -> ASN1Result<ClientToken> {
    if r.lookahead_tag()? == Tag::context(0) {
        r.read_tagged(Tag::context(0), |r| r.read_sequence(init_fields))
    } else {
        r.read_tagged(Tag::context(1), |r| r.read_sequence(resp_fields))
    }
}

fn init_fields(seq: &mut BERReaderSeq<'_, '_>) -> ASN1Result<ClientToken> {
    let mut mechs = Vec::new();
    seq.read_optional(|r| {
        r.read_tagged(Tag::context(0), |r| {
            r.read_sequence_of(|r| {
                let oid = r.read_oid()?;
                if mechs.len() < 16 {
                    mechs.push(dotted(&oid));
                }
                Ok(())
            })
        })
    })?;
    seq.read_optional(|r| r.read_tagged(Tag::context(1), |r| r.read_der()))?;
    let token = seq.read_optional(|r| r.read_tagged(Tag::context(2), |r| r.read_bytes()))?;
    seq.read_optional(|r| r.read_tagged(Tag::context(3), |r| r.read_der()))?;
    seq.read_optional(|r| r.read_tagged(Tag::context(4), |r| r.read_der()))?;
    Ok(ClientToken {
        mechs,
        token,
        state: None,
    })
}

fn resp_fields(seq: &mut BERReaderSeq<'_, '_>) -> ASN1Result<ClientToken> {
    let state = seq.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_enum()))?;
    seq.read_optional(|r| r.read_tagged(Tag::context(1), |r| r.read_oid()))?;
    let token = seq.read_optional(|r| r.read_tagged(Tag::context(2), |r| r.read_bytes()))?;
    seq.read_optional(|r| r.read_tagged(Tag::context(3), |r| r.read_bytes()))?;
    Ok(ClientToken {
        mechs: Vec::new(),
        token,
        state,
    })
}
