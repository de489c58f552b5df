//! The TLS SQL Server speaks inside TDS, as SChannel serves it: OpenSSL, for this decoy only.
//!
//! nmap's `ssl-cert` and `ssl-enum-ciphers` reach a SQL Server's certificate through their own
//! TLS hello (nselib `tls.lua`), which offers static-RSA key exchange and CBC suites only. rustls
//! implements neither, so every other TLS service stays on rustls and this one runs on the
//! system's OpenSSL (Debian 12: 3.0), driven through memory buffers: [`Engine`] is fed the bytes
//! that TDS carries and hands back the records to send, so the caller can wrap the handshake in
//! PRELOGIN packets and send later records bare (`tokio-openssl` would own the socket, which
//! the TDS framing cannot allow). No pure-Rust TLS server offers static RSA and CBC today.
//!
//! What the decoy accepts follows the Windows release the configured SQL Server usually runs on
//! (SChannel's defaults, Microsoft's "Cipher Suites in TLS/SSL (Schannel SSP)" lists, the
//! ECDSA suites left out since the key is RSA, RC4 left out as the 2015 updates disabled it):
//! - SQL Server 2016 and later (Windows Server 2016/2019): `ECDHE-RSA` GCM, `DHE-RSA` GCM,
//!   `ECDHE-RSA` CBC (SHA-384, SHA-256, SHA-1), then static RSA GCM, CBC-SHA256 and CBC-SHA,
//!   in that order; curves X25519, P-256, P-384;
//! - 2008 to 2014 (Windows Server 2012 R2): `ECDHE-RSA` CBC first, `DHE-RSA` GCM, static RSA
//!   GCM and CBC, `DHE-RSA` CBC, then the `ECDHE-RSA` GCM suites KB3042058 appended; curves
//!   P-256, P-384 (no X25519 before Windows 10).
//!
//! SChannel also offers `TLS_RSA_WITH_3DES_EDE_CBC_SHA` last; Debian's OpenSSL is built
//! without 3DES (`no-weak-ssl-ciphers`), so the decoy cannot. DHE uses RFC 5114's 2048-bit
//! group (Windows picks its own 2048-bit one).
//!
//! The server's order wins, as SChannel's does. TLS 1.0, 1.1 and 1.2 are served: both Windows
//! releases enable all three by default, and TDS 7.x cannot carry TLS 1.3. OpenSSL 3.0 forbids
//! TLS below 1.2 and SHA-1 signatures from security level 1 up, so the context runs at
//! level 0 with the suite list set explicitly (never OpenSSL's `DEFAULT`).
//!
//! The certificate, unless Trapster's `key` and `certificate` name existing files, is made at
//! every start as SQL Server makes its `SSL_Self_Signed_Fallback` one (as nmap shows real
//! ones): X.509 v3 without extensions, issuer = subject = `CN=SSL_Self_Signed_Fallback`, a
//! random positive 16-byte serial, valid from the start to the same second 30 years on,
//! signed with SHA-256; RSA 2048, and RSA 3072 for SQL Server 2022.

use std::{
    io::{self, Read, Write},
    path::Path,
};

use openssl::{
    asn1::Asn1Time,
    bn::BigNum,
    dh::Dh,
    error::ErrorStack,
    hash::MessageDigest,
    nid::Nid,
    pkey::{PKey, Private},
    rsa::Rsa,
    ssl::{
        ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslStream, SslVersion,
    },
    x509::{X509, X509Builder, X509NameBuilder},
};

use super::wire::Version;

/// The common name of SQL Server's generated certificate.
pub const FALLBACK_NAME: &str = "SSL_Self_Signed_Fallback";

/// SChannel's TLS 1.2 order on Windows Server 2016/2019, RSA certificate (OpenSSL names).
const SUITES_2019: &str = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:\
DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:\
ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA:\
AES256-GCM-SHA384:AES128-GCM-SHA256:AES256-SHA256:AES128-SHA256:AES256-SHA:AES128-SHA";

/// SChannel's order on Windows Server 2012 R2 (with KB3042058's GCM suites last).
const SUITES_2012R2: &str = "ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256:\
ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:\
AES256-GCM-SHA384:AES128-GCM-SHA256:AES256-SHA256:AES128-SHA256:AES256-SHA:AES128-SHA:\
DHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA:\
ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256";

/// Why the TLS side cannot be set up or goes on.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// OpenSSL refused a setting or a key.
    #[error("OpenSSL: {0}")]
    Setup(#[from] ErrorStack),
    /// A `key` or `certificate` file cannot be read or parsed.
    #[error("{field} ({path}): {message}")]
    File {
        /// `key` or `certificate`.
        field: &'static str,
        /// The configured path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The peer broke the protocol (the alert, if any, is in the output).
    #[error("TLS: {0}")]
    Protocol(String),
    /// The peer closed the TLS session (close_notify).
    #[error("TLS session closed")]
    Closed,
}

/// The suites of the Windows release a SQL Server of `version` runs on.
#[must_use]
pub const fn suites(version: Version) -> &'static str {
    if version.major >= 13 {
        SUITES_2019
    } else {
        SUITES_2012R2
    }
}

/// A fresh `SSL_Self_Signed_Fallback` certificate and its key, as `version` makes them.
///
/// # Errors
/// [`TlsError::Setup`] when OpenSSL fails.
pub fn fallback_certificate(version: Version) -> Result<(X509, PKey<Private>), TlsError> {
    let bits = if version.major >= 16 { 3072 } else { 2048 };
    let key = PKey::from_rsa(Rsa::generate(bits)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, FALLBACK_NAME)?;
    let name = name.build();
    let mut serial: [u8; 16] = rand::random();
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let now = chrono::Utc::now();
    // Valid to the same day and second 30 years on, as real ones are.
    let end = now
        .checked_add_months(chrono::Months::new(360))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    let mut cert = X509Builder::new()?;
    cert.set_version(2)?;
    let serial = BigNum::from_slice(&serial)?.to_asn1_integer()?;
    cert.set_serial_number(&serial)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    let (start, end) = (
        Asn1Time::from_unix(now.timestamp())?,
        Asn1Time::from_unix(end.timestamp())?,
    );
    cert.set_not_before(&start)?;
    cert.set_not_after(&end)?;
    cert.set_pubkey(&key)?;
    cert.sign(&key, MessageDigest::sha256())?;
    Ok((cert.build(), key))
}

/// The certificate chain and key at `certificate` and `key` (PEM).
///
/// # Errors
/// [`TlsError::File`] naming the field whose file cannot be used.
pub fn load(certificate: &Path, key: &Path) -> Result<(Vec<X509>, PKey<Private>), TlsError> {
    let file_error = |field, path: &Path, message: String| TlsError::File {
        field,
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(certificate)
        .map_err(|e| file_error("certificate", certificate, e.to_string()))?;
    let chain = X509::stack_from_pem(&pem)
        .map_err(|e| file_error("certificate", certificate, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(
            "certificate",
            certificate,
            "no certificate in the file".to_owned(),
        ));
    }
    let pem = std::fs::read(key).map_err(|e| file_error("key", key, e.to_string()))?;
    let private =
        PKey::private_key_from_pem(&pem).map_err(|e| file_error("key", key, e.to_string()))?;
    Ok((chain, private))
}

/// The server context: TLS 1.0 to 1.2, `version`'s suites in the server's order, the chain and
/// key given (the first certificate is the server's).
///
/// # Errors
/// [`TlsError::Setup`] when OpenSSL refuses a setting or the key does not match.
pub fn context(
    version: Version,
    chain: &[X509],
    key: &PKey<Private>,
) -> Result<SslContext, TlsError> {
    let mut ctx = SslContextBuilder::new(SslMethod::tls_server())?;
    ctx.set_security_level(0);
    ctx.set_min_proto_version(Some(SslVersion::TLS1))?;
    ctx.set_max_proto_version(Some(SslVersion::TLS1_2))?;
    ctx.set_cipher_list(suites(version))?;
    ctx.set_options(
        SslOptions::CIPHER_SERVER_PREFERENCE
            | SslOptions::NO_TICKET
            | SslOptions::NO_COMPRESSION
            | SslOptions::NO_RENEGOTIATION,
    );
    ctx.set_groups_list(if version.major >= 13 {
        "X25519:P-256:P-384"
    } else {
        "P-256:P-384"
    })?;
    let dh = Dh::get_2048_256()?;
    ctx.set_tmp_dh(&dh)?;
    let (leaf, rest) = chain
        .split_first()
        .ok_or_else(|| TlsError::Protocol("empty certificate chain".to_owned()))?;
    ctx.set_certificate(leaf)?;
    for extra in rest {
        ctx.add_extra_chain_cert(extra.clone())?;
    }
    ctx.set_private_key(key)?;
    ctx.check_private_key()?;
    Ok(ctx.build())
}

/// The in-memory transport OpenSSL reads from and writes to.
#[derive(Debug, Default)]
struct Pipe {
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.incoming.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.incoming.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), self.incoming.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.incoming.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One server-side TLS session driven by hand: bytes in, records out.
#[derive(Debug)]
pub struct Engine {
    stream: SslStream<Pipe>,
    handshaken: bool,
}

fn protocol(err: &openssl::ssl::Error) -> TlsError {
    TlsError::Protocol(
        err.ssl_error()
            .and_then(|stack| stack.errors().first())
            .and_then(openssl::error::Error::reason)
            .map_or_else(|| err.to_string(), str::to_owned),
    )
}

impl Engine {
    /// A session of `ctx`, waiting for the client's hello.
    ///
    /// # Errors
    /// [`TlsError::Setup`] when OpenSSL cannot make the session.
    pub fn new(ctx: &SslContext) -> Result<Self, TlsError> {
        let ssl = Ssl::new(ctx)?;
        Ok(Self {
            stream: SslStream::new(ssl, Pipe::default())?,
            handshaken: false,
        })
    }

    /// Gives the engine bytes the client sent.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.stream.get_mut().incoming.extend_from_slice(bytes);
    }

    /// The records waiting to be sent (the handshake's flights, an alert, application data).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.stream.get_mut().outgoing)
    }

    /// Runs the handshake on what was fed: `Ok(true)` once it is complete, `Ok(false)` while it
    /// needs more from the client.
    ///
    /// # Errors
    /// [`TlsError::Protocol`] when the client's messages cannot be served (the alert OpenSSL
    /// wrote is in [`Engine::take_output`]).
    pub fn handshake(&mut self) -> Result<bool, TlsError> {
        if self.handshaken {
            return Ok(true);
        }
        match self.stream.accept() {
            Ok(()) => {
                self.handshaken = true;
                Ok(true)
            }
            Err(e) if e.code() == ErrorCode::WANT_READ => Ok(false),
            Err(e) => Err(protocol(&e)),
        }
    }

    /// Whether the handshake is complete.
    #[must_use]
    pub const fn is_handshaken(&self) -> bool {
        self.handshaken
    }

    /// Decrypts what was fed and appends the plaintext to `out`, at most `limit` bytes in all.
    ///
    /// # Errors
    /// [`TlsError::Closed`] after the client's close_notify, [`TlsError::Protocol`] on a bad
    /// record.
    pub fn read_into(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), TlsError> {
        let mut chunk = [0u8; 4096];
        // Each round takes at least one byte of `limit`, or stops.
        while out.len() < limit {
            match self.stream.ssl_read(&mut chunk) {
                Ok(0) => return Err(TlsError::Closed),
                Ok(n) => out.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Err(TlsError::Closed),
                Err(e) => return Err(protocol(&e)),
            }
        }
        Ok(())
    }

    /// Encrypts `bytes`; the records are in [`Engine::take_output`].
    ///
    /// # Errors
    /// [`TlsError::Protocol`] when the session cannot send.
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<(), TlsError> {
        // Each round writes at least one byte (the pipe never blocks), so `bytes.len()` rounds.
        for _ in 0..=bytes.len() {
            if bytes.is_empty() {
                break;
            }
            let n = self.stream.ssl_write(bytes).map_err(|e| protocol(&e))?;
            bytes = bytes.get(n..).unwrap_or(&[]);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
