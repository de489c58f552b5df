//! The domain controller's answers, and hostile input: truncations at every length, BER lengths
//! at their maximum, nesting bombs, random bytes and other protocols' openings.

use bytes::Bytes;
use chrono::TimeZone;
use rasn_ldap::{
    AttributeValueAssertion, AuthenticationChoice, BindRequest, ExtendedRequest, Filter,
    LdapMessage, ProtocolOp, SaslCredentials, SearchRequest, SearchRequestDerefAliases,
    SearchRequestScope, UnbindRequest,
};
use serde_json::{Value, json};

use super::{
    LdapConfig, MAX_MESSAGE,
    ber::{FrameError, frame_len},
    ops::{Handled, Next, Report, START_TLS, State, handle},
    rootdse::Names,
};

fn names() -> Names {
    Names {
        server: "DC01".to_owned(),
        domain: "acme.local".to_owned(),
        level: 7,
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc.with_ymd_and_hms(2026, 12, 2, 1, 0, 0).unwrap()
}

fn identity() -> std::sync::Arc<crate::services::proto::shared::ntlm::Identity> {
    std::sync::Arc::new(crate::services::proto::shared::ntlm::Identity::new(
        "DC01",
        "acme.local",
        crate::services::proto::shared::ntlm::ProductVersion::SERVER_2019,
    ))
}

fn plain() -> State {
    State::new(identity(), false, true)
}

fn encode(id: u32, op: ProtocolOp) -> Vec<u8> {
    rasn::ber::encode(&LdapMessage::new(id, op)).unwrap()
}

fn search(base: &str, scope: SearchRequestScope, filter: Filter, attrs: &[&str]) -> Vec<u8> {
    encode(
        2,
        ProtocolOp::SearchRequest(SearchRequest::new(
            base.into(),
            scope,
            SearchRequestDerefAliases::NeverDerefAliases,
            0,
            0,
            false,
            filter,
            attrs.iter().map(|a| (*a).into()).collect(),
        )),
    )
}

fn simple_bind(dn: &str, password: &str) -> Vec<u8> {
    encode(
        1,
        ProtocolOp::BindRequest(BindRequest::new(
            3,
            dn.into(),
            AuthenticationChoice::Simple(Bytes::copy_from_slice(password.as_bytes()).into()),
        )),
    )
}

fn object_class() -> Filter {
    Filter::Present("objectClass".into())
}

/// Every LDAP message in `bytes` (the reply is a sequence of them), decoded by rasn: checks the
/// AD-style encoding is valid BER.
fn replies(bytes: &[u8]) -> Vec<LdapMessage> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = frame_len(rest, MAX_MESSAGE).unwrap().unwrap();
        out.push(rasn::ber::decode::<LdapMessage>(&rest[..len]).unwrap());
        rest = &rest[len..];
    }
    out
}

fn result_of(m: &LdapMessage) -> (u32, String) {
    match &m.protocol_op {
        ProtocolOp::BindResponse(r) => (r.result_code as u32, r.diagnostic_message.0.clone()),
        ProtocolOp::SearchResDone(r) => (r.0.result_code as u32, r.0.diagnostic_message.0.clone()),
        ProtocolOp::ExtendedResp(r) => (r.result_code as u32, r.diagnostic_message.0.clone()),
        ProtocolOp::ModifyResponse(r) => (r.0.result_code as u32, r.0.diagnostic_message.0.clone()),
        ProtocolOp::AddResponse(r) => (r.0.result_code as u32, r.0.diagnostic_message.0.clone()),
        ProtocolOp::DelResponse(r) => (r.0.result_code as u32, r.0.diagnostic_message.0.clone()),
        other => panic!("not a result: {other:?}"),
    }
}

#[test]
fn the_root_dse_is_encoded_as_ad_does_and_matches_nmap() {
    let h = handle(
        &names(),
        &mut plain(),
        &search("", SearchRequestScope::BaseObject, object_class(), &[]),
        now(),
    );
    assert_eq!(h.next, Next::Continue);
    // ^0\x84\0\0..\x02\x01 ... dsServiceName1\x84\0\0\0.\x04.CN=NTDS Settings,CN=DC01,...
    assert_eq!(&h.reply[..3], &[0x30, 0x84, 0]);
    assert_eq!(&h.reply[6..9], &[2, 1, 2]);
    let dn = b"CN=NTDS Settings,CN=DC01,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=acme,DC=local";
    let mut needle = b"dsServiceName1\x84\0\0\0".to_vec();
    needle.push(u8::try_from(dn.len() + 2).unwrap());
    needle.push(0x04);
    needle.push(u8::try_from(dn.len()).unwrap());
    needle.extend_from_slice(dn);
    needle.extend_from_slice(b"0\x84\0");
    assert!(
        h.reply
            .windows(needle.len())
            .any(|w| w == needle.as_slice())
    );
    let msgs = replies(&h.reply);
    assert_eq!(msgs.len(), 2);
    let ProtocolOp::SearchResEntry(entry) = &msgs[0].protocol_op else {
        panic!("no entry");
    };
    assert_eq!(entry.object_name.0, "");
    let get = |name: &str| -> Vec<String> {
        entry
            .attributes
            .iter()
            .find(|a| a.r#type.0 == name)
            .unwrap()
            .vals
            .iter()
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
            .collect()
    };
    assert_eq!(get("defaultNamingContext"), ["DC=acme,DC=local"]);
    assert_eq!(get("dnsHostName"), ["DC01.acme.local"]);
    assert_eq!(get("currentTime"), ["20261202010000.0Z"]);
    assert_eq!(
        get("supportedSASLMechanisms"),
        ["GSSAPI", "GSS-SPNEGO", "EXTERNAL", "DIGEST-MD5"]
    );
    assert_eq!(entry.attributes.len(), 22);
    assert_eq!(result_of(&msgs[1]), (0, String::new()));
    let Report::Query(q) = h.report else {
        panic!("no query")
    };
    assert_eq!(
        Value::Object(q),
        json!({"base": "", "scope": "base", "filter": "(objectClass=*)", "attributes": [], "tls": false})
    );
}

#[test]
fn requested_attributes_are_the_only_ones_returned() {
    let h = handle(
        &names(),
        &mut plain(),
        &search(
            "",
            SearchRequestScope::BaseObject,
            object_class(),
            &["dnsHostName", "NAMINGCONTEXTS"],
        ),
        now(),
    );
    let msgs = replies(&h.reply);
    let ProtocolOp::SearchResEntry(entry) = &msgs[0].protocol_op else {
        panic!("no entry");
    };
    let types: Vec<&str> = entry
        .attributes
        .iter()
        .map(|a| a.r#type.0.as_str())
        .collect();
    assert_eq!(types, ["namingContexts", "dnsHostName"]);
    let h = handle(
        &names(),
        &mut plain(),
        &search("", SearchRequestScope::BaseObject, object_class(), &["1.1"]),
        now(),
    );
    let ProtocolOp::SearchResEntry(entry) = &replies(&h.reply)[0].protocol_op else {
        panic!("no entry");
    };
    assert!(entry.attributes.is_empty());
}

#[test]
fn simple_binds_are_refused_as_ad_refuses_them() {
    let h = handle(
        &names(),
        &mut plain(),
        &simple_bind("CN=admin,CN=Users,DC=acme,DC=local", "s3cret"),
        now(),
    );
    let msgs = replies(&h.reply);
    assert_eq!(
        result_of(&msgs[0]),
        (
            49,
            "80090308: LdapErr: DSID-0C090439, comment: AcceptSecurityContext error, data 52e, v4563\0".to_owned()
        )
    );
    assert_eq!(msgs[0].message_id, 1);
    let Report::Login(fields) = h.report else {
        panic!("no login")
    };
    assert_eq!(
        Value::Object(fields),
        json!({"username": "CN=admin,CN=Users,DC=acme,DC=local", "version": 3, "tls": false,
               "mechanism": "simple", "password": "s3cret"})
    );
    // Anonymous: success, nothing to report.
    let h = handle(&names(), &mut plain(), &simple_bind("", ""), now());
    assert_eq!(result_of(&replies(&h.reply)[0]), (0, String::new()));
    assert_eq!(h.report, Report::None);
    // An unauthenticated bind (DN, no password) succeeds and is reported.
    let h = handle(
        &names(),
        &mut plain(),
        &simple_bind("svc_backup", ""),
        now(),
    );
    assert_eq!(result_of(&replies(&h.reply)[0]).0, 0);
    assert!(matches!(h.report, Report::Login(_)));
}

#[test]
fn sasl_binds_are_reported_with_their_mechanism() {
    let bytes = encode(
        4,
        ProtocolOp::BindRequest(BindRequest::new(
            3,
            "".into(),
            AuthenticationChoice::Sasl(SaslCredentials::new("DIGEST-MD5".into(), None)),
        )),
    );
    let h = handle(&names(), &mut plain(), &bytes, now());
    assert_eq!(result_of(&replies(&h.reply)[0]).0, 7);
    let Report::Login(fields) = h.report else {
        panic!("no login")
    };
    assert_eq!(fields["mechanism"], "DIGEST-MD5");
}

#[test]
fn searches_below_the_root_need_a_bind() {
    let filter = Filter::And(
        vec![
            Filter::EqualityMatch(AttributeValueAssertion::new(
                "objectClass".into(),
                Bytes::from_static(b"user").into(),
            )),
            Filter::Present("servicePrincipalName".into()),
        ]
        .into(),
    );
    let h = handle(
        &names(),
        &mut plain(),
        &search(
            "DC=acme,DC=local",
            SearchRequestScope::WholeSubtree,
            filter,
            &["sAMAccountName"],
        ),
        now(),
    );
    let msgs = replies(&h.reply);
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        result_of(&msgs[0]),
        (
            1,
            "000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed on the connection., data 0, v4563\0".to_owned()
        )
    );
    let Report::Query(q) = h.report else {
        panic!("no query")
    };
    assert_eq!(
        Value::Object(q),
        json!({"base": "DC=acme,DC=local", "scope": "sub",
               // rasn's encoder sorts SET OF members (DER); clients' order is kept on decoding.
               "filter": "(&(servicePrincipalName=*)(objectClass=user))",
               "attributes": ["sAMAccountName"], "tls": false})
    );
}

#[test]
fn start_tls_unbind_abandon_and_unknown_operations() {
    let start = encode(
        1,
        ProtocolOp::ExtendedReq(ExtendedRequest {
            request_name: Bytes::from_static(START_TLS).into(),
            request_value: None,
        }),
    );
    let h = handle(&names(), &mut plain(), &start, now());
    assert_eq!(h.next, Next::StartTls);
    assert_eq!(result_of(&replies(&h.reply)[0]), (0, String::new()));
    let h = handle(
        &names(),
        &mut State::new(identity(), true, false),
        &start,
        now(),
    );
    assert_eq!(
        (h.next, result_of(&replies(&h.reply)[0]).0),
        (Next::Continue, 1)
    );
    let unbind = encode(3, ProtocolOp::UnbindRequest(UnbindRequest));
    let h = handle(&names(), &mut plain(), &unbind, now());
    assert_eq!((h.next, h.reply.len()), (Next::Close, 0));
    let abandon = encode(4, ProtocolOp::AbandonRequest(rasn_ldap::AbandonRequest(2)));
    let h = handle(&names(), &mut plain(), &abandon, now());
    assert_eq!((h.next, h.reply.len()), (Next::Continue, 0));
    let del = encode(
        5,
        ProtocolOp::DelRequest(rasn_ldap::DelRequest("CN=x".into())),
    );
    let h = handle(&names(), &mut plain(), &del, now());
    let msgs = replies(&h.reply);
    assert!(matches!(msgs[0].protocol_op, ProtocolOp::DelResponse(_)));
    assert_eq!(result_of(&msgs[0]).0, 1);
    let other = encode(
        6,
        ProtocolOp::ExtendedReq(ExtendedRequest {
            request_name: Bytes::from_static(b"1.2.3.4").into(),
            request_value: None,
        }),
    );
    let h = handle(&names(), &mut plain(), &other, now());
    assert_eq!(result_of(&replies(&h.reply)[0]).0, 2);
}

#[test]
fn names_come_from_trapster_keys_or_the_sensor() {
    let ctx = crate::services::Context {
        service: crate::event::Service::Ldap,
        port: 389,
        hostname: "srv01".to_owned(),
        domain: "corp.example".to_owned(),
        limits: std::sync::Arc::new(crate::services::ServiceLimits::default()),
    };
    let trapster: LdapConfig = serde_json::from_value(
        json!({"server": "DC01", "domain": "acme", "tld": "local", "level": "Windows2012R2Domain"}),
    )
    .unwrap();
    assert_eq!(
        trapster.names(&ctx),
        Names {
            server: "DC01".to_owned(),
            domain: "acme.local".to_owned(),
            level: 6
        }
    );
    assert_eq!(
        LdapConfig::default().names(&ctx),
        Names {
            server: "SRV01".to_owned(),
            domain: "corp.example".to_owned(),
            level: 7
        }
    );
}

/// Messages every hostile case is derived from.
fn corpus() -> Vec<Vec<u8>> {
    vec![
        simple_bind("CN=admin,DC=acme,DC=local", "s3cret"),
        search(
            "",
            SearchRequestScope::BaseObject,
            object_class(),
            &["dnsHostName"],
        ),
        search(
            "DC=acme,DC=local",
            SearchRequestScope::WholeSubtree,
            Filter::Not(Box::new(object_class())),
            &["cn", "memberOf"],
        ),
        encode(9, ProtocolOp::UnbindRequest(UnbindRequest)),
    ]
}

fn assert_refused(h: &Handled, what: &str) {
    assert_eq!(h.report, Report::Data, "{what}");
    assert_eq!(h.next, Next::Close, "{what}");
    let msgs = replies(&h.reply);
    assert_eq!(msgs[0].message_id, 0, "{what}: notice of disconnection");
    assert_eq!(result_of(&msgs[0]).0, 2, "{what}");
}

#[test]
fn hostile_truncations_at_every_length() {
    let mut cases = 0;
    for message in corpus() {
        for cut in 0..message.len() {
            let prefix = &message[..cut];
            // The framer waits for more, never claims a shorter message.
            match frame_len(prefix, MAX_MESSAGE) {
                Ok(None) => {}
                Ok(Some(n)) => assert_eq!(n, message.len()),
                Err(e) => panic!("cut {cut}: {e}"),
            }
            // A frame cut short and presented whole is refused.
            if cut > 0 {
                assert_refused(
                    &handle(&names(), &mut plain(), prefix, now()),
                    &format!("cut {cut}"),
                );
            }
            cases += 1;
        }
    }
    assert!(cases >= 150, "{cases}");
}

#[test]
fn hostile_lengths_at_their_maximum() {
    // The outer length at every long-form maximum.
    for head in [
        &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..],
        &[0x30, 0x83, 0xff, 0xff, 0xff],
        &[0x30, 0x82, 0xff, 0xff],
        &[0x30, 0x81, 0xff],
        &[0x30, 0x7f],
    ] {
        let result = frame_len(head, 64 * 1024);
        let declared = head.len() as u64
            + head[2..].iter().fold(0u64, |a, &b| (a << 8) | u64::from(b))
                * u64::from(head[1] > 0x80)
            + u64::from(head[1]) * u64::from(head[1] < 0x80);
        if declared as usize <= 64 * 1024 {
            assert_eq!(result, Ok(Some(declared as usize)));
        } else {
            assert_eq!(result, Err(FrameError::TooLong(declared)));
        }
    }
    assert_eq!(
        frame_len(&[0x30, 0x85, 1, 0, 0, 0, 0], MAX_MESSAGE),
        Err(FrameError::TooLong(u64::MAX))
    );
    // Inner lengths set to the maximum inside a correctly framed message.
    let base = simple_bind("CN=a", "pw");
    for at in 2..base.len() {
        for max in [0x7f, 0xff] {
            let mut m = base.clone();
            m[at] = max;
            let h = handle(&names(), &mut plain(), &m, now());
            // Either still a message (a changed value byte) or refused; never a panic.
            assert!(
                h.report == Report::Data || matches!(h.report, Report::Login(_) | Report::None),
                "byte {at}"
            );
        }
    }
    let mut huge_inner = vec![
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x84, 0xff, 0xff, 0xff, 0xff,
    ];
    huge_inner.extend_from_slice(&[0x02, 0x01, 0x03]);
    assert_refused(
        &handle(&names(), &mut plain(), &huge_inner, now()),
        "huge inner",
    );
}

#[test]
fn hostile_nesting_bombs_are_refused_before_decoding() {
    let mut filter = vec![0x87, 0x01, b'a'];
    for _ in 0..5000 {
        let len = u32::try_from(filter.len()).unwrap();
        let mut outer = vec![0xa2, 0x84];
        outer.extend_from_slice(&len.to_be_bytes());
        outer.extend_from_slice(&filter);
        filter = outer;
    }
    let mut body = vec![0x02, 0x01, 0x02, 0x63];
    let mut search = vec![
        0x04, 0x00, 0x0a, 0x01, 0x00, 0x0a, 0x01, 0x00, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x01,
        0x01, 0x00,
    ];
    search.extend_from_slice(&filter);
    search.extend_from_slice(&[0x30, 0x00]);
    body.push(0x84);
    body.extend_from_slice(&u32::try_from(search.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&search);
    let mut message = vec![0x30, 0x84];
    message.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    message.extend_from_slice(&body);
    assert_eq!(frame_len(&message, MAX_MESSAGE), Ok(Some(message.len())));
    assert_refused(
        &handle(&names(), &mut plain(), &message, now()),
        "nesting bomb",
    );
}

#[test]
fn hostile_random_bytes_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3000 {
        let len = usize::try_from(next() % 300).unwrap();
        let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 {
            // Start like a message so the decoder, not the framer, sees it.
            body.splice(0..0, [0x02, 0x01, 0x01]);
        }
        let mut m = vec![0x30, 0x84];
        m.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        m.extend_from_slice(&body);
        let h = handle(&names(), &mut plain(), &m, now());
        assert!(h.next != Next::StartTls, "round {round}");
        // Random bits flipped in a valid message.
        let mut valid = corpus()[usize::try_from(next() % 4).unwrap()].clone();
        let at = usize::try_from(next()).unwrap() % valid.len();
        valid[at] ^= 1 << (next() % 8);
        let _ = handle(&names(), &mut plain(), &valid, now());
    }
}

#[test]
fn hostile_openings_of_other_protocols_are_not_ldap() {
    let openings: [&[u8]; 12] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\x12\x01\x00\x2f\x00\x00\x01\x00",
        b"\x00\x00\x00\x85\xffSMBr",
        b"\x00\x00\x00\x54\xfeSMB@\x00",
        b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00",
        b"\r\n\r\n",
        b"HELP\r\n",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"\xff\xfb\x01",
        b"RFB 003.008\n",
    ];
    for o in openings {
        assert!(
            matches!(frame_len(o, MAX_MESSAGE), Err(FrameError::NotLdap(_))),
            "{o:?}"
        );
    }
    // A SEQUENCE that is not LDAP (an X.509 certificate's opening).
    let cert = [0x30, 0x06, 0x30, 0x04, 0x02, 0x02, 0x01, 0x00];
    assert_refused(&handle(&names(), &mut plain(), &cert, now()), "certificate");
    // Indefinite length, which LDAP forbids.
    assert_eq!(
        frame_len(&[0x30, 0x80, 0, 0], MAX_MESSAGE),
        Err(FrameError::Indefinite)
    );
}

fn sasl_bind(id: u32, mechanism: &str, token: Option<&[u8]>) -> Vec<u8> {
    encode(
        id,
        ProtocolOp::BindRequest(BindRequest::new(
            3,
            "".into(),
            AuthenticationChoice::Sasl(SaslCredentials::new(
                mechanism.into(),
                token.map(|t| Bytes::copy_from_slice(t).into()),
            )),
        )),
    )
}

#[test]
fn sasl_ntlm_binds_give_a_netntlmv2_line_that_verifies() {
    use crate::services::proto::shared::ntlm::{client, crypto::verify_hashcat};
    let mut state = plain();
    // An empty first step is answered with an empty challenge.
    let h = handle(&names(), &mut state, &sasl_bind(1, "NTLM", None), now());
    let ProtocolOp::BindResponse(r) = &replies(&h.reply)[0].protocol_op else {
        panic!("no bind response")
    };
    assert_eq!(r.result_code as u32, 14);
    let negotiate = client::negotiate(client::WINDOWS_CLIENT_FLAGS);
    let h = handle(
        &names(),
        &mut state,
        &sasl_bind(2, "NTLM", Some(&negotiate)),
        now(),
    );
    let ProtocolOp::BindResponse(r) = &replies(&h.reply)[0].protocol_op else {
        panic!("no bind response")
    };
    assert_eq!((r.result_code as u32, h.report.clone()), (14, Report::None));
    let challenge = r.server_sasl_creds.clone().unwrap().to_vec();
    let auth = client::authenticate(
        &challenge,
        "alice",
        "ACME",
        "WKS7",
        "Autumn2026!",
        client::Response::V2 {
            client_challenge: [7; 8],
            time: 133_000_000_000_000_000,
        },
    );
    let h = handle(
        &names(),
        &mut state,
        &sasl_bind(3, "NTLM", Some(&auth)),
        now(),
    );
    let msgs = replies(&h.reply);
    assert_eq!(
        result_of(&msgs[0]),
        (
            49,
            "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 52e, v4563\0".to_owned()
        )
    );
    let Report::Login(fields) = h.report else {
        panic!("no login")
    };
    let line = fields["hashcat"].as_str().unwrap();
    assert!(line.starts_with("alice::ACME:"), "{line}");
    assert!(verify_hashcat(line, "Autumn2026!"));
    assert!(!verify_hashcat(line, "Autumn2025!"));
    assert_eq!(
        (
            &fields["username"],
            &fields["domain"],
            &fields["workstation"],
            &fields["mechanism"]
        ),
        (
            &json!("alice"),
            &json!("ACME"),
            &json!("WKS7"),
            &json!("NTLM")
        )
    );
    assert!(state.ntlm.is_none(), "the exchange ends with the bind");
    // Garbage in the middle of an exchange is refused and reported.
    let h = handle(
        &names(),
        &mut state,
        &sasl_bind(4, "GSS-SPNEGO", Some(b"\x60\x03\x06\x01\x00")),
        now(),
    );
    assert_eq!(result_of(&replies(&h.reply)[0]).0, 49);
}
