//! Telnet (RFC 854) login prompts of network devices.
//!
//! ```text
//! S: IAC WILL ECHO, IAC WILL SGA, IAC DO TTYPE, IAC DO NAWS
//! S: \r\n\r\nUser Access Verification\r\n\r\nUsername:
//! C: admin\r\n                    (echoed back)
//! S: Password:
//! C: cisco\r\n                    (not echoed) -> telnet.login {"username":"admin","password":"cisco"}
//! S: \r\n% Authentication failed\r\n\r\nUsername:
//! ```
//! With `version` naming a Cisco device (the default), `nmap -sV` reports `Cisco IOS telnetd`
//! (its probe matches those four options followed by `User Access Verification`). `D-Link`
//! versions get a D-Link router prompt, anything else a Linux `login:` prompt with the version as
//! its banner.
//!
//! Input is parsed as a byte stream, whatever its segmentation: option negotiation (`IAC`
//! sequences, subnegotiations) is stripped, `IAC IAC` is a literal 0xff, backspace and DEL edit
//! the line, and CR LF, CR NUL or a bare LF ends it. So char-at-a-time clients and line-mode
//! clients (the `telnet` client reading from a pipe, scripts) give the same credentials. A line
//! or a subnegotiation longer than `max_line_bytes` is logged as `telnet.data` (the bytes of the
//! read that broke it) and ends the session.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError, extra, lossy},
        tcp::{Handler, TcpProtocol},
    },
};

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const NEGOTIATION: [u8; 12] = [IAC, 251, 1, IAC, 251, 3, IAC, 253, 24, IAC, 253, 31];
const ATTEMPTS: usize = 3;
/// Empty user names tolerated before the device hangs up.
const MAX_EMPTY_LINES: usize = 10;

/// What the device says at each step.
#[derive(Debug)]
struct Profile {
    greeting: String,
    user_prompt: &'static str,
    password_prompt: &'static str,
    failure: &'static str,
}

fn profile(version: &str, hostname: &str) -> Profile {
    let lower = version.to_ascii_lowercase();
    if lower.is_empty() || lower.contains("cisco") {
        Profile {
            greeting: "\r\n\r\nUser Access Verification\r\n\r\n".to_owned(),
            user_prompt: "Username: ",
            password_prompt: "Password: ",
            failure: "\r\n% Authentication failed\r\n\r\n",
        }
    } else if lower.contains("d-link") || lower.contains("dlink") {
        Profile {
            greeting: format!("{version}\r\n"),
            user_prompt: "Login: ",
            password_prompt: "Password: ",
            failure: "\r\nLogin incorrect\r\n",
        }
    } else {
        Profile {
            greeting: format!("{version}\r\n"),
            user_prompt: leak_prompt(format!("{hostname} login: ")),
            password_prompt: "Password: ",
            failure: "\r\nLogin incorrect\r\n",
        }
    }
}

/// Prompts live as long as the service; built once per instance at start-up.
fn leak_prompt(prompt: String) -> &'static str {
    Box::leak(prompt.into_boxed_str())
}

/// A Telnet instance.
#[derive(Debug, Clone, Deserialize)]
pub struct TelnetConfig {
    /// The device imitated (Trapster `version`): `Cisco IOS`, `D-Link DSL router`, ...
    #[serde(default)]
    pub version: Option<String>,
}

/// The Telnet protocol.
#[derive(Debug)]
pub struct Telnet;

impl TcpProtocol for Telnet {
    type Config = TelnetConfig;

    fn handler(config: TelnetConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        let profile = Arc::new(profile(
            config.version.as_deref().unwrap_or(""),
            &ctx.hostname,
        ));
        Ok(Arc::new(move |session, stream| {
            let profile = Arc::clone(&profile);
            Box::pin(async move { serve(&profile, session, stream).await })
        }))
    }
}

async fn serve(
    profile: &Profile,
    mut session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let mut conn = Conn::new(stream, session.limits());
    let mut input = LineParser::new(session.limits().max_line_bytes);
    let mut hello = NEGOTIATION.to_vec();
    hello.extend_from_slice(profile.greeting.as_bytes());
    hello.extend_from_slice(profile.user_prompt.as_bytes());
    conn.write_all(&hello, &session).await?;
    let mut empty_lines = 0;
    let mut attempts = 0;
    while attempts < ATTEMPTS {
        let username = input.next_line(&mut conn, &session, true).await?;
        session.handshake_done();
        if username.is_empty() {
            // A bare Enter (or the second half of a CR CR LF): devices prompt again.
            empty_lines += 1;
            if empty_lines > MAX_EMPTY_LINES {
                break;
            }
            conn.write_all(profile.user_prompt.as_bytes(), &session)
                .await?;
            continue;
        }
        attempts += 1;
        conn.write_all(profile.password_prompt.as_bytes(), &session)
            .await?;
        let password = input.next_line(&mut conn, &session, false).await?;
        session
            .login(
                &[],
                extra([
                    ("username", Value::String(lossy(&username))),
                    ("password", Value::String(lossy(&password))),
                ]),
            )
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut reply = profile.failure.as_bytes().to_vec();
        reply.extend_from_slice(profile.user_prompt.as_bytes());
        conn.write_all(&reply, &session).await?;
    }
    conn.shutdown().await;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Iac,
    Option,
    Sub,
    SubIac,
    AfterCr,
}

/// Turns the client's bytes into lines, stripping Telnet commands.
#[derive(Debug)]
pub struct LineParser {
    state: State,
    line: Vec<u8>,
    max_line: usize,
    sub_len: usize,
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
            sub_len: 0,
        }
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
                        State::Sub
                    }
                    251..=254 => State::Option,
                    _ => State::Data,
                };
            }
            State::Option => self.state = State::Data,
            State::Sub => {
                self.sub_len = self.sub_len.saturating_add(1);
                if self.sub_len > self.max_line {
                    return Err(SessionError::LineTooLong(self.max_line));
                }
                if byte == IAC {
                    self.state = State::SubIac;
                }
            }
            State::SubIac => self.state = if byte == SE { State::Data } else { State::Sub },
            State::AfterCr => {
                self.state = State::Data;
                if byte != 0 && byte != b'\n' {
                    return self.feed(byte, echo);
                }
            }
            State::Data => match byte {
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
            },
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

    async fn next_line<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        session: &Session,
        echo_on: bool,
    ) -> Result<Vec<u8>, SessionError> {
        loop {
            let chunk = conn.read_some(session).await?;
            let mut echo = Vec::new();
            let mut done = None;
            for (i, &byte) in chunk.iter().enumerate() {
                match self.feed(byte, &mut echo) {
                    Ok(Step::Line(line)) => {
                        done = Some((i + 1, line));
                        break;
                    }
                    Ok(Step::More) => {}
                    Err(err) => {
                        // An overlong line or subnegotiation: logged, and the session ends.
                        session.data(&chunk).await;
                        return Err(err);
                    }
                }
            }
            if echo_on && !echo.is_empty() {
                conn.write_all(&echo, session).await?;
            }
            if let Some((used, line)) = done {
                // Whatever followed the line (a pipelined password) stays for the next read.
                conn.unread(&chunk[used..]);
                conn.write_all(b"\r\n", session).await?;
                return Ok(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LineParser, Step};

    fn lines(input: &[u8]) -> Vec<Vec<u8>> {
        let mut p = LineParser::new(64);
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
        let input = b"\xff\xfd\x01\xff\xfb\x18\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0admin\r\n\
                      pass\r\x00x\xff\xffy\nab\x7fc\r";
        assert_eq!(
            lines(input),
            vec![
                b"admin".to_vec(),
                b"pass".to_vec(),
                b"x\xffy".to_vec(),
                b"ac".to_vec()
            ]
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
