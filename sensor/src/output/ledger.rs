//! The counters of one output, kept as a ledger that balances at every moment:
//!
//! `received + recovered = sent + dropped + queued + in_spool`
//!
//! - `received`: messages handed to the output in this run (its own `sensor.degraded` reports
//!   included); `recovered`: records its disk spool held from before this start (damaged ones
//!   included, which count as dropped at once).
//! - `sent`, `dropped` (of which `dropped_queue_full`): where messages ended.
//! - `queued`: held in memory (the queue, its overflow area, and the batch being written);
//!   `in_spool`: on disk, not yet delivered.
//!
//! Every change that moves a message from one place to another is one call here, made under
//! one lock, and [`Counters::snapshot`] reads under the same lock, so a snapshot taken while
//! messages move still balances exactly. `retried` and `spooled` (messages written to the
//! spool, cumulative) are outside the identity.

use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};

/// Why an output lost messages (the `reason` of its `sensor.degraded` event).
pub const QUEUE_FULL: &str = "queue full";

/// One consistent reading of an output's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Messages handed to the output in this run.
    pub received: u64,
    /// Records found in the spool at start (from a previous run).
    pub recovered: u64,
    /// Messages delivered.
    pub sent: u64,
    /// Messages lost, whatever the reason.
    pub dropped: u64,
    /// Of `dropped`, those lost because the queue was full.
    pub dropped_queue_full: u64,
    /// Messages written to the disk spool (cumulative).
    pub spooled: u64,
    /// Held in memory: queued, waiting in the overflow area, or taken by the writer.
    pub queued: u64,
    /// Of `queued`, those taken by the writer (a batch being encoded, written or spooled).
    pub in_flight: u64,
    /// On disk, not yet delivered.
    pub in_spool: u64,
}

impl Snapshot {
    /// Whether what came in (`received`, `recovered`) equals where it is now (`sent + dropped +
    /// queued + in_spool`).
    #[must_use]
    pub const fn balances(&self) -> bool {
        self.received.saturating_add(self.recovered)
            == self
                .sent
                .saturating_add(self.dropped)
                .saturating_add(self.queued)
                .saturating_add(self.in_spool)
    }
}

#[derive(Debug, Default)]
struct Ledger {
    counts: Snapshot,
    /// Drops not yet reported by a `sensor.degraded` event, and the first reason.
    outage_dropped: u64,
    outage_reason: Option<&'static str>,
}

impl Ledger {
    fn drop_for(&mut self, n: u64, reason: &'static str) {
        if n == 0 {
            return;
        }
        let c = &mut self.counts;
        c.dropped = c.dropped.saturating_add(n);
        if reason == QUEUE_FULL {
            c.dropped_queue_full = c.dropped_queue_full.saturating_add(n);
        }
        self.outage_dropped = self.outage_dropped.saturating_add(n);
        self.outage_reason.get_or_insert(reason);
    }
}

/// Where a message handed to the output went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Went {
    /// Held in memory (the queue or its overflow area).
    Held,
    /// Held in place of the oldest queued message, which is lost (`drop_oldest`).
    ReplacedOldest,
    /// Lost at once: the queue is full or closed.
    Dropped,
}

/// Where messages being settled come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// A batch the writer took from the queue.
    InFlight,
    /// Records read back from the disk spool.
    Spool,
}

/// Counters of one output, shared by the fan-out, its queue and its driver.
#[derive(Debug, Default)]
pub struct Counters {
    ledger: Mutex<Ledger>,
    /// Write retries.
    pub retried: AtomicU64,
    /// Unix time (ms) of the first failed write of the current outage; 0 while delivering.
    failing_since_ms: AtomicU64,
}

/// Wall-clock milliseconds since the Unix epoch (0 before it).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Counters {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The counters, read at one moment.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        self.ledger().counts
    }

    /// A message handed to the output, and where it went; `expired` messages of the overflow
    /// area gave up waiting meanwhile. Returns the output's drops for a full queue so far.
    pub(super) fn received(&self, went: Went, expired: u64) -> u64 {
        let mut l = self.ledger();
        l.counts.received = l.counts.received.saturating_add(1);
        match went {
            Went::Held => l.counts.queued = l.counts.queued.saturating_add(1),
            // The new message is held in place of the oldest one, which is lost.
            Went::ReplacedOldest | Went::Dropped => l.drop_for(1, QUEUE_FULL),
        }
        l.counts.queued = l.counts.queued.saturating_sub(expired);
        l.drop_for(expired, QUEUE_FULL);
        l.counts.dropped_queue_full
    }

    /// `n` messages of the overflow area gave up waiting.
    pub(super) fn expired(&self, n: u64) {
        let mut l = self.ledger();
        l.counts.queued = l.counts.queued.saturating_sub(n);
        l.drop_for(n, QUEUE_FULL);
    }

    /// The writer took a message.
    pub(super) fn taken(&self) {
        let mut l = self.ledger();
        l.counts.in_flight = l.counts.in_flight.saturating_add(1);
    }

    /// The output stopped with `left` messages in its queue: they and those in flight are lost.
    pub(super) fn abandoned(&self, left: u64, reason: &'static str) -> u64 {
        let mut l = self.ledger();
        let in_flight = std::mem::take(&mut l.counts.in_flight);
        let lost = left.saturating_add(in_flight);
        l.counts.queued = l.counts.queued.saturating_sub(lost);
        l.drop_for(lost, reason);
        lost
    }

    /// `n` messages from `from` settled: `refused` of them lost for `reason`, the rest
    /// delivered.
    pub fn delivered(&self, from: From, n: u64, refused: u64, reason: &'static str) {
        let refused = refused.min(n);
        let mut l = self.ledger();
        l.counts.sent = l.counts.sent.saturating_add(n - refused);
        l.drop_for(refused, reason);
        l.take(from, n);
    }

    /// `n` messages from `from` lost for `reason`.
    pub fn lost(&self, from: From, n: u64, reason: &'static str) {
        let mut l = self.ledger();
        l.drop_for(n, reason);
        l.take(from, n);
    }

    /// `n` messages taken by the writer went to the spool: `stored` of them are on disk, the
    /// rest lost for `reason` (the spool is full or failed).
    pub fn spooled(&self, n: u64, stored: u64, reason: &'static str) {
        let stored = stored.min(n);
        let mut l = self.ledger();
        l.counts.spooled = l.counts.spooled.saturating_add(stored);
        l.counts.in_spool = l.counts.in_spool.saturating_add(stored);
        l.drop_for(n - stored, reason);
        l.take(From::InFlight, n);
    }

    /// The output's own report written straight to its spool (`stored`) or lost for `reason`.
    pub fn received_into_spool(&self, stored: bool, reason: &'static str) {
        let mut l = self.ledger();
        l.counts.received = l.counts.received.saturating_add(1);
        if stored {
            l.counts.spooled = l.counts.spooled.saturating_add(1);
            l.counts.in_spool = l.counts.in_spool.saturating_add(1);
        } else {
            l.drop_for(1, reason);
        }
    }

    /// The spool held `records` deliverable records at start, and `damaged` ones it had to skip
    /// (lost for `reason`).
    pub fn recovered(&self, records: u64, damaged: u64, reason: &'static str) {
        let mut l = self.ledger();
        l.counts.recovered = l
            .counts
            .recovered
            .saturating_add(records)
            .saturating_add(damaged);
        l.counts.in_spool = l.counts.in_spool.saturating_add(records);
        l.drop_for(damaged, reason);
    }

    /// Records a failed write: the outage starts now unless one is already running.
    pub fn mark_failing(&self) {
        let now = unix_ms().max(1);
        let _ =
            self.failing_since_ms
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Records a successful write: the outage, if any, is over.
    pub fn mark_delivering(&self) {
        self.failing_since_ms.store(0, Ordering::Relaxed);
    }

    /// How long writes have been failing, whole seconds; `None` while delivering.
    #[must_use]
    pub fn failing_for_secs(&self) -> Option<u64> {
        let since = self.failing_since_ms.load(Ordering::Relaxed);
        let now = unix_ms();
        (since != 0).then(|| now.saturating_sub(since) / 1_000)
    }

    /// The drops of the outage that a successful delivery just ended, once: their number and
    /// reason. `None` when nothing was lost since the last report.
    pub fn take_outage(&self) -> Option<(u64, &'static str)> {
        let mut l = self.ledger();
        let dropped = std::mem::take(&mut l.outage_dropped);
        let reason = l.outage_reason.take()?;
        (dropped > 0).then_some((dropped, reason))
    }
}

impl Ledger {
    /// Takes `n` settled messages out of where they were held.
    fn take(&mut self, from: From, n: u64) {
        let c = &mut self.counts;
        match from {
            From::InFlight => {
                c.in_flight = c.in_flight.saturating_sub(n);
                c.queued = c.queued.saturating_sub(n);
            }
            From::Spool => c.in_spool = c.in_spool.saturating_sub(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Counters, From, Went};
    use crate::output::queue::{FAILED, REFUSED, SPOOL_DAMAGED, SPOOL_FULL};

    #[test]
    fn every_move_keeps_the_books_balanced() {
        let c = Counters::default();
        c.recovered(5, 2, SPOOL_DAMAGED);
        for _ in 0..10 {
            c.received(Went::Held, 0);
        }
        c.received(Went::Dropped, 3);
        assert_eq!(c.received(Went::ReplacedOldest, 0), 5);
        for _ in 0..4 {
            c.taken();
        }
        c.spooled(4, 3, SPOOL_FULL);
        c.received_into_spool(true, SPOOL_FULL);
        c.delivered(From::Spool, 6, 1, REFUSED);
        c.taken();
        c.lost(From::InFlight, 1, FAILED);
        c.taken();
        let lost = c.abandoned(1, FAILED);
        let s = c.snapshot();
        assert!(s.balances(), "{s:?}");
        assert_eq!(lost, 2);
        assert_eq!(
            (s.received, s.recovered, s.sent, s.in_spool, s.queued),
            (13, 7, 5, 3, 0),
            "{s:?}"
        );
        assert_eq!(s.dropped, 2 + 1 + 3 + 1 + 1 + 1 + 1 + 2, "{s:?}");
        assert_eq!(s.dropped_queue_full, 5, "{s:?}");
        assert_eq!(s.spooled, 4);
        assert_eq!(c.take_outage(), Some((s.dropped, SPOOL_DAMAGED)));
    }
}
