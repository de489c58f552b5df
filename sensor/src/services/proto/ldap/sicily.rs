//! Sicily (MS-ADTS 5.1.1.1.3): NTLM carried in the bind request's own authentication choices,
//! as Windows' `ldap_bind_s(LDAP_AUTH_NTLM)`, ldap3 (`authentication=NTLM`) and impacket
//! (`LDAPConnection.login(authenticationChoice='sicilyNegotiate')`) bind.
//!
//! ```text
//! C: bindRequest v3 "" sicilyPackageDiscovery [9] ""
//! S: bindResponse success, matchedDN "NTLM"        (the packages, semicolon-separated)
//! C: bindRequest v3 "alice" sicilyNegotiate [10] NEGOTIATE
//! S: bindResponse success, matchedDN CHALLENGE     (DC01, ACME, acme.local, 10.0.17763)
//! C: bindRequest v3 "alice" sicilyResponse [11] AUTHENTICATE
//!                                        -> ldap.login {"username":"alice", "domain":"ACME",
//!                                           "mechanism":"sicily", "ntlm_version":"NTLMv2",
//!                                           "hashcat":"alice::ACME:...", ...}
//! S: bindResponse invalidCredentials "80090308: LdapErr: DSID-0C09041C, comment:
//!    AcceptSecurityContext error, data 52e, v4563"
//! ```
//! The response is AD's `SicilyBindResponse`: a bind response whose `matchedDN` carries the
//! server's credentials. `rasn-ldap`'s `AuthenticationChoice` knows only RFC 4511's choices, so a
//! message it refuses is read again here with `yasna` (after [`ber::check`] made it safe to):
//! a bind request with one of the three Sicily choices, and nothing else.

use serde_json::{Map, Value};
use yasna::{ASN1Error, ASN1ErrorKind, Tag};

use super::{
    answer::{Handled, Next, Report, State},
    ber::Writer,
    rootdse::Names,
};
use crate::services::{
    framework::session::lossy,
    proto::shared::{
        ber,
        ntlm::{Exchange, Step},
    },
};

const SUCCESS: i64 = 0;
const PROTOCOL_ERROR: i64 = 2;
const INVALID_CREDENTIALS: i64 = 49;

/// The packages AD lists to a `sicilyPackageDiscovery` (NTLM is the only one Sicily carries).
pub const PACKAGES: &[u8] = b"NTLM";

/// Which Sicily choice a bind request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// `[9]`: which packages the server speaks.
    Discovery,
    /// `[10]`: an NTLM NEGOTIATE.
    Negotiate(Vec<u8>),
    /// `[11]`: an NTLM AUTHENTICATE.
    Response(Vec<u8>),
}

/// A Sicily bind request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Message id.
    pub id: i64,
    /// LDAP version.
    pub version: i64,
    /// The bind name (a user name for impacket, `NTLM` for ldap3's NEGOTIATE, or empty).
    pub name: Vec<u8>,
    /// The authentication choice.
    pub choice: Choice,
}

fn invalid() -> ASN1Error {
    ASN1Error::new(ASN1ErrorKind::Invalid)
}

/// Reads a Sicily bind request; `None` for anything else (or malformed BER).
#[must_use]
pub fn parse(bytes: &[u8]) -> Option<Bind> {
    if !ber::check(bytes) {
        return None;
    }
    yasna::parse_ber(bytes, |r| {
        r.read_sequence(|seq| {
            let id = seq.next().read_i64()?;
            let (version, name, choice) =
                seq.next().read_tagged_implicit(Tag::application(0), |r| {
                    r.read_sequence(|bind| {
                        let version = bind.next().read_i64()?;
                        let name = bind.next().read_bytes()?;
                        let auth = bind.next();
                        let tag = auth.lookahead_tag()?;
                        let choice = if tag == Tag::context(9) {
                            auth.read_tagged_implicit(tag, |r| r.read_bytes())?;
                            Choice::Discovery
                        } else if tag == Tag::context(10) {
                            Choice::Negotiate(auth.read_tagged_implicit(tag, |r| r.read_bytes())?)
                        } else if tag == Tag::context(11) {
                            Choice::Response(auth.read_tagged_implicit(tag, |r| r.read_bytes())?)
                        } else {
                            return Err(invalid());
                        };
                        Ok((version, name, choice))
                    })
                })?;
            // Controls, if any, are not used.
            seq.read_optional(|r| r.read_der())?;
            Ok(Bind {
                id,
                version,
                name,
                choice,
            })
        })
    })
    .ok()
}

/// A `SicilyBindResponse`: result code, the server's credentials where a bind response has
/// `matchedDN`, and the error message.
#[must_use]
pub fn response(id: i64, code: i64, server_creds: &[u8], error: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.constructed(0x30, |w| {
        w.integer(0x02, id);
        w.constructed(0x61, |w| {
            w.integer(0x0a, code);
            w.octets(server_creds);
            w.octets(error.as_bytes());
        });
    });
    w.finish()
}

/// Answers a Sicily bind request, or `None` when `bytes` is not one.
#[must_use]
pub fn handle(names: &Names, state: &mut State, bytes: &[u8]) -> Option<Handled> {
    let bind = parse(bytes)?;
    let tag = names.build_tag();
    let id = bind.id;
    let mut fields = Map::new();
    fields.insert("username".to_owned(), Value::String(lossy(&bind.name)));
    fields.insert("version".to_owned(), Value::from(bind.version));
    fields.insert("tls".to_owned(), Value::Bool(state.tls));
    fields.insert("mechanism".to_owned(), Value::String("sicily".to_owned()));
    let refused = |data: &str| {
        let diag = format!(
            "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data {data}, {tag}\0"
        );
        response(id, INVALID_CREDENTIALS, b"", &diag)
    };
    if !(2..=3).contains(&bind.version) {
        let diag = format!(
            "00000057: LdapErr: DSID-0C090E0B, comment: Error decoding ldap message, data 0, {tag}\0"
        );
        return Some(Handled {
            reply: response(id, PROTOCOL_ERROR, b"", &diag),
            report: Report::Login(fields),
            next: Next::Continue,
        });
    }
    let token = match bind.choice {
        Choice::Discovery => {
            return Some(Handled {
                reply: response(id, SUCCESS, PACKAGES, ""),
                report: Report::None,
                next: Next::Continue,
            });
        }
        Choice::Negotiate(token) => {
            // A NEGOTIATE always starts a new exchange.
            state.ntlm = Some(Exchange::new(std::sync::Arc::clone(&state.identity)));
            token
        }
        Choice::Response(token) => token,
    };
    let identity = std::sync::Arc::clone(&state.identity);
    let exchange = state.ntlm.get_or_insert_with(|| Exchange::new(identity));
    let handled = match exchange.step(&token) {
        Ok(Step::Reply(challenge)) => Handled {
            reply: response(id, SUCCESS, &challenge, ""),
            report: Report::None,
            next: Next::Continue,
        },
        Ok(Step::Done(captured)) => {
            state.ntlm = None;
            fields.extend(captured.extra());
            Handled {
                reply: refused("52e"),
                report: Report::Login(fields),
                next: Next::Continue,
            }
        }
        Err(_) => {
            state.ntlm = None;
            Handled {
                reply: refused("57"),
                report: Report::Login(fields),
                next: Next::Continue,
            }
        }
    };
    Some(handled)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Choice, PACKAGES, handle, parse};
    use crate::services::proto::{
        ldap::{
            answer::{Next, Report, State},
            ops,
            rootdse::Names,
        },
        shared::{
            ntlm::{
                Identity, ProductVersion,
                client::{self, Response, WINDOWS_CLIENT_FLAGS},
                crypto::verify_hashcat,
            },
            testing::noise,
        },
    };

    fn names() -> Names {
        Names {
            server: "DC01".to_owned(),
            domain: "acme.local".to_owned(),
            level: 7,
        }
    }

    fn state() -> State {
        let identity = Identity::new("DC01", "acme.local", ProductVersion::SERVER_2019);
        State::new(Arc::new(identity), false, true)
    }

    /// A bind request with Sicily choice `tag` carrying `token`, as impacket's pyasn1 writes it.
    fn sicily(id: u8, name: &[u8], tag: u8, token: &[u8]) -> Vec<u8> {
        let prim = |t: u8, v: &[u8]| {
            let mut out = vec![t];
            let len = v.len();
            if len < 0x80 {
                out.push(u8::try_from(len).unwrap());
            } else {
                out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
            }
            out.extend_from_slice(v);
            out
        };
        let mut bind = prim(0x02, &[3]);
        bind.extend(prim(0x04, name));
        bind.extend(prim(tag, token));
        let mut msg = prim(0x02, &[id]);
        msg.extend(prim(0x60, &bind));
        prim(0x30, &msg)
    }

    /// The `(resultCode, matchedDN, diagnosticMessage)` of a response.
    fn result(reply: &[u8]) -> (i64, Vec<u8>, String) {
        yasna::parse_ber(reply, |r| {
            r.read_sequence(|seq| {
                seq.next().read_i64()?;
                seq.next()
                    .read_tagged_implicit(yasna::Tag::application(1), |r| {
                        r.read_sequence(|s| {
                            let code = s.next().read_enum()?;
                            let dn = s.next().read_bytes()?;
                            let diag = s.next().read_bytes()?;
                            Ok((code, dn, String::from_utf8(diag).unwrap()))
                        })
                    })
            })
        })
        .unwrap()
    }

    #[test]
    fn the_three_choices_parse_and_nothing_else_does() {
        let b = parse(&sicily(1, b"", 0x89, b"")).unwrap();
        assert_eq!((b.id, b.version, b.choice), (1, 3, Choice::Discovery));
        let b = parse(&sicily(2, b"NTLM", 0x8a, b"NTLMSSP\0")).unwrap();
        assert_eq!(b.choice, Choice::Negotiate(b"NTLMSSP\0".to_vec()));
        assert_eq!(b.name, b"NTLM");
        let b = parse(&sicily(3, b"", 0x8b, b"x")).unwrap();
        assert_eq!(b.choice, Choice::Response(b"x".to_vec()));
        // Simple [0], SASL [3] (constructed), an unknown [12]: not Sicily.
        assert!(parse(&sicily(1, b"cn=x", 0x80, b"pw")).is_none());
        assert!(parse(&sicily(1, b"", 0x8c, b"")).is_none());
        assert!(parse(b"").is_none());
    }

    #[test]
    fn discovery_lists_ntlm_and_an_exchange_captures_a_line_that_verifies() {
        let mut st = state();
        let h = ops::handle(
            &names(),
            &mut st,
            &sicily(1, b"", 0x89, b""),
            chrono::Utc::now(),
        );
        assert_eq!(result(&h.reply), (0, PACKAGES.to_vec(), String::new()));
        assert_eq!((h.report, h.next), (Report::None, Next::Continue));
        let neg = client::negotiate(WINDOWS_CLIENT_FLAGS);
        let h = ops::handle(
            &names(),
            &mut st,
            &sicily(2, b"alice", 0x8a, &neg),
            chrono::Utc::now(),
        );
        let (code, challenge, diag) = result(&h.reply);
        assert_eq!((code, diag.as_str()), (0, ""));
        assert_eq!(&challenge[..8], b"NTLMSSP\0");
        assert_eq!(h.report, Report::None);
        let auth = client::authenticate(
            &challenge,
            "alice",
            "ACME",
            "WKS7",
            "Spring2026!",
            Response::V2 {
                client_challenge: [7; 8],
                time: 1,
            },
        );
        let h = ops::handle(
            &names(),
            &mut st,
            &sicily(3, b"alice", 0x8b, &auth),
            chrono::Utc::now(),
        );
        let (code, dn, diag) = result(&h.reply);
        assert_eq!((code, dn.len()), (49, 0));
        assert_eq!(
            diag,
            "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 52e, v4563\0"
        );
        let Report::Login(fields) = h.report else {
            panic!("{:?}", h.report)
        };
        assert_eq!(fields["username"], "alice");
        assert_eq!(fields["domain"], "ACME");
        assert_eq!(fields["workstation"], "WKS7");
        assert_eq!(fields["mechanism"], "sicily");
        assert_eq!(fields["ntlm_version"], "NTLMv2");
        let line = fields["hashcat"].as_str().unwrap();
        assert!(verify_hashcat(line, "Spring2026!"), "{line}");
        assert!(!verify_hashcat(line, "Spring2025!"), "{line}");
        assert!(st.ntlm.is_none());
    }

    #[test]
    fn a_response_without_negotiate_and_garbage_tokens_are_refused() {
        let mut st = state();
        for (tag, token) in [(0x8b, &b"NTLMSSP\0\x03\0\0\0"[..]), (0x8a, b"junk")] {
            let h = handle(&names(), &mut st, &sicily(4, b"bob", tag, token)).unwrap();
            let (code, _, diag) = result(&h.reply);
            assert_eq!(code, 49);
            assert!(diag.contains("data 57"), "{diag}");
            assert!(matches!(h.report, Report::Login(_)));
        }
    }

    #[test]
    fn hostile_sicily_binds_never_panic() {
        let neg = client::negotiate(WINDOWS_CLIENT_FLAGS);
        let wire = sicily(2, b"alice", 0x8a, &neg);
        let mut st = state();
        for cut in 0..wire.len() {
            // A truncated message is framed by `ber`, never handed over: still, no panic.
            let _ = handle(&names(), &mut st, &wire[..cut]);
        }
        for seed in 0..64 {
            let mut bytes = wire.clone();
            let junk = noise(bytes.len(), seed);
            let at = usize::try_from(seed).unwrap() % bytes.len();
            bytes[at] = junk[at];
            let _ = handle(&names(), &mut st, &bytes);
            let _ = handle(&names(), &mut st, &junk);
        }
        // Lengths at their maximum.
        let mut long = wire;
        long[1] = 0x84;
        assert!(handle(&names(), &mut st, &long).is_none());
    }
}
