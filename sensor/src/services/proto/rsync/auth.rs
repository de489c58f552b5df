//! rsync daemon authentication: the challenge, the digests, and which one a response used.

use base64::Engine as _;
use serde::Deserialize;

use super::ClientGreeting;

/// A daemon authentication digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Digest {
    /// MD4 (protocols before 30, or when the server lists no MD5).
    Md4,
    /// MD5 (protocols 30 and 31 without a list).
    Md5,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512 (rsync 3.2's first choice).
    Sha512,
}

/// The order rsync 3.2 clients prefer when they send no list.
const CLIENT_DEFAULT: [Digest; 5] = [
    Digest::Sha512,
    Digest::Sha256,
    Digest::Sha1,
    Digest::Md5,
    Digest::Md4,
];

impl Digest {
    /// The name in greetings.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Md4 => "md4",
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// The digest a greeting names.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        CLIENT_DEFAULT.into_iter().find(|d| d.name() == name)
    }

    /// Output length in bytes.
    #[must_use]
    pub const fn output_len(self) -> usize {
        match self {
            Self::Md4 | Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// hashcat's mode for `H($pass.$salt)`, when it has one.
    #[must_use]
    pub const fn hashcat_mode(self) -> Option<u32> {
        match self {
            Self::Md4 => None,
            Self::Md5 => Some(10),
            Self::Sha1 => Some(110),
            Self::Sha256 => Some(1410),
            Self::Sha512 => Some(1710),
        }
    }

    /// `H(password || challenge)`.
    #[must_use]
    pub fn hash(self, password: &[u8], challenge: &[u8]) -> Vec<u8> {
        use md5::Digest as _;
        let joined = [password, challenge].concat();
        match self {
            Self::Md4 => md4::Md4::digest(&joined).to_vec(),
            Self::Md5 => md5::Md5::digest(&joined).to_vec(),
            Self::Sha1 => sha1::Sha1::digest(&joined).to_vec(),
            Self::Sha256 => sha2::Sha256::digest(&joined).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(&joined).to_vec(),
        }
    }
}

/// A fresh challenge: 16 random bytes, base64 without padding (22 characters), as rsyncd.
#[must_use]
pub fn challenge() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// What a client knowing `password` answers with `digest` (without the user name).
#[must_use]
pub fn response_for(digest: Digest, password: &str, challenge: &str) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(digest.hash(password.as_bytes(), challenge.as_bytes()))
}

/// The digest a response was made with, and the raw hash: the client's choice among what the
/// server announced (its own order, rsync's default when it sent no list), the response's
/// length deciding; without an announced list MD5 from protocol 30, MD4 before.
#[must_use]
pub fn digest_for(
    response: &str,
    client: &ClientGreeting,
    announced: &[Digest],
) -> Option<(Digest, Vec<u8>)> {
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(response.trim_end_matches('='))
        .ok()?;
    let candidates: Vec<Digest> = if announced.is_empty() {
        vec![if client.protocol >= 30 {
            Digest::Md5
        } else {
            Digest::Md4
        }]
    } else {
        let preferred: Vec<Digest> = if client.digests.is_empty() {
            CLIENT_DEFAULT.to_vec()
        } else {
            client
                .digests
                .iter()
                .filter_map(|n| Digest::from_name(n))
                .collect()
        };
        preferred
            .into_iter()
            .filter(|d| announced.contains(d))
            .collect()
    };
    let digest = candidates
        .into_iter()
        .find(|d| d.output_len() == raw.len())?;
    Some((digest, raw))
}
