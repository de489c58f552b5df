//! Which emulated service a decoy connection gets, from the client's first bytes.
//!
//! The bytes are read with `MSG_PEEK` ([`peek`]): they stay in the socket's receive queue, so
//! the service handed the stream reads them again from the start, as if it had accepted the
//! connection itself (the stream is replayed whole, without a wrapper type every protocol would
//! have to accept). [`classify`] is pure and matches fixed prefixes only:
//!
//! | first bytes | service |
//! | --- | --- |
//! | TLS record `16 03 0x`, handshake type 1 (ClientHello) | `https` |
//! | `SSH-` | `ssh` |
//! | an HTTP method and a space (`GET `, `POST `, ..., `PRI * HTTP/2`) | `http` |
//! | NetBIOS session header, then `FF SMB` or `FE SMB` | `smb` |
//! | TPKT `03 00`, then an X.224 connection request (`Ex`) | `rdp` |
//! | TDS pre-login `12 01`, window 0 | `mssql` |

use std::time::Duration;

use tokio::{net::TcpStream, time::Instant};

/// Bytes peeked at most: enough for every rule, small enough to bound the work per connection.
pub const PEEK_BYTES: usize = 64;

/// How often a connection whose bytes are still ambiguous is peeked again.
const REPEEK: Duration = Duration::from_millis(20);

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// The registry name of the service they belong to.
    Service(&'static str),
    /// No rule matches them.
    Unknown,
    /// A rule may still match once more bytes arrive.
    NeedMore,
}

/// One byte of a pattern: it matches when `byte & mask == value`.
type Pattern = &'static [(u8, u8)];

/// Exact bytes as a pattern.
macro_rules! exact {
    ($($b:expr),* $(,)?) => { &[$(($b, 0xff)),*] };
}

/// The rules, in order: the first complete match wins.
static RULES: &[(&str, Pattern)] = &[
    // TLS record: handshake (0x16), version 3.x (x <= 7), any length, then ClientHello (1).
    (
        "https",
        &[
            (0x16, 0xff),
            (0x03, 0xff),
            (0x00, 0xf8),
            (0, 0),
            (0, 0),
            (0x01, 0xff),
        ],
    ),
    ("ssh", exact!(b'S', b'S', b'H', b'-')),
    ("http", exact!(b'G', b'E', b'T', b' ')),
    ("http", exact!(b'P', b'O', b'S', b'T', b' ')),
    ("http", exact!(b'H', b'E', b'A', b'D', b' ')),
    ("http", exact!(b'P', b'U', b'T', b' ')),
    ("http", exact!(b'D', b'E', b'L', b'E', b'T', b'E', b' ')),
    (
        "http",
        exact!(b'O', b'P', b'T', b'I', b'O', b'N', b'S', b' '),
    ),
    ("http", exact!(b'P', b'A', b'T', b'C', b'H', b' ')),
    ("http", exact!(b'T', b'R', b'A', b'C', b'E', b' ')),
    (
        "http",
        exact!(b'C', b'O', b'N', b'N', b'E', b'C', b'T', b' '),
    ),
    (
        "http",
        exact!(
            b'P', b'R', b'I', b' ', b'*', b' ', b'H', b'T', b'T', b'P', b'/', b'2'
        ),
    ),
    // NetBIOS session message (type 0, 3-byte length), then the SMB1 (FF) or SMB2 (FE) magic.
    (
        "smb",
        &[
            (0x00, 0xff),
            (0, 0),
            (0, 0),
            (0, 0),
            (0xfe, 0xfe),
            (b'S', 0xff),
            (b'M', 0xff),
            (b'B', 0xff),
        ],
    ),
    // TPKT version 3, reserved 0, length, then an X.224 CR TPDU (code 0xE0, credit in the low bits).
    (
        "rdp",
        &[
            (0x03, 0xff),
            (0x00, 0xff),
            (0, 0),
            (0, 0),
            (0, 0),
            (0xe0, 0xf0),
        ],
    ),
    // TDS pre-login packet (0x12), end of message, length, SPID, packet id, window 0.
    (
        "mssql",
        &[
            (0x12, 0xff),
            (0x01, 0x01),
            (0, 0),
            (0, 0),
            (0, 0),
            (0, 0),
            (0, 0),
            (0x00, 0xff),
        ],
    ),
];

/// The service the first bytes of a connection belong to.
#[must_use]
pub fn classify(first: &[u8]) -> Sniffed {
    if first.is_empty() {
        return Sniffed::NeedMore;
    }
    let mut may_match = false;
    for (service, pattern) in RULES {
        let consistent = first
            .iter()
            .zip(pattern.iter())
            .all(|(byte, (value, mask))| byte & mask == *value);
        if !consistent {
            continue;
        }
        if first.len() >= pattern.len() {
            return Sniffed::Service(service);
        }
        may_match = true;
    }
    if may_match {
        Sniffed::NeedMore
    } else {
        Sniffed::Unknown
    }
}

/// What [`peek`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    /// The verdict: [`Sniffed::NeedMore`] when the client sent nothing, or not enough to
    /// decide, before the timeout.
    pub sniffed: Sniffed,
    /// The bytes seen (still unread in the socket).
    pub bytes: Vec<u8>,
    /// The client closed the connection (or it failed) before deciding.
    pub closed: bool,
}

/// Peeks at the client's first bytes until a rule decides or `timeout` passes; consumes
/// nothing. Bounded: at most `timeout / 20 ms + 2` peeks, each of at most [`PEEK_BYTES`].
pub async fn peek(stream: &TcpStream, timeout: Duration) -> Peeked {
    let deadline = Instant::now() + timeout;
    let mut buf = [0_u8; PEEK_BYTES];
    let rounds = timeout.as_millis() / REPEEK.as_millis() + 2;
    let mut seen = 0_usize;
    for _ in 0..rounds {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_elapsed) => break,
            Ok(Ok(0) | Err(_)) => {
                return Peeked {
                    sniffed: classify(buf.get(..seen).unwrap_or(&[])),
                    bytes: buf.get(..seen).unwrap_or(&[]).to_vec(),
                    closed: true,
                };
            }
            Ok(Ok(n)) => n,
        };
        seen = n.min(PEEK_BYTES);
        let first = buf.get(..seen).unwrap_or(&[]);
        let sniffed = classify(first);
        if sniffed != Sniffed::NeedMore || seen == PEEK_BYTES {
            let sniffed = if sniffed == Sniffed::NeedMore {
                Sniffed::Unknown
            } else {
                sniffed
            };
            return Peeked {
                sniffed,
                bytes: first.to_vec(),
                closed: false,
            };
        }
        // Ambiguous so far: the peek would return at once, so wait a little for more.
        if Instant::now() + REPEEK >= deadline {
            break;
        }
        tokio::time::sleep(REPEEK).await;
    }
    let first = buf.get(..seen).unwrap_or(&[]);
    Peeked {
        sniffed: if first.is_empty() {
            Sniffed::NeedMore
        } else {
            // Bytes that no rule completed in time: not a protocol we recognise.
            match classify(first) {
                Sniffed::Service(s) => Sniffed::Service(s),
                Sniffed::NeedMore | Sniffed::Unknown => Sniffed::Unknown,
            }
        },
        bytes: first.to_vec(),
        closed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::{Sniffed, classify};

    #[test]
    fn each_protocol_is_recognised_from_its_first_bytes() {
        let hello = [
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        for (bytes, want) in [
            (&hello[..], "https"),
            (&[0x16, 0x03, 0x03, 0x00, 0x30, 0x01][..], "https"),
            (b"SSH-2.0-OpenSSH_9.2p1\r\n", "ssh"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "http"),
            (b"POST /login HTTP/1.1\r\n", "http"),
            (b"HEAD / HTTP/1.0\r\n", "http"),
            (b"OPTIONS * HTTP/1.1\r\n", "http"),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "http"),
            (
                &[0x00, 0x00, 0x00, 0x54, 0xff, b'S', b'M', b'B', 0x72][..],
                "smb",
            ),
            (
                &[0x00, 0x00, 0x00, 0xa0, 0xfe, b'S', b'M', b'B', 0x40][..],
                "smb",
            ),
            (&[0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0x00, 0x00][..], "rdp"),
            (
                &[0x12, 0x01, 0x00, 0x2f, 0x00, 0x00, 0x01, 0x00, 0x00][..],
                "mssql",
            ),
        ] {
            assert_eq!(classify(bytes), Sniffed::Service(want), "{bytes:02x?}");
        }
    }

    #[test]
    fn prefixes_wait_for_more_and_anything_else_is_unknown() {
        for bytes in [
            &b""[..],
            b"S",
            b"SSH",
            b"GE",
            b"P",
            b"PRI * HTT",
            &[0x16, 0x03][..],
            &[0x00, 0x00, 0x00, 0x54, 0xff, b'S'][..],
            &[0x03, 0x00, 0x00][..],
            &[0x12][..],
        ] {
            assert_eq!(classify(bytes), Sniffed::NeedMore, "{bytes:02x?}");
        }
        for bytes in [
            &b"get / HTTP/1.1"[..],
            b"SSH_2.0",
            b"GETX",
            b"hello\r\n",
            &[0x16, 0x03, 0x01, 0x00, 0x10, 0x02][..], // ServerHello, not a client's
            &[0x16, 0x02][..],
            &[0x00, 0x00, 0x00, 0x54, 0xfd, b'S', b'M', b'B'][..],
            &[0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0][..], // X.224 CC, not CR
            &[0x12, 0x00, 0x00, 0x2f, 0x00, 0x00, 0x01, 0x00][..], // not end of message
            &[0x12, 0x01, 0x00, 0x2f, 0x00, 0x00, 0x01, 0x05][..],
            &[0xff, 0xfb, 0x01][..], // telnet negotiation
        ] {
            assert_eq!(classify(bytes), Sniffed::Unknown, "{bytes:02x?}");
        }
    }
}
