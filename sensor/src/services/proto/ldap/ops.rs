//! One LDAP message in, the domain controller's answer out: a pure function of the message and
//! the connection's state, so every answer is tested without a socket.
//!
//! An unauthenticated connection may bind and read the RootDSE; everything else gets the result
//! code and diagnostic text Active Directory gives an unbound connection.

use std::sync::Arc;

use rasn_ldap::{
    AuthenticationChoice, BindRequest, LdapMessage, ProtocolOp, SearchRequest, SearchRequestScope,
};
use serde_json::{Map, Value};

pub use super::answer::{Handled, Next, Report, State};
use super::{
    ber::{Writer, nesting_ok},
    filter,
    rootdse::Names,
};
use crate::services::{
    framework::session::lossy,
    proto::shared::ntlm::{Exchange, Step},
};

/// The StartTLS extended operation.
pub const START_TLS: &[u8] = b"1.3.6.1.4.1.1466.20037";
/// "Who am I?" (RFC 4532).
const WHO_AM_I: &[u8] = b"1.3.6.1.4.1.4203.1.11.3";
/// The unsolicited notice of disconnection (RFC 4511 4.4.1).
const NOTICE_OF_DISCONNECTION: &[u8] = b"1.3.6.1.4.1.1466.20036";

/// Deepest element nesting accepted (a search filter nests a few levels in practice).
pub const MAX_DEPTH: usize = 32;
/// Most elements in one message.
const MAX_ELEMENTS: usize = 4096;
/// Attributes kept in a `ldap.query` event.
const MAX_ATTRIBUTES: usize = 64;

const SUCCESS: i64 = 0;
const OPERATIONS_ERROR: i64 = 1;
const PROTOCOL_ERROR: i64 = 2;
const AUTH_METHOD_NOT_SUPPORTED: i64 = 7;
const SASL_BIND_IN_PROGRESS: i64 = 14;
const INVALID_CREDENTIALS: i64 = 49;

/// Answers one framed message.
#[must_use]
pub fn handle(
    names: &Names,
    state: &mut State,
    bytes: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Handled {
    let nested = nesting_ok(bytes, MAX_DEPTH, MAX_ELEMENTS);
    let decoded = if nested {
        rasn::ber::decode::<LdapMessage>(bytes).ok()
    } else {
        None
    };
    let Some(message) = decoded else {
        // RFC 4511 has no room for AD's Sicily binds: they are read on their own.
        if let Some(handled) = nested
            .then(|| super::sicily::handle(names, state, bytes))
            .flatten()
        {
            return handled;
        }
        return Handled {
            reply: disconnection(names),
            report: Report::Data,
            next: Next::Close,
        };
    };
    let id = i64::from(message.message_id);
    let tag = names.build_tag();
    let bind_required = format!(
        "000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed on the connection., data 0, {tag}\0"
    );
    let answer = |op: u8, code: i64, diag: &str| Handled {
        reply: result_message(id, op, code, diag),
        report: Report::None,
        next: Next::Continue,
    };
    match message.protocol_op {
        ProtocolOp::BindRequest(bind) => self::bind(names, state, id, &bind),
        ProtocolOp::SearchRequest(search) => self::search(names, state, id, &search, now),
        ProtocolOp::UnbindRequest(_) => Handled {
            reply: Vec::new(),
            report: Report::None,
            next: Next::Close,
        },
        ProtocolOp::AbandonRequest(_) => Handled {
            reply: Vec::new(),
            report: Report::None,
            next: Next::Continue,
        },
        ProtocolOp::ModifyRequest(_) => answer(0x67, OPERATIONS_ERROR, &bind_required),
        ProtocolOp::AddRequest(_) => answer(0x69, OPERATIONS_ERROR, &bind_required),
        ProtocolOp::DelRequest(_) => answer(0x6b, OPERATIONS_ERROR, &bind_required),
        ProtocolOp::ModDnRequest(_) => answer(0x6d, OPERATIONS_ERROR, &bind_required),
        ProtocolOp::CompareRequest(_) => answer(0x6f, OPERATIONS_ERROR, &bind_required),
        ProtocolOp::ExtendedReq(ext) => {
            let oid: &[u8] = &ext.request_name;
            if oid == START_TLS {
                if state.tls || !state.starttls {
                    let diag = format!(
                        "00000000: LdapErr: DSID-0C091278, comment: Error initializing SSL/TLS, data 0, {tag}\0"
                    );
                    return Handled {
                        reply: extended_message(id, OPERATIONS_ERROR, &diag, Some(START_TLS), None),
                        report: Report::None,
                        next: Next::Continue,
                    };
                }
                Handled {
                    reply: extended_message(id, SUCCESS, "", Some(START_TLS), None),
                    report: Report::None,
                    next: Next::StartTls,
                }
            } else if oid == WHO_AM_I {
                Handled {
                    reply: extended_message(id, SUCCESS, "", None, Some(b"")),
                    report: Report::None,
                    next: Next::Continue,
                }
            } else {
                let diag = format!(
                    "0000203D: LdapErr: DSID-0C0C0A6D, comment: Unknown extended request OID, data 0, {tag}\0"
                );
                let mut fields = Map::new();
                fields.insert("extended_request".to_owned(), Value::String(lossy(oid)));
                Handled {
                    reply: extended_message(id, PROTOCOL_ERROR, &diag, None, None),
                    report: Report::Query(fields),
                    next: Next::Continue,
                }
            }
        }
        // Responses sent by a client, and future operations.
        _ => Handled {
            reply: disconnection(names),
            report: Report::Data,
            next: Next::Close,
        },
    }
}

fn bind(names: &Names, state: &mut State, id: i64, bind: &BindRequest) -> Handled {
    let tag = names.build_tag();
    let mut fields = Map::new();
    fields.insert("username".to_owned(), Value::String(bind.name.0.clone()));
    fields.insert("version".to_owned(), Value::from(bind.version));
    fields.insert("tls".to_owned(), Value::Bool(state.tls));
    if !(2..=3).contains(&bind.version) {
        let diag = format!(
            "00000057: LdapErr: DSID-0C090E0B, comment: Error decoding ldap message, data 0, {tag}\0"
        );
        return Handled {
            reply: bind_message(id, PROTOCOL_ERROR, &diag, None),
            report: Report::Login(fields),
            next: Next::Continue,
        };
    }
    match &bind.authentication {
        AuthenticationChoice::Simple(password) => {
            fields.insert("mechanism".to_owned(), Value::String("simple".to_owned()));
            fields.insert("password".to_owned(), Value::String(lossy(password)));
            let report = if password.is_empty() && bind.name.is_empty() {
                Report::None
            } else {
                Report::Login(fields)
            };
            if password.is_empty() {
                // An anonymous (or unauthenticated) bind succeeds, as on AD.
                return Handled {
                    reply: bind_message(id, SUCCESS, "", None),
                    report,
                    next: Next::Continue,
                };
            }
            let diag = format!(
                "80090308: LdapErr: DSID-0C090439, comment: AcceptSecurityContext error, data 52e, {tag}\0"
            );
            Handled {
                reply: bind_message(id, INVALID_CREDENTIALS, &diag, None),
                report,
                next: Next::Continue,
            }
        }
        AuthenticationChoice::Sasl(sasl)
            if sasl.mechanism.eq_ignore_ascii_case("GSS-SPNEGO")
                || sasl.mechanism.eq_ignore_ascii_case("NTLM") =>
        {
            fields.insert(
                "mechanism".to_owned(),
                Value::String(sasl.mechanism.0.clone()),
            );
            let token = sasl.credentials.as_deref().unwrap_or_default();
            if token.is_empty() {
                // The client asks the server to start: an empty challenge.
                return Handled {
                    reply: bind_message(id, SASL_BIND_IN_PROGRESS, "", Some(b"")),
                    report: Report::None,
                    next: Next::Continue,
                };
            }
            let identity = Arc::clone(&state.identity);
            let exchange = state.ntlm.get_or_insert_with(|| Exchange::new(identity));
            let refused = |creds: Option<&[u8]>, data: &str| {
                let diag = format!(
                    "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data {data}, {tag}\0"
                );
                bind_message(id, INVALID_CREDENTIALS, &diag, creds)
            };
            match exchange.step(token) {
                Ok(Step::Reply(challenge)) => Handled {
                    reply: bind_message(id, SASL_BIND_IN_PROGRESS, "", Some(&challenge)),
                    report: Report::None,
                    next: Next::Continue,
                },
                Ok(Step::Done(captured)) => {
                    let reject = exchange.reject();
                    state.ntlm = None;
                    fields.extend(captured.extra());
                    Handled {
                        reply: refused(reject.as_deref(), "52e"),
                        report: Report::Login(fields),
                        next: Next::Continue,
                    }
                }
                Err(_) => {
                    state.ntlm = None;
                    Handled {
                        reply: refused(None, "57"),
                        report: Report::Login(fields),
                        next: Next::Continue,
                    }
                }
            }
        }
        AuthenticationChoice::Sasl(sasl) => {
            fields.insert(
                "mechanism".to_owned(),
                Value::String(sasl.mechanism.0.clone()),
            );
            let diag = format!(
                "00002028: LdapErr: DSID-0C090A3C, comment: The server does not support the requested SASL mechanism, data 0, {tag}\0"
            );
            Handled {
                reply: bind_message(id, AUTH_METHOD_NOT_SUPPORTED, &diag, None),
                report: Report::Login(fields),
                next: Next::Continue,
            }
        }
        _ => Handled {
            reply: bind_message(id, AUTH_METHOD_NOT_SUPPORTED, "", None),
            report: Report::Login(fields),
            next: Next::Continue,
        },
    }
}

/// RFC 4511's names for the three scopes, as the event reports them.
const fn scope_name(scope: SearchRequestScope) -> &'static str {
    match scope {
        SearchRequestScope::BaseObject => "base",
        SearchRequestScope::SingleLevel => "one",
        _ => "sub",
    }
}

fn search(
    names: &Names,
    state: &State,
    id: i64,
    search: &SearchRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Handled {
    let attributes: Vec<String> = search
        .attributes
        .iter()
        .take(MAX_ATTRIBUTES)
        .map(|a| a.0.clone())
        .collect();
    let mut fields = Map::new();
    fields.insert(
        "base".to_owned(),
        Value::String(search.base_object.0.clone()),
    );
    fields.insert(
        "scope".to_owned(),
        Value::String(scope_name(search.scope).to_owned()),
    );
    fields.insert(
        "filter".to_owned(),
        Value::String(filter::render(&search.filter)),
    );
    fields.insert(
        "attributes".to_owned(),
        Value::Array(attributes.iter().cloned().map(Value::String).collect()),
    );
    fields.insert("tls".to_owned(), Value::Bool(state.tls));
    let mut reply = Vec::new();
    if search.base_object.is_empty() && search.scope == SearchRequestScope::BaseObject {
        reply.extend(root_dse_entry(
            names,
            id,
            &attributes,
            search.types_only,
            now,
        ));
        reply.extend(result_message(id, 0x65, SUCCESS, ""));
    } else {
        let diag = format!(
            "000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed on the connection., data 0, {}\0",
            names.build_tag()
        );
        reply.extend(result_message(id, 0x65, OPERATIONS_ERROR, &diag));
    }
    Handled {
        reply,
        report: Report::Query(fields),
        next: Next::Continue,
    }
}

/// Whether `attr` is asked for by `requested` (none or `*` means every attribute; `1.1` none).
fn wanted(requested: &[String], attr: &str) -> bool {
    if requested.is_empty() || requested.iter().any(|r| r == "*" || r == "+") {
        return true;
    }
    requested.iter().any(|r| r.eq_ignore_ascii_case(attr))
}

fn root_dse_entry(
    names: &Names,
    id: i64,
    requested: &[String],
    types_only: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.constructed(0x30, |w| {
        w.integer(0x02, id);
        w.constructed(0x64, |w| {
            w.octets(b"");
            w.constructed(0x30, |w| {
                for (attr, values) in names.root_dse(now) {
                    if !wanted(requested, attr) {
                        continue;
                    }
                    w.constructed(0x30, |w| {
                        w.octets(attr.as_bytes());
                        w.constructed(0x31, |w| {
                            if !types_only {
                                for v in &values {
                                    w.octets(v.as_bytes());
                                }
                            }
                        });
                    });
                }
            });
        });
    });
    w.finish()
}

fn ldap_result(w: &mut Writer, code: i64, diag: &str) {
    w.integer(0x0a, code);
    w.octets(b"");
    w.octets(diag.as_bytes());
}

/// A response whose body is an `LDAPResult` under application tag `op`.
#[must_use]
pub fn result_message(id: i64, op: u8, code: i64, diag: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.constructed(0x30, |w| {
        w.integer(0x02, id);
        w.constructed(op, |w| ldap_result(w, code, diag));
    });
    w.finish()
}

/// A `BindResponse`, with the server's SASL credentials when a SASL exchange continues.
#[must_use]
pub fn bind_message(id: i64, code: i64, diag: &str, sasl: Option<&[u8]>) -> Vec<u8> {
    let mut w = Writer::new();
    w.constructed(0x30, |w| {
        w.integer(0x02, id);
        w.constructed(0x61, |w| {
            ldap_result(w, code, diag);
            if let Some(creds) = sasl {
                w.primitive(0x87, creds);
            }
        });
    });
    w.finish()
}

fn extended_message(
    id: i64,
    code: i64,
    diag: &str,
    name: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.constructed(0x30, |w| {
        w.integer(0x02, id);
        w.constructed(0x78, |w| {
            ldap_result(w, code, diag);
            if let Some(n) = name {
                w.primitive(0x8a, n);
            }
            if let Some(v) = value {
                w.primitive(0x8b, v);
            }
        });
    });
    w.finish()
}

/// The notice of disconnection AD sends before closing on a message it cannot decode.
#[must_use]
pub fn disconnection(names: &Names) -> Vec<u8> {
    let diag = format!(
        "00000057: LdapErr: DSID-0C090E0B, comment: Error decoding ldap message, data 0, {}\0",
        names.build_tag()
    );
    extended_message(
        0,
        PROTOCOL_ERROR,
        &diag,
        Some(NOTICE_OF_DISCONNECTION),
        None,
    )
}
