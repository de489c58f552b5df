//! Alert-flood control for UDP decoys: a spoofed-source flood opens one pseudo-session per
//! forged address, and each would give its own events and its own incident. Per socket and
//! window of `udp_flood_window_secs`, the pseudo-sessions of the first `udp_flood_max_sources`
//! sources (`sensor.source_prefix`) are reported as usual, however many ports each uses (a
//! resolver asking from a fresh port per query stays one source); the pseudo-sessions of
//! further sources are served the same (replies under the same
//! reflection rules) but *folded*: their events are not sent one by one, and one
//! `<service>.flood` event at the end of the window (source `0.0.0.0` or `::`, so every
//! summary shares one incident) carries the counts of everything folded (sources, datagrams,
//! bytes, events not sent, the top sources by datagrams and a sample). A window thus yields at
//! most `udp_flood_max_sources` reported sources plus one summary, and nothing is lost
//! silently.
//!
//! Pure: time is an input. The state is a few counters and two short lists.

use std::{collections::HashSet, net::IpAddr, time::Duration};

use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::net::SourceKey;

/// Sources listed in `top_sources`.
pub const TOP_SOURCES: usize = 5;
/// Sources listed in `sample`.
pub const SAMPLE_SOURCES: usize = 5;
/// Destination ports listed in `ports` (any-port decoys; `ports_count` counts them all).
pub const PORTS_LISTED: usize = 32;

/// What a window folded, reported by its `<service>.flood` event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpFloodSummary {
    /// Pseudo-sessions folded (one per new source address and port).
    pub sources: u64,
    /// Their datagrams.
    pub datagrams: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Events they would have emitted.
    pub events: u64,
    /// Sources of the window reported one by one before the bound was reached.
    pub reported: u64,
    /// The folded sources with the most datagrams, most first (ties: first seen first).
    pub top_sources: Vec<(IpAddr, u64)>,
    /// The first folded sources.
    pub sample: Vec<IpAddr>,
    /// The window's length.
    pub window: Duration,
    /// Destination ports the folded pseudo-sessions went to, lowest first, up to
    /// [`PORTS_LISTED`] (any-port decoys only: a service socket has one port).
    pub ports: std::collections::BTreeSet<u16>,
    /// How many distinct destination ports they went to (any-port decoys only).
    pub ports_count: u64,
}

impl UdpFloodSummary {
    /// The `extra` of the `<service>.flood` event.
    #[must_use]
    pub fn extra(&self) -> Map<String, Value> {
        let mut extra = Map::new();
        extra.insert("sources".to_owned(), self.sources.into());
        extra.insert("datagrams".to_owned(), self.datagrams.into());
        extra.insert("bytes".to_owned(), self.bytes.into());
        extra.insert("events_folded".to_owned(), self.events.into());
        extra.insert("reported_sources".to_owned(), self.reported.into());
        extra.insert("window_secs".to_owned(), self.window.as_secs().into());
        super::summary::lists(
            &mut extra,
            "datagrams",
            &self.top_sources,
            &self.sample,
            &self.ports,
            self.ports_count,
        );
        extra
    }
}

/// The flood control of one socket. See the module documentation.
#[derive(Debug)]
pub struct UdpFlood {
    max_sources: u64,
    window: Duration,
    start: Option<Instant>,
    /// The window's reported sources (at most `max_sources`).
    reported: HashSet<SourceKey>,
    /// Every destination port folded this window (bounded by the 65,536 ports).
    ports: HashSet<u16>,
    folded: Option<UdpFloodSummary>,
}

impl UdpFlood {
    /// At most `max_sources` sources reported per `window`.
    #[must_use]
    pub fn new(max_sources: u64, window: Duration) -> Self {
        Self {
            max_sources,
            window: window.max(Duration::from_millis(1)),
            start: None,
            reported: HashSet::new(),
            ports: HashSet::new(),
            folded: None,
        }
    }

    /// A new pseudo-session of `source` opens at `now`: whether it is reported (`true`: its
    /// source is one of the window's first `max_sources`) or folded. A window that ended is
    /// closed first; its summary, if any, is returned.
    pub fn admit(&mut self, source: SourceKey, now: Instant) -> (bool, Option<UdpFloodSummary>) {
        let closed = self.sweep(now);
        self.start.get_or_insert(now);
        if self.reported.contains(&source) {
            return (true, closed);
        }
        let count = u64::try_from(self.reported.len()).unwrap_or(u64::MAX);
        if count < self.max_sources {
            self.reported.insert(source);
            return (true, closed);
        }
        let reported = count;
        let window = self.window;
        let s = self.folded.get_or_insert_with(|| UdpFloodSummary {
            window,
            ..UdpFloodSummary::default()
        });
        s.sources = s.sources.saturating_add(1);
        s.reported = reported;
        (false, closed)
    }

    /// A folded pseudo-session from `ip` got a datagram of `bytes` (its `total` so far) that
    /// made `events` events.
    pub fn fold(&mut self, ip: IpAddr, bytes: usize, total: u64, events: usize) {
        let Some(s) = self.folded.as_mut() else {
            return;
        };
        s.datagrams = s.datagrams.saturating_add(1);
        s.bytes = s
            .bytes
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
        s.events = s
            .events
            .saturating_add(u64::try_from(events).unwrap_or(u64::MAX));
        if total == 1 && s.sample.len() < SAMPLE_SOURCES && !s.sample.contains(&ip) {
            s.sample.push(ip);
        }
        // Top sources: this source's entry moves up to its new count (stable among equals).
        s.top_sources.retain(|(seen, _)| *seen != ip);
        let at = s
            .top_sources
            .iter()
            .position(|(_, n)| *n < total)
            .unwrap_or(s.top_sources.len());
        if at < TOP_SOURCES {
            s.top_sources.insert(at, (ip, total));
            s.top_sources.truncate(TOP_SOURCES);
        }
    }

    /// A folded pseudo-session went to destination `port` (any-port decoys).
    pub fn fold_port(&mut self, port: u16) {
        let Some(s) = self.folded.as_mut() else {
            return;
        };
        if self.ports.insert(port) {
            s.ports_count = s.ports_count.saturating_add(1);
            s.ports.insert(port);
            while s.ports.len() > PORTS_LISTED {
                s.ports.pop_last();
            }
        }
    }

    /// Closes the window if it ended at `now`; returns its summary when it folded anything.
    pub fn sweep(&mut self, now: Instant) -> Option<UdpFloodSummary> {
        let start = self.start?;
        if now.saturating_duration_since(start) < self.window {
            return None;
        }
        self.start = None;
        self.reported.clear();
        self.ports.clear();
        self.folded.take()
    }

    /// Closes the window now (shutdown); its summary when it folded anything.
    pub fn flush(&mut self) -> Option<UdpFloodSummary> {
        self.start = None;
        self.reported.clear();
        self.ports.clear();
        self.folded.take()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(24, 0, 0, n))
    }

    fn key(n: u8) -> SourceKey {
        crate::net::SourcePrefix::default().key(ip(n))
    }

    #[test]
    fn many_ports_of_one_reported_source_stay_reported() {
        let t0 = Instant::now();
        let mut g = UdpFlood::new(2, Duration::from_secs(60));
        // A resolver asking from a fresh port each time: 100 pseudo-sessions, one source.
        for _ in 0..100 {
            assert!(g.admit(key(1), t0).0);
        }
        assert!(g.admit(key(2), t0).0);
        assert!(!g.admit(key(3), t0).0, "a third source is past the bound");
        assert!(g.admit(key(1), t0).0, "a reported source stays reported");
        assert_eq!(g.flush().map(|s| (s.sources, s.reported)), Some((1, 2)));
    }

    #[test]
    fn a_window_reports_its_first_sources_and_folds_the_rest_with_counts() {
        let t0 = Instant::now();
        let window = Duration::from_secs(60);
        let mut g = UdpFlood::new(3, window);
        let mut reported = 0;
        for n in 0..10u8 {
            let (report, closed) = g.admit(key(n), t0 + Duration::from_millis(u64::from(n)));
            assert!(closed.is_none());
            if report {
                reported += 1;
            } else {
                // Source n sends n+1 datagrams of 10 bytes, one event each.
                for k in 1..=u64::from(n) + 1 {
                    g.fold(ip(n), 10, k, 1);
                }
            }
        }
        assert_eq!(reported, 3);
        assert!(g.sweep(t0 + Duration::from_secs(59)).is_none());
        let s = g.sweep(t0 + window).expect("a summary");
        // Sources 3..=9 folded: 4+5+...+10 = 49 datagrams.
        assert_eq!(s.sources, 7);
        assert_eq!(s.datagrams, 49);
        assert_eq!(s.bytes, 490);
        assert_eq!(s.events, 49);
        assert_eq!(s.reported, 3);
        assert_eq!(
            s.top_sources,
            vec![(ip(9), 10), (ip(8), 9), (ip(7), 8), (ip(6), 7), (ip(5), 6)]
        );
        assert_eq!(s.sample, vec![ip(3), ip(4), ip(5), ip(6), ip(7)]);
        let extra = s.extra();
        assert_eq!(extra["sources"], 7);
        assert_eq!(extra["window_secs"], 60);
        assert_eq!(
            extra["top_sources"][0],
            json!({"ip": "24.0.0.9", "datagrams": 10})
        );
        // The next window starts afresh.
        let (report, closed) = g.admit(key(20), t0 + window + Duration::from_secs(1));
        assert!(report);
        assert!(closed.is_none());
    }

    #[test]
    fn a_quiet_window_gives_no_summary_and_the_next_new_source_closes_a_busy_one() {
        let t0 = Instant::now();
        let mut g = UdpFlood::new(1, Duration::from_secs(10));
        assert!(g.admit(key(1), t0).0);
        assert!(g.sweep(t0 + Duration::from_secs(10)).is_none());
        assert!(g.admit(key(2), t0 + Duration::from_secs(11)).0);
        assert!(!g.admit(key(1), t0 + Duration::from_secs(12)).0);
        g.fold(ip(1), 5, 1, 2);
        let (report, closed) = g.admit(key(3), t0 + Duration::from_secs(21));
        assert!(report, "a new window reports again");
        let s = closed.expect("the busy window's summary");
        assert_eq!((s.sources, s.datagrams, s.events, s.reported), (1, 1, 2, 1));
        assert!(g.flush().is_none());
    }

    #[test]
    fn folded_ports_are_counted_and_the_lowest_listed() {
        let t0 = Instant::now();
        let mut g = UdpFlood::new(0, Duration::from_secs(10));
        g.fold_port(7);
        assert!(!g.admit(key(1), t0).0);
        for port in (1..=100u16).rev().chain([5, 5, 9]) {
            g.fold_port(port);
        }
        let s = g.flush().expect("a summary");
        assert_eq!(s.ports_count, 100);
        assert_eq!(
            s.ports.iter().copied().collect::<Vec<_>>(),
            (1..=32).collect::<Vec<u16>>()
        );
        let extra = s.extra();
        assert_eq!(extra["ports_count"], 100);
        assert_eq!(extra["ports"][0], 1);
        // A service socket's summary has no port keys.
        let mut g = UdpFlood::new(0, Duration::from_secs(10));
        assert!(!g.admit(key(1), t0).0);
        g.fold(ip(1), 1, 1, 1);
        let extra = g.flush().expect("a summary").extra();
        assert!(!extra.contains_key("ports") && !extra.contains_key("ports_count"));
    }

    #[test]
    fn flush_returns_what_is_folded() {
        let t0 = Instant::now();
        let mut g = UdpFlood::new(0, Duration::from_secs(10));
        assert!(!g.admit(key(2), t0).0);
        g.fold(ip(2), 1, 1, 1);
        assert_eq!(g.flush().map(|s| s.sources), Some(1));
    }
}
