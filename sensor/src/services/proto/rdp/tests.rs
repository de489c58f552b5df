//! X.224 and TSRequest parsing: what mstsc, FreeRDP and nmap send, the confirm Windows
//! answers, and hostile bytes.

use super::{credssp, x224};
use crate::services::proto::shared::testing::noise;

/// A Connection Request as mstsc sends it: cookie, then RDP_NEG_REQ for `protocols`.
fn request(cookie: Option<&str>, protocols: Option<u32>) -> Vec<u8> {
    let mut tpdu = vec![0, 0xe0, 0, 0, 0, 0, 0];
    if let Some(c) = cookie {
        tpdu.extend_from_slice(format!("Cookie: mstshash={c}\r\n").as_bytes());
    }
    if let Some(p) = protocols {
        tpdu.extend_from_slice(&[1, 0, 8, 0]);
        tpdu.extend_from_slice(&p.to_le_bytes());
    }
    tpdu[0] = u8::try_from(tpdu.len() - 1).unwrap();
    let mut out = vec![3, 0];
    out.extend_from_slice(&u16::try_from(tpdu.len() + 4).unwrap().to_be_bytes());
    out.extend_from_slice(&tpdu);
    out
}

#[test]
fn requests_parse_and_confirms_match_windows() {
    let r = x224::parse_request(&request(Some("alice"), Some(0xb))).unwrap();
    assert_eq!(r.cookie.as_deref(), Some("alice"));
    assert_eq!(r.requested, Some(0xb));
    // nmap's TerminalServerCookie probe gets the bytes its Windows match expects.
    let nmap = b"\x03\0\0*%\xe0\0\0\0\0\0Cookie: mstshash=nmap\r\n\x01\0\x08\0\x03\0\0\0";
    let probe = x224::parse_request(nmap).unwrap();
    assert_eq!(
        x224::confirm(&probe),
        b"\x03\0\0\x13\x0e\xd0\0\0\x124\0\x02\x1f\x08\0\x02\0\0\0".to_vec()
    );
    // TLS only: TLS chosen; standard RDP only: HYBRID_REQUIRED_BY_SERVER.
    let tls = x224::parse_request(&request(None, Some(1))).unwrap();
    assert_eq!(&x224::confirm(&tls)[11..], &[2, 0x1f, 8, 0, 1, 0, 0, 0]);
    let rdp = x224::parse_request(&request(None, Some(0))).unwrap();
    assert_eq!(&x224::confirm(&rdp)[11..], &[3, 0, 8, 0, 5, 0, 0, 0]);
    // No negotiation at all (old clients, nmap's TerminalServer probe): a bare confirm.
    let bare = x224::parse_request(b"\x03\0\0\x0b\x06\xe0\0\0\0\0\0").unwrap();
    assert_eq!(bare, x224::ConnectionRequest::default());
    assert_eq!(
        x224::confirm(&bare),
        b"\x03\0\0\x0b\x06\xd0\0\0\x124\0".to_vec()
    );
    let routed = x224::parse_request(&{
        let mut r = request(None, None);
        r.truncate(11);
        r.extend_from_slice(b"Cookie: msts=3640205228.15629.0000\r\n");
        r[4] = u8::try_from(r.len() - 5).unwrap();
        r[3] = u8::try_from(r.len()).unwrap();
        r
    })
    .unwrap();
    assert_eq!(
        routed.routing_token.as_deref(),
        Some("Cookie: msts=3640205228.15629.0000")
    );
    assert_eq!(x224::tpkt_length([3, 0, 0, 19]), Some(19));
    assert_eq!(x224::tpkt_length([3, 0, 0xff, 0xff]), None, "over the cap");
    assert_eq!(
        x224::tpkt_length([3, 0, 0, 3]),
        None,
        "shorter than a header"
    );
    assert_eq!(x224::tpkt_length([0x16, 3, 1, 0]), None, "TLS first");
}

#[test]
fn tsrequests_round_trip_and_errors_encode_as_windows() {
    let token = b"NTLMSSP\0\x02\0\0\0rest".to_vec();
    let der = credssp::with_token(6, &token);
    assert_eq!(credssp::der_length(&der), Ok(Some(der.len())));
    let parsed = credssp::parse(&der).unwrap();
    assert_eq!(
        (parsed.version, parsed.token.as_deref()),
        (6, Some(&token[..]))
    );
    assert!(!parsed.pub_key_auth);
    let err = credssp::with_error(6, 0xc000_006d);
    assert_eq!(
        err,
        vec![
            0x30, 0x0d, 0xa0, 0x03, 0x02, 0x01, 0x06, 0xa4, 0x06, 0x02, 0x04, 0xc0, 0x00, 0x00,
            0x6d
        ]
    );
    assert_eq!(credssp::der_length(&[0x30]), Ok(None));
    assert_eq!(credssp::der_length(&[0x30, 0x82, 0x01]), Ok(None));
    assert_eq!(
        credssp::der_length(&[0x30, 0x82, 0x01, 0x00]),
        Ok(Some(260))
    );
    assert_eq!(
        credssp::der_length(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
        Err(())
    );
    assert_eq!(
        credssp::der_length(&[0x30, 0x82, 0xff, 0xff]),
        Err(()),
        "over the cap"
    );
    assert_eq!(credssp::der_length(b"GET "), Err(()));
}

#[test]
fn hostile_packets_never_panic_and_truncations_are_refused() {
    let cr = request(Some("administrator"), Some(0xb));
    let ts = credssp::with_token(6, b"NTLMSSP\0\x01\0\0\0\x97\x82\x08\xe2");
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for v in [&cr, &ts] {
        for cut in 0..v.len() {
            cases.push(v[..cut].to_vec());
        }
    }
    for seed in 0..64 {
        cases.push(noise(usize::try_from(seed * 13 % 300).unwrap(), seed));
    }
    let mut li_max = cr.clone();
    li_max[4] = 0xff;
    cases.push(li_max);
    cases.push(b"\x03\0\xff\xff\x06\xe0\0\0\0\0\0".to_vec());
    cases.push(b"\x30\x84\x7f\xff\xff\xff\xa0\x03\x02\x01\x06".to_vec());
    cases.push(b"\x30\x80\xa0\x03\x02\x01\x06\x00\x00".to_vec());
    cases.push(b"GET / HTTP/1.1\r\n\r\n".to_vec());
    cases.push(b"\0\0\0\x2f\xfeSMB@\0".to_vec());
    cases.push(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec());
    assert!(cases.len() >= 50);
    for c in &cases {
        let _ = x224::parse_request(c);
        let _ = credssp::parse(c);
        let _ = credssp::der_length(c);
    }
    for cut in 0..ts.len() {
        assert_eq!(credssp::parse(&ts[..cut]), None, "cut {cut}");
    }
    for cut in 0..11 {
        assert_eq!(x224::parse_request(&cr[..cut]), None, "cut {cut}");
    }
}
