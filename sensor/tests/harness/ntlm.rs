//! NetNTLMv2 lines checked independently of the sensor's own code: the NTProofStr recomputed
//! from the password the client typed (MD4, HMAC-MD5).

use hmac::{Hmac, Mac as _};
use md4::Digest as _;

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn hmac_md5(key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<md5::Md5>::new_from_slice(key).expect("HMAC takes any key");
    for d in data {
        m.update(d);
    }
    m.finalize().into_bytes().to_vec()
}

/// Recomputes a `-m 5600` line's NTProofStr from `password`.
pub fn assert_netntlmv2(line: &str, user: &str, password: &str) {
    let f: Vec<&str> = line.split(':').collect();
    assert_eq!(f.len(), 6, "{line}");
    assert!(f[0].eq_ignore_ascii_case(user), "{line}");
    assert_eq!(f[1], "");
    let challenge = hex::decode(f[3]).expect("hex challenge");
    let proof = hex::decode(f[4]).expect("hex NTProofStr");
    let blob = hex::decode(f[5]).expect("hex blob");
    assert_eq!((challenge.len(), proof.len()), (8, 16), "{line}");
    assert_eq!(&blob[..2], &[1, 1], "NTLMv2 blob");
    let nt = md4::Md4::digest(utf16(password));
    let key = hmac_md5(&nt, &[&utf16(&format!("{}{}", f[0].to_uppercase(), f[2]))]);
    assert_eq!(
        hmac_md5(&key, &[&challenge, &blob]),
        proof,
        "{line} vs {password}"
    );
}
