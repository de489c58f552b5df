//! The datagram loop shared by every UDP service: one task per bound socket, pseudo-sessions
//! keyed by the peer's address, and replies that can always be refused.
//!
//! A UDP protocol implements [`UdpProtocol`]: from its settings, a [`UdpHandler`] that makes one
//! [`UdpSession`] state per peer. The framework gives a pseudo-session what a TCP connection
//! gets: the same admission gate (global and per-source caps, a source per
//! `sensor.source_prefix`), the same whitelist, a [`Session`] whose identity comes from the
//! socket (the datagram's source, the socket's local address) and whose events are capped,
//! and `<service>.connection` on its first datagram. It ends after `udp_idle_timeout_ms`
//! without a datagram (or when the protocol says so); the table holds at most
//! `udp_max_sessions` of them, and datagrams from further peers are dropped and counted.
//!
//! UDP sources can be spoofed, so a reply may go to a victim who never asked. Two rules keep
//! the sensor from being a reflector or amplifier, and both only ever refuse a reply (the
//! datagram is still handled and logged):
//!
//! - a pseudo-session never sends more than `udp_reply_factor` × the bytes it received, plus
//!   `udp_reply_allowance_bytes` (room for a first answer larger than its question);
//! - one source (all its peers together) gets at most `udp_replies_per_source_per_sec`
//!   replies per second (token bucket, burst of one second's worth).
//!
//! A spoofed-source flood opens one pseudo-session per forged address: beyond
//! `udp_flood_max_sources` new ones per socket and `udp_flood_window_secs`, they are served the
//! same but their events are folded into one `<service>.flood` summary per window
//! ([`super::udp_flood`]), so the flood gives a bounded number of events and incidents.
//!
//! On a wildcard-bound socket the kernel tells each datagram's destination (`IP_PKTINFO`), so
//! `dst_ip` is the address the client sent to; replies leave from the address the kernel routes
//! them from.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use socket2::{Protocol, Type};
use tokio::{net::UdpSocket, task::JoinSet, time::Instant};

use super::udp_flood::{UdpFlood, UdpFloodSummary};
pub(super) use super::udp_rates::Rates;
use super::{Shared, bind_error, bound_socket, gate::Permit, pktinfo, session::Session};
use crate::{
    event::{Action, Service, SessionIdentity},
    net::SourceKey,
    services::{Context, ServiceError, ServiceLimits},
};

/// Largest datagram read (the largest UDP payload).
const MAX_DATAGRAM: usize = 65_535;
/// Deferred replies one socket waits for at once; further ones are dropped and counted.
pub const MAX_DEFERRED: usize = 1_024;

/// A reply that is not known yet when the datagram is handled (a DNS query forwarded
/// upstream): the framework awaits it, then sends it under the same reflection and rate rules
/// as an immediate reply. `None`: no reply.
pub type Deferred = Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>;

/// The events one datagram reported: action, raw bytes, `extra`.
pub(super) type Events = Vec<(Action, Vec<u8>, Map<String, Value>)>;

/// One peer's protocol state.
pub trait UdpSession: Send {
    /// Handles one datagram from the peer; returns the reply to send, if any (the framework may
    /// still refuse it). Events and the end of the pseudo-session go through `out`.
    fn handle(&mut self, datagram: &[u8], out: &mut Exchange) -> Option<Vec<u8>>;
}

/// Makes the state of a new pseudo-session.
pub type UdpHandler = Arc<dyn Fn() -> Box<dyn UdpSession> + Send + Sync>;

/// A protocol served over UDP.
pub trait UdpProtocol {
    /// An instance's settings (its entry in the `services` list; unknown keys are ignored, `port`
    /// is read by the framework).
    type Config: DeserializeOwned;

    /// Builds the handler of one instance. Runs on the blocking pool.
    ///
    /// # Errors
    /// [`ServiceError::Setup`] (see [`Context::setup_error`]) when the instance cannot start.
    fn handler(config: Self::Config, ctx: &Context) -> Result<UdpHandler, ServiceError>;
}

/// What handling one datagram reports besides the reply: events, and whether the pseudo-session
/// ends.
#[derive(Default)]
pub struct Exchange {
    events: Vec<(Action, Vec<u8>, Map<String, Value>)>,
    close: bool,
    local: Option<SocketAddr>,
    deferred: Option<Deferred>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("events", &self.events)
            .field("close", &self.close)
            .field("local", &self.local)
            .field("deferred", &self.deferred.is_some())
            .finish()
    }
}

impl Exchange {
    /// An exchange for a datagram the client sent to `local`.
    #[must_use]
    pub fn to(local: SocketAddr) -> Self {
        Self {
            local: Some(local),
            ..Self::default()
        }
    }

    /// The address the client sent the datagram to (the sensor's own address as the client
    /// sees it), when known.
    #[must_use]
    pub const fn local(&self) -> Option<SocketAddr> {
        self.local
    }

    /// `<service>.data` with raw bytes (what could not be parsed).
    pub fn data(&mut self, bytes: &[u8]) {
        self.events.push((Action::Data, bytes.to_vec(), Map::new()));
    }

    /// `<service>.login` with the captured credentials.
    pub fn login(&mut self, bytes: &[u8], extra: Map<String, Value>) {
        self.events.push((Action::Login, bytes.to_vec(), extra));
    }

    /// `<service>.query` with what was asked.
    pub fn query(&mut self, bytes: &[u8], extra: Map<String, Value>) {
        self.events.push((Action::Query, bytes.to_vec(), extra));
    }

    /// Ends the pseudo-session after this datagram (its next datagram starts a new one).
    pub const fn close(&mut self) {
        self.close = true;
    }

    /// The reply comes later, from `reply` (the handler then returns `None`); what
    /// [`UdpSession::handle`] returns is ignored once a reply is deferred.
    pub fn defer(&mut self, reply: Deferred) {
        self.deferred = Some(reply);
    }

    /// The events, whether the pseudo-session ends, and the deferred reply (for a datagram loop
    /// outside this module: the any-port decoys).
    pub(super) fn into_parts(self) -> (Events, bool, Option<Deferred>) {
        (self.events, self.close, self.deferred)
    }

    /// Takes the deferred reply (protocol unit tests).
    #[cfg(test)]
    pub fn take_deferred(&mut self) -> Option<Deferred> {
        self.deferred.take()
    }

    /// The events reported so far (protocol unit tests).
    #[cfg(test)]
    pub fn events(&self) -> &[(Action, Vec<u8>, Map<String, Value>)] {
        &self.events
    }

    /// Whether the pseudo-session ends (protocol unit tests).
    #[cfg(test)]
    pub const fn closing(&self) -> bool {
        self.close
    }
}

/// Binds a UDP socket for `service` on `addr`.
///
/// # Errors
/// [`ServiceError::Bind`] naming the service, address and port.
pub fn bind(service: Service, addr: SocketAddr) -> Result<UdpSocket, ServiceError> {
    let socket = bound_socket(service.as_str(), addr, Type::DGRAM, Protocol::UDP, |s| {
        if addr.ip().is_unspecified() {
            pktinfo::enable(s, addr.is_ipv6())
        } else {
            Ok(())
        }
    })?;
    UdpSocket::from_std(socket.into()).map_err(|source| bind_error(service.as_str(), addr, source))
}

/// One peer's pseudo-session.
struct Entry {
    session: Session,
    state: Box<dyn UdpSession>,
    _permit: Permit,
    source: SourceKey,
    last_seen: Instant,
    received: u64,
    sent: u64,
    /// Datagrams received.
    datagrams: u64,
    /// Folded into the window's flood summary (its events are not sent one by one).
    folded: bool,
}

/// Why a reply was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// It would exceed the reflection budget.
    Reflection,
    /// The source is over its reply rate.
    Rate,
}

/// The bytes a pseudo-session may have sent in all, having received `received`.
pub(super) fn reply_budget(limits: &ServiceLimits, received: u64) -> u64 {
    let allowance = u64::try_from(limits.udp_reply_allowance_bytes).unwrap_or(u64::MAX);
    received
        .saturating_mul(u64::from(limits.udp_reply_factor))
        .saturating_add(allowance)
}

/// The pseudo-sessions of one socket.
struct Table {
    entries: HashMap<SocketAddr, Entry>,
    rates: Rates,
    flood: UdpFlood,
    limits: Arc<ServiceLimits>,
}

impl Table {
    fn new(limits: Arc<ServiceLimits>) -> Self {
        Self {
            entries: HashMap::new(),
            rates: Rates::new(
                limits.udp_replies_per_source_per_sec,
                limits.udp_max_sessions,
            ),
            flood: UdpFlood::new(
                limits.udp_flood_max_sources,
                Duration::from_secs(limits.udp_flood_window_secs),
            ),
            limits,
        }
    }

    /// Ends pseudo-sessions idle since before `now - udp_idle_timeout`; returns how many.
    fn expire(&mut self, now: Instant) -> usize {
        let idle = self.limits.udp_idle_timeout();
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_seen) < idle);
        self.rates.sweep(now);
        before.saturating_sub(self.entries.len())
    }

    /// Whether `entry` may send `len` more bytes now; counts what it sends.
    fn allow_reply(&mut self, peer: SocketAddr, len: usize, now: Instant) -> Result<(), Refused> {
        let Some(entry) = self.entries.get_mut(&peer) else {
            return Err(Refused::Reflection);
        };
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        let total = entry.sent.saturating_add(len);
        if total > reply_budget(&self.limits, entry.received) {
            return Err(Refused::Reflection);
        }
        if !self.rates.take(entry.source, now) {
            return Err(Refused::Rate);
        }
        entry.sent = total;
        Ok(())
    }
}

/// Serves datagrams on `socket` until shutdown.
pub async fn serve(socket: UdpSocket, service: Service, handler: UdpHandler, shared: Shared) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut table = Table::new(Arc::clone(&shared.limits));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let period = shared
        .limits
        .udp_idle_timeout()
        .checked_div(2)
        .unwrap_or(Duration::ZERO)
        .clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut sweep = tokio::time::interval(period);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deferred: JoinSet<(SocketAddr, Option<Vec<u8>>)> = JoinSet::new();
    loop {
        let received = tokio::select! {
            () = shared.shutdown.cancelled() => {
                if let Some(summary) = table.flood.flush() {
                    report_flood(&summary, local, service, &shared).await;
                }
                return;
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                let ended = table.expire(now);
                add(&shared.counters.udp_expired, ended);
                if let Some(summary) = table.flood.sweep(now) {
                    report_flood(&summary, local, service, &shared).await;
                }
                continue;
            }
            Some(done) = deferred.join_next(), if !deferred.is_empty() => {
                if let Ok((peer, Some(reply))) = done {
                    send_reply(&mut table, &socket, peer, &reply, service, &shared).await;
                }
                continue;
            }
            received = pktinfo::recv(&socket, &mut buf) => received,
        };
        let (n, peer, destination) = match received {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(service = service.as_str(), error = %err, "UDP receive failed.");
                continue;
            }
        };
        let datagram = buf.get(..n).unwrap_or(&[]);
        shared
            .counters
            .udp_datagrams
            .fetch_add(1, Ordering::Relaxed);
        add(&shared.counters.udp_bytes_received, n);
        // On a wildcard socket the kernel names the address the client sent to.
        let to = SocketAddr::new(destination.unwrap_or_else(|| local.ip()), local.port());
        let later = datagram_in(
            &mut table, &socket, to, peer, datagram, service, &handler, &shared,
        )
        .await;
        if let Some(reply) = later {
            if deferred.len() >= MAX_DEFERRED {
                shared
                    .counters
                    .udp_deferred_dropped
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                deferred.spawn(async move { (peer, reply.await) });
            }
        }
    }
}

fn add(counter: &std::sync::atomic::AtomicU64, n: usize) {
    counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Handles one datagram: finds or opens the peer's pseudo-session, runs the protocol, emits its
/// events and sends the reply the rules allow; returns the reply the protocol deferred.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, the loop's own state"
)]
async fn datagram_in(
    table: &mut Table,
    socket: &UdpSocket,
    local: SocketAddr,
    peer: SocketAddr,
    datagram: &[u8],
    service: Service,
    handler: &UdpHandler,
    shared: &Shared,
) -> Option<Deferred> {
    let now = Instant::now();
    if !table.entries.contains_key(&peer) {
        if table.entries.len() >= table.limits.udp_max_sessions {
            let ended = table.expire(now);
            add(&shared.counters.udp_expired, ended);
        }
        if table.entries.len() >= table.limits.udp_max_sessions {
            shared
                .counters
                .udp_table_full
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let src_ip = crate::event::display_ip(peer.ip());
        let permit = shared.admit(src_ip)?;
        let whitelisted = shared.is_whitelisted(src_ip);
        let folded = if whitelisted {
            shared.counters.whitelisted.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            let (reported, closed) = table.flood.admit(shared.gate.source_of(src_ip), now);
            if let Some(summary) = closed {
                report_flood(&summary, local, service, shared).await;
            }
            !reported
        };
        let silent = whitelisted || folded;
        shared.counters.udp_sessions.fetch_add(1, Ordering::Relaxed);
        let identity = SessionIdentity::between(peer, local);
        let mut session = Session::new(
            identity,
            service,
            shared.sink.best_effort(),
            Arc::clone(&shared.limits),
            Arc::clone(&shared.counters),
            silent,
        );
        session.handshake_done();
        session.connection().await;
        table.entries.insert(
            peer,
            Entry {
                session,
                state: handler(),
                _permit: permit,
                source: shared.gate.source_of(src_ip),
                last_seen: now,
                received: 0,
                sent: 0,
                datagrams: 0,
                folded,
            },
        );
    }
    let entry = table.entries.get_mut(&peer)?;
    entry.last_seen = now;
    entry.received = entry
        .received
        .saturating_add(u64::try_from(datagram.len()).unwrap_or(u64::MAX));
    entry.datagrams = entry.datagrams.saturating_add(1);
    let mut exchange = Exchange::to(local);
    let reply = entry.state.handle(datagram, &mut exchange);
    if entry.folded {
        // Its first datagram also stood for `<service>.connection`.
        let events = exchange
            .events
            .len()
            .saturating_add(usize::from(entry.datagrams == 1));
        let total = entry.datagrams;
        table.flood.fold(peer.ip(), datagram.len(), total, events);
    } else {
        for (action, data, extra) in exchange.events {
            entry.session.emit(action, &data, extra).await;
        }
    }
    if exchange.deferred.is_none()
        && let Some(reply) = reply
    {
        send_reply(table, socket, peer, &reply, service, shared).await;
    }
    if exchange.close {
        table.entries.remove(&peer);
    }
    exchange.deferred
}

/// Sends the `<service>.flood` event of a window that folded sources: from the unspecified
/// address (every summary shares one incident) to the socket's address.
pub(super) async fn report_flood(
    summary: &UdpFloodSummary,
    local: SocketAddr,
    service: Service,
    shared: &Shared,
) {
    tracing::warn!(
        service = service.as_str(),
        port = local.port(),
        sources = summary.sources,
        datagrams = summary.datagrams,
        "UDP flood: new sources beyond the bound were folded into one summary event."
    );
    shared.emit_flood(service, local, summary.extra()).await;
}

/// Sends `reply` to `peer` if its pseudo-session's reflection budget and its source's rate
/// allow it; counts the outcome.
async fn send_reply(
    table: &mut Table,
    socket: &UdpSocket,
    peer: SocketAddr,
    reply: &[u8],
    service: Service,
    shared: &Shared,
) {
    match table.allow_reply(peer, reply.len(), Instant::now()) {
        Ok(()) => match socket.send_to(reply, peer).await {
            Ok(_) => {
                shared.counters.udp_replies.fetch_add(1, Ordering::Relaxed);
                add(&shared.counters.udp_bytes_replied, reply.len());
            }
            Err(err) => {
                shared
                    .counters
                    .udp_send_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(service = service.as_str(), %peer, error = %err, "UDP send failed.");
            }
        },
        Err(Refused::Reflection) => {
            shared
                .counters
                .udp_refused_reflection
                .fetch_add(1, Ordering::Relaxed);
        }
        Err(Refused::Rate) => {
            shared
                .counters
                .udp_refused_rate
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
