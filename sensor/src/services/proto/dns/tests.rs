//! The DNS zone without sockets: answers for every kind of query, truncation, zone transfers,
//! and hostile messages (every truncation, compression pointer loops, counts that lie, random
//! bytes).

use crate::services::proto::shared::testing::noise;
use std::{
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
    sync::Arc,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        DNSClass, Name, RecordType,
        rdata::opt::{EdnsCode, EdnsOption, NSIDPayload},
    },
};
use serde_json::Value;

use super::{DnsConfig, build_zone, zone::Transport, zone::Zone};
use crate::services::{Context, ServiceLimits};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

fn ctx() -> Context {
    Context {
        service: crate::event::Service::Dns,
        port: 53,
        hostname: "srv01".to_owned(),
        domain: "corp.local".to_owned(),
        limits: Arc::new(ServiceLimits::default()),
    }
}

fn zone(config: Value) -> Zone {
    let config: DnsConfig = serde_json::from_value(config).unwrap();
    build_zone(config, &ctx()).unwrap()
}

fn query(name: &str, qtype: RecordType, class: DNSClass) -> Message {
    let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let mut q = Query::query(Name::from_str(name).unwrap(), qtype);
    q.set_query_class(class);
    message.add_query(q);
    message
}

fn ask(zone: &Zone, message: &Message, transport: Transport) -> (Message, Value) {
    let outcome = zone.answer(&message.to_vec().unwrap(), LOCAL, transport);
    let reply = Message::from_vec(&outcome.reply.unwrap()).unwrap();
    (reply, Value::Object(outcome.query.unwrap()))
}

fn answers(reply: &Message) -> Vec<String> {
    reply
        .answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect()
}

#[test]
fn host_address_is_the_one_asked_and_the_event_is_exact() {
    let zone = zone(serde_json::json!({}));
    let (reply, event) = ask(
        &zone,
        &query("SRV01.corp.local.", RecordType::A, DNSClass::IN),
        Transport::Udp,
    );
    assert_eq!(reply.metadata.id, 0x1234);
    assert!(reply.metadata.authoritative);
    assert!(!reply.metadata.recursion_available);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answers(&reply), ["srv01.corp.local. A 10.1.2.3"]);
    assert_eq!(
        event,
        serde_json::json!({"qname": "srv01.corp.local", "qtype": "A", "qclass": "IN",
            "transport": "udp", "rcode": "NOERROR", "recursion_desired": true})
    );
}

#[test]
fn ad_srv_mx_txt_soa_ns_ptr() {
    let zone = zone(serde_json::json!({"address": "192.0.2.10"}));
    let srv = ask(
        &zone,
        &query("_ldap._tcp.corp.local.", RecordType::SRV, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert_eq!(
        answers(&srv),
        ["_ldap._tcp.corp.local. SRV 0 100 389 srv01.corp.local."]
    );
    for (name, port) in [("_kerberos._tcp", 88), ("_gc._tcp", 3268)] {
        let reply = ask(
            &zone,
            &query(
                &format!("{name}.corp.local."),
                RecordType::SRV,
                DNSClass::IN,
            ),
            Transport::Udp,
        )
        .0;
        assert_eq!(
            answers(&reply),
            [format!(
                "{name}.corp.local. SRV 0 100 {port} srv01.corp.local."
            )]
        );
    }
    let mx = ask(
        &zone,
        &query("corp.local.", RecordType::MX, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert_eq!(answers(&mx), ["corp.local. MX 10 srv01.corp.local."]);
    let txt = ask(
        &zone,
        &query("corp.local.", RecordType::TXT, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert_eq!(answers(&txt), ["corp.local. TXT v=spf1 mx -all"]);
    let ns = ask(
        &zone,
        &query("corp.local.", RecordType::NS, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert_eq!(answers(&ns), ["corp.local. NS srv01.corp.local."]);
    assert_eq!(ns.additionals.len(), 1, "glue A");
    let soa = ask(
        &zone,
        &query("corp.local.", RecordType::SOA, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert_eq!(
        answers(&soa),
        ["corp.local. SOA srv01.corp.local. hostmaster.corp.local. 2024112201 900 600 86400 3600"]
    );
    let ptr = ask(
        &zone,
        &query("10.2.0.192.in-addr.arpa.", RecordType::PTR, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert_eq!(
        answers(&ptr),
        ["10.2.0.192.in-addr.arpa. PTR srv01.corp.local."]
    );
    // Another address's reverse name is not ours: refused.
    let other = ask(
        &zone,
        &query("11.2.0.192.in-addr.arpa.", RecordType::PTR, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert_eq!(other.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn nxdomain_nodata_and_refused_recursion() {
    let zone = zone(serde_json::json!({}));
    let (nx, event) = ask(
        &zone,
        &query("nope.corp.local.", RecordType::A, DNSClass::IN),
        Transport::Udp,
    );
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities.len(), 1);
    assert_eq!(event["rcode"], "NXDOMAIN");
    // `_tcp.corp.local` is an empty non-terminal: NODATA.
    let ent = ask(
        &zone,
        &query("_tcp.corp.local.", RecordType::A, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    assert!(ent.answers.is_empty());
    let (out, event) = ask(
        &zone,
        &query("www.example.org.", RecordType::A, DNSClass::IN),
        Transport::Udp,
    );
    assert_eq!(out.metadata.response_code, ResponseCode::Refused);
    assert!(!out.metadata.recursion_available);
    assert!(out.answers.is_empty());
    assert_eq!(event["rcode"], "REFUSED");
}

#[test]
fn chaos_names_and_nsid_are_the_persona() {
    let zone = zone(serde_json::json!({"version": "9.16.1-Ubuntu", "server_id": "ns1"}));
    let version = ask(
        &zone,
        &query("version.bind.", RecordType::TXT, DNSClass::CH),
        Transport::Udp,
    );
    assert_eq!(answers(&version.0), ["version.bind. TXT 9.16.1-Ubuntu"]);
    assert_eq!(version.0.answers[0].dns_class, DNSClass::CH);
    assert_eq!(version.1["qclass"], "CH");
    for name in ["hostname.bind.", "id.server."] {
        let reply = ask(
            &zone,
            &query(name, RecordType::TXT, DNSClass::CH),
            Transport::Udp,
        )
        .0;
        assert_eq!(answers(&reply), [format!("{name} TXT ns1")]);
    }
    let mut with_nsid = query("corp.local.", RecordType::SOA, DNSClass::IN);
    let mut edns = Edns::new();
    edns.options_mut()
        .insert(EdnsOption::NSID(NSIDPayload::new(Vec::new()).unwrap()));
    with_nsid.set_edns(edns);
    let reply = ask(&zone, &with_nsid, Transport::Udp).0;
    let nsid = reply.edns.as_ref().unwrap().option(EdnsCode::NSID).unwrap();
    let EdnsOption::NSID(payload) = nsid else {
        panic!("{nsid:?}");
    };
    assert_eq!(payload.as_ref(), b"ns1");
}

#[test]
fn big_udp_answers_are_truncated_without_edns() {
    let records: Vec<Value> = (0..40)
        .map(|i| serde_json::json!({"name": "big", "type": "TXT", "value": format!("{i:02} {}", "x".repeat(40))}))
        .collect();
    let zone = zone(serde_json::json!({"records": records}));
    let big = query("big.corp.local.", RecordType::TXT, DNSClass::IN);
    let (reply, event) = ask(&zone, &big, Transport::Udp);
    assert!(reply.metadata.truncation);
    assert!(reply.answers.is_empty());
    assert_eq!(reply.queries.len(), 1);
    assert_eq!(event["truncated"], true);
    let (tcp, event) = ask(&zone, &big, Transport::Tcp);
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 40);
    assert_eq!(event.get("truncated"), None);
    assert_eq!(event["transport"], "tcp");
    // A small answer is not truncated.
    let small = ask(
        &zone,
        &query("corp.local.", RecordType::MX, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert!(!small.metadata.truncation);
}

#[test]
fn zone_transfers_as_configured() {
    let refused = zone(serde_json::json!({}));
    let axfr = query("corp.local.", RecordType::AXFR, DNSClass::IN);
    let (reply, event) = ask(&refused, &axfr, Transport::Tcp);
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert_eq!(event["qtype"], "AXFR");
    let open = zone(serde_json::json!({"allow_transfer": true}));
    let reply = ask(&open, &axfr, Transport::Tcp).0;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    let types: Vec<RecordType> = reply.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.first(), Some(&RecordType::SOA));
    assert_eq!(types.last(), Some(&RecordType::SOA));
    // SOA, NS, MX, TXT, 6 SRV, A host, A apex, SOA.
    assert_eq!(types.len(), 13);
    // Never over UDP.
    let udp = ask(&open, &axfr, Transport::Udp).0;
    assert_eq!(udp.metadata.response_code, ResponseCode::Refused);
    let ixfr = ask(
        &open,
        &query("corp.local.", RecordType::IXFR, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert_eq!(ixfr.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn configured_records_and_bad_config_names_the_field() {
    let zone = zone(serde_json::json!({"records": [
        {"name": "www", "type": "CNAME", "value": "srv01"},
        {"name": "files", "type": "A", "value": "192.0.2.7"},
    ]}));
    let www = ask(
        &zone,
        &query("www.corp.local.", RecordType::A, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert_eq!(answers(&www), ["www.corp.local. CNAME srv01.corp.local."]);
    let files = ask(
        &zone,
        &query("files.corp.local.", RecordType::A, DNSClass::IN),
        Transport::Udp,
    )
    .0;
    assert_eq!(answers(&files), ["files.corp.local. A 192.0.2.7"]);
    let config: DnsConfig = serde_json::from_value(serde_json::json!({"records": [
        {"name": "ok", "type": "A", "value": "192.0.2.7"},
        {"name": "bad", "type": "A", "value": "not-an-ip"},
    ]}))
    .unwrap();
    let err = build_zone(config, &ctx()).unwrap_err();
    assert_eq!(err, "records[1].value: `not-an-ip` is not an IPv4 address");
}

#[test]
fn responses_and_other_opcodes() {
    let zone = zone(serde_json::json!({}));
    let mut response = query("corp.local.", RecordType::A, DNSClass::IN);
    response.metadata.message_type = MessageType::Response;
    let outcome = zone.answer(&response.to_vec().unwrap(), LOCAL, Transport::Udp);
    assert!(outcome.reply.is_none());
    assert!(outcome.query.is_none());
    let mut status = query("corp.local.", RecordType::A, DNSClass::IN);
    status.metadata.op_code = OpCode::Status;
    let reply = ask(&zone, &status, Transport::Udp).0;
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn hostile_messages_never_panic_and_never_answer_much() {
    let zone = zone(serde_json::json!({}));
    let valid = query("_ldap._tcp.corp.local.", RecordType::SRV, DNSClass::IN)
        .to_vec()
        .unwrap();
    let mut hostile: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
    let header = |qd: u16| {
        let mut h = vec![0xab, 0xcd, 0x01, 0x00];
        h.extend(qd.to_be_bytes());
        h.extend([0, 0, 0, 0, 0, 0]);
        h
    };
    // A pointer to itself, two pointers to each other, a pointer forward past the end.
    for name in [
        &[0xc0, 0x0c][..],
        &[0x01, b'a', 0xc0, 0x0c],
        &[0xc0, 0x0e, 0xc0, 0x0c],
        &[0xc0, 0xff],
        &[0x3f],
        &[0x40, b'a'],
        &[0xff; 300],
    ] {
        let mut m = header(1);
        m.extend(name);
        m.extend([0, 1, 0, 1]);
        hostile.push(m);
    }
    // 65535 questions announced, one present; 255 labels of 63 bytes.
    let mut lying = header(u16::MAX);
    lying.extend([0x01, b'a', 0x00, 0, 1, 0, 1]);
    hostile.push(lying);
    let mut long = header(1);
    for _ in 0..255 {
        long.push(63);
        long.extend([b'a'; 63]);
    }
    long.extend([0, 0, 1, 0, 1]);
    hostile.push(long);
    for seed in 1..=30u64 {
        hostile.push(noise(usize::try_from(seed * 5).unwrap(), seed));
    }
    assert!(hostile.len() >= 50);
    for message in &hostile {
        let outcome = zone.answer(message, LOCAL, Transport::Udp);
        if let Some(reply) = &outcome.reply {
            // Never more than a classic datagram, and only ever an error or a real answer.
            assert!(reply.len() <= 512, "{}", hex::encode(message));
            let parsed = Message::from_vec(reply).unwrap();
            assert_eq!(parsed.metadata.message_type, MessageType::Response);
        }
        if outcome.query.is_none() {
            // Undecodable: FORMERR at most, when the header says query.
            if let Some(reply) = &outcome.reply {
                let parsed = Message::from_vec(reply).unwrap();
                assert_eq!(parsed.metadata.response_code, ResponseCode::FormErr);
            }
        }
    }
    // The self-pointing name in particular: FORMERR with the query's id.
    let mut pointer = header(1);
    pointer.extend([0xc0, 0x0c, 0, 1, 0, 1]);
    let outcome = zone.answer(&pointer, LOCAL, Transport::Udp);
    assert!(outcome.query.is_none());
    let reply = Message::from_vec(&outcome.reply.unwrap()).unwrap();
    assert_eq!(reply.metadata.id, 0xabcd);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn trapster_target_dns_is_read_and_checked() {
    let config = crate::config::Config::parse(
        r#"{"services": {"dns": [{"port": 53, "target_dns": "10.0.0.1"}]}}"#,
        "x",
    )
    .unwrap();
    assert!(config.services.unknown_keys().is_empty());
    assert_eq!(config.services.ports(), [("dns", 53)]);
    let err = crate::config::Config::parse(
        r#"{"services": {"dns": [{"port": 53, "target_dns": "resolver.corp"}]}}"#,
        "x",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("target_dns"), "{err}");
    assert!(
        err.contains("`resolver.corp` is not an IP address"),
        "{err}"
    );
}

fn recursive(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    let mut edns = Edns::new();
    edns.options_mut()
        .insert(EdnsOption::NSID(NSIDPayload::new(Vec::new()).unwrap()));
    m.set_edns(edns);
    m.to_vec().unwrap()
}

#[test]
fn only_recursive_in_queries_outside_the_zone_are_forwarded() {
    let z = zone(serde_json::json!({"target_dns": "10.9.9.9"}));
    assert!(z.recursion);
    let out = z.answer_or_forward(
        &recursive("www.example.org.", RecordType::A),
        LOCAL,
        Transport::Udp,
        &|_| true,
    );
    assert!(out.reply.is_none());
    assert!(out.forward.is_some());
    assert_eq!(out.query.unwrap()["forwarded"], true);
    for (name, qtype) in [
        ("srv01.corp.local.", RecordType::A),
        ("3.2.1.10.in-addr.arpa.", RecordType::PTR),
        ("example.org.", RecordType::AXFR),
    ] {
        let out = z.answer_or_forward(&recursive(name, qtype), LOCAL, Transport::Tcp, &|_| true);
        assert!(out.forward.is_none(), "{name}");
        let reply = Message::from_vec(&out.reply.unwrap()).unwrap();
        assert!(reply.metadata.recursion_available, "{name}");
    }
    // Not allowed to forward (one of the forwarder's own queries): answered as without one.
    let out = z.answer_or_forward(
        &recursive("www.example.org.", RecordType::A),
        LOCAL,
        Transport::Udp,
        &|_| false,
    );
    assert!(out.forward.is_none());
    let reply = Message::from_vec(&out.reply.unwrap()).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn relayed_answers_keep_the_records_and_none_of_the_upstreams_identity() {
    use hickory_proto::rr::{RData, Record, rdata::A};
    let z = zone(serde_json::json!({"target_dns": "10.9.9.9", "server_id": "ns1"}));
    let out = z.answer_or_forward(
        &recursive("www.example.org.", RecordType::A),
        LOCAL,
        Transport::Udp,
        &|_| true,
    );
    let forward = out.forward.unwrap();
    let mut upstream = Message::response(999, OpCode::Query);
    upstream.metadata.authoritative = true;
    upstream.metadata.response_code = ResponseCode::NXDomain;
    upstream.add_query(forward.query.clone());
    upstream.add_answer(Record::from_rdata(
        Name::from_str("www.example.org.").unwrap(),
        60,
        RData::A(A::new(192, 0, 2, 1)),
    ));
    let mut edns = Edns::new();
    edns.options_mut().insert(EdnsOption::NSID(
        NSIDPayload::new(b"dnsmasq-2.89".to_vec()).unwrap(),
    ));
    upstream.set_edns(edns);
    let reply = Message::from_vec(&z.relay(&forward, Some(&upstream)).unwrap()).unwrap();
    assert_eq!(reply.metadata.id, 7);
    assert!(!reply.metadata.authoritative);
    assert!(reply.metadata.recursion_available);
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(reply.answers.len(), 1);
    let nsid = reply.edns.unwrap().option(EdnsCode::NSID).cloned();
    assert_eq!(
        nsid,
        Some(EdnsOption::NSID(NSIDPayload::new(b"ns1".to_vec()).unwrap()))
    );
    let failed = Message::from_vec(&z.relay(&forward, None).unwrap()).unwrap();
    assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);
    assert!(failed.answers.is_empty());
}
