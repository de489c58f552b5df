//! SMB1 wire formats: nmap's requests (its `-sV` probe, its NSE library's NEGOTIATE and
//! SESSION_SETUP_ANDX with and without extended security), the answers nmap's signatures and
//! scripts read, and hostile bytes (every truncation, counts at their maximum, random bytes).

use super::{
    smb1::native_names,
    wire::{self, max_dialect},
    wire1::{self, Negotiation, Setup, flags2},
};
use crate::services::proto::shared::{ntlm::ProductVersion, testing::noise};

/// An SMB1 request: header with `command`, `flags2`, `uid`, then `words` and `bytes`.
fn request(command: u8, flags2: u16, uid: u16, words: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut m = b"\xffSMB".to_vec();
    m.push(command);
    m.extend_from_slice(&[0; 4]);
    m.push(0x18);
    m.extend_from_slice(&flags2.to_le_bytes());
    m.extend_from_slice(&[0; 12]);
    m.extend_from_slice(&0u16.to_le_bytes()); // tid
    m.extend_from_slice(&0x0640u16.to_le_bytes()); // pid
    m.extend_from_slice(&uid.to_le_bytes());
    m.extend_from_slice(&1u16.to_le_bytes()); // mid
    m.push(u8::try_from(words.len() / 2).unwrap());
    m.extend_from_slice(words);
    m.extend_from_slice(&u16::try_from(bytes.len()).unwrap().to_le_bytes());
    m.extend_from_slice(bytes);
    m
}

/// nmap's `SMBProgNeg` probe (nmap-service-probes), without its NetBIOS header.
const PROBE: &[u8] = b"\xff\x53\x4d\x42\x72\0\0\0\0\x08\x01\x40\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x40\x06\0\0\x01\0\0\x81\0\x02PC NETWORK PROGRAM 1.0\0\x02MICROSOFT NETWORKS 1.03\0\x02MICROSOFT NETWORKS 3.0\0\x02LANMAN1.0\0\x02LM1.2X002\0\x02Samba\0\x02NT LANMAN 1.0\0\x02NT LM 0.12\0";

/// nmap's NSE SESSION_SETUP_ANDX with extended security (smb.lua), flags2 0x6845.
fn nse_extended_setup(blob: &[u8]) -> Vec<u8> {
    let mut w = vec![0xff, 0];
    w.extend_from_slice(&0u16.to_le_bytes());
    w.extend_from_slice(&0xffffu16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&0u32.to_le_bytes());
    w.extend_from_slice(&u16::try_from(blob.len()).unwrap().to_le_bytes());
    w.extend_from_slice(&0u32.to_le_bytes());
    w.extend_from_slice(&0x8000_0050u32.to_le_bytes());
    let mut b = blob.to_vec();
    b.extend_from_slice(b"Nmap\0Native Lanman\0\0");
    request(0x73, 0x6845, 0, &w, &b)
}

/// A SESSION_SETUP_ANDX without extended security: `lm`, `nt`, then account, domain, OS and
/// LAN manager, Unicode (aligned) or OEM.
fn basic_setup(lm: &[u8], nt: &[u8], account: &str, unicode: bool) -> Vec<u8> {
    let mut w = vec![0xff, 0, 0, 0];
    w.extend_from_slice(&0xffffu16.to_le_bytes());
    w.extend_from_slice(&[1, 0, 1, 0]);
    w.extend_from_slice(&0u32.to_le_bytes());
    w.extend_from_slice(&u16::try_from(lm.len()).unwrap().to_le_bytes());
    w.extend_from_slice(&u16::try_from(nt.len()).unwrap().to_le_bytes());
    w.extend_from_slice(&0u32.to_le_bytes());
    w.extend_from_slice(&0x50u32.to_le_bytes());
    let mut b = lm.to_vec();
    b.extend_from_slice(nt);
    let base = wire1::bytes_offset(26);
    for s in [account, "CORP", "Nmap", "Native Lanman"] {
        wire1::push_string(&mut b, base, s, unicode);
    }
    let f2 = if unicode { 0xc001 } else { 0x4001 };
    request(0x73, f2, 0, &w, &b)
}

fn tree_connect(path: &str, unicode: bool) -> Vec<u8> {
    let mut w = vec![0xff, 0, 0, 0, 0, 0];
    w.extend_from_slice(&1u16.to_le_bytes());
    let mut b = vec![0];
    wire1::push_string(&mut b, wire1::bytes_offset(8), path, unicode);
    b.extend_from_slice(b"?????\0");
    let f2 = if unicode { 0xc801 } else { 0x4801 };
    request(0x75, f2, 0x0801, &w, &b)
}

#[test]
fn the_answer_to_nmaps_probe_matches_its_windows_server_2012_signature() {
    let req = wire1::parse(PROBE).unwrap();
    assert_eq!(req.header.flags2, 0x4001);
    let dialects = wire::smb1_dialects(PROBE).unwrap();
    assert_eq!(dialects.iter().position(|d| d == wire1::NT_LM_012), Some(7));
    let (words, bytes) = wire1::negotiate_response(&Negotiation {
        index: 7,
        extended: false,
        time: 0x01d9_0000_0000_0000,
        guid: [0; 16],
        blob: &[],
        challenge: [0x11; 8],
        domain: "CORP",
        server: "SRV01",
    });
    let flags2 = wire1::answer_flags2(req.header.flags2);
    let out = wire::frame(&wire1::response(&req.header, 0, flags2, 0, &words, &bytes));
    // nmap-service-probes: `match microsoft-ds m|^\0\0\0.\xffSMBr\0\0\0\0\x88\x01@\0\0\0\0\0\0
    // \0\0\0\0\0\0\0\0@\x06\0\0\x01\0\x11\x07\0.2\0\x01\0\x04A\0\0\0\0\x01\0\0\0\0\0\xfc\xf3\x01
    // \0.{21}((?:..)*)\0\0((?:..)*)\0\0|s p/Microsoft Windows Server 2008 R2 - 2012 ...`
    let head: &[u8] =
        b"\xffSMBr\0\0\0\0\x88\x01@\0\0\0\0\0\0\0\0\0\0\0\0\0\0@\x06\0\0\x01\0\x11\x07\0";
    assert_eq!(&out[..3], b"\0\0\0");
    assert_eq!(&out[4..4 + head.len()], head);
    let after_mode = 4 + head.len() + 1;
    let fixed: &[u8] = b"2\0\x01\0\x04A\0\0\0\0\x01\0\0\0\0\0\xfc\xf3\x01\0";
    assert_eq!(&out[after_mode..after_mode + fixed.len()], fixed);
    let names = &out[after_mode + fixed.len() + 21..];
    let utf16 = |s: &str| -> Vec<u8> {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    };
    assert_eq!(names, [utf16("CORP"), utf16("SRV01")].concat());
    // Challenge length 8, byte count 8 + names.
    assert_eq!(out[after_mode + fixed.len() + 10], 8);
    assert_eq!(
        &out[after_mode + fixed.len() + 13..after_mode + fixed.len() + 21],
        &[0x11; 8]
    );
}

#[test]
fn extended_negotiation_carries_the_guid_and_the_spnego_blob() {
    let blob = b"\x60\x28\x06\x06\x2b\x06\x01\x05\x05\x02";
    let (words, bytes) = wire1::negotiate_response(&Negotiation {
        index: 0,
        extended: true,
        time: 1,
        guid: [0xab; 16],
        blob,
        challenge: [0; 8],
        domain: "",
        server: "",
    });
    assert_eq!(words.len(), 34);
    assert_eq!(&words[19..23], &0x8001_f3fcu32.to_le_bytes());
    assert_eq!(words[33], 0, "no challenge");
    assert_eq!(&bytes[..16], &[0xab; 16]);
    assert_eq!(&bytes[16..], blob);
    // nmap's NSE client sends 0x6845: answered with long names, extended security, NT status.
    assert_eq!(wire1::answer_flags2(0x6845), 0x4841);
    assert_eq!(
        wire1::answer_flags2(0xc853) & flags2::UNICODE,
        flags2::UNICODE
    );
}

#[test]
fn session_setups_of_both_kinds_parse() {
    let m = nse_extended_setup(b"\x60\x03abc");
    let req = wire1::parse(&m).unwrap();
    assert_eq!(
        wire1::session_setup(&m, &req),
        Some(Setup::Extended {
            blob: b"\x60\x03abc",
            native_os: "Nmap".to_owned()
        })
    );
    for unicode in [false, true] {
        let m = basic_setup(&[0x22; 24], &[0x33; 24], "guest", unicode);
        let req = wire1::parse(&m).unwrap();
        assert_eq!(
            wire1::session_setup(&m, &req),
            Some(Setup::Basic {
                lm: &[0x22; 24],
                nt: &[0x33; 24],
                account: "guest".to_owned(),
                domain: "CORP".to_owned(),
                native_os: "Nmap".to_owned(),
            }),
            "unicode {unicode}"
        );
    }
    // nmap's null session: one zero LM byte, no NT response, no name.
    let m = basic_setup(&[0], &[], "", false);
    let req = wire1::parse(&m).unwrap();
    let Some(Setup::Basic {
        lm, nt, account, ..
    }) = wire1::session_setup(&m, &req)
    else {
        panic!()
    };
    assert_eq!((lm, nt, account.as_str()), (&[0u8][..], &[][..], ""));
    for unicode in [false, true] {
        let m = tree_connect("\\\\SRV01\\IPC$", unicode);
        let req = wire1::parse(&m).unwrap();
        assert_eq!(
            wire1::tree_connect_path(&m, &req).as_deref(),
            Some("\\\\SRV01\\IPC$")
        );
    }
}

#[test]
fn responses_are_laid_out_as_nmap_reads_them() {
    let (os, lanman) = native_names(ProductVersion::SERVER_2012_R2);
    assert_eq!(os, "Windows Server 2012 R2 Standard 9600");
    assert_eq!(lanman, "Windows Server 2012 R2 Standard 6.3");
    let (os16, lanman16) = native_names(ProductVersion::SERVER_2016);
    assert_eq!(
        (os16.as_str(), lanman16.as_str()),
        (
            "Windows Server 2016 Standard 14393",
            "Windows Server 2016 Standard 6.3"
        )
    );
    assert_eq!(
        native_names(ProductVersion::new(6, 1, 7601)).0,
        "Windows Server 2008 R2 Standard 7601 Service Pack 1"
    );
    // OEM (nmap's flags2 has no Unicode bit): blob, then "zz".
    let (w, b) = wire1::setup_response_extended(0, b"NTLMSSP\0", &os, &lanman, false);
    assert_eq!(w.len(), 8);
    assert_eq!(&w[6..8], &8u16.to_le_bytes());
    assert_eq!(&b[..8], b"NTLMSSP\0");
    assert_eq!(&b[8..], format!("{os}\0{lanman}\0").as_bytes());
    // Unicode: a pad byte brings the strings to an even offset from the header's start
    // (32 + 1 + 8 + 2 + 8 = 51).
    let (_, b) = wire1::setup_response_extended(0, b"NTLMSSP\0", "W", "L", true);
    assert_eq!(&b[8..], b"\0W\0\0\0L\0\0\0");
    let (w, b) = wire1::setup_response_basic(1, &os, &lanman, "CORP", false);
    assert_eq!(&w[4..6], &1u16.to_le_bytes());
    assert_eq!(b, format!("{os}\0{lanman}\0CORP\0").as_bytes());
    let h = wire1::parse(&nse_extended_setup(b"x")).unwrap().header;
    let out = wire1::response(&h, 0xc000_0016, 0x4841, 0x0801, &w, &b);
    let back = wire1::parse(&out).unwrap();
    assert_eq!(
        (back.header.uid, back.header.mid, back.header.pid),
        (0x0801, 1, 0x0640)
    );
    assert_eq!(&out[5..9], &0xc000_0016u32.to_le_bytes());
    assert_eq!(out[9], 0x88);
    assert_eq!(back.words, &w[..]);
    assert_eq!(back.bytes, &b[..]);
}

#[test]
fn each_release_speaks_its_own_smb2_dialects() {
    assert_eq!(max_dialect(ProductVersion::SERVER_2012_R2), 0x0302);
    assert_eq!(max_dialect(ProductVersion::new(6, 2, 9200)), 0x0300);
    assert_eq!(max_dialect(ProductVersion::new(6, 1, 7601)), 0x0210);
    assert_eq!(max_dialect(ProductVersion::new(6, 0, 6002)), 0x0202);
    assert_eq!(max_dialect(ProductVersion::SERVER_2016), 0x0311);
    assert_eq!(max_dialect(ProductVersion::SERVER_2022), 0x0311);
}

#[test]
fn hostile_smb1_messages_never_panic_and_bad_ones_are_refused() {
    let valid = [
        PROBE.to_vec(),
        nse_extended_setup(b"\x60\x03abc"),
        basic_setup(&[1; 24], &[2; 24], "alice", true),
        basic_setup(&[1; 24], &[2; 24], "alice", false),
        tree_connect("\\\\SRV01\\C$", true),
    ];
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for v in &valid {
        for cut in 0..v.len() {
            cases.push(v[..cut].to_vec());
        }
        // Word count, byte count, blob and password lengths at their maximum.
        for (at, value) in [
            (32usize, &[0xffu8][..]),
            (47, &[0xff, 0xff]),
            (49, &[0xff, 0xff]),
        ] {
            let mut m = v.clone();
            if let Some(field) = m.get_mut(at..at + value.len()) {
                field.copy_from_slice(value);
            }
            cases.push(m);
        }
        let count_at = 33 + 2 * usize::from(v[32]);
        let mut m = v.clone();
        m[count_at..count_at + 2].copy_from_slice(&[0xff, 0xff]);
        assert!(wire1::parse(&m).is_none(), "byte count past the end");
        cases.push(m);
    }
    for seed in 0..64 {
        let mut m = b"\xffSMB".to_vec();
        m.extend(noise(usize::try_from(seed * 13 % 300).unwrap(), seed));
        cases.push(m);
    }
    assert!(cases.len() >= 50);
    for c in &cases {
        let Some(req) = wire1::parse(c) else {
            continue;
        };
        let _ = wire1::session_setup(c, &req);
        let _ = wire1::tree_connect_path(c, &req);
        let _ = wire::smb1_dialects(c);
    }
    // A truncated SESSION_SETUP never yields the whole blob.
    let full = nse_extended_setup(b"\x60\x03abc");
    for cut in 0..full.len() {
        if let Some(req) = wire1::parse(&full[..cut]) {
            assert!(
                !matches!(wire1::session_setup(&full[..cut], &req),
                          Some(Setup::Extended { blob, .. }) if blob == b"\x60\x03abc"
                ) || cut == full.len(),
                "cut {cut}"
            );
        }
    }
    // Strings without terminators stop at the message's end.
    assert_eq!(wire1::read_strings(b"abc", 0, false, 2), vec!["abc", ""]);
    assert_eq!(wire1::read_strings(b"\0a\0b", 1, true, 1), vec!["\u{6200}"]);
}
