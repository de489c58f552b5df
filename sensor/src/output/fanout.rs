//! The fan-out: one bounded [`OutputQueue`] and one driver task per output. [`Fanout::send`]
//! is a plain function that never waits: each output's [`WhenFull`](super::WhenFull) policy
//! decides at once what happens when its queue is full, and every drop is counted, so one dead
//! or slow receiver never stalls detection, the services or the other outputs.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{sync::broadcast, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{
    Filter, Message, OutputConfig, Transport, WhenFull, driver,
    durable::Durability,
    ledger::Snapshot,
    queue::{self, Counters, OutputQueue, Pushed},
};
use crate::format::FormatContext;

/// How long past its grace period an output's writer may take to notice it should give up
/// before its task is aborted.
const ABORT_AFTER: Duration = Duration::from_secs(1);

/// One output's counters, read at one moment ([`Snapshot`]: `received + recovered = sent +
/// dropped + queued + in_spool` holds in every reading), with its name and health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputStats {
    /// Output name.
    pub name: String,
    /// Transport kind.
    pub kind: &'static str,
    /// The ledger's counters, read under its lock.
    pub counts: Snapshot,
    /// Write retries (outside the identity).
    pub retried: u64,
    /// How long its writes have been failing, seconds; `None` while delivering (not in
    /// `to_json`: health, not a counter).
    pub failing_secs: Option<u64>,
}

impl OutputStats {
    fn of(name: &str, kind: &'static str, c: &Counters) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            counts: c.snapshot(),
            retried: c.retried.load(Ordering::Relaxed),
            failing_secs: c.failing_for_secs(),
        }
    }

    /// As JSON.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let c = &self.counts;
        json!({"name": self.name, "type": self.kind, "received": c.received,
               "recovered": c.recovered, "sent": c.sent, "retried": self.retried,
               "dropped": c.dropped, "dropped_queue_full": c.dropped_queue_full,
               "spooled": c.spooled, "queued": c.queued, "in_spool": c.in_spool})
    }
}

struct Handle {
    name: String,
    kind: &'static str,
    filter: Filter,
    queue: Arc<OutputQueue>,
    /// Writes every message to a spool first (cleared when the spool cannot be used).
    spools: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<()>,
    expiry: Option<JoinHandle<()>>,
}

/// Every configured output, each behind its own queue and task.
pub struct Fanout {
    handles: Vec<Handle>,
    reopen: broadcast::Sender<()>,
    give_up: CancellationToken,
    durability: Arc<Durability>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("outputs", &self.handles.len())
            .finish_non_exhaustive()
    }
}

impl Fanout {
    /// Starts one task per output. Must be called inside a tokio runtime.
    #[must_use]
    pub fn start(outputs: &[OutputConfig], ctx: &FormatContext) -> Self {
        let (reopen, _) = broadcast::channel(4);
        let give_up = CancellationToken::new();
        // File and terminal outputs never spool (they write through).
        let spools = |c: &OutputConfig| {
            c.spool.is_some() && !matches!(c.transport, Transport::File(_) | Transport::Terminal)
        };
        let durability = Durability::new(outputs.iter().filter(|c| spools(c)).count());
        let handles = outputs
            .iter()
            .enumerate()
            .map(|(i, cfg)| {
                let name = cfg
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}-{i}", cfg.transport.kind()));
                let queue = Arc::new(OutputQueue::new(
                    cfg.queue_size,
                    cfg.when_full,
                    Duration::from_millis(cfg.block_ms),
                    Arc::new(Counters::default()),
                ));
                let expiry = (cfg.when_full == WhenFull::Block)
                    .then(|| tokio::spawn(queue::run_expiry(queue.clone())));
                let spools = Arc::new(std::sync::atomic::AtomicBool::new(spools(cfg)));
                let task = tokio::spawn(run_output(driver::Driver {
                    cfg: cfg.clone(),
                    name: name.clone(),
                    ctx: ctx.clone(),
                    queue: queue.clone(),
                    reopen: reopen.subscribe(),
                    give_up: give_up.clone(),
                    durability: durability.clone(),
                    spools: spools.clone(),
                }));
                Handle {
                    name,
                    kind: cfg.transport.kind(),
                    filter: cfg.filter(),
                    queue,
                    spools,
                    task,
                    expiry,
                }
            })
            .collect();
        Self {
            handles,
            reopen,
            give_up,
            durability,
        }
    }

    /// Where sessions wait for their events to reach the spooled outputs' disks.
    #[must_use]
    pub fn durability(&self) -> Arc<Durability> {
        self.durability.clone()
    }

    /// Hands a message (an event or an incident) to every output that takes it, applying each
    /// one's full-queue policy. Never waits. A session waiting for this event
    /// ([`Durability`]) is released once every spooled output that takes it has it on disk, or
    /// at once when none takes it or its queue dropped it (counted there).
    pub fn send(&self, message: impl Into<Message>) {
        let message = Arc::new(message.into());
        let event_id = match message.as_ref() {
            Message::Event(e) => Some(e.id),
            Message::Incident(_) => None,
        };
        let durable = |h: &Handle| h.spools.load(Ordering::Relaxed);
        if let Some(id) = event_id {
            let spooled = self
                .handles
                .iter()
                .filter(|h| durable(h) && h.filter.accepts(&message))
                .count();
            self.durability.routed(id, spooled);
        }
        for h in &self.handles {
            if h.filter.accepts(&message) {
                let pushed = h.queue.push(message.clone());
                if pushed == Pushed::Dropped
                    && durable(h)
                    && let Some(id) = event_id
                {
                    self.durability.stored(id);
                }
            }
        }
    }

    /// Asks file outputs to reopen their files (SIGHUP, after logrotate).
    pub fn reopen(&self) {
        let _ = self.reopen.send(());
    }

    /// Current counters of every output.
    #[must_use]
    pub fn stats(&self) -> Vec<OutputStats> {
        self.handles
            .iter()
            .map(|h| OutputStats::of(&h.name, h.kind, h.queue.counters()))
            .collect()
    }

    /// Closes the queues and lets every output drain for up to `grace`; then outputs still
    /// failing give up, and what they still hold (queued, waiting or in flight) counts as
    /// dropped. What a spooled output leaves in its spool stays on disk and is not dropped:
    /// `received + recovered = sent + dropped + in_spool` for every output (nothing is
    /// `queued` any more).
    pub async fn finish(self, grace: Duration) -> Vec<OutputStats> {
        let Self {
            handles, give_up, ..
        } = self;
        for h in &handles {
            h.queue.close();
        }
        let deadline = tokio::time::Instant::now() + grace;
        let cancel = give_up.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            cancel.cancel();
        });
        let mut stats = Vec::with_capacity(handles.len());
        for mut h in handles {
            match tokio::time::timeout_at(deadline + ABORT_AFTER, &mut h.task).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::error!(output = %h.name, error = %err, "An output task ended abnormally.");
                }
                Err(_) => {
                    tracing::warn!(output = %h.name, "Output still writing after its grace period; stopped.");
                    h.task.abort();
                    let _ = (&mut h.task).await;
                }
            }
            if let Some(expiry) = h.expiry.take() {
                expiry.abort();
            }
            let left = h.queue.abandon();
            if left > 0 {
                tracing::warn!(output = %h.name, dropped = left, "Output stopped with undelivered messages; dropped.");
            }
            stats.push(OutputStats::of(&h.name, h.kind, h.queue.counters()));
        }
        timer.abort();
        stats
    }
}

/// Builds the output's sink and runs it: from its disk spool when it has one (and the sink can
/// spool), straight from its queue otherwise.
async fn run_output(d: driver::Driver) {
    let sink = super::sink::build(&d.cfg, &d.name, &d.ctx);
    if let Some(spool) = d.cfg.spool.clone()
        && sink.spools()
    {
        let dir = spool.dir.clone();
        match tokio::task::spawn_blocking(move || {
            super::spool::Spool::open(&spool.dir, spool.max_bytes)
        })
        .await
        {
            Ok(Ok(spool)) => return super::spooled::run(sink, spool, d).await,
            Ok(Err(err)) => {
                tracing::error!(output = %d.name, dir = %dir.display(), error = %err, "Cannot open the spool; delivering without it.");
            }
            Err(err) => {
                tracing::error!(output = %d.name, error = %err, "Opening the spool failed.");
            }
        }
    }
    if d.spools.swap(false, Ordering::Relaxed) {
        // Configured with a spool it cannot use: best effort, nobody waits for it.
        d.durability.spool_unavailable();
    }
    driver::run(sink, d).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Fanout;
    use crate::{
        format::{Format, FormatContext, golden},
        output::{OutputConfig, Transport, WhenFull, sink::file::FileConfig},
    };

    fn file_output(path: &std::path::Path, format: Format) -> OutputConfig {
        OutputConfig::new(
            format,
            Transport::File(FileConfig {
                path: path.to_path_buf(),
                mode: None,
                truncate: false,
            }),
        )
    }

    #[tokio::test]
    async fn several_outputs_each_get_every_event_in_their_format() {
        let dir = std::env::temp_dir().join(format!("sensor-fanout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.ndjson"), dir.join("b.cef"));
        let fanout = Fanout::start(
            &[
                file_output(&a, Format::Default),
                file_output(&b, Format::Cef),
            ],
            &FormatContext::for_device("s1"),
        );
        for event in golden::catalogue_events().into_iter().cycle().take(100) {
            fanout.send(event);
        }
        let stats = fanout.finish(Duration::from_secs(5)).await;
        assert!(
            stats
                .iter()
                .all(|s| s.counts.received == 100 && s.counts.sent == 100 && s.counts.dropped == 0),
            "{stats:?}"
        );
        assert_eq!(std::fs::read_to_string(&a).unwrap().lines().count(), 100);
        let cef = std::fs::read_to_string(&b).unwrap();
        assert_eq!(cef.lines().count(), 100);
        assert!(cef.lines().all(|l| l.starts_with("CEF:0|")));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_session_is_released_once_its_event_is_in_the_spool() {
        let dir = std::env::temp_dir().join(format!("sensor-fanout-dur-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // An api output whose receiver is down (a port nobody listens on), with a spool, and
        // a file output (best effort, never waited for).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let api: OutputConfig = serde_json::from_value(serde_json::json!({
            "format": "trapster",
            "transport": {"type": "api", "url": format!("http://127.0.0.1:{port}/e")},
            "spool": {"dir": dir.join("spool")}
        }))
        .unwrap();
        let fanout = Fanout::start(
            &[api, file_output(&dir.join("f.ndjson"), Format::Default)],
            &FormatContext::for_device("s1"),
        );
        let durability = fanout.durability();
        let event = golden::catalogue_events().remove(0);
        let id = event.id;
        let rx = durability
            .expect(id)
            .unwrap()
            .expect("a spooled output to wait for");
        fanout.send(event);
        assert_eq!(durability.confirmed(id, rx).await, Ok(()));
        let spooled = std::fs::read_dir(dir.join("spool"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect::<String>();
        assert!(spooled.contains(&id.to_string()), "{spooled}");
        assert_eq!(durability.waiting(), 0);
        let _ = fanout.finish(Duration::from_millis(100)).await;
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn without_a_spooled_output_nothing_waits() {
        let dir = std::env::temp_dir().join(format!("sensor-fanout-nodur-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut file = file_output(&dir.join("f.ndjson"), Format::Default);
        // A file output writes through: a spool setting changes nothing.
        file.spool = Some(crate::output::SpoolConfig {
            dir: dir.join("spool"),
            max_bytes: 1 << 20,
        });
        let fanout = Fanout::start(&[file], &FormatContext::for_device("s1"));
        assert!(!fanout.durability().is_needed());
        assert!(
            fanout
                .durability()
                .expect(uuid::Uuid::new_v4())
                .unwrap()
                .is_none()
        );
        let _ = fanout.finish(Duration::from_secs(1)).await;
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_output_drops_and_counts_without_blocking_the_others() {
        let dir = std::env::temp_dir().join(format!("sensor-fanout-dead-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.ndjson");
        let mut dead = file_output(
            std::path::Path::new("/nonexistent-dir/events"),
            Format::Default,
        );
        dead.queue_size = 10;
        dead.when_full = WhenFull::DropNewest;
        let fanout = Fanout::start(
            &[dead, file_output(&good, Format::Default)],
            &FormatContext::for_device("s1"),
        );
        for event in golden::catalogue_events().into_iter().cycle().take(50) {
            fanout.send(event);
        }
        let stats = fanout.finish(Duration::from_secs(2)).await;
        let (dead, good_stats) = (&stats[0], &stats[1]);
        assert_eq!(good_stats.counts.sent, 50);
        assert_eq!(dead.counts.sent, 0);
        // `send` never waited: the queue of 10 took the first ten, the 40 others were dropped
        // at once (the driver did not run in between), and what was queued is given up after
        // the grace period: every event is accounted for as dropped.
        assert_eq!(dead.counts.received, 50, "{dead:?}");
        assert_eq!(dead.counts.dropped_queue_full, 40, "{dead:?}");
        assert_eq!(dead.counts.dropped, 50, "{dead:?}");
        assert_eq!(std::fs::read_to_string(&good).unwrap().lines().count(), 50);
        std::fs::remove_dir_all(&dir).ok();
    }
}
