//! One client session: its identity, fixed from the socket when the connection is accepted, the
//! events it emits, and a bounded reader over the client's stream.
//!
//! Protocol code gets a [`Session`] and a [`Conn`]. It can add `extra` fields and raw bytes to
//! events, never change who talked to whom. Every read has a deadline (the handshake deadline
//! until the protocol calls [`Session::handshake_done`], the idle timeout after), every buffer a
//! cap, every write the idle timeout, so a slow, silent or flooding client only ever costs a
//! bounded amount of memory and time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use chrono::Utc;
use serde_json::{Map, Value};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
    time::Instant,
};
use uuid::Uuid;

use super::{config::ServiceLimits, gate::ServiceCounters};
use crate::event::{Action, Event, Service, SessionIdentity};

/// Where services send their events: the agent forwards them to the outputs.
pub type EventSink = mpsc::Sender<Event>;

/// Why a session ended before the client closed it cleanly.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client closed the connection.
    #[error("client closed the connection")]
    Closed,
    /// The client did not finish the handshake in time.
    #[error("handshake timeout")]
    HandshakeTimeout,
    /// The client sent nothing for too long, or did not read what it was sent.
    #[error("idle timeout")]
    IdleTimeout,
    /// The whole session took too long.
    #[error("session timeout")]
    SessionTimeout,
    /// A line longer than `max_line_bytes`.
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    /// More unprocessed input than `max_buffer_bytes`.
    #[error("more than {0} bytes buffered")]
    BufferFull(usize),
    /// The client broke the protocol beyond what the emulation tolerates.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A socket or TLS error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl SessionError {
    /// True for the three timeouts.
    #[must_use]
    pub const fn is_timeout(&self) -> bool {
        matches!(
            self,
            Self::HandshakeTimeout | Self::IdleTimeout | Self::SessionTimeout
        )
    }

    /// True when the client broke a limit or the protocol.
    #[must_use]
    pub const fn is_violation(&self) -> bool {
        matches!(
            self,
            Self::LineTooLong(_) | Self::BufferFull(_) | Self::Protocol(_)
        )
    }
}

/// One accepted connection's session.
#[derive(Debug)]
pub struct Session {
    identity: SessionIdentity,
    service: Service,
    id: Uuid,
    sink: EventSink,
    limits: Arc<ServiceLimits>,
    counters: Arc<ServiceCounters>,
    handshake_deadline: Option<Instant>,
    silent: bool,
    emitted: AtomicUsize,
}

impl Session {
    /// A session for a connection just accepted; a `silent` one (whitelisted source) emits
    /// nothing.
    #[must_use]
    pub fn new(
        identity: SessionIdentity,
        service: Service,
        sink: EventSink,
        limits: Arc<ServiceLimits>,
        counters: Arc<ServiceCounters>,
        silent: bool,
    ) -> Self {
        let handshake_deadline = Some(Instant::now() + limits.handshake_timeout());
        Self {
            identity,
            service,
            id: Uuid::new_v4(),
            sink,
            limits,
            counters,
            handshake_deadline,
            silent,
            emitted: AtomicUsize::new(0),
        }
    }

    /// Addresses and ports, as accepted.
    #[must_use]
    pub const fn identity(&self) -> SessionIdentity {
        self.identity
    }

    /// The session id (in every event's `extra.session_id`).
    #[must_use]
    pub const fn id(&self) -> Uuid {
        self.id
    }

    /// The emitting service.
    #[must_use]
    pub const fn service(&self) -> Service {
        self.service
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &ServiceLimits {
        &self.limits
    }

    /// The client got through the handshake: reads now wait up to the idle timeout.
    pub const fn handshake_done(&mut self) {
        self.handshake_deadline = None;
    }

    /// How long the next read may wait, and the error if it does not finish in time.
    fn read_deadline(&self) -> (Duration, SessionError) {
        let idle = self.limits.idle_timeout();
        match self.handshake_deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left < idle {
                    (left, SessionError::HandshakeTimeout)
                } else {
                    (idle, SessionError::IdleTimeout)
                }
            }
            None => (idle, SessionError::IdleTimeout),
        }
    }

    /// Emits one event. `data` is the client's raw bytes (kept up to `max_data_bytes`; longer
    /// input is cut and `extra.data_truncated`/`extra.data_length` say so).
    pub async fn emit(&self, action: Action, data: &[u8], mut extra: Map<String, Value>) {
        if self.silent {
            return;
        }
        let n = self.emitted.fetch_add(1, Ordering::Relaxed) + 1;
        let cap = self.limits.max_events_per_session;
        if n > cap {
            self.counters
                .events_suppressed
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if n == cap {
            extra.insert("events_capped".to_owned(), Value::Bool(true));
        }
        let cap = self.limits.max_data_bytes;
        let kept = if data.len() > cap {
            extra.insert("data_truncated".to_owned(), Value::Bool(true));
            extra.insert("data_length".to_owned(), Value::from(data.len()));
            data.get(..cap).unwrap_or(data)
        } else {
            data
        };
        extra.insert("session_id".to_owned(), Value::String(self.id.to_string()));
        let event = Event {
            id: Uuid::new_v4(),
            timestamp: Utc::now(),
            session: self.identity,
            service: self.service,
            action,
            data: Bytes::copy_from_slice(kept),
            extra,
        };
        if self.sink.send(event).await.is_err() {
            self.counters.events_lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `<service>.connection`.
    pub async fn connection(&self) {
        self.emit(Action::Connection, &[], Map::new()).await;
    }

    /// `<service>.data` with the bytes received.
    pub async fn data(&self, bytes: &[u8]) {
        self.emit(Action::Data, bytes, Map::new()).await;
    }

    /// `<service>.login` with the captured credentials.
    pub async fn login(&self, data: &[u8], extra: Map<String, Value>) {
        self.emit(Action::Login, data, extra).await;
    }

    /// `<service>.query` with what was asked.
    pub async fn query(&self, data: &[u8], extra: Map<String, Value>) {
        self.emit(Action::Query, data, extra).await;
    }
}

/// A client stream with a bounded input buffer.
#[derive(Debug)]
pub struct Conn<S> {
    stream: S,
    buf: BytesMut,
    max_buffer: usize,
    max_line: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Wraps a stream with the session's limits.
    pub fn new(stream: S, limits: &ServiceLimits) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(1024.min(limits.max_buffer_bytes)),
            max_buffer: limits.max_buffer_bytes,
            max_line: limits.max_line_bytes.min(limits.max_buffer_bytes),
        }
    }

    /// Wraps a stream, keeping bytes already read from it.
    pub fn with_buffered(stream: S, buffered: BytesMut, limits: &ServiceLimits) -> Self {
        let mut conn = Self::new(stream, limits);
        conn.buf = buffered;
        conn
    }

    /// Bytes read and not yet consumed.
    #[must_use]
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Takes everything buffered.
    pub fn take_buffered(&mut self) -> BytesMut {
        self.buf.split()
    }

    /// The stream and what is buffered, to wrap it in TLS or hand it to a library.
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.stream, self.buf)
    }

    /// The underlying stream.
    pub const fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Reads more bytes into the buffer; returns how many.
    ///
    /// # Errors
    /// [`SessionError::Closed`] at end of stream, a timeout, or
    /// [`SessionError::BufferFull`] when the buffer already holds `max_buffer_bytes`.
    pub async fn fill(&mut self, session: &Session) -> Result<usize, SessionError> {
        let room = self.max_buffer.saturating_sub(self.buf.len());
        if room == 0 {
            return Err(SessionError::BufferFull(self.max_buffer));
        }
        let (wait, on_timeout) = session.read_deadline();
        self.buf.reserve(room.min(16 * 1024));
        let limit = room.min(self.buf.capacity() - self.buf.len());
        let mut chunk = (&mut self.stream).take(limit as u64);
        match tokio::time::timeout(wait, chunk.read_buf(&mut self.buf)).await {
            Err(_) => Err(on_timeout),
            Ok(Ok(0)) => Err(SessionError::Closed),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(err)) => Err(err.into()),
        }
    }

    /// Reads one line, terminator included (`\n`, or `\r\n`); a final line without terminator
    /// is returned when the client closes after it.
    ///
    /// # Errors
    /// [`SessionError::LineTooLong`] past `max_line_bytes`, or any [`Self::fill`] error.
    pub async fn read_line(&mut self, session: &Session) -> Result<Bytes, SessionError> {
        let mut scanned = 0;
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + pos + 1;
                if end > self.max_line {
                    return Err(SessionError::LineTooLong(self.max_line));
                }
                return Ok(self.buf.split_to(end).freeze());
            }
            scanned = self.buf.len();
            if scanned > self.max_line {
                return Err(SessionError::LineTooLong(self.max_line));
            }
            match self.fill(session).await {
                Err(SessionError::Closed) if !self.buf.is_empty() => {
                    return Ok(self.buf.split().freeze());
                }
                Err(err) => return Err(err),
                Ok(_) => {}
            }
        }
    }

    /// Reads exactly `n` bytes.
    ///
    /// # Errors
    /// [`SessionError::BufferFull`] when `n` exceeds `max_buffer_bytes`, or any
    /// [`Self::fill`] error.
    pub async fn read_exact(&mut self, n: usize, session: &Session) -> Result<Bytes, SessionError> {
        if n > self.max_buffer {
            return Err(SessionError::BufferFull(self.max_buffer));
        }
        while self.buf.len() < n {
            self.fill(session).await?;
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// Reads at least one byte and returns everything buffered.
    ///
    /// # Errors
    /// Any [`Self::fill`] error.
    pub async fn read_some(&mut self, session: &Session) -> Result<Bytes, SessionError> {
        if self.buf.is_empty() {
            self.fill(session).await?;
        }
        Ok(self.buf.split().freeze())
    }

    /// Puts bytes taken from the buffer back in front of it.
    pub fn unread(&mut self, bytes: &[u8]) {
        let mut merged = BytesMut::with_capacity(bytes.len() + self.buf.len());
        merged.extend_from_slice(bytes);
        merged.extend_from_slice(&self.buf);
        self.buf = merged;
    }

    /// Drops `n` buffered bytes.
    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
    }

    /// Writes everything, within the idle timeout (a client that does not read is dropped).
    ///
    /// # Errors
    /// [`SessionError::IdleTimeout`] or the socket's error.
    pub async fn write_all(&mut self, bytes: &[u8], session: &Session) -> Result<(), SessionError> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(session.limits.idle_timeout(), write).await {
            Err(_) => Err(SessionError::IdleTimeout),
            Ok(result) => result.map_err(SessionError::from),
        }
    }

    /// Shuts the write side down (best effort).
    pub async fn shutdown(&mut self) {
        let _ignored = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}

/// Builds an `extra` map from pairs.
#[must_use]
pub fn extra<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Text from client bytes: invalid UTF-8 replaced, never rejected.
#[must_use]
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
