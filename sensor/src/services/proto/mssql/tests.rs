//! Hostile input for the TDS side: PRELOGIN and LOGIN7 cut at every length, lengths and
//! offsets at their maximum, random bytes, and other protocols' openings given to the framer.

use bytes::BytesMut;

use super::{
    login7::{self, Login7},
    wire::{self, parse_prelogin},
};
use crate::services::proto::shared::tds::{self, TdsError, take_message};

/// impacket's PRELOGIN (VERSION, ENCRYPTION=OFF, INSTOPT, THREADID, MARS).
const PRELOGIN: &[u8] = b"\x00\x00\x1a\x00\x06\x01\x00\x20\x00\x01\x02\x00\x21\x00\x01\x03\x00\x22\x00\x04\x04\x00\x26\x00\x01\xff\x08\x00\x01\x55\x00\x00\x00\x00\x00\x00\x00\x00\x00";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn a_client_prelogin_with_mars_is_read_and_answered_with_mars() {
    let client = parse_prelogin(PRELOGIN).unwrap();
    assert_eq!(client.encryption, Some(wire::ENCRYPT_OFF));
    assert!(client.mars);
    assert_eq!(client.version, Some([8, 0, 1, 0x55, 0, 0]));
    let answer = wire::prelogin_response(wire::version("2022").unwrap(), wire::ENCRYPT_OFF, true);
    // Five options (25 bytes) and the terminator, then VERSION 16.0.1000.
    assert_eq!(answer[25], 0xff);
    assert_eq!(&answer[26..32], &[16, 0, 0x03, 0xe8, 0, 0]);
    assert!(parse_prelogin(&answer).unwrap().mars);
}

#[test]
fn hostile_prelogin_truncations_never_read_out_of_range() {
    for cut in 0..PRELOGIN.len() {
        // Options pointing past the cut are refused; the table alone may still parse.
        if parse_prelogin(&PRELOGIN[..cut]).is_some() {
            assert!(cut >= 26, "cut {cut}");
        }
        let wire = tds::message(tds::PRELOGIN, &PRELOGIN[..cut]);
        for wcut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..wcut]);
            assert_eq!(take_message(&mut buf, 4096), Ok(None), "{cut}/{wcut}");
        }
    }
}

#[test]
fn hostile_lengths_and_offsets_at_their_maximum() {
    // Every offset/length of the option table at 0xffff.
    for at in [1, 3, 6, 8, 11, 13, 16, 18, 21, 23] {
        let mut p = PRELOGIN.to_vec();
        p[at] = 0xff;
        p[at + 1] = 0xff;
        assert!(parse_prelogin(&p).is_none(), "byte {at}");
    }
    // Packet lengths at 0xffff and below the header.
    for len in [0u16, 1, 7, 0xffff] {
        let mut m = tds::message(tds::PRELOGIN, PRELOGIN);
        m[2..4].copy_from_slice(&len.to_be_bytes());
        let mut buf = BytesMut::from(&m[..]);
        let got = take_message(&mut buf, 4096);
        if len < 8 {
            assert_eq!(got, Err(TdsError::BadLength), "{len}");
        } else {
            assert_eq!(got, Err(TdsError::TooLong(4096)), "{len}");
        }
    }
    // A LOGIN7 whose every field says 0xffff, and whose cbSSPILong says 4 GiB.
    let mut l = login7::build(&Login7 {
        username: "sa".to_owned(),
        integrated: true,
        ..Login7::default()
    });
    for b in &mut l[36..94] {
        *b = 0xff;
    }
    let parsed = login7::parse(&l).unwrap();
    assert_eq!((parsed.username.as_str(), parsed.sspi.len()), ("", 0));
}

#[test]
fn hostile_random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let len = usize::try_from(rng.next() % 200).unwrap();
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = parse_prelogin(&bytes);
        let _ = login7::parse(&bytes);
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = take_message(&mut buf, 1024);
        // Random bytes flipped in a valid LOGIN7.
        let mut l = login7::build(&Login7 {
            username: "admin".to_owned(),
            password: "pw".to_owned(),
            hostname: "WKS".to_owned(),
            ..Login7::default()
        });
        let at = usize::try_from(rng.next()).unwrap() % l.len();
        l[at] = rng.next() as u8;
        let parsed = login7::parse(&l).unwrap();
        assert!(parsed.username.chars().count() <= l.len(), "round {round}");
    }
}

#[test]
fn hostile_openings_of_other_protocols_are_not_tds_messages() {
    let openings: [&[u8]; 8] = [
        b"GET / HTTP/1.1\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
        b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00",
        b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00",
        b"\x00\x00\x00\x54\xfeSMB@\x00",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"\x12\x00\x00\x08\x00\x00\x00\x00\x10\x01\x00\x08\x00\x00\x00\x00",
    ];
    for o in openings {
        // What the session reads first is a PRELOGIN or a LOGIN7; everything else is logged.
        let first = o.first().copied();
        let framed = take_message(&mut BytesMut::from(o), 4096);
        assert!(
            !matches!(first, Some(tds::PRELOGIN | tds::LOGIN7)) || framed.is_err(),
            "{o:?}: {framed:?}"
        );
    }
}
