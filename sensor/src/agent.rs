//! The agent: loads the XDP program, attaches it, drains its ring buffer into the scan merger,
//! and streams the resulting events to the output, until shutdown.
//!
//! Tasks and channels:
//! ```text
//! ring buffer ──(AsyncFd wakeup | drain tick)──► drain loop ─ Merger ─► mpsc<Event> ─► terminal
//!                                                    ▲ stats tick: kernel counters, loss warnings
//! ```

use std::{path::PathBuf, time::Duration};

use aya::maps::{MapData, RingBuf};
use serde_json::json;
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
    task::JoinHandle,
};

use crate::{
    capture::{
        counters::CounterSnapshot,
        decode::decode,
        xdp::{self, LoadOptions, XdpError},
    },
    clock::{WallClock, monotonic_ns},
    config::{Config, XdpMode},
    output::terminal::{self, OutputError},
    scan::{Merger, MergerStats, ScanReport, to_event},
    shutdown::CancellationToken,
};

/// Capacity of the queue between the merger and the output.
const EVENT_QUEUE: usize = 4096;

/// Runtime choices made on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Interfaces to attach to; empty means the configuration's.
    pub interfaces: Vec<String>,
    /// Attach mode; `None` means the configuration's.
    pub mode: Option<XdpMode>,
    /// Where to write counters as JSON at every stats tick and at exit.
    pub stats_file: Option<PathBuf>,
}

/// The agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Nothing to attach to.
    #[error(
        "no interface to watch: name one with -i IFACE or set `interface` in the configuration"
    )]
    NoInterface,
    /// Loading or attaching failed.
    #[error(transparent)]
    Xdp(#[from] XdpError),
    /// The ring buffer could not be registered with the runtime.
    #[error("registering the ring buffer with the event loop failed: {0}")]
    Poll(#[source] std::io::Error),
    /// The output failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The output task panicked or was cancelled.
    #[error("the output task ended abnormally: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What a run did, reported at exit.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Final kernel counters.
    pub kernel: CounterSnapshot,
    /// Merger counters.
    pub merger: MergerStats,
    /// Records that did not decode.
    pub undecodable: u64,
    /// Events written by the output.
    pub events: u64,
}

impl RunSummary {
    /// As JSON, for `--stats-file`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "kernel": self.kernel.to_json(),
            "merger": {
                "observations": self.merger.observations,
                "reports": self.merger.reports,
                "follow_ups": self.merger.follow_ups,
                "below_threshold": self.merger.below_threshold,
                "evicted": self.merger.evicted,
            },
            "undecodable_records": self.undecodable,
            "events": self.events,
        })
    }
}

/// Runs the sensor until `shutdown` is cancelled, writing events to standard output.
///
/// # Errors
/// [`AgentError`] when the program cannot be loaded or attached, or the output fails.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunSummary, AgentError> {
    run_with_writer(config, options, shutdown, tokio::io::stdout()).await
}

/// [`run`] with an explicit event writer.
///
/// # Errors
/// As [`run`].
pub async fn run_with_writer<W>(
    config: Config,
    options: RunOptions,
    shutdown: CancellationToken,
    writer: W,
) -> Result<RunSummary, AgentError>
where
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let interfaces = if options.interfaces.is_empty() {
        config.xdp_interfaces()
    } else {
        options.interfaces.clone()
    };
    if interfaces.is_empty() {
        return Err(AgentError::NoInterface);
    }
    let xdp_cfg = &config.sensor.xdp;
    let mut loaded = xdp::load(&LoadOptions {
        ring_buffer_bytes: xdp_cfg.ring_buffer_bytes,
        settings: sensor_common::Settings {
            dedup_window_ns: xdp_cfg.dedup_window_ms.saturating_mul(1_000_000),
            source_budget: xdp_cfg.source_budget,
            cpu_budget: xdp_cfg.cpu_budget,
            wakeup_bytes: xdp_cfg.wakeup_bytes,
            allowlist_enabled: 0,
        },
        allowlist: config.whitelist_ips.clone(),
    })?;
    let mode = options.mode.unwrap_or(xdp_cfg.mode);
    for iface in &interfaces {
        let attached = loaded.attach(iface, mode)?;
        tracing::info!(interface = %iface, mode = attached.as_str(), "XDP program attached.");
    }
    let records = loaded
        .records
        .take()
        .ok_or(XdpError::MissingMap(sensor_common::RECORDS_MAP))?;
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as long as the
    // AsyncFd owns the ring buffer.
    let mut records = unsafe { AsyncFd::register_with_interest(records, Interest::READABLE) }
        .map_err(|e| AgentError::Poll(std::io::Error::other(e.to_string())))?;

    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let output: JoinHandle<Result<u64, OutputError>> =
        tokio::spawn(terminal::run(rx, config.id.clone(), writer));

    let mut merger = Merger::new(&config.sensor.portscan);
    let mut state = DrainState {
        undecodable: 0,
        reports: Vec::new(),
        tx,
    };
    let mut drain_tick = tokio::time::interval(Duration::from_millis(xdp_cfg.drain_interval_ms));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stats_period = Duration::from_secs(xdp_cfg.stats_interval_secs.max(1));
    let mut stats_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + stats_period, stats_period);
    let mut last_counters = loaded.counters()?;
    tracing::info!(interfaces = ?interfaces, "Sensor ready.");

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            guard = records.readable_mut() => {
                let mut guard = guard.map_err(AgentError::Poll)?;
                state.drain(guard.get_inner_mut(), &mut merger).await;
                guard.clear_ready();
            }
            _ = drain_tick.tick() => {
                state.drain(records.get_mut(), &mut merger).await;
                merger.sweep(monotonic_ns(), &mut state.reports);
                state.emit().await;
            }
            _ = stats_tick.tick(), if xdp_cfg.stats_interval_secs > 0 => {
                let now = loaded.counters()?;
                report_counters(&now.since(&last_counters), &merger);
                last_counters = now;
                if let Some(path) = &options.stats_file {
                    let summary = RunSummary { kernel: now, merger: merger.stats(), undecodable: state.undecodable, events: 0 };
                    write_stats(path, &summary);
                }
            }
        }
    }

    // Stop new records first, then take everything still in the ring, then close every scan.
    loaded.detach_all();
    state.drain(records.get_mut(), &mut merger).await;
    merger.flush(&mut state.reports);
    state.emit().await;
    let undecodable = state.undecodable;
    drop(state);
    let events = output.await??;
    let kernel = loaded.counters()?;
    report_counters(&kernel.since(&last_counters), &merger);
    let summary = RunSummary {
        kernel,
        merger: merger.stats(),
        undecodable,
        events,
    };
    tracing::info!(
        kernel = %summary.kernel.to_json(),
        events = summary.events,
        scans_reported = summary.merger.reports,
        "Sensor stopped."
    );
    if let Some(path) = &options.stats_file {
        write_stats(path, &summary);
    }
    Ok(summary)
}

/// The drain loop's state: decoded reports waiting for the output.
struct DrainState {
    undecodable: u64,
    reports: Vec<ScanReport>,
    tx: mpsc::Sender<crate::event::Event>,
}

impl DrainState {
    /// Takes every record in the ring buffer, folds it into the merger, and emits what is due.
    async fn drain(&mut self, ring: &mut RingBuf<MapData>, merger: &mut Merger) {
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(obs) => merger.observe(&obs, &mut self.reports),
                Err(err) => {
                    self.undecodable += 1;
                    tracing::debug!(error = %err, "Undecodable record skipped.");
                }
            }
        }
        self.emit().await;
    }

    /// Sends pending reports to the output, waiting for room rather than dropping.
    async fn emit(&mut self) {
        if self.reports.is_empty() {
            return;
        }
        let clock = WallClock::now();
        for report in self.reports.drain(..) {
            if self.tx.send(to_event(&report, &clock)).await.is_err() {
                tracing::error!("The output stopped; a port-scan event could not be delivered.");
            }
        }
    }
}

fn report_counters(delta: &CounterSnapshot, merger: &Merger) {
    use sensor_common::Counter;
    if delta.get(Counter::RingBufFull) > 0 {
        tracing::warn!(
            lost = delta.get(Counter::RingBufFull),
            "Ring buffer full: probe records lost; raise sensor.xdp.ring_buffer_bytes."
        );
    }
    if delta.get(Counter::SourceBudget) + delta.get(Counter::CpuBudget) > 0 {
        tracing::warn!(
            source_budget = delta.get(Counter::SourceBudget),
            cpu_budget = delta.get(Counter::CpuBudget),
            "Record budget exceeded: probes not recorded."
        );
    }
    tracing::debug!(kernel = %delta.to_json(), tracked = merger.tracked(), "Counters.");
}

fn write_stats(path: &std::path::Path, summary: &RunSummary) {
    let text = summary.to_json().to_string();
    let tmp = path.with_extension("tmp");
    let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(err) = result {
        tracing::warn!(path = %path.display(), error = %err, "Writing the stats file failed.");
    }
}
