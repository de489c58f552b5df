//! TLS client settings shared by every TLS client of the outputs (HTTP outputs through
//! reqwest's preconfigured TLS, syslog, email): ONE root store, the operating system's
//! (`rustls-native-certs`, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`) plus the output's
//! `ca_file` (also handed to the SMTP client, [`trusted_certs`]), an optional client certificate, and the `insecure` verifier that accepts any
//! certificate (outputs using it warn at every start).

use std::{path::Path, sync::Arc};

use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject as _},
};

/// The trusted certificates of every output, loaded one way: the operating system's (as
/// `rustls-native-certs` finds them: `SSL_CERT_FILE`, `SSL_CERT_DIR`, else the platform's
/// store) plus every certificate of `ca_file`.
///
/// # Errors
/// `ca_file` cannot be read or parsed (named).
pub fn trusted_certs(ca_file: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, String> {
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::debug!(error = %err, "A system certificate could not be loaded.");
    }
    let mut certs = native.certs;
    if let Some(ca) = ca_file {
        let named = |e: &dyn std::fmt::Display| format!("{}: {e}", ca.display());
        let pem = std::fs::read(ca).map_err(|e| named(&e))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            certs.push(cert.map_err(|e| named(&e))?);
        }
    }
    Ok(certs)
}

/// [`trusted_certs`] as one PEM bundle, for clients that take their roots as PEM (redis).
///
/// # Errors
/// As [`trusted_certs`].
pub fn pem_bundle(ca_file: Option<&Path>) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let mut pem = Vec::new();
    for cert in trusted_certs(ca_file)? {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}

/// [`trusted_certs`] as a rustls root store.
///
/// # Errors
/// As [`trusted_certs`], or no usable trust anchor at all.
pub fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(trusted_certs(ca_file)?);
    if ignored > 0 {
        tracing::debug!(ignored, "Certificates rustls cannot use were skipped.");
    }
    if roots.is_empty() {
        return Err("no trusted CA: none in the system store and no ca_file".to_owned());
    }
    Ok(roots)
}

/// A connector for [`client_config`].
///
/// # Errors
/// As [`client_config`].
pub fn connector(
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path)>,
    insecure: bool,
) -> Result<tokio_rustls::TlsConnector, String> {
    client_config(ca_file, client, insecure)
        .map(|config| tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A client configuration verifying servers against [`root_store`], presenting `client`
/// (certificate chain and key files) when given, or verifying nothing when `insecure`.
///
/// # Errors
/// A file that cannot be read or parsed, named.
pub fn client_config(
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path)>,
    insecure: bool,
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?;
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
    } else {
        builder.with_root_certificates(root_store(ca_file)?)
    };
    let config = match client {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect)
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// Accepts every server certificate (`insecure: true`).
#[derive(Debug)]
pub struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
