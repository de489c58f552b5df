//! Send-only raw sockets for UDP replies from ports the process may no longer bind.
//!
//! A reply to a datagram a decoy received must leave from the address and port the client sent
//! to. Binding a port below `net.ipv4.ip_unprivileged_port_start` needs `CAP_NET_BIND_SERVICE`,
//! which the agent gives up after start. A raw socket of protocol `IPPROTO_RAW`, opened while the
//! capability (`CAP_NET_RAW`) is still held, keeps working after it is gone: the agent writes the
//! IP and UDP headers itself (`etherparse` builds them, checksums included), so the source port
//! can be any one. Such a socket receives nothing (Linux delivers no inbound packet to
//! `IPPROTO_RAW`), so it costs nothing under a flood.
//!
//! The trade-off, stated: an agent holding it can send crafted IP packets, which is what
//! `CAP_NET_RAW` allows. The caller opens it only when a UDP decoy range or port needs it, and
//! every reply through it obeys the same reflection budget and per-source rate as any other.
//! A leaf: it imports nothing else of this crate.

use std::{
    io,
    net::{IpAddr, SocketAddr},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Largest datagram sent this way: the headers are written by hand, so the kernel does not
/// fragment; a reply that would not fit a common path MTU is refused rather than sent whole.
const MAX_PACKET: usize = 1_500;

/// The raw sockets (one per address family that could be opened).
#[derive(Debug)]
pub struct RawUdp {
    v4: Option<Socket>,
    v6: Option<Socket>,
    /// The host's default TTL and hop limit, for replies without a persona TTL.
    default_ttl: (u8, u8),
    /// The unprivileged port start it was opened for: replies from ports below go through it.
    below: u16,
}

fn open(domain: Domain) -> io::Result<Socket> {
    let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn sysctl_u8(path: &str, default: u8) -> u8 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(default)
}

impl RawUdp {
    /// Opens the IPv4 socket and, when the host has IPv6, the IPv6 one, for replies from ports
    /// below `below` (the unprivileged port start).
    ///
    /// # Errors
    /// The IPv4 socket cannot be opened (no `CAP_NET_RAW`).
    pub fn open(below: u16) -> io::Result<Self> {
        let v4 = open(Domain::IPV4)?;
        Ok(Self {
            v4: Some(v4),
            v6: open(Domain::IPV6).ok(),
            default_ttl: (
                sysctl_u8("/proc/sys/net/ipv4/ip_default_ttl", 64),
                sysctl_u8("/proc/sys/net/ipv6/conf/default/hop_limit", 64),
            ),
            below,
        })
    }

    /// Whether a reply from `port` goes through this socket: the port lies below the
    /// unprivileged port start, so binding it fails once the privileges are dropped (and
    /// trying first would cost a socket, its options and a refused bind per reply).
    #[must_use]
    pub const fn covers(&self, port: u16) -> bool {
        port < self.below
    }

    /// Sends `payload` as one UDP datagram from `local` (address and port) to `peer`, with
    /// `ttl` (the kernel's default when `None`).
    ///
    /// # Errors
    /// No socket for the address family, mixed families, a datagram too large, or the send
    /// failed.
    pub fn send(
        &self,
        local: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
        ttl: Option<u32>,
    ) -> io::Result<()> {
        let clamp = |default: u8| ttl.map_or(default, |t| u8::try_from(t).unwrap_or(u8::MAX));
        let (builder, socket) = match (local.ip(), peer.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => (
                etherparse::PacketBuilder::ipv4(
                    src.octets(),
                    dst.octets(),
                    clamp(self.default_ttl.0),
                ),
                self.v4.as_ref(),
            ),
            (IpAddr::V6(src), IpAddr::V6(dst)) => (
                etherparse::PacketBuilder::ipv6(
                    src.octets(),
                    dst.octets(),
                    clamp(self.default_ttl.1),
                ),
                self.v6.as_ref(),
            ),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "reply source and destination are of different address families",
                ));
            }
        };
        let socket = socket.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "no raw socket for this address family",
            )
        })?;
        let builder = builder.udp(local.port(), peer.port());
        let size = builder.size(payload.len());
        if size > MAX_PACKET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a {size}-byte reply does not fit one unfragmented packet"),
            ));
        }
        let mut packet = Vec::with_capacity(size);
        builder
            .write(&mut packet, payload)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
        // For raw sockets the port of the address is the protocol: 0 keeps the socket's.
        let to = match peer {
            SocketAddr::V4(p) => SocketAddr::V4(std::net::SocketAddrV4::new(*p.ip(), 0)),
            SocketAddr::V6(p) => {
                SocketAddr::V6(std::net::SocketAddrV6::new(*p.ip(), 0, 0, p.scope_id()))
            }
        };
        let sent = socket.send_to(&packet, &SockAddr::from(to))?;
        if sent == packet.len() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::WriteZero, "reply cut short"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RawUdp;

    /// As root (the privileged suite and CI run the unit tests as root too): a reply from a
    /// privileged port reaches a plain UDP socket on loopback with that source port.
    #[test]
    fn a_reply_from_a_privileged_port_arrives_from_that_port() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (CAP_NET_RAW)");
            return;
        }
        let raw = RawUdp::open(1024).unwrap();
        assert!(raw.covers(613) && !raw.covers(1024));
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let peer = client.local_addr().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:613".parse().unwrap();
        raw.send(local, peer, b"decoy reply", Some(128)).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"decoy reply");
        assert_eq!(from, local);
        let big = vec![0u8; 2_000];
        assert!(raw.send(local, peer, &big, None).is_err());
        let v6: std::net::SocketAddr = "[::1]:613".parse().unwrap();
        assert!(raw.send(v6, peer, b"x", None).is_err(), "mixed families");
        // IPv6, where the UDP checksum is mandatory: a wrong one would be dropped.
        if let Ok(client6) = std::net::UdpSocket::bind("[::1]:0") {
            client6
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let peer6 = client6.local_addr().unwrap();
            raw.send(v6, peer6, b"decoy reply 6", None).unwrap();
            let (n, from) = client6.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"decoy reply 6");
            assert_eq!(from, v6);
        }
    }
}
