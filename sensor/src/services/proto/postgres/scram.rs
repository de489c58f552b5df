//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL 15 runs it, far enough
//! to receive the client's proof, and the proof kept in a form a defender can crack offline.
//!
//! ```text
//! S: AuthenticationSASL        SCRAM-SHA-256-PLUS (over TLS), SCRAM-SHA-256
//! C: SASLInitialResponse       p=tls-server-end-point,,n=,r=<client nonce>
//! S: AuthenticationSASLContinue r=<client nonce><server nonce>,s=<salt>,i=4096
//! C: SASLResponse              c=<gs2 header + certificate hash>,r=<nonce>,p=<proof>
//! S: ErrorResponse 28P01
//! ```
//! hashcat's `-m 28600` takes the verifier PostgreSQL stores (`SCRAM-SHA-256$<iter>:<salt>$
//! <StoredKey>:<ServerKey>`), which never crosses the wire, so it cannot be made from a
//! capture. What the wire gives is the salt, the iteration count, the AuthMessage and the
//! ClientProof: a password is right when `ClientKey XOR HMAC(H(ClientKey), AuthMessage)` equals
//! the proof, with `ClientKey = HMAC(PBKDF2(password, salt, i), "Client Key")`. [`ScramCapture::line`]
//! writes the four fields as `$scram-sha-256$<i>$<salt>$<auth message>$<proof>` (base64
//! each) and [`ScramCapture::verify`] checks a candidate password against them.
//!
//! The client's SASLprep of the password is not applied: ASCII passwords (all that tools send
//! in practice) are unchanged by it.

use base64::Engine as _;
use ring::{digest, hmac, pbkdf2};

/// The iteration count PostgreSQL 15 uses (`scram_iterations` is not configurable in 15).
pub const ITERATIONS: u32 = 4096;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a client's first message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The GS2 header as sent (`n,,`, `y,,`, `p=tls-server-end-point,,`).
    pub gs2_header: String,
    /// The channel binding type the client asked for (`p=`), if any.
    pub channel_binding: Option<String>,
    /// The GS2 flag: `n` (no binding), `y` (could bind, thinks the server cannot), `p`.
    pub flag: char,
    /// `client-first-message-bare` (`n=...,r=...`).
    pub bare: String,
    /// The client nonce.
    pub nonce: String,
}

/// A malformed SCRAM message, worded as PostgreSQL's `ERRCODE_PROTOCOL_VIOLATION` details.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

/// Parses a `client-first-message`.
///
/// # Errors
/// [`Malformed`] when the GS2 header or the nonce is missing.
pub fn parse_client_first(message: &str) -> Result<ClientFirst, Malformed> {
    let mut parts = message.splitn(3, ',');
    let cbind = parts.next().ok_or(Malformed("Comma expected"))?;
    let authzid = parts.next().ok_or(Malformed("Comma expected"))?;
    let bare = parts.next().ok_or(Malformed("Comma expected"))?;
    let (flag, channel_binding) = match cbind {
        "n" => ('n', None),
        "y" => ('y', None),
        p if p.starts_with("p=") => ('p', p.get(2..).map(str::to_owned)),
        _ => return Err(Malformed("Unexpected channel-binding flag")),
    };
    if !authzid.is_empty() && !authzid.starts_with("a=") {
        return Err(Malformed("Unexpected attribute in client-first-message"));
    }
    let nonce = bare
        .split(',')
        .find_map(|attr| attr.strip_prefix("r="))
        .filter(|n| !n.is_empty())
        .ok_or(Malformed("Could not parse client nonce"))?;
    Ok(ClientFirst {
        gs2_header: format!("{cbind},{authzid},"),
        channel_binding,
        flag,
        bare: bare.to_owned(),
        nonce: nonce.to_owned(),
    })
}

/// What a client's final message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal {
    /// The decoded channel binding (`c=`): the GS2 header, then the binding data if any.
    pub channel_binding: Vec<u8>,
    /// The nonce (`r=`).
    pub nonce: String,
    /// `client-final-message-without-proof`.
    pub without_proof: String,
    /// The decoded ClientProof (`p=`).
    pub proof: Vec<u8>,
}

/// Parses a `client-final-message`.
///
/// # Errors
/// [`Malformed`] when an attribute is missing or not base64.
pub fn parse_client_final(message: &str) -> Result<ClientFinal, Malformed> {
    let (without_proof, proof) = message
        .rsplit_once(",p=")
        .ok_or(Malformed("Could not find proof"))?;
    let mut attrs = without_proof.split(',');
    let c = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or(Malformed("Expected attribute \"c\""))?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(Malformed("Expected attribute \"r\""))?;
    let channel_binding = B64
        .decode(c)
        .map_err(|_| Malformed("Malformed channel binding"))?;
    let proof = B64
        .decode(proof)
        .map_err(|_| Malformed("Malformed proof in client-final-message"))?;
    Ok(ClientFinal {
        channel_binding,
        nonce: nonce.to_owned(),
        without_proof: without_proof.to_owned(),
        proof,
    })
}

/// A server nonce as PostgreSQL makes it: 18 random bytes, base64 (24 characters).
#[must_use]
pub fn server_nonce() -> String {
    B64.encode(rand::random::<[u8; 18]>())
}

/// The `server-first-message`.
#[must_use]
pub fn server_first(client_nonce: &str, server_nonce: &str, salt: &[u8]) -> String {
    format!(
        "r={client_nonce}{server_nonce},s={},i={ITERATIONS}",
        B64.encode(salt)
    )
}

/// The salt PostgreSQL would give `user`: for a role that does not exist it derives a mock
/// salt from the user name and a per-cluster secret, so every try for one name shows one salt.
#[must_use]
pub fn mock_salt(secret: &[u8], user: &str) -> [u8; 16] {
    let digest = sha256(&[user.as_bytes(), secret]);
    let mut salt = [0u8; 16];
    salt.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    salt
}

/// One captured exchange: enough to test passwords offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCapture {
    /// The salt sent.
    pub salt: Vec<u8>,
    /// The iteration count sent.
    pub iterations: u32,
    /// `client-first-bare,server-first,client-final-without-proof`.
    pub auth_message: String,
    /// The client's proof.
    pub proof: Vec<u8>,
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// The ClientProof a client knowing `password` sends for this exchange.
#[must_use]
pub fn client_proof(password: &[u8], salt: &[u8], iterations: u32, auth_message: &str) -> [u8; 32] {
    let mut salted = [0u8; 32];
    let rounds = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        password,
        &mut salted,
    );
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key = sha256(&[&client_key]);
    let signature = hmac_sha256(&stored_key, auth_message.as_bytes());
    let mut proof = client_key;
    for (p, s) in proof.iter_mut().zip(signature) {
        *p ^= s;
    }
    proof
}

impl ScramCapture {
    /// `$scram-sha-256$<iterations>$<salt>$<auth message>$<proof>`, base64 fields.
    #[must_use]
    pub fn line(&self) -> String {
        format!(
            "$scram-sha-256${}${}${}${}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.auth_message.as_bytes()),
            B64.encode(&self.proof)
        )
    }

    /// Reads a [`ScramCapture::line`] back.
    #[must_use]
    pub fn parse_line(line: &str) -> Option<Self> {
        let mut f = line.strip_prefix("$scram-sha-256$")?.split('$');
        let iterations = f.next()?.parse().ok()?;
        let salt = B64.decode(f.next()?).ok()?;
        let auth_message = String::from_utf8(B64.decode(f.next()?).ok()?).ok()?;
        let proof = B64.decode(f.next()?).ok()?;
        f.next().is_none().then_some(Self {
            salt,
            iterations,
            auth_message,
            proof,
        })
    }

    /// True when `password` produces the captured proof.
    #[must_use]
    pub fn verify(&self, password: &[u8]) -> bool {
        client_proof(password, &self.salt, self.iterations, &self.auth_message)[..]
            == self.proof[..]
    }
}

/// `tls-server-end-point` channel-binding data (RFC 5929): the SHA-256 of the server
/// certificate (the hash for certificates signed with SHA-256, as the generated ones are).
#[must_use]
pub fn server_end_point(certificate_der: &[u8]) -> [u8; 32] {
    sha256(&[certificate_der])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange (user "user", password "pencil").
    #[test]
    fn rfc7677_proof_is_recomputed_and_cracks() {
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let final_wp = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let capture = ScramCapture {
            salt: B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
            iterations: 4096,
            auth_message: format!("{bare},{first},{final_wp}"),
            proof: B64.decode(proof).unwrap(),
        };
        assert!(capture.verify(b"pencil"));
        assert!(!capture.verify(b"pencil2"));
        let line = capture.line();
        assert!(line.starts_with("$scram-sha-256$4096$W22ZaJ0SNY7soEsUEjb6gQ==$"));
        assert!(line.ends_with(&format!("${proof}")));
        assert_eq!(ScramCapture::parse_line(&line), Some(capture));
        assert_eq!(ScramCapture::parse_line("$scram-sha-256$x$a$b$c"), None);
    }

    #[test]
    fn client_messages_parse_and_bad_ones_are_refused() {
        let f = parse_client_first("p=tls-server-end-point,,n=,r=abc").unwrap();
        assert_eq!(f.flag, 'p');
        assert_eq!(f.channel_binding.as_deref(), Some("tls-server-end-point"));
        assert_eq!(f.gs2_header, "p=tls-server-end-point,,");
        assert_eq!(f.bare, "n=,r=abc");
        assert_eq!(f.nonce, "abc");
        let n = parse_client_first("n,,n=,r=xyz").unwrap();
        assert_eq!((n.flag, n.gs2_header.as_str()), ('n', "n,,"));
        for bad in ["", "n", "n,,", "x,,n=,r=a", "n,b=1,n=,r=a", "n,,n=,r="] {
            assert!(parse_client_first(bad).is_err(), "{bad}");
        }
        let c = parse_client_final("c=biws,r=abcdef,p=AAAA").unwrap();
        assert_eq!(c.channel_binding, b"n,,");
        assert_eq!(c.nonce, "abcdef");
        assert_eq!(c.without_proof, "c=biws,r=abcdef");
        assert_eq!(c.proof, vec![0, 0, 0]);
        for bad in [
            "",
            "c=biws,r=a",
            "r=a,p=AAAA",
            "c=!!,r=a,p=AAAA",
            "c=biws,r=a,p=!!",
        ] {
            assert!(parse_client_final(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn salts_and_nonces_have_postgres_shapes() {
        assert_eq!(mock_salt(b"k", "bob"), mock_salt(b"k", "bob"));
        assert_ne!(mock_salt(b"k", "bob"), mock_salt(b"k", "alice"));
        assert_ne!(mock_salt(b"k", "bob"), mock_salt(b"j", "bob"));
        assert_eq!(server_nonce().len(), 24);
        let salt = [7u8; 16];
        assert_eq!(
            server_first("cn", "sn", &salt),
            "r=cnsn,s=BwcHBwcHBwcHBwcHBwcHBw==,i=4096"
        );
    }
}
