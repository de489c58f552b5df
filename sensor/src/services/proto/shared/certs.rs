//! TLS server configurations for the Windows decoys: the certificate at the paths the instance
//! names (Trapster's `key` and `certificate`) when both files exist, otherwise the one the
//! framework generates once in the state directory; optionally limited to TLS 1.2, as SQL
//! Server's TDS 7.x encryption is.

use std::{path::Path, sync::Arc};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use crate::services::{
    Context, ServiceError,
    framework::tls::{self, Subject},
};

/// Which TLS versions a decoy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// TLS 1.2 and 1.3.
    Modern,
    /// TLS 1.2 only.
    Tls12,
}

/// The server configuration of an instance named `name` (`ldaps-636`): from `key` and
/// `certificate` when both name existing files, else generated once for `subject` in the state
/// directory.
///
/// # Errors
/// [`ServiceError::Setup`] naming the file or field that cannot be used.
pub fn server_config(
    ctx: &Context,
    name: &str,
    subject: &Subject,
    key: Option<&str>,
    certificate: Option<&str>,
    versions: Versions,
) -> Result<Arc<ServerConfig>, ServiceError> {
    let given = match (key, certificate) {
        (Some(k), Some(c)) if Path::new(k).exists() && Path::new(c).exists() => {
            Some((Path::new(c).to_path_buf(), Path::new(k).to_path_buf()))
        }
        _ => None,
    };
    let (cert_path, key_path) = if let Some(paths) = given {
        paths
    } else {
        let dir = ctx.state_dir();
        tls::server_config(&dir, name, subject, &[])
            .map_err(|err| ctx.setup_error(err.to_string()))?;
        (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        )
    };
    let field_error = |field: &str, path: &Path, message: String| {
        ctx.setup_error(format!("{field} ({}): {message}", path.display()))
    };
    let cert_pem = std::fs::read(&cert_path)
        .map_err(|e| field_error("certificate", &cert_path, e.to_string()))?;
    let key_pem =
        std::fs::read(&key_path).map_err(|e| field_error("key", &key_path, e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| field_error("certificate", &cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(field_error(
            "certificate",
            &cert_path,
            "no certificate in the file".to_owned(),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| field_error("key", &key_path, e.to_string()))?;
    let builder = ServerConfig::builder_with_provider(tls::provider());
    let builder = match versions {
        Versions::Modern => builder.with_safe_default_protocol_versions(),
        Versions::Tls12 => builder.with_protocol_versions(&[&rustls::version::TLS12]),
    }
    .map_err(|e| ctx.setup_error(e.to_string()))?;
    let mut config = builder
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| field_error("key", &key_path, e.to_string()))?;
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}
