//! The client's byte stream, whatever its segmentation: option negotiation (`IAC` sequences,
//! subnegotiations) is taken out and kept as [`Negotiation`]s, `IAC IAC` is a literal 0xff,
//! backspace and DEL edit the line, and CR LF, CR NUL or a bare LF ends it. So char-at-a-time
//! clients and line-mode clients (the `telnet` client reading from a pipe, scripts) give the same
//! lines.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::services::framework::{
    conn::Conn,
    session::{Session, SessionError},
};

/// Interpret as command.
pub const IAC: u8 = 255;
/// `WILL`.
pub const WILL: u8 = 251;
/// `WONT`.
pub const WONT: u8 = 252;
/// `DO`.
pub const DO: u8 = 253;
/// `DONT`.
pub const DONT: u8 = 254;
/// Subnegotiation begin.
pub const SB: u8 = 250;
/// Subnegotiation end.
pub const SE: u8 = 240;

/// Negotiations kept before the oldest are dropped (a client flooding options).
const MAX_NEGOTIATIONS: usize = 64;

/// An option command the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiation {
    /// `IAC WILL|WONT|DO|DONT option`: the verb and the option.
    Option(u8, u8),
    /// `IAC SB option payload IAC SE`.
    Sub(u8, Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Iac,
    Option(u8),
    Sub,
    SubIac,
    AfterCr,
}

/// Turns the client's bytes into lines and negotiations.
#[derive(Debug)]
pub struct LineParser {
    state: State,
    line: Vec<u8>,
    max_line: usize,
    sub: Vec<u8>,
    sub_len: usize,
    negotiations: Vec<Negotiation>,
    data_seen: bool,
}

/// A finished line, or more input needed.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A line is complete (without its terminator).
    Line(Vec<u8>),
    /// Keep feeding.
    More,
}

impl LineParser {
    /// A parser for lines up to `max_line` bytes.
    #[must_use]
    pub const fn new(max_line: usize) -> Self {
        Self {
            state: State::Data,
            line: Vec::new(),
            max_line,
            sub: Vec::new(),
            sub_len: 0,
            negotiations: Vec::new(),
            data_seen: false,
        }
    }

    /// The negotiations received since the last call.
    pub fn take_negotiations(&mut self) -> Vec<Negotiation> {
        std::mem::take(&mut self.negotiations)
    }

    /// Whether the client has sent any data byte (not a command) yet.
    #[must_use]
    pub const fn data_seen(&self) -> bool {
        self.data_seen
    }

    fn record(&mut self, n: Negotiation) {
        if self.negotiations.len() >= MAX_NEGOTIATIONS {
            self.negotiations.remove(0);
        }
        self.negotiations.push(n);
    }

    /// Feeds one byte; `echo` collects the bytes to echo back.
    ///
    /// # Errors
    /// [`SessionError::LineTooLong`] past `max_line` (line or subnegotiation).
    pub fn feed(&mut self, byte: u8, echo: &mut Vec<u8>) -> Result<Step, SessionError> {
        match self.state {
            State::Iac => {
                self.state = match byte {
                    IAC => {
                        self.state = State::Data;
                        return self.push(byte, echo);
                    }
                    SB => {
                        self.sub_len = 0;
                        self.sub.clear();
                        State::Sub
                    }
                    WILL..=DONT => State::Option(byte),
                    _ => State::Data,
                };
            }
            State::Option(verb) => {
                self.state = State::Data;
                self.record(Negotiation::Option(verb, byte));
            }
            State::Sub => {
                self.sub_len = self.sub_len.saturating_add(1);
                if self.sub_len > self.max_line {
                    return Err(SessionError::LineTooLong(self.max_line));
                }
                if byte == IAC {
                    self.state = State::SubIac;
                } else {
                    self.sub.push(byte);
                }
            }
            State::SubIac => {
                if byte == SE {
                    self.state = State::Data;
                    let mut sub = std::mem::take(&mut self.sub);
                    if !sub.is_empty() {
                        let option = sub.remove(0);
                        self.record(Negotiation::Sub(option, sub));
                    }
                } else {
                    // `IAC IAC` inside a subnegotiation is a literal 0xff.
                    self.state = State::Sub;
                    if byte == IAC {
                        self.sub.push(IAC);
                    }
                }
            }
            State::AfterCr => {
                self.state = State::Data;
                if byte != 0 && byte != b'\n' {
                    return self.feed(byte, echo);
                }
            }
            State::Data => {
                if byte != IAC {
                    self.data_seen = true;
                }
                match byte {
                    IAC => self.state = State::Iac,
                    b'\r' => {
                        self.state = State::AfterCr;
                        return Ok(Step::Line(std::mem::take(&mut self.line)));
                    }
                    b'\n' => return Ok(Step::Line(std::mem::take(&mut self.line))),
                    0 => {}
                    0x08 | 0x7f => {
                        if self.line.pop().is_some() {
                            echo.extend_from_slice(b"\x08 \x08");
                        }
                    }
                    _ => return self.push(byte, echo),
                }
            }
        }
        Ok(Step::More)
    }

    fn push(&mut self, byte: u8, echo: &mut Vec<u8>) -> Result<Step, SessionError> {
        if self.line.len() >= self.max_line {
            return Err(SessionError::LineTooLong(self.max_line));
        }
        self.line.push(byte);
        echo.push(byte);
        Ok(Step::More)
    }

    /// Reads what the client sent so far (at least one byte) and parses it; a finished line is
    /// returned, what followed it stays in `conn` for the next call.
    ///
    /// # Errors
    /// The read's error, or an overlong line or subnegotiation (logged as `telnet.data`).
    pub async fn step<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        session: &Session,
        echo_on: bool,
    ) -> Result<Option<Vec<u8>>, SessionError> {
        let chunk = conn.read_some(session).await?;
        let mut echo = Vec::new();
        let mut done = None;
        for (i, &byte) in chunk.iter().enumerate() {
            match self.feed(byte, &mut echo) {
                Ok(Step::Line(line)) => {
                    done = Some((i.saturating_add(1), line));
                    break;
                }
                Ok(Step::More) => {}
                Err(err) => {
                    session.data(&chunk).await;
                    return Err(err);
                }
            }
        }
        if echo_on && !echo.is_empty() {
            conn.write_all(&echo, session).await?;
        }
        match done {
            Some((used, line)) => {
                // Whatever followed the line (a pipelined password) stays for the next read.
                conn.unread(chunk.get(used..).unwrap_or_default());
                conn.write_all(b"\r\n", session).await?;
                Ok(Some(line))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LineParser, Negotiation, Step};

    fn lines(p: &mut LineParser, input: &[u8]) -> Vec<Vec<u8>> {
        let mut echo = Vec::new();
        input
            .iter()
            .filter_map(|&b| match p.feed(b, &mut echo).unwrap() {
                Step::Line(l) => Some(l),
                Step::More => None,
            })
            .collect()
    }

    #[test]
    fn strips_negotiation_and_handles_every_line_ending() {
        let mut p = LineParser::new(64);
        let input = b"\xff\xfd\x01\xff\xfb\x18\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0admin\r\n\
                      pass\r\x00x\xff\xffy\nab\x7fc\r";
        assert_eq!(
            lines(&mut p, input),
            vec![
                b"admin".to_vec(),
                b"pass".to_vec(),
                b"x\xffy".to_vec(),
                b"ac".to_vec()
            ]
        );
        assert_eq!(
            p.take_negotiations(),
            vec![
                Negotiation::Option(253, 1),
                Negotiation::Option(251, 24),
                Negotiation::Sub(31, vec![0, 80, 0, 24]),
            ]
        );
        assert!(p.take_negotiations().is_empty());
    }

    #[test]
    fn a_terminal_type_with_an_escaped_iac_is_kept_whole() {
        let mut p = LineParser::new(64);
        assert!(lines(&mut p, b"\xff\xfa\x18\x00XTERM\xff\xff\xff\xf0").is_empty());
        assert!(!p.data_seen());
        assert_eq!(
            p.take_negotiations(),
            vec![Negotiation::Sub(24, b"\x00XTERM\xff".to_vec())]
        );
    }

    #[test]
    fn long_lines_and_endless_subnegotiation_are_refused() {
        let mut p = LineParser::new(8);
        let mut echo = Vec::new();
        let err = b"aaaaaaaaaaaa"
            .iter()
            .find_map(|&b| p.feed(b, &mut echo).err());
        assert!(err.is_some());
        let mut p = LineParser::new(8);
        let err = b"\xff\xfa\x18xxxxxxxxxxxx"
            .iter()
            .find_map(|&b| p.feed(b, &mut echo).err());
        assert!(err.is_some());
    }
}
