//! Where observations come from while the agent runs: the XDP ring buffer or live libpcap.

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

use super::AgentError;
use crate::{
    capture::{
        Observation,
        counters::CounterSnapshot,
        decode::decode,
        pcap::{LiveCapture, PcapStats},
        xdp::{LoadOptions, Loaded, XdpError, load},
    },
    config::{Config, XdpMode},
    scan::{Merger, ScanReport},
};

/// Depth of the queue between the pcap thread and the agent, in batches of up to 1024.
const PCAP_QUEUE: usize = 64;

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
    },
    /// libpcap on each interface, through a bounded channel.
    Pcap {
        /// One capture thread per interface.
        captures: Vec<LiveCapture>,
        /// Batches from all of them.
        rx: mpsc::Receiver<Vec<Observation>>,
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
                allowlist_enabled: 0,
            },
            allowlist: config.whitelist_ips.clone(),
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
        Ok(Self::Xdp {
            loaded,
            records,
            undecodable: 0,
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
        Ok(Self::Pcap { captures, rx })
    }

    /// Waits until observations are available and folds them into the merger.
    pub(super) async fn wait_and_drain(
        &mut self,
        merger: &mut Merger,
        reports: &mut Vec<ScanReport>,
    ) -> Result<(), AgentError> {
        match self {
            Self::Xdp {
                records,
                undecodable,
                ..
            } => {
                let mut guard = records.readable_mut().await.map_err(AgentError::Poll)?;
                drain_ring(guard.get_inner_mut(), merger, reports, undecodable);
                guard.clear_ready();
            }
            Self::Pcap { rx, .. } => match rx.recv().await {
                Some(batch) => batch.iter().for_each(|o| merger.observe(o, reports)),
                // Every capture thread ended: wait for shutdown without spinning.
                None => std::future::pending().await,
            },
            Self::Off => std::future::pending().await,
        }
        Ok(())
    }

    /// Folds whatever is available now (drain tick).
    pub(super) fn drain_now(&mut self, merger: &mut Merger, reports: &mut Vec<ScanReport>) {
        match self {
            Self::Xdp {
                records,
                undecodable,
                ..
            } => {
                drain_ring(records.get_mut(), merger, reports, undecodable);
            }
            Self::Pcap { rx, .. } => {
                while let Ok(batch) = rx.try_recv() {
                    batch.iter().for_each(|o| merger.observe(o, reports));
                }
            }
            Self::Off => {}
        }
    }

    /// Kernel counters, for the XDP source.
    pub(super) fn counters(&self) -> Result<Option<CounterSnapshot>, AgentError> {
        match self {
            Self::Xdp { loaded, .. } => Ok(Some(loaded.counters()?)),
            Self::Pcap { .. } | Self::Off => Ok(None),
        }
    }

    /// Stops capturing, folds in everything still queued, and returns the final counters.
    pub(super) fn finish(
        self,
        merger: &mut Merger,
        reports: &mut Vec<ScanReport>,
    ) -> Result<Finished, AgentError> {
        match self {
            Self::Off => Ok(Finished {
                kernel: None,
                pcap: None,
                undecodable: 0,
            }),
            Self::Xdp {
                mut loaded,
                mut records,
                mut undecodable,
            } => {
                // Stop new records first, then take everything still in the ring.
                loaded.detach_all();
                drain_ring(records.get_mut(), merger, reports, &mut undecodable);
                Ok(Finished {
                    kernel: Some(loaded.counters()?),
                    pcap: None,
                    undecodable,
                })
            }
            Self::Pcap { captures, mut rx } => {
                captures.iter().for_each(LiveCapture::request_stop);
                // Keep draining while a thread may be blocked on the full channel; each one
                // ends within one poll interval.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !captures.iter().all(LiveCapture::is_finished)
                    && std::time::Instant::now() < deadline
                {
                    while let Ok(batch) = rx.try_recv() {
                        batch.iter().for_each(|o| merger.observe(o, reports));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                rx.close();
                while let Ok(batch) = rx.try_recv() {
                    batch.iter().for_each(|o| merger.observe(o, reports));
                }
                let mut total = PcapStats::default();
                for capture in captures {
                    total.add(&capture.join()?);
                }
                Ok(Finished {
                    kernel: None,
                    pcap: Some(total),
                    undecodable: 0,
                })
            }
        }
    }
}

/// Final counters of a source.
pub(super) struct Finished {
    pub(super) kernel: Option<CounterSnapshot>,
    pub(super) pcap: Option<PcapStats>,
    pub(super) undecodable: u64,
}

fn drain_ring(
    ring: &mut RingBuf<MapData>,
    merger: &mut Merger,
    reports: &mut Vec<ScanReport>,
    undecodable: &mut u64,
) {
    while let Some(item) = ring.next() {
        match decode(&item) {
            Ok(obs) => merger.observe(&obs, reports),
            Err(err) => {
                *undecodable += 1;
                tracing::debug!(error = %err, "Undecodable record skipped.");
            }
        }
    }
}
