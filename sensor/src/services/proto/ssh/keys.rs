//! Algorithms and host keys: OpenSSH 9.2p1's default lists in OpenSSH's order (minus what russh
//! does not implement), and host keys generated once (RSA 3072, ECDSA P-256, Ed25519, as
//! `ssh-keygen -A` makes them) and kept in the state directory. Key generation is slow (RSA):
//! it runs in the instance's constructor, on the blocking pool.

use std::path::Path;

use russh::{
    cipher, compression, kex,
    keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, ssh_key::LineEnding},
    mac,
};

use crate::services::framework::tls::write_private;

pub const KEX: &[kex::Name] = &[
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::ECDH_SHA2_NISTP256,
    kex::ECDH_SHA2_NISTP384,
    kex::ECDH_SHA2_NISTP521,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G18_SHA512,
    kex::DH_G14_SHA256,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];
pub const CIPHERS: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_128_CTR,
    cipher::AES_192_CTR,
    cipher::AES_256_CTR,
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
];
pub const MACS: &[mac::Name] = &[
    mac::HMAC_SHA256_ETM,
    mac::HMAC_SHA512_ETM,
    mac::HMAC_SHA1_ETM,
    mac::HMAC_SHA256,
    mac::HMAC_SHA512,
    mac::HMAC_SHA1,
];
pub const COMPRESSION: &[compression::Name] = &[compression::NONE, compression::ZLIB_LEGACY];

pub fn host_key_algorithms() -> Vec<Algorithm> {
    vec![
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        },
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        Algorithm::Ed25519,
    ]
}

/// Loads the host keys from `dir`, generating the missing ones.
pub fn host_keys(dir: &Path, port: u16) -> Result<Vec<PrivateKey>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let kinds = [
        ("rsa", Algorithm::Rsa { hash: None }),
        (
            "ecdsa",
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
        ),
        ("ed25519", Algorithm::Ed25519),
    ];
    let mut keys = Vec::new();
    for (name, algorithm) in kinds {
        let path = dir.join(format!("ssh-{port}-host-{name}.key"));
        let key = if path.exists() {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            PrivateKey::from_openssh(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            let mut rng = rand::rng();
            let key = match algorithm {
                Algorithm::Rsa { .. } => {
                    let pair = russh::keys::ssh_key::private::RsaKeypair::random(&mut rng, 3072)
                        .map_err(|e| format!("generating an RSA host key: {e}"))?;
                    PrivateKey::from(pair)
                }
                other => PrivateKey::random(&mut rng, other)
                    .map_err(|e| format!("generating a {name} host key: {e}"))?,
            };
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| format!("encoding the {name} host key: {e}"))?;
            write_private(&path, text.as_bytes()).map_err(|e| e.to_string())?;
            tracing::info!(key = %path.display(), "Generated an SSH host key.");
            key
        };
        keys.push(key);
    }
    Ok(keys)
}
