//! The driver of one output, the only place that retries: it takes batches from the output's
//! [`OutputQueue`] (as large as its [`Sink`] wants), encodes them, makes attempts through the
//! sink, waits between them by the one [`Backoff`] policy (honouring a receiver's
//! `Retry-After`) or, with a disk spool, writes everything to disk first and delivers from
//! there. After an outage that lost messages, the first successful delivery is followed by one
//! `sensor.degraded` event, through the output itself, with the exact number lost and why.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::BytesMut;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::{
    Filter, Message, OutputConfig, Transport,
    queue::{self, OutputQueue},
    retry::Backoff,
    sink::{self, Record, Sink, WriteError},
    spool::Spool,
};
use crate::{
    event::Event,
    format::{self, FormatContext},
};

/// Most encoded bytes in one batch.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// What each message becomes in the request or record.
#[derive(Clone)]
pub enum Body {
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

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Format(_) => "Format",
            Self::Hec(_) => "Hec",
            Self::Slack => "Slack",
            Self::Teams => "Teams",
            Self::Syslog(_) => "Syslog",
        })
    }
}

impl Body {
    /// The encoding an output's transport calls for.
    #[must_use]
    pub fn of(cfg: &OutputConfig) -> Self {
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

    /// Appends `message`, encoded, to `out` (one record, ending with a newline).
    ///
    /// # Errors
    /// The format could not serialise it.
    pub fn encode(
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

/// Everything one output's driver needs.
pub(crate) struct Driver {
    /// The output's configuration.
    pub cfg: OutputConfig,
    /// Its name in logs and statistics.
    pub name: String,
    /// Identity for the formats.
    pub ctx: FormatContext,
    /// Its queue (and counters).
    pub queue: Arc<OutputQueue>,
    /// SIGHUP: reopen files.
    pub reopen: broadcast::Receiver<()>,
    /// Fired when the shutdown grace period is over.
    pub give_up: CancellationToken,
}

impl Driver {
    /// After a successful delivery: when the output lost messages since the last report, the
    /// one `sensor.degraded` event to send through itself, with the exact count.
    fn outage_report(&self, filter: &Filter) -> Option<Message> {
        let (dropped, reason) = self.queue.counters().take_outage()?;
        tracing::warn!(output = %self.name, dropped, reason, "Output recovered; messages were lost during the outage.");
        let message = Message::Event(degraded_event(&self.name, dropped, reason));
        filter.accepts(&message).then_some(message)
    }

    /// Queues the outage report, if any, at the head of the queue.
    fn report_outage(&self, filter: &Filter) {
        if let Some(message) = self.outage_report(filter) {
            self.queue.push_front(Arc::new(message));
        }
    }
}

/// What an attempt does.
enum Attempt<'a, 'b> {
    /// Write a batch.
    Write(&'a [Record<'b>]),
    /// Flush what the sink holds back (`true`: at shutdown).
    Flush(bool),
}

/// The retry loop: attempts until delivered, refused, a fatal error, or `give_up`. Returns how
/// many records the receiver refused, and counts retries.
async fn until_done(
    sink: &mut dyn Sink,
    attempt: Attempt<'_, '_>,
    name: &str,
    give_up: &CancellationToken,
    counters: &queue::Counters,
) -> Result<u64, WriteError> {
    let mut backoff = Backoff::new();
    let mut failures = 0u64;
    loop {
        let result = match &attempt {
            Attempt::Write(batch) => sink.write(batch).await,
            Attempt::Flush(force) => sink.flush(*force).await.map(|()| 0),
        };
        match result {
            Ok(refused) => {
                if failures > 0 {
                    tracing::info!(
                        output = name,
                        retries = failures,
                        "Output delivering again."
                    );
                }
                return Ok(refused);
            }
            Err(WriteError::Retry { reason, after }) => {
                if failures == 0 {
                    tracing::warn!(output = name, receiver = %sink.describe(), error = %reason, "Delivery failed; retrying with backoff.");
                }
                if give_up.is_cancelled() {
                    return Err(WriteError::Retry { reason, after });
                }
                failures += 1;
                counters.retried.fetch_add(1, Ordering::Relaxed);
                let wait = backoff.next_delay(after);
                tokio::select! {
                    () = give_up.cancelled() => return Err(WriteError::Retry { reason, after }),
                    () = tokio::time::sleep(wait) => {}
                }
            }
            Err(fatal @ WriteError::Fatal(_)) => return Err(fatal),
        }
    }
}

/// Encodes messages into `buf`; returns where each record starts and its Unix time.
fn encode_batch(
    first: Arc<Message>,
    queue: &OutputQueue,
    body: &Body,
    ctx: &FormatContext,
    max: usize,
    name: &str,
    buf: &mut BytesMut,
) -> (u64, Vec<(usize, f64)>) {
    let mut taken = 0u64;
    let mut starts = Vec::new();
    let mut next = Some(first);
    while let Some(message) = next {
        taken += 1;
        let start = buf.len();
        match body.encode(&message, ctx, buf) {
            Ok(()) => starts.push((start, message.timestamp().timestamp_micros() as f64 / 1e6)),
            Err(err) => {
                buf.truncate(start);
                queue.counters().drop_for(1, queue::UNENCODABLE);
                tracing::error!(output = name, error = %err, "Event could not be encoded; dropped.");
            }
        }
        next = if starts.len() < max && buf.len() < MAX_BATCH_BYTES {
            queue.try_pop()
        } else {
            None
        };
    }
    (taken, starts)
}

/// The records of `buf`, each without its trailing newline.
fn records<'a>(buf: &'a [u8], starts: &[(usize, f64)]) -> Vec<Record<'a>> {
    starts
        .iter()
        .enumerate()
        .map(|(i, (start, time))| {
            let end = starts.get(i + 1).map_or(buf.len(), |(next, _)| *next);
            let record = buf.get(*start..end).unwrap_or_default();
            Record {
                bytes: record.strip_suffix(b"\n").unwrap_or(record),
                time: *time,
            }
        })
        .collect()
}

/// Runs one output until its queue is closed and drained, or the grace period is over.
pub(crate) async fn run(mut d: Driver) {
    let mut sink = sink::build(&d.cfg, &d.name, &d.ctx);
    if let Some(spool) = d.cfg.spool.clone()
        && sink.spools()
    {
        let dir = spool.dir.clone();
        match tokio::task::spawn_blocking(move || Spool::open(&spool.dir, spool.max_bytes)).await {
            Ok(Ok(spool)) => return run_spooled(sink, spool, d).await,
            Ok(Err(err)) => {
                tracing::error!(output = %d.name, dir = %dir.display(), error = %err, "Cannot open the spool; delivering without it.");
            }
            Err(err) => {
                tracing::error!(output = %d.name, error = %err, "Opening the spool failed.");
            }
        }
    }
    let filter = d.cfg.filter();
    let counters = d.queue.counters().clone();
    let tick = sink.tick();
    let mut ticker = tokio::time::interval(tick.unwrap_or(Duration::from_secs(3600)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while !d.give_up.is_cancelled() {
        let first = tokio::select! {
            message = d.queue.pop() => match message {
                Some(message) => message,
                None => break,
            },
            Ok(()) = d.reopen.recv() => {
                sink.reopen().await;
                continue;
            }
            _ = ticker.tick(), if tick.is_some() => {
                if let Err(err) = until_done(sink.as_mut(), Attempt::Flush(false), &d.name, &d.give_up, &counters).await {
                    tracing::error!(output = %d.name, error = %err, "What the output held back could not be sent; dropped.");
                }
                continue;
            }
            () = d.give_up.cancelled() => break,
        };
        buf.clear();
        let (taken, starts) = encode_batch(
            first,
            &d.queue,
            sink.body(),
            &d.ctx,
            sink.batch_size().max(1),
            &d.name,
            &mut buf,
        );
        let batch = records(&buf, &starts);
        let n = batch.len() as u64;
        if n > 0 {
            match until_done(
                sink.as_mut(),
                Attempt::Write(&batch),
                &d.name,
                &d.give_up,
                &counters,
            )
            .await
            {
                Ok(refused) => {
                    let refused = refused.min(n);
                    counters.sent.fetch_add(n - refused, Ordering::Relaxed);
                    counters.drop_for(refused, queue::REFUSED);
                    if n > refused {
                        d.report_outage(&filter);
                    }
                }
                Err(err) => {
                    counters.drop_for(n, queue::FAILED);
                    tracing::error!(output = %d.name, events = n, error = %err, "Events could not be written; dropped.");
                }
            }
        }
        d.queue.resolved(taken);
    }
    // At shutdown, what the sink holds back (a digest) goes out now.
    if tick.is_some()
        && let Err(err) = until_done(
            sink.as_mut(),
            Attempt::Flush(true),
            &d.name,
            &d.give_up,
            &counters,
        )
        .await
    {
        tracing::error!(output = %d.name, error = %err, "What the output held back could not be sent at shutdown; dropped.");
    }
}

/// Aborts a task when dropped (the spool intake ends with its output).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Takes messages from the queue, encodes them and appends them to the spool (off the
/// runtime), never waiting for the receiver: a spooled output's queue only waits for the disk.
async fn spool_intake(
    queue: Arc<OutputQueue>,
    spool: Arc<Mutex<Spool>>,
    body: Arc<Body>,
    ctx: FormatContext,
    name: String,
    wake: Arc<Notify>,
    pending: Arc<AtomicU64>,
) {
    let counters = queue.counters().clone();
    let mut warned = false;
    while let Some(first) = queue.pop().await {
        let mut buf = BytesMut::new();
        let mut starts = Vec::new();
        let mut taken = 0u64;
        let mut next = Some(first);
        while let Some(event) = next {
            taken += 1;
            let start = buf.len();
            match body.encode(&event, &ctx, &mut buf) {
                Ok(()) => starts.push(start),
                Err(err) => {
                    counters.drop_for(1, queue::UNENCODABLE);
                    tracing::error!(output = %name, error = %err, "Event could not be encoded; dropped.");
                }
            }
            next = if starts.len() < 1024 {
                queue.try_pop()
            } else {
                None
            };
        }
        let lines: Vec<Vec<u8>> = starts
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let end = starts.get(i + 1).copied().unwrap_or(buf.len());
                let line = buf.get(*s..end).unwrap_or_default();
                line.strip_suffix(b"\n").unwrap_or(line).to_vec()
            })
            .collect();
        let count = lines.len();
        let (spool, pending) = (spool.clone(), pending.clone());
        let stored = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
            let mut spool = lock(&spool);
            let stored = spool.push(&refs);
            pending.store(spool.pending_bytes(), Ordering::Relaxed);
            stored
        })
        .await;
        let stored = match stored {
            Ok(Ok(n)) => n,
            Ok(Err(err)) => {
                tracing::error!(output = %name, error = %err, "Writing to the spool failed.");
                0
            }
            Err(err) => {
                tracing::error!(output = %name, error = %err, "Writing to the spool failed.");
                0
            }
        };
        counters.spooled.fetch_add(stored as u64, Ordering::Relaxed);
        let lost = count.saturating_sub(stored) as u64;
        if lost > 0 && !warned {
            warned = true;
            tracing::warn!(output = %name, "Spool full: new events are dropped and counted until the output recovers.");
        }
        if lost == 0 {
            warned = false;
        }
        counters.drop_for(lost, queue::SPOOL_FULL);
        queue.resolved(taken);
        wake.notify_one();
    }
}

/// The output loop with a disk spool: every message is appended to the spool first (by the
/// intake task, which never waits for the receiver), and delivery always takes the oldest
/// spooled records first, so order holds across outages and restarts. At shutdown, what is
/// still spooled stays on disk for the next start (not dropped).
async fn run_spooled(mut sink: Box<dyn Sink>, spool: Spool, d: Driver) {
    let name = d.name.clone();
    if !spool.is_empty() {
        tracing::info!(output = %name, bytes = spool.pending_bytes(), "Delivering events spooled before the last stop.");
    }
    // Undelivered bytes, mirrored so the runtime never waits for the spool's lock.
    let pending = Arc::new(AtomicU64::new(spool.pending_bytes()));
    let spool = Arc::new(Mutex::new(spool));
    let wake = Arc::new(Notify::new());
    let filter = d.cfg.filter();
    let counters = d.queue.counters().clone();
    let per_request = sink.batch_size().max(1);
    let body = Arc::new(sink.body().clone());
    let mut intake = tokio::spawn(spool_intake(
        d.queue.clone(),
        spool.clone(),
        body.clone(),
        d.ctx.clone(),
        name.clone(),
        wake.clone(),
        pending.clone(),
    ));
    let mut intake_done = false;
    let mut backoff = Backoff::new();
    let mut next_try = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        let is_empty = pending.load(Ordering::Relaxed) == 0;
        // Deliver from the spool when a try is due.
        if !is_empty && tokio::time::Instant::now() >= next_try && !d.give_up.is_cancelled() {
            let peeked = {
                let spool = spool.clone();
                tokio::task::spawn_blocking(move || lock(&spool).peek(per_request)).await
            };
            let (batch, bytes) = match peeked {
                Ok(Ok(b)) => b,
                Ok(Err(err)) => {
                    tracing::error!(output = %name, error = %err, "Reading the spool failed.");
                    next_try = tokio::time::Instant::now() + Duration::from_secs(1);
                    continue;
                }
                Err(err) => {
                    tracing::error!(output = %name, error = %err, "Reading the spool failed.");
                    next_try = tokio::time::Instant::now() + Duration::from_secs(1);
                    continue;
                }
            };
            let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
            let records: Vec<Record<'_>> = batch
                .iter()
                .map(|r| Record {
                    bytes: r,
                    time: score_of(r).unwrap_or(now),
                })
                .collect();
            let attempt = tokio::select! {
                a = sink.write(&records) => a,
                () = d.give_up.cancelled() => break,
            };
            let attempt = match attempt {
                Ok(refused) => Ok((refused, queue::REFUSED)),
                Err(WriteError::Fatal(why)) => {
                    tracing::error!(output = %name, error = %why, "Spooled events cannot be delivered; dropped.");
                    Ok((batch.len() as u64, queue::FAILED))
                }
                Err(WriteError::Retry { reason, after }) => Err((after, reason)),
            };
            match attempt {
                Ok((refused, reason)) => {
                    let committed = {
                        let (spool, pending) = (spool.clone(), pending.clone());
                        tokio::task::spawn_blocking(move || {
                            let mut spool = lock(&spool);
                            let committed = spool.commit(bytes);
                            pending.store(spool.pending_bytes(), Ordering::Relaxed);
                            committed
                        })
                        .await
                    };
                    if !matches!(committed, Ok(Ok(()))) {
                        tracing::error!(output = %name, "Updating the spool cursor failed; events may be delivered twice.");
                    }
                    let n = batch.len() as u64;
                    let refused = refused.min(n);
                    counters.sent.fetch_add(n - refused, Ordering::Relaxed);
                    counters.drop_for(refused, reason);
                    backoff = Backoff::new();
                    if failing {
                        failing = false;
                        tracing::info!(output = %name, "Output delivering again.");
                    }
                    if n > refused
                        && let Some(report) = d.outage_report(&filter)
                    {
                        // Straight to the spool: the intake may have ended already.
                        counters.received.fetch_add(1, Ordering::Relaxed);
                        let mut buf = BytesMut::new();
                        let encoded = body.encode(&report, &d.ctx, &mut buf);
                        let line = buf.strip_suffix(b"\n").unwrap_or(&buf).to_vec();
                        let (spool, pending) = (spool.clone(), pending.clone());
                        let stored = if encoded.is_ok() {
                            tokio::task::spawn_blocking(move || {
                                let mut spool = lock(&spool);
                                let stored = spool.push(&[&line]);
                                pending.store(spool.pending_bytes(), Ordering::Relaxed);
                                stored
                            })
                            .await
                        } else {
                            Ok(Ok(0))
                        };
                        if matches!(stored, Ok(Ok(1))) {
                            counters.spooled.fetch_add(1, Ordering::Relaxed);
                        } else {
                            counters.drop_for(1, queue::SPOOL_FULL);
                        }
                    }
                    continue;
                }
                Err((after, why)) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(output = %name, error = %why, "Delivery failed; events are spooled and retried with backoff.");
                    }
                    counters.retried.fetch_add(1, Ordering::Relaxed);
                    next_try = tokio::time::Instant::now() + backoff.next_delay(after);
                }
            }
        }
        if intake_done && (is_empty || d.give_up.is_cancelled()) {
            break;
        }
        let wait = if is_empty {
            Duration::from_secs(3600)
        } else {
            next_try.saturating_duration_since(tokio::time::Instant::now())
        };
        tokio::select! {
            _ = &mut intake, if !intake_done => intake_done = true,
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = d.give_up.cancelled(), if !intake_done => {
                // Let the intake put what is queued on disk: kept for the next start.
                if tokio::time::timeout(Duration::from_secs(1), &mut intake).await.is_err() {
                    tracing::warn!(output = %name, "The spool intake did not finish in time.");
                }
                intake_done = true;
            }
        }
    }
    drop(AbortOnDrop(intake));
    let pending = pending.load(Ordering::Relaxed);
    if pending > 0 {
        tracing::warn!(output = %name, bytes = pending, "Stopping with undelivered events in the spool; they are delivered at the next start.");
    }
}

/// The `sensor.degraded` event reporting `dropped` messages lost by output `name`, and why.
pub(crate) fn degraded_event(name: &str, dropped: u64, reason: &str) -> Event {
    let unspecified = std::net::IpAddr::from([0, 0, 0, 0]);
    let extra = json!({"output": name, "dropped": dropped, "reason": reason});
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
