//! Alert-flood control for TCP decoys. A TCP source cannot be forged, but an attacker with a
//! botnet, or a worm spreading through the company network, connects from thousands of real
//! addresses, and each connection would give its own events and its own incident. Per listener
//! and window of `tcp_flood_window_secs`, the connections of the first `tcp_flood_max_sources`
//! sources (`sensor.source_prefix`) are reported as usual, however many connections each makes;
//! connections of further sources are served the same (the decoy looks no different to them)
//! but *folded*: their events are not sent one by one, and one `tcp.flood` event at the end of
//! the window (source `0.0.0.0` or `::`, so every summary shares one incident) carries the
//! counts of everything folded: sources, connections, events not sent and the logins among
//! them, the top sources by connections, a sample, and for the any-port catch-all the
//! destination ports. A window thus yields at most `tcp_flood_max_sources` reported sources
//! plus one summary per listener, and nothing is lost silently.
//!
//! The state is a few counters and a per-source table of at most [`TRACKED_SOURCES`] folded
//! sources per window; connections from sources past that are still counted
//! (`connections_untracked`), only not attributed.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::{
    event::{Action, Service},
    net::SourceKey,
};

/// Sources listed in `top_sources`.
pub const TOP_SOURCES: usize = 5;
/// Sources listed in `sample`.
pub const SAMPLE_SOURCES: usize = 5;
/// Destination ports listed in `ports` (any-port catch-all only).
pub const PORTS_LISTED: usize = 32;
/// Folded sources a window attributes connections to.
pub const TRACKED_SOURCES: usize = 16_384;

/// What a window folded, reported by its `tcp.flood` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpFloodSummary {
    /// The listener's service (`tcp` for the any-port catch-all).
    pub service: Service,
    /// Where the window's first folded connection went (the summary's `dst_ip`/`dst_port`).
    pub destination: SocketAddr,
    /// Distinct folded sources (addresses) attributed, at most [`TRACKED_SOURCES`].
    pub sources: u64,
    /// Folded connections.
    pub connections: u64,
    /// Folded connections from sources past [`TRACKED_SOURCES`] (in `connections` too).
    pub untracked: u64,
    /// Events they would have emitted.
    pub events: u64,
    /// Of those, logins (captured credentials not sent one by one).
    pub logins: u64,
    /// Sources of the window reported one by one before the bound was reached.
    pub reported: u64,
    /// The folded sources with the most connections, most first (ties: lower address first).
    pub top_sources: Vec<(IpAddr, u64)>,
    /// The first folded sources.
    pub sample: Vec<IpAddr>,
    /// The window's length.
    pub window: Duration,
    /// Destination ports of the folded connections, lowest first, up to [`PORTS_LISTED`]
    /// (any-port catch-all only).
    pub ports: BTreeSet<u16>,
    /// How many distinct destination ports (any-port catch-all only; 0 otherwise).
    pub ports_count: u64,
}

impl TcpFloodSummary {
    /// The `extra` of the `tcp.flood` event.
    #[must_use]
    pub fn extra(&self) -> Map<String, Value> {
        let mut extra = Map::new();
        extra.insert("service".to_owned(), self.service.as_str().into());
        extra.insert("sources".to_owned(), self.sources.into());
        extra.insert("connections".to_owned(), self.connections.into());
        if self.untracked > 0 {
            extra.insert("connections_untracked".to_owned(), self.untracked.into());
        }
        extra.insert("events_folded".to_owned(), self.events.into());
        extra.insert("logins_folded".to_owned(), self.logins.into());
        extra.insert("reported_sources".to_owned(), self.reported.into());
        extra.insert("window_secs".to_owned(), self.window.as_secs().into());
        super::summary::lists(
            &mut extra,
            "connections",
            &self.top_sources,
            &self.sample,
            &self.ports,
            self.ports_count,
        );
        extra
    }
}

/// One window's state.
#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    /// The window's reported sources (at most `max_sources`).
    reported: HashSet<SourceKey>,
    /// Folded connections per folded address (at most [`TRACKED_SOURCES`]).
    per_source: HashMap<IpAddr, u64>,
    /// Every destination port folded this window (any-port catch-all).
    ports: HashSet<u16>,
    folded: Option<TcpFloodSummary>,
}

/// The flood control of one listener, shared by its accept loop and its folded sessions.
#[derive(Debug)]
pub struct TcpFlood {
    service: Service,
    max_sources: u64,
    window: Duration,
    /// The catch-all: folded destination ports are listed.
    any_port: bool,
    state: Mutex<Window>,
}

impl TcpFlood {
    /// At most `max_sources` sources of `service`'s listener reported per `window`;
    /// `any_port` for the catch-all, whose summaries list destination ports.
    #[must_use]
    pub fn new(service: Service, max_sources: u64, window: Duration, any_port: bool) -> Self {
        Self {
            service,
            max_sources,
            window: window.max(Duration::from_millis(1)),
            any_port,
            state: Mutex::new(Window::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // Every update leaves the window whole: a panic elsewhere cannot tear it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection from `ip` (source `source`) to `local` was accepted at `now`: whether it is
    /// reported (`true`: its source is one of the window's first `max_sources`) or folded. A
    /// window that ended is closed first; its summary, if any, is returned.
    pub fn admit(
        &self,
        source: SourceKey,
        ip: IpAddr,
        local: SocketAddr,
        now: Instant,
    ) -> (bool, Option<TcpFloodSummary>) {
        let port = local.port();
        let closed = self.sweep(now);
        let mut w = self.lock();
        w.start.get_or_insert(now);
        if w.reported.contains(&source) {
            return (true, closed);
        }
        let reported = u64::try_from(w.reported.len()).unwrap_or(u64::MAX);
        if reported < self.max_sources {
            w.reported.insert(source);
            return (true, closed);
        }
        let fresh_port = self.any_port && w.ports.insert(port);
        let tracked = w.per_source.len();
        let new_source = !w.per_source.contains_key(&ip);
        let count = if new_source && tracked >= TRACKED_SOURCES {
            None
        } else {
            let n = w.per_source.entry(ip).or_insert(0);
            *n = n.saturating_add(1);
            Some(*n)
        };
        let (service, window) = (self.service, self.window);
        let s = w.folded.get_or_insert_with(|| TcpFloodSummary {
            service,
            destination: local,
            sources: 0,
            connections: 0,
            untracked: 0,
            events: 0,
            logins: 0,
            reported: 0,
            top_sources: Vec::new(),
            sample: Vec::new(),
            window,
            ports: BTreeSet::new(),
            ports_count: 0,
        });
        s.reported = reported;
        s.connections = s.connections.saturating_add(1);
        match count {
            None => s.untracked = s.untracked.saturating_add(1),
            Some(n) => {
                if n == 1 {
                    s.sources = s.sources.saturating_add(1);
                    if s.sample.len() < SAMPLE_SOURCES {
                        s.sample.push(ip);
                    }
                }
                rank(&mut s.top_sources, ip, n);
            }
        }
        if fresh_port {
            s.ports_count = s.ports_count.saturating_add(1);
            s.ports.insert(port);
            while s.ports.len() > PORTS_LISTED {
                s.ports.pop_last();
            }
        }
        (false, closed)
    }

    /// A folded session would have emitted an event of `action`.
    pub fn fold_event(&self, action: Action) {
        let mut w = self.lock();
        if let Some(s) = w.folded.as_mut() {
            s.events = s.events.saturating_add(1);
            if action == Action::Login {
                s.logins = s.logins.saturating_add(1);
            }
        }
    }

    /// Closes the window if it ended at `now`; returns its summary when it folded anything.
    pub fn sweep(&self, now: Instant) -> Option<TcpFloodSummary> {
        let mut w = self.lock();
        let start = w.start?;
        if now.saturating_duration_since(start) < self.window {
            return None;
        }
        Self::close(&mut w)
    }

    /// Closes the window now (shutdown); its summary when it folded anything.
    pub fn flush(&self) -> Option<TcpFloodSummary> {
        Self::close(&mut self.lock())
    }

    fn close(w: &mut Window) -> Option<TcpFloodSummary> {
        let folded = w.folded.take();
        *w = Window::default();
        folded
    }
}

/// Moves `ip` to its place for `n` connections in a most-first list of [`TOP_SOURCES`]
/// (ties: the lower address first, so the list does not depend on arrival order).
fn rank(top: &mut Vec<(IpAddr, u64)>, ip: IpAddr, n: u64) {
    top.retain(|(seen, _)| *seen != ip);
    let at = top
        .iter()
        .position(|(other, m)| *m < n || (*m == n && ip < *other))
        .unwrap_or(top.len());
    if at < TOP_SOURCES {
        top.insert(at, (ip, n));
        top.truncate(TOP_SOURCES);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;

    fn ip(n: u16) -> IpAddr {
        let [hi, lo] = n.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(24, 0, hi, lo))
    }

    fn key(n: u16) -> SourceKey {
        crate::net::SourcePrefix::default().key(ip(n))
    }

    fn to(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port)
    }

    fn flood(max: u64, any_port: bool) -> TcpFlood {
        TcpFlood::new(Service::Ssh, max, Duration::from_secs(60), any_port)
    }

    #[test]
    fn the_first_sources_are_reported_and_the_rest_folded_with_exact_counts() {
        let t0 = Instant::now();
        let g = flood(3, false);
        let mut reported = 0;
        for n in 0..10u16 {
            // Source n makes n+1 connections, each with a connection and a login event.
            for _ in 0..=n {
                let (report, closed) = g.admit(key(n), ip(n), to(22), t0);
                assert!(closed.is_none());
                if report {
                    reported += 1;
                } else {
                    g.fold_event(Action::Connection);
                    g.fold_event(Action::Login);
                }
            }
        }
        // Sources 0, 1, 2 reported: 1+2+3 connections.
        assert_eq!(reported, 6);
        assert!(g.sweep(t0 + Duration::from_secs(59)).is_none());
        let s = g.sweep(t0 + Duration::from_secs(60)).expect("a summary");
        // Sources 3..=9 folded: 4+5+...+10 = 49 connections.
        assert_eq!((s.sources, s.connections, s.untracked), (7, 49, 0));
        assert_eq!(s.destination, to(22));
        assert_eq!((s.events, s.logins, s.reported), (98, 49, 3));
        assert_eq!(
            s.top_sources,
            vec![(ip(9), 10), (ip(8), 9), (ip(7), 8), (ip(6), 7), (ip(5), 6)]
        );
        assert_eq!(s.sample, vec![ip(3), ip(4), ip(5), ip(6), ip(7)]);
        let extra = s.extra();
        assert_eq!(extra["service"], "ssh");
        assert_eq!(extra["logins_folded"], 49);
        assert_eq!(
            extra["top_sources"][0],
            json!({"ip": "24.0.0.9", "connections": 10})
        );
        assert!(!extra.contains_key("ports") && !extra.contains_key("connections_untracked"));
        // The next window starts afresh.
        assert!(
            g.admit(key(20), ip(20), to(22), t0 + Duration::from_secs(61))
                .0
        );
        assert!(g.flush().is_none());
    }

    #[test]
    fn a_reported_source_stays_reported_and_events_outside_a_fold_are_not_counted() {
        let t0 = Instant::now();
        let g = flood(1, false);
        g.fold_event(Action::Login);
        for _ in 0..100 {
            assert!(g.admit(key(1), ip(1), to(22), t0).0);
        }
        assert!(!g.admit(key(2), ip(2), to(22), t0).0);
        assert!(g.admit(key(1), ip(1), to(22), t0).0);
        let s = g.flush().expect("a summary");
        assert_eq!(
            (s.sources, s.connections, s.events, s.reported),
            (1, 1, 0, 1)
        );
    }

    #[test]
    fn sources_past_the_table_are_counted_untracked_and_ports_listed_for_the_catch_all() {
        let t0 = Instant::now();
        let g = flood(0, true);
        let total = u16::try_from(TRACKED_SOURCES).unwrap() + 10;
        for n in 0..total {
            assert!(!g.admit(key(n), ip(n), to(1000 + (n % 50)), t0).0);
        }
        // A tracked source still counts its own connections.
        assert!(!g.admit(key(0), ip(0), to(1000), t0).0);
        let s = g.flush().expect("a summary");
        assert_eq!(s.sources, u64::try_from(TRACKED_SOURCES).unwrap());
        assert_eq!(s.untracked, 10);
        assert_eq!(s.connections, u64::from(total) + 1);
        assert_eq!(s.top_sources.first(), Some(&(ip(0), 2)));
        assert_eq!(s.ports_count, 50);
        assert_eq!(
            s.ports.iter().copied().collect::<Vec<_>>(),
            (1000..1032).collect::<Vec<u16>>()
        );
        let extra = s.extra();
        assert_eq!(extra["connections_untracked"], 10);
        assert_eq!(extra["ports_count"], 50);
    }

    #[test]
    fn a_quiet_window_gives_no_summary_and_a_new_connection_closes_a_busy_one() {
        let t0 = Instant::now();
        let g = flood(1, false);
        assert!(g.admit(key(1), ip(1), to(22), t0).0);
        assert!(g.sweep(t0 + Duration::from_secs(60)).is_none());
        assert!(
            g.admit(key(2), ip(2), to(22), t0 + Duration::from_secs(61))
                .0
        );
        assert!(
            !g.admit(key(3), ip(3), to(22), t0 + Duration::from_secs(62))
                .0
        );
        let (report, closed) = g.admit(key(4), ip(4), to(22), t0 + Duration::from_secs(130));
        assert!(report, "a new window reports again");
        assert_eq!(closed.map(|s| (s.sources, s.reported)), Some((1, 1)));
    }
}
