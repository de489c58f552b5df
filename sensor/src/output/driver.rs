//! The driver of one output: takes batches from its [`OutputQueue`], encodes them, writes
//! them through the transport, retries or spools, and counts the outcome. After an outage that
//! lost messages, the first successful delivery is followed by one `sensor.degraded` event,
//! through the output itself, with the exact number lost and why.

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
    api::ApiOutput,
    file::FileOutput,
    queue::{self, OutputQueue},
    redis::{RedisOutput, first_backoff, jittered, next_backoff},
    spool::Spool,
    terminal,
};
use crate::{
    event::Event,
    format::{self, FormatContext},
};

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

/// Runs one output until its queue is closed and drained, or the grace period is over.
pub(crate) async fn run(mut d: Driver) {
    let mut sink = match &d.cfg.transport {
        Transport::Terminal => Sink::Stdout(tokio::io::stdout()),
        Transport::File(file) => Sink::File(FileOutput::new(file.clone())),
        Transport::Redis(redis) => Sink::Redis(Box::new(RedisOutput::new(redis.clone(), &d.name))),
        Transport::Syslog(syslog) => {
            Sink::Syslog(Box::new(super::syslog::SyslogOutput::new(syslog.clone())))
        }
        Transport::Email(email) => Sink::Email(Box::new(super::email::EmailOutput::new(
            email.clone(),
            &d.name,
            &d.ctx.identity.device_name,
        ))),
        other => match other.http() {
            Some(api) => Sink::Api(Box::new(ApiOutput::new(api, &d.name))),
            None => {
                tracing::error!(output = %d.name, "Transport without a writer; events are dropped.");
                return;
            }
        },
    };
    if let (Some(spool), Sink::Redis(_) | Sink::Api(_) | Sink::Syslog(_) | Sink::Email(_)) =
        (d.cfg.spool.clone(), &sink)
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
    let body = Body::of(&d.cfg);
    let filter = d.cfg.filter();
    let counters = d.queue.counters().clone();
    // Email digests go out on time even when nothing else arrives.
    let has_digest =
        matches!(&d.cfg.transport, Transport::Email(e) if e.digest_interval_secs.is_some());
    let mut digest_tick = tokio::time::interval(Duration::from_secs(1));
    digest_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Where each record of the batch starts in `buf`, and its event's Unix time (Redis scores).
    let mut records: Vec<(usize, f64)> = Vec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while !d.give_up.is_cancelled() {
        let first = tokio::select! {
            event = d.queue.pop() => match event {
                Some(event) => event,
                None => break,
            },
            Ok(()) = d.reopen.recv() => {
                if let Sink::File(file) = &mut sink {
                    file.reopen().await;
                    tracing::info!(output = %d.name, "File reopened.");
                }
                continue;
            }
            _ = digest_tick.tick(), if has_digest => {
                if let Sink::Email(email) = &mut sink
                    && let Err(err) = email.flush_digest(false, &d.name, &d.give_up).await
                {
                    tracing::error!(output = %d.name, error = %err, "The digest mail could not be sent; dropped.");
                }
                continue;
            }
            () = d.give_up.cancelled() => break,
        };
        buf.clear();
        records.clear();
        let mut taken = 0u64;
        let mut batch = 0u64;
        let mut next = Some(first);
        while let Some(event) = next {
            taken += 1;
            let start = buf.len();
            match body.encode(&event, &d.ctx, &mut buf) {
                Ok(()) => {
                    batch += 1;
                    let micros = event.timestamp().timestamp_micros();
                    records.push((start, micros as f64 / 1e6));
                }
                Err(err) => {
                    counters.drop_for(1, queue::UNENCODABLE);
                    tracing::error!(output = %d.name, error = %err, "Event could not be encoded; dropped.");
                }
            }
            next = if buf.len() < 256 * 1024 {
                d.queue.try_pop()
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
                let record = buf.get(*start..end).unwrap_or_default();
                (*score, record.strip_suffix(b"\n").unwrap_or(record))
            })
            .collect();
        let name = &d.name;
        let give_up = &d.give_up;
        // (retries, events the receiver refused) or the error that made the output give up.
        let written: Result<(u64, u64), String> = match &mut sink {
            Sink::Stdout(out) => terminal::write(out, &buf)
                .await
                .map(|()| (0, 0))
                .map_err(|e| e.to_string()),
            Sink::File(file) => file
                .write(&buf, name, give_up)
                .await
                .map(|r| (r, 0))
                .map_err(|e| e.to_string()),
            Sink::Redis(redis) => redis.write(&members, name, give_up).await.map(|r| (r, 0)),
            Sink::Api(api) => {
                let bodies: Vec<&[u8]> = members.iter().map(|(_, m)| *m).collect();
                api.write(&bodies, name, give_up)
                    .await
                    .map(|d| (d.retries, d.refused))
            }
            Sink::Syslog(syslog) => {
                let records: Vec<&[u8]> = members.iter().map(|(_, m)| *m).collect();
                syslog.write(&records, name, give_up).await.map(|r| (r, 0))
            }
            Sink::Email(email) => {
                let records: Vec<&[u8]> = members.iter().map(|(_, m)| *m).collect();
                email.write(&records, name, give_up).await.map(|r| (r, 0))
            }
        };
        match written {
            Ok((retries, refused)) => {
                let refused = refused.min(batch);
                counters.sent.fetch_add(batch - refused, Ordering::Relaxed);
                counters.drop_for(refused, queue::REFUSED);
                counters.retried.fetch_add(retries, Ordering::Relaxed);
                d.queue.resolved(taken);
                if batch > refused {
                    d.report_outage(&filter);
                }
            }
            Err(err) => {
                counters.drop_for(batch, queue::FAILED);
                d.queue.resolved(taken);
                tracing::error!(output = %d.name, events = batch, error = %err, "Events could not be written; dropped.");
            }
        }
    }
    // At shutdown, what waits for the next digest goes out now.
    if let Sink::Email(email) = &mut sink
        && let Err(err) = email.flush_digest(true, &d.name, &d.give_up).await
    {
        tracing::error!(output = %d.name, error = %err, "The last digest mail could not be sent; dropped.");
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
async fn run_spooled(mut sink: Sink, spool: Spool, d: Driver) {
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
    let per_request = match &sink {
        Sink::Api(api) => api.per_request(),
        Sink::Email(_) => 1,
        _ => 100,
    };
    let body = Arc::new(Body::of(&d.cfg));
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
    let mut backoff = first_backoff();
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
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            let attempt = tokio::select! {
                a = attempt(&mut sink, &refs, &name) => a,
                () = d.give_up.cancelled() => break,
            };
            match attempt {
                Ok(refused) => {
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
                    counters.drop_for(refused, queue::REFUSED);
                    backoff = first_backoff();
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
                    next_try =
                        tokio::time::Instant::now() + after.unwrap_or_else(|| jittered(backoff));
                    backoff = next_backoff(backoff);
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

/// One delivery attempt of spooled records: the number the receiver refused, or why it failed
/// and when to try again.
async fn attempt(
    sink: &mut Sink,
    refs: &[&[u8]],
    name: &str,
) -> Result<u64, (Option<Duration>, String)> {
    match sink {
        Sink::Api(api) => api.try_write(refs, name).await,
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
            .try_write(refs)
            .await
            .map(|()| 0)
            .map_err(|e| (None, e)),
        Sink::Email(email) => email
            .try_write(refs)
            .await
            .map(|()| 0)
            .map_err(|e| (None, e)),
        Sink::Stdout(_) | Sink::File(_) => Ok(0),
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
