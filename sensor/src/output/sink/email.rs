//! `email` output: one mail per new incident (and per test), plus an optional digest of
//! everything else it received, over SMTP with STARTTLS (default), implicit TLS or plain, with
//! `AUTH PLAIN` or `AUTH LOGIN` (whichever the server offers). Mails have a text and an HTML
//! part (base64, so no attacker byte can end the message or forge a header) and a subject
//! naming severity, description, source and service.
//!
//! The mail is built from the enterprise envelope ([`compose`], a pure function); the SMTP
//! dialogue is `lettre`'s, on rustls with the root store every output shares
//! ([`crate::output::client::tls::trusted_certs`]).

use std::{path::PathBuf, time::Duration};

use crate::output::{
    client::secret::Secret,
    sink::{Body, Record, Sink, WriteError},
};
use lettre::{
    AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor,
    message::{
        Mailbox, MultiPart, SinglePart,
        header::{ContentTransferEncoding, ContentType},
    },
    transport::smtp::{
        authentication::{Credentials, Mechanism},
        client::{Certificate, CertificateStore, Tls, TlsParameters},
        extension::ClientId,
    },
};
use serde::Deserialize;
use serde_json::Value;

/// Most messages held for one digest.
const MAX_DIGEST: usize = 10_000;

/// Connection security.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all (test relays only).
    None,
}

/// `transport: {"type": "email", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server.
    pub host: String,
    /// Port; default 587 (STARTTLS), 465 (TLS) or 25 (none).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub security: Security,
    /// AUTH user.
    #[serde(default)]
    pub username: Option<String>,
    /// AUTH password (never logged).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Send what is not a new incident as one digest mail at most this often (seconds);
    /// without it, only new incidents are mailed.
    #[serde(default)]
    pub digest_interval_secs: Option<u64>,
    /// PEM CA bundle; the system bundle when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (warned at start).
    #[serde(default)]
    pub insecure: bool,
    /// Prefix of every subject; default `[Trapster sensor]`.
    #[serde(default)]
    pub subject_prefix: Option<String>,
}

impl EmailConfig {
    /// The effective port.
    #[must_use]
    pub const fn port(&self) -> u16 {
        match (self.port, self.security) {
            (Some(p), _) => p,
            (None, Security::Starttls) => 587,
            (None, Security::Tls) => 465,
            (None, Security::None) => 25,
        }
    }
}

/// A composed mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Subject (ASCII, no line break).
    pub subject: String,
    /// Text part.
    pub text: String,
    /// HTML part.
    pub html: String,
}

fn clean(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The mail for one envelope (an incident, or an event if the output takes events).
#[must_use]
pub fn compose(envelope: &Value, prefix: &str) -> Mail {
    let is_incident = envelope.get("type").and_then(Value::as_u64) == Some(2);
    let source = clean(&field(envelope, "src_ip"), 64);
    let service = clean(&field(envelope, "channel"), 32);
    let (title, rows): (String, Vec<(&str, String)>) = if is_incident {
        let severity = clean(&field(envelope, "severity"), 16).to_uppercase();
        let description = clean(&field(envelope, "description"), 120);
        (
            format!("{severity}: {description} from {source} ({service})"),
            vec![
                ("Incident", field(envelope, "id")),
                ("Action", field(envelope, "action")),
                ("Severity", severity.clone()),
                ("Description", description.clone()),
                ("Source", source.clone()),
                ("Service", service.clone()),
                ("Target port", field(envelope, "dst_port")),
                ("Events", field(envelope, "events_count")),
                ("First seen", field(envelope, "start_time")),
                ("Last seen", field(envelope, "end_time")),
                ("Sensor", field(&envelope["device"], "name")),
            ],
        )
    } else {
        let logtype = clean(&field(envelope, "logtype"), 48);
        (
            format!("{logtype} from {source} ({service})"),
            vec![
                ("Event", logtype.clone()),
                (
                    "Source",
                    format!("{source}:{}", field(envelope, "src_port")),
                ),
                (
                    "Target",
                    format!(
                        "{}:{}",
                        field(envelope, "dst_ip"),
                        field(envelope, "dst_port")
                    ),
                ),
                ("Time", field(envelope, "timestamp")),
                ("Details", clean(&envelope["extra"].to_string(), 2_000)),
                ("Sensor", field(&envelope["device"], "name")),
            ],
        )
    };
    let subject: String = format!("{prefix} {title}")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect();
    let mut text = format!("{title}\n\n");
    let mut html = format!(
        "<html><body><h2>{}</h2><table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">",
        html_escape(&title)
    );
    for (k, v) in &rows {
        let v = clean(v, 2_000);
        text.push_str(&format!("{k}: {v}\n"));
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            html_escape(k),
            html_escape(&v)
        ));
    }
    html.push_str("</table></body></html>");
    Mail {
        subject,
        text,
        html,
    }
}

/// The digest of several envelopes.
#[must_use]
pub fn digest(envelopes: &[Value], prefix: &str) -> Mail {
    let mut text = format!("{} messages since the last digest:\n\n", envelopes.len());
    let mut html = format!(
        "<html><body><h2>{} messages since the last digest</h2><ul>",
        envelopes.len()
    );
    for e in envelopes {
        let one = compose(e, "");
        let line = one.subject.trim().to_owned();
        text.push_str(&format!("- {line}\n"));
        html.push_str(&format!("<li>{}</li>", html_escape(&line)));
    }
    html.push_str("</ul></body></html>");
    Mail {
        subject: format!("{prefix} digest: {} messages", envelopes.len()),
        text,
        html,
    }
}

/// The RFC 5322 message: headers, and both parts base64-encoded.
///
/// # Errors
/// An address that does not parse, named.
pub fn render(
    mail: &Mail,
    from: &str,
    to: &[String],
    host: &str,
) -> Result<lettre::Message, String> {
    let mailbox = |a: &str| {
        clean(a, 254)
            .parse::<Mailbox>()
            .map_err(|e| format!("address {}: {e}", clean(a, 254)))
    };
    let mut builder = lettre::Message::builder()
        .from(mailbox(from)?)
        .subject(mail.subject.clone())
        .message_id(Some(format!(
            "<{}@{}>",
            uuid::Uuid::new_v4(),
            clean(host, 64).replace(' ', "")
        )));
    for a in to {
        builder = builder.to(mailbox(a)?);
    }
    let part = |content_type: ContentType, body: &str| {
        SinglePart::builder()
            .header(content_type)
            .header(ContentTransferEncoding::Base64)
            .body(body.to_owned())
    };
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(part(ContentType::TEXT_PLAIN, &mail.text))
                .singlepart(part(ContentType::TEXT_HTML, &mail.html)),
        )
        .map_err(|e| e.to_string())
}

/// An SMTP sender.
pub struct EmailOutput {
    config: EmailConfig,
    smtp: Result<AsyncSmtpTransport<Tokio1Executor>, String>,
    pending_digest: Vec<Value>,
    /// The digest being sent: kept across failed attempts, so a retry sends the same mail.
    outgoing: Option<Mail>,
    last_digest: tokio::time::Instant,
    helo: String,
    body: Body,
}

impl std::fmt::Debug for EmailOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailOutput")
            .field("host", &self.config.host)
            .field("port", &self.config.port())
            .finish_non_exhaustive()
    }
}

/// The SMTP transport `config` describes: TLS as configured, trusting the shared root store,
/// AUTH PLAIN or LOGIN with the credentials.
fn transport(
    config: &EmailConfig,
    helo: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls = if config.security == Security::None {
        Tls::None
    } else {
        let mut params = TlsParameters::builder(config.host.clone())
            .certificate_store(CertificateStore::None)
            .dangerous_accept_invalid_certs(config.insecure);
        for der in crate::output::client::tls::trusted_certs(config.ca_file.as_deref())? {
            if let Ok(cert) = Certificate::from_der(der.to_vec()) {
                params = params.add_root_certificate(cert);
            }
        }
        let params = params.build_rustls().map_err(|e| format!("TLS: {e}"))?;
        match config.security {
            Security::Tls => Tls::Wrapper(params),
            Security::Starttls | Security::None => Tls::Required(params),
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
        .port(config.port())
        .tls(tls)
        .hello_name(ClientId::Domain(helo.to_owned()))
        .timeout(Some(Duration::from_secs(30)));
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder
            .credentials(Credentials::new(user.clone(), password.expose().to_owned()))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    Ok(builder.build())
}

impl EmailOutput {
    /// A sender; it connects for each mail.
    #[must_use]
    pub fn new(config: EmailConfig, name: &str, device: &str) -> Self {
        if config.insecure {
            tracing::warn!(
                output = name,
                "TLS certificate verification is OFF for this output (insecure: true)."
            );
        }
        let helo = clean(device, 64).replace(' ', "-");
        let smtp = transport(&config, &helo);
        Self {
            config,
            smtp,
            pending_digest: Vec::new(),
            outgoing: None,
            body: Body::Format(crate::format::Format::Trapster),
            last_digest: tokio::time::Instant::now(),
            helo,
        }
    }

    fn prefix(&self) -> String {
        self.config
            .subject_prefix
            .clone()
            .unwrap_or_else(|| "[Trapster sensor]".to_owned())
    }

    /// Sends one mail; returns the server's answer to the message (`250 ...`).
    ///
    /// # Errors
    /// The failing step and the server's answer (the password never appears).
    pub async fn send(&self, mail: &Mail) -> Result<String, String> {
        let smtp = self.smtp.as_ref().map_err(Clone::clone)?;
        let message = render(mail, &self.config.from, &self.config.to, &self.helo)?;
        let response = smtp.send(message).await.map_err(|e| {
            let text = e.to_string();
            clean(&text, 300)
        })?;
        let text: Vec<&str> = response.message().collect();
        Ok(format!(
            "{} {}",
            response.code(),
            clean(&text.join(" "), 200)
        ))
    }

    /// The mails a batch of envelopes (JSON records) calls for: one per new incident or test;
    /// the rest goes to the digest (or nowhere without one).
    /// Also returns how many records will never be mailed (unreadable, no digest to take them,
    /// or a full digest): the output counts them as dropped, not sent.
    fn mails_for(&mut self, records: &[&[u8]]) -> (Vec<Mail>, u64) {
        let prefix = self.prefix();
        let mut mails = Vec::new();
        let mut unmailed = 0u64;
        for r in records {
            let Ok(envelope) = serde_json::from_slice::<Value>(r) else {
                unmailed = unmailed.saturating_add(1);
                continue;
            };
            let action = field(&envelope, "action");
            if matches!(action.as_str(), "incident_created" | "incident_test") {
                mails.push(compose(&envelope, &prefix));
            } else if self.config.digest_interval_secs.is_some()
                && self.pending_digest.len() < MAX_DIGEST
            {
                self.pending_digest.push(envelope);
            } else {
                unmailed = unmailed.saturating_add(1);
            }
        }
        (mails, unmailed)
    }

    /// Whether a digest should go out now (`force`: at shutdown, whatever the interval).
    #[must_use]
    pub fn digest_due(&self, force: bool) -> bool {
        self.config.digest_interval_secs.is_some_and(|secs| {
            !self.pending_digest.is_empty()
                && (force || self.last_digest.elapsed() >= Duration::from_secs(secs))
        })
    }

    /// One attempt at the mails a batch calls for (the spool retries the batch).
    ///
    /// # Errors
    /// The failing step and the server's answer.
    /// `Ok` carries how many records will never be mailed (see `mails_for`).
    pub async fn try_write(&mut self, records: &[&[u8]]) -> Result<u64, String> {
        let (mails, unmailed) = self.mails_for(records);
        for mail in mails {
            self.send(&mail).await?;
        }
        Ok(unmailed)
    }
}

#[async_trait::async_trait]
impl Sink for EmailOutput {
    fn body(&self) -> &Body {
        &self.body
    }

    /// One message per attempt: a retry never sends a mail twice.
    fn batch_size(&self) -> usize {
        1
    }

    fn describe(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port())
    }

    async fn write(&mut self, batch: &[Record<'_>]) -> Result<u64, WriteError> {
        let records: Vec<&[u8]> = batch.iter().map(|r| r.bytes).collect();
        self.try_write(&records).await.map_err(WriteError::retry)
    }

    fn tick(&self) -> Option<Duration> {
        self.config
            .digest_interval_secs
            .map(|_| Duration::from_secs(1))
    }

    async fn flush(&mut self, force: bool) -> Result<(), WriteError> {
        if self.outgoing.is_none() {
            if !self.digest_due(force) {
                return Ok(());
            }
            self.outgoing = Some(digest(
                &std::mem::take(&mut self.pending_digest),
                &self.prefix(),
            ));
            self.last_digest = tokio::time::Instant::now();
        }
        if let Some(mail) = &self.outgoing {
            self.send(mail).await.map_err(WriteError::retry)?;
            self.outgoing = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{compose, render};

    #[test]
    fn subject_names_severity_source_and_service_and_stays_one_line() {
        let envelope = json!({
            "action": "incident_created", "type": 2, "severity": "critical",
            "description": "Repeated logins across services (FTP, SSH)\r\nBcc: evil@x",
            "src_ip": "198.51.100.7", "channel": "ssh", "device": {"name": "fw01"}
        });
        let mail = compose(&envelope, "[Trapster sensor]");
        assert!(
            mail.subject
                .starts_with("[Trapster sensor] CRITICAL: Repeated logins"),
            "{}",
            mail.subject
        );
        assert!(mail.subject.contains("from 198.51.100.7 (ssh)"));
        assert!(!mail.subject.contains('\r') && !mail.subject.contains('\n'));
        let raw = render(&mail, "sensor@corp", &["soc@corp".to_owned()], "fw01").unwrap();
        let raw = String::from_utf8(raw.formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(!headers.contains("\r\nBcc:"));
        assert!(raw.contains("Content-Type: text/html; charset=utf-8"));
    }
}
