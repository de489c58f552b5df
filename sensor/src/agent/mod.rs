//! The agent: starts the capture (XDP, or libpcap as a fallback), folds observations into the
//! scan merger,
//! and streams the resulting events to the output, until shutdown.
//!
//! Tasks and channels:
//! ```text
//! ring buffer ──(AsyncFd wakeup | drain tick)──┐
//! libpcap thread ──(bounded batches)────────────┴► drain loop ─ Merger ─► Fanout ─┬► queue ─► output task
//!                                                                                 └► queue ─► output task
//!                                                    ▲ stats tick: kernel counters, loss warnings
//! ```

mod source;

use std::{path::PathBuf, time::Duration};

use serde_json::json;
use source::Source;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    capture::{counters::CounterSnapshot, pcap::PcapError, pcap::PcapStats, xdp::XdpError},
    clock::{WallClock, monotonic_ns},
    config::{Config, XdpMode},
    event::Event,
    incident::Tracker,
    output::{Fanout, OutputStats},
    scan::{Merger, MergerStats, ScanReport, to_event},
    shutdown::CancellationToken,
};

/// Events from the services waiting for the outputs; sessions wait when it is full.
const SERVICE_QUEUE: usize = 4_096;
/// How long sessions may take to end at shutdown.
const SERVICE_GRACE: Duration = Duration::from_secs(2);

/// How long outputs may keep retrying at shutdown before what they hold counts as dropped.
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// How packets are captured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CaptureMode {
    /// The XDP program (default).
    #[default]
    Xdp,
    /// libpcap: the fallback for hosts without XDP; slower, loses packets earlier.
    Pcap,
    /// No packet capture: the emulated services only (no scan detection).
    None,
}

impl std::str::FromStr for CaptureMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "xdp" => Ok(Self::Xdp),
            "pcap" => Ok(Self::Pcap),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown capture `{other}` (expected xdp, pcap or none)"
            )),
        }
    }
}

/// Runtime choices made on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Interfaces to attach to; empty means the configuration's.
    pub interfaces: Vec<String>,
    /// Attach mode; `None` means the configuration's.
    pub mode: Option<XdpMode>,
    /// Capture engine.
    pub capture: CaptureMode,
    /// Where to write counters as JSON at every stats tick and at exit.
    pub stats_file: Option<PathBuf>,
}

/// The agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Nothing to attach to.
    #[error(
        "no interface to watch: name one with -i IFACE or set `interface` in the configuration \
         (or run the emulated services alone with --capture none)"
    )]
    NoInterface,
    /// Loading or attaching failed.
    #[error(transparent)]
    Xdp(#[from] XdpError),
    /// libpcap failed.
    #[error(transparent)]
    Pcap(#[from] PcapError),
    /// The ring buffer could not be registered with the runtime.
    #[error("registering the ring buffer with the event loop failed: {0}")]
    Poll(#[source] std::io::Error),
    /// An emulated service could not start.
    #[error(transparent)]
    Services(#[from] crate::services::ServiceError),
    /// A signal handler could not be installed.
    #[error("installing the SIGHUP handler failed: {0}")]
    Signal(#[source] std::io::Error),
}

/// What a run did, reported at exit.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Final kernel counters (XDP capture).
    pub kernel: Option<CounterSnapshot>,
    /// Final libpcap counters (pcap capture).
    pub pcap: Option<PcapStats>,
    /// Merger counters.
    pub merger: MergerStats,
    /// Records that did not decode.
    pub undecodable: u64,
    /// Events handed to the outputs.
    pub events: u64,
    /// Per-output counters.
    pub outputs: Vec<OutputStats>,
    /// Emulated-service counters (connections admitted, refused, timed out, ...).
    pub services: serde_json::Value,
}

impl RunSummary {
    /// As JSON, for `--stats-file`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "kernel": self.kernel.map(|k| k.to_json()),
            "pcap": self.pcap.map(|p| p.to_json()),
            "merger": {
                "observations": self.merger.observations,
                "reports": self.merger.reports,
                "follow_ups": self.merger.follow_ups,
                "below_threshold": self.merger.below_threshold,
                "evicted": self.merger.evicted,
            },
            "undecodable_records": self.undecodable,
            "events": self.events,
            "outputs": self.outputs.iter().map(OutputStats::to_json).collect::<Vec<_>>(),
            "services": self.services,
        })
    }
}

/// Runs the sensor until `shutdown` is cancelled, streaming events to the configured outputs.
///
/// # Errors
/// [`AgentError`] when the capture cannot start.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunSummary, AgentError> {
    let interfaces = if options.interfaces.is_empty() {
        config.xdp_interfaces()
    } else {
        options.interfaces.clone()
    };
    if interfaces.is_empty() && options.capture != CaptureMode::None {
        return Err(AgentError::NoInterface);
    }
    let xdp_cfg = &config.sensor.xdp;
    let (sink, mut service_events) = mpsc::channel(SERVICE_QUEUE);
    let services = crate::services::start(&config, sink, &shutdown).await?;
    let mut source = match options.capture {
        CaptureMode::Xdp => {
            Source::xdp(&config, &interfaces, options.mode.unwrap_or(xdp_cfg.mode))?
        }
        CaptureMode::Pcap => Source::pcap(&config, &interfaces)?,
        CaptureMode::None => Source::Off,
    };

    let fanout = Fanout::start(&config.effective_outputs(), &config.format_context());
    let mut hangup = signal(SignalKind::hangup()).map_err(AgentError::Signal)?;
    let mut events = 0u64;

    let mut merger = Merger::new(&config.sensor.portscan);
    let mut incidents = Tracker::new(&config.sensor.incidents);
    let mut reports = Vec::new();
    let mut drain_tick = tokio::time::interval(Duration::from_millis(xdp_cfg.drain_interval_ms));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stats_period = Duration::from_secs(xdp_cfg.stats_interval_secs.max(1));
    let mut stats_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + stats_period, stats_period);
    let mut last_counters = source.counters()?;
    tracing::info!(interfaces = ?interfaces, "Sensor ready.");

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            drained = source.wait_and_drain(&mut merger, &mut reports) => {
                drained?;
                events += emit(&fanout, &mut incidents, &mut reports);
            }
            Some(event) = service_events.recv() => {
                deliver(&fanout, &mut incidents, event);
                events += 1;
            }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reopening output files.");
                fanout.reopen();
            }
            _ = drain_tick.tick() => {
                source.drain_now(&mut merger, &mut reports);
                merger.sweep(monotonic_ns(), &mut reports);
                incidents.sweep(monotonic_ns());
                events += emit(&fanout, &mut incidents, &mut reports);
            }
            _ = stats_tick.tick(), if xdp_cfg.stats_interval_secs > 0 => {
                let now = source.counters()?;
                if let (Some(now), Some(last)) = (&now, &last_counters) {
                    report_counters(&now.since(last), &merger);
                }
                last_counters = now;
                if let Some(path) = &options.stats_file {
                    let summary = RunSummary { kernel: now, pcap: None, merger: merger.stats(), undecodable: 0, events, outputs: fanout.stats(), services: services.counters().to_json() };
                    write_stats(path, &summary);
                }
            }
        }
    }

    // Sessions end now; what they emitted on the way out still reaches the outputs.
    let service_counters = services.counters();
    let stopping = services.stop(SERVICE_GRACE);
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            () = &mut stopping => break,
            Some(event) = service_events.recv() => {
                deliver(&fanout, &mut incidents, event);
                events += 1;
            }
        }
    }
    while let Ok(event) = service_events.try_recv() {
        deliver(&fanout, &mut incidents, event);
        events += 1;
    }
    let finished = source.finish(&mut merger, &mut reports)?;
    merger.flush(&mut reports);
    events += emit(&fanout, &mut incidents, &mut reports);
    let outputs = fanout.finish(OUTPUT_GRACE).await;
    if let (Some(now), Some(last)) = (&finished.kernel, &last_counters) {
        report_counters(&now.since(last), &merger);
    }
    let summary = RunSummary {
        kernel: finished.kernel,
        pcap: finished.pcap,
        merger: merger.stats(),
        undecodable: finished.undecodable,
        events,
        outputs,
        services: service_counters.to_json(),
    };
    tracing::info!(
        counters = %summary.to_json(),
        events = summary.events,
        scans_reported = summary.merger.reports,
        "Sensor stopped."
    );
    if let Some(path) = &options.stats_file {
        write_stats(path, &summary);
    }
    Ok(summary)
}

/// Hands pending reports to the outputs as events; returns how many.
fn emit(fanout: &Fanout, incidents: &mut Tracker, reports: &mut Vec<ScanReport>) -> u64 {
    if reports.is_empty() {
        return 0;
    }
    let clock = WallClock::now();
    let mut n = 0;
    for report in reports.drain(..) {
        deliver(fanout, incidents, to_event(&report, &clock));
        n += 1;
    }
    n
}

/// Sends an event, folds it into its source's incident, and sends the incident message when
/// the incident is new or its severity rose.
fn deliver(fanout: &Fanout, incidents: &mut Tracker, event: Event) {
    let incident = incidents.observe(&event, monotonic_ns());
    fanout.send(event);
    if let Some(incident) = incident {
        tracing::info!(
            incident = %incident.id,
            action = incident.action.as_str(),
            severity = incident.severity.as_str(),
            source = %incident.src_ip,
            "{}",
            incident.description
        );
        fanout.send(incident);
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
