//! SMB wire parsing: real request layouts, the negotiate answer's fields, and hostile bytes
//! (every truncation, maximal length and offset fields, random bytes, other protocols).

use super::wire::{self, DIALECT_WILDCARD, HEADER, ServerInfo};
use crate::services::proto::shared::ntlm::spnego;
use crate::services::proto::shared::testing::noise;

/// An SMB2 request header for `command`.
fn header(command: u16, message_id: u64) -> Vec<u8> {
    let mut h = b"\xfeSMB".to_vec();
    h.extend_from_slice(&64u16.to_le_bytes());
    h.extend_from_slice(&[0; 6]);
    h.extend_from_slice(&command.to_le_bytes());
    h.extend_from_slice(&31u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&message_id.to_le_bytes());
    h.extend_from_slice(&0xfeffu32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&[0; 16]);
    h
}

/// A NEGOTIATE as Windows 10 sends it: five dialects, preauth and encryption contexts.
fn negotiate_request() -> Vec<u8> {
    let mut m = header(0, 0);
    let dialects = [0x0202u16, 0x0210, 0x0300, 0x0302, 0x0311];
    m.extend_from_slice(&36u16.to_le_bytes());
    m.extend_from_slice(&5u16.to_le_bytes());
    m.extend_from_slice(&1u16.to_le_bytes());
    m.extend_from_slice(&[0; 2]);
    m.extend_from_slice(&0x7fu32.to_le_bytes());
    m.extend_from_slice(&[0xab; 16]);
    let ctx_offset = HEADER + 36 + 10 + 2; // after the dialects, 8-aligned
    m.extend_from_slice(&u32::try_from(ctx_offset).unwrap().to_le_bytes());
    m.extend_from_slice(&2u16.to_le_bytes());
    m.extend_from_slice(&[0; 2]);
    for d in dialects {
        m.extend_from_slice(&d.to_le_bytes());
    }
    m.extend_from_slice(&[0; 2]);
    assert_eq!(m.len(), ctx_offset);
    // PREAUTH: 1 algorithm (SHA-512), 32-byte salt.
    let mut pre = vec![1, 0, 32, 0, 1, 0];
    pre.extend_from_slice(&[7; 32]);
    m.extend_from_slice(&1u16.to_le_bytes());
    m.extend_from_slice(&u16::try_from(pre.len()).unwrap().to_le_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&pre);
    while !m.len().is_multiple_of(8) {
        m.push(0);
    }
    // ENCRYPTION: AES-256-GCM, AES-128-GCM.
    let enc = [2u8, 0, 4, 0, 2, 0];
    m.extend_from_slice(&2u16.to_le_bytes());
    m.extend_from_slice(&6u16.to_le_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&enc);
    m
}

fn session_setup(blob: &[u8]) -> Vec<u8> {
    let mut m = header(1, 1);
    m.extend_from_slice(&25u16.to_le_bytes());
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(&u16::try_from(HEADER + 24).unwrap().to_le_bytes());
    m.extend_from_slice(&u16::try_from(blob.len()).unwrap().to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(blob);
    m
}

fn tree_connect(path: &str) -> Vec<u8> {
    let p: Vec<u8> = path.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut m = header(3, 3);
    m.extend_from_slice(&9u16.to_le_bytes());
    m.extend_from_slice(&0u16.to_le_bytes());
    m.extend_from_slice(&u16::try_from(HEADER + 8).unwrap().to_le_bytes());
    m.extend_from_slice(&u16::try_from(p.len()).unwrap().to_le_bytes());
    m.extend_from_slice(&p);
    m
}

/// nmap's SMBProgNeg probe body, and the same with the SMB2 dialects Windows clients add.
fn smb1_negotiate(extra: &[&str]) -> Vec<u8> {
    let mut names = Vec::new();
    for d in ["PC NETWORK PROGRAM 1.0", "LANMAN1.0", "NT LM 0.12"]
        .iter()
        .chain(extra)
    {
        names.push(2);
        names.extend_from_slice(d.as_bytes());
        names.push(0);
    }
    let mut m = b"\xffSMBr\0\0\0\0\x08\x01\x40".to_vec();
    m.resize(32, 0);
    m.push(0);
    m.extend_from_slice(&u16::try_from(names.len()).unwrap().to_le_bytes());
    m.extend_from_slice(&names);
    m
}

#[test]
fn a_windows_negotiate_gets_3_1_1_with_contexts() {
    let req = wire::parse_negotiate(&negotiate_request()).unwrap();
    assert_eq!(req.dialects, vec![0x0202, 0x0210, 0x0300, 0x0302, 0x0311]);
    assert_eq!(req.client_guid, [0xab; 16]);
    assert!(req.preauth);
    assert_eq!(req.ciphers, Some(vec![4, 2]));
    assert_eq!(wire::choose_dialect(&req.dialects, 0x0311), Some(0x0311));
    assert_eq!(wire::choose_dialect(&req.dialects, 0x0302), Some(0x0302));
    assert_eq!(
        wire::choose_dialect(&[0x0202, 0x0210], 0x0311),
        Some(0x0210)
    );
    assert_eq!(wire::choose_dialect(&[0x0100], 0x0311), None);
    let blob = spnego::server_init(&[spnego::NTLMSSP_OID]);
    let info = ServerInfo {
        guid: [9; 16],
        time: 5,
        security_blob: &blob,
        salt: [3; 32],
    };
    let body = wire::negotiate_response(0x0311, Some(&req), &info);
    assert_eq!(
        &body[..8],
        &[65, 0, 1, 0, 0x11, 0x03, 2, 0],
        "signing enabled, 3.1.1, 2 contexts"
    );
    assert_eq!(&body[8..24], &[9; 16]);
    assert_eq!(u32::from_le_bytes(body[24..28].try_into().unwrap()), 0x2f);
    let blob_off = usize::from(u16::from_le_bytes([body[56], body[57]]));
    let blob_len = usize::from(u16::from_le_bytes([body[58], body[59]]));
    assert_eq!((blob_off, blob_len), (128, blob.len()));
    assert_eq!(
        &body[blob_off - HEADER..blob_off - HEADER + blob_len],
        blob.as_slice()
    );
    let ctx = usize::try_from(u32::from_le_bytes(body[60..64].try_into().unwrap())).unwrap();
    assert!(ctx.is_multiple_of(8));
    let c = &body[ctx - HEADER..];
    assert_eq!(&c[..4], &[1, 0, 38, 0], "preauth context");
    let second = &c[(8 + 38 + 7) & !7..];
    assert_eq!(&second[..4], &[2, 0, 4, 0], "encryption context");
    assert_eq!(&second[8..12], &[1, 0, 2, 0], "AES-128-GCM chosen");
    // 2.0.2 and the wildcard answer: no contexts.
    let old = wire::negotiate_response(DIALECT_WILDCARD, None, &info);
    assert_eq!(&old[4..8], &[0xff, 0x02, 0, 0]);
    assert_eq!(&old[60..64], &[0; 4]);
}

#[test]
fn smb1_openings_and_session_and_tree_requests_parse() {
    let nmap = wire::smb1_dialects(&smb1_negotiate(&[])).unwrap();
    assert_eq!(
        nmap,
        vec!["PC NETWORK PROGRAM 1.0", "LANMAN1.0", "NT LM 0.12"]
    );
    let win = wire::smb1_dialects(&smb1_negotiate(&["SMB 2.002", "SMB 2.???"])).unwrap();
    assert!(win.contains(&"SMB 2.???".to_owned()));
    let setup = session_setup(b"NTLMSSP\0xyz");
    assert_eq!(wire::session_setup_blob(&setup), Some(&b"NTLMSSP\0xyz"[..]));
    let tc = tree_connect("\\\\srv01\\IPC$");
    assert_eq!(
        wire::tree_connect_path(&tc).as_deref(),
        Some("\\\\srv01\\IPC$")
    );
    let h = wire::parse_header(&tc).unwrap();
    assert_eq!((h.command, h.message_id, h.credits), (3, 3, 31));
    let resp = wire::response_header(&h, 0xc000_0022, 77, 0);
    assert_eq!(resp.len(), HEADER);
    assert_eq!(&resp[8..12], &0xc000_0022u32.to_le_bytes());
    assert_eq!(&resp[16..20], &1u32.to_le_bytes(), "server to redirector");
    assert_eq!(&resp[40..48], &77u64.to_le_bytes());
    assert_eq!(wire::frame(&[1, 2, 3]), vec![0, 0, 0, 3, 1, 2, 3]);
    assert_eq!(wire::frame_length([0, 0x01, 0x00, 0x00]), (0, 65_536));
    assert_eq!(wire::frame_length([0x85, 0, 0, 0]), (0x85, 0));
}

#[test]
fn hostile_messages_never_panic_and_bad_ones_are_refused() {
    let valid = [
        negotiate_request(),
        session_setup(b"NTLMSSP\0\x01\0\0\0"),
        tree_connect("\\\\srv01\\C$"),
        smb1_negotiate(&["SMB 2.???"]),
    ];
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for v in &valid {
        for cut in 0..v.len() {
            cases.push(v[..cut].to_vec());
        }
    }
    // Counts, offsets and lengths at their maximum.
    for at in [2usize, 4, 12, 14, 28, 32] {
        for base in [
            negotiate_request(),
            session_setup(b"abc"),
            tree_connect("x"),
        ] {
            let mut m = base.clone();
            if let Some(field) = m.get_mut(HEADER + at..HEADER + at + 2) {
                field.copy_from_slice(&[0xff, 0xff]);
            }
            cases.push(m);
        }
    }
    let mut smb1 = smb1_negotiate(&[]);
    smb1[33..35].copy_from_slice(&[0xff, 0xff]);
    cases.push(smb1);
    for seed in 0..64 {
        cases.push(noise(usize::try_from(seed * 17 % 400).unwrap(), seed));
    }
    cases.push(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
    cases.push(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec());
    cases.push(
        b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00".to_vec(),
    );
    cases.push(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec());
    assert!(cases.len() >= 50);
    for c in &cases {
        let _ = wire::parse_header(c);
        let _ = wire::parse_negotiate(c);
        let _ = wire::session_setup_blob(c);
        let _ = wire::tree_connect_path(c);
        let _ = wire::smb1_dialects(c);
    }
    // A truncated NEGOTIATE never parses as one with all its dialects.
    let full = negotiate_request();
    for cut in 0..HEADER + 46 {
        let parsed = wire::parse_negotiate(&full[..cut]);
        assert!(parsed.is_none_or(|p| p.dialects.len() < 5), "cut {cut}");
    }
    // A security buffer pointing past the message is refused.
    let mut setup = session_setup(b"abc");
    setup[HEADER + 14..HEADER + 16].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(wire::session_setup_blob(&setup), None);
    assert!(wire::parse_header(b"\xfeSMB\x40\x00").is_none());
    assert!(wire::parse_header(&noise(64, 3)).is_none());
}
