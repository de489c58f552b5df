//! Folds probe observations into one report per (source, destination, protocol) scan: TCP
//! kinds together, UDP apart, ICMP host discovery apart (reported from its first request, with
//! the ICMP types seen, instead of past a port threshold).
//!
//! A source is [`SourcePrefix::key`] of the address (IPv4 /32, IPv6 /64 by default), the one
//! notion of source the kernel budget, the services and the incidents use: a sweep rotating
//! addresses inside one IPv6 /64 is one scan, reported with the first address seen.
//!
//! Pure: time is an input (monotonic nanoseconds from the records), so tests are deterministic.
//! A scan closes when it has been idle for `idle_timeout`; one still running after `max_window`
//! is reported and continues in follow-up reports (one per window). A closed scan is reported if
//! it probed at least `threshold` distinct ports (follow-ups: at least one new port). State is
//! bounded: at most `max_tracked` pairs and `max_memory_mib` of port sets; when either is
//! reached, the least recently active pair is closed first (and reported if it qualifies).

use std::{net::IpAddr, num::NonZeroUsize};

use lru::LruCache;
use sensor_common::ProbeKind;

use super::{
    PortSet,
    attribution::{OsHint, Tool, os_hint, tool},
    flood::{FloodGuard, FloodSummary},
};
use crate::{
    capture::Observation,
    net::{SourceKey, SourcePrefix},
    scan::PortscanConfig,
};

/// A scan ready to be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Scanning source.
    pub src: IpAddr,
    /// Scanned destination.
    pub dst: IpAddr,
    /// Distinct destination ports probed, ascending.
    pub ports: Vec<u16>,
    /// Probe kinds seen, in [`ProbeKind`] order.
    pub kinds: Vec<ProbeKind>,
    /// `sensor_common::protocol` of the probes (TCP, UDP or ICMP).
    pub protocol: u8,
    /// ICMP types seen, ascending (host discovery only).
    pub icmp_types: Vec<u8>,
    /// The first tool recognised in any probe of the scan, else [`Tool::Unknown`].
    pub tool: Tool,
    /// The OS hint of the scan's first probe.
    pub os: OsHint,
    /// Monotonic time of the first probe in this report, ns.
    pub first_ns: u64,
    /// Monotonic time of the last probe in this report, ns.
    pub last_ns: u64,
    /// Whether an earlier report covered the same scan (long scans).
    pub follow_up: bool,
    /// Probe records folded into this report (repeats included).
    pub probes: u64,
    /// Set on a `portscan.flood` summary of many few-port sources ([`super::flood`]); the
    /// report's `src` is then the unspecified address and `ports`/`kinds` the union.
    pub flood: Option<Box<FloodSummary>>,
}

/// What the merger did, for the agent's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergerStats {
    /// Observations folded in.
    pub observations: u64,
    /// Reports produced (first reports plus follow-ups).
    pub reports: u64,
    /// Of which follow-ups.
    pub follow_ups: u64,
    /// Pairs closed below the threshold (not scans).
    pub below_threshold: u64,
    /// Pairs closed early because `max_tracked` or `max_memory_mib` was reached.
    pub evicted: u64,
    /// Few-port reports folded into `portscan.flood` summaries instead of an event each.
    pub flood_folded: u64,
    /// `portscan.flood` summaries produced.
    pub flood_summaries: u64,
}

#[derive(Debug)]
struct Scan {
    /// First address seen from the source in this report.
    src: IpAddr,
    ports: PortSet,
    /// Bit per [`ProbeKind`] discriminant.
    kinds: u32,
    /// Bit per ICMP type seen (types above 127 as `type - 128`, ICMPv6).
    icmp_types: u128,
    tool: Tool,
    /// The OS hint of the first probe (kept across follow-ups).
    os: OsHint,
    window_start_ns: u64,
    first_ns: u64,
    last_ns: u64,
    reported: bool,
    probes: u64,
}

impl Scan {
    fn new(src: IpAddr, now: u64, os: OsHint) -> Self {
        Self {
            src,
            ports: PortSet::default(),
            kinds: 0,
            icmp_types: 0,
            tool: Tool::Unknown,
            os,
            window_start_ns: now,
            first_ns: now,
            last_ns: now,
            reported: false,
            probes: 0,
        }
    }

    /// Folds one observation's kind, port or ICMP type, and tool in. A non-zero `word` stands
    /// for the ports `obs.dst_port + b` of its set bits `b` (`obs.dst_port` a multiple of 64:
    /// an aggregated word from the kernel).
    fn add(&mut self, obs: &Observation, word: u64) {
        self.probes = self
            .probes
            .saturating_add(u64::from(word.count_ones().max(1)));
        if obs.kind == ProbeKind::Ping {
            self.icmp_types |= 1u128 << (obs.fp.icmp_type & 0x7f);
        } else if word != 0 {
            self.ports.insert_word(obs.dst_port, word);
        } else {
            self.ports.insert(obs.dst_port);
        }
        self.kinds |= 1 << (obs.kind as u32);
        if self.tool == Tool::Unknown {
            self.tool = tool(obs);
        }
    }
}

/// The merger. See the module documentation.
#[derive(Debug)]
pub struct Merger {
    threshold: usize,
    idle_ns: u64,
    window_ns: u64,
    /// Keyed by (source key, destination). foldhash: several times faster than SipHash here,
    /// and seeded per process, so spoofed sources cannot aim at one bucket chain.
    scans: LruCache<(SourceKey, IpAddr, u8), Scan, foldhash::fast::RandomState>,
    source_prefix: SourcePrefix,
    /// Heap bytes held by all port sets, kept below `max_port_bytes`.
    port_bytes: usize,
    max_port_bytes: usize,
    stats: MergerStats,
    flood: FloodGuard,
}

impl Merger {
    /// A merger with the given settings.
    #[must_use]
    pub fn new(config: &PortscanConfig) -> Self {
        let cap = NonZeroUsize::new(config.max_tracked).unwrap_or(NonZeroUsize::MIN);
        Self {
            threshold: config.threshold.max(1),
            idle_ns: u64::try_from(config.idle_timeout().as_nanos()).unwrap_or(u64::MAX),
            window_ns: u64::try_from(config.max_window().as_nanos()).unwrap_or(u64::MAX),
            scans: LruCache::with_hasher(cap, foldhash::fast::RandomState::default()),
            source_prefix: SourcePrefix::default(),
            port_bytes: 0,
            max_port_bytes: config.max_memory_mib.max(1).saturating_mul(1 << 20),
            stats: MergerStats::default(),
            flood: FloodGuard::new(
                config.flood_few_ports,
                config.flood_max_reports,
                config
                    .flood_window_secs
                    .saturating_mul(1_000_000_000)
                    .max(1),
            ),
        }
    }

    /// The same merger with sources masked to `prefix` (`sensor.source_prefix`) instead of the
    /// default IPv4 /32, IPv6 /64.
    #[must_use]
    pub const fn with_source_prefix(mut self, prefix: SourcePrefix) -> Self {
        self.source_prefix = prefix;
        self
    }

    /// Counters so far.
    #[must_use]
    pub const fn stats(&self) -> MergerStats {
        let flood = self.flood.stats();
        MergerStats {
            flood_folded: flood.folded,
            flood_summaries: flood.summaries,
            ..self.stats
        }
    }

    /// Heap bytes held by the tracked port sets.
    #[must_use]
    pub const fn port_bytes(&self) -> usize {
        self.port_bytes
    }

    /// Number of (source, destination) pairs currently tracked.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.scans.len()
    }

    /// Folds one observation in; reports that became due are appended to `out`.
    pub fn observe(&mut self, obs: &Observation, out: &mut Vec<ScanReport>) {
        let _ports = self.fold(obs, 0, out);
    }

    /// [`Self::observe`], returning how many distinct ports the observation's scan (its source
    /// by `source_prefix`, destination and protocol) holds now: what in-kernel aggregation
    /// decides on, with no state of its own.
    pub fn observe_counted(&mut self, obs: &Observation, out: &mut Vec<ScanReport>) -> usize {
        self.fold(obs, 0, out)
    }

    /// Folds in one observation per set bit `b` of `word`, of port `obs.dst_port + b`
    /// (`obs.dst_port` a multiple of 64), with one lookup: what in-kernel aggregation hands
    /// over. Counted as that many observations.
    pub fn observe_word(&mut self, obs: &Observation, word: u64, out: &mut Vec<ScanReport>) {
        if word != 0 && obs.dst_port.is_multiple_of(64) {
            let _ports = self.fold(obs, word, out);
        }
    }

    /// Folds in `obs` (or its `word`); the scan's distinct ports after it.
    fn fold(&mut self, obs: &Observation, word: u64, out: &mut Vec<ScanReport>) -> usize {
        self.stats.observations = self
            .stats
            .observations
            .saturating_add(u64::from(word.count_ones().max(1)));
        let now = obs.ts_ns;
        let key = (
            self.source_prefix.key(obs.src),
            obs.dst,
            obs.kind.protocol(),
        );
        if let Some(scan) = self.scans.get_mut(&key) {
            if now.saturating_sub(scan.last_ns) >= self.idle_ns {
                // The sweep has not run since this scan went idle: close it first.
                let old = std::mem::replace(scan, Scan::new(obs.src, now, os_hint(obs)));
                self.port_bytes = self.port_bytes.saturating_sub(old.ports.heap_bytes());
                Self::close(
                    &mut self.stats,
                    self.threshold,
                    &mut self.flood,
                    key.1,
                    old,
                    out,
                );
            } else if now.saturating_sub(scan.window_start_ns) >= self.window_ns {
                // Long scan: report this window, continue in a follow-up (same first address,
                // same first-probe OS hint and tool).
                let fresh = Scan {
                    tool: scan.tool,
                    ..Scan::new(scan.src, now, scan.os.clone())
                };
                let old = std::mem::replace(scan, fresh);
                self.port_bytes = self.port_bytes.saturating_sub(old.ports.heap_bytes());
                let was_reported = old.reported;
                let reported_now = Self::close(
                    &mut self.stats,
                    self.threshold,
                    &mut self.flood,
                    key.1,
                    old,
                    out,
                );
                scan.reported = was_reported || reported_now;
            }
            let before = scan.ports.heap_bytes();
            scan.add(obs, word);
            self.port_bytes = self
                .port_bytes
                .saturating_add(scan.ports.heap_bytes())
                .saturating_sub(before);
            scan.last_ns = scan.last_ns.max(now);
            scan.first_ns = scan.first_ns.min(now);
        } else {
            let mut scan = Scan::new(obs.src, now, os_hint(obs));
            scan.add(obs, word);
            self.port_bytes = self.port_bytes.saturating_add(scan.ports.heap_bytes());
            if let Some((old_key, old)) = self.scans.push(key, scan)
                && old_key != key
            {
                self.evict(old_key.1, old, out);
            }
        }
        // Memory bound: close the least recently active scans (reporting those that qualify)
        // until the port sets fit again. The scan just updated is the most recent, so it stays.
        while self.port_bytes > self.max_port_bytes && self.scans.len() > 1 {
            let Some((old_key, old)) = self.scans.pop_lru() else {
                break;
            };
            self.evict(old_key.1, old, out);
        }
        self.scans.peek(&key).map_or(0, |scan| scan.ports.len())
    }

    /// Closes every scan idle at `now_ns`; reports are appended to `out`.
    pub fn sweep(&mut self, now_ns: u64, out: &mut Vec<ScanReport>) {
        while let Some((_, scan)) = self.scans.peek_lru() {
            if now_ns.saturating_sub(scan.last_ns) < self.idle_ns {
                break;
            }
            if let Some(((_, dst, _), scan)) = self.scans.pop_lru() {
                self.port_bytes = self.port_bytes.saturating_sub(scan.ports.heap_bytes());
                Self::close(
                    &mut self.stats,
                    self.threshold,
                    &mut self.flood,
                    dst,
                    scan,
                    out,
                );
            }
        }
        self.flood.sweep(now_ns, out);
    }

    /// Closes every scan (at shutdown); reports are appended to `out`.
    pub fn flush(&mut self, out: &mut Vec<ScanReport>) {
        while let Some(((_, dst, _), scan)) = self.scans.pop_lru() {
            self.port_bytes = self.port_bytes.saturating_sub(scan.ports.heap_bytes());
            Self::close(
                &mut self.stats,
                self.threshold,
                &mut self.flood,
                dst,
                scan,
                out,
            );
        }
        self.flood.flush(out);
    }

    /// Reports `scan` if it qualifies (through the flood control); returns whether it did.
    /// Closes `scan` (to `dst`) to make room: its port set leaves the memory count, the
    /// eviction is counted, and it is reported if it qualifies.
    fn evict(&mut self, dst: IpAddr, scan: Scan, out: &mut Vec<ScanReport>) {
        self.port_bytes = self.port_bytes.saturating_sub(scan.ports.heap_bytes());
        self.stats.evicted += 1;
        Self::close(
            &mut self.stats,
            self.threshold,
            &mut self.flood,
            dst,
            scan,
            out,
        );
    }

    fn close(
        stats: &mut MergerStats,
        threshold: usize,
        flood: &mut FloodGuard,
        dst: IpAddr,
        scan: Scan,
        out: &mut Vec<ScanReport>,
    ) -> bool {
        match Self::qualify(stats, threshold, dst, scan) {
            Some(report) => {
                flood.admit(report, out);
                true
            }
            None => false,
        }
    }

    /// The report of `scan` if it qualifies.
    fn qualify(
        stats: &mut MergerStats,
        threshold: usize,
        dst: IpAddr,
        scan: Scan,
    ) -> Option<ScanReport> {
        let ping = scan.kinds & (1 << (ProbeKind::Ping as u32)) != 0;
        let needed = if scan.reported || ping { 1 } else { threshold };
        let seen = if ping {
            scan.icmp_types.count_ones() as usize
        } else {
            scan.ports.len()
        };
        if seen < needed {
            if !scan.reported {
                stats.below_threshold += 1;
            }
            return None;
        }
        stats.reports += 1;
        if scan.reported {
            stats.follow_ups += 1;
        }
        Some(ScanReport {
            src: scan.src,
            dst,
            ports: scan.ports.to_vec(),
            kinds: ProbeKind::ALL
                .into_iter()
                .filter(|k| scan.kinds & (1 << (*k as u32)) != 0)
                .collect(),
            protocol: if ping {
                sensor_common::protocol::ICMP
            } else if scan.kinds & (1 << (ProbeKind::Udp as u32)) != 0 {
                sensor_common::protocol::UDP
            } else {
                sensor_common::protocol::TCP
            },
            icmp_types: (0..128u8)
                .filter(|t| scan.icmp_types & (1u128 << t) != 0)
                .map(|t| if src_is_v6(scan.src) { t | 0x80 } else { t })
                .collect(),
            tool: scan.tool,
            os: scan.os,
            first_ns: scan.first_ns,
            last_ns: scan.last_ns,
            follow_up: scan.reported,
            probes: scan.probes,
            flood: None,
        })
    }
}

/// ICMPv6 types are stored without their high bit (all requests are above 127).
const fn src_is_v6(src: IpAddr) -> bool {
    src.is_ipv6()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use sensor_common::ProbeKind;

    use super::{Merger, ScanReport};
    use crate::{capture::Observation, scan::PortscanConfig};

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;

    fn config() -> PortscanConfig {
        PortscanConfig {
            threshold: 3,
            idle_timeout_ms: 5_000,
            max_window_secs: 60,
            max_tracked: 4,
            max_memory_mib: 64,
            ..PortscanConfig::default()
        }
    }

    fn obs(src: &str, port: u16, kind: ProbeKind, ts_ns: u64) -> Observation {
        Observation {
            ts_ns,
            src: src.parse().unwrap(),
            dst: "198.18.0.1".parse().unwrap(),
            src_port: 40_000,
            dst_port: port,
            kind,
            ifindex: 2,
            vlan_id: 0,
            fp: crate::capture::Fingerprint::default(),
        }
    }

    fn run(merger: &mut Merger, items: &[Observation]) -> Vec<ScanReport> {
        let mut out = Vec::new();
        for o in items {
            merger.observe(o, &mut out);
        }
        out
    }

    #[test]
    fn scan_is_reported_once_after_idle_with_sorted_ports_and_flags() {
        let mut m = Merger::new(&config());
        let items: Vec<_> = [443u16, 22, 80, 22, 21]
            .iter()
            .enumerate()
            .map(|(i, p)| obs("198.18.1.1", *p, ProbeKind::Syn, i as u64 * MS))
            .chain([obs("198.18.1.1", 8080, ProbeKind::Fin, 10 * MS)])
            .collect();
        assert!(run(&mut m, &items).is_empty());
        let mut out = Vec::new();
        m.sweep(4 * SEC, &mut out);
        assert!(out.is_empty(), "not idle yet");
        m.sweep(10 * MS + 5 * SEC, &mut out);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.ports, vec![21, 22, 80, 443, 8080]);
        assert_eq!(r.kinds, vec![ProbeKind::Syn, ProbeKind::Fin]);
        assert_eq!((r.first_ns, r.last_ns), (0, 10 * MS));
        assert!(!r.follow_up);
        assert_eq!(m.tracked(), 0);
        m.sweep(100 * SEC, &mut out);
        assert_eq!(out.len(), 1, "reported exactly once");
    }

    #[test]
    fn an_aggregated_word_is_one_observation_per_port_of_the_same_scan() {
        let mut m = Merger::new(&config());
        let mut out = run(&mut m, &[obs("198.18.1.1", 22, ProbeKind::Syn, 0)]);
        m.observe_word(&obs("198.18.1.1", 64, ProbeKind::Syn, MS), 0b1011, &mut out);
        // Not aligned, or empty: ignored.
        m.observe_word(&obs("198.18.1.1", 65, ProbeKind::Syn, MS), 1, &mut out);
        m.observe_word(&obs("198.18.1.1", 128, ProbeKind::Syn, MS), 0, &mut out);
        assert_eq!(m.stats().observations, 4);
        m.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].ports, vec![22, 64, 65, 67]);
        assert_eq!(out[0].probes, 4);
    }

    #[test]
    fn below_threshold_is_not_a_scan() {
        let mut m = Merger::new(&config());
        run(
            &mut m,
            &[
                obs("198.18.1.1", 80, ProbeKind::Syn, 0),
                obs("198.18.1.1", 443, ProbeKind::Syn, MS),
            ],
        );
        let mut out = Vec::new();
        m.sweep(60 * SEC, &mut out);
        assert!(out.is_empty());
        assert_eq!(m.stats().below_threshold, 1);
    }

    #[test]
    fn sources_are_kept_apart() {
        let mut m = Merger::new(&config());
        let mut items = Vec::new();
        for p in 1..=3 {
            items.push(obs("198.18.1.1", p, ProbeKind::Syn, u64::from(p) * MS));
            items.push(obs(
                "2001:db8::7",
                p + 100,
                ProbeKind::Null,
                u64::from(p) * MS,
            ));
        }
        run(&mut m, &items);
        let mut out = Vec::new();
        m.flush(&mut out);
        assert_eq!(out.len(), 2);
        let v6 = out.iter().find(|r| r.src.is_ipv6()).unwrap();
        assert_eq!(v6.ports, vec![101, 102, 103]);
        assert_eq!(v6.kinds, vec![ProbeKind::Null]);
    }

    #[test]
    fn a_sweep_rotating_addresses_inside_one_v6_slash_64_is_one_scan() {
        let mut m = Merger::new(&config());
        let mut items = Vec::new();
        for p in 1..=40u16 {
            // A new address of 2001:db8:1:2::/64 for every port, and one probe from the next
            // /64 for each of the first three ports.
            items.push(obs(
                &format!("2001:db8:1:2:{p:x}::{p:x}"),
                p,
                ProbeKind::Syn,
                u64::from(p) * MS,
            ));
            if p <= 3 {
                items.push(obs("2001:db8:1:3::1", p, ProbeKind::Syn, u64::from(p) * MS));
            }
        }
        assert!(run(&mut m, &items).is_empty());
        assert_eq!(m.tracked(), 2);
        let mut out = Vec::new();
        m.flush(&mut out);
        out.sort_by_key(|r| r.ports.len());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].src, "2001:db8:1:3::1".parse::<IpAddr>().unwrap());
        assert_eq!(out[0].ports, vec![1, 2, 3]);
        assert_eq!(
            out[1].src,
            "2001:db8:1:2:1::1".parse::<IpAddr>().unwrap(),
            "the first address seen"
        );
        assert_eq!(out[1].ports, (1..=40).collect::<Vec<u16>>());
    }

    #[test]
    fn v4_sources_stay_per_address_unless_the_prefix_says_otherwise() {
        let items: Vec<_> = (1..=3u16)
            .map(|p| obs(&format!("198.18.1.{p}"), p, ProbeKind::Syn, u64::from(p)))
            .collect();
        let mut m = Merger::new(&config());
        run(&mut m, &items);
        assert_eq!(m.tracked(), 3);
        let mut out = Vec::new();
        m.flush(&mut out);
        assert!(out.is_empty(), "three single-port probes are no scan");
        let prefix = crate::net::SourcePrefix { ipv4: 24, ipv6: 64 };
        let mut m = Merger::new(&config()).with_source_prefix(prefix);
        run(&mut m, &items);
        m.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].src, "198.18.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(out[0].ports, vec![1, 2, 3]);
    }

    #[test]
    fn long_scan_gets_bounded_follow_ups() {
        let mut m = Merger::new(&config());
        let mut out = Vec::new();
        // One new port every 100 ms for 150 s: three windows.
        for i in 0..1_500u64 {
            m.observe(
                &obs(
                    "198.18.1.1",
                    u16::try_from(i).unwrap() + 1,
                    ProbeKind::Syn,
                    i * 100 * MS,
                ),
                &mut out,
            );
        }
        m.sweep(1_500 * 100 * MS + 5 * SEC, &mut out);
        assert_eq!(
            out.len(),
            3,
            "{:?}",
            out.iter().map(|r| r.ports.len()).collect::<Vec<_>>()
        );
        assert!(!out[0].follow_up && out[1].follow_up && out[2].follow_up);
        let total: usize = out.iter().map(|r| r.ports.len()).sum();
        assert_eq!(total, 1_500, "every port reported exactly once");
        assert_eq!(m.stats().follow_ups, 2);
    }

    #[test]
    fn a_new_scan_after_idle_is_reported_again() {
        let mut m = Merger::new(&config());
        let mut out = Vec::new();
        for p in 1..=3 {
            m.observe(
                &obs("198.18.1.1", p, ProbeKind::Syn, u64::from(p)),
                &mut out,
            );
        }
        // No sweep in between: the next observation, after the idle timeout, closes the first.
        for p in 10..=12 {
            m.observe(
                &obs("198.18.1.1", p, ProbeKind::Xmas, 20 * SEC + u64::from(p)),
                &mut out,
            );
        }
        assert_eq!(out.len(), 1);
        m.flush(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].ports, vec![10, 11, 12]);
        assert!(!out[1].follow_up);
    }

    #[test]
    fn state_is_bounded_and_evicted_scans_are_still_reported() {
        let mut m = Merger::new(&config());
        let mut out = Vec::new();
        for p in 1..=3 {
            m.observe(
                &obs("198.18.1.1", p, ProbeKind::Syn, u64::from(p)),
                &mut out,
            );
        }
        for s in 2..=10 {
            m.observe(
                &obs(&format!("198.18.1.{s}"), 1, ProbeKind::Syn, 100 + s),
                &mut out,
            );
        }
        assert_eq!(m.tracked(), 4);
        assert_eq!(out.len(), 1, "the real scan survives eviction as a report");
        assert_eq!(out[0].src, "198.18.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(m.stats().evicted, 6);
    }

    #[test]
    fn port_memory_is_bounded_and_full_scans_are_still_reported() {
        // 400 sources each probing 5,000 ports (dense sets, 8 KiB each) would need 3.2 MiB; a
        // 1 MiB budget keeps at most 128 of them, closing (and reporting) the oldest.
        let cfg = PortscanConfig {
            max_tracked: 10_000,
            max_memory_mib: 1,
            ..config()
        };
        let mut m = Merger::new(&cfg);
        let mut out = Vec::new();
        for s in 0..400u32 {
            let src = IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000 | s));
            for port in 1..=5_000u16 {
                m.observe(
                    &Observation {
                        src,
                        ..obs("198.18.1.1", port, ProbeKind::Syn, u64::from(s))
                    },
                    &mut out,
                );
                assert!(m.port_bytes() <= (1 << 20) + 8192);
            }
        }
        assert!(m.tracked() <= 128, "{}", m.tracked());
        m.flush(&mut out);
        assert_eq!(m.port_bytes(), 0);
        assert_eq!(out.len(), 400, "every full scan reported once");
        assert!(out.iter().all(|r| r.ports.len() == 5_000));
    }

    #[test]
    fn one_million_spoofed_sources_stay_bounded() {
        let cfg = PortscanConfig {
            max_tracked: 1_000,
            ..config()
        };
        let mut m = Merger::new(&cfg);
        let mut out = Vec::new();
        for i in 0..1_000_000u32 {
            let src = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 | i));
            m.observe(
                &Observation {
                    ts_ns: u64::from(i),
                    src,
                    ..obs("198.18.1.1", 1, ProbeKind::Syn, 0)
                },
                &mut out,
            );
        }
        assert!(out.is_empty());
        assert_eq!(m.tracked(), 1_000);
    }
}
