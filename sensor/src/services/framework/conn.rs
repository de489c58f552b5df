//! A client stream with a bounded input buffer: every read has a deadline (the handshake
//! deadline until the protocol calls [`Session::handshake_done`], the idle timeout after), every
//! buffer a cap, every write the idle timeout, so a slow, silent or flooding client only ever
//! costs a bounded amount of memory and time.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::session::{Session, SessionError};
use crate::services::ServiceLimits;

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
        let limit = room.min(self.buf.capacity().saturating_sub(self.buf.len()));
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
            let unscanned = self.buf.get(scanned..).unwrap_or(&[]);
            if let Some(pos) = unscanned.iter().position(|&b| b == b'\n') {
                let end = scanned.saturating_add(pos).saturating_add(1);
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
        match tokio::time::timeout(session.limits().idle_timeout(), write).await {
            Err(_) => Err(SessionError::IdleTimeout),
            Ok(result) => result.map_err(SessionError::from),
        }
    }

    /// Shuts the write side down (best effort).
    pub async fn shutdown(&mut self) {
        let _ignored = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}
