//! MySQL client/server protocol 4.1+: the server greeting (TLS offered), the client's
//! handshake response, and the password: in cleartext over TLS through `caching_sha2_password`'s
//! full authentication, or through a request to resend it in cleartext.
//!
//! ```text
//! S: greeting (protocol 10, "8.0.36", connection id, 20-byte scramble, CLIENT_SSL,
//!    caching_sha2_password for 8.x and later, mysql_native_password for 5.x and MariaDB)
//! C: SSLRequest, then a TLS handshake          (mariadb --ssl, mysql's default)
//! C: handshake response (user "root", 32-byte scramble, database, client attributes)
//! S: AuthMoreData perform_full_authentication  (caching_sha2_password over TLS)
//! C: "s3cret\0"
//!                                 -> mysql.login {"username":"root","password":"s3cret",
//!                                    "scramble_sha2":"$mysql-sha2$<nonce>*<response>", ...}
//! S: ERR 1045 (28000) Access denied for user 'root'@'192.0.2.7' (using password: YES)
//! ```
//! Without TLS, or with `mysql_native_password`, the server asks for `mysql_clear_password`
//! (`ask_cleartext`), which libmariadb clients accept. Connection ids start at a random base
//! and grow by one per connection, as a server's do.
//! `nmap -sV` reports `MySQL <version>`: its NULL probe matches the greeting's protocol byte and
//! version string (`^.\0\0\0\x0a(8\.[-_~.+\w]+)\0...\0`, the thread id's high byte is zero).
//!
//! The native hashed response is logged in hashcat's `-m 11200` form, the SHA-256 scramble as
//! described in [`sha2`], so a defender can check them against known passwords.

pub mod sha2;

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError, lossy},
        tcp::{Handler, TcpProtocol},
        tls::{self, Subject},
    },
};

const DEFAULT_VERSION: &str = "8.0.36";
const NATIVE: &str = "mysql_native_password";
const CACHING_SHA2: &str = "caching_sha2_password";
/// Largest packet accepted from a client before authentication (a handshake response is small).
const MAX_PACKET: usize = 16 * 1024;

const CLIENT_CONNECT_WITH_DB: u32 = 1 << 3;
const CLIENT_PROTOCOL_41: u32 = 1 << 9;
const CLIENT_SSL: u32 = 1 << 11;
const CLIENT_SECURE_CONNECTION: u32 = 1 << 15;
const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
const CLIENT_CONNECT_ATTRS: u32 = 1 << 20;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 1 << 21;
/// What the greeting offers: everything a MySQL 8.0 server offers; TLS when it is on.
const SERVER_CAPABILITIES: u32 = 0x01ff_ffff & !CLIENT_SSL;

struct MysqlServer {
    version: String,
    plugin: String,
    ask_cleartext: bool,
    tls: Option<TlsAcceptor>,
    next_id: AtomicU32,
}

impl std::fmt::Debug for MysqlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mysql")
            .field("version", &self.version)
            .field("plugin", &self.plugin)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// The plugin a server of `version` announces by default: `caching_sha2_password` from MySQL
/// 8.0 on, `mysql_native_password` for 5.x and MariaDB.
#[must_use]
pub fn default_plugin(version: &str) -> &'static str {
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    if major >= 8 && !version.contains("MariaDB") {
        CACHING_SHA2
    } else {
        NATIVE
    }
}

/// A MySQL instance.
#[derive(Debug, Clone, Deserialize)]
pub struct MysqlConfig {
    /// Server version announced; default `8.0.36`.
    #[serde(default)]
    pub version: Option<String>,
    /// Authentication plugin announced; default `caching_sha2_password` for 8.0 and later,
    /// `mysql_native_password` for older versions and MariaDB.
    #[serde(default)]
    pub auth_plugin: Option<String>,
    /// After the hashed response, ask the client to resend its password in cleartext
    /// (`mysql_clear_password`); clients that allow it reveal the password. Default true.
    #[serde(default)]
    pub ask_cleartext: Option<bool>,
    /// Offer TLS (CLIENT_SSL) with a certificate generated in the state directory; default true.
    #[serde(default)]
    pub ssl: Option<bool>,
}

/// The MySQL protocol.
#[derive(Debug)]
pub struct Mysql;

impl TcpProtocol for Mysql {
    type Config = MysqlConfig;

    /// MySQL's `connect_timeout` (10 s to finish the handshake), then `wait_timeout` (8 h;
    /// the session timeout ends the session first).
    fn timeouts(_config: &MysqlConfig) -> Option<crate::services::framework::timeouts::Timeouts> {
        Some(crate::services::framework::timeouts::Timeouts::secs(
            10, 28_800,
        ))
    }

    /// Generates (once) or loads the certificate when TLS is on.
    fn handler(config: MysqlConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        let version = config.version.unwrap_or_else(|| DEFAULT_VERSION.to_owned());
        let tls = if config.ssl.unwrap_or(true) {
            // MySQL 8.0's auto-generated certificate names itself so.
            let subject = Subject {
                common_name: format!("MySQL_Server_{version}_Auto_Generated_Server_Certificate"),
                ..Subject::default()
            };
            let server = tls::server_config(
                &ctx.state_dir(),
                &format!("mysql-{}", ctx.port),
                &subject,
                &[],
            )
            .map_err(|err| ctx.setup_error(err.to_string()))?;
            Some(TlsAcceptor::from(server))
        } else {
            None
        };
        let mysql = Arc::new(MysqlServer {
            plugin: config
                .auth_plugin
                .unwrap_or_else(|| default_plugin(&version).to_owned()),
            version,
            ask_cleartext: config.ask_cleartext.unwrap_or(true),
            tls,
            next_id: AtomicU32::new(rand::random_range(20..5_000)),
        });
        Ok(Arc::new(move |session, stream| {
            let mysql = Arc::clone(&mysql);
            Box::pin(async move { serve(&mysql, session, stream).await })
        }))
    }
}

/// Builds the server greeting (packet payload).
fn greeting(
    version: &str,
    plugin: &str,
    thread_id: u32,
    scramble: &[u8; 20],
    tls: bool,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(96);
    p.push(10);
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&(thread_id & 0x00ff_ffff).to_le_bytes());
    p.extend_from_slice(&scramble[..8]);
    p.push(0);
    let caps = if tls {
        SERVER_CAPABILITIES | CLIENT_SSL
    } else {
        SERVER_CAPABILITIES
    };
    let [c0, c1, c2, c3] = caps.to_le_bytes();
    p.extend_from_slice(&[c0, c1]);
    p.push(if version.starts_with('8') { 0xff } else { 0x21 });
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&[c2, c3]);
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&scramble[8..]);
    p.push(0);
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p
}

/// A random scramble of printable bytes without NUL, as servers send.
fn scramble() -> [u8; 20] {
    let mut out = [0u8; 20];
    let random = uuid::Uuid::new_v4().into_bytes();
    let more = uuid::Uuid::new_v4().into_bytes();
    for (i, b) in out.iter_mut().enumerate() {
        let r = if i < 16 { random[i] } else { more[i - 16] };
        *b = 0x21 + (r % 0x5e);
    }
    out
}

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&len[..3]);
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

/// The payload length a packet header announces (3 bytes, little-endian: at most 16 MiB - 1).
#[must_use]
pub fn packet_length(header: [u8; 4]) -> usize {
    let [b0, b1, b2, _] = header;
    usize::from(b0) | usize::from(b1) << 8 | usize::from(b2) << 16
}

/// Reads one packet: (sequence id, payload). A packet larger than [`MAX_PACKET`] is answered
/// as MySQL answers one over `max_allowed_packet` (ERR 1153), logged as `mysql.data` with its
/// header, and ends the session.
async fn read_packet<S>(conn: &mut Conn<S>, session: &Session) -> Result<(u8, Bytes), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let head = conn.read_exact(4, session).await?;
    let header: [u8; 4] = head
        .as_ref()
        .try_into()
        .map_err(|_| SessionError::Protocol("short packet header".to_owned()))?;
    let len = packet_length(header);
    if len > MAX_PACKET {
        session.data(&header).await;
        let [.., seq] = header;
        conn.write_all(
            &error_packet(
                seq.wrapping_add(1),
                1153,
                "08S01",
                "Got a packet bigger than 'max_allowed_packet' bytes",
            ),
            session,
        )
        .await?;
        return Err(SessionError::Protocol(format!("packet of {len} bytes")));
    }
    let body = conn.read_exact(len, session).await?;
    Ok((header[3], body))
}

/// What a handshake response says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// Capability flags.
    pub capabilities: u32,
    /// User name.
    pub username: Vec<u8>,
    /// Authentication response.
    pub auth_response: Vec<u8>,
    /// Database, if any.
    pub database: Option<Vec<u8>>,
    /// Client's authentication plugin, if any.
    pub plugin: Option<Vec<u8>>,
    /// Connection attributes (`_client_name`, `program_name`, ...).
    pub attributes: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.buf.iter().position(|&b| b == 0)?;
        let s = self.take(end)?;
        self.take(1)?;
        Some(s)
    }

    fn lenenc(&mut self) -> Option<u64> {
        let first = *self.take(1)?.first()?;
        let width = match first {
            0..=0xfa => return Some(u64::from(first)),
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            _ => return None,
        };
        let bytes = self.take(width)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        )
    }

    fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.lenenc()?).ok()?;
        self.take(n)
    }
}

/// Parses a `HandshakeResponse41`; `None` when it is malformed.
#[must_use]
pub fn parse_handshake_response(payload: &[u8]) -> Option<HandshakeResponse> {
    let mut r = Reader { buf: payload };
    let caps = r.take(4)?;
    let capabilities = u32::from_le_bytes([caps[0], caps[1], caps[2], caps[3]]);
    if capabilities & CLIENT_PROTOCOL_41 == 0 {
        return None;
    }
    r.take(4 + 1 + 23)?;
    let username = r.cstr()?.to_vec();
    let auth_response = if capabilities & CLIENT_PLUGIN_AUTH_LENENC != 0 {
        r.lenenc_bytes()?.to_vec()
    } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
        let n = usize::from(*r.take(1)?.first()?);
        r.take(n)?.to_vec()
    } else {
        r.cstr()?.to_vec()
    };
    let mut out = HandshakeResponse {
        capabilities,
        username,
        auth_response,
        ..HandshakeResponse::default()
    };
    if capabilities & CLIENT_CONNECT_WITH_DB != 0 {
        out.database = r.cstr().map(<[u8]>::to_vec);
    }
    if capabilities & CLIENT_PLUGIN_AUTH != 0 {
        out.plugin = r.cstr().map(<[u8]>::to_vec);
    }
    if capabilities & CLIENT_CONNECT_ATTRS != 0
        && let Some(all) = r.lenenc_bytes()
    {
        let mut a = Reader { buf: all };
        while !a.buf.is_empty() && out.attributes.len() < 64 {
            let (Some(k), Some(v)) = (a.lenenc_bytes(), a.lenenc_bytes()) else {
                break;
            };
            out.attributes.push((k.to_vec(), v.to_vec()));
        }
    }
    Some(out)
}

fn error_packet(seq: u8, code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut p = BytesMut::new();
    p.put_u8(0xff);
    p.put_u16_le(code);
    p.put_u8(b'#');
    p.put_slice(state.as_bytes());
    p.put_slice(message.as_bytes());
    packet(seq, &p)
}

async fn serve(
    mysql: &MysqlServer,
    session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let mut conn = Conn::new(stream, session.limits());
    let salt = scramble();
    let thread_id = mysql.next_id.fetch_add(1, Ordering::Relaxed);
    let hello = greeting(
        &mysql.version,
        &mysql.plugin,
        thread_id,
        &salt,
        mysql.tls.is_some(),
    );
    conn.write_all(&packet(0, &hello), &session).await?;
    let (seq, payload) = read_packet(&mut conn, &session).await?;
    // An SSLRequest is the first 32 bytes of a handshake response, with CLIENT_SSL.
    let ssl_request = payload.len() == 32
        && payload
            .get(..4)
            .and_then(|c| <[u8; 4]>::try_from(c).ok())
            .is_some_and(|c| u32::from_le_bytes(c) & CLIENT_SSL != 0);
    if let (true, Some(acceptor)) = (ssl_request, &mysql.tls) {
        let (stream, _) = conn.into_parts();
        let wait = session.limits().handshake_timeout();
        let tls = match tokio::time::timeout(wait, acceptor.accept(stream)).await {
            Err(_) => return Err(SessionError::HandshakeTimeout),
            Ok(result) => result?,
        };
        let mut conn = Conn::new(tls, session.limits());
        let (seq, payload) = read_packet(&mut conn, &session).await?;
        return login(mysql, session, conn, seq, &payload, &salt, true).await;
    }
    login(mysql, session, conn, seq, &payload, &salt, false).await
}

async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    mysql: &MysqlServer,
    mut session: Session,
    mut conn: Conn<S>,
    seq: u8,
    payload: &[u8],
    salt: &[u8; 20],
    tls: bool,
) -> Result<(), SessionError> {
    let Some(hello) = parse_handshake_response(payload) else {
        session.data(payload).await;
        conn.write_all(
            &error_packet(seq.wrapping_add(1), 1043, "08S01", "Bad handshake"),
            &session,
        )
        .await?;
        return Ok(());
    };
    session.handshake_done();
    let mut extra = Map::new();
    let username = lossy(&hello.username);
    extra.insert("username".to_owned(), Value::String(username.clone()));
    let plugin = hello.plugin.as_deref().map(lossy);
    if let Some(plugin) = &plugin {
        extra.insert("auth_plugin".to_owned(), Value::String(plugin.clone()));
    }
    extra.insert(
        "auth_response".to_owned(),
        Value::String(hex::encode(&hello.auth_response)),
    );
    let client_plugin = plugin.as_deref().unwrap_or(mysql.plugin.as_str());
    if hello.auth_response.len() == 20 && client_plugin == NATIVE {
        extra.insert(
            "hashcat".to_owned(),
            Value::String(format!(
                "$mysqlna${}*{}",
                hex::encode(salt),
                hex::encode(&hello.auth_response)
            )),
        );
    }
    let sha2 = hello.auth_response.len() == 32 && client_plugin == CACHING_SHA2;
    if sha2 {
        extra.insert(
            "scramble_sha2".to_owned(),
            Value::String(sha2::line(salt, &hello.auth_response)),
        );
    }
    if let Some(db) = &hello.database {
        extra.insert("database".to_owned(), Value::String(lossy(db)));
    }
    if !hello.attributes.is_empty() {
        let attrs: Map<String, Value> = hello
            .attributes
            .iter()
            .map(|(k, v)| (lossy(k), Value::String(lossy(v))))
            .collect();
        extra.insert("client_attributes".to_owned(), Value::Object(attrs));
    }
    if tls {
        // Only when true: plain logins keep the keys Trapster's events have.
        extra.insert("tls".to_owned(), Value::Bool(true));
    }
    let mut seq = seq.wrapping_add(1);
    let using_password = !hello.auth_response.is_empty();
    // caching_sha2_password over TLS: the server's cache is empty, so it asks for the full
    // password, which the client sends in cleartext on the encrypted connection.
    let full_auth = sha2 && tls;
    let ask = if full_auth {
        Some(vec![0x01, sha2::PERFORM_FULL_AUTHENTICATION])
    } else if mysql.ask_cleartext && using_password {
        let mut switch = vec![0xfe];
        switch.extend_from_slice(b"mysql_clear_password\0");
        Some(switch)
    } else {
        None
    };
    if let Some(ask) = ask {
        conn.write_all(&packet(seq, &ask), &session).await?;
        match read_packet(&mut conn, &session).await {
            Ok((client_seq, clear)) => {
                seq = client_seq.wrapping_add(1);
                let password = clear.strip_suffix(&[0]).unwrap_or(&clear);
                extra.insert("password".to_owned(), Value::String(lossy(password)));
            }
            Err(err) => {
                session.login(&[], extra).await;
                return Err(err);
            }
        }
    }
    session.login(&[], extra).await;
    let ip = session.identity().src_ip;
    let message = format!(
        "Access denied for user '{}'@'{ip}' (using password: {})",
        username.chars().take(64).collect::<String>(),
        if using_password { "YES" } else { "NO" }
    );
    conn.write_all(&error_packet(seq, 1045, "28000", &message), &session)
        .await?;
    conn.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{default_plugin, greeting, parse_handshake_response};

    #[test]
    fn tls_is_offered_and_plugins_follow_the_version() {
        let caps = |g: &[u8]| {
            let at = 1 + g[1..].iter().position(|&b| b == 0).unwrap() + 1 + 4 + 8 + 1;
            u32::from(g[at]) | u32::from(g[at + 1]) << 8
        };
        let with = greeting("8.0.36", "caching_sha2_password", 9, &[b'a'; 20], true);
        let without = greeting("8.0.36", "caching_sha2_password", 9, &[b'a'; 20], false);
        assert_eq!(caps(&with) & (1 << 11), 1 << 11);
        assert_eq!(caps(&without) & (1 << 11), 0);
        assert_eq!(default_plugin("8.0.36"), "caching_sha2_password");
        assert_eq!(default_plugin("8.4.3"), "caching_sha2_password");
        assert_eq!(default_plugin("5.7.44"), "mysql_native_password");
        assert_eq!(
            default_plugin("5.5.5-10.11.6-MariaDB"),
            "mysql_native_password"
        );
        assert_eq!(default_plugin("junk"), "mysql_native_password");
    }

    #[test]
    fn greeting_matches_what_nmap_expects() {
        let g = greeting(
            "8.0.36",
            "mysql_native_password",
            0x1234,
            &[b'a'; 20],
            false,
        );
        assert_eq!(g[0], 10);
        assert!(g[1..].starts_with(b"8.0.36\0"));
        // Thread id: three bytes and a zero.
        assert_eq!(&g[8..12], &[0x34, 0x12, 0, 0]);
        assert!(g.ends_with(b"mysql_native_password\0"));
    }

    #[test]
    fn handshake_responses_parse_and_garbage_does_not() {
        let mut p = Vec::new();
        let caps: u32 = (1 << 9) | (1 << 15) | (1 << 19) | (1 << 3) | (1 << 21) | (1 << 20);
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&[0; 4 + 1 + 23]);
        p.extend_from_slice(b"root\0");
        p.push(3);
        p.extend_from_slice(b"abc");
        p.extend_from_slice(b"db\0mysql_native_password\0");
        p.extend_from_slice(&[6, 1, b'k', 3, b'v', b'v', b'v']);
        let r = parse_handshake_response(&p).unwrap();
        assert_eq!(r.username, b"root");
        assert_eq!(r.auth_response, b"abc");
        assert_eq!(r.database.as_deref(), Some(&b"db"[..]));
        assert_eq!(r.attributes, vec![(b"k".to_vec(), b"vvv".to_vec())]);
        for cut in 0..p.len() - 12 {
            // Truncations never panic; most are refused.
            let _ = parse_handshake_response(&p[..cut]);
        }
        assert!(parse_handshake_response(&[0xff; 3]).is_none());
    }
}
