//! Microsoft SQL Server (TDS 7.x) up to a failed login, with TLS inside TDS.
//!
//! ```text
//! C: PRELOGIN  VERSION, ENCRYPTION=OFF, INSTOPT "MSSQLServer", THREADID
//! S: PRELOGIN  VERSION 15.0.2000 (per `version`), ENCRYPTION=OFF, INSTOPT, THREADID
//! C/S: TLS handshake carried in PRELOGIN packets (SQL Server's self-signed certificate,
//!      CN=SSL_Self_Signed_Fallback; SChannel's suites, static RSA and CBC included: see
//!      [`tls`])
//! C: LOGIN7 over TLS: user "sa", password (obfuscated), host "WKS-7", app "TSQL", server
//!    "sql01", library "DB-Library", database "master"
//!                                   -> mssql.login {"username":"sa","password":"P@ss",
//!                                      "hostname":"WKS-7","app_name":"TSQL", ...}
//! S: (plain again: ENCRYPTION=OFF protects the login only) ERROR 18456 state 1 class 14
//!    "Login failed for user 'sa'." from SQL01, DONE with DONE_ERROR; then the server closes.
//! ```
//! Windows authentication (LOGIN7 with integrated security) carries an NTLM NEGOTIATE: the
//! server answers with the CHALLENGE in an SSPI token (`0xED`), the client's SSPI packet brings
//! the AUTHENTICATE, reported with the NetNTLMv2 (or v1) hashcat line, and the login fails with
//! 18456 for `DOMAIN\user`.
//!
//! A client asking for `ENCRYPTION=ON`/`REQ` gets `ON` and everything after the handshake stays
//! in TLS; `NOT_SUP` gets no TLS and sends its LOGIN7 in the clear. `nmap -sV` reports
//! `Microsoft SQL Server 2019` (per `version`): its `ms-sql-s` probe's signature matches the
//! PRELOGIN answer's exact layout and version bytes.
//!
//! Trapster keys: `version` (`2008`, `2008R2`, `2012`, `2014`, `2016`, `2017`, `2019`, `2022`;
//! default `2019`), `hostname` (the server name in error messages; default the sensor's), and
//! as the other TLS decoys `key`/`certificate` (PEM files used when both exist; otherwise a
//! fresh `SSL_Self_Signed_Fallback` certificate at every start, as SQL Server makes one).

pub mod login7;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod wire;

use std::{path::Path, sync::Arc};

use openssl::ssl::SslContext;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};

use self::wire::{ENCRYPT_NOT_SUP, ENCRYPT_OFF, ENCRYPT_ON, Version};
use super::shared::{
    ntlm::{Exchange, Identity, ProductVersion, Step},
    tds::{self, Channel},
};
use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError},
        tcp::{Handler, TcpProtocol},
    },
};

/// Largest message accepted before login (MS-TDS caps LOGIN7 at 128 KiB).
const MAX_MESSAGE: usize = 128 * 1024;

/// A `version` value: one of Trapster's release years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub struct SqlVersion(pub Version);

impl TryFrom<Value> for SqlVersion {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        let name = match &value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        wire::version(&name).map(Self).ok_or_else(|| {
            let known: Vec<&str> = wire::VERSIONS.iter().map(|(n, _)| *n).collect();
            format!(
                "unknown SQL Server version {value}, expected one of {}",
                known.join(", ")
            )
        })
    }
}

/// An MSSQL instance.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MssqlConfig {
    /// Release announced; default 2019.
    #[serde(default)]
    pub version: Option<SqlVersion>,
    /// Server name in error messages; default the sensor's `hostname`, upper case.
    #[serde(default)]
    pub hostname: Option<String>,
    /// PEM private key of the certificate to present (with `certificate`).
    #[serde(default)]
    pub key: Option<String>,
    /// PEM certificate (chain) to present (with `key`); both must exist to be used.
    #[serde(default)]
    pub certificate: Option<String>,
}

#[derive(Debug)]
struct SqlServer {
    version: Version,
    hostname: String,
    tls: SslContext,
    /// What Windows authentication's NTLM CHALLENGE presents.
    identity: Arc<Identity>,
}

/// The MSSQL protocol.
#[derive(Debug)]
pub struct Mssql;

impl TcpProtocol for Mssql {
    type Config = MssqlConfig;

    /// Loads the configured certificate, or makes the self-signed one as SQL Server does at
    /// every start.
    fn handler(config: MssqlConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        let default_host = ctx
            .hostname
            .split('.')
            .next()
            .unwrap_or("SQL01")
            .to_uppercase();
        let version = config.version.map_or(
            Version {
                major: 15,
                minor: 0,
                build: 2000,
            },
            |v| v.0,
        );
        let tls = tls_context(&config, version).map_err(|e| ctx.setup_error(e.to_string()))?;
        let hostname = config
            .hostname
            .filter(|h| !h.is_empty())
            .unwrap_or(default_host);
        // The Windows release a SQL Server of that age usually runs on.
        let windows = if version.major >= 13 {
            ProductVersion::SERVER_2019
        } else {
            ProductVersion::SERVER_2012_R2
        };
        let identity = Arc::new(Identity::new(&hostname, &ctx.domain, windows));
        let server = Arc::new(SqlServer {
            version,
            hostname,
            tls,
            identity,
        });
        Ok(Arc::new(move |session, stream| {
            let server = Arc::clone(&server);
            Box::pin(async move { serve(&server, session, stream).await })
        }))
    }
}

/// The TLS context: Trapster's `key` and `certificate` when both files exist, else a fresh
/// fallback certificate.
fn tls_context(config: &MssqlConfig, version: Version) -> Result<SslContext, tls::TlsError> {
    let given = match (config.key.as_deref(), config.certificate.as_deref()) {
        (Some(k), Some(c)) if Path::new(k).exists() && Path::new(c).exists() => Some((c, k)),
        _ => None,
    };
    if let Some((certificate, key)) = given {
        let (chain, key) = tls::load(Path::new(certificate), Path::new(key))?;
        return tls::context(version, &chain, &key);
    }
    let (cert, key) = tls::fallback_certificate(version)?;
    tls::context(version, std::slice::from_ref(&cert), &key)
}

/// A LOGIN7 `TDSVersion` as MS-TDS names it (`7.4`), or in hex when unknown.
fn tds_version_name(v: u32) -> String {
    match v {
        0x7000_0000 => "7.0".to_owned(),
        0x7100_0000 | 0x7100_0001 => "7.1".to_owned(),
        0x7209_0002 => "7.2".to_owned(),
        0x730a_0003 => "7.3A".to_owned(),
        0x730b_0003 => "7.3B".to_owned(),
        0x7400_0004 => "7.4".to_owned(),
        0x0800_0000 => "8.0".to_owned(),
        other => format!("0x{other:08x}"),
    }
}

const fn encryption_name(value: u8) -> &'static str {
    match value {
        ENCRYPT_OFF => "off",
        ENCRYPT_ON => "on",
        ENCRYPT_NOT_SUP => "not_supported",
        _ => "required",
    }
}

async fn serve(
    server: &SqlServer,
    mut session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let mut conn = Conn::new(stream, session.limits());
    let max = MAX_MESSAGE.min(session.limits().max_buffer_bytes);
    conn.fill(&session).await?;
    let first = conn.buffered().first().copied();
    if !matches!(first, Some(tds::PRELOGIN | tds::LOGIN7)) {
        let bytes = conn.take_buffered();
        session.data(&bytes).await;
        return Ok(());
    }
    let mut chan = Channel::new(max);
    let (kind, payload) = read_or_log(&mut chan, &mut conn, &session).await?;
    let mut encryption = ENCRYPT_NOT_SUP;
    let login = if kind == tds::PRELOGIN {
        let Some(client) = wire::parse_prelogin(&payload) else {
            session.data(&payload).await;
            return Ok(());
        };
        encryption = wire::negotiate(client.encryption);
        let answer = wire::prelogin_response(server.version, encryption, client.mars);
        conn.write_all(&tds::message(tds::TABULAR, &answer), &session)
            .await?;
        if encryption != ENCRYPT_NOT_SUP {
            chan.start_tls(&server.tls, &mut conn, &session).await?;
        }
        let (kind, payload) = read_or_log(&mut chan, &mut conn, &session).await?;
        if kind != tds::LOGIN7 {
            session.data(&payload).await;
            return Ok(());
        }
        payload
    } else {
        payload
    };
    session.handshake_done();
    let tls = chan.is_tls();
    if encryption == ENCRYPT_OFF {
        chan.stop_tls();
    }
    let Ok(login) = login7::parse(&login) else {
        session.data(&login).await;
        return Ok(());
    };
    let mut extra = Map::new();
    let mut put = |k: &str, v: &str| {
        extra.insert(k.to_owned(), Value::String(v.to_owned()));
    };
    put("username", &login.username);
    put("password", &login.password);
    put("hostname", &login.hostname);
    put("app_name", &login.app_name);
    put("server_name", &login.server_name);
    put("database", &login.database);
    put("library", &login.library);
    put("language", &login.language);
    put("tds_version", &tds_version_name(login.tds_version));
    put("encryption", encryption_name(encryption));
    extra.insert("tls".to_owned(), Value::Bool(tls));
    extra.insert("windows_auth".to_owned(), Value::Bool(login.integrated));
    let tokens = if login.integrated {
        extra.remove("password");
        let Some(user) = windows_auth(
            server,
            &mut chan,
            &mut conn,
            &session,
            &login.sspi,
            &mut extra,
        )
        .await?
        else {
            return Ok(());
        };
        session.login(&[], extra).await;
        wire::login_failed(&user, &server.hostname)
    } else {
        session.login(&[], extra).await;
        wire::login_failed(&login.username, &server.hostname)
    };
    chan.send(&mut conn, &session, &tds::message(tds::TABULAR, &tokens))
        .await?;
    conn.shutdown().await;
    Ok(())
}

/// Error 18452, SQL Server's answer to an integrated login it cannot use.
fn untrusted_domain(server: &str) -> Vec<u8> {
    wire::error_done(
        18452,
        "Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication.",
        server,
    )
}

/// The SSPI exchange of a Windows login: the NTLM CHALLENGE in an SSPI token (`0xED`), the
/// client's AUTHENTICATE in an SSPI packet. Adds what NTLM revealed to `extra` and returns
/// `DOMAIN\user` for the error message; `None` when the client left after the CHALLENGE (a
/// probe such as `ms-sql-ntlm-info`) or sent no NTLM (answered with error 18452).
async fn windows_auth<S: AsyncRead + AsyncWrite + Unpin>(
    server: &SqlServer,
    chan: &mut Channel,
    conn: &mut Conn<S>,
    session: &Session,
    first: &[u8],
    extra: &mut Map<String, Value>,
) -> Result<Option<String>, SessionError> {
    let mut exchange = Exchange::new(Arc::clone(&server.identity));
    let mut token = first.to_vec();
    // NEGOTIATE, then AUTHENTICATE.
    for _ in 0..2 {
        match exchange.step(&token) {
            Ok(Step::Reply(challenge)) => {
                let mut sspi = vec![0xed];
                sspi.extend_from_slice(&u16::try_from(challenge.len()).unwrap_or(0).to_le_bytes());
                sspi.extend_from_slice(&challenge);
                chan.send(conn, session, &tds::message(tds::TABULAR, &sspi))
                    .await?;
                let (kind, payload) = match chan.read(conn, session).await {
                    Err(SessionError::Closed) => return Ok(None),
                    other => other?,
                };
                if kind != tds::SSPI {
                    session.data(&payload).await;
                    return Ok(None);
                }
                token = payload;
            }
            Ok(Step::Done(captured)) => {
                let user = if captured.domain.is_empty() {
                    captured.username.clone()
                } else {
                    format!("{}\\{}", captured.domain, captured.username)
                };
                extra.extend(captured.extra());
                return Ok(Some(user));
            }
            Err(_) => {
                session.data(&token).await;
                let refusal = tds::message(tds::TABULAR, &untrusted_domain(&server.hostname));
                chan.send(conn, session, &refusal).await?;
                return Ok(None);
            }
        }
    }
    Ok(None)
}

/// Reads a message; a framing error is logged as `mssql.data` with what was buffered.
async fn read_or_log<S: AsyncRead + AsyncWrite + Unpin>(
    chan: &mut Channel,
    conn: &mut Conn<S>,
    session: &Session,
) -> Result<(u8, Vec<u8>), SessionError> {
    match chan.read(conn, session).await {
        Err(SessionError::Protocol(reason)) => {
            let bytes = conn.take_buffered();
            session.data(&bytes).await;
            Err(SessionError::Protocol(reason))
        }
        other => other,
    }
}
