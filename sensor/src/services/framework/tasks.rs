//! The tasks of one running unit (a service instance, the any-port decoys' catch-all): its
//! socket loops, its sessions (a tracker) and the token that ends both, stopped in two steps
//! so many units can be cancelled at once and awaited together.

use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::shutdown::CancellationToken;

/// A unit's loops and sessions.
#[derive(Debug)]
pub struct Tasks {
    /// Ends its loops and sessions (a child of the parent's token).
    stop: CancellationToken,
    tracker: TaskTracker,
    loops: Vec<JoinHandle<()>>,
}

impl Tasks {
    /// No task yet; everything stops with `parent`.
    #[must_use]
    pub fn new(parent: &CancellationToken) -> Self {
        Self {
            stop: parent.child_token(),
            tracker: TaskTracker::new(),
            loops: Vec::new(),
        }
    }

    /// The token that ends the loops and sessions (sessions select on it).
    #[must_use]
    pub const fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Where sessions are spawned, so they are awaited after [`Self::finish`].
    #[must_use]
    pub const fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Adds a socket loop.
    pub fn push(&mut self, handle: JoinHandle<()>) {
        self.loops.push(handle);
    }

    /// Waits for the loops (ended by a token of the caller's) and forgets them; the sessions go
    /// on.
    pub async fn join_loops(&mut self) {
        for handle in std::mem::take(&mut self.loops) {
            let _ignored = handle.await;
        }
    }

    /// Ends the loops and sessions ([`Self::finish`] waits).
    pub fn cancel(&self) {
        self.stop.cancel();
        self.tracker.close();
    }

    /// Waits for the loops after [`Self::cancel`] and returns what the sessions are awaited
    /// with.
    pub async fn finish(mut self) -> TaskTracker {
        self.join_loops().await;
        self.tracker
    }
}
