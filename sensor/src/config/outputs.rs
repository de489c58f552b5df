//! Checks of each output's transport that `run` would otherwise trip on late or silently work
//! around: URLs of the HTTP outputs, ports, the syslog facility, mail addresses, the file
//! output's directory and mode. Each mistake names the key inside the transport; the caller
//! puts the output's own path in front (`outputs[2].transport.url`, `logger.kwargs.url`).

use std::path::Path;

use crate::output::{Transport, client::secret::Secret};

/// A mistake in one transport: the key inside it and what is wrong.
pub(super) type Mistake = (&'static str, String);

/// Checks one transport.
pub(super) fn check(transport: &Transport) -> Result<(), Mistake> {
    match transport {
        Transport::Terminal => Ok(()),
        Transport::File(c) => {
            if let Some(mode) = &c.mode
                && octal_mode(mode).is_none()
            {
                return Err((
                    "mode",
                    format!("`{mode}` is not an octal permission such as \"640\" or \"0600\""),
                ));
            }
            check_directory(&c.path)
        }
        Transport::Redis(c) => {
            check_port(Some(c.port))?;
            c.check()
        }
        Transport::Api(c) => check_url("url", &c.url),
        Transport::SplunkHec(c) => check_url("url", &c.url),
        Transport::Sekoia(c) => c.url.as_ref().map_or(Ok(()), |url| check_url("url", url)),
        Transport::Slack(c) | Transport::Teams(c) => check_url("webhook_url", &c.webhook_url),
        Transport::Webhook(c) => check_url("url", &c.url),
        Transport::Elasticsearch(c) => check_url("url", &c.url),
        Transport::Nats(c) => c.check(),
        Transport::Kafka(c) => c.check(),
        Transport::Syslog(c) => {
            check_port(c.port)?;
            if c.facility > 23 {
                return Err((
                    "facility",
                    format!("{} is outside 0..=23 (16 is local0)", c.facility),
                ));
            }
            Ok(())
        }
        Transport::Email(c) => {
            check_port(c.port)?;
            if c.to.is_empty() {
                return Err(("to", "needs at least one recipient".to_owned()));
            }
            check_mailbox("from", &c.from)?;
            c.to.iter().try_for_each(|to| check_mailbox("to", to))
        }
    }
}

/// The permission bits an octal mode string (`640`, `0640`, `0o640`) stands for, at most
/// `0o7777`.
pub(super) fn octal_mode(mode: &str) -> Option<u32> {
    let digits = mode.strip_prefix("0o").unwrap_or(mode);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|bits| *bits <= 0o7777)
}

/// Whether `mode` is one of Python's `open()` modes (Trapster's `kwargs.mode` for its file
/// logger: `a`, `w+`, ...), which this sensor does not need: it always appends.
pub(super) fn python_open_mode(mode: &str) -> bool {
    !mode.is_empty() && mode.len() <= 3 && mode.bytes().all(|b| b"rwaxbt+".contains(&b))
}

fn check_port(port: Option<u16>) -> Result<(), Mistake> {
    if port == Some(0) {
        return Err((
            "port",
            "0 is not a port (1 to 65535; leave `port` out for the default)".to_owned(),
        ));
    }
    Ok(())
}

/// The URL is a secret (tokens live in webhook paths): only its scheme is ever shown.
fn check_url(key: &'static str, url: &Secret) -> Result<(), Mistake> {
    let text = url.expose();
    if !text.contains("://") {
        return Err((key, "has no scheme: write http:// or https://".to_owned()));
    }
    match reqwest::Url::parse(text) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(()),
        Ok(parsed) => Err((
            key,
            format!("scheme `{}` is not http or https", parsed.scheme()),
        )),
        Err(err) => Err((key, format!("is not a URL: {err}"))),
    }
}

fn check_mailbox(key: &'static str, address: &str) -> Result<(), Mistake> {
    address
        .parse::<lettre::message::Mailbox>()
        .map(drop)
        .map_err(|err| (key, format!("`{address}` is not a mail address: {err}")))
}

fn check_directory(path: &Path) -> Result<(), Mistake> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(("path", format!("{} is not a directory", dir.display()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err((
            "path",
            format!("directory {} does not exist", dir.display()),
        )),
        // Unreadable from here (permissions): `run`, maybe with other rights, says more.
        Err(_) => Ok(()),
    }
}
