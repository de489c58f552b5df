//! rsync daemon protocol (`rsync://`, port 873) as rsyncd 3.2 speaks it, up to the point where
//! a module needs a password.
//!
//! ```text
//! S: @RSYNCD: 31.0 sha512 sha256 sha1 md5 md4
//! C: @RSYNCD: 31.0 sha512 sha256 sha1 md5 md4
//! C: #list                         -> rsync.query {"listing":true}
//! S: Backup         \tNightly backups
//! S: @RSYNCD: EXIT
//!
//! C: Backup                        -> rsync.query {"module":"Backup","known":true}
//! S: @RSYNCD: AUTHREQD 6Zy4kV3rlDXvqtUbL0lsUw
//! C: admin Q0t8yq…                 -> rsync.login {"username":"admin","digest":"sha512",
//!                                     "hashcat":"<hex>:<challenge>","hashcat_mode":1710, …}
//! S: @ERROR: auth failed on module Backup
//! ```
//! Everything is answered at once: no artificial delay (Trapster's random pauses of hundreds
//! of milliseconds are a tell no real rsyncd has). `nmap -sV` reports `rsync (protocol
//! version 31.0)`. The listing is rsyncd's `%-15s\t%s` per module (`modules`: names and
//! comments), an unknown module gets `@ERROR: Unknown module 'x'`, and every module asks for a
//! password. Only a login matching one of `users` (name and password, as in an rsyncd secrets
//! file) is let in (`@RSYNCD: OK`); every other gets `@ERROR: auth failed on module x`.
//!
//! # What a client let in asks for
//! ```text
//! S: @RSYNCD: OK
//! C: --server\0--sender\0-logDtpre.iLsfxCIvu\0.\0Backup/etc/shadow\0\0
//!                                  -> rsync.query {"module":"Backup","paths":["Backup/etc/shadow"],
//!                                     "direction":"download","options":[...],"username":"admin"}
//! S: (no compat flags, seed) MSG_ERROR rsync: [sender] link_stat "/etc/shadow" (in Backup)
//!    failed: No such file or directory (2), MSG_ERROR_EXIT 23
//! ```
//! (see [`args`]): the module is empty, so every path is missing, and an upload is refused as
//! a read-only module refuses it.
//!
//! # The crackable line
//! rsyncd's challenge is 16 random bytes in base64 without padding. The client answers
//! `user base64(H(password || challenge))` without padding, where `H` is the digest it picked
//! from the greeting's list (its own preference order; MD5 for protocol 30 and 31 without a
//! list, MD4 before). The response length tells the digest (MD4 and MD5 are told apart by the
//! lists). `rsync.login` carries `digest`, `challenge`, `response` as sent, `hash` (hex) and,
//! for the digests hashcat knows in this salted form, `hashcat` = `<hex hash>:<challenge>`
//! with `hashcat_mode` (`md5($pass.$salt)` 10, `sha1($pass.$salt)` 110,
//! `sha256($pass.$salt)` 1410, `sha512($pass.$salt)` 1710). A test recomputes the response
//! from the password.

mod args;
mod auth;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError, extra, lossy},
        tcp::{Handler, TcpProtocol},
    },
};
pub use auth::{Digest, digest_for, response_for};

/// rsync 3.2.7's daemon authentication digests, in its order.
const DEFAULT_DIGESTS: [&str; 5] = ["sha512", "sha256", "sha1", "md5", "md4"];

/// A module in the configuration: a name, or a name and a comment.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ModuleConfig {
    /// Just a name (Trapster lists names).
    Name(String),
    /// A name and the comment the listing shows.
    Full {
        /// Module name.
        name: String,
        /// Comment shown by `#list`.
        #[serde(default)]
        comment: Option<String>,
    },
}

/// An rsync instance.
#[derive(Debug, Clone, Deserialize)]
pub struct RsyncConfig {
    /// Protocol version in the greeting; default `31.0`.
    #[serde(default)]
    pub version: Option<String>,
    /// Modules listed and accepted by name; default `Backup` and `Users` (Trapster's).
    #[serde(default)]
    pub modules: Option<Vec<ModuleConfig>>,
    /// Daemon authentication digests announced after the version (`sha512 sha256 sha1 md5
    /// md4` by default, as rsync 3.2); an empty list announces none, as rsync 3.1 did.
    #[serde(default)]
    pub auth_digests: Option<Vec<Digest>>,
    /// Logins let in (`@RSYNCD: OK`), so the paths they ask for are seen; default none.
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

/// A login the daemon accepts (a line of an rsyncd secrets file).
#[derive(Debug, Clone, Deserialize)]
pub struct UserConfig {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

#[derive(Debug)]
struct RsyncServer {
    version: String,
    modules: Vec<(String, String)>,
    digests: Vec<Digest>,
    users: Vec<UserConfig>,
}

/// The rsync protocol.
#[derive(Debug)]
pub struct Rsync;

impl TcpProtocol for Rsync {
    type Config = RsyncConfig;

    fn handler(config: RsyncConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        let version = config.version.unwrap_or_else(|| "31.0".to_owned());
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(ctx.setup_error(format!("version: `{version}` is not like `31.0`")));
        }
        let modules = config
            .modules
            .unwrap_or_else(|| {
                vec![
                    ModuleConfig::Name("Backup".to_owned()),
                    ModuleConfig::Name("Users".to_owned()),
                ]
            })
            .into_iter()
            .map(|m| match m {
                ModuleConfig::Name(name) => (name, String::new()),
                ModuleConfig::Full { name, comment } => (name, comment.unwrap_or_default()),
            })
            .collect::<Vec<_>>();
        if let Some((bad, _)) = modules
            .iter()
            .find(|(n, _)| n.is_empty() || n.contains(['\n', '\r', '/', ' ', '\t']))
        {
            return Err(ctx.setup_error(format!("modules: `{bad}` cannot be a module name")));
        }
        if let Some((i, _)) = config
            .users
            .iter()
            .enumerate()
            .find(|(_, u)| u.username.is_empty() || u.username.contains([' ', '\n', '\r']))
        {
            return Err(ctx.setup_error(format!(
                "users[{i}].username: a user name is non-empty and has no space"
            )));
        }
        let digests = config.auth_digests.unwrap_or_else(|| {
            DEFAULT_DIGESTS
                .iter()
                .filter_map(|d| Digest::from_name(d))
                .collect()
        });
        let server = Arc::new(RsyncServer {
            version,
            modules,
            digests,
            users: config.users,
        });
        Ok(Arc::new(move |session, stream| {
            let server = Arc::clone(&server);
            Box::pin(async move { serve(&server, session, stream).await })
        }))
    }
}

/// The greeting line, with the digest list when there is one.
fn greeting(server: &RsyncServer) -> String {
    let mut line = format!("@RSYNCD: {}", server.version);
    for d in &server.digests {
        line.push(' ');
        line.push_str(d.name());
    }
    line.push('\n');
    line
}

/// What a client's greeting says: protocol number and its digest list.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientGreeting {
    /// Protocol number (`31`).
    pub protocol: u32,
    /// Whether a sub-protocol (`.0`) followed.
    pub has_sub: bool,
    /// Digest names it lists, in its order.
    pub digests: Vec<String>,
}

/// Parses `@RSYNCD: 31.0 sha512 ...` (line terminator removed).
#[must_use]
pub fn parse_greeting(line: &str) -> Option<ClientGreeting> {
    let rest = line.strip_prefix("@RSYNCD: ")?;
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let version = words.next()?;
    let (major, sub) = version.split_once('.').unwrap_or((version, ""));
    let protocol = major.parse().ok()?;
    if !sub.is_empty() && sub.parse::<u32>().is_err() {
        return None;
    }
    Some(ClientGreeting {
        protocol,
        has_sub: !sub.is_empty(),
        digests: words.take(16).map(str::to_owned).collect(),
    })
}

async fn serve(
    server: &RsyncServer,
    mut session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let mut conn = Conn::new(stream, session.limits());
    conn.write_all(greeting(server).as_bytes(), &session)
        .await?;
    let line = next_line(&mut conn, &session).await?;
    let text = trimmed(&line);
    let Some(client) = parse_greeting(&text) else {
        session.data(&line).await;
        conn.write_all(b"@ERROR: protocol startup error\n", &session)
            .await?;
        return Err(SessionError::Protocol("no rsync greeting".to_owned()));
    };
    if client.protocol >= 30 && !client.has_sub {
        session.data(&line).await;
        let reply = format!(
            "@ERROR: your client omitted the subprotocol value: {}\n",
            sanitize(&text)
        );
        conn.write_all(reply.as_bytes(), &session).await?;
        return Err(SessionError::Protocol("no subprotocol".to_owned()));
    }
    session.handshake_done();
    let line = next_line(&mut conn, &session).await?;
    let module = trimmed(&line);
    if module.is_empty() || module == "#list" {
        session
            .query(&line, extra([("listing", Value::Bool(true))]))
            .await;
        let mut listing = String::new();
        for (name, comment) in &server.modules {
            listing.push_str(&format!("{name:<15}\t{comment}\n"));
        }
        listing.push_str("@RSYNCD: EXIT\n");
        conn.write_all(listing.as_bytes(), &session).await?;
        conn.shutdown().await;
        return Ok(());
    }
    let known = server.modules.iter().any(|(n, _)| *n == module);
    session
        .query(
            &line,
            extra([
                ("module", Value::String(module.clone())),
                ("known", Value::Bool(known)),
            ]),
        )
        .await;
    if !known {
        let reply = format!("@ERROR: Unknown module '{}'\n", sanitize(&module));
        conn.write_all(reply.as_bytes(), &session).await?;
        conn.shutdown().await;
        return Ok(());
    }
    let challenge = auth::challenge();
    conn.write_all(
        format!("@RSYNCD: AUTHREQD {challenge}\n").as_bytes(),
        &session,
    )
    .await?;
    let line = next_line(&mut conn, &session).await?;
    let answer = trimmed(&line);
    let mut fields = extra([
        ("module", Value::String(module.clone())),
        ("challenge", Value::String(challenge.clone())),
    ]);
    let mut authenticated = false;
    match answer.split_once(' ') {
        None => {
            fields.insert("username".to_owned(), Value::String(answer.clone()));
        }
        Some((user, response)) => {
            // Without an announced list the client used MD5 (protocol 30+) or MD4.
            let tried: &[Digest] = if server.digests.is_empty() {
                &[Digest::Md5, Digest::Md4]
            } else {
                &server.digests
            };
            authenticated = server.users.iter().any(|u| {
                u.username == user
                    && tried.iter().any(|d| {
                        response.trim_end_matches('=') == response_for(*d, &u.password, &challenge)
                    })
            });
            fields.insert("username".to_owned(), Value::String(user.to_owned()));
            fields.insert("response".to_owned(), Value::String(response.to_owned()));
            let picked = digest_for(response, &client, &server.digests);
            if let Some((digest, hash)) = picked {
                fields.insert("digest".to_owned(), json!(digest.name()));
                fields.insert("hash".to_owned(), Value::String(hex::encode(&hash)));
                if let Some(mode) = digest.hashcat_mode() {
                    fields.insert(
                        "hashcat".to_owned(),
                        Value::String(format!("{}:{challenge}", hex::encode(&hash))),
                    );
                    fields.insert("hashcat_mode".to_owned(), json!(mode));
                }
            }
        }
    }
    fields.insert("authenticated".to_owned(), Value::Bool(authenticated));
    session.login(&line, fields).await;
    if !authenticated {
        let reply = format!("@ERROR: auth failed on module {module}\n");
        conn.write_all(reply.as_bytes(), &session).await?;
        conn.shutdown().await;
        return Ok(());
    }
    conn.write_all(b"@RSYNCD: OK\n", &session).await?;
    let separator = if client.protocol >= 30 { 0 } else { b'\n' };
    let (mut list, mut raw) = next_args(&mut conn, &session, separator).await?;
    let mut request = args::request(&list);
    if request.secluded {
        // The rest of the command line follows at once in a second, NUL-separated list that
        // starts with a new argv[0] (`rsync`).
        let (more, more_raw) = next_args(&mut conn, &session, 0).await?;
        raw.extend_from_slice(&more_raw);
        let argv0 = usize::from(more.first().is_some_and(|a| a == "rsync"));
        list.extend(more.into_iter().skip(argv0));
        request = args::request(&list);
    }
    let user = answer.split_once(' ').map_or("", |(u, _)| u);
    session
        .query(
            &raw,
            extra([
                ("module", Value::String(module.clone())),
                ("username", Value::String(user.to_owned())),
                (
                    "direction",
                    json!(if request.download {
                        "download"
                    } else {
                        "upload"
                    }),
                ),
                ("paths", json!(request.paths)),
                ("options", json!(request.options)),
            ]),
        )
        .await;
    let reply = args::refusal(&request, &module, rand::random());
    conn.write_all(&reply, &session).await?;
    conn.shutdown().await;
    linger(&mut conn, &session).await;
    Ok(())
}

/// Reads and drops what the client still sends (its filter list, a file list) until it
/// closes, for two seconds and 64 reads at most: closing with unread bytes would reset the
/// connection before the client has read the refusal.
async fn linger<S>(conn: &mut Conn<S>, session: &Session)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let drain = async {
        for _ in 0..64 {
            if conn.read_some(session).await.is_err() {
                break;
            }
        }
    };
    let _ignored = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
}

/// One argument list and its raw bytes; too many arguments are logged as `rsync.data` and
/// end the session.
async fn next_args<S>(
    conn: &mut Conn<S>,
    session: &Session,
    separator: u8,
) -> Result<(Vec<String>, Vec<u8>), SessionError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match args::split(conn.buffered(), separator) {
            args::Split::Complete(list, used) => {
                let raw = conn.buffered().get(..used).unwrap_or_default().to_vec();
                conn.consume(used);
                return Ok((list, raw));
            }
            args::Split::Partial => match conn.fill(session).await {
                Ok(_) => {}
                Err(err) => {
                    if !conn.buffered().is_empty() {
                        session.data(conn.buffered()).await;
                    }
                    return Err(err);
                }
            },
            args::Split::TooMany => {
                session.data(conn.buffered()).await;
                return Err(SessionError::Protocol(
                    "too many rsync arguments".to_owned(),
                ));
            }
        }
    }
}

/// One line; an overlong one is logged as `rsync.data` and ends the session.
async fn next_line<S>(conn: &mut Conn<S>, session: &Session) -> Result<bytes::Bytes, SessionError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match conn.read_line(session).await {
        Err(SessionError::LineTooLong(max)) => {
            session.data(conn.buffered()).await;
            Err(SessionError::LineTooLong(max))
        }
        other => other,
    }
}

fn trimmed(line: &[u8]) -> String {
    lossy(line).trim_end_matches(['\r', '\n']).to_owned()
}

/// Client text echoed in an error: printable ASCII only, bounded.
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(128)
        .collect()
}
