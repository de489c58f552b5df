//! One decoy query from one interface address, and the events of the hosts that answer it.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
    time::Duration,
};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::net::UdpSocket;
use uuid::Uuid;

use super::{LLMNR, LLMNR6, MAX_ANSWERS, MAX_DATA, MDNS, NBNS_PORT, Protocol, dns, nbns};
use crate::{
    event::{Action, Event, SessionIdentity},
    net::Cidr,
};

/// Where a query leaves from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// An IPv4 address and its subnet's broadcast address.
    V4 {
        /// The address.
        addr: Ipv4Addr,
        /// Its broadcast address (NBT-NS).
        broadcast: Ipv4Addr,
    },
    /// An IPv6 address on the interface with this index (LLMNR only).
    V6 {
        /// The address.
        addr: Ipv6Addr,
        /// The interface index (multicast interface, link-local scope).
        index: u32,
    },
}

/// Whether an answer from `ip` to a made-up name is poisoning: it is unless it comes from one
/// of the sensor's own addresses or a whitelisted host.
#[must_use]
pub fn is_poisoner(ip: IpAddr, own: &super::iface::Addresses, whitelist: &[Cidr]) -> bool {
    !own.contains(ip) && !whitelist.iter().any(|c| c.contains(ip))
}

/// One query on one interface address.
pub struct Probe<'a> {
    /// The protocol asked with.
    pub protocol: Protocol,
    /// The interface's name.
    pub interface: &'a str,
    /// The address asked from.
    pub from: Source,
    /// The name asked for.
    pub name: &'a str,
    /// Every address of the interface: answers from them are the sensor's own.
    pub own: &'a super::iface::Addresses,
    /// Hosts whose answers are not poisoning.
    pub whitelist: &'a [Cidr],
}

impl Probe<'_> {
    /// Sends the query and returns one event per host that answered within `wait`.
    ///
    /// # Errors
    /// The socket's error; a name that cannot be encoded.
    pub async fn ask(&self, wait: Duration) -> std::io::Result<Vec<Event>> {
        let id: u16 = rand::random();
        let (packet, target, asked, ttl) = match (self.protocol, self.from) {
            (Protocol::Llmnr, Source::V4 { .. }) => {
                (dns::query(id, self.name), LLMNR, self.name.to_owned(), 1)
            }
            (Protocol::Llmnr, Source::V6 { index, .. }) => (
                dns::query(id, self.name),
                SocketAddr::V6(SocketAddrV6::new(LLMNR6, 5355, 0, index)),
                self.name.to_owned(),
                1,
            ),
            (Protocol::Mdns, Source::V4 { .. }) => {
                let asked = format!("{}.local.", self.name);
                (dns::query(id, &asked), MDNS, asked, 255)
            }
            (Protocol::Nbns, Source::V4 { broadcast, .. }) => (
                Some(nbns::query(id, self.name)),
                SocketAddr::new(IpAddr::V4(broadcast), NBNS_PORT),
                self.name.to_ascii_uppercase(),
                64,
            ),
            (Protocol::Mdns | Protocol::Nbns, Source::V6 { .. }) => {
                return Err(std::io::Error::other("only LLMNR is asked over IPv6"));
            }
        };
        let packet = packet.ok_or_else(|| std::io::Error::other("name cannot be encoded"))?;
        let socket = self.socket(ttl)?;
        socket.send_to(&packet, target).await?;
        let local = socket.local_addr()?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen: Vec<IpAddr> = Vec::new();
        let mut events = Vec::new();
        let mut buf = vec![0u8; 1500];
        for _ in 0..MAX_ANSWERS {
            let Ok(received) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
            else {
                break;
            };
            let (n, from) = received?;
            let answer = buf.get(..n).unwrap_or_default();
            let answers: Option<Vec<IpAddr>> = match self.protocol {
                Protocol::Llmnr | Protocol::Mdns => dns::parse_answer(answer, id, &asked),
                Protocol::Nbns => nbns::parse_answer(answer, id)
                    .filter(|a| a.name.eq_ignore_ascii_case(&asked))
                    .map(|a| a.addresses.into_iter().map(IpAddr::V4).collect()),
            };
            let Some(answers) = answers else { continue };
            let ip = from.ip().to_canonical();
            if seen.contains(&ip) {
                continue;
            }
            seen.push(ip);
            if !is_poisoner(ip, self.own, self.whitelist) {
                tracing::debug!(interface = %self.interface, answerer = %ip, name = %asked, "An answer from the sensor itself or a whitelisted host is not poisoning.");
                continue;
            }
            events.push(self.event(from, local, &asked, &answers, answer));
        }
        Ok(events)
    }

    fn socket(&self, ttl: u32) -> std::io::Result<UdpSocket> {
        use socket2::{Domain, Protocol as Proto, Socket, Type};
        let domain = match self.from {
            Source::V4 { .. } => Domain::IPV4,
            Source::V6 { .. } => Domain::IPV6,
        };
        let socket = Socket::new(domain, Type::DGRAM, Some(Proto::UDP))?;
        socket.set_nonblocking(true)?;
        // Best effort: SO_BINDTODEVICE needs CAP_NET_RAW; the address bind below already
        // picks the interface for unicast and broadcast, the multicast interface option for
        // multicast.
        if let Err(err) = socket.bind_device(Some(self.interface.as_bytes())) {
            tracing::debug!(interface = %self.interface, error = %err, "SO_BINDTODEVICE refused.");
        }
        match self.from {
            Source::V4 { addr, .. } => {
                match self.protocol {
                    Protocol::Nbns => socket.set_broadcast(true)?,
                    Protocol::Llmnr | Protocol::Mdns => {
                        socket.set_multicast_if_v4(&addr)?;
                        socket.set_multicast_ttl_v4(ttl)?;
                        socket.set_multicast_loop_v4(false)?;
                    }
                }
                socket.set_ttl_v4(ttl)?;
                socket.bind(&SocketAddr::new(IpAddr::V4(addr), 0).into())?;
            }
            Source::V6 { addr, index } => {
                socket.set_only_v6(true)?;
                socket.set_multicast_if_v6(index)?;
                socket.set_multicast_hops_v6(ttl)?;
                socket.set_multicast_loop_v6(false)?;
                let scope = if addr.is_unicast_link_local() {
                    index
                } else {
                    0
                };
                socket.bind(&SocketAddr::V6(SocketAddrV6::new(addr, 0, 0, scope)).into())?;
            }
        }
        UdpSocket::from_std(socket.into())
    }

    fn event(
        &self,
        from: SocketAddr,
        local: SocketAddr,
        asked: &str,
        answers: &[IpAddr],
        raw: &[u8],
    ) -> Event {
        let mut extra = Map::new();
        extra.insert("name".to_owned(), Value::String(asked.to_owned()));
        extra.insert(
            "answers".to_owned(),
            json!(answers.iter().map(ToString::to_string).collect::<Vec<_>>()),
        );
        extra.insert(
            "interface".to_owned(),
            Value::String(self.interface.to_owned()),
        );
        extra.insert(
            "query_type".to_owned(),
            json!(match self.protocol {
                Protocol::Nbns => "NB",
                Protocol::Llmnr | Protocol::Mdns => "A",
            }),
        );
        Event {
            id: Uuid::new_v4(),
            timestamp: chrono::Utc::now(),
            session: SessionIdentity::between(from, local),
            service: self.protocol.service(),
            action: Action::Poisoning,
            data: Bytes::copy_from_slice(raw.get(..raw.len().min(MAX_DATA)).unwrap_or_default()),
            extra: extra.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_poisoner;
    use crate::{net::Cidr, poisoning::iface::Addresses};

    #[test]
    fn the_sensor_and_whitelisted_hosts_are_not_poisoners() {
        let own = Addresses {
            v4: vec![crate::poisoning::iface::V4 {
                addr: "198.18.3.1".parse().unwrap(),
                mask: "255.255.255.0".parse().unwrap(),
            }],
            v6: vec!["2001:2:0:3::1".parse().unwrap()],
        };
        let whitelist: Vec<Cidr> = ["198.18.3.53", "2001:2:0:3::/120"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        let ip = |s: &str| s.parse().unwrap();
        assert!(is_poisoner(ip("198.18.3.2"), &own, &whitelist));
        assert!(is_poisoner(ip("2001:2:0:3::1:2"), &own, &whitelist));
        assert!(!is_poisoner(ip("198.18.3.1"), &own, &whitelist), "itself");
        assert!(
            !is_poisoner(ip("2001:2:0:3::1"), &own, &whitelist),
            "itself"
        );
        assert!(
            !is_poisoner(ip("198.18.3.53"), &own, &whitelist),
            "the DNS server"
        );
        assert!(
            !is_poisoner(ip("2001:2:0:3::35"), &own, &whitelist),
            "in the range"
        );
        assert!(is_poisoner(ip("198.18.3.2"), &own, &[]));
    }
}
