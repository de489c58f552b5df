//! Community-based SNMP: v1 (version 0) and v2c (version 1) requests and their responses.
//!
//! v1 has no exception values: an unknown object or the end of the MIB is the `noSuchName`
//! error naming the varbind, and `get-bulk` does not exist (such a message is dropped, as
//! `snmpd` does). v2c puts `noSuchObject`, `noSuchInstance` and `endOfMibView` in the varbinds.

use rasn::types::Integer;
use rasn_snmp::{
    v2::{Pdu, Pdus, Response, VarBind, VarBindValue},
    v2c,
};
use serde_json::{Map, Value as Json};

use super::{MAX_LOGGED_COMMUNITIES, Peer, mib};
use crate::services::framework::{session::lossy, udp::Exchange};

/// Varbinds one `get-bulk` answer holds at most.
const MAX_BULK_VARBINDS: usize = 64;
/// Largest response the agent builds (one Ethernet frame's UDP payload); a larger `get-bulk`
/// answer is cut, as RFC 3416 allows.
const MAX_RESPONSE_BYTES: usize = 1_472;

/// The PDU type's name in events.
pub(super) const fn pdu_name(pdu: &Pdus) -> &'static str {
    match pdu {
        Pdus::GetRequest(_) => "get",
        Pdus::GetNextRequest(_) => "getnext",
        Pdus::Response(_) => "response",
        Pdus::SetRequest(_) => "set",
        Pdus::GetBulkRequest(_) => "getbulk",
        Pdus::InformRequest(_) => "inform",
        Pdus::Trap(_) => "trap",
        Pdus::Report(_) => "report",
    }
}

/// The varbinds' OIDs, dotted.
pub(super) fn pdu_oids(pdu: &Pdus) -> Vec<String> {
    let binds = match pdu {
        Pdus::GetRequest(p) => &p.0.variable_bindings,
        Pdus::GetNextRequest(p) => &p.0.variable_bindings,
        Pdus::Response(p) => &p.0.variable_bindings,
        Pdus::SetRequest(p) => &p.0.variable_bindings,
        Pdus::GetBulkRequest(p) => &p.0.variable_bindings,
        Pdus::InformRequest(p) => &p.0.variable_bindings,
        Pdus::Trap(p) => &p.0.variable_bindings,
        Pdus::Report(p) => &p.0.variable_bindings,
    };
    binds.iter().map(|b| mib::dotted(&b.name)).collect()
}

/// The `snmp.query` extra for a request.
pub(super) fn query_extra(version: &str, pdu: &Pdus) -> Map<String, Json> {
    let oids = pdu_oids(pdu);
    let mut extra = Map::new();
    extra.insert("version".to_owned(), Json::from(version));
    extra.insert("pdu".to_owned(), Json::from(pdu_name(pdu)));
    // Trapster's key: the OIDs, space-separated.
    extra.insert("varbind".to_owned(), Json::from(oids.join(" ")));
    extra.insert("oids".to_owned(), Json::from(oids));
    extra
}

/// Handles a v1 or v2c message.
pub(super) fn handle(
    peer: &mut Peer,
    message: v2c::Message<Pdus>,
    raw: &[u8],
    out: &mut Exchange,
) -> Option<Vec<u8>> {
    let v1 = match i64::try_from(&message.version) {
        Ok(0) => true,
        Ok(1) => false,
        _ => {
            out.data(raw);
            return None;
        }
    };
    let version = if v1 { "1" } else { "2c" };
    let community: &[u8] = &message.community;
    let matched = peer
        .agent
        .communities
        .iter()
        .any(|c| c.as_bytes() == community);
    let text = lossy(community);
    if !peer.communities.iter().any(|c| c == community)
        && peer.communities.len() < MAX_LOGGED_COMMUNITIES
    {
        peer.communities.push(community.to_vec());
        let mut extra = Map::new();
        extra.insert("version".to_owned(), Json::from(version));
        extra.insert("community".to_owned(), Json::from(text.clone()));
        extra.insert("matched".to_owned(), Json::from(matched));
        out.login(&[], extra);
    }
    let mut extra = query_extra(version, &message.data);
    extra.insert("community".to_owned(), Json::from(text));
    extra.insert("matched".to_owned(), Json::from(matched));
    out.query(&[], extra);
    if !matched {
        // snmpd drops requests with an unknown community (and counts snmpInBadCommunityNames).
        return None;
    }
    let agent = &peer.agent;
    let uptime = agent.uptime_ticks();
    let pdu = match message.data {
        Pdus::GetRequest(req) => get(&agent.mib, req.0, v1, uptime),
        Pdus::GetNextRequest(req) => next(&agent.mib, req.0, v1, uptime),
        Pdus::GetBulkRequest(req) if !v1 => {
            let req = req.0;
            let mut pdu = Pdu {
                request_id: req.request_id,
                error_status: Pdu::ERROR_STATUS_NO_ERROR,
                error_index: 0,
                variable_bindings: bulk(
                    &agent.mib,
                    &req.variable_bindings,
                    req.non_repeaters,
                    req.max_repetitions,
                    uptime,
                ),
            };
            fit(&mut pdu, &message.community);
            pdu
        }
        Pdus::SetRequest(req) => {
            let mut pdu = req.0;
            pdu.error_status = if v1 {
                Pdu::ERROR_STATUS_NO_SUCH_NAME
            } else {
                Pdu::ERROR_STATUS_NO_ACCESS
            };
            pdu.error_index = u32::from(!pdu.variable_bindings.is_empty());
            pdu
        }
        _ => return None,
    };
    encode(if v1 { 0 } else { 1 }, &message.community, pdu)
}

fn encode(version: i64, community: &rasn::types::OctetString, pdu: Pdu) -> Option<Vec<u8>> {
    rasn::ber::encode(&v2c::Message {
        version: Integer::from(version),
        community: community.clone(),
        data: Pdus::Response(Response(pdu)),
    })
    .ok()
}

/// Drops trailing varbinds of a `get-bulk` answer until it fits one frame.
fn fit(pdu: &mut Pdu, community: &rasn::types::OctetString) {
    while pdu.variable_bindings.len() > 1 {
        let size = encode(1, community, pdu.clone()).map_or(usize::MAX, |b| b.len());
        if size <= MAX_RESPONSE_BYTES {
            return;
        }
        pdu.variable_bindings.pop();
    }
}

fn found(oid: &[u32], value: &mib::Value, uptime: u32) -> VarBind {
    VarBind {
        name: mib::oid(oid),
        value: VarBindValue::Value(mib::syntax(value, uptime)),
    }
}

/// v1: the request's varbinds back with `noSuchName` at `index` (1-based).
fn v1_error(mut pdu: Pdu, index: usize) -> Pdu {
    pdu.error_status = Pdu::ERROR_STATUS_NO_SUCH_NAME;
    pdu.error_index = u32::try_from(index).unwrap_or(u32::MAX);
    pdu
}

fn get(mib: &mib::Mib, pdu: Pdu, v1: bool, uptime: u32) -> Pdu {
    let mut binds = Vec::with_capacity(pdu.variable_bindings.len());
    for (i, bind) in pdu.variable_bindings.iter().enumerate() {
        let value = match mib.get(&bind.name) {
            mib::Lookup::Found(value) => VarBindValue::Value(mib::syntax(value, uptime)),
            _ if v1 => return v1_error(pdu, i.saturating_add(1)),
            mib::Lookup::NoSuchInstance => VarBindValue::NoSuchInstance,
            mib::Lookup::NoSuchObject => VarBindValue::NoSuchObject,
        };
        binds.push(VarBind {
            name: bind.name.clone(),
            value,
        });
    }
    response(pdu.request_id, binds)
}

fn next(mib: &mib::Mib, pdu: Pdu, v1: bool, uptime: u32) -> Pdu {
    let mut binds = Vec::with_capacity(pdu.variable_bindings.len());
    for (i, bind) in pdu.variable_bindings.iter().enumerate() {
        match mib.next(&bind.name) {
            Some((oid, value)) => binds.push(found(oid, value, uptime)),
            None if v1 => return v1_error(pdu, i.saturating_add(1)),
            None => binds.push(VarBind {
                name: bind.name.clone(),
                value: VarBindValue::EndOfMibView,
            }),
        }
    }
    response(pdu.request_id, binds)
}

/// RFC 3416 4.2.3: `non_repeaters` get-nexts, then up to `max_repetitions` rows of get-nexts
/// for the rest, bounded by [`MAX_BULK_VARBINDS`].
fn bulk(
    mib: &mib::Mib,
    binds: &[VarBind],
    non_repeaters: u32,
    max_repetitions: u32,
    uptime: u32,
) -> Vec<VarBind> {
    let split = usize::try_from(non_repeaters)
        .unwrap_or(usize::MAX)
        .min(binds.len());
    let (fixed, repeated) = binds.split_at(split);
    let mut out = Vec::new();
    let step = |oid: &[u32]| -> VarBind {
        mib.next(oid).map_or_else(
            || VarBind {
                name: mib::oid(oid),
                value: VarBindValue::EndOfMibView,
            },
            |(o, v)| found(o, v, uptime),
        )
    };
    for bind in fixed.iter().take(MAX_BULK_VARBINDS) {
        out.push(step(&bind.name));
    }
    let mut cursors: Vec<Vec<u32>> = repeated.iter().map(|b| b.name.to_vec()).collect();
    let rows = usize::try_from(max_repetitions).unwrap_or(usize::MAX);
    for _ in 0..rows {
        if cursors.is_empty() || out.len() >= MAX_BULK_VARBINDS {
            break;
        }
        let mut ended = 0usize;
        for cursor in &mut cursors {
            if out.len() >= MAX_BULK_VARBINDS {
                break;
            }
            let bind = step(cursor);
            if bind.value == VarBindValue::EndOfMibView {
                ended = ended.saturating_add(1);
            } else {
                *cursor = bind.name.to_vec();
            }
            out.push(bind);
        }
        if ended == cursors.len() {
            break;
        }
    }
    out
}

const fn response(request_id: i32, variable_bindings: Vec<VarBind>) -> Pdu {
    Pdu {
        request_id,
        error_status: Pdu::ERROR_STATUS_NO_ERROR,
        error_index: 0,
        variable_bindings,
    }
}
