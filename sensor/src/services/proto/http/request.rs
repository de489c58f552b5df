//! HTTP/1.x request parsing over a bounded [`Conn`]: request line, headers, and a body framed by
//! `Content-Length` or chunked encoding, each within the session's limits.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::services::framework::{
    conn::Conn,
    session::{Session, SessionError},
};

/// Longest request line accepted (Apache's `LimitRequestLine`); longer gets 414.
pub const MAX_REQUEST_LINE: usize = 8190;

/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 100;

/// One parsed request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Method, as sent.
    pub method: String,
    /// Request target (path and query), as sent.
    pub target: String,
    /// `HTTP/1.0`, `HTTP/1.1` (or a later `HTTP/x.y`), or [`HTTP09`] for a line without one.
    pub version: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body (decoded when chunked).
    pub body: Bytes,
}

/// Why a request could not be read; each maps to the status a server would answer.
#[derive(Debug)]
pub enum ReadError {
    /// The connection ended or broke; nothing to answer.
    Session(SessionError),
    /// Malformed request: 400.
    Bad(&'static str),
    /// Request line too long: 414.
    UriTooLong,
    /// Body larger than the buffer limit: 413.
    TooLarge,
}

impl From<SessionError> for ReadError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::LineTooLong(_) => Self::Bad("line too long"),
            other => Self::Session(other),
        }
    }
}

impl Request {
    /// The first value of a header (case-insensitive name).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Path without the query.
    #[must_use]
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query string, if any.
    #[must_use]
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// Whether the connection stays open after the response.
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").map(str::to_ascii_lowercase);
        match self.version.as_str() {
            HTTP09 => false,
            "HTTP/1.0" => connection.as_deref() == Some("keep-alive"),
            _ => connection.as_deref() != Some("close"),
        }
    }
}

/// The version a request line without one is given.
pub const HTTP09: &str = "HTTP/0.9";

/// `HTTP/<digit>.<digit>` with a major version of 1 or more (Apache serves `HTTP/1.2` and
/// `HTTP/2.0` request lines as HTTP/1.1).
fn valid_version(version: &str) -> bool {
    let Some(digits) = version.strip_prefix("HTTP/") else {
        return false;
    };
    let b = digits.as_bytes();
    b.len() == 3
        && b.first().is_some_and(|d| (b'1'..=b'9').contains(d))
        && b.get(1) == Some(&b'.')
        && b.get(2).is_some_and(u8::is_ascii_digit)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads one request.
///
/// # Errors
/// [`ReadError`]: the session's error, or the status to answer.
pub async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
) -> Result<Request, ReadError> {
    let read_line = async |conn: &mut Conn<S>| match conn.read_line(session).await {
        // A request line past the line limit is a URI too long (Apache's LimitRequestLine).
        Err(SessionError::LineTooLong(_)) => Err(ReadError::UriTooLong),
        other => other.map_err(ReadError::from),
    };
    let mut line = read_line(conn).await?;
    // Robust servers ignore empty lines before a request (RFC 9112 section 2.2).
    for _ in 0..4 {
        if !trim_eol(&line).is_empty() {
            break;
        }
        line = read_line(conn).await?;
    }
    if trim_eol(&line).len() > MAX_REQUEST_LINE {
        return Err(ReadError::UriTooLong);
    }
    let text = String::from_utf8_lossy(trim_eol(&line)).into_owned();
    let mut parts = text.split(' ');
    let (Some(method), Some(target), version, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad("malformed request line"));
    };
    if !is_token(method) || target.is_empty() {
        return Err(ReadError::Bad("malformed request line"));
    }
    let Some(version) = version else {
        // HTTP/0.9: `GET /path`, no headers; answered with the body alone.
        if method != "GET" {
            return Err(ReadError::Bad("HTTP/0.9 request other than GET"));
        }
        return Ok(Request {
            method: method.to_owned(),
            target: target.to_owned(),
            version: HTTP09.to_owned(),
            ..Request::default()
        });
    };
    if !valid_version(version) {
        return Err(ReadError::Bad("malformed request line"));
    }
    let mut request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        ..Request::default()
    };
    let mut header_bytes: usize = 0;
    loop {
        let line = conn.read_line(session).await?;
        header_bytes = header_bytes.saturating_add(line.len());
        if header_bytes > session.limits().max_buffer_bytes {
            return Err(ReadError::TooLarge);
        }
        let line = trim_eol(&line);
        if line.is_empty() {
            break;
        }
        if request.headers.len() >= MAX_HEADERS {
            return Err(ReadError::Bad("too many headers"));
        }
        let text = String::from_utf8_lossy(line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(ReadError::Bad("header without colon"));
        };
        if !is_token(name) {
            return Err(ReadError::Bad("bad header name"));
        }
        request
            .headers
            .push((name.to_owned(), value.trim().to_owned()));
    }
    let max = session.limits().max_buffer_bytes;
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        request.body = read_chunked(conn, session, max).await?;
    } else if let Some(len) = content_length(&request.headers)? {
        if len > max {
            return Err(ReadError::TooLarge);
        }
        request.body = conn.read_exact(len, session).await?;
    }
    Ok(request)
}

/// The body length the `Content-Length` headers give (RFC 9112 section 6.3): digits only, no
/// sign, no overflow; several headers or a list must all say the same, or the request is
/// refused (two lengths are how requests are smuggled past a proxy).
///
/// # Errors
/// [`ReadError::Bad`] for a malformed, overflowing or conflicting length.
pub fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, ReadError> {
    let mut found: Option<usize> = None;
    let values = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .flat_map(|(_, v)| v.split(','));
    for value in values {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReadError::Bad("bad content-length"));
        }
        let len: usize = value
            .parse()
            .map_err(|_| ReadError::Bad("content-length overflows"))?;
        match found {
            Some(seen) if seen != len => return Err(ReadError::Bad("conflicting content-length")),
            _ => found = Some(len),
        }
    }
    Ok(found)
}

/// A chunk-size line's size (hex, extensions after `;` ignored).
///
/// # Errors
/// [`ReadError::Bad`] when it is not hex or does not fit a `usize`.
pub fn chunk_size(line: &[u8]) -> Result<usize, ReadError> {
    let text = String::from_utf8_lossy(trim_eol(line)).into_owned();
    let size_text = text.split(';').next().unwrap_or("").trim();
    if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReadError::Bad("bad chunk size"));
    }
    usize::from_str_radix(size_text, 16).map_err(|_| ReadError::Bad("chunk size overflows"))
}

async fn read_chunked<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
    max: usize,
) -> Result<Bytes, ReadError> {
    let mut body = BytesMut::new();
    loop {
        let line = conn.read_line(session).await?;
        let size = chunk_size(&line)?;
        if size == 0 {
            // Trailers, up to the empty line.
            for _ in 0..MAX_HEADERS {
                if trim_eol(&conn.read_line(session).await?).is_empty() {
                    return Ok(body.freeze());
                }
            }
            return Err(ReadError::Bad("too many trailers"));
        }
        if body.len().checked_add(size).is_none_or(|total| total > max) {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&conn.read_exact(size, session).await?);
        let end = conn.read_line(session).await?;
        if !trim_eol(&end).is_empty() {
            return Err(ReadError::Bad("chunk without CRLF"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ReadError, chunk_size, content_length};

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn bad(result: Result<impl std::fmt::Debug, ReadError>) -> &'static str {
        match result {
            Err(ReadError::Bad(why)) => why,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_lengths_are_digits_that_fit_and_agree() {
        assert_eq!(content_length(&headers(&[])).unwrap(), None);
        assert_eq!(
            content_length(&headers(&[("Content-Length", "42")])).unwrap(),
            Some(42)
        );
        assert_eq!(
            content_length(&headers(&[
                ("content-length", "7"),
                ("CONTENT-LENGTH", "7")
            ]))
            .unwrap(),
            Some(7)
        );
        assert_eq!(
            content_length(&headers(&[("Content-Length", "18446744073709551615")])).unwrap(),
            Some(usize::MAX)
        );
        assert_eq!(
            bad(content_length(&headers(&[(
                "Content-Length",
                "18446744073709551616"
            )]))),
            "content-length overflows"
        );
        for value in ["-1", "+5", "0x10", "", " ", "5 5", "1e3"] {
            assert_eq!(
                bad(content_length(&headers(&[("Content-Length", value)]))),
                "bad content-length",
                "{value:?}"
            );
        }
        assert_eq!(
            bad(content_length(&headers(&[
                ("Content-Length", "5"),
                ("Content-Length", "6")
            ]))),
            "conflicting content-length"
        );
        assert_eq!(
            bad(content_length(&headers(&[("Content-Length", "5, 6")]))),
            "conflicting content-length"
        );
    }

    #[test]
    fn chunk_sizes_are_hex_that_fits() {
        assert_eq!(chunk_size(b"1a\r\n").unwrap(), 26);
        assert_eq!(chunk_size(b"0;ext=1\r\n").unwrap(), 0);
        assert_eq!(chunk_size(b"ffffffffffffffff\r\n").unwrap(), usize::MAX);
        assert_eq!(
            bad(chunk_size(b"10000000000000000\r\n")),
            "chunk size overflows"
        );
        for line in [&b"\r\n"[..], b"-1\r\n", b"+1\r\n", b"zz\r\n", b"0x10\r\n"] {
            assert_eq!(bad(chunk_size(line)), "bad chunk size", "{line:?}");
        }
    }
}
