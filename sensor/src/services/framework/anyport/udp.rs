//! The UDP side of the any-port decoys: one socket per address family receives the datagrams
//! the kernel's `sk_lookup` program steers to it for every port of `sensor.decoys.udp` (and
//! `udp_ports`), and each pseudo-session goes to the emulated UDP service its port or its
//! datagram names.
//!
//! The sockets ask for each datagram's original destination (`IP_RECVORIGDSTADDR`,
//! `IPV6_RECVORIGDSTADDR`), so the identity and every event's `dst_port` are the ones the
//! client sent to. A pseudo-session is keyed by (source, original destination) and admitted as
//! one of a configured UDP service (gate, whitelist, event caps, table size):
//!
//! 1. the service is the one `udp_ports` names for the port (or whose own port it is: 53
//!    `dns`, 161 `snmp`), else the one the datagram's form names ([`sniff`]), else none;
//! 2. a `udp.connection` event reports its first datagram (`data`: up to 64 bytes of it,
//!    `extra.service`, `extra.detected`: `port`, `sniff` or `none`);
//! 3. the chosen service handles this and later datagrams as on its own port
//!    (`<service>.connection`, queries, logins, ...).
//!
//! Replies leave from the address and port the client sent to: a reply socket is bound to that
//! address and port for the one `send_to` (the catch-all socket's own port would not match
//! what the client waits for; a datagram sent to the catch-all's own address, as tests do, is
//! answered through the catch-all, since a second socket bound there would take the next
//! datagrams). Replies obey the rules of the UDP framework, so a decoy port is
//! no better reflector than the service's own port: at most `udp_reply_factor` × the bytes
//! received plus `udp_reply_allowance_bytes` per pseudo-session (the chosen service's limits)
//! and `udp_replies_per_source_per_sec` per source. Binding a port below
//! `net.ipv4.ip_unprivileged_port_start` needs `CAP_NET_BIND_SERVICE`, which the sensor gives
//! up after start: when the decoys steer such a port at start, a send-only raw socket opened
//! then ([`crate::net::raw_udp`]) sends those replies, with the same source address and port,
//! TTL and budgets. Without it (no `CAP_NET_RAW` at start, or the low ports steered only by a
//! later reload) such datagrams are still reported and their replies counted in
//! `udp_send_failed`.
//!
//! Alert-flood control is the UDP framework's ([`super::super::udp_flood`]), per catch-all
//! socket: past `udp_flood_max_sources` new sources in a window of `udp_flood_window_secs`,
//! further sources are served the same but their events (`udp.connection` and the chosen
//! service's) are folded into one `udp.flood` summary at the end of the window, which also
//! lists the destination ports they went to (`ports`, up to 32, and `ports_count`).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use serde_json::{Map, Value};
use socket2::{Protocol, Type};
use tokio::{net::UdpSocket, task::JoinSet, time::Instant};

use super::{Detected, Dispatch, sniff::PEEK_BYTES};
use crate::{
    event::{Action, Service, SessionIdentity},
    net::{SourceKey, raw_udp::RawUdp},
    services::{
        ServiceError, ServiceLimits,
        framework::{
            Shared, bound_socket,
            gate::Permit,
            pktinfo,
            session::Session,
            udp::{
                Deferred, Exchange, MAX_DEFERRED, Rates, UdpSession, reply_budget, report_flood,
            },
            udp_flood::UdpFlood,
        },
    },
    shutdown::CancellationToken,
};

/// Largest datagram read (the largest UDP payload).
const MAX_DATAGRAM: usize = 65_535;

/// What a datagram's form says.
///
/// | datagram | service |
/// | --- | --- |
/// | a DNS message with QR = 0 (a query), decoded whole by `hickory-proto` | `dns` |
/// | an SNMP v1/v2c or v3 message, decoded whole by `rasn-snmp` | `snmp` |
#[must_use]
pub fn sniff(datagram: &[u8]) -> Option<&'static str> {
    use hickory_proto::{op::MessageType, serialize::binary::BinDecodable as _};
    if let Ok(message) = hickory_proto::op::Message::from_bytes(datagram)
        && message.metadata.message_type == MessageType::Query
        && !message.queries.is_empty()
    {
        return Some("dns");
    }
    let snmp = rasn::ber::decode::<rasn_snmp::v2c::Message<rasn_snmp::v2::Pdus>>(datagram).is_ok()
        || rasn::ber::decode::<rasn_snmp::v3::Message>(datagram).is_ok();
    snmp.then_some("snmp")
}

impl Dispatch {
    /// The UDP service for a pseudo-session to `port` whose first datagram is `datagram`.
    #[must_use]
    pub fn choose_udp(&self, port: u16, datagram: &[u8]) -> (Option<&'static str>, Detected) {
        let (name, detected) = match self.udp_ports.get(&port) {
            Some(name) => (Some(*name), Detected::Port),
            None => match sniff(datagram) {
                Some(name) => (Some(name), Detected::Sniff),
                None => (None, Detected::None),
            },
        };
        match name {
            Some(name) if self.udp_handlers.contains_key(name) => (Some(name), detected),
            _ => (None, Detected::None),
        }
    }
}

/// The UDP side of a catch-all.
#[derive(Debug)]
pub struct UdpSockets {
    /// Loopback, ephemeral ports, one per address family.
    pub catch_all: Vec<UdpSocket>,
    /// Replies from ports the agent can no longer bind, when opened at start.
    pub raw: Option<Arc<RawUdp>>,
}

/// The catch-all UDP sockets: loopback, ephemeral ports, one per address family, each asking
/// for the original destination of its datagrams; `raw` goes with them.
///
/// # Errors
/// [`ServiceError::Bind`] when the IPv4 socket cannot be bound; IPv6 is optional.
pub fn bind(raw: Option<Arc<RawUdp>>) -> Result<UdpSockets, ServiceError> {
    let open = |addr: SocketAddr| {
        let socket = bound_socket("udp", addr, Type::DGRAM, Protocol::UDP, |s| {
            pktinfo::enable_original(s, addr.is_ipv6())
        })?;
        UdpSocket::from_std(socket.into())
            .map_err(|source| super::super::bind_error("udp", addr, source))
    };
    let mut sockets = vec![open(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))?];
    match open(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0)) {
        Ok(v6) => sockets.push(v6),
        Err(err) => {
            tracing::warn!(error = %err, "No IPv6 catch-all UDP socket; IPv6 decoy datagrams go to the kernel's own lookup.");
        }
    }
    Ok(UdpSockets {
        catch_all: sockets,
        raw,
    })
}

/// Ports something is bound to now over UDP without a peer (`/proc/net/udp{,6}`, state 07):
/// the decoys leave them to their socket. Unreadable files give no port.
#[must_use]
pub fn bound_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    for path in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            ports.extend(super::parse_table(&text, "07"));
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// One pseudo-session: (source, original destination).
type Key = (SocketAddr, SocketAddr);

struct Entry {
    session: Session,
    state: Box<dyn UdpSession>,
    limits: Arc<ServiceLimits>,
    _permit: Permit,
    source: SourceKey,
    last_seen: Instant,
    received: u64,
    sent: u64,
    /// Datagrams so far.
    datagrams: u64,
    /// Whether its events are folded into the window's `udp.flood` summary.
    folded: bool,
    /// Events its opening stood for (`udp.connection`, and the service's connection).
    opening_events: usize,
}

/// A pseudo-session no service took: its datagrams are counted, never answered.
struct Unclaimed;

impl UdpSession for Unclaimed {
    fn handle(&mut self, _datagram: &[u8], _out: &mut Exchange) -> Option<Vec<u8>> {
        None
    }
}

/// The pseudo-sessions of one catch-all socket.
struct Table {
    entries: HashMap<Key, Entry>,
    rates: Rates,
    flood: UdpFlood,
    /// The first destination folded this window: the summary's `dst`.
    flood_dst: Option<SocketAddr>,
    /// The catch-all socket and its own address: a reply to a datagram sent to that address
    /// leaves through it (a second socket bound there could take the next datagrams).
    own: (Option<SocketAddr>, Arc<UdpSocket>),
    limits: Arc<ServiceLimits>,
    /// The persona's TTL for replies sent from another socket.
    ttl: Option<u32>,
    /// Replies from ports the agent can no longer bind.
    raw: Option<Arc<RawUdp>>,
}

impl Table {
    fn expire(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| {
            now.saturating_duration_since(e.last_seen) < e.limits.udp_idle_timeout()
        });
        self.rates.sweep(now);
        before.saturating_sub(self.entries.len())
    }

    /// Sends the window's `udp.flood` summary, if it folded anything.
    async fn report(
        &mut self,
        summary: Option<super::super::udp_flood::UdpFloodSummary>,
        shared: &Shared,
    ) {
        // Only a closed window gives up its destination (most calls close none).
        let Some(summary) = summary else {
            return;
        };
        if let Some(dst) = self.flood_dst.take() {
            report_flood(&summary, dst, Service::Udp, shared).await;
        }
    }
}

fn add(counter: &std::sync::atomic::AtomicU64, n: usize) {
    counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Serves steered datagrams on `socket` until `accepting` (or the shutdown) is cancelled.
pub async fn serve(
    socket: Arc<UdpSocket>,
    dispatch: Arc<Dispatch>,
    raw: Option<Arc<RawUdp>>,
    shared: Shared,
    accepting: CancellationToken,
) {
    let mut table = Table {
        entries: HashMap::new(),
        rates: Rates::new(
            shared.limits.udp_replies_per_source_per_sec,
            shared.limits.udp_max_sessions,
        ),
        flood: UdpFlood::new(
            shared.limits.udp_flood_max_sources,
            Duration::from_secs(shared.limits.udp_flood_window_secs),
        ),
        flood_dst: None,
        own: (socket.local_addr().ok(), Arc::clone(&socket)),
        limits: Arc::clone(&shared.limits),
        ttl: dispatch.ttl,
        raw,
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let period = shared
        .limits
        .udp_idle_timeout()
        .checked_div(2)
        .unwrap_or(Duration::ZERO)
        .clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut sweep = tokio::time::interval(period);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deferred: JoinSet<(Key, Option<Vec<u8>>)> = JoinSet::new();
    loop {
        let received = tokio::select! {
            () = accepting.cancelled() => {
                let summary = table.flood.flush();
                table.report(summary, &shared).await;
                return;
            }
            () = shared.shutdown.cancelled() => {
                let summary = table.flood.flush();
                table.report(summary, &shared).await;
                return;
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                let ended = table.expire(now);
                add(&shared.counters.udp_expired, ended);
                let summary = table.flood.sweep(now);
                table.report(summary, &shared).await;
                continue;
            }
            Some(done) = deferred.join_next(), if !deferred.is_empty() => {
                if let Ok((key, Some(reply))) = done {
                    send_reply(&mut table, key, &reply, &shared);
                }
                continue;
            }
            received = pktinfo::recv_original(&socket, &mut buf) => received,
        };
        let (n, peer, original) = match received {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(service = "udp", error = %err, "UDP receive failed.");
                continue;
            }
        };
        shared
            .counters
            .udp_datagrams
            .fetch_add(1, Ordering::Relaxed);
        add(&shared.counters.udp_bytes_received, n);
        // Without the original destination the reply could not leave from the right port.
        let Some(local) = original else {
            continue;
        };
        let datagram = buf.get(..n).unwrap_or(&[]);
        let later = datagram_in(&mut table, (peer, local), datagram, &dispatch, &shared).await;
        if let Some(reply) = later {
            if deferred.len() >= MAX_DEFERRED {
                shared
                    .counters
                    .udp_deferred_dropped
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                deferred.spawn(async move { ((peer, local), reply.await) });
            }
        }
    }
}

/// Opens the pseudo-session of `key` for its first `datagram`: admission, flood control,
/// `udp.connection`, the chosen service's `<service>.connection`. `None` when refused
/// (counted).
async fn open(
    table: &mut Table,
    key: Key,
    datagram: &[u8],
    dispatch: &Dispatch,
    shared: &Shared,
) -> Option<Entry> {
    let (peer, local) = key;
    let src_ip = crate::event::display_ip(peer.ip());
    let permit = shared.admit(src_ip)?;
    let whitelisted = shared.is_whitelisted(src_ip);
    let folded = if whitelisted {
        shared.counters.whitelisted.fetch_add(1, Ordering::Relaxed);
        false
    } else {
        let (reported, closed) = table
            .flood
            .admit(shared.gate.source_of(src_ip), Instant::now());
        table.report(closed, shared).await;
        if !reported {
            table.flood_dst.get_or_insert(local);
            table.flood.fold_port(local.port());
        }
        !reported
    };
    let silent = whitelisted || folded;
    shared.counters.udp_sessions.fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .decoy_udp_sessions
        .fetch_add(1, Ordering::Relaxed);
    let identity = SessionIdentity::between(peer, local);
    let session = |service, limits: &Arc<ServiceLimits>| {
        let mut session = Session::new(
            identity,
            service,
            shared.sink.clone(),
            Arc::clone(limits),
            Arc::clone(&shared.counters),
            silent,
        );
        session.handshake_done();
        session
    };
    let (chosen, detected) = dispatch.choose_udp(local.port(), datagram);
    let connection = session(Service::Udp, &shared.limits);
    let mut extra = Map::new();
    extra.insert(
        "service".to_owned(),
        chosen.map_or(Value::Null, Value::from),
    );
    extra.insert("detected".to_owned(), Value::from(detected.as_str()));
    let first = datagram.get(..PEEK_BYTES).unwrap_or(datagram);
    connection.emit(Action::Connection, first, extra).await;
    let claimed = chosen.and_then(|name| dispatch.udp_handlers.get(name));
    let mut opening_events = 1;
    let (session, state, limits) = match claimed {
        Some((service, handler, limits)) => {
            let session = session(*service, limits);
            session.connection().await;
            opening_events = 2;
            (session, handler(), Arc::clone(limits))
        }
        None => {
            shared
                .counters
                .decoy_udp_unclaimed
                .fetch_add(1, Ordering::Relaxed);
            let unclaimed: Box<dyn UdpSession> = Box::new(Unclaimed);
            (connection, unclaimed, Arc::clone(&shared.limits))
        }
    };
    Some(Entry {
        session,
        state,
        limits,
        _permit: permit,
        source: shared.gate.source_of(src_ip),
        last_seen: Instant::now(),
        received: 0,
        sent: 0,
        datagrams: 0,
        folded,
        opening_events,
    })
}

/// Handles one datagram of `key`; returns the reply the service deferred.
async fn datagram_in(
    table: &mut Table,
    key: Key,
    datagram: &[u8],
    dispatch: &Dispatch,
    shared: &Shared,
) -> Option<Deferred> {
    if !table.entries.contains_key(&key) {
        if table.entries.len() >= table.limits.udp_max_sessions {
            let ended = table.expire(Instant::now());
            add(&shared.counters.udp_expired, ended);
        }
        if table.entries.len() >= table.limits.udp_max_sessions {
            shared
                .counters
                .udp_table_full
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let entry = open(table, key, datagram, dispatch, shared).await?;
        table.entries.insert(key, entry);
    }
    let entry = table.entries.get_mut(&key)?;
    entry.last_seen = Instant::now();
    entry.received = entry
        .received
        .saturating_add(u64::try_from(datagram.len()).unwrap_or(u64::MAX));
    entry.datagrams = entry.datagrams.saturating_add(1);
    let mut exchange = Exchange::to(key.1);
    let reply = entry.state.handle(datagram, &mut exchange);
    let (events, close, deferred) = exchange.into_parts();
    if entry.folded {
        // Its first datagram also stood for the opening's events.
        let opening = if entry.datagrams == 1 {
            entry.opening_events
        } else {
            0
        };
        let total = entry.datagrams;
        table.flood.fold(
            key.0.ip(),
            datagram.len(),
            total,
            events.len().saturating_add(opening),
        );
    } else {
        for (action, data, extra) in events {
            entry.session.emit(action, &data, extra).await;
        }
    }
    if deferred.is_none()
        && let Some(reply) = reply
    {
        send_reply(table, key, &reply, shared);
    }
    if close {
        table.entries.remove(&key);
    }
    deferred
}

/// Sends `reply` for `key` from its original destination if the pseudo-session's reflection
/// budget and its source's rate allow it; counts the outcome.
fn send_reply(table: &mut Table, key: Key, reply: &[u8], shared: &Shared) {
    let now = Instant::now();
    let Some(entry) = table.entries.get_mut(&key) else {
        return;
    };
    let len = u64::try_from(reply.len()).unwrap_or(u64::MAX);
    let total = entry.sent.saturating_add(len);
    if total > reply_budget(&entry.limits, entry.received) {
        shared
            .counters
            .udp_refused_reflection
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
    if !table.rates.take(entry.source, now) {
        shared
            .counters
            .udp_refused_rate
            .fetch_add(1, Ordering::Relaxed);
        return;
    }
    entry.sent = total;
    let (peer, local) = key;
    let sent = match (&table.own, &table.raw) {
        ((Some(own), socket), _) if *own == local => socket.try_send_to(reply, peer).map(|_| ()),
        // A port below the unprivileged port start: no bind is tried.
        (_, Some(raw)) if raw.covers(local.port()) => raw.send(local, peer, reply, table.ttl),
        _ => match send_from(local, peer, reply, table.ttl) {
            // The port start was raised since the raw socket was opened.
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => match &table.raw {
                Some(raw) => raw.send(local, peer, reply, table.ttl),
                None => Err(err),
            },
            sent => sent,
        },
    };
    match sent {
        Ok(()) => {
            shared.counters.udp_replies.fetch_add(1, Ordering::Relaxed);
            add(&shared.counters.udp_bytes_replied, reply.len());
        }
        Err(err) => {
            shared
                .counters
                .udp_send_failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(service = "udp", %peer, %local, error = %err, "UDP decoy reply not sent.");
        }
    }
}

/// Sends one datagram from `local` (address and port) to `peer`, through a socket bound there
/// for this send only (unconnected, so the kernel program keeps steering the port's datagrams
/// to the catch-all).
fn send_from(
    local: SocketAddr,
    peer: SocketAddr,
    reply: &[u8],
    ttl: Option<u32>,
) -> std::io::Result<()> {
    let domain = if local.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if local.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    if ttl.is_some() {
        super::super::ttl::set(&socket2::SockRef::from(&socket), local.ip(), ttl)?;
    }
    socket.bind(&local.into())?;
    socket.send_to(reply, &peer.into())?;
    Ok(())
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;
