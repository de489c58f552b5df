//! Where observations come from while the agent runs: the XDP ring buffer or live libpcap.
//!
//! Draining is bounded: each turn of the agent's loop folds at most `sensor.xdp.drain_batch`
//! records, so shutdown, service events and statistics interleave with draining under any
//! load; a turn that hit its budget makes the next one yield and drain again at once.

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

use super::AgentError;
use crate::{
    capture::{
        Drained, Observation,
        aggregate::{AggregateStats, Aggregator},
        counters::CounterSnapshot,
        decode::DecodeError,
        pcap::{LiveCapture, PcapStats},
        queue::BatchQueue,
        ring::drain_ring,
        xdp::{LoadOptions, Loaded, XdpError, load},
    },
    clock::monotonic_ns,
    config::{Config, XdpMode},
    scan::{Merger, ScanReport},
};

/// Depth of the queue between the pcap thread and the agent, in batches of up to 1024.
const PCAP_QUEUE: usize = 64;
/// Batch size of the final drains at shutdown (nothing else is left to interleave with).
const FINISH_BATCH: usize = 65_536;

/// A capture source.
#[expect(
    clippy::large_enum_variant,
    reason = "one per agent run, never moved on a hot path"
)]
pub(super) enum Source {
    /// The XDP program and its ring buffer.
    Xdp {
        /// The loaded program (attached).
        loaded: Loaded,
        /// The ring buffer, registered with the runtime.
        records: AsyncFd<RingBuf<MapData>>,
        /// Records that did not decode.
        undecodable: u64,
        /// The last drain stopped at its budget.
        more: bool,
        /// How full the ring buffer is (absent if its positions could not be mapped).
        fill: Option<crate::capture::ring_fill::RingFill>,
        /// In-kernel aggregation of scans (absent when off, or its maps could not be had).
        aggregator: Option<Aggregator>,
    },
    /// libpcap on each interface, through a bounded channel.
    Pcap {
        /// One capture thread per interface.
        captures: Vec<LiveCapture>,
        /// Batches from all of them.
        queue: BatchQueue,
        /// The last drain stopped at its budget.
        more: bool,
        /// libpcap drops already warned about.
        warned_drops: u64,
    },
    /// No capture: the emulated services only.
    Off,
}

impl Source {
    /// Loads and attaches the XDP program to every interface.
    pub(super) fn xdp(
        config: &Config,
        interfaces: &[String],
        mode: XdpMode,
    ) -> Result<Self, AgentError> {
        let xdp = &config.sensor.xdp;
        let mut loaded = load(&LoadOptions {
            ring_buffer_bytes: xdp.ring_buffer_bytes,
            settings: sensor_common::Settings {
                dedup_window_ns: xdp.dedup_window_ms.saturating_mul(1_000_000),
                source_budget: xdp.source_budget,
                cpu_budget: xdp.cpu_budget,
                wakeup_bytes: xdp.wakeup_bytes,
                ..sensor_common::Settings::DEFAULT
            },
            allowlist: config.whitelist_ips.clone(),
            maps: xdp.map_request(),
            source_prefix: config.sensor.source_prefix,
        })?;
        for iface in interfaces {
            let attached = loaded.attach(iface, mode)?;
            tracing::info!(interface = %iface, mode = attached.as_str(), "XDP program attached.");
        }
        let ring = loaded
            .records
            .take()
            .ok_or(XdpError::MissingMap(sensor_common::RECORDS_MAP))?;
        // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as long as
        // the AsyncFd owns the ring buffer.
        let records = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| AgentError::Poll(std::io::Error::other(e.to_string())))?;
        let fill = {
            use std::os::fd::AsFd as _;
            crate::capture::ring_fill::RingFill::map(records.get_ref().as_fd(), xdp.ring_buffer_bytes)
        }
        .inspect_err(|err| tracing::warn!(error = %err, "Mapping the ring buffer's positions failed; its fill gauge is missing."))
        .ok();
        let aggregator = if xdp.aggregate {
            loaded
                .aggregator()
                .inspect_err(|err| tracing::warn!(error = %err, "In-kernel aggregation is off: every probe keeps its record."))
                .ok()
        } else {
            None
        };
        Ok(Self::Xdp {
            loaded,
            records,
            undecodable: 0,
            more: false,
            fill,
            aggregator,
        })
    }

    /// Opens libpcap on every interface.
    pub(super) fn pcap(config: &Config, interfaces: &[String]) -> Result<Self, AgentError> {
        let (tx, rx) = mpsc::channel(PCAP_QUEUE);
        let mut captures = Vec::new();
        for iface in interfaces {
            captures.push(LiveCapture::start(
                iface,
                config.whitelist_ips.clone(),
                tx.clone(),
            )?);
            tracing::info!(interface = %iface, "libpcap capture started.");
        }
        Ok(Self::Pcap {
            captures,
            queue: BatchQueue::new(rx),
            more: false,
            warned_drops: 0,
        })
    }

    /// Waits until observations are available, then folds at most `budget` of them into the
    /// merger. When the previous turn left more pending it only yields to the runtime first
    /// (other branches of the agent's loop run, no readiness wait, no spin).
    pub(super) async fn wait_and_drain(
        &mut self,
        budget: usize,
        merger: &mut Merger,
        reports: &mut Vec<ScanReport>,
    ) -> Result<Drained, AgentError> {
        if self.more_pending() {
            tokio::task::yield_now().await;
            return Ok(self.drain(budget, merger, reports));
        }
        match self {
            Self::Xdp {
                records,
                undecodable,
                more,
                aggregator,
                ..
            } => {
                let mut guard = records.readable_mut().await.map_err(AgentError::Poll)?;
                let now = tokio::time::Instant::now();
                let drained = drain_ring(guard.get_inner_mut(), budget, |r| {
                    fold(r, merger, reports, undecodable, aggregator.as_mut(), now);
                });
                // Readiness is edge-triggered: clear it now; what the budget left in the ring
                // is taken by the next turns (`more`), later records wake us or the drain tick.
                guard.clear_ready();
                *more = drained.more;
                Ok(drained)
            }
            Self::Pcap { queue, .. } => {
                if queue.wait().await {
                    Ok(self.drain(budget, merger, reports))
                } else {
                    // Every capture thread ended: wait for shutdown without spinning.
                    std::future::pending().await
                }
            }
            Self::Off => std::future::pending().await,
        }
    }

    /// Whether the last drain stopped at its budget with observations still waiting.
    const fn more_pending(&self) -> bool {
        match self {
            Self::Xdp { more, .. } | Self::Pcap { more, .. } => *more,
            Self::Off => false,
        }
    }

    /// Folds at most `budget` observations available now into the merger, without waiting
    /// (drain tick, and the turns after one that hit its budget).
    pub(super) fn drain(
        &mut self,
        budget: usize,
        merger: &mut Merger,
        reports: &mut Vec<ScanReport>,
    ) -> Drained {
        match self {
            Self::Xdp {
                records,
                undecodable,
                more,
                aggregator,
                ..
            } => {
                let now = tokio::time::Instant::now();
                let drained = drain_ring(records.get_mut(), budget, |r| {
                    fold(r, merger, reports, undecodable, aggregator.as_mut(), now);
                });
                *more = drained.more;
                if let Some(aggregator) = aggregator {
                    aggregator.drain(now, monotonic_ns(), |o, word| {
                        merger.observe_word(o, word, reports);
                    });
                }
                drained
            }
            Self::Pcap { queue, more, .. } => {
                let drained = queue.drain(budget, |o| merger.observe(o, reports));
                *more = drained.more;
                drained
            }
            Self::Off => Drained::default(),
        }
    }

    /// Replaces the allow-list while capturing: the kernel's map in place (XDP, still
    /// attached), or the list every libpcap thread applies from its next frame on.
    pub(super) fn set_allowlist(&mut self, allowlist: &[crate::net::Cidr]) -> Result<(), XdpError> {
        match self {
            Self::Xdp { loaded, .. } => loaded.set_allowlist(allowlist),
            Self::Pcap { captures, .. } => {
                for capture in captures.iter() {
                    capture.set_allowlist(allowlist);
                }
                Ok(())
            }
            Self::Off => Ok(()),
        }
    }

    /// Ring buffer bytes in use and its size (XDP only).
    pub(super) fn ring_fill(&self) -> Option<(u64, u64)> {
        match self {
            Self::Xdp {
                fill: Some(fill), ..
            } => Some((fill.used(), fill.size())),
            _ => None,
        }
    }

    /// Kernel counters, for the XDP source.
    pub(super) fn counters(&self) -> Result<Option<CounterSnapshot>, AgentError> {
        match self {
            Self::Xdp { loaded, .. } => Ok(Some(loaded.counters()?)),
            Self::Pcap { .. } | Self::Off => Ok(None),
        }
    }

    /// The counters of whichever engine runs, as of now (stats tick): kernel counters for XDP,
    /// libpcap's (drops included, read from libpcap at every capture poll) for pcap. New
    /// libpcap drops are warned about here.
    pub(super) fn stats(&mut self) -> Result<SourceStats, AgentError> {
        Ok(match self {
            Self::Xdp {
                loaded,
                undecodable,
                aggregator,
                ..
            } => SourceStats {
                kernel: Some(loaded.counters()?),
                pcap: None,
                undecodable: *undecodable,
                aggregate: aggregator.as_ref().map(Aggregator::stats),
            },
            Self::Pcap {
                captures,
                warned_drops,
                ..
            } => {
                let mut total = PcapStats::default();
                for capture in captures.iter() {
                    total.add(&capture.stats());
                }
                let dropped = total.kernel_dropped.saturating_add(total.if_dropped);
                if dropped > *warned_drops {
                    tracing::warn!(
                        dropped = dropped - *warned_drops,
                        kernel_dropped = total.kernel_dropped,
                        if_dropped = total.if_dropped,
                        "libpcap dropped frames: the capture buffer or the interface overflowed."
                    );
                    *warned_drops = dropped;
                }
                SourceStats {
                    kernel: None,
                    pcap: Some(total),
                    undecodable: 0,
                    aggregate: None,
                }
            }
            Self::Off => SourceStats::default(),
        })
    }

    /// Stops capturing, folds in everything still queued, and returns the final counters.
    /// Waiting for the libpcap threads to end never blocks the runtime.
    pub(super) async fn finish(
        self,
        merger: &mut Merger,
        reports: &mut Vec<ScanReport>,
    ) -> Result<Finished, AgentError> {
        match self {
            Self::Off => Ok(Finished {
                kernel: None,
                pcap: None,
                undecodable: 0,
                aggregate: None,
            }),
            Self::Xdp {
                mut loaded,
                mut records,
                mut undecodable,
                mut aggregator,
                ..
            } => {
                // Stop new records first, then take everything still in the ring: it holds a
                // bounded number of records and no more arrive; then every bit still set.
                loaded.detach_all();
                let now = tokio::time::Instant::now();
                while drain_ring(records.get_mut(), FINISH_BATCH, |r| {
                    fold(r, merger, reports, &mut undecodable, None, now);
                })
                .more
                {}
                if let Some(aggregator) = aggregator.as_mut() {
                    aggregator.drain(now, monotonic_ns(), |o, word| {
                        merger.observe_word(o, word, reports);
                    });
                }
                Ok(Finished {
                    kernel: Some(loaded.counters()?),
                    pcap: None,
                    undecodable,
                    aggregate: aggregator.as_ref().map(Aggregator::stats),
                })
            }
            Self::Pcap {
                captures,
                mut queue,
                ..
            } => {
                captures.iter().for_each(LiveCapture::request_stop);
                // Keep draining while a thread may be blocked on the full channel; each one
                // ends within one poll interval.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !captures.iter().all(LiveCapture::is_finished)
                    && std::time::Instant::now() < deadline
                {
                    while queue
                        .drain(FINISH_BATCH, |o| merger.observe(o, reports))
                        .more
                    {}
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                queue.close();
                while queue
                    .drain(FINISH_BATCH, |o| merger.observe(o, reports))
                    .more
                {}
                let mut total = PcapStats::default();
                for capture in captures {
                    if capture.is_finished() {
                        total.add(&capture.join()?);
                    } else {
                        // Past the deadline: its last published counters, and let it go.
                        tracing::warn!("A libpcap capture thread did not stop in time.");
                        total.add(&capture.stats());
                    }
                }
                Ok(Finished {
                    kernel: None,
                    pcap: Some(total),
                    undecodable: 0,
                    aggregate: None,
                })
            }
        }
    }
}

/// Counters of the running source, for the stats tick.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SourceStats {
    pub(super) kernel: Option<CounterSnapshot>,
    pub(super) pcap: Option<PcapStats>,
    pub(super) undecodable: u64,
    pub(super) aggregate: Option<AggregateStats>,
}

/// Final counters of a source.
pub(super) struct Finished {
    pub(super) kernel: Option<CounterSnapshot>,
    pub(super) pcap: Option<PcapStats>,
    pub(super) undecodable: u64,
    pub(super) aggregate: Option<AggregateStats>,
}

/// Folds one decoded record into the merger (and counts it toward aggregating its scan), or
/// counts it as undecodable.
fn fold(
    record: Result<Observation, DecodeError>,
    merger: &mut Merger,
    reports: &mut Vec<ScanReport>,
    undecodable: &mut u64,
    aggregator: Option<&mut Aggregator>,
    now: tokio::time::Instant,
) {
    match record {
        Ok(obs) => {
            let ports = merger.observe_counted(&obs, reports);
            if let Some(aggregator) = aggregator {
                aggregator.note(&obs, ports, now);
            }
        }
        Err(err) => {
            *undecodable = undecodable.saturating_add(1);
            tracing::debug!(error = %err, "Undecodable record skipped.");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr},
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
    };

    use sensor_common::ProbeKind;
    use tokio::sync::mpsc;

    use super::Source;
    use crate::{
        capture::{Drained, Observation, queue::BatchQueue},
        config::PortscanConfig,
        scan::Merger,
    };

    fn batch(n: u16) -> Vec<Observation> {
        (0..n)
            .map(|i| Observation {
                ts_ns: u64::from(i),
                src: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
                dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                src_port: 40_000,
                dst_port: i,
                kind: ProbeKind::Syn,
                ifindex: 0,
                vlan_id: 0,
                fp: crate::capture::Fingerprint::default(),
            })
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_turn_that_hit_its_budget_lets_other_tasks_run_before_the_next() {
        let (tx, rx) = mpsc::channel(8);
        for _ in 0..3 {
            tx.try_send(batch(1_000)).unwrap();
        }
        let mut source = Source::Pcap {
            captures: Vec::new(),
            queue: BatchQueue::new(rx),
            more: false,
            warned_drops: 0,
        };
        let mut merger = Merger::new(&PortscanConfig::default());
        let mut reports = Vec::new();
        let first = source
            .wait_and_drain(1_024, &mut merger, &mut reports)
            .await
            .unwrap();
        assert_eq!(
            first,
            Drained {
                taken: 1_024,
                more: true
            }
        );
        // On a single-threaded runtime the spawned task only runs when the drain loop yields.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let other = tokio::spawn(async move { flag.store(true, Ordering::Relaxed) });
        let second = source
            .wait_and_drain(1_024, &mut merger, &mut reports)
            .await
            .unwrap();
        assert!(
            ran.load(Ordering::Relaxed),
            "the pending turn yielded first"
        );
        assert_eq!(
            second,
            Drained {
                taken: 1_024,
                more: true
            }
        );
        let third = source
            .wait_and_drain(1_024, &mut merger, &mut reports)
            .await
            .unwrap();
        assert_eq!(
            third,
            Drained {
                taken: 952,
                more: false
            }
        );
        assert_eq!(merger.stats().observations, 3_000);
        other.await.unwrap();
        // Nothing pending: a drain tick takes nothing and asks for no further turn.
        assert_eq!(
            source.drain(1_024, &mut merger, &mut reports),
            Drained::default()
        );
    }
}
