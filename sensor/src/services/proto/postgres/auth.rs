//! The authentication exchange after the startup packet: SCRAM-SHA-256 (with channel binding
//! over TLS), MD5 or cleartext, each ending as PostgreSQL ends a wrong password.

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    AuthMethod, PostgresServer, scram,
    wire::{Fatal, MAX_STARTUP, authentication, body_length, fatal, split_cstr},
};
use crate::services::framework::{
    conn::Conn,
    session::{Session, SessionError, lossy},
};

const SASL: u32 = 10;
const SASL_CONTINUE: u32 = 11;
const MD5: u32 = 5;
const CLEARTEXT: u32 = 3;
const SCRAM: &str = "SCRAM-SHA-256";
const SCRAM_PLUS: &str = "SCRAM-SHA-256-PLUS";
const END_POINT: &str = "tls-server-end-point";

/// Reads one `p` message (password, SASL initial or SASL response); a wrong tag or length is
/// logged as `postgres.data` with the 5 bytes received and ends the session.
async fn read_p<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
) -> Result<Bytes, SessionError> {
    let head = conn.read_exact(5, session).await?;
    let len = match head.split_first() {
        Some((b'p', length)) => <[u8; 4]>::try_from(length)
            .ok()
            .and_then(|length| body_length(length, 4, MAX_STARTUP)),
        _ => None,
    };
    let Some(len) = len else {
        session.data(&head).await;
        return Err(SessionError::Protocol(
            "invalid password message".to_owned(),
        ));
    };
    conn.read_exact(len, session).await
}

/// Runs the configured exchange, logs `postgres.login`, answers 28P01 and closes.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    pg: &PostgresServer,
    session: Session,
    mut conn: Conn<S>,
    params: &[(String, String)],
    end_point: Option<[u8; 32]>,
) -> Result<(), SessionError> {
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let user = get("user").unwrap_or_default();
    let mut extra = Map::new();
    extra.insert("username".to_owned(), Value::String(user.clone()));
    let exchanged = match pg.auth {
        AuthMethod::Cleartext => cleartext(&mut conn, &session, &mut extra).await,
        AuthMethod::Md5 => md5(&mut conn, &session, &user, &mut extra).await,
        AuthMethod::Scram => {
            let salt = scram::mock_salt(&pg.mock_secret, &user);
            scram(&mut conn, &session, &salt, end_point, &mut extra).await
        }
    };
    let finished = match exchanged {
        Ok(finished) => finished,
        Err(err) => return Err(err),
    };
    if !finished {
        conn.shutdown().await;
        return Ok(());
    }
    for key in [
        "database",
        "application_name",
        "client_encoding",
        "replication",
    ] {
        if let Some(v) = get(key) {
            extra.insert(key.to_owned(), Value::String(v));
        }
    }
    extra.insert("tls".to_owned(), Value::Bool(end_point.is_some()));
    extra.insert(
        "server_version".to_owned(),
        Value::String(pg.version.clone()),
    );

    session.login(&[], extra).await;
    let message = format!(
        "password authentication failed for user \"{}\"",
        user.chars().take(64).collect::<String>()
    );
    conn.write_all(
        &fatal(&Fatal {
            code: "28P01",
            message: &message,
            hint: None,
            file: "auth.c",
            line: "334",
            routine: "auth_failed",
        }),
        &session,
    )
    .await?;
    conn.shutdown().await;
    Ok(())
}

async fn cleartext<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
    extra: &mut Map<String, Value>,
) -> Result<bool, SessionError> {
    conn.write_all(&authentication(CLEARTEXT, &[]), session)
        .await?;
    let password = read_p(conn, session).await?;
    let password = password.strip_suffix(&[0]).unwrap_or(&password);
    extra.insert("password".to_owned(), Value::String(lossy(password)));
    Ok(true)
}

async fn md5<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
    user: &str,
    extra: &mut Map<String, Value>,
) -> Result<bool, SessionError> {
    let salt: [u8; 4] = rand::random();
    conn.write_all(&authentication(MD5, &salt), session).await?;
    let answer = read_p(conn, session).await?;
    let answer = lossy(answer.strip_suffix(&[0]).unwrap_or(&answer));
    extra.insert("auth".to_owned(), Value::String("md5".to_owned()));
    if let Some(hash) = answer
        .strip_prefix("md5")
        .filter(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        extra.insert(
            "hashcat".to_owned(),
            Value::String(format!("$postgres${user}*{}*{hash}", hex::encode(salt))),
        );
    }
    extra.insert("password_hash".to_owned(), Value::String(answer));
    Ok(true)
}

/// The SCRAM exchange; `Ok(false)` when the client's messages are malformed (logged as
/// `postgres.data`, closed without a login).
async fn scram<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
    salt: &[u8],
    end_point: Option<[u8; 32]>,
    extra: &mut Map<String, Value>,
) -> Result<bool, SessionError> {
    let mechanisms: &[u8] = if end_point.is_some() {
        b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"
    } else {
        b"SCRAM-SHA-256\0\0"
    };
    conn.write_all(&authentication(SASL, mechanisms), session)
        .await?;
    let initial = read_p(conn, session).await?;
    let Some(first) = parse_initial(&initial, end_point.is_some()) else {
        session.data(&initial).await;
        return Ok(false);
    };
    let server_nonce = scram::server_nonce();
    let server_first = scram::server_first(&first.1.nonce, &server_nonce, salt);
    conn.write_all(
        &authentication(SASL_CONTINUE, server_first.as_bytes()),
        session,
    )
    .await?;
    let response = read_p(conn, session).await?;
    let Ok(last) = std::str::from_utf8(&response)
        .map_err(|_| scram::Malformed("not UTF-8"))
        .and_then(scram::parse_client_final)
    else {
        session.data(&response).await;
        return Ok(false);
    };
    let (mechanism, first) = first;
    let mut expected_binding = first.gs2_header.as_bytes().to_vec();
    if first.flag == 'p'
        && let Some(hash) = end_point
    {
        expected_binding.extend_from_slice(&hash);
    }
    let capture = scram::ScramCapture {
        salt: salt.to_vec(),
        iterations: scram::ITERATIONS,
        auth_message: format!("{},{server_first},{}", first.bare, last.without_proof),
        proof: last.proof.clone(),
    };
    extra.insert("auth".to_owned(), Value::String("scram-sha-256".to_owned()));
    extra.insert("mechanism".to_owned(), Value::String(mechanism.to_owned()));
    extra.insert(
        "channel_binding".to_owned(),
        Value::String(
            first
                .channel_binding
                .clone()
                .unwrap_or_else(|| first.flag.to_string()),
        ),
    );
    extra.insert(
        "scram_valid".to_owned(),
        Value::Bool(
            last.channel_binding == expected_binding
                && last.nonce == format!("{}{server_nonce}", first.nonce),
        ),
    );
    extra.insert("scram".to_owned(), Value::String(capture.line()));
    Ok(true)
}

/// SASLInitialResponse: the mechanism (one the server offered), then the client-first message
/// (`p=tls-server-end-point` only with the PLUS mechanism, over TLS).
fn parse_initial(body: &[u8], tls: bool) -> Option<(&'static str, scram::ClientFirst)> {
    let (mechanism, rest) = split_cstr(body)?;
    let mechanism = match mechanism {
        m if m == SCRAM.as_bytes() => SCRAM,
        m if m == SCRAM_PLUS.as_bytes() && tls => SCRAM_PLUS,
        _ => return None,
    };
    let length = usize::try_from(i32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
    let data = rest.get(4..)?.get(..length)?;
    let first = scram::parse_client_first(std::str::from_utf8(data).ok()?).ok()?;
    let binds = first.flag == 'p';
    let plus = mechanism == SCRAM_PLUS;
    if binds != plus || (binds && first.channel_binding.as_deref() != Some(END_POINT)) {
        return None;
    }
    Some((mechanism, first))
}

#[cfg(test)]
mod tests {
    use super::parse_initial;

    fn initial(mechanism: &str, data: &str) -> Vec<u8> {
        let mut b = mechanism.as_bytes().to_vec();
        b.push(0);
        b.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        b.extend_from_slice(data.as_bytes());
        b
    }

    #[test]
    fn initial_responses_must_match_the_mechanism_offered() {
        let (m, f) = parse_initial(&initial("SCRAM-SHA-256", "n,,n=,r=abc"), false).unwrap();
        assert_eq!((m, f.nonce.as_str()), ("SCRAM-SHA-256", "abc"));
        let plus = initial("SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=,r=abc");
        assert_eq!(parse_initial(&plus, true).unwrap().0, "SCRAM-SHA-256-PLUS");
        assert!(
            parse_initial(&plus, false).is_none(),
            "PLUS is offered over TLS only"
        );
        assert!(parse_initial(&initial("SCRAM-SHA-256-PLUS", "n,,n=,r=a"), true).is_none());
        assert!(parse_initial(&initial("SCRAM-SHA-256", "p=tls-unique,,n=,r=a"), true).is_none());
        assert!(parse_initial(&initial("MD5", "n,,n=,r=a"), true).is_none());
        let mut short = initial("SCRAM-SHA-256", "n,,n=,r=abc");
        short.truncate(short.len() - 2);
        assert!(parse_initial(&short, false).is_none());
    }
}
