//! The answering side (`answer_own_name`): on each watched interface the sensor listens for
//! LLMNR (224.0.0.252 and, with `ipv6`, ff02::1:3, port 5355) and NBT-NS (port 137) queries
//! and answers those for its own name as a Windows host does ([`super::reply`]); queries for
//! any other name get nothing. Each answered query is an `llmnr.query` / `nbns.query` event
//! (the querier's address, the `name`, `query_type`, the `answers` given and the `interface`):
//! whoever resolves the decoy's name is looking for it. At most [`MAX_PER_SEC`] queries are
//! answered (and logged) per socket and second; the rest are dropped, so a spoofed flood
//! cannot make the sensor a reflector.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
    time::Duration,
};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use socket2::{Domain, Protocol as Proto, Socket, Type};
use tokio::{net::UdpSocket, task::JoinSet, time::Instant};
use uuid::Uuid;

use super::{
    LLMNR, LLMNR6, MAX_DATA, NBNS_PORT, Protocol, iface,
    reply::{self, Answered, OwnName},
};
use crate::event::{Action, Event, Service, SessionIdentity};

/// Queries answered per socket and second at most.
pub const MAX_PER_SEC: u32 = 20;

/// What a socket listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Llmnr4,
    Llmnr6,
    Nbns,
}

/// One open listening socket.
#[derive(Debug)]
pub struct Listener {
    socket: UdpSocket,
    kind: Kind,
    interface: String,
}

/// Opens every listening socket now: NBT-NS's port 137 is privileged, so this runs before the
/// agent drops its privileges. A socket that cannot be opened is logged and skipped.
#[must_use]
pub fn open(interfaces: &[String], protocols: &[Protocol], ipv6: bool) -> Vec<Listener> {
    let mut kinds = Vec::new();
    if protocols.contains(&Protocol::Llmnr) {
        kinds.push(Kind::Llmnr4);
        if ipv6 {
            kinds.push(Kind::Llmnr6);
        }
    }
    if protocols.contains(&Protocol::Nbns) {
        kinds.push(Kind::Nbns);
    }
    let mut listeners = Vec::new();
    for interface in interfaces {
        for &kind in &kinds {
            match socket(kind, interface) {
                Ok(Some(socket)) => {
                    tracing::info!(interface = %interface, protocol = ?kind, "Answering queries for the sensor's own name.");
                    listeners.push(Listener {
                        socket,
                        kind,
                        interface: interface.clone(),
                    });
                }
                Ok(None) => {
                    tracing::debug!(interface = %interface, protocol = ?kind, "No address of the family; not listening.");
                }
                Err(err) => {
                    tracing::warn!(interface = %interface, protocol = ?kind, error = %err, "Cannot listen for name queries.");
                }
            }
        }
    }
    listeners
}

/// Answers on every listener until the task is dropped.
pub async fn serve(own: OwnName, listeners: Vec<Listener>, sink: tokio::sync::mpsc::Sender<Event>) {
    let mut tasks = JoinSet::new();
    for listener in listeners {
        tasks.spawn(listen(listener, own.clone(), sink.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

/// The listening socket of `kind` on `interface`; `None` when the interface has no address of
/// that family.
fn socket(kind: Kind, interface: &str) -> std::io::Result<Option<UdpSocket>> {
    let addrs = iface::addresses(interface)?;
    let socket = match kind {
        Kind::Llmnr4 | Kind::Nbns => {
            if addrs.v4.is_empty() {
                return Ok(None);
            }
            Socket::new(Domain::IPV4, Type::DGRAM, Some(Proto::UDP))?
        }
        Kind::Llmnr6 => {
            if addrs.v6.is_empty() {
                return Ok(None);
            }
            let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Proto::UDP))?;
            s.set_only_v6(true)?;
            s
        }
    };
    socket.set_nonblocking(true)?;
    socket.set_reuse_address(true)?;
    if let Err(err) = socket.bind_device(Some(interface.as_bytes())) {
        tracing::debug!(interface = %interface, error = %err, "SO_BINDTODEVICE refused.");
    }
    match kind {
        Kind::Llmnr4 => {
            socket
                .bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), LLMNR.port()).into())?;
            if let IpAddr::V4(group) = LLMNR.ip() {
                for a in &addrs.v4 {
                    socket.join_multicast_v4(&group, &a.addr)?;
                }
            }
        }
        Kind::Nbns => {
            socket.set_broadcast(true)?;
            socket.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), NBNS_PORT).into())?;
        }
        Kind::Llmnr6 => {
            let index = iface::index(interface)
                .ok_or_else(|| std::io::Error::other("no interface index"))?;
            socket.bind(
                &SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, LLMNR.port(), 0, 0))
                    .into(),
            )?;
            socket.join_multicast_v6(&LLMNR6, index)?;
        }
    }
    UdpSocket::from_std(socket.into()).map(Some)
}

/// Answers queries on one socket.
async fn listen(listener: Listener, own: OwnName, sink: tokio::sync::mpsc::Sender<Event>) {
    let Listener {
        socket,
        kind,
        interface,
    } = listener;
    let mut buf = vec![0u8; 1500];
    let mut window = (Instant::now(), 0u32);
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(interface = %interface, error = %err, "Name query receive failed.");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let query = buf.get(..n).unwrap_or_default();
        let Ok(addrs) = iface::addresses(&interface) else {
            continue;
        };
        let querier = from.ip().to_canonical();
        // The sensor's own probes come back on broadcast; they never ask for its name anyway.
        if addrs.contains(querier) {
            continue;
        }
        let v4: Vec<Ipv4Addr> = addrs.v4.iter().map(|a| a.addr).collect();
        let answered = match (kind, querier) {
            (Kind::Llmnr4 | Kind::Llmnr6, _) => reply::llmnr(query, &own, &v4, &addrs.v6),
            (Kind::Nbns, IpAddr::V4(ip)) => reply::nbns(query, &own, &addrs.v4, ip),
            (Kind::Nbns, IpAddr::V6(_)) => None,
        };
        let Some(answered) = answered else { continue };
        let now = Instant::now();
        if now.saturating_duration_since(window.0) >= Duration::from_secs(1) {
            window = (now, 0);
        }
        window.1 = window.1.saturating_add(1);
        if window.1 > MAX_PER_SEC {
            tracing::debug!(interface = %interface, querier = %querier, "Own-name query over the rate; not answered.");
            continue;
        }
        if let Err(err) = socket.send_to(&answered.reply, from).await {
            tracing::debug!(interface = %interface, querier = %querier, error = %err, "Own-name answer not sent.");
        }
        let local = local_address(&addrs, querier);
        let port = match kind {
            Kind::Llmnr4 | Kind::Llmnr6 => LLMNR.port(),
            Kind::Nbns => NBNS_PORT,
        };
        let event = query_event(
            kind,
            &interface,
            from,
            SocketAddr::new(local, port),
            &answered,
            query,
        );
        if sink.send(event).await.is_err() {
            return;
        }
    }
}

/// The sensor's address as the querier sees it: on its subnet, of its family.
fn local_address(addrs: &iface::Addresses, querier: IpAddr) -> IpAddr {
    match querier {
        IpAddr::V4(ip) => addrs
            .v4
            .iter()
            .find(|a| a.same_subnet(ip))
            .or_else(|| addrs.v4.first())
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| IpAddr::V4(a.addr)),
        IpAddr::V6(ip) => {
            let link = ip.is_unicast_link_local();
            addrs
                .v6
                .iter()
                .find(|a| a.is_unicast_link_local() == link)
                .or_else(|| addrs.v6.first())
                .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |a| IpAddr::V6(*a))
        }
    }
}

fn query_event(
    kind: Kind,
    interface: &str,
    from: SocketAddr,
    local: SocketAddr,
    answered: &Answered,
    raw: &[u8],
) -> Event {
    let mut extra = Map::new();
    extra.insert("name".to_owned(), Value::String(answered.name.clone()));
    extra.insert(
        "query_type".to_owned(),
        Value::String(answered.query_type.clone()),
    );
    extra.insert(
        "answers".to_owned(),
        json!(
            answered
                .addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        ),
    );
    extra.insert("interface".to_owned(), Value::String(interface.to_owned()));
    Event {
        id: Uuid::new_v4(),
        timestamp: chrono::Utc::now(),
        session: SessionIdentity::between(from, local),
        service: match kind {
            Kind::Llmnr4 | Kind::Llmnr6 => Service::Llmnr,
            Kind::Nbns => Service::Nbns,
        },
        action: Action::Query,
        data: Bytes::copy_from_slice(raw.get(..raw.len().min(MAX_DATA)).unwrap_or_default()),
        extra: extra.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{iface, local_address};

    #[test]
    fn the_local_address_matches_the_querier_s_subnet_and_scope() {
        let addrs = iface::Addresses {
            v4: vec![
                iface::V4 {
                    addr: "10.0.0.5".parse().unwrap(),
                    mask: "255.0.0.0".parse().unwrap(),
                },
                iface::V4 {
                    addr: "198.18.3.1".parse().unwrap(),
                    mask: "255.255.255.0".parse().unwrap(),
                },
            ],
            v6: vec!["2001:2::1".parse().unwrap(), "fe80::1".parse().unwrap()],
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(local_address(&addrs, ip("198.18.3.9")), ip("198.18.3.1"));
        assert_eq!(local_address(&addrs, ip("192.0.2.1")), ip("10.0.0.5"));
        assert_eq!(local_address(&addrs, ip("fe80::9")), ip("fe80::1"));
        assert_eq!(local_address(&addrs, ip("2001:2::9")), ip("2001:2::1"));
        assert_eq!(
            local_address(&iface::Addresses::default(), ip("fe80::9")),
            ip("::")
        );
    }
}
