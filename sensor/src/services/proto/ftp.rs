//! FTP (RFC 959) as a Windows IIS FTP server presents itself by default.
//!
//! ```text
//! S: 220 Microsoft FTP Service
//! C: USER admin
//! S: 331 Password required
//! C: PASS hunter2                 -> ftp.login {"username":"admin","password":"hunter2"}
//! S: 530 User cannot log in.
//! C: QUIT
//! S: 221 Goodbye.
//! ```
//! `nmap -sV` reports `Microsoft ftpd` for the default banner (its probe matches
//! `^220[ -]Microsoft FTP Service\r\n`); any other configured banner is sent as is.
//!
//! Every command line becomes an `ftp.data` event with its raw bytes (as Trapster does).
//! Commands are read line by line from a buffer, so a client that pipelines `USER` and `PASS`
//! in one segment is logged exactly like one that waits for each reply. Data connections are
//! never opened: transfer commands get `425`. A line longer than `max_line_bytes` is logged as
//! `ftp.data` (its first bytes) and ends the session.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError, extra, lossy},
        tcp::{Handler, TcpProtocol},
    },
};

const DEFAULT_BANNER: &str = "Microsoft FTP Service";

const FEAT: &str = "211-Extended features supported:\r\n LANG EN*\r\n UTF8\r\n AUTH TLS;TLS-C;SSL;TLS-P;\r\n PBSZ\r\n PROT C;P;\r\n CCC\r\n HOST\r\n SIZE\r\n MDTM\r\n REST STREAM\r\n211 END\r\n";

/// The FTP instance's settings, resolved.
#[derive(Debug)]
struct FtpServer {
    banner: String,
    username: Option<String>,
    password: Option<String>,
}

/// An FTP instance.
#[derive(Debug, Clone, Deserialize)]
pub struct FtpConfig {
    /// Greeting after `220 `; default `Microsoft FTP Service`.
    #[serde(default)]
    pub banner: Option<String>,
    /// Accepted user (Trapster `username`); when null every login fails.
    #[serde(default)]
    pub username: Option<String>,
    /// Accepted password.
    #[serde(default)]
    pub password: Option<String>,
}

/// The FTP protocol.
#[derive(Debug)]
pub struct Ftp;

impl TcpProtocol for Ftp {
    type Config = FtpConfig;

    fn handler(config: FtpConfig, _ctx: &Context) -> Result<Handler, ServiceError> {
        let ftp = Arc::new(FtpServer {
            banner: config.banner.unwrap_or_else(|| DEFAULT_BANNER.to_owned()),
            username: config.username,
            password: config.password,
        });
        Ok(Arc::new(move |session, stream| {
            let ftp = Arc::clone(&ftp);
            Box::pin(async move { serve(&ftp, session, stream).await })
        }))
    }
}

async fn serve(
    ftp: &FtpServer,
    mut session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let mut conn = Conn::new(stream, session.limits());
    conn.write_all(format!("220 {}\r\n", ftp.banner).as_bytes(), &session)
        .await?;
    let mut user: Option<String> = None;
    let mut logged_in = false;
    loop {
        let line = match conn.read_line(&session).await {
            Err(SessionError::LineTooLong(max)) => {
                // What came of the overlong line is logged; the session ends.
                session.data(conn.buffered()).await;
                return Err(SessionError::LineTooLong(max));
            }
            other => other?,
        };
        session.handshake_done();
        session.data(&line).await;
        let text = lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
        let verb = verb.to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "USER" => {
                user = Some(arg.to_owned());
                logged_in = false;
                "331 Password required\r\n".to_owned()
            }
            "PASS" => match user.take() {
                None => "503 Login with USER first.\r\n".to_owned(),
                Some(name) => {
                    session
                        .login(
                            &[],
                            extra([
                                ("username", Value::String(name.clone())),
                                ("password", Value::String(arg.to_owned())),
                            ]),
                        )
                        .await;
                    let ok = ftp.username.as_deref() == Some(name.as_str())
                        && ftp.password.as_deref() == Some(arg);
                    logged_in = ok;
                    if ok {
                        "230 User logged in.\r\n".to_owned()
                    } else {
                        "530 User cannot log in.\r\n".to_owned()
                    }
                }
            },
            "QUIT" => {
                conn.write_all(b"221 Goodbye.\r\n", &session).await?;
                conn.shutdown().await;
                return Ok(());
            }
            "AUTH" => "534 Local policy on server does not allow TLS secure connections.\r\n"
                .to_owned(),
            "FEAT" => FEAT.to_owned(),
            "SYST" => "215 Windows_NT\r\n".to_owned(),
            "NOOP" => "200 NOOP command successful.\r\n".to_owned(),
            "OPTS" if arg.to_ascii_uppercase().starts_with("UTF8") => {
                "200 OPTS UTF8 command successful - UTF8 encoding now ON.\r\n".to_owned()
            }
            "HELP" => "214-The following commands are recognized (* ==>'s unimplemented).\r\n    ABOR  ACCT  ADAT *ALLO  APPE  AUTH  CCC   CDUP  CWD   DELE  ENC  *EPRT\r\n    EPSV  FEAT  HOST  LANG  LIST  MDTM  MIC  *MKD   MODE *NLST  NOOP  OPTS\r\n    PASS  PASV  PBSZ  PORT  PROT  PWD   QUIT  REIN  REST  RETR  RMD   RNFR\r\n    RNTO  SITE  SIZE  SMNT  STAT  STOR  STOU  STRU  SYST  TYPE  USER  XCUP\r\n    XCWD  XMKD  XPWD  XRMD\r\n214 HELP command successful.\r\n".to_owned(),
            _ if !logged_in => "530 Please login with USER and PASS.\r\n".to_owned(),
            "PWD" | "XPWD" => "257 \"/\" is current directory.\r\n".to_owned(),
            "CWD" | "XCWD" | "CDUP" => "250 CWD command successful.\r\n".to_owned(),
            "TYPE" => format!("200 Type set to {}.\r\n", arg.chars().next().unwrap_or('A')),
            "PASV" | "EPSV" | "PORT" | "EPRT" | "LIST" | "NLST" | "RETR" | "STOR" | "MLSD" => {
                "425 Cannot open data connection.\r\n".to_owned()
            }
            _ => format!("500 '{}': command not understood.\r\n", sanitize(text)),
        };
        conn.write_all(reply.as_bytes(), &session).await?;
    }
}

/// The command echoed back in an error: printable ASCII only, bounded.
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}
