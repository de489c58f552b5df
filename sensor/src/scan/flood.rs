//! Alert-flood control: many sources probing few ports each of one destination become a bounded
//! number of events.
//!
//! A first report (not a follow-up) with fewer than `flood_few_ports` distinct ports (ICMP:
//! request types) is a *few-port* report. Per (destination, protocol) and window of
//! `flood_window_secs`, the first `flood_max_reports` few-port reports pass as ordinary
//! `portscan.query` events; the following ones are folded into one summary, reported as a
//! `portscan.flood` event when the window ends (source count, probe count, port set, kinds, top
//! sources by probes, a sample). Reports of many-port sources (a real scan) and follow-ups always
//! pass, whatever the flood. So a window yields at most `flood_max_reports + 1` events for
//! few-port sources of one destination, and nothing is lost silently: the summary carries the
//! counts of everything folded into it.
//!
//! State is bounded: at most [`MAX_DESTINATIONS`] windows are open; opening one more closes
//! (and reports) the least recently active. Pure: time comes from the reports.

use std::{net::IpAddr, num::NonZeroUsize};

use lru::LruCache;
use sensor_common::ProbeKind;

use super::{PortSet, ScanReport};

/// Open (destination, protocol) windows kept at most.
pub const MAX_DESTINATIONS: usize = 1_024;
/// Sources listed in `top_sources`.
pub const TOP_SOURCES: usize = 5;
/// Sources listed in `sample`.
pub const SAMPLE_SOURCES: usize = 5;

/// A window's summary of the few-port sources folded (not reported one by one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodSummary {
    /// Few-port sources folded into this summary (one report each).
    pub sources: u64,
    /// Probes of those sources.
    pub probes: u64,
    /// Few-port sources of the same window reported individually before the bound was reached.
    pub reported: u64,
    /// Distinct ports (ICMP: none) probed by the folded sources, ascending.
    pub ports: Vec<u16>,
    /// The sources with the most probes, most first (ties: first seen first).
    pub top_sources: Vec<(IpAddr, u64)>,
    /// The first folded sources with their ports.
    pub sample: Vec<(IpAddr, Vec<u16>)>,
}

/// Counters of the flood control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloodStats {
    /// Few-port reports folded into summaries.
    pub folded: u64,
    /// Summaries produced.
    pub summaries: u64,
}

#[derive(Debug)]
struct Window {
    start_ns: u64,
    reported: u64,
    /// The summary being built: a report whose `flood` is `Some`.
    acc: Option<Acc>,
}

#[derive(Debug)]
struct Acc {
    report: ScanReport,
    ports: PortSet,
    kinds: u32,
    summary: FloodSummary,
}

/// The flood control. See the module documentation.
#[derive(Debug)]
pub struct FloodGuard {
    few_ports: usize,
    max_reports: u64,
    window_ns: u64,
    windows: LruCache<(IpAddr, u8), Window, foldhash::fast::RandomState>,
    stats: FloodStats,
}

impl FloodGuard {
    /// A guard: reports with fewer than `few_ports` ports are few-port; at most `max_reports`
    /// of them per destination and window of `window_ns` pass individually.
    #[must_use]
    pub fn new(few_ports: usize, max_reports: u64, window_ns: u64) -> Self {
        let cap = NonZeroUsize::new(MAX_DESTINATIONS).unwrap_or(NonZeroUsize::MIN);
        Self {
            few_ports,
            max_reports,
            window_ns: window_ns.max(1),
            windows: LruCache::with_hasher(cap, foldhash::fast::RandomState::default()),
            stats: FloodStats::default(),
        }
    }

    /// Counters so far.
    #[must_use]
    pub const fn stats(&self) -> FloodStats {
        self.stats
    }

    /// Passes `report` to `out`, or folds it into its destination's summary.
    pub fn admit(&mut self, report: ScanReport, out: &mut Vec<ScanReport>) {
        let seen = if report.protocol == sensor_common::protocol::ICMP {
            report.icmp_types.len()
        } else {
            report.ports.len()
        };
        if report.follow_up || seen >= self.few_ports {
            out.push(report);
            return;
        }
        let key = (report.dst, report.protocol);
        let now = report.last_ns;
        if let Some(w) = self.windows.get_mut(&key)
            && now.saturating_sub(w.start_ns) >= self.window_ns
        {
            let old = std::mem::replace(
                w,
                Window {
                    start_ns: now,
                    reported: 0,
                    acc: None,
                },
            );
            Self::close(&mut self.stats, old, out);
        }
        if !self.windows.contains(&key) {
            let fresh = Window {
                start_ns: now,
                reported: 0,
                acc: None,
            };
            if let Some((old_key, old)) = self.windows.push(key, fresh)
                && old_key != key
            {
                Self::close(&mut self.stats, old, out);
            }
        }
        let Some(w) = self.windows.get_mut(&key) else {
            out.push(report);
            return;
        };
        if w.reported < self.max_reports {
            w.reported += 1;
            out.push(report);
            return;
        }
        self.stats.folded = self.stats.folded.saturating_add(1);
        let reported = w.reported;
        let acc = w.acc.get_or_insert_with(|| Acc {
            report: ScanReport {
                src: unspecified(report.dst),
                ports: Vec::new(),
                kinds: Vec::new(),
                probes: 0,
                follow_up: false,
                flood: None,
                ..report.clone()
            },
            ports: PortSet::default(),
            kinds: 0,
            summary: FloodSummary {
                sources: 0,
                probes: 0,
                reported,
                ports: Vec::new(),
                top_sources: Vec::new(),
                sample: Vec::new(),
            },
        });
        acc.fold(&report, reported);
    }

    /// Closes the windows that ended at `now_ns`; summaries are appended to `out`.
    pub fn sweep(&mut self, now_ns: u64, out: &mut Vec<ScanReport>) {
        let due: Vec<(IpAddr, u8)> = self
            .windows
            .iter()
            .filter(|(_, w)| now_ns.saturating_sub(w.start_ns) >= self.window_ns)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(w) = self.windows.pop(&key) {
                Self::close(&mut self.stats, w, out);
            }
        }
    }

    /// Closes every window (at shutdown).
    pub fn flush(&mut self, out: &mut Vec<ScanReport>) {
        while let Some((_, w)) = self.windows.pop_lru() {
            Self::close(&mut self.stats, w, out);
        }
    }

    fn close(stats: &mut FloodStats, window: Window, out: &mut Vec<ScanReport>) {
        let Some(acc) = window.acc else {
            return;
        };
        stats.summaries = stats.summaries.saturating_add(1);
        let mut report = acc.report;
        report.ports = acc.ports.to_vec();
        report.kinds = ProbeKind::ALL
            .into_iter()
            .filter(|k| acc.kinds & (1 << (*k as u32)) != 0)
            .collect();
        report.probes = acc.summary.probes;
        let mut summary = acc.summary;
        summary.ports.clone_from(&report.ports);
        report.flood = Some(Box::new(summary));
        out.push(report);
    }
}

impl Acc {
    fn fold(&mut self, r: &ScanReport, reported: u64) {
        let s = &mut self.summary;
        s.sources = s.sources.saturating_add(1);
        s.probes = s.probes.saturating_add(r.probes);
        s.reported = reported;
        for p in &r.ports {
            self.ports.insert(*p);
        }
        for k in &r.kinds {
            self.kinds |= 1 << (*k as u32);
        }
        for t in &r.icmp_types {
            if !self.report.icmp_types.contains(t) {
                self.report.icmp_types.push(*t);
                self.report.icmp_types.sort_unstable();
            }
        }
        self.report.first_ns = self.report.first_ns.min(r.first_ns);
        self.report.last_ns = self.report.last_ns.max(r.last_ns);
        if s.sample.len() < SAMPLE_SOURCES {
            s.sample.push((r.src, r.ports.clone()));
        }
        // Top sources: insert after every entry with at least as many probes (stable).
        let at = s
            .top_sources
            .iter()
            .position(|(_, n)| *n < r.probes)
            .unwrap_or(s.top_sources.len());
        if at < TOP_SOURCES {
            s.top_sources.insert(at, (r.src, r.probes));
            s.top_sources.truncate(TOP_SOURCES);
        }
    }
}

/// The unspecified address of `dst`'s family: a summary has no one source.
fn unspecified(dst: IpAddr) -> IpAddr {
    if dst.to_canonical().is_ipv4() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::from([0u16; 8])
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use sensor_common::ProbeKind;

    use super::{FloodGuard, FloodSummary};
    use crate::scan::{
        Merger, PortscanConfig, ScanReport,
        attribution::{OsHint, Tool},
    };

    const SEC: u64 = 1_000_000_000;

    fn report(src: u32, ports: &[u16], last_ns: u64) -> ScanReport {
        ScanReport {
            src: IpAddr::from(Ipv4Addr::from(0xf000_0000 | src)),
            dst: "198.18.0.1".parse().unwrap(),
            ports: ports.to_vec(),
            kinds: vec![ProbeKind::Syn],
            protocol: 6,
            icmp_types: vec![],
            tool: Tool::Unknown,
            os: OsHint {
                label: "unknown",
                signature: String::new(),
            },
            first_ns: last_ns,
            last_ns,
            follow_up: false,
            probes: ports.len() as u64,
            flood: None,
        }
    }

    #[test]
    fn few_port_sources_past_the_bound_become_one_summary_with_exact_counts() {
        let mut g = FloodGuard::new(16, 3, 10 * SEC);
        let mut out = Vec::new();
        for s in 0..1_000u32 {
            let p = u16::try_from(s % 7).unwrap() + 1;
            g.admit(
                report(s, &[p, p + 100, p + 200, 9_999], u64::from(s)),
                &mut out,
            );
        }
        // A real scan of the same destination, during the flood: always passes.
        let ports: Vec<u16> = (1..=500).collect();
        g.admit(report(77_777, &ports, 2_000), &mut out);
        assert_eq!(out.len(), 4, "three few-port reports and the scan");
        assert!(out.iter().all(|r| r.flood.is_none()));
        assert_eq!(out[3].ports.len(), 500);
        g.sweep(5 * SEC, &mut out);
        assert_eq!(out.len(), 4, "window still open");
        g.sweep(10 * SEC, &mut out);
        assert_eq!(out.len(), 5);
        let r = &out[4];
        let s: &FloodSummary = r.flood.as_deref().unwrap();
        assert_eq!(s.sources, 997);
        assert_eq!(s.probes, 997 * 4);
        assert_eq!(s.reported, 3);
        let mut expected: Vec<u16> = (1..=7).flat_map(|p| [p, p + 100, p + 200]).collect();
        expected.push(9_999);
        expected.sort_unstable();
        assert_eq!(s.ports, expected);
        assert_eq!(r.ports, expected);
        assert_eq!(r.probes, 997 * 4);
        assert_eq!(r.src, IpAddr::from([0, 0, 0, 0]));
        assert_eq!((r.first_ns, r.last_ns), (3, 999));
        assert_eq!(s.sample.len(), 5);
        assert_eq!(s.sample[0].0, IpAddr::from(Ipv4Addr::from(0xf000_0003)));
        assert_eq!(s.top_sources.len(), 5);
        assert_eq!(
            s.top_sources[0],
            (IpAddr::from(Ipv4Addr::from(0xf000_0003)), 4)
        );
        assert_eq!(g.stats().folded, 997);
        assert_eq!(g.stats().summaries, 1);
        g.flush(&mut out);
        assert_eq!(out.len(), 5, "nothing left to flush");
    }

    #[test]
    fn top_sources_rank_by_probes_and_windows_restart() {
        let mut g = FloodGuard::new(16, 0, 10 * SEC);
        let mut out = Vec::new();
        for (s, n) in [(1u32, 2u64), (2, 9), (3, 5), (4, 9), (5, 1), (6, 7), (7, 3)] {
            let mut r = report(s, &[80], u64::from(s));
            r.probes = n;
            g.admit(r, &mut out);
        }
        assert!(out.is_empty());
        // A report after the window closes the old one first and opens a new one.
        g.admit(report(8, &[22], 11 * SEC), &mut out);
        assert_eq!(out.len(), 1);
        let s = out[0].flood.as_deref().unwrap();
        let top: Vec<(u32, u64)> = s
            .top_sources
            .iter()
            .map(|(ip, n)| match ip {
                IpAddr::V4(v4) => (u32::from(*v4) & 0xff, *n),
                IpAddr::V6(_) => (0, 0),
            })
            .collect();
        assert_eq!(top, vec![(2, 9), (4, 9), (6, 7), (3, 5), (7, 3)]);
        assert_eq!((s.sources, s.probes, s.reported), (7, 36, 0));
        g.flush(&mut out);
        assert_eq!(out.len(), 2);
        let s = out[1].flood.as_deref().unwrap();
        assert_eq!((s.sources, s.probes), (1, 1));
        assert_eq!(s.ports, vec![22]);
        assert_eq!(g.stats().summaries, 2);
    }

    #[test]
    fn follow_ups_many_port_reports_and_other_destinations_are_not_folded() {
        let mut g = FloodGuard::new(4, 1, 10 * SEC);
        let mut out = Vec::new();
        g.admit(report(1, &[1, 2, 3], 0), &mut out);
        g.admit(report(2, &[1, 2, 3], 0), &mut out);
        let mut follow = report(3, &[1], 0);
        follow.follow_up = true;
        g.admit(follow, &mut out);
        g.admit(report(4, &[1, 2, 3, 4], 0), &mut out);
        let mut other = report(5, &[1, 2, 3], 0);
        other.dst = "198.18.0.2".parse().unwrap();
        g.admit(other, &mut out);
        let mut udp = report(6, &[53, 54, 55], 0);
        udp.protocol = 17;
        g.admit(udp, &mut out);
        let srcs: Vec<u32> = out
            .iter()
            .map(|r| match r.src {
                IpAddr::V4(v4) => u32::from(v4) & 0xff,
                IpAddr::V6(_) => 0,
            })
            .collect();
        assert_eq!(srcs, vec![1, 3, 4, 5, 6]);
        assert_eq!(g.stats().folded, 1);
    }

    #[test]
    fn the_merger_bounds_events_for_300k_spoofed_sources_and_keeps_the_real_scan() {
        let cfg = PortscanConfig {
            threshold: 3,
            max_tracked: 65_536,
            flood_max_reports: 20,
            ..PortscanConfig::default()
        };
        let mut m = Merger::new(&cfg);
        let mut out = Vec::new();
        let dst: IpAddr = "198.18.0.1".parse().unwrap();
        let mut t = 0u64;
        for s in 0..300_000u32 {
            for k in 0..4u16 {
                t += 1_000;
                let obs = crate::capture::Observation {
                    ts_ns: t,
                    src: IpAddr::from(Ipv4Addr::from(0xf000_0000 | s)),
                    dst,
                    src_port: 40_000,
                    dst_port: 1 + k * 1_000 + u16::try_from(s % 997).unwrap(),
                    kind: ProbeKind::Syn,
                    ifindex: 2,
                    vlan_id: 0,
                    fp: crate::capture::Fingerprint::default(),
                };
                m.observe(&obs, &mut out);
                if s % 600 == 0 && k == 0 {
                    let port = u16::try_from(s / 600).unwrap() + 1;
                    m.observe(
                        &crate::capture::Observation {
                            src: "198.18.0.2".parse().unwrap(),
                            dst_port: port,
                            ..obs
                        },
                        &mut out,
                    );
                }
            }
        }
        m.flush(&mut out);
        let real: Vec<&ScanReport> = out
            .iter()
            .filter(|r| r.src == "198.18.0.2".parse::<IpAddr>().unwrap())
            .collect();
        assert_eq!(real.len(), 1);
        assert_eq!(real[0].ports, (1..=500).collect::<Vec<u16>>());
        let floods: Vec<&FloodSummary> = out.iter().filter_map(|r| r.flood.as_deref()).collect();
        assert_eq!(floods.len(), 1);
        assert_eq!(out.len(), 1 + 20 + 1, "the scan, the bound, one summary");
        assert_eq!(floods[0].sources, 300_000 - 20);
        assert_eq!(floods[0].probes, (300_000 - 20) * 4);
        assert_eq!(m.stats().reports, 300_001);
        assert_eq!(m.stats().flood_folded, 300_000 - 20);
        assert_eq!(m.stats().flood_summaries, 1);
    }
}
