//! The HTTP client of every HTTP output (api, Splunk HEC, Sekoia, Slack, Teams, webhooks):
//! reqwest on rustls with the one root store of [`super::tls`] (system store plus `ca_file`),
//! and error texts that never carry the URL (which may hold a key).

use std::{path::Path, time::Duration};

/// A client trusting [`super::tls::root_store`] (or nothing, when `insecure`), with a
/// per-request `timeout`.
///
/// # Errors
/// The CA file cannot be read, or the client cannot be built (URL-free text).
pub fn client(
    ca_file: Option<&Path>,
    insecure: bool,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let mut tls = super::tls::client_config(ca_file, None, insecure)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .timeout(timeout)
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| format!("building the HTTP client: {}", without_url(&e)))
}

/// What logs may show of an output's URL: scheme, host and port, never the path or query
/// (which may carry a key).
#[must_use]
pub fn shown_url(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(
        |_| "<unparsable url>".to_owned(),
        |u| {
            format!(
                "{}://{}:{}",
                u.scheme(),
                u.host_str().unwrap_or("?"),
                u.port_or_known_default().unwrap_or(0)
            )
        },
    )
}

/// [`client`] for output `name`, warning at every start when certificate checks are off.
///
/// # Errors
/// As [`client`].
pub fn output_client(
    name: &str,
    shown: &str,
    ca_file: Option<&Path>,
    insecure: bool,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    if insecure {
        tracing::warn!(output = name, url = %shown, "TLS certificate verification is OFF for this output (insecure: true).");
    }
    client(ca_file, insecure, timeout)
}

/// An HTTP error's text without the URL (which may carry a key): its kind and its cause.
pub fn without_url(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_builder() {
        "invalid request"
    } else {
        "request failed"
    };
    match std::error::Error::source(err) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}
