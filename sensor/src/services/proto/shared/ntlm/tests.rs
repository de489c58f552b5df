//! MS-NLMP 4.2 test vectors, whole exchanges with computed responses, and hostile tokens.

use std::sync::Arc;

use super::{
    Exchange, Identity, Kind, NtlmError, ProductVersion, Step, capture,
    client::{self, Response, WINDOWS_CLIENT_FLAGS},
    crypto::{nt_hash, nt_proof_str, nt_response_v1, ntowf_v2, verify_hashcat},
    message::{self, flags},
    spnego,
};

const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
const CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn identity() -> Arc<Identity> {
    Arc::new(Identity::new(
        "srv01",
        "corp.local",
        ProductVersion::SERVER_2019,
    ))
}

#[test]
fn one_way_functions_match_ms_nlmp_4_2() {
    assert_eq!(
        nt_hash("Password").to_vec(),
        h("a4f49c406510bdcab6824ee7c30fd852")
    );
    assert_eq!(
        ntowf_v2("Password", "User", "Domain").to_vec(),
        h("0c868a403bfd7a93a3001ef22ef02e3f")
    );
    // 4.2.2.2.1 NTLMv1 response.
    assert_eq!(
        nt_response_v1("Password", &SERVER_CHALLENGE, None).to_vec(),
        h("67c43011f30298a2ad35ece64f16331c44bdbed927841f94")
    );
    // 4.2.3.2.2 NTLMv1 with extended session security.
    assert_eq!(
        nt_response_v1("Password", &SERVER_CHALLENGE, Some(&CLIENT_CHALLENGE)).to_vec(),
        h("7537f803ae367128ca458204bde7caf81e97ed2683267232")
    );
    // 4.2.4.2.2 NTProofStr, over the blob with the example's AV pairs (Domain, Server).
    let av = h("02000c0044006f006d00610069006e0001000c00530065007200760065007200 00000000");
    let blob = client::v2_blob(&CLIENT_CHALLENGE, 0, &av);
    assert_eq!(
        nt_proof_str("Password", "User", "Domain", &SERVER_CHALLENGE, &blob).to_vec(),
        h("68cd0ab851e51c96aabc927bebef6a1c")
    );
}

#[test]
fn identity_from_config() {
    let id = identity();
    assert_eq!(id.netbios_computer, "SRV01");
    assert_eq!(id.netbios_domain, "CORP");
    assert_eq!(id.dns_computer, "srv01.corp.local");
    assert_eq!(id.dns_domain, "corp.local");
    assert_eq!(id.dns_tree.as_deref(), Some("corp.local"));
    let split = Identity::new("dc1.ad.example.com", "", ProductVersion::SERVER_2022);
    assert_eq!(
        (
            split.netbios_computer.as_str(),
            split.netbios_domain.as_str()
        ),
        ("DC1", "AD")
    );
    assert_eq!(split.dns_computer, "dc1.ad.example.com");
    let alone = Identity::new("fileserver", "", ProductVersion::SERVER_2016);
    assert_eq!(alone.netbios_domain, "FILESERVER");
    assert_eq!(alone.dns_tree, None);
    let long = Identity::new(
        "averyveryverylongcomputername",
        "x",
        ProductVersion::default(),
    );
    assert_eq!(long.netbios_computer, "AVERYVERYVERYLO");
    assert_eq!(
        ProductVersion::parse("2016"),
        Some(ProductVersion::SERVER_2016)
    );
    assert_eq!(
        ProductVersion::parse("Windows Server 2022"),
        Some(ProductVersion::SERVER_2022)
    );
    assert_eq!(
        ProductVersion::parse("6.1.7601"),
        Some(ProductVersion::new(6, 1, 7601))
    );
    assert_eq!(ProductVersion::parse("10.0"), None);
    assert_eq!(ProductVersion::parse("x.y.z"), None);
}

#[test]
fn the_challenge_answers_the_client_and_names_the_server() {
    let c = message::build_challenge(&identity(), WINDOWS_CLIENT_FLAGS, &SERVER_CHALLENGE, 42);
    assert_eq!(message::message_type(&c), Some(message::CHALLENGE));
    let f = u32::from_le_bytes(c[20..24].try_into().unwrap());
    for want in [
        flags::UNICODE,
        flags::NTLM,
        flags::EXTENDED_SESSIONSECURITY,
        flags::TARGET_INFO,
        flags::VERSION,
        flags::TARGET_TYPE_DOMAIN,
        flags::REQUEST_TARGET,
        flags::KEY_128,
        flags::KEY_56,
    ] {
        assert_ne!(f & want, 0, "flag {want:#x} in {f:#x}");
    }
    assert_eq!(f & flags::OEM, 0);
    assert_eq!(f & flags::LM_KEY, 0);
    // Target name: the NetBIOS domain, UTF-16.
    assert_eq!(
        message::field(&c, 12).unwrap(),
        super::crypto::utf16le("CORP")
    );
    // Version 10.0.17763, revision 15.
    assert_eq!(&c[48..56], &[10, 0, 0x63, 0x45, 0, 0, 0, 15]);
    let (chal, info) = client::read_challenge(&c).unwrap();
    assert_eq!(chal, SERVER_CHALLENGE);
    let mut pairs = Vec::new();
    let mut at = 0;
    while at + 4 <= info.len() {
        let id = u16::from_le_bytes([info[at], info[at + 1]]);
        let len = usize::from(u16::from_le_bytes([info[at + 2], info[at + 3]]));
        pairs.push((id, info[at + 4..at + 4 + len].to_vec()));
        at += 4 + len;
    }
    let text = |v: &[u8]| message::text(v, true);
    assert_eq!(pairs.len(), 7);
    assert_eq!((pairs[0].0, text(&pairs[0].1)), (2, "CORP".to_owned()));
    assert_eq!((pairs[1].0, text(&pairs[1].1)), (1, "SRV01".to_owned()));
    assert_eq!(
        (pairs[2].0, text(&pairs[2].1)),
        (4, "corp.local".to_owned())
    );
    assert_eq!(
        (pairs[3].0, text(&pairs[3].1)),
        (3, "srv01.corp.local".to_owned())
    );
    assert_eq!(
        (pairs[4].0, text(&pairs[4].1)),
        (5, "corp.local".to_owned())
    );
    assert_eq!(
        (pairs[5].0, pairs[5].1.clone()),
        (7, 42u64.to_le_bytes().to_vec())
    );
    assert_eq!(pairs[6], (0, Vec::new()));
    // An OEM-only client gets OEM; no ESS when not asked.
    let oem = message::answer_flags(flags::OEM | flags::NTLM, true);
    assert_eq!(oem & (flags::OEM | flags::UNICODE), flags::OEM);
    assert_eq!(oem & flags::EXTENDED_SESSIONSECURITY, 0);
}

fn run(
    ex: &mut Exchange,
    wrap: bool,
    user: &str,
    domain: &str,
    password: &str,
    r: Response,
) -> super::Captured {
    let neg = client::negotiate(WINDOWS_CLIENT_FLAGS);
    let first = if wrap { spnego_init(&neg) } else { neg };
    let Step::Reply(reply) = ex.step(&first).unwrap() else {
        panic!("no challenge")
    };
    let challenge = if wrap {
        let t = spnego::parse_client(&reply).unwrap();
        assert_eq!(t.state, Some(1), "accept-incomplete");
        t.token.unwrap()
    } else {
        reply
    };
    let auth = client::authenticate(&challenge, user, domain, "WKS7", password, r);
    let second = if wrap { spnego_resp(&auth) } else { auth };
    match ex.step(&second).unwrap() {
        Step::Done(c) => c,
        Step::Reply(_) => panic!("no capture"),
    }
}

/// A client's NegTokenInit carrying `token`, GSS-framed, offering NTLMSSP.
fn spnego_init(token: &[u8]) -> Vec<u8> {
    use yasna::{Tag, models::ObjectIdentifier};
    yasna::construct_der(|w| {
        w.write_tagged_implicit(Tag::application(0), |w| {
            w.write_sequence(|w| {
                w.next()
                    .write_oid(&ObjectIdentifier::from_slice(spnego::SPNEGO_OID));
                w.next().write_tagged(Tag::context(0), |w| {
                    w.write_sequence(|w| {
                        w.next().write_tagged(Tag::context(0), |w| {
                            w.write_sequence(|w| {
                                w.next()
                                    .write_oid(&ObjectIdentifier::from_slice(spnego::NTLMSSP_OID));
                            });
                        });
                        w.next()
                            .write_tagged(Tag::context(2), |w| w.write_bytes(token));
                    });
                });
            });
        });
    })
}

fn spnego_resp(token: &[u8]) -> Vec<u8> {
    use yasna::Tag;
    yasna::construct_der(|w| {
        w.write_tagged(Tag::context(1), |w| {
            w.write_sequence(|w| {
                w.next()
                    .write_tagged(Tag::context(2), |w| w.write_bytes(token));
                w.next()
                    .write_tagged(Tag::context(3), |w| w.write_bytes(&[0; 16]));
            });
        });
    })
}

#[test]
fn ntlmv2_capture_verifies_against_the_password() {
    for wrap in [false, true] {
        let mut ex = Exchange::new(identity());
        let r = Response::V2 {
            client_challenge: [7; 8],
            time: 133_000_000_000_000_000,
        };
        let c = run(&mut ex, wrap, "alice", "CORP", "Summer2024!", r);
        assert_eq!(c.kind, Kind::V2);
        assert_eq!(
            (
                c.username.as_str(),
                c.domain.as_str(),
                c.workstation.as_str()
            ),
            ("alice", "CORP", "WKS7")
        );
        assert_eq!(c.client_version.as_deref(), Some("10.0.19041"));
        let line = c.hashcat.clone().unwrap();
        let fields: Vec<&str> = line.split(':').collect();
        assert_eq!(fields.len(), 6);
        assert_eq!(
            &fields[..4],
            &["alice", "", "CORP", &hex::encode(ex.challenge())]
        );
        assert_eq!(fields[4].len(), 32);
        assert!(fields[5].starts_with("0101000000000000"));
        assert!(verify_hashcat(&line, "Summer2024!"));
        assert!(!verify_hashcat(&line, "Summer2024"));
        assert_eq!(ex.reject().is_some(), wrap);
        let extra = c.extra();
        assert_eq!(extra["ntlm_version"], "NTLMv2");
        assert_eq!(extra["hashcat"], line.as_str());
    }
}

#[test]
fn ntlmv1_and_ess_captures_verify() {
    let mut ex = Exchange::with_challenge(identity(), SERVER_CHALLENGE);
    let c = run(&mut ex, false, "User", "Domain", "Password", Response::V1);
    assert_eq!(c.kind, Kind::V1);
    let line = c.hashcat.unwrap();
    assert_eq!(
        line,
        "User::Domain:67c43011f30298a2ad35ece64f16331c44bdbed927841f94:67c43011f30298a2ad35ece64f16331c44bdbed927841f94:0123456789abcdef"
    );
    assert!(verify_hashcat(&line, "Password"));
    let mut ex = Exchange::with_challenge(identity(), SERVER_CHALLENGE);
    let c = run(
        &mut ex,
        true,
        "User",
        "Domain",
        "Password",
        Response::V1Ess(CLIENT_CHALLENGE),
    );
    assert_eq!(c.kind, Kind::V1Ess);
    let line = c.hashcat.unwrap();
    assert_eq!(
        line,
        "User::Domain:aaaaaaaaaaaaaaaa00000000000000000000000000000000:7537f803ae367128ca458204bde7caf81e97ed2683267232:0123456789abcdef"
    );
    assert!(verify_hashcat(&line, "Password"));
    assert!(!verify_hashcat(&line, "password"));
}

#[test]
fn anonymous_has_no_line() {
    let mut ex = Exchange::new(identity());
    let c = run(&mut ex, true, "", "", "", Response::Anonymous);
    assert_eq!(c.kind, Kind::Anonymous);
    assert_eq!(c.hashcat, None);
    assert_eq!(c.username, "");
}

#[test]
fn server_tokens_are_der_that_parses_back() {
    let init = spnego::server_init(&[spnego::NTLMSSP_OID]);
    assert_eq!(
        init,
        h("601c06062b0601050502a0123010a00e300c060a2b06010401823702020a")
    );
    let t = spnego::parse_client(&init).unwrap();
    assert_eq!(t.mechs, vec!["1.3.6.1.4.1.311.2.2.10".to_owned()]);
    let r = spnego::resp(spnego::NegState::Reject, None, None);
    assert_eq!(r, h("a1073005a0030a0102"));
}

#[test]
fn hostile_tokens_are_refused_without_panicking() {
    let neg = client::negotiate(WINDOWS_CLIENT_FLAGS);
    let wrapped = spnego_init(&neg);
    let mut ex = Exchange::new(identity());
    let Step::Reply(reply) = ex.step(&neg).unwrap() else {
        panic!()
    };
    let auth = client::authenticate(
        &reply,
        "bob",
        "CORP",
        "W",
        "pw",
        Response::V2 {
            client_challenge: [1; 8],
            time: 1,
        },
    );
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for msg in [&neg, &wrapped, &auth, &spnego_resp(&auth)] {
        for cut in 0..msg.len() {
            cases.push(msg[..cut].to_vec());
        }
    }
    // Every length and offset field at its maximum.
    for at in [12usize, 14, 16, 20, 22, 24, 28, 36, 44, 52] {
        let mut m = auth.clone();
        m[at..at + 4].copy_from_slice(&[0xff; 4]);
        cases.push(m);
    }
    let mut rng = 0x1234_5678_u32;
    for _ in 0..64 {
        let len = (rng % 300) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (rng >> 16) as u8
            })
            .collect();
        cases.push(bytes);
    }
    cases.push(b"GET / HTTP/1.1\r\n\r\n".to_vec());
    cases.push(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec());
    cases.push(vec![0x60, 0x84, 0xff, 0xff, 0xff, 0xff]);
    cases.push(vec![0xa1, 0x80, 0x00, 0x00]);
    assert!(cases.len() > 50);
    for case in &cases {
        let _ = spnego::parse_client(case);
        let _ = message::parse_negotiate(case);
        let _ = message::parse_authenticate(case);
        let mut fresh = Exchange::new(identity());
        let _ = fresh.step(case);
        let mut after = ex.clone();
        if let Ok(Step::Done(c)) = after.step(case) {
            // Only a whole AUTHENTICATE captures; a maxed field reads as empty.
            let _ = capture(&message::parse_authenticate(case).unwrap(), &ex.challenge());
            assert!(c.username.len() <= 3);
        }
    }
    assert_eq!(
        Exchange::new(identity()).step(b"garbage"),
        Err(NtlmError::NotNtlm)
    );
    assert_eq!(
        Exchange::new(identity()).step(&auth),
        Err(NtlmError::Unexpected(3))
    );
    let no_token = spnego::server_init(&[spnego::KRB5_OID]);
    assert_eq!(
        Exchange::new(identity()).step(&no_token),
        Err(NtlmError::NoNtlmToken)
    );
}
