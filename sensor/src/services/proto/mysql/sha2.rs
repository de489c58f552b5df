//! `caching_sha2_password` (MySQL 8.0's default plugin): the fast-authentication scramble and
//! its check against a candidate password, so the logged scramble can be cracked offline.
//!
//! The client sends `SHA256(p) XOR SHA256(SHA256(SHA256(p)) || nonce)`; a candidate password
//! is right when it reproduces those 32 bytes. No hashcat mode takes this exchange, so the
//! line is `$mysql-sha2$<nonce hex>*<response hex>`. A server without the user in its cache
//! answers `perform_full_authentication` (AuthMoreData `0x04`), and over TLS the client then
//! sends its password in cleartext.

use sha2::{Digest, Sha256};

/// AuthMoreData: fast authentication failed, send the full password.
pub const PERFORM_FULL_AUTHENTICATION: u8 = 4;

/// The scramble a client knowing `password` sends for `nonce`.
#[must_use]
pub fn scramble(password: &[u8], nonce: &[u8]) -> [u8; 32] {
    let stage1: [u8; 32] = Sha256::digest(password).into();
    let stage2: [u8; 32] = Sha256::digest(stage1).into();
    let mix: [u8; 32] = Sha256::new()
        .chain_update(stage2)
        .chain_update(nonce)
        .finalize()
        .into();
    let mut out = stage1;
    for (o, m) in out.iter_mut().zip(mix) {
        *o ^= m;
    }
    out
}

/// The logged line.
#[must_use]
pub fn line(nonce: &[u8], response: &[u8]) -> String {
    format!(
        "$mysql-sha2${}*{}",
        hex::encode(nonce),
        hex::encode(response)
    )
}

/// True when `password` reproduces the response in `line`.
#[must_use]
pub fn verify(line: &str, password: &[u8]) -> bool {
    let Some((nonce, response)) = line
        .strip_prefix("$mysql-sha2$")
        .and_then(|rest| rest.split_once('*'))
    else {
        return false;
    };
    match (hex::decode(nonce), hex::decode(response)) {
        (Ok(nonce), Ok(response)) => scramble(password, &nonce)[..] == response[..],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scramble_line_cracks_with_the_password_only() {
        let nonce = b"0123456789abcdefghij";
        let line = line(nonce, &scramble(b"s3cret", nonce));
        assert!(
            line.starts_with(
                "$mysql-sha2$30313233343536373839616263646566676869 6a*"
                    .replace(' ', "")
                    .as_str()
            )
        );
        assert!(verify(&line, b"s3cret"));
        assert!(!verify(&line, b"s3cret!"));
        assert!(!verify("$mysql-sha2$zz*00", b"s3cret"));
        assert!(!verify("garbage", b"s3cret"));
    }
}
