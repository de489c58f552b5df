//! Self-signed certificates for the TLS services (HTTPS, PostgreSQL): generated once with the
//! configured subject and kept in the state directory (or at the paths an HTTPS instance names,
//! Trapster's `key`/`certificate`: used as they are when both exist, else generated there), so
//! a sensor presents the same certificate across restarts as a real server would.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use chrono::Datelike;
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
    /// First day of validity (Trapster `not_valid_before`); default today.
    pub not_before: Option<chrono::NaiveDate>,
    /// Last day of validity (Trapster `not_valid_after`); default ten years on.
    pub not_after: Option<chrono::NaiveDate>,
}

/// A day as Trapster's `not_valid_before`/`not_valid_after` give it (Python
/// `datetime.fromisoformat`: `2024-01-31` or `2024-01-31T08:00:00`; the time of day is not
/// kept, certificates here are valid from midnight).
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
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
    Ok(Arc::new(config))
}

fn generate(cert_path: &Path, key_path: &Path, subject: &Subject) -> Result<(), TlsError> {
    let gen_err = |err| TlsError::Generate(subject.common_name.clone(), err);
    let mut params = CertificateParams::new(vec![subject.common_name.clone()]).map_err(gen_err)?;
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
    let today = chrono::Utc::now().date_naive();
    let (year, month, day) = (
        today.year(),
        u8::try_from(today.month()).unwrap_or(1),
        u8::try_from(today.day()).unwrap_or(1),
    );
    let ymd = |d: chrono::NaiveDate| {
        rcgen::date_time_ymd(
            d.year(),
            u8::try_from(d.month()).unwrap_or(1),
            u8::try_from(d.day()).unwrap_or(1),
        )
    };
    params.not_before = subject
        .not_before
        .map_or_else(|| rcgen::date_time_ymd(year, month, day), ymd);
    params.not_after = subject.not_after.map_or_else(
        || rcgen::date_time_ymd(year.saturating_add(10), month, day.min(28)),
        ymd,
    );
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let cert = params.self_signed(&key).map_err(gen_err)?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, cert.pem()).map_err(|source| TlsError::Io {
        path: cert_path.to_path_buf(),
        source,
    })?;
    tracing::info!(certificate = %cert_path.display(), common_name = %subject.common_name, "Generated a self-signed certificate.");
    Ok(())
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
