//! `email` output: one mail per new incident (and per test), plus an optional digest of
//! everything else it received, over SMTP with STARTTLS (default), implicit TLS or plain, with
//! `AUTH PLAIN`. Mails have a text and an HTML part (base64, so no attacker byte can end the
//! message or forge a header) and a subject naming severity, description, source and service.
//!
//! The mail is built from the enterprise envelope ([`compose`], a pure function); the SMTP
//! dialogue is this file's small client.

use std::{path::PathBuf, time::Duration};

use crate::output::{
    client::secret::Secret,
    driver::Body,
    sink::{Record, Sink, WriteError},
};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader},
    net::TcpStream,
};

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
#[must_use]
pub fn render(mail: &Mail, from: &str, to: &[String], host: &str) -> String {
    let boundary = format!("=_sensor_{}", uuid::Uuid::new_v4().simple());
    let b64 = |s: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        encoded
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    let clean_addr = |a: &str| clean(a, 254).replace(['<', '>', ','], "");
    let recipients: Vec<String> = to.iter().map(|a| clean_addr(a)).collect();
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}@{host}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{text}\r\n--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{html}\r\n--{boundary}--\r\n",
        from = clean_addr(from),
        to = recipients.join(", "),
        subject = mail.subject,
        date = chrono::Utc::now().to_rfc2822(),
        id = uuid::Uuid::new_v4(),
        host = clean(host, 64).replace(' ', ""),
        text = b64(&mail.text),
        html = b64(&mail.html),
    )
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An SMTP reply: code and text lines.
async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
) -> Result<(u16, String), String> {
    let mut text = String::new();
    for _ in 0..100 {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read_line(&mut line))
            .await
            .map_err(|_| "SMTP reply timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("SMTP server closed the connection".to_owned());
        }
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad SMTP reply: {}", clean(&line, 80)))?;
        text.push_str(line.get(4..).unwrap_or("").trim_end());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push(' ');
    }
    Err("SMTP reply too long".to_owned())
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    line: &str,
    expect: &[u16],
) -> Result<(u16, String), String> {
    stream
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stream.get_mut().flush().await.map_err(|e| e.to_string())?;
    let (code, text) = reply(stream).await?;
    if !expect.contains(&code) {
        let shown = if line.starts_with("AUTH") {
            "AUTH"
        } else {
            line
        };
        return Err(format!("{shown}: {code} {}", clean(&text, 200)));
    }
    Ok((code, text))
}

/// An SMTP sender.
pub struct EmailOutput {
    config: EmailConfig,
    tls: Result<tokio_rustls::TlsConnector, String>,
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
        let tls =
            crate::output::client::tls::connector(config.ca_file.as_deref(), None, config.insecure);
        Self {
            config,
            tls,
            pending_digest: Vec::new(),
            outgoing: None,
            body: Body::Format(crate::format::Format::Trapster),
            last_digest: tokio::time::Instant::now(),
            helo: clean(device, 64).replace(' ', "-"),
        }
    }

    fn prefix(&self) -> String {
        self.config
            .subject_prefix
            .clone()
            .unwrap_or_else(|| "[Trapster sensor]".to_owned())
    }

    async fn open(&self) -> Result<Box<dyn Stream>, String> {
        let addr = (self.config.host.as_str(), self.config.port());
        let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        if self.config.security == Security::Tls {
            return self.wrap(tcp).await;
        }
        Ok(Box::new(tcp))
    }

    async fn wrap<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        &self,
        stream: S,
    ) -> Result<Box<dyn Stream>, String> {
        let connector = self.tls.clone()?;
        let name = rustls::pki_types::ServerName::try_from(self.config.host.clone())
            .map_err(|e| e.to_string())?;
        let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, stream))
            .await
            .map_err(|_| "TLS handshake timeout".to_owned())?
            .map_err(|e| format!("TLS: {e}"))?;
        Ok(Box::new(tls))
    }

    /// Sends one mail; returns the server's answer to the message (`250 ...`).
    ///
    /// # Errors
    /// The failing step and the server's answer (the password never appears).
    pub async fn send(&self, mail: &Mail) -> Result<String, String> {
        let stream = self.open().await?;
        let mut s = BufReader::new(stream);
        let (code, text) = reply(&mut s).await?;
        if code != 220 {
            return Err(format!("greeting: {code} {}", clean(&text, 200)));
        }
        let ehlo = format!("EHLO {}", self.helo);
        let (_, caps) = command(&mut s, &ehlo, &[250]).await?;
        if self.config.security == Security::Starttls {
            if !caps.to_ascii_uppercase().contains("STARTTLS") {
                return Err("the server does not offer STARTTLS (security: starttls)".to_owned());
            }
            command(&mut s, "STARTTLS", &[220]).await?;
            let plain = s.into_inner();
            s = BufReader::new(self.wrap(plain).await?);
            command(&mut s, &ehlo, &[250]).await?;
        }
        if let (Some(user), Some(password)) = (&self.config.username, &self.config.password) {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("\0{user}\0{}", password.expose()));
            command(&mut s, &format!("AUTH PLAIN {token}"), &[235]).await?;
        }
        command(
            &mut s,
            &format!("MAIL FROM:<{}>", clean(&self.config.from, 254)),
            &[250],
        )
        .await?;
        for to in &self.config.to {
            command(
                &mut s,
                &format!("RCPT TO:<{}>", clean(to, 254)),
                &[250, 251],
            )
            .await?;
        }
        command(&mut s, "DATA", &[354]).await?;
        let message = render(mail, &self.config.from, &self.config.to, &self.helo);
        // Dot-stuffing: base64 bodies never start a line with '.', headers are ours.
        let mut data = String::with_capacity(message.len() + 8);
        for line in message.split("\r\n") {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        data.push('.');
        let (_, answer) = command(&mut s, data.trim_end_matches("\r\n"), &[250]).await?;
        let _ = command(&mut s, "QUIT", &[221]).await;
        Ok(format!("250 {}", clean(&answer, 200)))
    }

    /// The mails a batch of envelopes (JSON records) calls for: one per new incident or test;
    /// the rest goes to the digest (or nowhere without one).
    fn mails_for(&mut self, records: &[&[u8]]) -> Vec<Mail> {
        let prefix = self.prefix();
        let mut mails = Vec::new();
        for r in records {
            let Ok(envelope) = serde_json::from_slice::<Value>(r) else {
                continue;
            };
            let action = field(&envelope, "action");
            if matches!(action.as_str(), "incident_created" | "incident_test") {
                mails.push(compose(&envelope, &prefix));
            } else if self.config.digest_interval_secs.is_some()
                && self.pending_digest.len() < MAX_DIGEST
            {
                self.pending_digest.push(envelope);
            }
        }
        mails
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
    pub async fn try_write(&mut self, records: &[&[u8]]) -> Result<(), String> {
        for mail in self.mails_for(records) {
            self.send(&mail).await?;
        }
        Ok(())
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
        self.try_write(&records).await.map_err(WriteError::retry)?;
        Ok(0)
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
        let raw = render(&mail, "sensor@corp", &["soc@corp".to_owned()], "fw01");
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(!headers.contains("\r\nBcc:"));
        assert!(raw.contains("Content-Type: text/html; charset=utf-8"));
    }
}
