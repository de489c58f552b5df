//! The fan-out: one bounded queue and one task per output. Sending applies each output's
//! [`WhenFull`] policy; every stage counts what it received, sent, retried and dropped.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::BytesMut;
use serde_json::{Value, json};
use tokio::{
    sync::{broadcast, mpsc},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::{
    Filter, Message, OutputConfig, Transport, WhenFull,
    api::ApiOutput,
    file::FileOutput,
    redis::{RedisOutput, first_backoff, jittered, next_backoff},
    spool::Spool,
    terminal,
};
use crate::{
    event::Event,
    format::{self, FormatContext},
};

/// Counters of one output.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
    spooled: AtomicU64,
}

/// A snapshot of one output's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputStats {
    /// Output name.
    pub name: String,
    /// Transport kind.
    pub kind: &'static str,
    /// Events accepted into its queue.
    pub received: u64,
    /// Events written.
    pub sent: u64,
    /// Write retries.
    pub retried: u64,
    /// Events dropped: queue or spool full, refused by the receiver, or given up at shutdown.
    pub dropped: u64,
    /// Events written to the disk spool.
    pub spooled: u64,
}

impl OutputStats {
    /// As JSON.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "type": self.kind, "received": self.received, "sent": self.sent,
               "retried": self.retried, "dropped": self.dropped, "spooled": self.spooled})
    }
}

struct Handle {
    name: String,
    kind: &'static str,
    when_full: WhenFull,
    tx: mpsc::Sender<Arc<Message>>,
    filter: Filter,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Handle {
    fn stats(&self) -> OutputStats {
        let c = &self.counters;
        OutputStats {
            name: self.name.clone(),
            kind: self.kind,
            received: c.received.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            spooled: c.spooled.load(Ordering::Relaxed),
        }
    }
}

/// Every configured output, each behind its own queue and task.
pub struct Fanout {
    handles: Vec<Handle>,
    reopen: broadcast::Sender<()>,
    give_up: CancellationToken,
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
        let handles = outputs
            .iter()
            .enumerate()
            .map(|(i, cfg)| {
                let name = cfg
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}-{i}", cfg.transport.kind()));
                let (tx, rx) = mpsc::channel(cfg.queue_size.max(1));
                let counters = Arc::new(Counters::default());
                let task = tokio::spawn(run_output(
                    cfg.clone(),
                    name.clone(),
                    ctx.clone(),
                    rx,
                    reopen.subscribe(),
                    counters.clone(),
                    give_up.clone(),
                ));
                Handle {
                    name,
                    filter: cfg.filter(),
                    kind: cfg.transport.kind(),
                    when_full: cfg.when_full,
                    tx,
                    counters,
                    task,
                }
            })
            .collect();
        Self {
            handles,
            reopen,
            give_up,
        }
    }

    /// Hands a message (an event or an incident) to every output that takes it, applying each
    /// one's full-queue policy.
    pub async fn send(&self, message: impl Into<Message>) {
        let event = Arc::new(message.into());
        for h in &self.handles {
            if !h.filter.accepts(&event) {
                continue;
            }
            let accepted = match h.when_full {
                WhenFull::Block => h.tx.send(event.clone()).await.is_ok(),
                WhenFull::DropNewest => match h.tx.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let dropped = h.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        if dropped.is_power_of_two() {
                            tracing::warn!(output = %h.name, dropped = dropped + 1, "Output queue full: events dropped.");
                        }
                        continue;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                },
            };
            if accepted {
                h.counters.received.fetch_add(1, Ordering::Relaxed);
            } else {
                h.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(output = %h.name, "Output stopped; event dropped.");
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
        self.handles.iter().map(Handle::stats).collect()
    }

    /// Closes the queues and lets every output drain; after `grace`, outputs still failing
    /// give up and count what they could not deliver as dropped.
    pub async fn finish(self, grace: Duration) -> Vec<OutputStats> {
        let Self {
            handles, give_up, ..
        } = self;
        let mut tasks = Vec::new();
        let mut rest = Vec::new();
        for Handle {
            name,
            kind,
            when_full,
            tx,
            counters,
            task,
            ..
        } in handles
        {
            drop(tx);
            tasks.push(task);
            rest.push((name, kind, when_full, counters));
        }
        let cancel = give_up.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            cancel.cancel();
        });
        for task in tasks {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "An output task ended abnormally.");
            }
        }
        timer.abort();
        rest.into_iter()
            .map(|(name, kind, _, c)| OutputStats {
                name,
                kind,
                received: c.received.load(Ordering::Relaxed),
                sent: c.sent.load(Ordering::Relaxed),
                retried: c.retried.load(Ordering::Relaxed),
                dropped: c.dropped.load(Ordering::Relaxed),
                spooled: c.spooled.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// What each message becomes in the request or record.
pub(crate) enum Body {
    /// The output's format.
    Format(format::Format),
    /// A Splunk HEC event object.
    Hec(format::chat::HecMeta),
    /// A Slack message.
    Slack,
    /// A Teams Adaptive Card message.
    Teams,
    /// A syslog message (header and payload).
    Syslog(Box<super::syslog::SyslogConfig>),
}

impl Body {
    pub(crate) fn of(cfg: &OutputConfig) -> Self {
        match &cfg.transport {
            Transport::SplunkHec(hec) => Self::Hec(hec.meta()),
            Transport::Slack(_) => Self::Slack,
            Transport::Teams(_) => Self::Teams,
            Transport::Syslog(cfg) => Self::Syslog(Box::new(cfg.clone())),
            // Sekoia's Trapster parser and webhook receivers read the enterprise envelope.
            Transport::Sekoia(_) | Transport::Webhook(_) | Transport::Email(_) => {
                Self::Format(format::Format::Trapster)
            }
            _ => Self::Format(cfg.format),
        }
    }

    pub(crate) fn encode(
        &self,
        message: &Message,
        ctx: &FormatContext,
        out: &mut BytesMut,
    ) -> Result<(), format::FormatError> {
        match self {
            Self::Format(f) => message.encode(*f, ctx, out),
            Self::Hec(meta) => format::chat::hec(message, ctx, meta, out),
            Self::Syslog(cfg) => super::syslog::frame(message, cfg, ctx, out),
            Self::Slack => {
                format::chat::slack(message, ctx, out)?;
                out.extend_from_slice(b"\n");
                Ok(())
            }
            Self::Teams => {
                format::chat::teams(message, ctx, out)?;
                out.extend_from_slice(b"\n");
                Ok(())
            }
        }
    }
}

/// A transport ready to write.
enum Sink {
    Stdout(tokio::io::Stdout),
    File(FileOutput),
    Redis(Box<RedisOutput>),
    Api(Box<ApiOutput>),
    Syslog(Box<super::syslog::SyslogOutput>),
    Email(Box<super::email::EmailOutput>),
}

async fn run_output(
    cfg: OutputConfig,
    name: String,
    ctx: FormatContext,
    mut rx: mpsc::Receiver<Arc<Message>>,
    mut reopen: broadcast::Receiver<()>,
    counters: Arc<Counters>,
    give_up: CancellationToken,
) {
    let mut sink = match &cfg.transport {
        Transport::Terminal => Sink::Stdout(tokio::io::stdout()),
        Transport::File(file) => Sink::File(FileOutput::new(file.clone())),
        Transport::Redis(redis) => Sink::Redis(Box::new(RedisOutput::new(redis.clone(), &name))),
        Transport::Syslog(syslog) => {
            Sink::Syslog(Box::new(super::syslog::SyslogOutput::new(syslog.clone())))
        }
        Transport::Email(email) => Sink::Email(Box::new(super::email::EmailOutput::new(
            email.clone(),
            &name,
            &ctx.identity.device_name,
        ))),
        other => match other.http() {
            Some(api) => Sink::Api(Box::new(ApiOutput::new(api, &name))),
            None => {
                tracing::error!(output = %name, "Transport without a writer; events are dropped.");
                return;
            }
        },
    };
    let body = Body::of(&cfg);
    if let (Some(spool), Sink::Redis(_) | Sink::Api(_) | Sink::Syslog(_) | Sink::Email(_)) =
        (&cfg.spool, &sink)
    {
        match Spool::open(&spool.dir, spool.max_bytes) {
            Ok(spool) => {
                return run_spooled(sink, spool, cfg, name, ctx, rx, counters, give_up).await;
            }
            Err(err) => {
                tracing::error!(output = %name, dir = %spool.dir.display(), error = %err, "Cannot open the spool; delivering without it.");
            }
        }
    }
    // Email digests go out on time even when nothing else arrives.
    let has_digest =
        matches!(&cfg.transport, Transport::Email(e) if e.digest_interval_secs.is_some());
    let mut digest_tick = tokio::time::interval(Duration::from_secs(1));
    digest_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Where each record of the batch starts in `buf`, and its event's Unix time (Redis scores).
    let mut records: Vec<(usize, f64)> = Vec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            event = rx.recv() => match event {
                Some(event) => event,
                None => break,
            },
            Ok(()) = reopen.recv() => {
                if let Sink::File(file) = &mut sink {
                    file.reopen().await;
                    tracing::info!(output = %name, "File reopened.");
                }
                continue;
            }
            _ = digest_tick.tick(), if has_digest => {
                if let Sink::Email(email) = &mut sink
                    && let Err(err) = email.flush_digest(false, &name, &give_up).await
                {
                    tracing::error!(output = %name, error = %err, "The digest mail could not be sent; dropped.");
                }
                continue;
            }
        };
        buf.clear();
        records.clear();
        let mut batch = 0u64;
        let mut next = Some(first);
        while let Some(event) = next {
            let start = buf.len();
            match body.encode(&event, &ctx, &mut buf) {
                Ok(()) => {
                    batch += 1;
                    let micros = event.timestamp().timestamp_micros();
                    records.push((start, micros as f64 / 1e6));
                }
                Err(err) => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(output = %name, error = %err, "Event could not be encoded; dropped.");
                }
            }
            next = if buf.len() < 256 * 1024 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        // Each record without its trailing newline, with its event's Unix time.
        let members: Vec<(f64, &[u8])> = records
            .iter()
            .enumerate()
            .map(|(i, (start, score))| {
                let end = records.get(i + 1).map_or(buf.len(), |(next, _)| *next);
                let record = &buf[*start..end];
                (*score, record.strip_suffix(b"\n").unwrap_or(record))
            })
            .collect();
        // (retries, events the receiver refused) or the error that made the output give up.
        let written: Result<(u64, u64), String> = match &mut sink {
            Sink::Stdout(out) => terminal::write(out, &buf)
                .await
                .map(|()| (0, 0))
                .map_err(|e| e.to_string()),
            Sink::File(file) => file
                .write(&buf, &name, &give_up)
                .await
                .map(|r| (r, 0))
                .map_err(|e| e.to_string()),
            Sink::Redis(redis) => redis.write(&members, &name, &give_up).await.map(|r| (r, 0)),
            Sink::Api(api) => {
                let bodies: Vec<&[u8]> = members.iter().map(|(_, m)| *m).collect();
                api.write(&bodies, &name, &give_up)
                    .await
                    .map(|d| (d.retries, d.refused))
            }
            Sink::Syslog(syslog) => {
                let records: Vec<&[u8]> = members.iter().map(|(_, m)| *m).collect();
                syslog
                    .write(&records, &name, &give_up)
                    .await
                    .map(|r| (r, 0))
            }
            Sink::Email(email) => {
                let records: Vec<&[u8]> = members.iter().map(|(_, m)| *m).collect();
                email.write(&records, &name, &give_up).await.map(|r| (r, 0))
            }
        };
        match written {
            Ok((retries, refused)) => {
                counters.sent.fetch_add(batch - refused, Ordering::Relaxed);
                counters.dropped.fetch_add(refused, Ordering::Relaxed);
                counters.retried.fetch_add(retries, Ordering::Relaxed);
            }
            Err(err) => {
                counters.dropped.fetch_add(batch, Ordering::Relaxed);
                tracing::error!(output = %name, events = batch, error = %err, "Events could not be written; dropped.");
            }
        }
    }
    // At shutdown, what waits for the next digest goes out now.
    if let Sink::Email(email) = &mut sink
        && let Err(err) = email.flush_digest(true, &name, &give_up).await
    {
        tracing::error!(output = %name, error = %err, "The last digest mail could not be sent; dropped.");
    }
}

/// The output loop with a disk spool: every batch is appended to the spool, and delivery always
/// takes the oldest spooled records first, so order holds across outages and restarts. At
/// shutdown, what is still spooled stays on disk for the next start (not dropped).
#[expect(clippy::too_many_arguments, reason = "one private loop, called once")]
async fn run_spooled(
    mut sink: Sink,
    mut spool: Spool,
    cfg: OutputConfig,
    name: String,
    ctx: FormatContext,
    mut rx: mpsc::Receiver<Arc<Message>>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    if !spool.is_empty() {
        tracing::info!(output = %name, bytes = spool.pending_bytes(), "Delivering events spooled before the last stop.");
    }
    let body = Body::of(&cfg);
    let per_request = match &sink {
        Sink::Api(api) => api.per_request(),
        Sink::Email(_) => 1,
        _ => 100,
    };
    let mut backoff = first_backoff();
    let mut next_try = tokio::time::Instant::now();
    let mut failing = false;
    let mut dropped_full = 0u64;
    let mut closed = false;
    let mut buf = BytesMut::new();
    loop {
        // Deliver from the spool when a try is due.
        if !spool.is_empty() && tokio::time::Instant::now() >= next_try {
            let (batch, bytes) = match spool.peek(per_request) {
                Ok(b) => b,
                Err(err) => {
                    tracing::error!(output = %name, error = %err, "Reading the spool failed.");
                    next_try = tokio::time::Instant::now() + Duration::from_secs(1);
                    continue;
                }
            };
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            let attempt = match &mut sink {
                Sink::Api(api) => api.try_write(&refs, &name).await,
                Sink::Redis(redis) => {
                    let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
                    let scored: Vec<(f64, &[u8])> = refs
                        .iter()
                        .map(|r| (score_of(r).unwrap_or(now), *r))
                        .collect();
                    redis
                        .try_write(&scored)
                        .await
                        .map(|()| 0)
                        .map_err(|e| (None, e))
                }
                Sink::Syslog(syslog) => syslog
                    .try_write(&refs)
                    .await
                    .map(|()| 0)
                    .map_err(|e| (None, e)),
                Sink::Email(email) => email
                    .try_write(&refs)
                    .await
                    .map(|()| 0)
                    .map_err(|e| (None, e)),
                Sink::Stdout(_) | Sink::File(_) => Ok(0),
            };
            match attempt {
                Ok(refused) => {
                    if let Err(err) = spool.commit(bytes) {
                        tracing::error!(output = %name, error = %err, "Updating the spool cursor failed; events may be delivered twice.");
                    }
                    counters
                        .sent
                        .fetch_add(batch.len() as u64 - refused, Ordering::Relaxed);
                    counters.dropped.fetch_add(refused, Ordering::Relaxed);
                    backoff = first_backoff();
                    if failing {
                        failing = false;
                        tracing::info!(output = %name, "Output delivering again.");
                    }
                    if spool.is_empty() && dropped_full > 0 {
                        tracing::warn!(output = %name, dropped = dropped_full, "Output recovered; events were dropped while its spool was full.");
                        // Tell the receiver too, through this output, in its format.
                        buf.clear();
                        let event = degraded_event(&name, dropped_full);
                        if body.encode(&Message::Event(event), &ctx, &mut buf).is_ok() {
                            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                            if spool.push(&[line]).is_ok_and(|n| n == 1) {
                                counters.spooled.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        dropped_full = 0;
                    }
                    continue;
                }
                Err((after, why)) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(output = %name, error = %why, "Delivery failed; events are spooled and retried with backoff.");
                    }
                    counters.retried.fetch_add(1, Ordering::Relaxed);
                    next_try =
                        tokio::time::Instant::now() + after.unwrap_or_else(|| jittered(backoff));
                    backoff = next_backoff(backoff);
                }
            }
        }
        if closed && (spool.is_empty() || shutdown.is_cancelled()) {
            break;
        }
        let wait = if spool.is_empty() {
            Duration::from_secs(3600)
        } else {
            next_try.saturating_duration_since(tokio::time::Instant::now())
        };
        tokio::select! {
            event = rx.recv(), if !closed => {
                let Some(first) = event else {
                    closed = true;
                    continue;
                };
                buf.clear();
                let mut starts = Vec::new();
                let mut next = Some(first);
                while let Some(event) = next {
                    let start = buf.len();
                    match body.encode(&event, &ctx, &mut buf) {
                        Ok(()) => starts.push(start),
                        Err(err) => {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(output = %name, error = %err, "Event could not be encoded; dropped.");
                        }
                    }
                    next = if starts.len() < 1024 { rx.try_recv().ok() } else { None };
                }
                let lines: Vec<&[u8]> = starts
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let end = starts.get(i + 1).copied().unwrap_or(buf.len());
                        buf[*s..end].strip_suffix(b"\n").unwrap_or(&buf[*s..end])
                    })
                    .collect();
                let stored = match spool.push(&lines) {
                    Ok(n) => n,
                    Err(err) => {
                        tracing::error!(output = %name, error = %err, "Writing to the spool failed.");
                        0
                    }
                };
                counters.spooled.fetch_add(stored as u64, Ordering::Relaxed);
                let lost = (lines.len() - stored) as u64;
                if lost > 0 {
                    counters.dropped.fetch_add(lost, Ordering::Relaxed);
                    if dropped_full == 0 {
                        tracing::warn!(output = %name, "Spool full: new events are dropped and counted until the output recovers.");
                    }
                    dropped_full += lost;
                }
            }
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled(), if closed => {}
        }
    }
    if !spool.is_empty() {
        tracing::warn!(output = %name, bytes = spool.pending_bytes(), "Stopping with undelivered events in the spool; they are delivered at the next start.");
    }
}

/// The `sensor.degraded` event reporting `dropped` events lost by output `name`.
fn degraded_event(name: &str, dropped: u64) -> Event {
    let unspecified = std::net::IpAddr::from([0, 0, 0, 0]);
    let extra = json!({"output": name, "dropped": dropped, "reason": "spool full"});
    Event {
        id: uuid::Uuid::new_v4(),
        timestamp: chrono::Utc::now(),
        session: crate::event::SessionIdentity {
            src_ip: unspecified,
            src_port: 0,
            dst_ip: unspecified,
            dst_port: 0,
        },
        service: crate::event::Service::Sensor,
        action: crate::event::Action::Degraded,
        data: bytes::Bytes::new(),
        extra: extra.as_object().cloned().unwrap_or_default(),
    }
}

/// The Unix-time score of a spooled record: its `timestamp` field when it is JSON with one.
fn score_of(record: &[u8]) -> Option<f64> {
    let v: Value = serde_json::from_slice(record).ok()?;
    let ts = v
        .get("timestamp")
        .or_else(|| v.get("@timestamp"))?
        .as_str()?;
    let parsed = chrono::NaiveDateTime::parse_from_str(
        ts.trim_end_matches("+00:00").trim_end_matches('Z'),
        "%Y-%m-%d %H:%M:%S%.f",
    )
    .or_else(|_| {
        chrono::NaiveDateTime::parse_from_str(ts.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
    })
    .ok()?;
    Some(parsed.and_utc().timestamp_micros() as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Fanout;
    use crate::{
        format::{Format, FormatContext, golden},
        output::{OutputConfig, Transport, WhenFull, file::FileConfig},
    };

    fn file_output(path: &std::path::Path, format: Format) -> OutputConfig {
        OutputConfig::new(
            format,
            Transport::File(FileConfig {
                path: path.to_path_buf(),
                mode: None,
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
            fanout.send(event).await;
        }
        let stats = fanout.finish(Duration::from_secs(5)).await;
        assert!(
            stats
                .iter()
                .all(|s| s.received == 100 && s.sent == 100 && s.dropped == 0),
            "{stats:?}"
        );
        assert_eq!(std::fs::read_to_string(&a).unwrap().lines().count(), 100);
        let cef = std::fs::read_to_string(&b).unwrap();
        assert_eq!(cef.lines().count(), 100);
        assert!(cef.lines().all(|l| l.starts_with("CEF:0|")));
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
            fanout.send(event).await;
        }
        let stats = fanout.finish(Duration::from_secs(2)).await;
        let (dead, good_stats) = (&stats[0], &stats[1]);
        assert_eq!(good_stats.sent, 50);
        assert_eq!(dead.sent, 0);
        // Queue of 10 plus the batch in flight; the rest were refused at once, and what was
        // queued is given up after the grace period: every event is accounted for as dropped.
        assert!(dead.received <= 11, "{dead:?}");
        assert_eq!(dead.dropped, 50, "{dead:?}");
        assert_eq!(std::fs::read_to_string(&good).unwrap().lines().count(), 50);
        std::fs::remove_dir_all(&dir).ok();
    }
}
