//! The kernel program's per-CPU counters, summed over CPUs.
//!
//! Every figure comes from the kernel, so all arithmetic on them saturates: a sum never wraps
//! and a delta never goes negative (a counter below its earlier value, after a reload, gives 0).

use aya::maps::{MapData, PerCpuArray};
use sensor_common::Counter;
use serde_json::{Map, Value};

/// Counter values summed over all CPUs, indexed by [`Counter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot(pub [u64; Counter::COUNT as usize]);

impl CounterSnapshot {
    /// Reads every counter from the map.
    ///
    /// # Errors
    /// The map lookup failed.
    pub fn read(
        map: &PerCpuArray<MapData, [u64; Counter::COUNT as usize]>,
    ) -> Result<Self, aya::maps::MapError> {
        let mut out = [0u64; Counter::COUNT as usize];
        for cpu in map.get(&0, 0)?.iter() {
            for (total, value) in out.iter_mut().zip(cpu) {
                *total = total.saturating_add(*value);
            }
        }
        Ok(Self(out))
    }

    /// One counter.
    #[must_use]
    pub const fn get(&self, counter: Counter) -> u64 {
        self.0[counter as usize]
    }

    /// Growth since `earlier` (0 for a counter that went down).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let mut out = [0u64; Counter::COUNT as usize];
        for ((v, now), then) in out.iter_mut().zip(&self.0).zip(&earlier.0) {
            *v = now.saturating_sub(*then);
        }
        Self(out)
    }

    /// Records lost (ring buffer full) or refused (budgets): probes that got no record.
    #[must_use]
    pub const fn lost(&self) -> u64 {
        self.get(Counter::RingBufFull)
            .saturating_add(self.get(Counter::SourceBudget))
            .saturating_add(self.get(Counter::CpuBudget))
    }

    /// Sum of some counters; `None` if it would overflow (an impossible kernel figure).
    fn sum(&self, counters: &[Counter]) -> Option<u64> {
        counters
            .iter()
            .try_fold(0u64, |acc, c| acc.checked_add(self.get(*c)))
    }

    /// Checks the two identities documented on [`Counter`]; `None` when they hold, otherwise a
    /// description of the mismatch. Only meaningful when no packet is in flight.
    #[must_use]
    pub fn imbalance(&self) -> Option<String> {
        use Counter as C;
        let Some(outcomes) = self.sum(&[
            C::ParseFailures,
            C::NonTcp,
            C::Fragments,
            C::OtherTcp,
            C::Probes,
        ]) else {
            return Some("packet outcomes overflow".to_owned());
        };
        if outcomes != self.get(C::Packets) {
            return Some(format!(
                "packets {} != outcomes {outcomes}",
                self.get(C::Packets)
            ));
        }
        let Some(fates) = self.sum(&[
            C::AllowListed,
            C::Deduplicated,
            C::SourceBudget,
            C::CpuBudget,
            C::RecordsSent,
            C::RingBufFull,
            C::Held,
            C::Aggregated,
        ]) else {
            return Some("probe fates overflow".to_owned());
        };
        if fates != self.get(C::Probes) {
            return Some(format!("probes {} != fates {fates}", self.get(C::Probes)));
        }
        None
    }

    /// As a JSON object keyed by counter name.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let map: Map<String, Value> = Counter::ALL
            .iter()
            .map(|c| (c.name().to_owned(), Value::from(self.get(*c))))
            .collect();
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use sensor_common::Counter;

    use super::CounterSnapshot;

    #[test]
    fn identities_are_checked() {
        let mut s = CounterSnapshot::default();
        s.0[Counter::Packets as usize] = 10;
        s.0[Counter::OtherTcp as usize] = 4;
        s.0[Counter::Probes as usize] = 6;
        s.0[Counter::RecordsSent as usize] = 5;
        s.0[Counter::RingBufFull as usize] = 1;
        assert_eq!(s.imbalance(), None);
        assert_eq!(s.lost(), 1);
        s.0[Counter::Deduplicated as usize] = 1;
        assert!(s.imbalance().unwrap().contains("probes 6"));
        assert_eq!(s.to_json()["ringbuf_full"], 1);
    }

    #[test]
    fn deltas_subtract() {
        let mut a = CounterSnapshot::default();
        let mut b = CounterSnapshot::default();
        a.0[0] = 5;
        b.0[0] = 12;
        assert_eq!(b.since(&a).get(Counter::Packets), 7);
        // A counter that went down (program reloaded) gives no growth, not 2^64 - 7.
        assert_eq!(a.since(&b).get(Counter::Packets), 0);
    }

    #[test]
    fn kernel_figures_never_wrap() {
        let mut s = CounterSnapshot::default();
        s.0[Counter::RingBufFull as usize] = u64::MAX;
        s.0[Counter::SourceBudget as usize] = 5;
        assert_eq!(s.lost(), u64::MAX);
        s.0[Counter::Probes as usize] = u64::MAX;
        s.0[Counter::Packets as usize] = u64::MAX;
        assert_eq!(s.imbalance().as_deref(), Some("probe fates overflow"));
        s.0[Counter::OtherTcp as usize] = 1;
        assert_eq!(s.imbalance().as_deref(), Some("packet outcomes overflow"));
    }
}
