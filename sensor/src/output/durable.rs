//! The durable hand-off from a decoy to the spooled outputs: a TCP session that emits an event
//! waits (bounded by [`WAIT`]) until every spooled output that takes the event has appended it
//! to its spool and synced it to disk, before it sends the answer the client sees. A decoy has
//! therefore never answered a login that a `kill -9` can still lose from memory.
//!
//! The event travels as before (service channel, incidents, fan-out, output queues); only its
//! id is registered here. The fan-out says how many spooled outputs took it ([`Durability::routed`]),
//! and each spool intake reports every event it appended ([`Durability::stored`]); the last one
//! releases the session. Outputs without a spool are not waited for (best effort). The wait never
//! depends on a receiver: a spool intake only waits for the disk, and a session stops waiting
//! after [`WAIT`] (counted as `events_unconfirmed` in the service statistics).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::oneshot;
use uuid::Uuid;

/// Longest a session waits for its event to be on disk before it answers anyway.
pub const WAIT: Duration = Duration::from_secs(2);

/// Most events waiting at once (beyond, sessions answer without waiting, counted).
const MAX_WAITING: usize = 65_536;

#[derive(Debug)]
struct Waiter {
    /// Spooled outputs still to append the event; `None` until the fan-out has routed it.
    remaining: Option<usize>,
    done: oneshot::Sender<()>,
}

/// Events whose sessions wait for them to be spooled, shared by the services and the outputs.
#[derive(Debug, Default)]
pub struct Durability {
    waiting: Mutex<HashMap<Uuid, Waiter>>,
    /// Outputs that write every event to a working spool first.
    spooled: AtomicUsize,
}

/// Why a session answered before its event was confirmed on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unconfirmed {
    /// No confirmation within [`WAIT`].
    TimedOut,
    /// Too many events were waiting already.
    TooMany,
    /// The outputs were stopped before confirming.
    Stopped,
}

impl Durability {
    /// A registry for `spooled` outputs with a spool.
    #[must_use]
    pub fn new(spooled: usize) -> Arc<Self> {
        Arc::new(Self {
            waiting: Mutex::new(HashMap::new()),
            spooled: AtomicUsize::new(spooled),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Waiter>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether any output spools (else nothing is ever waited for).
    #[must_use]
    pub fn is_needed(&self) -> bool {
        self.spooled.load(Ordering::Relaxed) > 0
    }

    /// A spooled output runs without its spool after all (it could not be opened).
    pub fn spool_unavailable(&self) {
        let _ = self
            .spooled
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Registers event `id` before it is sent; the receiver resolves once it is on disk
    /// everywhere it goes. `None` when nothing spools or too many events wait already.
    pub fn expect(&self, id: Uuid) -> Result<Option<oneshot::Receiver<()>>, Unconfirmed> {
        if !self.is_needed() {
            return Ok(None);
        }
        let mut waiting = self.lock();
        if waiting.len() >= MAX_WAITING {
            return Err(Unconfirmed::TooMany);
        }
        let (done, rx) = oneshot::channel();
        waiting.insert(
            id,
            Waiter {
                remaining: None,
                done,
            },
        );
        Ok(Some(rx))
    }

    /// The fan-out handed event `id` to `outputs` spooled outputs (0: it is released at once).
    pub fn routed(&self, id: Uuid, outputs: usize) {
        let mut waiting = self.lock();
        if outputs == 0 {
            if let Some(w) = waiting.remove(&id) {
                let _ = w.done.send(());
            }
        } else if let Some(w) = waiting.get_mut(&id) {
            w.remaining = Some(outputs);
        }
    }

    /// One spooled output appended event `id` (or gave it up, counted by that output: waiting
    /// longer would not bring it back).
    pub fn stored(&self, id: Uuid) {
        let mut waiting = self.lock();
        let Some(w) = waiting.get_mut(&id) else {
            return;
        };
        let left = w.remaining.map(|n| n.saturating_sub(1));
        w.remaining = left;
        if left == Some(0)
            && let Some(w) = waiting.remove(&id)
        {
            let _ = w.done.send(());
        }
    }

    /// Stops waiting for event `id` (its session gave up).
    pub fn forget(&self, id: Uuid) {
        self.lock().remove(&id);
    }

    /// Events waiting now.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// Waits until event `id` (registered with [`Self::expect`] as `rx`) is on disk, at most
    /// [`WAIT`].
    ///
    /// # Errors
    /// [`Unconfirmed`] when the wait ended without confirmation.
    pub async fn confirmed(&self, id: Uuid, rx: oneshot::Receiver<()>) -> Result<(), Unconfirmed> {
        match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Unconfirmed::Stopped),
            Err(_) => {
                self.forget(id);
                Err(Unconfirmed::TimedOut)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_event_is_released_when_every_spooled_output_stored_it() {
        let d = Durability::new(2);
        let id = Uuid::new_v4();
        let mut rx = d.expect(id).unwrap().unwrap();
        d.routed(id, 2);
        d.stored(id);
        assert!(rx.try_recv().is_err(), "released after one of two outputs");
        d.stored(id);
        assert_eq!(rx.try_recv(), Ok(()));
        assert_eq!(d.waiting(), 0);
    }

    #[tokio::test]
    async fn an_event_no_spooled_output_takes_is_released_at_once() {
        let d = Durability::new(1);
        let id = Uuid::new_v4();
        let rx = d.expect(id).unwrap().unwrap();
        d.routed(id, 0);
        assert_eq!(d.confirmed(id, rx).await, Ok(()));
        assert_eq!(d.waiting(), 0);
    }

    #[tokio::test]
    async fn nothing_waits_without_a_spooled_output() {
        let d = Durability::new(1);
        d.spool_unavailable();
        assert!(d.expect(Uuid::new_v4()).unwrap().is_none());
        d.spool_unavailable();
        assert!(!d.is_needed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_bounded_and_forgotten() {
        let d = Durability::new(1);
        let id = Uuid::new_v4();
        let rx = d.expect(id).unwrap().unwrap();
        d.routed(id, 1);
        assert_eq!(d.confirmed(id, rx).await, Err(Unconfirmed::TimedOut));
        assert_eq!(d.waiting(), 0);
        // A late confirmation finds nothing.
        d.stored(id);
        assert_eq!(d.waiting(), 0);
    }

    #[tokio::test]
    async fn too_many_waiting_events_answer_without_waiting() {
        let d = Durability::new(1);
        for _ in 0..MAX_WAITING {
            let _rx = d.expect(Uuid::new_v4()).unwrap();
        }
        assert_eq!(d.expect(Uuid::new_v4()).err(), Some(Unconfirmed::TooMany));
    }
}
