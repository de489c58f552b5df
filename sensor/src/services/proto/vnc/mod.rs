//! VNC (RFB, RFC 6143) as a server offering VNC Authentication only, in protocol 3.3, 3.7 or
//! 3.8 (Trapster's `version`: `RFB_33`, `RFB_37`, `RFB_38`, the default).
//!
//! ```text
//! $ vncviewer 192.0.2.10::5900
//! S: "RFB 003.008\n"
//! C: "RFB 003.008\n"
//! S: 01 02                          one security type: VNC Authentication (2)
//! C: 02
//! S: 16-byte random challenge
//! C: 16-byte DES response           -> vnc.login {"challenge":"…","response":"…",
//!                                      "john":"$vnc$*CHALLENGE*RESPONSE", …}
//! S: 00 00 00 01, 00 00 00 16 "Authentication failure"
//! ```
//! `nmap -sV` reports `VNC (protocol 3.8)` (its NULL probe matches `^RFB 003\.008\n`), and the
//! `vnc-info` script lists `VNC Authentication (2)` as the only security type.
//!
//! The handshake follows what the client announces, as real servers do: a 3.8 server speaks
//! 3.7 to a 3.7 client and 3.3 (the server picks the type, no reason string on failure) to
//! 3.3 clients and to the odd versions (3.5, Apple's 3.889) the RFC says to treat as 3.3. A
//! version line that is not `RFB xxx.yyy\n` ends the session, as in TigerVNC.
//!
//! # The crackable line
//! VNC Authentication encrypts the challenge with DES, the key being the password (cut or
//! NUL-padded to 8 bytes) with each byte's bits mirrored. `vnc.login` carries the challenge and
//! the response in hex and two lines crackers read: `john` is John the Ripper's `vnc` format,
//! `$vnc$*<challenge>*<response>` (uppercase hex, as `vncpcap2john` writes it), and `hashcat`
//! is `<response[0..8]>:<challenge[0..8]>` for `hashcat -m 14000` (plain DES; the key found is
//! the bit-mirrored password, so run it with a bit-mirrored charset such as Trapster's
//! `VNC_ascii.hcchr`). A test recomputes the response from the password with the `des` crate.
//!
//! With `password` configured, a client that answers the challenge for it is let in: it gets
//! `ServerInit` (`desktop_name`, `width` x `height`, 32-bit true colour), its `ClientInit`
//! shared flag, pixel format, encodings and cut text are logged as `vnc.query`, and full
//! framebuffer update requests are answered with a blank screen (one RRE rectangle, or raw
//! pixels for clients without RRE).

mod session;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use des::cipher::{BlockCipherEncrypt as _, KeyInit as _};
use serde::Deserialize;

use crate::services::{
    Context, ServiceError,
    framework::tcp::{Handler, TcpProtocol},
};

/// A protocol version the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RfbVersion {
    /// 3.3: the server picks the security type; no failure reason.
    V33,
    /// 3.7: the client picks from a list; no failure reason.
    V37,
    /// 3.8: as 3.7, plus a reason string when authentication fails.
    V38,
}

impl RfbVersion {
    /// The version line (`RFB 003.008\n`).
    #[must_use]
    pub const fn line(self) -> &'static [u8; 12] {
        match self {
            Self::V33 => b"RFB 003.003\n",
            Self::V37 => b"RFB 003.007\n",
            Self::V38 => b"RFB 003.008\n",
        }
    }

    /// What a client's version line means, capped at what the server speaks; `None` when it is
    /// not an RFB version line.
    #[must_use]
    pub fn negotiate(client: &[u8], server: Self) -> Option<Self> {
        let rest = client.strip_prefix(b"RFB ")?;
        let (major, rest) = rest.split_at_checked(3)?;
        let (dot, rest) = rest.split_at_checked(1)?;
        let (minor, nl) = rest.split_at_checked(3)?;
        if dot != b"." || nl != b"\n" {
            return None;
        }
        let number = |digits: &[u8]| -> Option<u16> {
            digits
                .iter()
                .all(u8::is_ascii_digit)
                .then(|| std::str::from_utf8(digits).ok()?.parse().ok())?
        };
        let (major, minor) = (number(major)?, number(minor)?);
        let asked = match (major, minor) {
            (3, 8..) | (4.., _) => Self::V38,
            (3, 7) => Self::V37,
            _ => Self::V33,
        };
        // RFC 6143: a minor of 889 (Apple) or anything unknown below 3.7 behaves as 3.3.
        let asked = if major == 3 && minor == 889 {
            Self::V33
        } else {
            asked
        };
        Some(asked.min(server))
    }
}

/// A VNC instance.
#[derive(Debug, Clone, Deserialize)]
pub struct VncConfig {
    /// Trapster's protocol version: `RFB_33`, `RFB_37` or `RFB_38` (default).
    #[serde(default)]
    pub version: Option<String>,
    /// A password that is accepted (at most 8 bytes count, as in VNC); when null every login
    /// fails.
    #[serde(default)]
    pub password: Option<String>,
    /// Desktop name sent in `ServerInit`; default the sensor's `hostname`.
    #[serde(default)]
    pub desktop_name: Option<String>,
    /// Framebuffer width; default 1024.
    #[serde(default)]
    pub width: Option<u16>,
    /// Framebuffer height; default 768.
    #[serde(default)]
    pub height: Option<u16>,
}

/// The resolved settings of one instance.
#[derive(Debug)]
pub(crate) struct VncServer {
    pub(crate) version: RfbVersion,
    pub(crate) password: Option<String>,
    pub(crate) desktop_name: String,
    pub(crate) width: u16,
    pub(crate) height: u16,
}

/// The VNC protocol.
#[derive(Debug)]
pub struct Vnc;

impl TcpProtocol for Vnc {
    type Config = VncConfig;

    fn handler(config: VncConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        let version = match config.version.as_deref() {
            None | Some("RFB_38") => RfbVersion::V38,
            Some("RFB_37") => RfbVersion::V37,
            Some("RFB_33") => RfbVersion::V33,
            Some(other) => {
                return Err(ctx.setup_error(format!(
                    "version: unknown `{other}` (RFB_33, RFB_37 or RFB_38)"
                )));
            }
        };
        let server = Arc::new(VncServer {
            version,
            password: config.password,
            desktop_name: config.desktop_name.unwrap_or_else(|| ctx.hostname.clone()),
            width: config.width.unwrap_or(1024).max(1),
            height: config.height.unwrap_or(768).max(1),
        });
        Ok(Arc::new(move |session, stream| {
            let server = Arc::clone(&server);
            Box::pin(async move { session::serve(&server, session, stream).await })
        }))
    }
}

/// The DES key VNC derives from a password: its first 8 bytes, NUL-padded, each byte's bits
/// mirrored.
#[must_use]
pub fn des_key(password: &[u8]) -> [u8; 8] {
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password) {
        *k = p.reverse_bits();
    }
    key
}

/// The response a client knowing `password` sends for `challenge`.
#[must_use]
pub fn response_for(password: &[u8], challenge: &[u8; 16]) -> [u8; 16] {
    let key = des_key(password);
    let cipher = des::Des::new(&key.into());
    let mut out = *challenge;
    for chunk in out.chunks_exact_mut(8) {
        let mut block = [0u8; 8];
        block.copy_from_slice(chunk);
        let mut block = block.into();
        cipher.encrypt_block(&mut block);
        chunk.copy_from_slice(&block);
    }
    out
}

/// John the Ripper's line for a captured exchange: `$vnc$*<challenge>*<response>`.
#[must_use]
pub fn john_line(challenge: &[u8; 16], response: &[u8; 16]) -> String {
    format!(
        "$vnc$*{}*{}",
        hex::encode_upper(challenge),
        hex::encode_upper(response)
    )
}

/// hashcat `-m 14000` line (DES, known plaintext): `<response[0..8]>:<challenge[0..8]>`.
#[must_use]
pub fn hashcat_line(challenge: &[u8; 16], response: &[u8; 16]) -> String {
    format!(
        "{}:{}",
        hex::encode(response.get(..8).unwrap_or_default()),
        hex::encode(challenge.get(..8).unwrap_or_default())
    )
}
