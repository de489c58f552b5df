//! One VNC session: the version and security handshake, VNC Authentication, and for a client
//! that knows the configured password the initialisation and client messages.

use serde_json::{Map, Value, json};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

use super::{RfbVersion, VncServer, hashcat_line, john_line, response_for};
use crate::services::framework::{
    conn::Conn,
    session::{Session, SessionError, extra, lossy},
};

/// VNC Authentication's security type number.
const VNC_AUTH: u8 = 2;
/// The reason RFB 3.8 servers give for a wrong password.
const AUTH_FAILED: &str = "Authentication failure";
/// Full framebuffer updates sent to one client at most (each may be megabytes of raw pixels).
const MAX_FULL_UPDATES: u32 = 4;
/// Encodings accepted in one `SetEncodings` (real clients send about twenty).
const MAX_ENCODINGS: usize = 1024;
/// RRE encoding number.
const RRE: i32 = 2;

pub(super) async fn serve(
    server: &VncServer,
    session: Session,
    stream: TcpStream,
) -> Result<(), SessionError> {
    let mut conn = Conn::new(stream, session.limits());
    handshake(server, session, &mut conn).await
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    server: &VncServer,
    mut session: Session,
    conn: &mut Conn<S>,
) -> Result<(), SessionError> {
    conn.write_all(server.version.line(), &session).await?;
    let line = match conn.read_exact(12, &session).await {
        Err(SessionError::Closed) if !conn.buffered().is_empty() => {
            session.data(conn.buffered()).await;
            return Err(SessionError::Closed);
        }
        other => other?,
    };
    let Some(version) = RfbVersion::negotiate(&line, server.version) else {
        session.data(&line).await;
        return Err(SessionError::Protocol("not an RFB version line".to_owned()));
    };
    let client_version = lossy(line.get(..11).unwrap_or_default());
    if version == RfbVersion::V33 {
        conn.write_all(&u32::from(VNC_AUTH).to_be_bytes(), &session)
            .await?;
    } else {
        conn.write_all(&[1, VNC_AUTH], &session).await?;
        let chosen = conn.read_exact(1, &session).await?;
        if chosen.first() != Some(&VNC_AUTH) {
            session.data(&chosen).await;
            if version == RfbVersion::V38 {
                conn.write_all(&failure(true, "Security type not supported"), &session)
                    .await?;
            }
            conn.shutdown().await;
            return Err(SessionError::Protocol("unoffered security type".to_owned()));
        }
    }
    let challenge: [u8; 16] = rand::random();
    conn.write_all(&challenge, &session).await?;
    let answer = conn.read_exact(16, &session).await?;
    let mut response = [0u8; 16];
    response.copy_from_slice(&answer);
    session.handshake_done();
    let accepted = server
        .password
        .as_deref()
        .is_some_and(|p| response_for(p.as_bytes(), &challenge) == response);
    let mut fields = extra([
        ("client_version", Value::String(client_version)),
        ("security_type", json!(VNC_AUTH)),
        ("challenge", Value::String(hex::encode(challenge))),
        ("response", Value::String(hex::encode(response))),
        ("john", Value::String(john_line(&challenge, &response))),
        (
            "hashcat",
            Value::String(hashcat_line(&challenge, &response)),
        ),
        ("authenticated", Value::Bool(accepted)),
    ]);
    if accepted && let Some(password) = &server.password {
        fields.insert("password".to_owned(), Value::String(password.clone()));
    }
    session.login(&[], fields).await;
    if !accepted {
        conn.write_all(&failure(version == RfbVersion::V38, AUTH_FAILED), &session)
            .await?;
        conn.shutdown().await;
        return Ok(());
    }
    conn.write_all(&0u32.to_be_bytes(), &session).await?;
    let shared = conn.read_exact(1, &session).await?;
    session
        .query(
            &[],
            extra([
                ("message", json!("ClientInit")),
                ("shared", json!(shared.first().is_some_and(|b| *b != 0))),
            ]),
        )
        .await;
    conn.write_all(&server_init(server), &session).await?;
    messages(server, &session, conn).await
}

/// SecurityResult "failed", with the reason string only RFB 3.8 sends.
fn failure(with_reason: bool, reason: &str) -> Vec<u8> {
    let mut out = 1u32.to_be_bytes().to_vec();
    if with_reason {
        let len = u32::try_from(reason.len()).unwrap_or(0);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(reason.as_bytes());
    }
    out
}

/// The server's pixel format: 32 bits per pixel, depth 24, little-endian true colour.
const PIXEL_FORMAT: [u8; 16] = [32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0];

fn server_init(server: &VncServer) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + server.desktop_name.len());
    out.extend_from_slice(&server.width.to_be_bytes());
    out.extend_from_slice(&server.height.to_be_bytes());
    out.extend_from_slice(&PIXEL_FORMAT);
    let name = server.desktop_name.as_bytes();
    let name = name.get(..name.len().min(255)).unwrap_or_default();
    out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(name);
    out
}

/// A pixel format as logged.
fn pixel_format(p: &[u8]) -> Value {
    let byte = |i: usize| p.get(i).copied().unwrap_or(0);
    let u16_at = |i: usize| u16::from_be_bytes([byte(i), byte(i + 1)]);
    json!({
        "bits_per_pixel": byte(0),
        "depth": byte(1),
        "big_endian": byte(2) != 0,
        "true_colour": byte(3) != 0,
        "red_max": u16_at(4),
        "green_max": u16_at(6),
        "blue_max": u16_at(8),
        "red_shift": byte(10),
        "green_shift": byte(11),
        "blue_shift": byte(12),
    })
}

/// Client messages after initialisation, until the client leaves or breaks the protocol.
async fn messages<S: AsyncRead + AsyncWrite + Unpin>(
    server: &VncServer,
    session: &Session,
    conn: &mut Conn<S>,
) -> Result<(), SessionError> {
    let mut bytes_per_pixel: usize = 4;
    let mut rre = false;
    let mut full_updates = 0u32;
    loop {
        let kind = conn.read_exact(1, session).await?;
        let kind = kind.first().copied().unwrap_or(0xff);
        match kind {
            0 => {
                let body = conn.read_exact(19, session).await?;
                let format = body.get(3..).unwrap_or_default();
                bytes_per_pixel = match format.first() {
                    Some(8) => 1,
                    Some(16) => 2,
                    _ => 4,
                };
                session
                    .query(
                        &[],
                        fields("SetPixelFormat", "pixel_format", pixel_format(format)),
                    )
                    .await;
            }
            2 => {
                let head = conn.read_exact(3, session).await?;
                let count = usize::from(u16::from_be_bytes([
                    head.get(1).copied().unwrap_or(0),
                    head.get(2).copied().unwrap_or(0),
                ]));
                if count > MAX_ENCODINGS {
                    session.data(&head).await;
                    return Err(SessionError::Protocol(format!("{count} encodings")));
                }
                let list = conn.read_exact(count.saturating_mul(4), session).await?;
                let encodings: Vec<i32> = list
                    .chunks_exact(4)
                    .map(|c| i32::from_be_bytes(be32(c, 0)))
                    .collect();
                rre = encodings.contains(&RRE);
                session
                    .query(&[], fields("SetEncodings", "encodings", json!(encodings)))
                    .await;
            }
            3 => {
                let request = conn.read_exact(9, session).await?;
                let incremental = request.first().is_some_and(|b| *b != 0);
                if !incremental && full_updates < MAX_FULL_UPDATES {
                    full_updates = full_updates.saturating_add(1);
                    blank_update(server, bytes_per_pixel, rre, session, conn).await?;
                }
            }
            4 => {
                let key = conn.read_exact(7, session).await?;
                if key.first().is_some_and(|down| *down != 0) {
                    let sym = u32::from_be_bytes(be32(&key, 3));
                    session
                        .query(&[], fields("KeyEvent", "keysym", json!(sym)))
                        .await;
                }
            }
            5 => {
                conn.read_exact(5, session).await?;
            }
            6 => {
                let head = conn.read_exact(7, session).await?;
                let len = u32::from_be_bytes(be32(&head, 3));
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > session.limits().max_buffer_bytes {
                    session.data(&head).await;
                    return Err(SessionError::Protocol(format!("cut text of {len} bytes")));
                }
                let text = conn.read_exact(len, session).await?;
                session
                    .query(
                        &text,
                        fields("ClientCutText", "text", Value::String(lossy(&text))),
                    )
                    .await;
            }
            other => {
                let mut raw = vec![other];
                raw.extend_from_slice(conn.buffered());
                session.data(&raw).await;
                return Err(SessionError::Protocol(format!("message type {other}")));
            }
        }
    }
}

/// Four bytes at `at` (zeros past the end: callers read fixed-size messages).
fn be32(bytes: &[u8], at: usize) -> [u8; 4] {
    let mut out = [0u8; 4];
    if let Some(src) = bytes.get(at..at.saturating_add(4)) {
        out.copy_from_slice(src);
    }
    out
}

fn fields(message: &str, key: &str, value: Value) -> Map<String, Value> {
    extra([("message", json!(message)), (key, value)])
}

/// One black rectangle covering the whole screen: RRE with no subrectangle, or raw pixels.
async fn blank_update<S: AsyncRead + AsyncWrite + Unpin>(
    server: &VncServer,
    bytes_per_pixel: usize,
    rre: bool,
    session: &Session,
    conn: &mut Conn<S>,
) -> Result<(), SessionError> {
    let mut head = vec![0u8, 0, 0, 1, 0, 0, 0, 0];
    head.extend_from_slice(&server.width.to_be_bytes());
    head.extend_from_slice(&server.height.to_be_bytes());
    if rre {
        head.extend_from_slice(&RRE.to_be_bytes());
        head.extend_from_slice(&0u32.to_be_bytes());
        head.extend(std::iter::repeat_n(0u8, bytes_per_pixel));
        return conn.write_all(&head, session).await;
    }
    head.extend_from_slice(&0i32.to_be_bytes());
    conn.write_all(&head, session).await?;
    let row = vec![0u8; usize::from(server.width).saturating_mul(bytes_per_pixel)];
    for _ in 0..server.height {
        conn.write_all(&row, session).await?;
    }
    Ok(())
}
