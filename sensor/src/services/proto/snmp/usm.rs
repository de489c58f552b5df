//! SNMPv3 with the User-based Security Model (RFC 3414), as far as an agent that knows no user
//! goes: engine discovery and the unknown-user report, with every username and its
//! authentication parameters logged.
//!
//! - A message whose `msgAuthoritativeEngineID` is not the agent's (discovery sends it empty)
//!   gets a report of `usmStatsUnknownEngineIDs.0` carrying the agent's engine id, boots and
//!   time, as `snmpd` answers; the client then retries with them.
//! - A message for the agent's engine gets a report of `usmStatsUnknownUserNames.0`.
//! - Reports go only to messages with the reportable flag.
//!
//! `snmp.login` (once per username and engine id per pseudo-session) carries `username`,
//! `security_level` (`noAuthNoPriv`, `authNoPriv`, `authPriv`), `engine_id` and
//! `auth_params` (hex), and, for an authenticated message, `hashcat`: the line hashcat's
//! SNMPv3 modes crack,
//!
//! ```text
//! $SNMPv3$<type>$<packet number>$<whole message, hex, auth params zeroed>$<engine id hex>$<auth params hex>
//! ```
//!
//! where `<type>` is 0 for a 12-byte HMAC-96 (`-m 25000`: MD5 or SHA-1, hashcat tries both;
//! `-m 25100` takes the same line with type 1 for MD5 only, `-m 25200` with type 2 for SHA-1
//! only) and 4 for a 24-byte HMAC-SHA-256-192 (`-m 26800`); the packet number is the
//! message id (last 8 digits), a label hashcat carries along. The message is the datagram as
//! received, with the authentication parameters' bytes replaced by zeros, which is what the
//! HMAC covers (RFC 3414 6.3.1). Other digest sizes carry no `hashcat` key. hashcat reads
//! engine ids of 13 to 17 bytes only; the default engine id is 17.

use std::sync::atomic::Ordering;

use rasn::types::{Integer, OctetString};
use rasn_smi::{
    v1::Counter,
    v2::{ApplicationSyntax, ObjectSyntax},
};
use rasn_snmp::{
    v2::{Pdu, Pdus, Report, VarBind, VarBindValue},
    v3::{HeaderData, Message, ScopedPdu, ScopedPduData, USMSecurityParameters},
};
use serde_json::{Map, Value as Json};

use super::{MAX_LOGGED_COMMUNITIES, Peer, mib, v2};
use crate::services::framework::{session::lossy, udp::Exchange};

/// `usmStatsUnknownUserNames.0`.
const UNKNOWN_USER_NAMES: [u32; 11] = [1, 3, 6, 1, 6, 3, 15, 1, 1, 3, 0];
/// `usmStatsUnknownEngineIDs.0`.
const UNKNOWN_ENGINE_IDS: [u32; 11] = [1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0];
/// `msgFlags` bits.
const FLAG_AUTH: u8 = 1;
const FLAG_PRIV: u8 = 2;
const FLAG_REPORTABLE: u8 = 4;
/// The USM's security model number.
const USM: i64 = 3;
/// The largest message net-snmp accepts, which it announces.
const MAX_SIZE: i64 = 65_507;

/// Handles a v3 message.
pub(super) fn handle(
    peer: &mut Peer,
    message: &Message,
    raw: &[u8],
    out: &mut Exchange,
) -> Option<Vec<u8>> {
    if i64::try_from(&message.version) != Ok(3) {
        out.data(raw);
        return None;
    }
    let Ok(usm) = message.decode_security_parameters::<USMSecurityParameters>(rasn::Codec::Ber)
    else {
        out.data(raw);
        return None;
    };
    let flags = message.global_data.flags.first().copied().unwrap_or(0);
    let level = match (flags & FLAG_AUTH != 0, flags & FLAG_PRIV != 0) {
        (true, true) => "authPriv",
        (true, false) => "authNoPriv",
        _ => "noAuthNoPriv",
    };
    let user: &[u8] = &usm.user_name;
    let engine: &[u8] = &usm.authoritative_engine_id;
    let msg_id = i64::try_from(&message.global_data.message_id).unwrap_or(0);
    if !user.is_empty()
        && !peer.users.iter().any(|(u, e)| u == user && e == engine)
        && peer.users.len() < MAX_LOGGED_COMMUNITIES
    {
        peer.users.push((user.to_vec(), engine.to_vec()));
        let mut extra = Map::new();
        extra.insert("version".to_owned(), Json::from("3"));
        extra.insert("username".to_owned(), Json::from(lossy(user)));
        extra.insert("security_level".to_owned(), Json::from(level));
        extra.insert("engine_id".to_owned(), Json::from(hex::encode(engine)));
        extra.insert(
            "auth_params".to_owned(),
            Json::from(hex::encode(&usm.authentication_parameters)),
        );
        if flags & FLAG_AUTH != 0
            && let Some(line) = hashcat(raw, &message.security_parameters, &usm, msg_id)
        {
            extra.insert("hashcat".to_owned(), Json::from(line));
        }
        extra.insert("matched".to_owned(), Json::from(false));
        out.login(&[], extra);
    }
    let request_id = match &message.scoped_data {
        ScopedPduData::CleartextPdu(scoped) => {
            let mut extra = v2::query_extra("3", &scoped.data);
            extra.insert("username".to_owned(), Json::from(lossy(user)));
            extra.insert("security_level".to_owned(), Json::from(level));
            out.query(&[], extra);
            request_id(&scoped.data)
        }
        ScopedPduData::EncryptedPdu(_) => {
            let mut extra = Map::new();
            extra.insert("version".to_owned(), Json::from("3"));
            extra.insert("pdu".to_owned(), Json::from("encrypted"));
            extra.insert("username".to_owned(), Json::from(lossy(user)));
            extra.insert("security_level".to_owned(), Json::from(level));
            out.query(&[], extra);
            0
        }
    };
    if flags & FLAG_REPORTABLE == 0 {
        return None;
    }
    let agent = &peer.agent;
    let (oid, counter) = if engine == agent.engine_id.as_slice() {
        (&UNKNOWN_USER_NAMES, &agent.unknown_user_names)
    } else {
        (&UNKNOWN_ENGINE_IDS, &agent.unknown_engine_ids)
    };
    let count = counter.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    report(peer, message, &usm.user_name, request_id, oid, count)
}

const fn request_id(pdu: &Pdus) -> i32 {
    match pdu {
        Pdus::GetRequest(p) => p.0.request_id,
        Pdus::GetNextRequest(p) => p.0.request_id,
        Pdus::Response(p) => p.0.request_id,
        Pdus::SetRequest(p) => p.0.request_id,
        Pdus::GetBulkRequest(p) => p.0.request_id,
        Pdus::InformRequest(p) => p.0.request_id,
        Pdus::Trap(p) => p.0.request_id,
        Pdus::Report(p) => p.0.request_id,
    }
}

/// The unauthenticated report `snmpd` sends.
fn report(
    peer: &Peer,
    request: &Message,
    user: &OctetString,
    request_id: i32,
    oid: &[u32],
    count: u32,
) -> Option<Vec<u8>> {
    let agent = &peer.agent;
    let engine_id = OctetString::from(agent.engine_id.clone());
    let mut message = Message {
        version: Integer::from(3),
        global_data: HeaderData {
            message_id: request.global_data.message_id.clone(),
            max_size: Integer::from(MAX_SIZE),
            flags: OctetString::from(vec![0u8]),
            security_model: Integer::from(USM),
        },
        security_parameters: OctetString::from_static(b""),
        scoped_data: ScopedPduData::CleartextPdu(ScopedPdu {
            engine_id: engine_id.clone(),
            name: OctetString::from_static(b""),
            data: Pdus::Report(Report(Pdu {
                request_id,
                error_status: Pdu::ERROR_STATUS_NO_ERROR,
                error_index: 0,
                variable_bindings: vec![VarBind {
                    name: mib::oid(oid),
                    value: VarBindValue::Value(ObjectSyntax::ApplicationWide(
                        ApplicationSyntax::Counter(Counter(count)),
                    )),
                }],
            })),
        }),
    };
    let usm = USMSecurityParameters {
        authoritative_engine_id: engine_id,
        authoritative_engine_boots: Integer::from(agent.engine_boots),
        authoritative_engine_time: Integer::from(agent.engine_time()),
        user_name: user.clone(),
        authentication_parameters: OctetString::from_static(b""),
        privacy_parameters: OctetString::from_static(b""),
    };
    message
        .encode_security_parameters(rasn::Codec::Ber, &usm)
        .ok()?;
    rasn::ber::encode(&message).ok()
}

/// hashcat's line for an authenticated message (see the module doc), if its digest size and
/// engine id fit a hashcat mode.
pub fn hashcat(
    raw: &[u8],
    security_parameters: &[u8],
    usm: &USMSecurityParameters,
    msg_id: i64,
) -> Option<String> {
    let auth: &[u8] = &usm.authentication_parameters;
    let kind = match auth.len() {
        12 => 0,
        24 => 4,
        _ => return None,
    };
    let engine: &[u8] = &usm.authoritative_engine_id;
    if !(13..=17).contains(&engine.len()) {
        return None;
    }
    let zeroed = zero_auth(raw, security_parameters, auth)?;
    Some(format!(
        "$SNMPv3${kind}${}${}${}${}",
        msg_id.rem_euclid(100_000_000),
        hex::encode(zeroed),
        hex::encode(engine),
        hex::encode(auth)
    ))
}

/// The datagram with the authentication parameters' bytes zeroed: they are found inside the
/// security parameters, which are found inside the datagram.
fn zero_auth(raw: &[u8], security_parameters: &[u8], auth: &[u8]) -> Option<Vec<u8>> {
    let outer = find(raw, security_parameters)?;
    let inner = find(security_parameters, auth)?;
    let start = outer.checked_add(inner)?;
    let end = start.checked_add(auth.len())?;
    let mut zeroed = raw.to_vec();
    zeroed.get_mut(start..end)?.fill(0);
    Some(zeroed)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
