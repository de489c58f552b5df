//! Per-source reply rates of the UDP loop: token buckets in thousandths of a reply, bounded in
//! number (a source without a bucket when the table is full gets no reply).

use std::collections::HashMap;

use tokio::time::Instant;

use crate::net::SourceKey;

/// A token bucket in thousandths of a reply.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli: u64,
    at: Instant,
}

/// Per-source reply rate (token buckets), bounded in size.
#[derive(Debug)]
pub(crate) struct Rates {
    per_sec: u64,
    max: usize,
    buckets: HashMap<SourceKey, Bucket>,
}

impl Rates {
    pub(crate) fn new(per_sec: u32, max: usize) -> Self {
        Self {
            per_sec: u64::from(per_sec),
            max,
            buckets: HashMap::new(),
        }
    }

    fn capacity(&self) -> u64 {
        self.per_sec.saturating_mul(1_000)
    }

    fn refill(&self, bucket: Bucket, now: Instant) -> u64 {
        let elapsed =
            u64::try_from(now.saturating_duration_since(bucket.at).as_millis()).unwrap_or(u64::MAX);
        bucket
            .milli
            .saturating_add(elapsed.saturating_mul(self.per_sec))
            .min(self.capacity())
    }

    /// Takes one reply's token for `source`; false when it has none (or no bucket can be kept).
    pub(crate) fn take(&mut self, source: SourceKey, now: Instant) -> bool {
        let capacity = self.capacity();
        let current = match self.buckets.get(&source) {
            Some(bucket) => self.refill(*bucket, now),
            None if self.buckets.len() >= self.max => return false,
            None => capacity,
        };
        let Some(left) = current.checked_sub(1_000) else {
            self.buckets.insert(
                source,
                Bucket {
                    milli: current,
                    at: now,
                },
            );
            return false;
        };
        self.buckets.insert(
            source,
            Bucket {
                milli: left,
                at: now,
            },
        );
        true
    }

    /// Forgets buckets that have refilled (they are the same as no bucket).
    pub(crate) fn sweep(&mut self, now: Instant) {
        let capacity = self.capacity();
        let full: Vec<SourceKey> = self
            .buckets
            .iter()
            .filter(|(_, b)| self.refill(**b, now) >= capacity)
            .map(|(k, _)| *k)
            .collect();
        for key in full {
            self.buckets.remove(&key);
        }
    }
}
