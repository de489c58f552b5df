use des::cipher::{BlockCipherDecrypt as _, KeyInit as _};

use super::{RfbVersion, des_key, hashcat_line, john_line, response_for};

#[test]
fn client_versions_are_negotiated_down_to_the_server() {
    let cases: [(&[u8], RfbVersion, Option<RfbVersion>); 10] = [
        (b"RFB 003.008\n", RfbVersion::V38, Some(RfbVersion::V38)),
        (b"RFB 003.007\n", RfbVersion::V38, Some(RfbVersion::V37)),
        (b"RFB 003.003\n", RfbVersion::V38, Some(RfbVersion::V33)),
        (b"RFB 003.005\n", RfbVersion::V38, Some(RfbVersion::V33)),
        (b"RFB 003.889\n", RfbVersion::V38, Some(RfbVersion::V33)),
        (b"RFB 004.001\n", RfbVersion::V37, Some(RfbVersion::V37)),
        (b"RFB 003.008\n", RfbVersion::V33, Some(RfbVersion::V33)),
        (b"RFB 003.008\r", RfbVersion::V38, None),
        (b"RFB 00x.008\n", RfbVersion::V38, None),
        (b"GET / HTTP/1", RfbVersion::V38, None),
    ];
    for (line, server, want) in cases {
        assert_eq!(RfbVersion::negotiate(line, server), want, "{line:?}");
    }
    assert_eq!(RfbVersion::negotiate(b"RFB 003.008", RfbVersion::V38), None);
    assert_eq!(RfbVersion::V38.line(), b"RFB 003.008\n");
}

#[test]
fn the_des_key_mirrors_each_password_byte_and_pads_to_eight() {
    assert_eq!(des_key(b"\x01\x80"), [0x80, 0x01, 0, 0, 0, 0, 0, 0]);
    assert_eq!(des_key(b"password123"), des_key(b"password"));
    assert_eq!(des_key(b"a")[0], 0x86, "0x61 mirrored");
}

#[test]
fn the_response_decrypts_back_to_the_challenge_with_the_password_key() {
    let challenge: [u8; 16] = *b"0123456789abcdef";
    let response = response_for(b"s3cret", &challenge);
    assert_ne!(response, challenge);
    let cipher = des::Des::new(&des_key(b"s3cret").into());
    let mut back = response;
    for chunk in back.chunks_exact_mut(8) {
        let mut block = [0u8; 8];
        block.copy_from_slice(chunk);
        let mut block = block.into();
        cipher.decrypt_block(&mut block);
        chunk.copy_from_slice(&block);
    }
    assert_eq!(back, challenge);
    assert_ne!(response_for(b"s3creT", &challenge), response);
}

#[test]
fn crackable_lines_have_the_john_and_hashcat_shapes() {
    let challenge = [0xabu8; 16];
    let response = [0x01u8; 16];
    assert_eq!(
        john_line(&challenge, &response),
        format!("$vnc$*{}*{}", "AB".repeat(16), "01".repeat(16))
    );
    assert_eq!(
        hashcat_line(&challenge, &response),
        format!("{}:{}", "01".repeat(8), "ab".repeat(8))
    );
}
