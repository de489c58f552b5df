//! The client's identification line, read and judged as OpenSSH 9.2p1's sshd does
//! (`kex_exchange_identification` in `kex.c`) before russh sees it:
//!
//! ```text
//! S: SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7\r\n      (sent first, as sshd does)
//! C: GET / HTTP/1.0\r\n                       -> S: Invalid SSH identification string.\r\n
//! C: SSH-1.5-client\r\n                       -> S: Protocol major versions differ.\r\n
//! C: SSH-2.0-OpenSSH_9.6\r\n                  -> handed to russh, key exchange goes on
//! ```
//!
//! Like sshd it reads one byte at a time, so nothing after the line leaves the kernel's buffer
//! (closing with unread bytes resets the connection exactly where sshd's close does). A line may
//! be up to 8192 bytes (`SSH_MAX_BANNER_LEN`); a `\0`, or a `\r` not followed by `\n`, makes it
//! invalid; a server accepts no line before the identification. russh itself takes at most 255
//! bytes (RFC 4253): a longer, valid line is [`Verdict::TooLongForRussh`].

use tokio::io::{AsyncRead, AsyncReadExt};

/// sshd's `SSH_MAX_BANNER_LEN`.
pub const MAX_LINE: usize = 8192;
/// The longest line (with its `\r\n`) russh accepts.
const RUSSH_MAX_LINE: usize = 253;

/// sshd's answer to an identification it rejects.
pub const INVALID: &[u8] = b"Invalid SSH identification string.\r\n";
/// sshd's answer to an identification naming another protocol major version.
pub const MISMATCH: &[u8] = b"Protocol major versions differ.\r\n";

/// What to do with the client's identification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A valid line (without its line end) that russh accepts; `raw` is every byte read.
    Accept {
        /// The identification, without `\r\n`.
        line: Vec<u8>,
        /// The bytes as read, line end included, to replay to russh.
        raw: Vec<u8>,
    },
    /// A valid line sshd would accept but russh cannot (longer than 255 bytes).
    TooLongForRussh(Vec<u8>),
    /// Answer `answer` and close; `line` is what was read.
    Reject {
        /// What the client sent (up to the line end or the limit).
        line: Vec<u8>,
        /// [`INVALID`] or [`MISMATCH`].
        answer: &'static [u8],
    },
    /// The client closed before a full line.
    Closed(Vec<u8>),
}

/// Reads the client's identification from `stream`, one byte at a time.
///
/// # Errors
/// Fails on an I/O error.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Verdict> {
    let mut raw = Vec::new();
    let mut line = Vec::new();
    let mut expect_nl = false;
    loop {
        let mut byte = [0_u8; 1];
        if stream.read(&mut byte).await? == 0 {
            return Ok(Verdict::Closed(line));
        }
        let [c] = byte;
        raw.push(c);
        match c {
            b'\r' => expect_nl = true,
            b'\n' => break,
            _ if c == 0 || expect_nl => {
                return Ok(Verdict::Reject {
                    line,
                    answer: INVALID,
                });
            }
            _ => {
                line.push(c);
                if line.len() > MAX_LINE {
                    return Ok(Verdict::Reject {
                        line,
                        answer: INVALID,
                    });
                }
            }
        }
    }
    Ok(judge(line, raw))
}

/// Judges a complete line as sshd does once it has read it.
fn judge(line: Vec<u8>, raw: Vec<u8>) -> Verdict {
    let Some((major, minor)) = parse(&line) else {
        return Verdict::Reject {
            line,
            answer: INVALID,
        };
    };
    let supported = major == 2 || (major == 1 && minor == 99);
    if !supported {
        return Verdict::Reject {
            line,
            answer: MISMATCH,
        };
    }
    // russh wants exactly `SSH-2.0-` or `SSH-1.99-`.
    if !(line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-")) {
        return Verdict::Reject {
            line,
            answer: INVALID,
        };
    }
    if raw.len() > RUSSH_MAX_LINE {
        return Verdict::TooLongForRussh(line);
    }
    Verdict::Accept { line, raw }
}

/// sshd's `sscanf(s, "SSH-%d.%d-%[^\n]\n", ...) == 3`: the two version numbers, when the
/// line starts with `SSH-` (and is longer than 4 bytes), has `<int>.<int>-` and something after.
fn parse(line: &[u8]) -> Option<(i64, i64)> {
    if line.len() <= 4 {
        return None;
    }
    let rest = line.strip_prefix(b"SSH-")?;
    let (major, rest) = number(rest)?;
    let rest = rest.strip_prefix(b".")?;
    let (minor, rest) = number(rest)?;
    let rest = rest.strip_prefix(b"-")?;
    if rest.is_empty() {
        return None;
    }
    Some((major, minor))
}

/// A `%d`: optional blanks, an optional sign, at least one digit.
fn number(s: &[u8]) -> Option<(i64, &[u8])> {
    let s = s.trim_ascii_start();
    let (negative, s) = match s.first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut value: i64 = 0;
    for &d in s.get(..digits)? {
        value = value
            .saturating_mul(10)
            .saturating_add(i64::from(d.saturating_sub(b'0')));
    }
    Some((if negative { -value } else { value }, s.get(digits..)?))
}

#[cfg(test)]
mod tests {
    use super::{INVALID, MISMATCH, Verdict, read};

    async fn verdict(input: &[u8]) -> Verdict {
        let mut input = input;
        read(&mut input).await.unwrap()
    }

    fn rejected(v: &Verdict) -> &'static [u8] {
        match v {
            Verdict::Reject { answer, .. } => answer,
            other => panic!("not rejected: {other:?}"),
        }
    }

    #[tokio::test]
    async fn judges_identifications_as_sshd() {
        let ok = verdict(b"SSH-2.0-OpenSSH_9.6\r\n\x00\x00\x01").await;
        assert_eq!(
            ok,
            Verdict::Accept {
                line: b"SSH-2.0-OpenSSH_9.6".to_vec(),
                raw: b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()
            }
        );
        assert!(matches!(
            verdict(b"SSH-1.99-x\n").await,
            Verdict::Accept { .. }
        ));
        assert_eq!(rejected(&verdict(b"GET / HTTP/1.0\r\n\r\n").await), INVALID);
        assert_eq!(rejected(&verdict(b"SSH-\r\n").await), INVALID);
        assert_eq!(rejected(&verdict(b"SSH-2.0\r\n").await), INVALID);
        assert_eq!(rejected(&verdict(b"SSH-2.0-\r\n").await), INVALID);
        assert_eq!(rejected(&verdict(b"SSH-2.0-a\rb\n").await), INVALID);
        assert_eq!(rejected(&verdict(b"SSH-2.0-a\0b\n").await), INVALID);
        assert_eq!(rejected(&verdict(b"SSH-1.5-client\r\n").await), MISMATCH);
        assert_eq!(rejected(&verdict(b"SSH-3.0-client\r\n").await), MISMATCH);
        assert_eq!(rejected(&verdict(b"SSH-1.0-client\r\n").await), MISMATCH);
        let long = [b"SSH-2.0-".as_slice(), &[b'a'; 300], b"\r\n"].concat();
        assert!(matches!(
            verdict(&long).await,
            Verdict::TooLongForRussh(line) if line.len() == 308
        ));
        let huge = [b"SSH-2.0-".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(rejected(&verdict(&huge).await), INVALID);
        assert_eq!(
            verdict(b"SSH-2.0-cut").await,
            Verdict::Closed(b"SSH-2.0-cut".to_vec())
        );
    }
}
