//! The agent: starts the outputs, the emulated services and the capture (XDP, or libpcap as a
//! fallback), folds observations into the scan merger, and streams the resulting events to the
//! outputs, until shutdown.
//!
//! Tasks and channels:
//! ```text
//! ring buffer ──(AsyncFd wakeup | drain tick)──┐
//! libpcap thread ──(bounded batches)────────────┴► drain loop ─ Merger ─► Pipeline ─► Fanout ─┬► queue ─► output task
//! service sessions ──(bounded channel)──────────────────────────────────┘ (incidents)       └► queue ─► output task
//!                                                    ▲ stats tick: kernel counters, loss warnings
//! ```
//!
//! Every exit, a signal or an error, takes the same ordered shutdown ([`Running::stop`]): stop
//! accepting connections and end the sessions (their last events still flow), stop the capture
//! (detach, so no record arrives after the last read) and fold in what it still holds, flush the
//! merger, close the incidents, then let the outputs drain within their deadline. An error is
//! returned only after that.

mod decoys;
mod heartbeat;
pub mod metrics;
mod pipeline;
pub mod privileges;
mod reload;
mod source;
mod stats;
mod systemd;

use std::{path::PathBuf, time::Duration};

use pipeline::Pipeline;
use source::Source;
pub use stats::RunSummary;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    capture::{pcap::PcapError, xdp::XdpError},
    clock::monotonic_ns,
    config::{Config, XdpMode},
    event::Event,
    incident::Tracker,
    output::Fanout,
    scan::Merger,
    services::Services,
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
    /// The configuration file, read again on SIGHUP (none: the embedded default, no reload).
    pub config_path: Option<PathBuf>,
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
    /// The metrics listener could not bind.
    #[error("field `sensor.metrics.listen`: binding {addr} failed: {source}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Giving up root or the capabilities failed.
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegeError),
    /// The connection cap does not fit the open-file limit, even raised.
    #[error("field `sensor.services.max_connections`: {0}")]
    Descriptors(#[source] crate::net::fds::FdError),
}

/// Runs the sensor until `shutdown` is cancelled, streaming events to the configured outputs.
///
/// # Errors
/// [`AgentError`] when a stage cannot start or the capture fails; what had started is shut down
/// in order first, so events already detected still reach the outputs.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunSummary, AgentError> {
    descriptors(config.sensor.services.max_connections)?;
    let interfaces = if options.interfaces.is_empty() {
        config.xdp_interfaces()
    } else {
        options.interfaces.clone()
    };
    if interfaces.is_empty() && options.capture != CaptureMode::None {
        return Err(AgentError::NoInterface);
    }
    let mut hangup = signal(SignalKind::hangup()).map_err(AgentError::Signal)?;
    // Outputs first: every later stage has somewhere to send what it sees.
    let fanout = Fanout::start(&config.effective_outputs(), &config.format_context());
    let mut pipeline = Pipeline::new(
        fanout,
        Tracker::new(&config.sensor.incidents, config.sensor.source_prefix),
    );
    pipeline.breadcrumbs = crate::incident::Breadcrumbs::new(config.sensor.breadcrumbs.clone());
    pipeline.honeytokens = config.sensor.honeytokens.clone();
    let (sink, service_events) = mpsc::channel(SERVICE_QUEUE);
    let poisoning_sink = sink.clone();
    // TCP sessions answer once their events are in every spool (bounded wait).
    let service_sink =
        crate::services::EventSink::durable(sink.clone(), pipeline.fanout.durability());
    let mut running = Running {
        pipeline,
        merger: Merger::new(&config.sensor.portscan)
            .with_source_prefix(config.sensor.source_prefix),
        services: None,
        decoys: None,
        poisoning: None,
        service_events,
        source: Source::Off,
        stats_file: options.stats_file.clone(),
        published: None,
        interfaces: if options.capture == CaptureMode::None {
            Vec::new()
        } else {
            interfaces.clone()
        },
        heartbeat: heartbeat::Heartbeat::new(config.sensor.heartbeat.interval_secs),
        config: config.clone(),
        config_path: options.config_path.clone(),
        sink: service_sink.clone(),
        shutdown: shutdown.clone(),
    };
    let started = async {
        let services =
            crate::services::start(&config.services_plan(), service_sink, &shutdown).await?;
        // A decoy that could not start is an event too: the SOC sees which one is down.
        for down in services.down() {
            let _ignored = sink.try_send(down.event());
        }
        running.decoys = decoys::attach(
            &services,
            |event| {
                let _ignored = sink.try_send(event);
            },
            options.capture == CaptureMode::Xdp,
        );
        running.services = Some(services);
        let watched = if interfaces.is_empty() && !config.interface.is_empty() {
            vec![config.interface.clone()]
        } else {
            interfaces.clone()
        };
        running.poisoning = crate::poisoning::start(
            &config.sensor.poisoning,
            &watched,
            config.hostname.as_deref(),
            poisoning_sink,
            &shutdown,
        );
        running.source = match options.capture {
            CaptureMode::Xdp => Source::xdp(
                &config,
                &interfaces,
                options.mode.unwrap_or(config.sensor.xdp.mode),
            )?,
            CaptureMode::Pcap => Source::pcap(&config, &interfaces)?,
            CaptureMode::None => Source::Off,
        };
        if let Ok(Some(addr)) = config.sensor.metrics.address() {
            let listener = metrics::bind(addr)
                .await
                .map_err(|source| AgentError::Metrics { addr, source })?;
            let refresh = config.sensor.metrics.refresh_secs.max(1);
            let published = metrics::Published::new(
                Duration::from_secs(config.sensor.metrics.output_failing_secs),
                Duration::from_secs(refresh.saturating_mul(3).saturating_add(5)),
            );
            tokio::spawn(metrics::serve(listener, published.clone(), shutdown.clone()));
            tracing::info!(addr = %addr, "Metrics listening (/metrics, /healthz).");
            running.published = Some(published);
        }
        // Everything privileged is done: programs attached, ring buffer open, ports bound.
        let dropped = privileges::drop_privileges(
            config.sensor.run_as.as_deref(),
            &writable_paths(&config, options.stats_file.as_deref()),
        )?;
        tracing::info!(user = %dropped.user, uid = dropped.uid, threads = dropped.threads, "Privileges dropped: no capability left.");
        Ok::<(), AgentError>(())
    }
    .await;
    let outcome = match started.and_then(|()| running.refresh_metrics()) {
        Ok(()) => {
            tracing::info!(interfaces = ?interfaces, "Sensor ready.");
            systemd::ready(&format!("Watching {}.", interfaces.join(", ")));
            running
                .run_until(
                    &config,
                    &shutdown,
                    &mut hangup,
                    options.stats_file.as_deref(),
                )
                .await
        }
        Err(err) => Err(err),
    };
    systemd::stopping();
    if let Err(err) = &outcome {
        tracing::error!(error = %err, "Stopping after an error; events detected so far are delivered first.");
    }
    let summary = running.stop().await;
    outcome.map(|()| summary)
}

/// What the sensor writes after start, handed to `sensor.run_as`: the services' state
/// directory, each spool, each file output and the stats file.
fn writable_paths(config: &Config, stats_file: Option<&std::path::Path>) -> Vec<PathBuf> {
    let mut paths = vec![config.sensor.services.state_dir.clone()];
    for output in config.effective_outputs() {
        if let Some(spool) = &output.spool {
            paths.push(spool.dir.clone());
        }
        if let crate::output::Transport::File(file) = &output.transport {
            paths.push(file.path.clone());
        }
    }
    paths.extend(stats_file.map(std::path::Path::to_owned));
    paths
}

/// Raises the open-file soft limit to the hard one (logged) and refuses a connection cap the
/// result cannot hold ([`crate::net::fds`]).
fn descriptors(max_connections: usize) -> Result<(), AgentError> {
    use crate::net::fds;
    let limit = match fds::raise() {
        Ok(limit) => {
            tracing::info!(soft = limit.soft, hard = limit.hard, "Open-file limit set.");
            Some(limit)
        }
        Err(err) => {
            let current = fds::current().ok();
            tracing::warn!(error = %err, soft = ?current.map(|l| l.soft), "Raising the open-file limit failed; keeping the current one.");
            current
        }
    };
    match limit {
        Some(limit) => {
            fds::check_connections(max_connections, limit.soft).map_err(AgentError::Descriptors)
        }
        None => Ok(()),
    }
}

/// Every stage of a run; [`Running::stop`] takes them down in order.
struct Running {
    pipeline: Pipeline,
    merger: Merger,
    services: Option<Services>,
    /// The any-port decoys' kernel program, when `sensor.decoys` is on and the kernel took it.
    decoys: Option<crate::capture::sk_lookup::Attached>,
    /// The poisoning detection task, when enabled.
    poisoning: Option<tokio::task::JoinHandle<()>>,
    service_events: mpsc::Receiver<Event>,
    source: Source,
    stats_file: Option<PathBuf>,
    /// Where `/metrics` and `/healthz` read from, when the listener is on.
    published: Option<metrics::Published>,
    /// The watched interfaces (empty without capture), for `/healthz`.
    interfaces: Vec<String>,
    /// The periodic `sensor.heartbeat` event.
    heartbeat: heartbeat::Heartbeat,
    /// The configuration in force (what a reload compares with) and where it is read from.
    config: Config,
    config_path: Option<PathBuf>,
    /// Where restarted services send their events, and what stops them.
    sink: crate::services::EventSink,
    shutdown: CancellationToken,
}

impl Running {
    /// The main loop, until `shutdown` or a capture error.
    async fn run_until(
        &mut self,
        config: &Config,
        shutdown: &CancellationToken,
        hangup: &mut tokio::signal::unix::Signal,
        stats_file: Option<&std::path::Path>,
    ) -> Result<(), AgentError> {
        let xdp_cfg = &config.sensor.xdp;
        let mut drain_tick =
            tokio::time::interval(Duration::from_millis(xdp_cfg.drain_interval_ms));
        drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stats_period = Duration::from_secs(xdp_cfg.stats_interval_secs.max(1));
        let mut stats_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + stats_period, stats_period);
        let mut last_counters = self.source.counters()?;
        let refresh = Duration::from_secs(config.sensor.metrics.refresh_secs.max(1));
        let watchdog_period = systemd::watchdog_period();
        let mut watchdog_tick =
            tokio::time::interval(watchdog_period.unwrap_or(Duration::from_secs(3600)));
        let mut metrics_tick = tokio::time::interval(refresh);
        metrics_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watch_period = self.services.as_ref().and_then(Services::decoy_watch);
        let mut watch_tick =
            tokio::time::interval(watch_period.unwrap_or(Duration::from_secs(3600)));
        watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                drained = self.source.wait_and_drain(xdp_cfg.drain_batch, &mut self.merger, &mut self.pipeline.reports) => {
                    drained?;
                    self.pipeline.emit_reports();
                }
                Some(event) = self.service_events.recv() => {
                    self.pipeline.deliver(event);
                }
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reopening output files, reloading the configuration.");
                    self.pipeline.fanout.reopen();
                    if let Some(path) = self.config_path.clone() {
                        self.reload(&path).await;
                    }
                }
                _ = drain_tick.tick() => {
                    self.source.drain(xdp_cfg.drain_batch, &mut self.merger, &mut self.pipeline.reports);
                    self.merger.sweep(monotonic_ns(), &mut self.pipeline.reports);
                    self.pipeline.sweep_incidents();
                    self.pipeline.emit_reports();
                }
                _ = stats_tick.tick(), if xdp_cfg.stats_interval_secs > 0 => {
                    let current = self.source.stats()?;
                    if let (Some(now), Some(last)) = (&current.kernel, &last_counters) {
                        stats::report_counters(&now.since(last), &self.merger);
                    }
                    let summary = self.summary(current);
                    self.publish(&summary);
                    if let Some(path) = stats_file {
                        stats::write_stats(path, &summary).await;
                    }
                    last_counters = current.kernel;
                }
                _ = metrics_tick.tick(), if self.published.is_some() => self.refresh_metrics()?,
                _ = watchdog_tick.tick(), if watchdog_period.is_some() => systemd::watchdog(),
                _ = watch_tick.tick(), if watch_period.is_some() => {
                    if let (Some(attached), Some(services)) = (&mut self.decoys, &mut self.services) {
                        decoys::watch(attached, services);
                    }
                }
                () = self.heartbeat.due() => self.beat()?,
            }
        }
    }

    /// Sends a `sensor.heartbeat` with the counters as of now.
    fn beat(&mut self) -> Result<(), AgentError> {
        let current = self.source.stats()?;
        let summary = self.summary(current);
        let down = self.services.as_ref().map_or(&[][..], Services::down);
        let event = self.heartbeat.event(&summary, down, &self.interfaces);
        self.pipeline.deliver(event);
        Ok(())
    }

    /// Publishes the counters as of now to the metrics listener, if on.
    fn refresh_metrics(&mut self) -> Result<(), AgentError> {
        if self.published.is_some() {
            let current = self.source.stats()?;
            let summary = self.summary(current);
            self.publish(&summary);
        }
        Ok(())
    }

    /// Hands `summary` (what the stats file gets) to the metrics listener, if on.
    fn publish(&self, summary: &RunSummary) {
        let Some(published) = &self.published else {
            return;
        };
        published.publish(metrics::Snapshot {
            counters: summary.to_json(),
            tracked: u64::try_from(self.merger.tracked()).unwrap_or(u64::MAX),
            incidents: u64::try_from(self.pipeline.incidents.len()).unwrap_or(u64::MAX),
            failing: summary
                .outputs
                .iter()
                .map(|o| (o.name.clone(), o.failing_secs))
                .collect(),
            gone: self
                .interfaces
                .iter()
                .filter(|i| !std::path::Path::new("/sys/class/net").join(i).exists())
                .cloned()
                .collect(),
            capturing: !matches!(self.source, Source::Off),
            ring: self.source.ring_fill(),
            at: std::time::Instant::now(),
        });
    }

    fn summary(&self, current: source::SourceStats) -> RunSummary {
        RunSummary {
            kernel: current.kernel,
            pcap: current.pcap,
            merger: self.merger.stats(),
            undecodable: current.undecodable,
            aggregate: current.aggregate,
            events: self.pipeline.events,
            outputs: self.pipeline.fanout.stats(),
            services: self
                .services
                .as_ref()
                .map_or(serde_json::Value::Null, |s| s.counters().to_json()),
        }
    }

    /// The ordered shutdown every exit takes; returns the final counters.
    async fn stop(self) -> RunSummary {
        let Self {
            mut pipeline,
            mut merger,
            services,
            decoys,
            poisoning,
            mut service_events,
            source,
            stats_file,
            ..
        } = self;
        // 0. No more decoy queries; what they found is already queued. No more connections
        // steered to the catch-all listeners, which close next.
        if let Some(task) = poisoning {
            task.abort();
        }
        drop(decoys);
        // 1. Stop accepting and end the sessions; what they emit on the way out still flows.
        let service_counters = services.as_ref().map(Services::counters);
        if let Some(services) = services {
            let stopping = services.stop(SERVICE_GRACE);
            tokio::pin!(stopping);
            loop {
                tokio::select! {
                    () = &mut stopping => break,
                    Some(event) = service_events.recv() => pipeline.deliver(event),
                }
            }
        }
        service_events.close();
        while let Ok(event) = service_events.try_recv() {
            pipeline.deliver(event);
        }
        // 2. Stop the capture (detach first) and fold in every record it still holds.
        let finished = match source.finish(&mut merger, &mut pipeline.reports).await {
            Ok(finished) => finished,
            Err(err) => {
                tracing::error!(error = %err, "Stopping the capture failed; its final counters are missing.");
                source::Finished {
                    kernel: None,
                    pcap: None,
                    undecodable: 0,
                    aggregate: None,
                }
            }
        };
        // 3. Flush the merger: scans still open are reported now.
        merger.flush(&mut pipeline.reports);
        pipeline.emit_reports();
        // 4. Close the incidents (nothing is sent: an incident simply ends with the run).
        let open_incidents = pipeline.incidents.len();
        // 5. Let the outputs drain within their deadline; what they cannot deliver is counted.
        let Pipeline { fanout, events, .. } = pipeline;
        let outputs = fanout.finish(OUTPUT_GRACE).await;
        let summary = RunSummary {
            kernel: finished.kernel,
            pcap: finished.pcap,
            merger: merger.stats(),
            undecodable: finished.undecodable,
            aggregate: finished.aggregate,
            events,
            outputs,
            services: service_counters.map_or(serde_json::Value::Null, |c| c.to_json()),
        };
        tracing::info!(
            counters = %summary.to_json(),
            events = summary.events,
            scans_reported = summary.merger.reports,
            open_incidents,
            "Sensor stopped."
        );
        if let Some(path) = &stats_file {
            stats::write_stats(path, &summary).await;
        }
        summary
    }
}
