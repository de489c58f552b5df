//! The driver of an output with a disk spool: every message is written to the spool first,
//! by an intake task that only ever waits for the disk (off the runtime, `spawn_blocking`), and
//! delivery always takes the oldest spooled records first, one attempt at a time on the shared
//! [`Backoff`] schedule, so order holds across outages and restarts. At shutdown, what is still
//! spooled stays on disk for the next start (not dropped).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::BytesMut;
use serde_json::Value;
use tokio::sync::Notify;

use super::{
    Message,
    driver::Driver,
    durable::Durability,
    ledger::From,
    queue::{self, OutputQueue},
    retry::Backoff,
    sink::{Body, Record, Sink, WriteError},
    spool::Spool,
};
use crate::format::FormatContext;

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
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, the output loop's own state"
)]
async fn spool_intake(
    queue: Arc<OutputQueue>,
    spool: Arc<Mutex<Spool>>,
    body: Arc<Body>,
    ctx: FormatContext,
    name: String,
    wake: Arc<Notify>,
    pending: Arc<AtomicU64>,
    durability: Arc<Durability>,
) {
    let counters = queue.counters().clone();
    let mut warned = false;
    while let Some(first) = queue.pop().await {
        let mut buf = BytesMut::new();
        let mut starts = Vec::new();
        let mut ids = Vec::new();
        let mut next = Some(first);
        while let Some(event) = next {
            if let Message::Event(e) = event.as_ref() {
                ids.push(e.id);
            }
            let start = buf.len();
            match body.encode(&event, &ctx, &mut buf) {
                Ok(()) => starts.push(start),
                Err(err) => {
                    counters.lost(From::InFlight, 1, queue::UNENCODABLE);
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
        let (spool, pending, books) = (spool.clone(), pending.clone(), counters.clone());
        let stored = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
            let mut spool = lock(&spool);
            let stored = spool.push(&refs);
            pending.store(spool.pending_bytes(), Ordering::Relaxed);
            // Counted under the spool's lock, so delivery can never settle them before.
            let on_disk = stored.as_ref().map_or(0, |n| *n as u64);
            books.spooled(count as u64, on_disk, queue::SPOOL_FULL);
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
                counters.spooled(count as u64, 0, queue::SPOOL_FULL);
                0
            }
        };
        let lost = count.saturating_sub(stored) as u64;
        if lost > 0 && !warned {
            warned = true;
            tracing::warn!(output = %name, "Spool full: new events are dropped and counted until the output recovers.");
        }
        if lost == 0 {
            warned = false;
        }
        // On disk (synced) or given up and counted: the sessions waiting for them answer now.
        for id in ids {
            durability.stored(id);
        }
        wake.notify_one();
    }
}

/// The output loop with a disk spool: every message is appended to the spool first (by the
/// intake task, which never waits for the receiver), and delivery always takes the oldest
/// spooled records first, so order holds across outages and restarts. At shutdown, what is
/// still spooled stays on disk for the next start (not dropped).
pub(crate) async fn run(mut sink: Box<dyn Sink>, mut spool: Spool, d: Driver) {
    let name = d.name.clone();
    let damaged = spool.take_skipped();
    if damaged > 0 {
        tracing::warn!(output = %name, records = damaged, "Damaged spool records skipped; counted as dropped.");
    }
    d.queue
        .counters()
        .recovered(spool.pending_records(), damaged, queue::SPOOL_DAMAGED);
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
        d.durability.clone(),
    ));
    let mut intake_done = false;
    // Periodic work of the sink (the email digest), on time even while nothing arrives.
    let tick = sink.tick();
    let mut ticker = tokio::time::interval(tick.unwrap_or(Duration::from_secs(3600)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Backoff::new();
    let mut next_try = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        let is_empty = pending.load(Ordering::Relaxed) == 0;
        // Deliver from the spool when a try is due.
        if !is_empty && tokio::time::Instant::now() >= next_try && !d.give_up.is_cancelled() {
            let peeked = {
                let (spool, pending) = (spool.clone(), pending.clone());
                tokio::task::spawn_blocking(move || {
                    let mut spool = lock(&spool);
                    let peeked = spool.peek(per_request);
                    pending.store(spool.pending_bytes(), Ordering::Relaxed);
                    (peeked, spool.take_skipped())
                })
                .await
                .map(|(peeked, skipped)| {
                    count_skipped(&counters, &name, skipped);
                    peeked
                })
            };
            let (batch, bytes) = match peeked {
                Ok(Ok(b)) if b.0.is_empty() => {
                    // Nothing readable although bytes are pending: look again shortly.
                    next_try = tokio::time::Instant::now() + Duration::from_secs(1);
                    continue;
                }
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
                    let n = batch.len() as u64;
                    let records = n;
                    let committed = {
                        let (spool, pending) = (spool.clone(), pending.clone());
                        tokio::task::spawn_blocking(move || {
                            let mut spool = lock(&spool);
                            let committed = spool.commit(bytes, records);
                            pending.store(spool.pending_bytes(), Ordering::Relaxed);
                            committed
                        })
                        .await
                    };
                    if !matches!(committed, Ok(Ok(()))) {
                        tracing::error!(output = %name, "Updating the spool cursor failed; events may be delivered twice.");
                    }
                    let refused = refused.min(n);
                    counters.delivered(From::Spool, n, refused, reason);
                    counters.mark_delivering();
                    backoff = Backoff::new();
                    if failing {
                        failing = false;
                        tracing::info!(output = %name, "Output delivering again.");
                    }
                    if n > refused
                        && let Some(report) = d.outage_report(&filter)
                    {
                        // Straight to the spool: the intake may have ended already.
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
                        counters
                            .received_into_spool(matches!(stored, Ok(Ok(1))), queue::SPOOL_FULL);
                    }
                    continue;
                }
                Err((after, why)) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(output = %name, error = %why, "Delivery failed; events are spooled and retried with backoff.");
                    }
                    counters.retried.fetch_add(1, Ordering::Relaxed);
                    counters.mark_failing();
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
            _ = ticker.tick(), if tick.is_some() => {
                // One attempt per tick: what fails stays held and goes at the next one.
                if let Err(err) = sink.flush(false).await {
                    tracing::warn!(output = %name, error = %err, "What the output holds back could not be sent; retried at the next tick.");
                }
            }
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
    if tick.is_some()
        && let Err(err) = sink.flush(true).await
    {
        tracing::error!(output = %name, error = %err, "What the output held back could not be sent at shutdown; dropped.");
    }
    let pending = pending.load(Ordering::Relaxed);
    if pending > 0 {
        tracing::warn!(output = %name, bytes = pending, "Stopping with undelivered events in the spool; they are delivered at the next start.");
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

/// Counts records a damaged spool had to skip as lost, and says so.
fn count_skipped(counters: &queue::Counters, name: &str, skipped: u64) {
    if skipped > 0 {
        tracing::warn!(output = %name, records = skipped, "Damaged spool records skipped; counted as dropped.");
        counters.lost(From::Spool, skipped, queue::SPOOL_DAMAGED);
    }
}
