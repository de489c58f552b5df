//! The NTLM one-way functions and responses (MS-NLMP 3.3), from the `md4`, `md-5`, `hmac` and
//! `des` crates. The sensor never verifies a response (it knows no password): these are what the
//! tests use to check that a captured hashcat line matches the password the client typed, and
//! what a defender's tooling would compute.

use des::cipher::{BlockCipherEncrypt, KeyInit};
use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;

/// UTF-16LE bytes of `s`, as NTLM encodes Unicode strings.
#[must_use]
pub fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// `NTOWFv1`: MD4 of the UTF-16LE password (the "NT hash").
#[must_use]
pub fn nt_hash(password: &str) -> [u8; 16] {
    Md4::digest(utf16le(password)).into()
}

/// HMAC-MD5 of the concatenated `parts` under `key`.
#[must_use]
pub fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC takes keys of any length: this never fails.
    let Ok(mut mac) = <Hmac<Md5> as Mac>::new_from_slice(key) else {
        return [0; 16];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `NTOWFv2`: HMAC-MD5 under the NT hash of UTF-16LE(uppercase(user) + domain).
#[must_use]
pub fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let mut id = user.to_uppercase();
    id.push_str(domain);
    hmac_md5(&nt_hash(password), &[&utf16le(&id)])
}

/// NTProofStr of an NTLMv2 response: HMAC-MD5 under `NTOWFv2` of the server challenge followed
/// by the client's blob (everything of the NT response after its first 16 bytes).
#[must_use]
pub fn nt_proof_str(
    password: &str,
    user: &str,
    domain: &str,
    server_challenge: &[u8; 8],
    blob: &[u8],
) -> [u8; 16] {
    hmac_md5(&ntowf_v2(password, user, domain), &[server_challenge, blob])
}

/// `DESL`: the 16-byte key, padded to 21, as three DES keys, each encrypting `data`.
#[must_use]
pub fn desl(key: &[u8; 16], data: &[u8; 8]) -> [u8; 24] {
    let mut padded = [0u8; 21];
    padded[..16].copy_from_slice(key);
    let mut out = [0u8; 24];
    for (chunk, slot) in padded.chunks_exact(7).zip(out.chunks_exact_mut(8)) {
        let key = des_key(chunk);
        let Ok(cipher) = des::Des::new_from_slice(&key) else {
            continue;
        };
        let mut block = des::cipher::Array::from(*data);
        cipher.encrypt_block(&mut block);
        slot.copy_from_slice(&block);
    }
    out
}

/// Spreads 56 key bits over 8 bytes, one parity slot per byte (the parity itself is ignored).
fn des_key(seven: &[u8]) -> [u8; 8] {
    let mut bits = 0u64;
    for &b in seven.iter().take(7) {
        bits = (bits << 8) | u64::from(b);
    }
    let mut key = [0u8; 8];
    for (i, k) in key.iter_mut().enumerate() {
        let shift = 49u32.saturating_sub(7u32.saturating_mul(u32::try_from(i).unwrap_or(0)));
        *k = u8::try_from(((bits >> shift) & 0x7f) << 1).unwrap_or(0);
    }
    key
}

/// The NTLMv1 NT response for `password` to `server_challenge`; with extended session security
/// (`client_challenge` given), the challenge is first replaced by
/// MD5(server challenge + client challenge)'s first 8 bytes.
#[must_use]
pub fn nt_response_v1(
    password: &str,
    server_challenge: &[u8; 8],
    client_challenge: Option<&[u8; 8]>,
) -> [u8; 24] {
    let challenge = match client_challenge {
        Some(client) => {
            let digest: [u8; 16] = Md5::new()
                .chain_update(server_challenge)
                .chain_update(client)
                .finalize()
                .into();
            let mut c = [0u8; 8];
            c.copy_from_slice(&digest[..8]);
            c
        }
        None => *server_challenge,
    };
    desl(&nt_hash(password), &challenge)
}

/// Whether a hashcat `-m 5600` or `-m 5500` line (as [`super::Captured::hashcat`] writes it)
/// is the response of `password`: what hashcat would find, recomputed.
#[must_use]
pub fn verify_hashcat(line: &str, password: &str) -> bool {
    let parts: Vec<&str> = line.split(':').collect();
    let [user, "", domain, a, b, c] = parts.as_slice() else {
        return false;
    };
    let (Ok(a), Ok(b), Ok(c)) = (hex::decode(a), hex::decode(b), hex::decode(c)) else {
        return false;
    };
    if let (Ok(challenge), 16) = (<[u8; 8]>::try_from(a.as_slice()), b.len()) {
        // NetNTLMv2: challenge, NTProofStr, blob.
        return nt_proof_str(password, user, domain, &challenge, &c).as_slice() == b.as_slice();
    }
    // NetNTLMv1: LM response, NT response, challenge.
    let Ok(challenge) = <[u8; 8]>::try_from(c.as_slice()) else {
        return false;
    };
    let client = a
        .get(8..)
        .filter(|z| a.len() == 24 && z.iter().all(|&x| x == 0))
        .and_then(|_| <[u8; 8]>::try_from(a.get(..8)?).ok());
    nt_response_v1(password, &challenge, client.as_ref()).as_slice() == b.as_slice()
}
