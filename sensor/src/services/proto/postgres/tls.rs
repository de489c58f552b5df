//! PostgreSQL 15's TLS shape: the sensor's certificate (generated once in the state directory)
//! with `ssl_ecdh_curve = prime256v1` as the only key-exchange group (OpenSSL clients offering
//! X25519 first get a HelloRetryRequest, as against the real server) and the server's cipher
//! order (`ssl_prefer_server_ciphers = on`). What rustls cannot imitate: PostgreSQL's
//! `HIGH:MEDIUM` list includes CBC and DHE suites rustls does not implement.
//!
//! Also the `tls-server-end-point` hash of the certificate for SCRAM-SHA-256-PLUS, and the
//! per-instance secret behind the mock salts of unknown users.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use tokio_rustls::TlsAcceptor;

use super::scram::server_end_point;
use crate::services::{
    Context,
    framework::tls::{self, Subject, TlsError},
};

fn invalid(path: &std::path::Path, message: impl ToString) -> TlsError {
    TlsError::Invalid {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The acceptor and the channel-binding hash of its certificate.
///
/// # Errors
/// [`TlsError`] naming the file.
pub fn acceptor(ctx: &Context) -> Result<(TlsAcceptor, [u8; 32]), TlsError> {
    let subject = Subject {
        common_name: ctx.hostname.clone(),
        ..Subject::default()
    };
    let name = format!("postgres-{}", ctx.port);
    // Generates the files when missing, and checks them.
    tls::server_config(&ctx.state_dir(), &name, &subject, &[])?;
    let cert_path: PathBuf = ctx.state_dir().join(format!("{name}.crt"));
    let key_path: PathBuf = ctx.state_dir().join(format!("{name}.key"));
    let cert_pem = read(&cert_path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|err| invalid(&cert_path, err))?;
    let end_point = server_end_point(
        certs
            .first()
            .ok_or_else(|| invalid(&cert_path, "no certificate"))?
            .as_ref(),
    );
    let key =
        PrivateKeyDer::from_pem_slice(&read(&key_path)?).map_err(|err| invalid(&key_path, err))?;
    let ring = rustls::crypto::ring::default_provider();
    let provider = CryptoProvider {
        kx_groups: vec![rustls::crypto::ring::kx_group::SECP256R1],
        ..ring
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(&cert_path, err))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| invalid(&cert_path, err))?;
    config.ignore_client_order = true;
    Ok((TlsAcceptor::from(Arc::new(config)), end_point))
}

/// The instance's secret for mock salts, kept in the state directory so that a user name
/// gets the same salt across restarts, as PostgreSQL's `mock_authentication_nonce`.
///
/// # Errors
/// [`TlsError::Io`] when the file cannot be read or written.
pub fn mock_secret(ctx: &Context) -> Result<[u8; 32], TlsError> {
    let path = ctx.state_dir().join(format!("postgres-{}.nonce", ctx.port));
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(secret) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(secret);
    }
    let secret: [u8; 32] = rand::random();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    tls::write_private(&path, &secret)?;
    Ok(secret)
}
