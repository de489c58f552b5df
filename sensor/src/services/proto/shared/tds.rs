//! TDS (MS-TDS) packet framing, and TLS carried inside TDS as SQL Server carries it.
//!
//! A TDS message is one or more packets: an 8-byte header (type, status with the end-of-message
//! bit, big-endian length including the header, SPID, packet number, window) and a payload.
//! SQL Server's TDS 7.x encryption runs the TLS handshake *inside* PRELOGIN packets, then sends
//! TLS records bare on the stream. [`Channel`] does both with the decoy's OpenSSL engine
//! ([`tls::Engine`], SChannel's suites) driven by hand, since the handshake records must be
//! wrapped and the later ones must not.
//!
//! Hand-written: no crate implements the server side of TDS (`tiberius` is a client).

use bytes::BytesMut;
use openssl::ssl::SslContext;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::services::{
    framework::{
        conn::Conn,
        session::{Session, SessionError},
    },
    proto::mssql::tls::{Engine, TlsError},
};

/// PRELOGIN (and the TLS handshake inside it).
pub const PRELOGIN: u8 = 0x12;
/// LOGIN7.
pub const LOGIN7: u8 = 0x10;
/// SSPI continuation.
pub const SSPI: u8 = 0x11;
/// Tabular result (every server response).
pub const TABULAR: u8 = 0x04;
/// Header length.
pub const HEADER: usize = 8;
/// Largest packet the server writes (the default negotiated packet size).
const MAX_PACKET_OUT: usize = 4096;
/// Status bit: last packet of the message.
const EOM: u8 = 0x01;

/// A TDS packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Packet type.
    pub kind: u8,
    /// Status bits.
    pub status: u8,
    /// Total length, header included.
    pub length: usize,
}

impl Header {
    /// Parses the first 8 bytes of `bytes`; `None` when fewer, or when the length is shorter
    /// than the header itself.
    #[must_use]
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let head = bytes.get(..HEADER)?;
        let (&kind, rest) = head.split_first()?;
        let (&status, rest) = rest.split_first()?;
        let len = rest.get(..2)?;
        let length = usize::from(u16::from_be_bytes([*len.first()?, *len.get(1)?]));
        (length >= HEADER).then_some(Self {
            kind,
            status,
            length,
        })
    }

    /// Whether this is the message's last packet.
    #[must_use]
    pub const fn last(&self) -> bool {
        self.status & EOM != 0
    }
}

/// `payload` as a message of `kind`: packets of at most 4096 bytes, the last marked.
#[must_use]
pub fn message(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + HEADER);
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(MAX_PACKET_OUT - HEADER).collect()
    };
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let status = if i + 1 == count { EOM } else { 0 };
        let len = u16::try_from(chunk.len() + HEADER).unwrap_or(u16::MAX);
        out.push(kind);
        out.push(status);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.push(u8::try_from((i + 1) % 256).unwrap_or(0));
        out.push(0);
        out.extend_from_slice(chunk);
    }
    out
}

/// Why bytes are not a TDS message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdsError {
    /// A header whose length is shorter than the header.
    #[error("bad packet length")]
    BadLength,
    /// Packets of different types in one message.
    #[error("packet type changed inside a message")]
    MixedTypes,
    /// The message is longer than allowed.
    #[error("message longer than {0} bytes")]
    TooLong(usize),
}

/// Splits one complete message off the front of `buf`: `Ok(None)` until its last packet is in.
///
/// # Errors
/// [`TdsError`] when the bytes cannot be a message of at most `max` payload bytes.
pub fn take_message(buf: &mut BytesMut, max: usize) -> Result<Option<(u8, Vec<u8>)>, TdsError> {
    let mut pos = 0usize;
    let mut kind = None;
    let mut total = 0usize;
    loop {
        let Some(rest) = buf.get(pos..) else {
            return Ok(None);
        };
        if rest.len() < HEADER {
            return Ok(None);
        }
        let header = Header::parse(rest).ok_or(TdsError::BadLength)?;
        if *kind.get_or_insert(header.kind) != header.kind {
            return Err(TdsError::MixedTypes);
        }
        total = total.saturating_add(header.length - HEADER);
        if total > max {
            return Err(TdsError::TooLong(max));
        }
        if rest.len() < header.length {
            return Ok(None);
        }
        pos = pos.saturating_add(header.length);
        if header.last() {
            break;
        }
    }
    let raw = buf.split_to(pos);
    let mut payload = Vec::with_capacity(total);
    let mut at = 0usize;
    while let Some(header) = raw.get(at..).and_then(Header::parse) {
        payload.extend_from_slice(raw.get(at + HEADER..at + header.length).unwrap_or(&[]));
        at = at.saturating_add(header.length);
    }
    Ok(kind.map(|k| (k, payload)))
}

/// A session's TDS stream: plain, or TLS once [`Channel::start_tls`] has run.
#[derive(Debug)]
pub struct Channel {
    tls: Option<Engine>,
    plain: BytesMut,
    max: usize,
}

fn tls_error(err: TlsError) -> SessionError {
    match err {
        TlsError::Closed => SessionError::Closed,
        other => SessionError::Protocol(other.to_string()),
    }
}

impl Channel {
    /// A plain channel accepting messages of at most `max` payload bytes.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            tls: None,
            plain: BytesMut::new(),
            max,
        }
    }

    /// Whether TLS is on.
    #[must_use]
    pub const fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Runs the server side of a TLS handshake inside PRELOGIN packets.
    ///
    /// # Errors
    /// A TLS failure, a timeout, or a message that is not PRELOGIN.
    pub async fn start_tls<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        ctx: &SslContext,
        conn: &mut Conn<S>,
        session: &Session,
    ) -> Result<(), SessionError> {
        let mut engine = Engine::new(ctx).map_err(tls_error)?;
        // A handshake is a handful of flights; more rounds than this is not a TLS client.
        for _ in 0..16 {
            let (kind, payload) = read_plain(conn, session, self.max).await?;
            if kind != PRELOGIN {
                return Err(SessionError::Protocol(format!(
                    "TDS packet {kind:#04x} during the TLS handshake"
                )));
            }
            engine.feed(&payload);
            let done = engine.handshake();
            // The next flight, or the alert SChannel also sends before it closes on a hello it
            // cannot serve.
            let out = engine.take_output();
            if !out.is_empty() {
                conn.write_all(&message(PRELOGIN, &out), session).await?;
            }
            if done.map_err(tls_error)? {
                self.tls = Some(engine);
                return Ok(());
            }
        }
        Err(SessionError::Protocol("TLS handshake too long".to_owned()))
    }

    /// Leaves TLS (SQL Server's login-only encryption: the answer to LOGIN7 and what follows
    /// are plain).
    pub fn stop_tls(&mut self) {
        self.tls = None;
    }

    /// Reads one message.
    ///
    /// # Errors
    /// A framing or TLS error, a timeout, or the client closing.
    pub async fn read<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        session: &Session,
    ) -> Result<(u8, Vec<u8>), SessionError> {
        let Some(engine) = self.tls.as_mut() else {
            return read_plain(conn, session, self.max).await;
        };
        let limit = self.max.saturating_add(HEADER * 64);
        loop {
            match take_message(&mut self.plain, self.max) {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(err) => return Err(SessionError::Protocol(err.to_string())),
            }
            if self.plain.len() >= limit {
                return Err(SessionError::BufferFull(self.max));
            }
            let mut clear = Vec::new();
            engine
                .read_into(&mut clear, limit.saturating_sub(self.plain.len()))
                .map_err(tls_error)?;
            if clear.is_empty() {
                let raw = conn.read_some(session).await?;
                engine.feed(&raw);
            } else {
                self.plain.extend_from_slice(&clear);
            }
        }
    }

    /// Sends `bytes` (whole TDS packets), encrypted when TLS is on.
    ///
    /// # Errors
    /// A socket or TLS error, or the idle timeout.
    pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        session: &Session,
        bytes: &[u8],
    ) -> Result<(), SessionError> {
        let Some(engine) = self.tls.as_mut() else {
            return conn.write_all(bytes, session).await;
        };
        engine.write(bytes).map_err(tls_error)?;
        let out = engine.take_output();
        conn.write_all(&out, session).await
    }
}

/// Reads one plain message from the stream.
async fn read_plain<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
    max: usize,
) -> Result<(u8, Vec<u8>), SessionError> {
    loop {
        let mut pending = conn.take_buffered();
        let taken = take_message(&mut pending, max);
        conn.unread(&pending);
        match taken {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {
                conn.fill(session).await?;
            }
            Err(err) => return Err(SessionError::Protocol(err.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::{Header, TdsError, message, take_message};

    #[test]
    fn messages_split_and_join() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let wire = message(0x04, &payload);
        assert_eq!(wire.len(), payload.len() + 3 * 8);
        let first = Header::parse(&wire).unwrap();
        assert_eq!(
            (first.kind, first.length, first.last()),
            (0x04, 4096, false)
        );
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(take_message(&mut buf, 20_000), Ok(Some((0x04, payload))));
        assert!(buf.is_empty());
        assert_eq!(message(0x12, &[]), vec![0x12, 1, 0, 8, 0, 0, 1, 0]);
    }

    #[test]
    fn every_truncation_waits_and_bad_lengths_are_refused() {
        let wire = message(0x10, b"hello world");
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(take_message(&mut buf, 100), Ok(None), "cut {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
        let mut bad = BytesMut::from(&[0x12, 1, 0, 7, 0, 0, 0, 0][..]);
        assert_eq!(take_message(&mut bad, 100), Err(TdsError::BadLength));
        let mut big = BytesMut::from(&[0x12, 1, 0xff, 0xff, 0, 0, 0, 0][..]);
        assert_eq!(take_message(&mut big, 100), Err(TdsError::TooLong(100)));
        let mut mixed = BytesMut::from(&[0x12, 0, 0, 8, 0, 0, 0, 0, 0x10, 1, 0, 8, 0, 0, 0, 0][..]);
        assert_eq!(take_message(&mut mixed, 100), Err(TdsError::MixedTypes));
    }
}
