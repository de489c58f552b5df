//! LLMNR (RFC 4795) and mDNS (RFC 6762) use the DNS message format: queries built and answers
//! read with `hickory-proto`.

use std::net::IpAddr;

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::{Name, RData, RecordType},
};

/// A question for `name`'s IPv4 address (`name.local.` for mDNS), as wire bytes; `None` when
/// the name is not a valid DNS name.
#[must_use]
pub fn query(id: u16, name: &str) -> Option<Vec<u8>> {
    let name = Name::from_ascii(name).ok()?;
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(name, RecordType::A));
    message.to_vec().ok()
}

/// The addresses an answer to query `id` for `name` gives; `None` for anything that is not a
/// response to it carrying at least one address.
#[must_use]
pub fn parse_answer(packet: &[u8], id: u16, name: &str) -> Option<Vec<IpAddr>> {
    let message = Message::from_vec(packet).ok()?;
    if message.metadata.message_type != MessageType::Response || message.metadata.id != id {
        return None;
    }
    let asked = name.trim_end_matches('.');
    // LLMNR answers repeat the question; legacy-unicast mDNS answers do too. A response whose
    // question is another name is not an answer to this query.
    if message.queries.first().is_some_and(|q| {
        !q.name()
            .to_ascii()
            .trim_end_matches('.')
            .eq_ignore_ascii_case(asked)
    }) {
        return None;
    }
    let addresses: Vec<IpAddr> = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .take(16)
        .collect();
    (!addresses.is_empty()).then_some(addresses)
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::Message,
        rr::{Name, RData, Record, rdata::A},
    };

    use super::{parse_answer, query};

    fn poisoned(request: &[u8], ip: [u8; 4]) -> Vec<u8> {
        let mut m = Message::from_vec(request).unwrap();
        m.metadata.message_type = hickory_proto::op::MessageType::Response;
        let name: Name = m.queries[0].name().clone();
        m.add_answer(Record::from_rdata(name, 30, RData::A(A(ip.into()))));
        m.to_vec().unwrap()
    }

    #[test]
    fn an_answer_to_our_question_gives_its_addresses() {
        let q = query(0x4242, "FILESRV02").unwrap();
        let a = poisoned(&q, [198, 18, 0, 2]);
        assert_eq!(
            parse_answer(&a, 0x4242, "filesrv02"),
            Some(vec!["198.18.0.2".parse().unwrap()])
        );
        assert_eq!(parse_answer(&a, 0x4243, "FILESRV02"), None, "another id");
        assert_eq!(parse_answer(&a, 0x4242, "OTHER"), None, "another name");
        assert_eq!(
            parse_answer(&q, 0x4242, "FILESRV02"),
            None,
            "the query itself"
        );
        for cut in 0..a.len() {
            assert_eq!(parse_answer(&a[..cut], 0x4242, "FILESRV02"), None);
        }
        let mdns = query(0, "nas-bkp3.local.").unwrap();
        assert!(parse_answer(&poisoned(&mdns, [10, 0, 0, 9]), 0, "nas-bkp3.local.").is_some());
    }
}
