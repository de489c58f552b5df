//! FTP data connections, opened only after a login and only with the control connection's
//! peer:
//!
//! - `PASV`/`EPSV`: a listener on an ephemeral port of the address the client reached. At
//!   most one per session (a new `PASV` replaces it), at most `max_passive` per instance at
//!   once, dropped when unused for the data timeout. A connection from any other address is
//!   closed at once and the wait goes on (as vsftpd's `pasv_promiscuous=NO`).
//! - `PORT`/`EPRT`: refused unless the address is the control peer's and the port is not
//!   privileged, so the decoy can never be used to bounce a connection to a third host
//!   (RFC 2577). The connection is made when a transfer starts, within the data timeout.
//!
//! Transfers are bounded in bytes and in time: every read and write waits at most the data
//! timeout, uploads stop being read past `max_upload_bytes`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use crate::services::proto::shared::upload::Capture;

/// Connections from other hosts a passive wait closes before giving up.
const MAX_INTRUDERS: usize = 16;

/// A data connection asked for and not used yet.
#[derive(Debug)]
pub enum Pending {
    /// `PASV`/`EPSV`: our listener.
    Passive {
        /// The listener.
        listener: TcpListener,
        /// Its place among the instance's passive listeners.
        _slot: OwnedSemaphorePermit,
        /// When it was opened.
        since: Instant,
    },
    /// `PORT`/`EPRT`: where to connect.
    Active(SocketAddr),
}

impl Pending {
    /// Whether a passive listener has waited longer than `limit`.
    #[must_use]
    pub fn expired(&self, limit: Duration) -> bool {
        match self {
            Self::Passive { since, .. } => since.elapsed() > limit,
            Self::Active(_) => false,
        }
    }
}

/// The same host, whether written as IPv4 or IPv4-mapped IPv6.
fn same_host(a: IpAddr, b: IpAddr) -> bool {
    canonical(a) == canonical(b)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Opens a passive listener on `local` (port chosen by the kernel), or `None` when the
/// instance already has `slots` listeners open or the bind fails.
pub async fn passive(local: IpAddr, slots: &Arc<Semaphore>) -> Option<Pending> {
    let slot = Arc::clone(slots).try_acquire_owned().ok()?;
    let listener = TcpListener::bind(SocketAddr::new(local, 0)).await.ok()?;
    Some(Pending::Passive {
        listener,
        _slot: slot,
        since: Instant::now(),
    })
}

/// The port a passive listener got.
#[must_use]
pub fn port_of(pending: &Pending) -> Option<u16> {
    match pending {
        Pending::Passive { listener, .. } => listener.local_addr().ok().map(|a| a.port()),
        Pending::Active(addr) => Some(addr.port()),
    }
}

/// `PORT h1,h2,h3,h4,p1,p2`.
#[must_use]
pub fn parse_port(arg: &str) -> Option<SocketAddr> {
    let mut n = [0u8; 6];
    let mut parts = arg.trim().split(',');
    for slot in &mut n {
        *slot = parts.next()?.trim().parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    let [a, b, c, d, hi, lo] = n;
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        u16::from_be_bytes([hi, lo]),
    ))
}

/// `EPRT |1|h|p|` or `|2|h|p|` (RFC 2428; any delimiter).
#[must_use]
pub fn parse_eprt(arg: &str) -> Option<SocketAddr> {
    let arg = arg.trim();
    let delim = arg.chars().next()?;
    let mut parts = arg.split(delim);
    if !parts.next()?.is_empty() {
        return None;
    }
    let family = parts.next()?;
    let host = parts.next()?;
    let port: u16 = parts.next()?.parse().ok()?;
    if !parts.next()?.is_empty() || parts.next().is_some() {
        return None;
    }
    let ip = match family {
        "1" => IpAddr::V4(host.parse::<Ipv4Addr>().ok()?),
        "2" => IpAddr::V6(host.parse::<Ipv6Addr>().ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether an active data connection to `target` may be made for a client at `peer`: the
/// same host, an unprivileged port.
#[must_use]
pub fn active_allowed(target: SocketAddr, peer: IpAddr) -> bool {
    same_host(target.ip(), peer) && target.port() >= 1024
}

/// Opens the data connection within `wait`; with it, whether it was already there when the
/// transfer was asked for (IIS then answers `125`, not `150`).
pub async fn open(pending: Pending, peer: IpAddr, wait: Duration) -> Option<(TcpStream, bool)> {
    match pending {
        Pending::Passive { listener, .. } => {
            let deadline = Instant::now() + wait;
            let mut first = true;
            for _ in 0..=MAX_INTRUDERS {
                let accepted = if first {
                    // Polled once at once: a client that connected after the 227 is there.
                    match tokio::time::timeout(Duration::ZERO, listener.accept()).await {
                        Ok(accepted) => Some((accepted, true)),
                        Err(_) => None,
                    }
                } else {
                    None
                };
                let (accepted, ready) = match accepted {
                    Some(pair) => pair,
                    None => (
                        tokio::time::timeout_at(deadline, listener.accept())
                            .await
                            .ok()?,
                        false,
                    ),
                };
                first = false;
                let Ok((stream, from)) = accepted else {
                    continue;
                };
                if same_host(from.ip(), peer) {
                    return Some((stream, ready));
                }
                tracing::debug!(from = %from, "Passive data connection from another host closed.");
                drop(stream);
            }
            None
        }
        Pending::Active(target) => {
            if !active_allowed(target, peer) {
                return None;
            }
            let stream = tokio::time::timeout(wait, TcpStream::connect(target))
                .await
                .ok()?
                .ok()?;
            Some((stream, false))
        }
    }
}

/// Sends `bytes` and closes the connection; false when the client stopped reading or left.
pub async fn send(mut stream: TcpStream, bytes: &[u8], wait: Duration) -> bool {
    for chunk in bytes.chunks(16 * 1024) {
        match tokio::time::timeout(wait, stream.write_all(chunk)).await {
            Ok(Ok(())) => {}
            _ => return false,
        }
    }
    let _ignored = tokio::time::timeout(wait, stream.shutdown()).await;
    true
}

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The client closed the data connection: the whole file.
    Complete,
    /// More than the byte limit: the rest was not read.
    TooLarge,
    /// The client went silent for the data timeout, or the connection broke.
    Broken,
}

/// Reads an upload into `capture` until the client closes, at most `max_bytes`.
pub async fn receive(
    mut stream: TcpStream,
    capture: &mut Capture,
    max_bytes: u64,
    wait: Duration,
) -> Received {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if capture.size() >= max_bytes {
            return Received::TooLarge;
        }
        let room = usize::try_from(max_bytes.saturating_sub(capture.size()))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let Some(chunk) = buf.get_mut(..room) else {
            return Received::Broken;
        };
        match tokio::time::timeout(wait, stream.read(chunk)).await {
            Ok(Ok(0)) => return Received::Complete,
            Ok(Ok(n)) => capture.feed(chunk.get(..n).unwrap_or_default()).await,
            _ => return Received::Broken,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use super::{active_allowed, parse_eprt, parse_port, same_host};

    #[test]
    fn port_and_eprt_arguments_parse_or_are_refused() {
        assert_eq!(
            parse_port("127,0,0,1,195,80"),
            Some("127.0.0.1:50000".parse().unwrap())
        );
        assert_eq!(parse_port("127,0,0,1,195"), None);
        assert_eq!(parse_port("127,0,0,1,195,80,1"), None);
        assert_eq!(parse_port("256,0,0,1,1,1"), None);
        assert_eq!(
            parse_eprt("|1|127.0.0.1|50000|"),
            Some("127.0.0.1:50000".parse().unwrap())
        );
        assert_eq!(
            parse_eprt("!2!::1!2121!"),
            Some("[::1]:2121".parse().unwrap())
        );
        assert_eq!(parse_eprt("|3|x|1|"), None);
        assert_eq!(parse_eprt("|1|127.0.0.1|70000|"), None);
        assert_eq!(parse_eprt("|1|::1|2121|"), None);
    }

    #[test]
    fn active_connections_only_go_back_to_the_client_on_unprivileged_ports() {
        let peer: IpAddr = "10.0.0.7".parse().unwrap();
        let ok: SocketAddr = "10.0.0.7:40000".parse().unwrap();
        assert!(active_allowed(ok, peer));
        assert!(!active_allowed("10.0.0.8:40000".parse().unwrap(), peer));
        assert!(!active_allowed("10.0.0.7:25".parse().unwrap(), peer));
        assert!(active_allowed(
            "[::ffff:10.0.0.7]:40000".parse().unwrap(),
            peer
        ));
        assert!(same_host(
            "::ffff:127.0.0.1".parse().unwrap(),
            "127.0.0.1".parse().unwrap()
        ));
    }
}
