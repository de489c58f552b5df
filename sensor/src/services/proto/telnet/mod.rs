//! Telnet (RFC 854) login prompts of network devices and Linux hosts, each with the option
//! negotiation its real server sends.
//!
//! Cisco IOS (the default, or `version` naming Cisco):
//! ```text
//! S: IAC WILL ECHO, IAC WILL SGA, IAC DO TTYPE, IAC DO NAWS
//! S: \r\n\r\nUser Access Verification\r\n\r\nUsername:
//! C: IAC WILL TTYPE ...
//! S: IAC SB TTYPE SEND IAC SE
//! C: IAC SB TTYPE IS "XTERM" IAC SE
//! C: admin\r\n                    (echoed back)
//! S: Password:
//! C: cisco\r\n                    (not echoed) -> telnet.login {"username":"admin","password":"cisco","terminal_type":"XTERM"}
//! S: \r\n% Authentication failed\r\n\r\nUsername:
//! ```
//! `nmap -sV` reports `Cisco IOS telnetd` (its probe matches those four options followed by
//! `User Access Verification`). Prompts wait 30 s each (`timeout login response`), then
//! `% Username:  timeout expired!`.
//!
//! Linux (`version` naming Linux, Debian, Ubuntu or anything else but Cisco and D-Link): the
//! bytes of Debian 12's `inetutils-telnetd` 2.4, compared side by side over loopback in
//! `sensor/tests/services_telnet.rs`: `WILL AUTHENTICATION, WILL ENCRYPT, DO TTYPE, DO TSPEED,
//! DO XDISPLOC, DO NEW-ENVIRON, DO OLD-ENVIRON`, nothing more until the client has answered
//! them all (`nmap -sV`: `Linux telnetd`); then `SB ... SEND` for the options the client
//! accepted (TSPEED, XDISPLOC, NEW-ENVIRON or else OLD-ENVIRON, TTYPE last); then `WILL SGA,
//! DO ECHO, DO LINEMODE, DO NAWS, WILL STATUS, DO LFLOW`, `WILL ECHO`, and the banner
//! `Linux <release> (<client address>) (pts/0)` with `<hostname> login: `. A client that types
//! before answering is served at once (bots rarely negotiate). `login`'s 60 s limit ends the
//! attempt (`Login timed out after 60 seconds.`). D-Link versions get a D-Link prompt.
//!
//! The terminal type a client reports (`SB TTYPE IS`) goes into every later `telnet.login` as
//! `terminal_type`. A line or a subnegotiation longer than `max_line_bytes` is logged as
//! `telnet.data` (the bytes of the read that broke it) and ends the session.

mod parser;

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpStream;

use self::parser::{DO, DONT, IAC, SB, SE, WILL, WONT};
pub use self::parser::{LineParser, Negotiation, Step};
use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError, extra, lossy},
        tcp::{Handler, TcpProtocol},
        timeouts::Timeouts,
    },
};

const ECHO: u8 = 1;
const SGA: u8 = 3;
const STATUS: u8 = 5;
const TTYPE: u8 = 24;
const NAWS: u8 = 31;
const TSPEED: u8 = 32;
const LFLOW: u8 = 33;
const LINEMODE: u8 = 34;
const XDISPLOC: u8 = 35;
const OLD_ENVIRON: u8 = 36;
const AUTHENTICATION: u8 = 37;
const ENCRYPT: u8 = 38;
const NEW_ENVIRON: u8 = 39;
/// `SEND` in a subnegotiation; `IS` is 0.
const SEND: u8 = 1;

const CISCO_HELLO: [u8; 12] = [
    IAC, WILL, ECHO, IAC, WILL, SGA, IAC, DO, TTYPE, IAC, DO, NAWS,
];
const LINUX_HELLO: [u8; 21] = [
    IAC,
    WILL,
    AUTHENTICATION,
    IAC,
    WILL,
    ENCRYPT,
    IAC,
    DO,
    TTYPE,
    IAC,
    DO,
    TSPEED,
    IAC,
    DO,
    XDISPLOC,
    IAC,
    DO,
    NEW_ENVIRON,
    IAC,
    DO,
    OLD_ENVIRON,
];
const LINUX_SECOND: [u8; 18] = [
    IAC, WILL, SGA, IAC, DO, ECHO, IAC, DO, LINEMODE, IAC, DO, NAWS, IAC, WILL, STATUS, IAC, DO,
    LFLOW,
];
/// Debian 12's kernel release, when `version` does not name one.
const DEFAULT_UNAME: &str = "Linux 6.1.0-28-amd64";
const ATTEMPTS: usize = 3;
/// Negotiations one login phase remembers.
const MAX_SEEN: usize = 256;
/// Empty user names tolerated before the device hangs up.
const MAX_EMPTY_LINES: usize = 10;

/// Which server is imitated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cisco,
    Dlink,
    Linux,
}

/// What the device says at each step.
#[derive(Debug)]
struct Profile {
    kind: Kind,
    greeting: String,
    user_prompt: String,
    password_prompt: &'static str,
    failure: &'static str,
    failure_delay: Duration,
}

fn kind(version: &str) -> Kind {
    let lower = version.to_ascii_lowercase();
    if lower.is_empty() || lower.contains("cisco") {
        Kind::Cisco
    } else if lower.contains("d-link") || lower.contains("dlink") {
        Kind::Dlink
    } else {
        Kind::Linux
    }
}

fn profile(version: &str, hostname: &str) -> Profile {
    match kind(version) {
        Kind::Cisco => Profile {
            kind: Kind::Cisco,
            greeting: "\r\n\r\nUser Access Verification\r\n\r\n".to_owned(),
            user_prompt: "Username: ".to_owned(),
            password_prompt: "Password: ",
            failure: "\r\n% Authentication failed\r\n\r\n",
            failure_delay: Duration::from_millis(300),
        },
        Kind::Dlink => Profile {
            kind: Kind::Dlink,
            greeting: format!("{version}\r\n"),
            user_prompt: "Login: ".to_owned(),
            password_prompt: "Password: ",
            failure: "\r\nLogin incorrect\r\n",
            failure_delay: Duration::from_millis(300),
        },
        Kind::Linux => Profile {
            kind: Kind::Linux,
            // The client's address is added per session.
            greeting: if version.starts_with("Linux ") {
                version.to_owned()
            } else {
                DEFAULT_UNAME.to_owned()
            },
            user_prompt: format!("{hostname} login: "),
            password_prompt: "Password: ",
            failure: "\r\nLogin incorrect\r\n",
            // Debian's `pam_faildelay` (3 s, as much as a quarter less).
            failure_delay: Duration::from_millis(2_250),
        },
    }
}

/// A Telnet instance.
#[derive(Debug, Clone, Deserialize)]
pub struct TelnetConfig {
    /// The device imitated (Trapster `version`): `Cisco IOS`, `D-Link DSL router`, `Linux`...
    #[serde(default)]
    pub version: Option<String>,
}

/// The Telnet protocol.
#[derive(Debug)]
pub struct Telnet;

impl TcpProtocol for Telnet {
    type Config = TelnetConfig;

    /// Cisco IOS: 30 s per prompt (`timeout login response`); Linux: `login`'s 60 s for the
    /// whole login (`LOGIN_TIMEOUT`), the negotiation included.
    fn timeouts(config: &TelnetConfig) -> Option<Timeouts> {
        Some(match kind(config.version.as_deref().unwrap_or("")) {
            Kind::Cisco | Kind::Dlink => Timeouts::secs(30, 30),
            Kind::Linux => Timeouts::secs(60, 60),
        })
    }

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

/// One connection: the parser and what the client told about itself.
struct Client {
    conn: Conn<TcpStream>,
    input: LineParser,
    terminal: Option<String>,
    /// The login prompt has been shown (before it, a timeout closes silently: the real
    /// telnetd has not started `login` yet).
    prompted: bool,
}

impl Client {
    /// Notes what the client's negotiations say (the terminal type); returns them.
    fn absorb(&mut self) -> Vec<Negotiation> {
        let got = self.input.take_negotiations();
        for n in &got {
            if let Negotiation::Sub(TTYPE, payload) = n
                && let Some((0, name)) = payload.split_first()
            {
                let name: String = lossy(name).chars().take(64).collect();
                self.terminal = Some(name);
            }
        }
        got
    }

    /// Reads until `done` says the negotiation answers it waits for are in, or the client
    /// types something; a line typed meanwhile is kept for the login.
    async fn wait_for(
        &mut self,
        session: &Session,
        seen: &mut Vec<Negotiation>,
        done: impl Fn(&[Negotiation]) -> bool,
    ) -> Result<Option<Vec<u8>>, SessionError> {
        loop {
            // A client that floods option commands instead of answering gets the prompt.
            if done(seen.as_slice()) || self.input.data_seen() || seen.len() > MAX_SEEN {
                return Ok(None);
            }
            let line = self.input.step(&mut self.conn, session, false).await?;
            seen.extend(self.absorb());
            if line.is_some() {
                return Ok(line);
            }
        }
    }
}

/// Whether the client answered `option` (either way) with one of `verbs`.
fn answered(seen: &[Negotiation], option: u8, verbs: [u8; 2]) -> bool {
    seen.iter()
        .any(|n| matches!(n, Negotiation::Option(v, o) if *o == option && verbs.contains(v)))
}

fn accepted(seen: &[Negotiation], option: u8) -> bool {
    seen.iter()
        .any(|n| matches!(n, Negotiation::Option(WILL, o) if *o == option))
}

/// inetutils-telnetd's negotiation, up to the banner; a line typed meanwhile is returned.
async fn linux_negotiation(
    client: &mut Client,
    session: &Session,
) -> Result<Option<Vec<u8>>, SessionError> {
    client.conn.write_all(&LINUX_HELLO, session).await?;
    let mut seen = Vec::new();
    let first = [TTYPE, TSPEED, XDISPLOC, NEW_ENVIRON, OLD_ENVIRON];
    let early = client
        .wait_for(session, &mut seen, |s| {
            answered(s, AUTHENTICATION, [DO, DONT])
                && answered(s, ENCRYPT, [DO, DONT])
                && first.iter().all(|&o| answered(s, o, [WILL, WONT]))
        })
        .await?;
    if early.is_some() || client.input.data_seen() {
        return Ok(early);
    }
    let mut asked = Vec::new();
    for option in [TSPEED, XDISPLOC, NEW_ENVIRON, OLD_ENVIRON, TTYPE] {
        if option == OLD_ENVIRON && accepted(&seen, NEW_ENVIRON) {
            continue;
        }
        if accepted(&seen, option) {
            asked.extend_from_slice(&[IAC, SB, option, SEND, IAC, SE]);
        }
    }
    if !asked.is_empty() {
        client.conn.write_all(&asked, session).await?;
        let ttype = accepted(&seen, TTYPE);
        let early = client
            .wait_for(session, &mut seen, |s| {
                !ttype || s.iter().any(|n| matches!(n, Negotiation::Sub(TTYPE, _)))
            })
            .await?;
        if early.is_some() || client.input.data_seen() {
            return Ok(early);
        }
    }
    client.conn.write_all(&LINUX_SECOND, session).await?;
    let early = client
        .wait_for(session, &mut seen, |s| {
            answered(s, SGA, [DO, DONT])
                && answered(s, ECHO, [WILL, WONT])
                && [LINEMODE, NAWS, LFLOW]
                    .iter()
                    .all(|&o| answered(s, o, [WILL, WONT]))
                && answered(s, STATUS, [DO, DONT])
        })
        .await?;
    let mut last = vec![IAC, WILL, ECHO];
    if accepted(&seen, LINEMODE) {
        last.extend_from_slice(&[IAC, DONT, LINEMODE]);
    }
    client.conn.write_all(&last, session).await?;
    Ok(early)
}

async fn serve(
    profile: &Profile,
    mut session: Session,
    stream: TcpStream,
) -> Result<(), SessionError> {
    let peer = session.identity().src_ip;
    let mut client = Client {
        conn: Conn::new(stream, session.limits()),
        input: LineParser::new(session.limits().max_line_bytes),
        terminal: None,
        prompted: false,
    };
    let result = login(profile, &mut session, &mut client, peer).await;
    if let Err(err) = &result
        && err.is_timeout()
        && client.prompted
    {
        let secs = session.limits().handshake_timeout().as_secs();
        let bye = match profile.kind {
            Kind::Linux => format!("\r\nLogin timed out after {secs} seconds.\r\n"),
            Kind::Cisco | Kind::Dlink => "\r\n% Username:  timeout expired!\r\n".to_owned(),
        };
        let _ignored = client.conn.write_all(bye.as_bytes(), &session).await;
    }
    client.conn.shutdown().await;
    match result {
        Err(err) if err.is_timeout() => Err(err),
        other => other,
    }
}

async fn login(
    profile: &Profile,
    session: &mut Session,
    client: &mut Client,
    peer: std::net::IpAddr,
) -> Result<(), SessionError> {
    let mut pending = None;
    match profile.kind {
        Kind::Linux => {
            pending = linux_negotiation(client, session).await?;
            let banner = format!(
                "\r\n{} ({peer}) (pts/0)\r\n\r\n{}",
                profile.greeting, profile.user_prompt
            );
            client.conn.write_all(banner.as_bytes(), session).await?;
            client.prompted = true;
        }
        Kind::Cisco | Kind::Dlink => {
            let mut hello = if profile.kind == Kind::Cisco {
                CISCO_HELLO.to_vec()
            } else {
                vec![
                    IAC, DO, ECHO, IAC, DO, LFLOW, IAC, WILL, ECHO, IAC, WILL, SGA,
                ]
            };
            hello.extend_from_slice(profile.greeting.as_bytes());
            hello.extend_from_slice(profile.user_prompt.as_bytes());
            client.conn.write_all(&hello, session).await?;
            client.prompted = true;
        }
    }
    // Linux asked during the negotiation.
    let mut asked_ttype = profile.kind == Kind::Linux;
    let mut empty_lines = 0;
    let mut attempts = 0;
    while attempts < ATTEMPTS {
        let username = match pending.take() {
            Some(line) => line,
            None => next_line(client, session, true, &mut asked_ttype).await?,
        };
        if profile.kind != Kind::Linux {
            // Cisco times each prompt out; Linux `login` the whole attempt.
            session.handshake_done();
        }
        if username.is_empty() {
            // A bare Enter (or the second half of a CR CR LF): devices prompt again.
            empty_lines += 1;
            if empty_lines > MAX_EMPTY_LINES {
                break;
            }
            client
                .conn
                .write_all(profile.user_prompt.as_bytes(), session)
                .await?;
            continue;
        }
        attempts += 1;
        client
            .conn
            .write_all(profile.password_prompt.as_bytes(), session)
            .await?;
        let password = next_line(client, session, false, &mut asked_ttype).await?;
        let mut fields = extra([
            ("username", Value::String(lossy(&username))),
            ("password", Value::String(lossy(&password))),
        ]);
        if let Some(terminal) = &client.terminal {
            fields.insert("terminal_type".to_owned(), Value::String(terminal.clone()));
        }
        session.login(&[], fields).await;
        tokio::time::sleep(profile.failure_delay).await;
        let mut reply = profile.failure.as_bytes().to_vec();
        reply.extend_from_slice(profile.user_prompt.as_bytes());
        client.conn.write_all(&reply, session).await?;
    }
    Ok(())
}

/// The next line; on the way, a device that asked for the terminal type asks for its name
/// once the client agrees to send it (Cisco and D-Link; Linux asked during the negotiation).
async fn next_line(
    client: &mut Client,
    session: &Session,
    echo: bool,
    asked_ttype: &mut bool,
) -> Result<Vec<u8>, SessionError> {
    loop {
        let line = client.input.step(&mut client.conn, session, echo).await?;
        let seen = client.absorb();
        if !*asked_ttype && accepted(&seen, TTYPE) {
            *asked_ttype = true;
            client
                .conn
                .write_all(&[IAC, SB, TTYPE, SEND, IAC, SE], session)
                .await?;
        }
        if let Some(line) = line {
            return Ok(line);
        }
    }
}
