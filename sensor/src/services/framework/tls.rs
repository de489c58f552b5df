//! Self-signed certificates for the TLS services (HTTPS, PostgreSQL): generated once with the
//! configured subject and kept in the state directory (or at the paths an HTTPS instance names,
//! Trapster's `key`/`certificate`: used as they are when both exist, else generated there), so
//! a sensor presents the same certificate across restarts as a real server would.
//!
//! Generated certificates have the shape of Debian's `ssl-cert-snakeoil.pem` (what Apache,
//! nginx and PostgreSQL on Debian present out of the box): an RSA 2048 key signed with
//! SHA-256, a random 20-byte serial, ten years (3650 days) of validity from the second it was
//! made, and the extensions `basicConstraints CA:FALSE`, `subjectAltName DNS:<cn>` and a SHA-1
//! `subjectKeyIdentifier`, in that order. rcgen writes its own extensions in another order and
//! marks basicConstraints critical, so the three are written as custom extensions; their DER
//! is a few bytes (a sequence of one name, an octet string) encoded here by hand.
//!
//! Every configuration offers the cipher suites rustls has in OpenSSL's `HIGH` order and picks
//! by the server's preference, as Apache with `SSLHonorCipherOrder on`, IIS and nginx do:
//! TLS 1.3 `AES_256_GCM`, `CHACHA20_POLY1305`, `AES_128_GCM`; TLS 1.2 `ECDHE-{RSA,ECDSA}`
//! with `AES256-GCM`, `CHACHA20-POLY1305`, `AES128-GCM`. rustls has no CBC, CCM, DHE,
//! static-RSA, CAMELLIA or ARIA suite, so the rest of OpenSSL's list cannot be offered.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// The subject of a generated certificate.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// CN, also the DNS subject alternative name.
    pub common_name: String,
    /// O.
    pub organization: Option<String>,
    /// C.
    pub country: Option<String>,
    /// ST.
    pub state: Option<String>,
    /// L.
    pub locality: Option<String>,
    /// First day of validity (Trapster `not_valid_before`, from midnight); default the moment
    /// of generation, as `openssl req -x509` gives it.
    pub not_before: Option<chrono::NaiveDate>,
    /// Last day of validity (Trapster `not_valid_after`); default 3650 days after the start.
    pub not_after: Option<chrono::NaiveDate>,
}

/// A day as Trapster's `not_valid_before`/`not_valid_after` give it (Python
/// `datetime.fromisoformat`: `2024-01-31` or `2024-01-31T08:00:00`; the time of day is not
/// kept: a generated certificate is valid from that day at midnight, as Trapster's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoDay(pub chrono::NaiveDate);

impl<'de> serde::Deserialize<'de> for IsoDay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.get(..10)
            .and_then(|day| chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
            .filter(|_| text.len() == 10 || text[10..].starts_with(['T', ' ']))
            .map(Self)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("`{text}` is not an ISO date (2030-01-31)"))
            })
    }
}

/// A certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing the state directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Generation failed.
    #[error("generating a certificate for {0}: {1}")]
    Generate(String, rcgen::Error),
    /// The RSA key could not be made or encoded.
    #[error("generating an RSA key for {0}: {1}")]
    Key(String, String),
    /// The stored files do not form a usable certificate and key.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Loads `<name>.crt`/`<name>.key` from `dir`, generating them first if missing, and returns a
/// TLS server configuration offering `alpn` protocols.
///
/// # Errors
/// [`TlsError`] naming the file.
pub fn server_config(
    dir: &Path,
    name: &str,
    subject: &Subject,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_files(
        &dir.join(format!("{name}.crt")),
        &dir.join(format!("{name}.key")),
        subject,
        alpn,
    )
}

fn has_content(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// Loads the certificate and key at these paths, generating both first unless both exist with
/// content (Trapster's rule), and returns a TLS server configuration offering `alpn`.
///
/// # Errors
/// [`TlsError`] naming the file.
pub fn server_config_files(
    cert_path: &Path,
    key_path: &Path,
    subject: &Subject,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = (cert_path.to_path_buf(), key_path.to_path_buf());
    // Handlers are built at once on the blocking pool: two instances naming the same files
    // (two on port 0, in tests) must not both generate, or one would load the other's key with
    // its own certificate. One generates; the other finds both files and loads them.
    static GENERATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = GENERATING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !has_content(&cert_path) || !has_content(&key_path) {
        for dir in [cert_path.parent(), key_path.parent()]
            .into_iter()
            .flatten()
        {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        }
        generate(&cert_path, &key_path, subject)?;
    }
    load(&cert_path, &key_path, alpn)
}

/// A TLS server configuration from a PEM certificate chain and key given by path (Trapster's
/// `certificate`/`key` keys), offering `alpn` protocols.
///
/// # Errors
/// [`TlsError`] naming the file.
pub fn load(
    cert_path: &Path,
    key_path: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = (cert_path.to_path_buf(), key_path.to_path_buf());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    let cert_pem = std::fs::read(&cert_path).map_err(io(&cert_path))?;
    let key_pem = std::fs::read(&key_path).map_err(io(&key_path))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|err| TlsError::Invalid {
            path: cert_path.clone(),
            message: err.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| TlsError::Invalid {
        path: key_path.clone(),
        message: err.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Invalid {
            path: cert_path.clone(),
            message: err.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| TlsError::Invalid {
            path: cert_path.clone(),
            message: err.to_string(),
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// The crypto provider of every TLS decoy: ring's suites in OpenSSL's `HIGH` order (see the
/// module doc), to be chosen by the server's preference (`ignore_client_order`).
#[must_use]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    Arc::new(provider)
}

/// A DER length (short form below 128, else long form).
fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![u8::try_from(len).unwrap_or(0)];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | u8::try_from(bytes.len()).unwrap_or(0)];
    out.extend(bytes);
    out
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// `day` at the time of day of `clock`.
fn at_day(
    day: chrono::NaiveDate,
    clock: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    day.and_time(clock.time()).and_utc()
}

fn to_system(at: chrono::DateTime<chrono::Utc>) -> std::time::SystemTime {
    let secs = u64::try_from(at.timestamp()).unwrap_or(0);
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

fn generate(cert_path: &Path, key_path: &Path, subject: &Subject) -> Result<(), TlsError> {
    use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
    use sha1::Digest as _;
    let gen_err = |err| TlsError::Generate(subject.common_name.clone(), err);
    let key_err = |err: String| TlsError::Key(subject.common_name.clone(), err);
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, subject.common_name.as_str());
    let optional = [
        (DnType::OrganizationName, &subject.organization),
        (DnType::CountryName, &subject.country),
        (DnType::StateOrProvinceName, &subject.state),
        (DnType::LocalityName, &subject.locality),
    ];
    for (kind, value) in optional {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            dn.push(kind, v);
        }
    }
    params.distinguished_name = dn;
    // Configured days start at midnight (Trapster's `fromisoformat` of a date); the default is
    // the moment of generation, and 3650 days on, as `make-ssl-cert` gives them.
    let now = chrono::Utc::now();
    let midnight = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(now, |m| m.and_utc());
    let start = subject.not_before.map_or(now, |d| at_day(d, midnight));
    let end = subject
        .not_after
        .map_or_else(|| start + chrono::Days::new(3650), |d| at_day(d, midnight));
    params.not_before = to_system(start).into();
    params.not_after = to_system(end).into();
    let mut serial: [u8; 20] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));

    let mut rng = rand::rng();
    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| key_err(e.to_string()))?;
    let pkcs8 = rsa_key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| key_err(e.to_string()))?;
    let spki = rsa_key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| key_err(e.to_string()))?;
    let key =
        KeyPair::from_pkcs8_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).map_err(gen_err)?;
    // The key identifier is the SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 (1)):
    // the BIT STRING's content after its unused-bits byte.
    let key_bits = spki_key_bits(spki.as_bytes()).ok_or_else(|| key_err("SPKI".to_owned()))?;
    let key_id = sha1::Sha1::digest(key_bits);
    let name = der(0x82, subject.common_name.as_bytes());
    params.custom_extensions = vec![
        rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], der(0x30, &[])),
        rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 17], der(0x30, &name)),
        rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 14], der(0x04, &key_id)),
    ];
    let cert = params.self_signed(&key).map_err(gen_err)?;
    write_private(key_path, pkcs8.as_bytes())?;
    std::fs::write(cert_path, cert.pem()).map_err(|source| TlsError::Io {
        path: cert_path.to_path_buf(),
        source,
    })?;
    tracing::info!(certificate = %cert_path.display(), common_name = %subject.common_name, "Generated a self-signed certificate.");
    Ok(())
}

/// Reads one DER header at `at`: (content start, content length).
fn der_header(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let first = *bytes.get(at.checked_add(1)?)?;
    let mut pos = at.checked_add(2)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        let mut len = 0usize;
        for _ in 0..n.min(8) {
            len = len
                .checked_mul(256)?
                .checked_add(usize::from(*bytes.get(pos)?))?;
            pos = pos.checked_add(1)?;
        }
        len
    };
    Some((pos, len))
}

/// The subjectPublicKey bits of a SubjectPublicKeyInfo: SEQUENCE { algorithm SEQUENCE,
/// subjectPublicKey BIT STRING }.
fn spki_key_bits(spki: &[u8]) -> Option<&[u8]> {
    let (inner, _) = der_header(spki, 0)?;
    let (alg_start, alg_len) = der_header(spki, inner)?;
    let bits_at = alg_start.checked_add(alg_len)?;
    let (bits_start, bits_len) = der_header(spki, bits_at)?;
    spki.get(bits_start.checked_add(1)?..bits_start.checked_add(bits_len)?)
}

/// Writes a secret file readable by its owner only.
///
/// # Errors
/// [`TlsError::Io`].
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::{Subject, server_config};

    #[test]
    fn the_certificate_is_generated_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("tls-{}", uuid::Uuid::new_v4()));
        let subject = Subject {
            common_name: "intranet.corp.example".to_owned(),
            organization: Some("Corp".to_owned()),
            ..Subject::default()
        };
        server_config(&dir, "https-443", &subject, &[b"http/1.1"]).unwrap();
        let first = std::fs::read(dir.join("https-443.crt")).unwrap();
        server_config(&dir, "https-443", &subject, &[]).unwrap();
        assert_eq!(std::fs::read(dir.join("https-443.crt")).unwrap(), first);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("https-443.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn iso_days_parse_as_python_fromisoformat_reads_them() {
        let day = |s: &str| serde_json::from_value::<super::IsoDay>(serde_json::json!(s));
        let want = chrono::NaiveDate::from_ymd_opt(2030, 1, 31).unwrap();
        assert_eq!(day("2030-01-31").unwrap().0, want);
        assert_eq!(day("2030-01-31T08:00:00").unwrap().0, want);
        assert_eq!(day("2030-01-31 08:00").unwrap().0, want);
        assert!(day("31/01/2030").is_err());
        assert!(day("2030-02-30").is_err());
        assert!(day("2030-01-31x").is_err());
    }
}
