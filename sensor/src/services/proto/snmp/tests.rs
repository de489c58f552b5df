//! The SNMP agent without sockets: answers and events for v1, v2c and v3 messages built with
//! `rasn`, the hashcat line checked against the password, and hostile datagrams (every
//! truncation, BER lengths at their maximum, deep nesting, random bytes).

use crate::services::proto::shared::testing::noise;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use rasn::types::{Integer, ObjectIdentifier, OctetString};
use rasn_snmp::{
    v2::{BulkPdu, GetBulkRequest, GetNextRequest, GetRequest, Pdu, Pdus, VarBind, VarBindValue},
    v2c,
    v3::{HeaderData, Message, ScopedPdu, ScopedPduData, USMSecurityParameters},
};
use serde_json::Value;

use super::{Agent, Peer, SnmpConfig};
use crate::{
    event::Action,
    services::framework::udp::{Exchange, UdpSession},
};

fn agent() -> Arc<Agent> {
    let config: SnmpConfig = serde_json::from_value(serde_json::json!({
        "communities": ["public", "s3cret"],
        "uptime_offset_secs": 100,
    }))
    .unwrap();
    Arc::new(Agent::new(config, "srv01"))
}

fn oid(arcs: &[u32]) -> ObjectIdentifier {
    ObjectIdentifier::new(arcs.to_vec()).unwrap()
}

fn binds(oids: &[&[u32]]) -> Vec<VarBind> {
    oids.iter()
        .map(|o| VarBind {
            name: oid(o),
            value: VarBindValue::Unspecified,
        })
        .collect()
}

fn pdu(oids: &[&[u32]]) -> Pdu {
    Pdu {
        request_id: 4242,
        error_status: 0,
        error_index: 0,
        variable_bindings: binds(oids),
    }
}

fn community_message(version: i64, community: &str, data: Pdus) -> Vec<u8> {
    rasn::ber::encode(&v2c::Message {
        version: Integer::from(version),
        community: OctetString::from(community.as_bytes().to_vec()),
        data,
    })
    .unwrap()
}

fn send(peer: &mut Peer, datagram: &[u8]) -> (Option<Vec<u8>>, Exchange) {
    let mut out = Exchange::default();
    let reply = peer.handle(datagram, &mut out);
    (reply, out)
}

fn response(reply: &[u8]) -> Pdu {
    let message: v2c::Message<Pdus> = rasn::ber::decode(reply).unwrap();
    match message.data {
        Pdus::Response(r) => r.0,
        other => panic!("not a response: {other:?}"),
    }
}

const SYS_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];
const SYS_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];

fn text(bind: &VarBind) -> String {
    match &bind.value {
        VarBindValue::Value(rasn_smi::v2::ObjectSyntax::Simple(
            rasn_smi::v2::SimpleSyntax::String(s),
        )) => String::from_utf8(s.to_vec()).unwrap(),
        other => panic!("not a string: {other:?}"),
    }
}

#[test]
fn v2c_get_answers_and_logs_the_community_once() {
    let mut peer = Peer::new(agent());
    let request = community_message(1, "public", Pdus::GetRequest(GetRequest(pdu(&[SYS_NAME]))));
    let (reply, out) = send(&mut peer, &request);
    let pdu = response(&reply.unwrap());
    assert_eq!(pdu.request_id, 4242);
    assert_eq!(pdu.error_status, 0);
    assert_eq!(text(&pdu.variable_bindings[0]), "srv01");
    let events = out.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].0, Action::Login);
    assert_eq!(
        Value::Object(events[0].2.clone()),
        serde_json::json!({"version": "2c", "community": "public", "matched": true})
    );
    assert_eq!(events[1].0, Action::Query);
    assert_eq!(
        Value::Object(events[1].2.clone()),
        serde_json::json!({"version": "2c", "pdu": "get", "varbind": "1.3.6.1.2.1.1.5.0",
            "oids": ["1.3.6.1.2.1.1.5.0"], "community": "public", "matched": true})
    );
    // The same community again: a query, no second login.
    let (reply, out) = send(&mut peer, &request);
    assert!(reply.is_some());
    assert_eq!(out.events().len(), 1);
    assert_eq!(out.events()[0].0, Action::Query);
}

#[test]
fn wrong_community_is_logged_and_not_answered() {
    let mut peer = Peer::new(agent());
    let request = community_message(0, "private", Pdus::GetRequest(GetRequest(pdu(&[SYS_NAME]))));
    let (reply, out) = send(&mut peer, &request);
    assert_eq!(reply, None);
    assert_eq!(
        Value::Object(out.events()[0].2.clone()),
        serde_json::json!({"version": "1", "community": "private", "matched": false})
    );
    assert_eq!(out.events()[1].2["matched"], false);
    assert_eq!(out.events()[1].2["pdu"], "get");
}

#[test]
fn v1_unknown_object_is_no_such_name_and_v2c_no_such_object() {
    let mut peer = Peer::new(agent());
    let missing: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 9];
    let v1 = community_message(
        0,
        "public",
        Pdus::GetRequest(GetRequest(pdu(&[SYS_NAME, missing]))),
    );
    let pdu1 = response(&send(&mut peer, &v1).0.unwrap());
    assert_eq!(pdu1.error_status, Pdu::ERROR_STATUS_NO_SUCH_NAME);
    assert_eq!(pdu1.error_index, 2);
    let v2 = community_message(
        1,
        "public",
        Pdus::GetRequest(GetRequest(pdu(&[missing, &[1, 3, 6, 1, 2, 1, 1, 5, 1]]))),
    );
    let pdu2 = response(&send(&mut peer, &v2).0.unwrap());
    assert_eq!(pdu2.error_status, 0);
    assert_eq!(pdu2.variable_bindings[0].value, VarBindValue::NoSuchObject);
    assert_eq!(
        pdu2.variable_bindings[1].value,
        VarBindValue::NoSuchInstance
    );
}

#[test]
fn getnext_walks_the_whole_mib_in_order_then_ends() {
    let mut peer = Peer::new(agent());
    let mut cursor = vec![1u32, 3, 6, 1, 2, 1];
    let mut seen = Vec::new();
    for _ in 0..100 {
        let request = community_message(
            1,
            "public",
            Pdus::GetNextRequest(GetNextRequest(pdu(&[&cursor]))),
        );
        let pdu = response(&send(&mut peer, &request).0.unwrap());
        let bind = &pdu.variable_bindings[0];
        if bind.value == VarBindValue::EndOfMibView {
            break;
        }
        assert!(bind.name.to_vec() > cursor, "walk goes forward");
        cursor = bind.name.to_vec();
        seen.push(super::mib::dotted(&cursor));
    }
    // 7 system scalars, ifNumber, 8 columns x 2 interfaces.
    assert_eq!(seen.len(), 7 + 1 + 16);
    assert_eq!(seen[0], "1.3.6.1.2.1.1.1.0");
    assert_eq!(seen[7], "1.3.6.1.2.1.2.1.0");
    assert_eq!(seen[8], "1.3.6.1.2.1.2.2.1.1.1");
    assert_eq!(seen[10], "1.3.6.1.2.1.2.2.1.2.1");
    assert_eq!(seen.last().unwrap(), "1.3.6.1.2.1.2.2.1.8.2");
    // v1 past the end: noSuchName.
    let request = community_message(
        0,
        "public",
        Pdus::GetNextRequest(GetNextRequest(pdu(&[&cursor]))),
    );
    let pdu = response(&send(&mut peer, &request).0.unwrap());
    assert_eq!(pdu.error_status, Pdu::ERROR_STATUS_NO_SUCH_NAME);
    assert_eq!(pdu.error_index, 1);
}

#[test]
fn getbulk_is_bounded_whatever_the_client_asks() {
    let mut peer = Peer::new(agent());
    for (non_repeaters, max_repetitions) in [(0, 10), (0, u32::MAX), (u32::MAX, u32::MAX), (1, 3)] {
        let request = community_message(
            1,
            "public",
            Pdus::GetBulkRequest(GetBulkRequest(BulkPdu {
                request_id: 7,
                non_repeaters,
                max_repetitions,
                variable_bindings: binds(&[&[1, 3, 6, 1, 2, 1, 1], &[1, 3, 6, 1, 2, 1, 2]]),
            })),
        );
        let reply = send(&mut peer, &request).0.unwrap();
        assert!(reply.len() <= 1_472, "{} bytes", reply.len());
        let pdu = response(&reply);
        let n = pdu.variable_bindings.len();
        match (non_repeaters, max_repetitions) {
            (0, 10) => assert_eq!(n, 20),
            (1, 3) => {
                assert_eq!(n, 4);
                assert_eq!(
                    super::mib::dotted(&pdu.variable_bindings[0].name),
                    "1.3.6.1.2.1.1.1.0"
                );
                assert_eq!(
                    super::mib::dotted(&pdu.variable_bindings[3].name),
                    "1.3.6.1.2.1.2.2.1.1.2"
                );
            }
            (u32::MAX, _) => assert_eq!(n, 2),
            _ => assert!((1..=64).contains(&n), "{n}"),
        }
    }
    // v1 has no get-bulk: dropped.
    let request = community_message(
        0,
        "public",
        Pdus::GetBulkRequest(GetBulkRequest(BulkPdu {
            request_id: 7,
            non_repeaters: 0,
            max_repetitions: 5,
            variable_bindings: binds(&[SYS_DESCR]),
        })),
    );
    assert_eq!(send(&mut peer, &request).0, None);
}

/// RFC 3414 A.2.1: the password to key algorithm, then localisation to `engine`.
fn md5_key(password: &[u8], engine: &[u8]) -> Vec<u8> {
    let mut hasher = Md5::new();
    let mut fed = 0usize;
    while fed < 1_048_576 {
        hasher.update(password);
        fed += password.len();
    }
    // The RFC feeds exactly 1 MiB; passwords of this test divide it evenly.
    assert_eq!(fed, 1_048_576);
    let ku = hasher.finalize();
    let mut local = Md5::new();
    local.update(ku);
    local.update(engine);
    local.update(ku);
    local.finalize().to_vec()
}

/// HMAC-MD5-96 of `message` under `password` for `engine`.
fn md5_96(password: &[u8], engine: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Md5>::new_from_slice(&md5_key(password, engine)).unwrap();
    mac.update(message);
    mac.finalize().into_bytes()[..12].to_vec()
}

#[test]
fn key_localisation_matches_rfc_3414() {
    // A.3.1: "maplesyrup" with engine id 00..02 (12 bytes); "maplesyrup" is 10 bytes, which
    // does not divide 1 MiB: this vector is checked with a feed cut at 1 MiB.
    let password = b"maplesyrup";
    let mut hasher = Md5::new();
    let stream: Vec<u8> = password.iter().copied().cycle().take(1_048_576).collect();
    hasher.update(&stream);
    let ku = hasher.finalize();
    let engine = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mut local = Md5::new();
    local.update(ku);
    local.update(engine);
    local.update(ku);
    assert_eq!(
        hex::encode(local.finalize()),
        "526f5eed9fcce26f8964c2930787d82b"
    );
}

fn v3_message(engine: &[u8], user: &str, flags: u8, auth: &[u8]) -> Message {
    let mut message = Message {
        version: Integer::from(3),
        global_data: HeaderData {
            message_id: Integer::from(123_456_789),
            max_size: Integer::from(65_507),
            flags: OctetString::from(vec![flags]),
            security_model: Integer::from(3),
        },
        security_parameters: OctetString::from_static(b""),
        scoped_data: ScopedPduData::CleartextPdu(ScopedPdu {
            engine_id: OctetString::from(engine.to_vec()),
            name: OctetString::from_static(b""),
            data: Pdus::GetRequest(GetRequest(pdu(&[SYS_NAME]))),
        }),
    };
    let usm = USMSecurityParameters {
        authoritative_engine_id: OctetString::from(engine.to_vec()),
        authoritative_engine_boots: Integer::from(1),
        authoritative_engine_time: Integer::from(100),
        user_name: OctetString::from(user.as_bytes().to_vec()),
        authentication_parameters: OctetString::from(auth.to_vec()),
        privacy_parameters: OctetString::from_static(b""),
    };
    assert!(
        message
            .encode_security_parameters(rasn::Codec::Ber, &usm)
            .is_ok()
    );
    message
}

fn report_oid(reply: &[u8]) -> (String, Vec<u8>) {
    let message: Message = rasn::ber::decode(reply).unwrap();
    let Ok(usm) = message.decode_security_parameters::<USMSecurityParameters>(rasn::Codec::Ber)
    else {
        panic!("no USM parameters");
    };
    let ScopedPduData::CleartextPdu(scoped) = message.scoped_data else {
        panic!("encrypted report");
    };
    let Pdus::Report(report) = scoped.data else {
        panic!("not a report");
    };
    (
        super::mib::dotted(&report.0.variable_bindings[0].name),
        usm.authoritative_engine_id.to_vec(),
    )
}

#[test]
fn v3_discovery_then_authenticated_request_gives_a_crackable_line() {
    let agent = agent();
    let mut peer = Peer::new(Arc::clone(&agent));
    // Discovery: no engine id, no user, reportable.
    let discovery = rasn::ber::encode(&v3_message(&[], "", 4, &[])).unwrap();
    let (reply, out) = send(&mut peer, &discovery);
    let (oid, engine) = report_oid(&reply.unwrap());
    assert_eq!(oid, "1.3.6.1.6.3.15.1.1.4.0");
    assert_eq!(engine, agent.engine_id);
    assert_eq!(engine.len(), 17);
    assert_eq!(&engine[..5], &[0x80, 0x00, 0x1f, 0x88, 0x80]);
    assert_eq!(out.events().len(), 1, "no login without a user");
    assert_eq!(out.events()[0].2["version"], "3");

    // The authenticated request, signed as net-snmp would with "password1" (9 bytes do not
    // divide 1 MiB: use an 8-byte one).
    let password = b"pass1234";
    let unsigned = v3_message(&engine, "admin", 5, &[0; 12]);
    let zeroed = rasn::ber::encode(&unsigned).unwrap();
    let digest = md5_96(password, &engine, &zeroed);
    let signed = rasn::ber::encode(&v3_message(&engine, "admin", 5, &digest)).unwrap();
    let (reply, out) = send(&mut peer, &signed);
    assert_eq!(report_oid(&reply.unwrap()).0, "1.3.6.1.6.3.15.1.1.3.0");
    let login = &out.events()[0];
    assert_eq!(login.0, Action::Login);
    assert_eq!(login.2["username"], "admin");
    assert_eq!(login.2["security_level"], "authNoPriv");
    assert_eq!(login.2["auth_params"], hex::encode(&digest));
    let line = login.2["hashcat"].as_str().unwrap();
    let fields: Vec<&str> = line.split('$').collect();
    assert_eq!(fields[..4], ["", "SNMPv3", "0", "23456789"]);
    assert_eq!(fields[4], hex::encode(&zeroed));
    assert_eq!(fields[5], hex::encode(&engine));
    assert_eq!(fields[6], hex::encode(&digest));
    // The line verifies against the password, and not against another.
    let message = hex::decode(fields[4]).unwrap();
    let engine_id = hex::decode(fields[5]).unwrap();
    assert_eq!(
        hex::encode(md5_96(password, &engine_id, &message)),
        fields[6]
    );
    assert_ne!(
        hex::encode(md5_96(b"pass1235", &engine_id, &message)),
        fields[6]
    );
    assert_eq!(out.events()[1].0, Action::Query);
    assert_eq!(out.events()[1].2["username"], "admin");

    // Not reportable: logged, no answer.
    let quiet = rasn::ber::encode(&v3_message(&engine, "admin", 1, &digest)).unwrap();
    let (reply, out) = send(&mut peer, &quiet);
    assert_eq!(reply, None);
    assert_eq!(out.events().len(), 1, "login already logged for this user");
}

#[test]
fn hostile_datagrams_get_no_answer_and_are_logged() {
    let agent = agent();
    let valid = community_message(1, "public", Pdus::GetRequest(GetRequest(pdu(&[SYS_NAME]))));
    let v3 = rasn::ber::encode(&v3_message(&agent.engine_id, "admin", 5, &[7; 12])).unwrap();
    let mut hostile: Vec<Vec<u8>> = Vec::new();
    for message in [&valid, &v3] {
        for len in 0..message.len() {
            hostile.push(message[..len].to_vec());
        }
    }
    // Lengths at their maximum, indefinite, and longer than the datagram.
    for header in [
        &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..],
        &[0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x30, 0xff],
        &[0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00],
        &[0x30, 0x06, 0x02, 0x84, 0x7f, 0xff, 0xff, 0xff],
        &[
            0x30, 0x0a, 0x02, 0x01, 0x01, 0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00,
        ],
        &[0x30, 0x03, 0x02, 0x01, 0x05],
        &[0x30, 0x00],
        &[0x04, 0x00],
        &[0xa0, 0x00],
    ] {
        hostile.push(header.to_vec());
    }
    // A 200-byte version integer, an OID arc beyond u32, 2000 nested sequences.
    let mut big_int = vec![0x30, 0x81, 0xcb, 0x02, 0x81, 0xc8];
    big_int.extend([0x7f; 200]);
    hostile.push(big_int);
    let mut wide_arc = valid.clone();
    let at = wide_arc.len() - 2 - 8;
    wide_arc.splice(at..at + 8, [0x2b, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00]);
    hostile.push(wide_arc);
    let mut nested = Vec::new();
    for _ in 0..2_000 {
        nested.extend([0x30, 0x80]);
    }
    hostile.push(nested);
    for seed in 1..=40u64 {
        hostile.push(noise(usize::try_from(seed * 7).unwrap(), seed));
    }
    assert!(hostile.len() >= 50);
    for datagram in &hostile {
        let mut peer = Peer::new(Arc::clone(&agent));
        let (reply, out) = send(&mut peer, datagram);
        assert_eq!(reply, None, "{}", hex::encode(datagram));
        // Undecodable: one data event with the bytes; decodable odd messages: logged too.
        assert!(!out.events().is_empty(), "{}", hex::encode(datagram));
        if out.events()[0].0 == Action::Data {
            assert_eq!(&out.events()[0].1, datagram);
        }
    }
}
