//! Answers to inbound LLMNR and NBT-NS queries for the sensor's own name, as a Windows host
//! gives them; nothing for any other name, so the sensor never poisons.
//!
//! - LLMNR (RFC 4795 2.1.1, 2.3): only a query (QR 0, opcode 0, no conflict bit) with exactly
//!   one question and empty answer and authority sections is considered; a question for the
//!   own name (one label, any case) of type A, AAAA or ANY gets a response repeating the
//!   question with the interface's addresses of that family (TTL 30 s, as Windows), an empty
//!   answer section when it has none (authoritative, no record of that type).
//! - NBT-NS (RFC 1002 4.2.12-13): a name query for the own NetBIOS name (upper case, at most
//!   15 characters) with the workstation (`<00>`) or file server (`<20>`) suffix gets a
//!   positive name query response: AA and RD copied, one NB record (TTL 300,000 s, B-node
//!   unique name) with the interface address on the querier's subnet.
//!
//! NBT-NS is built by hand like the queries in [`super::nbns`]; LLMNR with `hickory-proto`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::{
    op::{Message, MessageType, OpCode},
    rr::{
        RData, Record, RecordType,
        rdata::{A, AAAA},
    },
};

use super::nbns;

/// TTL of LLMNR answers (Windows: 30 s).
const LLMNR_TTL: u32 = 30;
/// TTL of NBT-NS answers (Windows: 300,000 s).
const NBNS_TTL: u32 = 300_000;
/// Addresses put in one answer at most.
const MAX_ADDRESSES: usize = 8;

/// The names the sensor answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnName {
    /// The LLMNR name: one label, compared without case.
    pub llmnr: String,
    /// The NetBIOS name: upper case, at most 15 characters.
    pub netbios: String,
}

impl OwnName {
    /// From a host name: its first label (`FILESRV01.corp.local` answers `FILESRV01`).
    #[must_use]
    pub fn new(hostname: &str) -> Self {
        let label = hostname.split('.').next().unwrap_or(hostname);
        Self {
            llmnr: label.to_owned(),
            netbios: label.chars().take(15).collect::<String>().to_uppercase(),
        }
    }
}

/// An answer to send and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The response's bytes.
    pub reply: Vec<u8>,
    /// The name asked, as asked.
    pub name: String,
    /// The question's type (`A`, `AAAA`, `ANY`, `NB`).
    pub query_type: String,
    /// The addresses given.
    pub addresses: Vec<IpAddr>,
}

/// The LLMNR response to `query` when it asks for the own name; `None` otherwise.
#[must_use]
pub fn llmnr(query: &[u8], own: &OwnName, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Option<Answered> {
    let message = Message::from_vec(query).ok()?;
    let meta = message.metadata;
    // In LLMNR the AA bit's place is the conflict bit (C).
    if meta.message_type != MessageType::Query
        || meta.op_code != OpCode::Query
        || meta.authoritative
        || message.queries.len() != 1
        || !message.answers.is_empty()
        || !message.authorities.is_empty()
    {
        return None;
    }
    let question = message.queries.first()?;
    let name = question.name();
    let asked = name.to_ascii().trim_end_matches('.').to_owned();
    if name.num_labels() != 1 || !asked.eq_ignore_ascii_case(&own.llmnr) {
        return None;
    }
    let qtype = question.query_type();
    let (give4, give6) = match qtype {
        RecordType::A => (true, false),
        RecordType::AAAA => (false, true),
        RecordType::ANY => (true, true),
        _ => (false, false),
    };
    let mut addresses: Vec<IpAddr> = Vec::new();
    if give4 {
        addresses.extend(v4.iter().copied().map(IpAddr::V4));
    }
    if give6 {
        addresses.extend(v6.iter().copied().map(IpAddr::V6));
    }
    addresses.truncate(MAX_ADDRESSES);
    let mut reply = Message::new(meta.id, MessageType::Response, OpCode::Query);
    reply.add_query(question.clone());
    for ip in &addresses {
        let data = match ip {
            IpAddr::V4(a) => RData::A(A(*a)),
            IpAddr::V6(a) => RData::AAAA(AAAA(*a)),
        };
        reply.add_answer(Record::from_rdata(name.clone(), LLMNR_TTL, data));
    }
    Some(Answered {
        reply: reply.to_vec().ok()?,
        name: asked,
        query_type: qtype.to_string(),
        addresses,
    })
}

/// The NBT-NS response to `query` when it asks for the own name; `None` otherwise. The answer
/// gives the address of `v4` on the querier's subnet (`from`), else the first.
#[must_use]
pub fn nbns(
    query: &[u8],
    own: &OwnName,
    v4: &[super::iface::V4],
    from: Ipv4Addr,
) -> Option<Answered> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([
            *query.get(at)?,
            *query.get(at.checked_add(1)?)?,
        ]))
    };
    let id = be16(0)?;
    let flags = be16(2)?;
    // A request (R 0), opcode query (0), one question, nothing else.
    if flags & 0x8000 != 0 || flags & 0x7800 != 0 || be16(4)? != 1 || be16(6)? != 0 {
        return None;
    }
    // One 32-byte label, no scope, type NB, class IN, and nothing after the question.
    if *query.get(12)? != 32 || *query.get(45)? != 0 || query.len() != 50 {
        return None;
    }
    if be16(46)? != 0x0020 || be16(48)? != 0x0001 {
        return None;
    }
    let (name, suffix) = nbns::decode_name(query.get(13..45)?)?;
    if !name.eq_ignore_ascii_case(&own.netbios) || !matches!(suffix, 0x00 | 0x20) {
        return None;
    }
    let addr = v4
        .iter()
        .find(|a| a.same_subnet(from))
        .or_else(|| v4.first())?
        .addr;
    let mut reply = Vec::with_capacity(62);
    reply.extend_from_slice(&id.to_be_bytes());
    // Response, opcode query, AA, RD copied from the query, RCODE 0.
    let rd = flags & 0x0100;
    reply.extend_from_slice(&(0x8400 | rd).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    reply.extend_from_slice(query.get(12..46)?);
    reply.extend_from_slice(&[0x00, 0x20, 0x00, 0x01]);
    reply.extend_from_slice(&NBNS_TTL.to_be_bytes());
    // RDLENGTH 6: NB_FLAGS (B-node, unique) and the address.
    reply.extend_from_slice(&[0x00, 0x06, 0x00, 0x00]);
    reply.extend_from_slice(&addr.octets());
    Some(Answered {
        reply,
        name: format!("{name}<{suffix:02X}>"),
        query_type: "NB".to_owned(),
        addresses: vec![IpAddr::V4(addr)],
    })
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
