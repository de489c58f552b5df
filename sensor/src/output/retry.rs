//! The one retry policy of every output: exponential backoff from 500 ms doubling to 30 s (the
//! `backon` crate) plus up to 25 % jitter, so many sensors do not retry in lockstep; a
//! receiver's `Retry-After` replaces the next delay.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder};

/// First retry delay.
pub const FIRST: Duration = Duration::from_millis(500);
/// Longest retry delay.
pub const MAX: Duration = Duration::from_secs(30);

/// The delays between attempts at one batch.
#[derive(Debug)]
pub struct Backoff {
    delays: ExponentialBackoff,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A fresh policy: the first failure waits about [`FIRST`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            delays: ExponentialBuilder::new()
                .with_min_delay(FIRST)
                .with_max_delay(MAX)
                .with_factor(2.0)
                .without_max_times()
                .build(),
        }
    }

    /// The wait before the next attempt: `retry_after` when the receiver asked for one,
    /// else the next backoff delay.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let base = self.delays.next().unwrap_or(MAX);
        retry_after.unwrap_or_else(|| base + base.mul_f64(rand::random::<f64>() / 4.0))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Backoff, FIRST, MAX};

    #[test]
    fn delays_grow_to_the_cap_with_jitter_and_retry_after_wins() {
        let mut b = Backoff::new();
        let first = b.next_delay(None);
        // Jitter adds up to one more base delay.
        assert!(first >= FIRST && first <= FIRST * 2, "{first:?}");
        let second = b.next_delay(None);
        assert!(second >= FIRST * 2, "{second:?}");
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        for _ in 0..20 {
            assert!(b.next_delay(None) <= MAX * 2);
        }
        assert!(b.next_delay(None) >= MAX);
    }
}
