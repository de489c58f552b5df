//! Admission of connections: a global and a per-source cap on concurrent connections (TCP
//! connections and UDP pseudo-sessions alike), shared by every service. A source is what
//! `sensor.source_prefix` says ([`SourcePrefix::key`]: one IPv4 address, one IPv6 /64 by
//! default), so an attacker holding a /64 gets one source's share, not 2^64 of them. A
//! connection over either cap is closed at once and counted; an admitted one holds a [`Permit`]
//! that gives its place back when dropped.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use serde_json::{Value, json};

use crate::net::{SourceKey, SourcePrefix};

/// Counters of the service framework.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Connections admitted.
    pub accepted: AtomicU64,
    /// Closed at once: the global cap was reached.
    pub rejected_global: AtomicU64,
    /// Closed at once: the source's cap was reached.
    pub rejected_source: AtomicU64,
    /// Closed at once: the source is in `whitelist_ips`.
    pub whitelisted: AtomicU64,
    /// Sessions ended by a handshake, idle or session timeout.
    pub timeouts: AtomicU64,
    /// Sessions ended because the client broke a limit or the protocol.
    pub protocol_errors: AtomicU64,
    /// Events not delivered because the pipeline had shut down.
    pub events_lost: AtomicU64,
    /// Events dropped because their session reached `max_events_per_session`.
    pub events_suppressed: AtomicU64,
    /// UDP datagrams received.
    pub udp_datagrams: AtomicU64,
    /// UDP pseudo-sessions opened.
    pub udp_sessions: AtomicU64,
    /// UDP pseudo-sessions ended by their idle timeout.
    pub udp_expired: AtomicU64,
    /// UDP datagrams dropped because their socket's table held `udp_max_sessions`.
    pub udp_table_full: AtomicU64,
    /// UDP replies sent.
    pub udp_replies: AtomicU64,
    /// UDP replies refused: they would have sent more than the reflection budget.
    pub udp_refused_reflection: AtomicU64,
    /// UDP replies refused: the source was over `udp_replies_per_source_per_sec`.
    pub udp_refused_rate: AtomicU64,
    /// UDP replies a protocol deferred (a forwarded DNS query) that were dropped because the
    /// socket already waited for `udp::MAX_DEFERRED` of them.
    pub udp_deferred_dropped: AtomicU64,
    /// UDP payload bytes received (every datagram counted in `udp_datagrams`).
    pub udp_bytes_received: AtomicU64,
    /// UDP payload bytes sent in replies (every reply counted in `udp_replies`).
    pub udp_bytes_replied: AtomicU64,
    /// UDP replies allowed but not sent: the socket refused them.
    pub udp_send_failed: AtomicU64,
    /// Connections the any-port decoys accepted (each also counted in `accepted`).
    pub decoy_connections: AtomicU64,
    /// Any-port decoy connections no service took (unknown bytes, a client gone, no banner
    /// service): they got `tcp.connection` only.
    pub decoys_unclaimed: AtomicU64,
    /// UDP pseudo-sessions the any-port decoys opened (each also counted in `udp_sessions`).
    pub decoy_udp_sessions: AtomicU64,
    /// Any-port decoy pseudo-sessions no service took: they got `udp.connection` only.
    pub decoy_udp_unclaimed: AtomicU64,
    /// Events a TCP session answered without their confirmation from the spooled outputs (not
    /// on disk within `output::durable::WAIT`, or too many waiting).
    pub events_unconfirmed: AtomicU64,
    /// TCP connections folded by alert-flood control (their source was past
    /// `tcp_flood_max_sources` in the window): served, summarised in `tcp.flood`.
    pub tcp_folded: AtomicU64,
    /// `tcp.flood` summaries sent.
    pub tcp_flood_summaries: AtomicU64,
}

impl ServiceCounters {
    /// As JSON, for the stats file.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "accepted": get(&self.accepted),
            "rejected_global": get(&self.rejected_global),
            "rejected_source": get(&self.rejected_source),
            "whitelisted": get(&self.whitelisted),
            "timeouts": get(&self.timeouts),
            "protocol_errors": get(&self.protocol_errors),
            "events_lost": get(&self.events_lost),
            "events_suppressed": get(&self.events_suppressed),
            "udp_datagrams": get(&self.udp_datagrams),
            "udp_sessions": get(&self.udp_sessions),
            "udp_expired": get(&self.udp_expired),
            "udp_table_full": get(&self.udp_table_full),
            "udp_replies": get(&self.udp_replies),
            "udp_refused_reflection": get(&self.udp_refused_reflection),
            "udp_refused_rate": get(&self.udp_refused_rate),
            "udp_deferred_dropped": get(&self.udp_deferred_dropped),
            "udp_bytes_received": get(&self.udp_bytes_received),
            "udp_bytes_replied": get(&self.udp_bytes_replied),
            "udp_send_failed": get(&self.udp_send_failed),
            "decoy_connections": get(&self.decoy_connections),
            "decoys_unclaimed": get(&self.decoys_unclaimed),
            "decoy_udp_sessions": get(&self.decoy_udp_sessions),
            "decoy_udp_unclaimed": get(&self.decoy_udp_unclaimed),
            "events_unconfirmed": get(&self.events_unconfirmed),
            "tcp_folded": get(&self.tcp_folded),
            "tcp_flood_summaries": get(&self.tcp_flood_summaries),
        })
    }
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_source: HashMap<SourceKey, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// All services together hold `max_connections`.
    Global,
    /// The source (its prefix) holds `max_connections_per_source`.
    Source,
}

/// The admission gate.
#[derive(Debug)]
pub struct Gate {
    max_total: usize,
    max_per_source: usize,
    prefix: SourcePrefix,
    state: Mutex<State>,
}

impl Gate {
    /// A gate with the given caps, counting sources as `prefix` says.
    #[must_use]
    pub fn new(max_total: usize, max_per_source: usize, prefix: SourcePrefix) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_source,
            prefix,
            state: Mutex::new(State::default()),
        })
    }

    /// The source `ip` counts as.
    #[must_use]
    pub fn source_of(&self, ip: IpAddr) -> SourceKey {
        self.prefix.key(ip)
    }

    /// Admits a connection from `ip`, or says why not.
    ///
    /// # Errors
    /// The [`Refusal`] when a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let source = self.prefix.key(ip);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.total >= self.max_total {
            return Err(Refusal::Global);
        }
        let count = state.per_source.entry(source).or_insert(0);
        if *count >= self.max_per_source {
            return Err(Refusal::Source);
        }
        *count = count.saturating_add(1);
        state.total = state.total.saturating_add(1);
        Ok(Permit {
            gate: Arc::clone(self),
            source,
        })
    }

    /// Connections held now.
    #[must_use]
    pub fn open(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// A place held by one connection.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    source: SourceKey,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self
            .gate
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.total = state.total.saturating_sub(1);
        if let Some(count) = state.per_source.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{Gate, Refusal};
    use crate::net::SourcePrefix;

    #[test]
    fn caps_per_source_and_globally_and_gives_places_back() {
        let gate = Gate::new(3, 2, SourcePrefix::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), Refusal::Source);
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).unwrap_err(), Refusal::Global);
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _b2 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).unwrap_err(), Refusal::Global);
    }

    #[test]
    fn addresses_of_one_ipv6_slash_64_share_one_source_cap() {
        let gate = Gate::new(100, 3, SourcePrefix::default());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let held: Vec<_> = [
            "2001:db8:7:1::1",
            "2001:db8:7:1::2",
            "2001:db8:7:1:ffff:ffff:ffff:ffff",
        ]
        .iter()
        .map(|a| gate.admit(ip(a)).unwrap())
        .collect();
        // A fourth address of the same /64 is the same source, over its cap.
        assert_eq!(
            gate.admit(ip("2001:db8:7:1:abcd::9")).unwrap_err(),
            Refusal::Source
        );
        // The next /64 is another source.
        let other = gate.admit(ip("2001:db8:7:2::1")).unwrap();
        assert_eq!(gate.open(), 4);
        // IPv4 addresses stay their own sources, also when a dual-stack socket maps them.
        let _v4 = gate.admit(ip("198.18.0.1")).unwrap();
        let _v4b = gate.admit(ip("198.18.0.2")).unwrap();
        let _mapped = gate.admit(ip("::ffff:198.18.0.1")).unwrap();
        let _mapped2 = gate.admit(ip("::ffff:198.18.0.1")).unwrap();
        assert_eq!(
            gate.admit(ip("198.18.0.1")).unwrap_err(),
            Refusal::Source,
            "198.18.0.1 and ::ffff:198.18.0.1 are one source"
        );
        // One place given back by the /64 lets exactly one more of its addresses in.
        drop(held);
        drop(other);
        let again: Vec<_> = (1..=3)
            .map(|i| gate.admit(ip(&format!("2001:db8:7:1::{i}:1"))).unwrap())
            .collect();
        assert_eq!(
            gate.admit(ip("2001:db8:7:1::99")).unwrap_err(),
            Refusal::Source
        );
        assert_eq!(again.len(), 3);
        assert_eq!(gate.open(), 7);
    }

    #[test]
    fn a_wider_configured_prefix_groups_ipv4_addresses() {
        let gate = Gate::new(100, 2, SourcePrefix { ipv4: 24, ipv6: 64 });
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = gate.admit(ip("192.0.2.1")).unwrap();
        let _b = gate.admit(ip("192.0.2.200")).unwrap();
        assert_eq!(gate.admit(ip("192.0.2.7")).unwrap_err(), Refusal::Source);
        let _c = gate.admit(ip("192.0.3.1")).unwrap();
    }
}
