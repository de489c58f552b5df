use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::{Name, RData, RecordType},
};

use super::{OwnName, llmnr, nbns};
use crate::poisoning::{
    iface::V4,
    nbns::{parse_answer as nb_parse, query as nb_query},
};

const V4S: [Ipv4Addr; 1] = [Ipv4Addr::new(198, 18, 3, 1)];

fn v6s() -> Vec<Ipv6Addr> {
    vec!["2001:2:0:3::1".parse().unwrap(), "fe80::1".parse().unwrap()]
}

fn own() -> OwnName {
    OwnName::new("FILESRV01.corp.local")
}

fn ask(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

fn addresses(reply: &[u8]) -> Vec<IpAddr> {
    Message::from_vec(reply)
        .unwrap()
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn the_own_name_is_the_host_name_s_first_label() {
    assert_eq!(
        own(),
        OwnName {
            llmnr: "FILESRV01".to_owned(),
            netbios: "FILESRV01".to_owned()
        }
    );
    assert_eq!(
        OwnName::new("a-very-long-hostname-x").netbios,
        "A-VERY-LONG-HOS"
    );
    assert_eq!(OwnName::new("srv01").netbios, "SRV01");
}

#[test]
fn llmnr_questions_for_the_own_name_get_the_interface_addresses() {
    let v6 = v6s();
    let a = llmnr(&ask(0x1234, "filesrv01", RecordType::A), &own(), &V4S, &v6).unwrap();
    assert_eq!(a.name, "filesrv01");
    assert_eq!(a.query_type, "A");
    assert_eq!(a.addresses, vec![IpAddr::V4(V4S[0])]);
    let reply = Message::from_vec(&a.reply).unwrap();
    assert_eq!(reply.metadata.id, 0x1234);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert!(!reply.metadata.authoritative, "no conflict bit");
    assert_eq!(reply.queries.len(), 1, "the question is repeated");
    assert_eq!(reply.answers[0].ttl, 30);
    assert_eq!(addresses(&a.reply), vec![IpAddr::V4(V4S[0])]);

    let aaaa = llmnr(&ask(7, "FILESRV01.", RecordType::AAAA), &own(), &V4S, &v6).unwrap();
    assert_eq!(
        addresses(&aaaa.reply),
        v6.iter().copied().map(IpAddr::V6).collect::<Vec<_>>()
    );
    let any = llmnr(&ask(7, "FileSrv01", RecordType::ANY), &own(), &V4S, &v6).unwrap();
    assert_eq!(addresses(&any.reply).len(), 3);
    // Authoritative for the name, no record of the type: an empty answer.
    let mx = llmnr(&ask(7, "filesrv01", RecordType::MX), &own(), &V4S, &v6).unwrap();
    assert!(addresses(&mx.reply).is_empty());
    let none = llmnr(&ask(7, "filesrv01", RecordType::AAAA), &own(), &V4S, &[]).unwrap();
    assert!(addresses(&none.reply).is_empty());
}

#[test]
fn llmnr_never_answers_for_another_name_or_an_odd_message() {
    let v6 = v6s();
    for name in [
        "FILESRV02",
        "filesrv01.corp.local",
        "wpad",
        "FILESRV0",
        "FILESRV011",
    ] {
        assert_eq!(
            llmnr(&ask(1, name, RecordType::A), &own(), &V4S, &v6),
            None,
            "{name}"
        );
    }
    let good = ask(1, "filesrv01", RecordType::A);
    // A response, a conflict probe, another opcode, two questions, an answer section.
    let mut m = Message::from_vec(&good).unwrap();
    m.metadata.message_type = MessageType::Response;
    assert_eq!(llmnr(&m.to_vec().unwrap(), &own(), &V4S, &v6), None);
    let mut m = Message::from_vec(&good).unwrap();
    m.metadata.authoritative = true;
    assert_eq!(llmnr(&m.to_vec().unwrap(), &own(), &V4S, &v6), None);
    let mut m = Message::from_vec(&good).unwrap();
    m.metadata.op_code = OpCode::Status;
    assert_eq!(llmnr(&m.to_vec().unwrap(), &own(), &V4S, &v6), None);
    let mut m = Message::from_vec(&good).unwrap();
    let q = m.queries[0].clone();
    m.add_query(q);
    assert_eq!(llmnr(&m.to_vec().unwrap(), &own(), &V4S, &v6), None);
    let answered = llmnr(&good, &own(), &V4S, &v6).unwrap().reply;
    let mut m = Message::from_vec(&answered).unwrap();
    m.metadata.message_type = MessageType::Query;
    assert_eq!(llmnr(&m.to_vec().unwrap(), &own(), &V4S, &v6), None);
    for cut in 0..good.len() {
        assert_eq!(llmnr(&good[..cut], &own(), &V4S, &v6), None, "cut at {cut}");
    }
}

fn subnets() -> Vec<V4> {
    vec![
        V4 {
            addr: Ipv4Addr::new(10, 9, 0, 5),
            mask: Ipv4Addr::new(255, 255, 0, 0),
        },
        V4 {
            addr: V4S[0],
            mask: Ipv4Addr::new(255, 255, 255, 0),
        },
    ]
}

#[test]
fn nbns_queries_for_the_own_name_get_a_positive_answer() {
    let q = nb_query(0xbeef, "filesrv01");
    let from = Ipv4Addr::new(198, 18, 3, 2);
    let a = nbns(&q, &own(), &subnets(), from).unwrap();
    assert_eq!(a.name, "FILESRV01<20>");
    assert_eq!(
        a.addresses,
        vec![IpAddr::V4(V4S[0])],
        "the querier's subnet"
    );
    // The answer is what the probe side reads as a positive answer.
    let read = nb_parse(&a.reply, 0xbeef).unwrap();
    assert_eq!(read.name, "FILESRV01");
    assert_eq!(read.addresses, vec![V4S[0]]);
    assert_eq!(&a.reply[2..4], &[0x85, 0x00], "response, AA, RD copied");
    assert_eq!(&a.reply[50..54], &300_000u32.to_be_bytes());
    assert_eq!(&a.reply[54..58], &[0, 6, 0, 0]);
    assert_eq!(a.reply.len(), 62);
    // From another subnet: the first address.
    let other = nbns(&q, &own(), &subnets(), Ipv4Addr::new(192, 0, 2, 1)).unwrap();
    assert_eq!(
        other.addresses,
        vec![IpAddr::V4(Ipv4Addr::new(10, 9, 0, 5))]
    );
    // The workstation suffix <00> too ("AA" encodes 0x00).
    let mut workstation = q.clone();
    workstation[43..45].copy_from_slice(b"AA");
    assert_eq!(
        nbns(&workstation, &own(), &subnets(), from).unwrap().name,
        "FILESRV01<00>"
    );
}

#[test]
fn nbns_never_answers_for_another_name_suffix_or_an_odd_message() {
    let from = Ipv4Addr::new(198, 18, 3, 2);
    let q = nb_query(1, "filesrv01");
    assert_eq!(
        nbns(&nb_query(1, "FILESRV02"), &own(), &subnets(), from),
        None
    );
    assert_eq!(nbns(&nb_query(1, "WPAD"), &own(), &subnets(), from), None);
    // <1C> (domain controllers) and <1B> (master browser) are not this host's to answer.
    for suffix in [b"BM", b"BL"] {
        let mut other = q.clone();
        other[43..45].copy_from_slice(suffix);
        assert_eq!(nbns(&other, &own(), &subnets(), from), None);
    }
    assert_eq!(nbns(&q, &own(), &[], from), None, "no IPv4 address");
    let mut response = q.clone();
    response[2] |= 0x80;
    assert_eq!(nbns(&response, &own(), &subnets(), from), None);
    let mut registration = q.clone();
    registration[2] = 0x29;
    assert_eq!(nbns(&registration, &own(), &subnets(), from), None);
    let mut nbstat = q.clone();
    nbstat[47] = 0x21;
    assert_eq!(nbns(&nbstat, &own(), &subnets(), from), None);
    let mut longer = q.clone();
    longer.push(0);
    assert_eq!(nbns(&longer, &own(), &subnets(), from), None);
    for cut in 0..q.len() {
        assert_eq!(
            nbns(&q[..cut], &own(), &subnets(), from),
            None,
            "cut at {cut}"
        );
    }
}
