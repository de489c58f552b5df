//! The driver of one output, the only place that retries: it takes batches from the output's
//! [`OutputQueue`] (as large as its [`Sink`] wants), encodes them, makes attempts through the
//! sink, waits between them by the one [`Backoff`] policy (honouring a receiver's
//! `Retry-After`) or, with a disk spool, writes everything to disk first and delivers from
//! there. After an outage that lost messages, the first successful delivery is followed by one
//! `sensor.degraded` event, through the output itself, with the exact number lost and why.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use bytes::BytesMut;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{
    Filter, Message, OutputConfig,
    ledger::From,
    queue::{self, OutputQueue},
    retry::Backoff,
    sink::{Body, Record, Sink, WriteError},
};
use crate::{event::Event, format::FormatContext};

/// Most encoded bytes in one batch.
const MAX_BATCH_BYTES: usize = 256 * 1024;

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
    /// Sessions waiting for their events to be spooled (told by the spool intake).
    pub durability: Arc<super::durable::Durability>,
    /// Whether this output writes every message to its spool first.
    pub spools: Arc<std::sync::atomic::AtomicBool>,
}

impl Driver {
    /// After a successful delivery: when the output lost messages since the last report, the
    /// one `sensor.degraded` event to send through itself, with the exact count.
    pub(crate) fn outage_report(&self, filter: &Filter) -> Option<Message> {
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
                counters.mark_failing();
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

/// Encodes messages into `buf`; returns where each record starts and its Unix time (a message
/// that cannot be encoded is counted as lost).
fn encode_batch(
    first: Arc<Message>,
    queue: &OutputQueue,
    body: &Body,
    ctx: &FormatContext,
    max: usize,
    name: &str,
    buf: &mut BytesMut,
) -> Vec<(usize, f64)> {
    let mut starts = Vec::new();
    let mut next = Some(first);
    while let Some(message) = next {
        let start = buf.len();
        match body.encode(&message, ctx, buf) {
            Ok(()) => starts.push((start, message.timestamp().timestamp_micros() as f64 / 1e6)),
            Err(err) => {
                buf.truncate(start);
                queue.counters().lost(From::InFlight, 1, queue::UNENCODABLE);
                tracing::error!(output = name, error = %err, "Event could not be encoded; dropped.");
            }
        }
        next = if starts.len() < max && buf.len() < MAX_BATCH_BYTES {
            queue.try_pop()
        } else {
            None
        };
    }
    starts
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

/// Runs one output without a spool until its queue is closed and drained, or the grace period
/// is over.
pub(crate) async fn run(mut sink: Box<dyn Sink>, mut d: Driver) {
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
        let starts = encode_batch(
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
                    counters.delivered(From::InFlight, n, refused, queue::REFUSED);
                    counters.mark_delivering();
                    if n > refused {
                        d.report_outage(&filter);
                    }
                }
                Err(err) => {
                    counters.lost(From::InFlight, n, queue::FAILED);
                    tracing::error!(output = %d.name, events = n, error = %err, "Events could not be written; dropped.");
                }
            }
        }
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

/// The `sensor.degraded` event reporting `dropped` messages lost by output `name`, and why.
pub(crate) fn degraded_event(name: &str, dropped: u64, reason: &str) -> Event {
    let extra = json!({"output": name, "dropped": dropped, "reason": reason});
    Event::health(
        crate::event::Action::Degraded,
        extra.as_object().cloned().unwrap_or_default(),
    )
}
