//! One output's bounded queue, fed without ever waiting: [`OutputQueue::push`] is a plain
//! function that applies the output's [`WhenFull`] policy and returns at once, so the capture
//! loop and the service sessions never stall on a slow or dead output.
//!
//! | `when_full`   | a message that finds the queue full                                     |
//! |---------------|--------------------------------------------------------------------------|
//! | `block`       | waits in an overflow area (as large as the queue) for up to `block_ms`; it moves into the queue when the output makes room, else it is dropped and counted (`queue full`). Beyond the overflow area: dropped at once. |
//! | `drop_newest` | is dropped and counted.                                                  |
//! | `drop_oldest` | takes the place of the oldest queued message, which is dropped and counted. |
//! | `spool`       | waits in the overflow area, without deadline, for the output's disk spool (every message of a spooled output is written to disk first; the queue only holds what waits for the disk). Beyond the overflow area: dropped at once. |
//!
//! The caller never awaits: expiry of `block` messages happens on each push and on the
//! output's expiry timer ([`OutputQueue::expire`]), even while the output's writer is stuck.
//!
//! Hand-written on a `Mutex<VecDeque>` and a [`tokio::sync::Notify`]: no channel crate offers
//! a non-blocking push with drop-oldest and a timed overflow.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

pub use super::ledger::{Counters, QUEUE_FULL};
use super::{Message, WhenFull, ledger::Went};

/// The disk spool had no room.
pub const SPOOL_FULL: &str = "spool full";
/// The disk spool held damaged records (cut off by a crash or a full disk), which were skipped.
pub const SPOOL_DAMAGED: &str = "spool damaged";
/// The receiver answered that it refused them.
pub const REFUSED: &str = "receiver refused";
/// Delivery failed until the output gave up.
pub const FAILED: &str = "delivery failed";
/// A message could not be encoded.
pub const UNENCODABLE: &str = "encoding failed";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What [`OutputQueue::push`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued in place of the oldest message, which was dropped.
    ReplacedOldest,
    /// Held in the overflow area until the queue makes room (or its deadline passes).
    Overflow,
    /// Dropped and counted.
    Dropped,
}

#[derive(Debug)]
struct State {
    items: VecDeque<Arc<Message>>,
    /// Messages waiting for room, oldest first, with the time they give up (`None`: never).
    overflow: VecDeque<(Option<Instant>, Arc<Message>)>,
    closed: bool,
}

/// The bounded queue of one output.
#[derive(Debug)]
pub struct OutputQueue {
    state: Mutex<State>,
    capacity: usize,
    when_full: WhenFull,
    block: Duration,
    counters: Arc<Counters>,
    /// Wakes the driver: a message arrived or the queue closed.
    ready: Notify,
    /// Wakes the expiry timer: a message entered the overflow area, or the queue closed.
    overflowed: Notify,
}

impl OutputQueue {
    /// A queue of `capacity` messages (at least 1) with its full-queue policy.
    #[must_use]
    pub fn new(
        capacity: usize,
        when_full: WhenFull,
        block: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        let capacity = capacity.max(1);
        Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(4096)),
                overflow: VecDeque::new(),
                closed: false,
            }),
            capacity,
            when_full,
            block,
            counters,
            ready: Notify::new(),
            overflowed: Notify::new(),
        }
    }

    /// The output's counters.
    #[must_use]
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Hands `message` to the output without waiting; counts it as received, and as dropped
    /// when the policy drops it (or the queue is closed).
    pub fn push(&self, message: Arc<Message>) -> Pushed {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let expired = Self::expire_locked(&mut state, now);
        let pushed = if state.closed {
            Pushed::Dropped
        } else if state.items.len() < self.capacity && state.overflow.is_empty() {
            state.items.push_back(message);
            Pushed::Queued
        } else {
            match self.when_full {
                WhenFull::DropNewest => Pushed::Dropped,
                WhenFull::DropOldest => {
                    if state.items.pop_front().is_some() {
                        state.items.push_back(message);
                        Pushed::ReplacedOldest
                    } else {
                        Pushed::Dropped
                    }
                }
                WhenFull::Block | WhenFull::Spool => {
                    if state.overflow.len() < self.capacity {
                        let deadline = (self.when_full == WhenFull::Block)
                            .then(|| now.checked_add(self.block).unwrap_or(now));
                        state.overflow.push_back((deadline, message));
                        Pushed::Overflow
                    } else {
                        Pushed::Dropped
                    }
                }
            }
        };
        let went = match pushed {
            Pushed::Queued | Pushed::Overflow => Went::Held,
            Pushed::ReplacedOldest => Went::ReplacedOldest,
            Pushed::Dropped => Went::Dropped,
        };
        let dropped_queue_full = self.counters.received(went, expired);
        drop(state);
        match pushed {
            Pushed::Queued => self.ready.notify_one(),
            Pushed::ReplacedOldest | Pushed::Dropped => {
                if dropped_queue_full.is_power_of_two() {
                    tracing::warn!(
                        dropped = dropped_queue_full,
                        "Output queue full: messages dropped."
                    );
                }
                self.ready.notify_one();
            }
            Pushed::Overflow => self.overflowed.notify_one(),
        }
        pushed
    }

    /// Puts one message of the output's own (a `sensor.degraded` report) at the head of the
    /// queue, beyond its capacity, so it goes out with the next batch.
    pub fn push_front(&self, message: Arc<Message>) {
        let mut state = lock(&self.state);
        state.items.push_front(message);
        self.counters.received(Went::Held, 0);
        drop(state);
        self.ready.notify_one();
    }

    /// Drops the `block` messages whose deadline passed; returns when the next one expires
    /// (`None`: nothing waits with a deadline).
    pub fn expire(&self, now: Instant) -> Option<Instant> {
        let mut state = lock(&self.state);
        let expired = Self::expire_locked(&mut state, now);
        let next = state.overflow.iter().find_map(|(d, _)| *d);
        self.counters.expired(expired);
        drop(state);
        if expired > 0 {
            tracing::warn!(
                dropped = expired,
                "Output queue stayed full: messages dropped."
            );
        }
        next
    }

    fn expire_locked(state: &mut State, now: Instant) -> u64 {
        let before = state.overflow.len();
        state.overflow.retain(|(d, _)| d.is_none_or(|d| d > now));
        (before - state.overflow.len()) as u64
    }

    /// Takes the next message without waiting; moves overflow into the room it frees.
    pub fn try_pop(&self) -> Option<Arc<Message>> {
        let mut state = lock(&self.state);
        let message = state.items.pop_front();
        while state.items.len() < self.capacity {
            let Some((_, next)) = state.overflow.pop_front() else {
                break;
            };
            state.items.push_back(next);
        }
        if message.is_some() {
            self.counters.taken();
        }
        message
    }

    /// Waits for the next message; `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<Arc<Message>> {
        loop {
            let notified = self.ready.notified();
            if let Some(message) = self.try_pop() {
                return Some(message);
            }
            if self.is_closed() {
                return None;
            }
            notified.await;
        }
    }

    /// Waits until a message entered the overflow area, or the queue closed.
    pub async fn overflowed(&self) {
        self.overflowed.notified().await;
    }

    /// Whether [`Self::close`] was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// Refuses new messages; what is queued can still be taken.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_one();
        self.overflowed.notify_one();
    }

    /// Counts everything still queued, waiting in the overflow area or in flight as dropped
    /// (the output stopped); returns how many.
    pub fn abandon(&self) -> u64 {
        let mut state = lock(&self.state);
        let left = (state.items.len() + state.overflow.len()) as u64;
        state.items.clear();
        state.overflow.clear();
        state.closed = true;
        self.counters.abandoned(left, FAILED)
    }
}

/// Runs until the queue closes: drops `block` messages whose deadline passed, on time, even
/// while the output's writer is stuck.
pub async fn run_expiry(queue: Arc<OutputQueue>) {
    loop {
        let next = queue.expire(Instant::now());
        if queue.is_closed() {
            return;
        }
        match next {
            Some(deadline) => tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = queue.overflowed() => {}
            },
            None => queue.overflowed().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use tokio::time::Instant;

    use super::{Counters, OutputQueue, Pushed, QUEUE_FULL};
    use crate::{
        format::golden,
        output::{Message, WhenFull},
    };

    fn queue(cap: usize, when_full: WhenFull) -> OutputQueue {
        OutputQueue::new(
            cap,
            when_full,
            Duration::from_millis(1000),
            Arc::new(Counters::default()),
        )
    }

    fn messages(n: usize) -> Vec<Arc<Message>> {
        golden::catalogue_events()
            .into_iter()
            .cycle()
            .take(n)
            .map(|e| Arc::new(Message::Event(e)))
            .collect()
    }

    fn dropped(q: &OutputQueue) -> u64 {
        q.counters().snapshot().dropped
    }

    #[test]
    fn drop_newest_keeps_the_first_and_counts_the_rest() {
        let q = queue(3, WhenFull::DropNewest);
        let m = messages(5);
        let pushed: Vec<Pushed> = m.iter().map(|x| q.push(x.clone())).collect();
        assert_eq!(&pushed[..3], &[Pushed::Queued; 3]);
        assert_eq!(&pushed[3..], &[Pushed::Dropped; 2]);
        assert_eq!(dropped(&q), 2);
        assert!(Arc::ptr_eq(&q.try_pop().unwrap(), &m[0]));
        assert_eq!(q.counters().take_outage(), Some((2, QUEUE_FULL)));
        assert_eq!(q.counters().take_outage(), None);
    }

    #[test]
    fn drop_oldest_keeps_the_last() {
        let q = queue(3, WhenFull::DropOldest);
        let m = messages(5);
        for x in &m {
            q.push(x.clone());
        }
        assert_eq!(dropped(&q), 2);
        for want in &m[2..] {
            assert!(Arc::ptr_eq(&q.try_pop().unwrap(), want));
        }
        assert!(q.try_pop().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn block_holds_overflow_until_room_or_deadline() {
        let q = queue(2, WhenFull::Block);
        let m = messages(7);
        for x in &m[..4] {
            q.push(x.clone());
        }
        // Two queued, two waiting; room made by the driver takes the oldest waiting one.
        assert!(Arc::ptr_eq(&q.try_pop().unwrap(), &m[0]));
        assert_eq!(dropped(&q), 0);
        // Overflow area as large as the queue: one more fits, the next is dropped at once.
        assert_eq!(q.push(m[4].clone()), Pushed::Overflow);
        assert_eq!(q.push(m[5].clone()), Pushed::Dropped);
        assert_eq!(dropped(&q), 1);
        tokio::time::advance(Duration::from_millis(1001)).await;
        // m[3] and m[4] waited longer than block_ms: dropped, even though nobody pushes.
        assert_eq!(q.expire(Instant::now()), None);
        assert_eq!(dropped(&q), 3);
        assert_eq!(q.push(m[6].clone()), Pushed::Overflow);
        for want in [&m[1], &m[2], &m[6]] {
            assert!(Arc::ptr_eq(&q.try_pop().unwrap(), want));
        }
        let s = q.counters().snapshot();
        assert_eq!((s.received, s.in_flight, s.queued), (7, 4, 4), "{s:?}");
        assert!(s.balances(), "{s:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_expiry_timer_drops_on_time_without_pushes() {
        let q = Arc::new(queue(1, WhenFull::Block));
        let timer = tokio::spawn(super::run_expiry(q.clone()));
        for x in messages(3) {
            q.push(x);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(dropped(&q), 2);
        q.close();
        timer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn spool_overflow_never_expires() {
        let q = queue(1, WhenFull::Spool);
        let m = messages(3);
        for x in &m {
            q.push(x.clone());
        }
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(q.expire(Instant::now()), None);
        assert_eq!(dropped(&q), 1);
        assert!(Arc::ptr_eq(&q.pop().await.unwrap(), &m[0]));
        assert!(Arc::ptr_eq(&q.pop().await.unwrap(), &m[1]));
        q.close();
        assert!(q.pop().await.is_none());
    }

    #[test]
    fn abandon_counts_queued_overflow_and_in_flight() {
        let q = queue(2, WhenFull::Block);
        for x in messages(4) {
            q.push(x);
        }
        let _taken = q.try_pop();
        assert_eq!(q.abandon(), 4);
        assert_eq!(dropped(&q), 4);
        assert_eq!(q.push(messages(1).remove(0)), Pushed::Dropped);
    }
}
