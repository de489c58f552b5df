//! `syslog` output: RFC 5424 (default) or RFC 3164 messages over UDP (RFC 5426), TCP (RFC 6587:
//! octet counting by default, newline framing as an option) or TLS (RFC 5425: certificate
//! verified against the shared root store, system plus `ca_file`; optional client certificate). The payload is
//! CEF (default, the header Trapster's syslog integration sends) or the JSON envelope.
//!
//! Framing ([`frame`]) is a pure function of a message; the transport only moves the bytes.
//! Attacker bytes cannot split or forge a message: CEF escapes CR/LF, JSON escapes control
//! characters, and with octet counting the length prefix frames any byte anyway. A UDP message
//! longer than `max_message_bytes` is truncated (RFC 5426 section 3.2), never split.

use std::{path::PathBuf, time::Duration};

use bytes::{BufMut as _, BytesMut};
use chrono::SecondsFormat;
use serde::Deserialize;
use tokio::{
    io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
};

use crate::output::{
    Message,
    sink::{Body, Record, Sink, WriteError},
};
use crate::{
    format::{Format, FormatContext, FormatError},
    incident::Severity,
};

/// How long a new TLS connection is watched for a refusal before the first message.
const REFUSAL_WAIT: Duration = Duration::from_millis(200);

/// Transport protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// One datagram per message.
    #[default]
    Udp,
    /// A TCP stream.
    Tcp,
    /// TLS over TCP.
    Tls,
}

/// Message format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rfc {
    /// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG`.
    #[default]
    Rfc5424,
    /// `<PRI>Mmm dd hh:mm:ss HOST APP: MSG`.
    Rfc3164,
}

/// Stream framing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// `LEN SP MSG` (RFC 6587 section 3.4.1).
    #[default]
    OctetCounting,
    /// `MSG LF`.
    Newline,
}

/// Payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// CEF.
    #[default]
    Cef,
    /// The enterprise envelope JSON.
    Json,
}

const fn default_facility() -> u8 {
    // local0
    16
}

fn default_app() -> String {
    "trapster".to_owned()
}

const fn default_max() -> usize {
    8_192
}

/// `transport: {"type": "syslog", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Receiver host.
    pub host: String,
    /// Receiver port; default 514 (UDP, TCP) or 6514 (TLS).
    #[serde(default)]
    pub port: Option<u16>,
    /// `udp` (default), `tcp` or `tls`.
    #[serde(default)]
    pub protocol: Protocol,
    /// `rfc5424` (default) or `rfc3164`.
    #[serde(default)]
    pub rfc: Rfc,
    /// TCP/TLS framing: `octet_counting` (default) or `newline`.
    #[serde(default)]
    pub framing: Framing,
    /// `cef` (default) or `json`.
    #[serde(default)]
    pub payload: Payload,
    /// Facility number, 0-23 (default 16, local0).
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// APP-NAME / TAG (default `trapster`).
    #[serde(default = "default_app")]
    pub app_name: String,
    /// Longest message sent over UDP, bytes (longer ones are truncated).
    #[serde(default = "default_max")]
    pub max_message_bytes: usize,
    /// PEM CA bundle for TLS; the system bundle when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for TLS.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM client key for TLS.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Name checked in the receiver's certificate; default `host`.
    #[serde(default)]
    pub server_name: Option<String>,
}

impl SyslogConfig {
    /// The effective port.
    #[must_use]
    pub const fn port(&self) -> u16 {
        match (self.port, self.protocol) {
            (Some(p), _) => p,
            (None, Protocol::Tls) => 6514,
            (None, _) => 514,
        }
    }

    /// The payload format.
    #[must_use]
    pub const fn format(&self) -> Format {
        match self.payload {
            Payload::Cef => Format::Cef,
            Payload::Json => Format::Trapster,
        }
    }
}

/// Syslog severity of a message: critical → crit, high → warning, medium → notice, low → info.
const fn syslog_severity(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 4,
        Severity::Medium => 5,
        Severity::Low => 6,
    }
}

/// Prints a header field as RFC 5424 wants it: printable US-ASCII, no spaces, `-` when empty.
fn header_field(text: &str, max: usize) -> String {
    let s: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if s.is_empty() { "-".to_owned() } else { s }
}

/// Appends one syslog message (header and payload, no framing) and a newline delimiter.
///
/// # Errors
/// [`FormatError`] if the payload cannot be encoded.
pub fn frame(
    message: &Message,
    cfg: &SyslogConfig,
    ctx: &FormatContext,
    out: &mut BytesMut,
) -> Result<(), FormatError> {
    let pri = u16::from(cfg.facility.min(23)) * 8 + u16::from(syslog_severity(message.severity()));
    let host = header_field(&ctx.identity.device_name, 255);
    let app = header_field(&cfg.app_name, 48);
    let time = message.timestamp();
    let msgid = match message {
        Message::Event(e) => e.logtype().to_string(),
        Message::Incident(i) => i.action.as_str().to_owned(),
    };
    let head = match cfg.rfc {
        Rfc::Rfc5424 => format!(
            "<{pri}>1 {} {host} {app} {} {} - ",
            time.to_rfc3339_opts(SecondsFormat::Micros, true),
            std::process::id(),
            header_field(&msgid, 32)
        ),
        Rfc::Rfc3164 => format!(
            "<{pri}>{} {host} {app}[{}]: ",
            time.format("%b %e %H:%M:%S"),
            std::process::id()
        ),
    };
    out.put_slice(head.as_bytes());
    let mut payload = BytesMut::new();
    crate::format::encode_message(cfg.format(), message, ctx, &mut payload)?;
    let payload = payload.strip_suffix(b"\n").unwrap_or(&payload);
    // Defence in depth: whatever the format, no raw line break leaves in a message.
    out.extend(
        payload
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    out.put_u8(b'\n');
    Ok(())
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A syslog transport.
pub struct SyslogOutput {
    config: SyslogConfig,
    conn: Option<Conn>,
    tls: Option<Result<tokio_rustls::TlsConnector, String>>,
    body: Body,
}

impl std::fmt::Debug for SyslogOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogOutput")
            .field("host", &self.config.host)
            .field("port", &self.config.port())
            .field("protocol", &self.config.protocol)
            .finish_non_exhaustive()
    }
}

impl SyslogOutput {
    /// A transport; it connects at the first write.
    #[must_use]
    pub fn new(config: SyslogConfig) -> Self {
        let tls = (config.protocol == Protocol::Tls).then(|| {
            let client = config
                .client_cert_file
                .as_deref()
                .zip(config.client_key_file.as_deref());
            crate::output::client::tls::connector(config.ca_file.as_deref(), client, false)
        });
        let body = Body::Syslog(Box::new(config.clone()));
        Self {
            config,
            conn: None,
            tls,
            body,
        }
    }

    /// `host:port (protocol)`, for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{}:{} ({:?})",
            self.config.host,
            self.config.port(),
            self.config.protocol
        )
    }

    async fn connect(&self) -> Result<Conn, String> {
        let addr = (self.config.host.as_str(), self.config.port());
        let timeout = Duration::from_secs(10);
        match self.config.protocol {
            Protocol::Udp => {
                let target = tokio::net::lookup_host(addr)
                    .await
                    .map_err(|e| e.to_string())?
                    .next()
                    .ok_or("no address")?;
                let local = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
                socket.connect(target).await.map_err(|e| e.to_string())?;
                Ok(Conn::Udp(socket))
            }
            Protocol::Tcp | Protocol::Tls => {
                let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
                    .await
                    .map_err(|_| "connect timeout".to_owned())?
                    .map_err(|e| e.to_string())?;
                let _ = tcp.set_nodelay(true);
                if self.config.protocol == Protocol::Tcp {
                    return Ok(Conn::Tcp(tcp));
                }
                let connector = match &self.tls {
                    Some(Ok(c)) => c.clone(),
                    Some(Err(e)) => return Err(e.clone()),
                    None => return Err("TLS not configured".to_owned()),
                };
                let name = self
                    .config
                    .server_name
                    .clone()
                    .unwrap_or_else(|| self.config.host.clone());
                let name =
                    rustls::pki_types::ServerName::try_from(name).map_err(|e| e.to_string())?;
                let mut tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| "TLS handshake timeout".to_owned())?
                    .map_err(|e| format!("TLS: {e}"))?;
                // With TLS 1.3 a receiver refuses the client (no certificate, a wrong one) only
                // after the client's handshake is done: wait briefly for that refusal, so
                // messages are not written into a connection that is already being closed.
                let mut probe = [0u8; 1];
                match tokio::time::timeout(REFUSAL_WAIT, tls.read(&mut probe)).await {
                    Ok(Ok(0)) => return Err("the receiver closed the TLS connection after the handshake (does it require a client certificate?)".to_owned()),
                    Ok(Err(e)) => return Err(format!("TLS: {e}")),
                    // Receivers do not send anything: silence is the normal case.
                    Ok(Ok(_)) | Err(_) => {}
                }
                Ok(Conn::Tls(Box::new(tls)))
            }
        }
    }

    async fn send_all<W: AsyncWrite + Unpin>(
        w: &mut W,
        records: &[&[u8]],
        framing: Framing,
    ) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            match framing {
                Framing::OctetCounting => {
                    buf.extend_from_slice(format!("{} ", r.len()).as_bytes());
                    buf.extend_from_slice(r);
                }
                Framing::Newline => {
                    buf.extend_from_slice(r);
                    buf.push(b'\n');
                }
            }
        }
        w.write_all(&buf).await?;
        w.flush().await
    }

    /// One attempt at sending `records` (framed messages without their newline).
    ///
    /// # Errors
    /// The reason, when the connection failed (it is reopened at the next attempt).
    pub async fn try_write(&mut self, records: &[&[u8]]) -> Result<(), String> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let framing = self.config.framing;
        let max = self.config.max_message_bytes.clamp(480, 65_507);
        let result = match self.conn.as_mut() {
            Some(Conn::Udp(socket)) => {
                let mut outcome = Ok(());
                for r in records {
                    let datagram = r.get(..max).unwrap_or(r);
                    if let Err(e) = socket.send(datagram).await {
                        outcome = Err(e);
                        break;
                    }
                }
                outcome
            }
            Some(Conn::Tcp(stream)) => Self::send_all(stream, records, framing).await,
            Some(Conn::Tls(stream)) => Self::send_all(stream.as_mut(), records, framing).await,
            None => Ok(()),
        };
        result.map_err(|e| {
            self.conn = None;
            e.to_string()
        })
    }
}

#[async_trait::async_trait]
impl Sink for SyslogOutput {
    fn body(&self) -> &Body {
        &self.body
    }

    fn describe(&self) -> String {
        SyslogOutput::describe(self)
    }

    async fn write(&mut self, batch: &[Record<'_>]) -> Result<u64, WriteError> {
        let records: Vec<&[u8]> = batch.iter().map(|r| r.bytes).collect();
        self.try_write(&records).await.map_err(WriteError::retry)?;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::{Rfc, SyslogConfig, frame};
    use crate::{
        event::Message,
        format::{FormatContext, golden},
    };

    fn config(rfc: Rfc) -> SyslogConfig {
        serde_json::from_value(serde_json::json!({"host": "127.0.0.1", "rfc": match rfc { Rfc::Rfc5424 => "rfc5424", Rfc::Rfc3164 => "rfc3164" }})).unwrap()
    }

    #[test]
    fn every_hostile_event_is_one_line_with_a_valid_header() {
        let ctx = FormatContext::for_device("sensor 1");
        for rfc in [Rfc::Rfc5424, Rfc::Rfc3164] {
            let cfg = config(rfc);
            for payload in golden::payloads() {
                let mut out = bytes::BytesMut::new();
                frame(
                    &Message::Event(golden::hostile(&payload)),
                    &cfg,
                    &ctx,
                    &mut out,
                )
                .unwrap();
                assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
                assert!(!out[..out.len() - 1].contains(&b'\r'));
                let text = String::from_utf8_lossy(&out);
                // local0 (16) * 8 + warning (4) for a login.
                assert!(text.starts_with("<132>"), "{text}");
                if rfc == Rfc::Rfc5424 {
                    assert!(
                        text.starts_with("<132>1 2026-01-01T00:00:00.000000Z sensor1 trapster "),
                        "{text}"
                    );
                    assert!(text.contains(" ftp.login - CEF:0|Ballpoint|Trapster|"));
                } else {
                    assert!(
                        text.starts_with("<132>Jan  1 00:00:00 sensor1 trapster["),
                        "{text}"
                    );
                }
            }
        }
    }
}
