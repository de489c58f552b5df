//! The kernel program's per-CPU counters, summed over CPUs.

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
                *total = total.wrapping_add(*value);
            }
        }
        Ok(Self(out))
    }

    /// One counter.
    #[must_use]
    pub const fn get(&self, counter: Counter) -> u64 {
        self.0[counter as usize]
    }

    /// Growth since `earlier`.
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let mut out = [0u64; Counter::COUNT as usize];
        for (i, v) in out.iter_mut().enumerate() {
            *v = self.0[i].wrapping_sub(earlier.0[i]);
        }
        Self(out)
    }

    /// Records lost (ring buffer full) or refused (budgets): probes that got no record.
    #[must_use]
    pub const fn lost(&self) -> u64 {
        self.get(Counter::RingBufFull)
            + self.get(Counter::SourceBudget)
            + self.get(Counter::CpuBudget)
    }

    /// Checks the two identities documented on [`Counter`]; `None` when they hold, otherwise a
    /// description of the mismatch. Only meaningful when no packet is in flight.
    #[must_use]
    pub fn imbalance(&self) -> Option<String> {
        use Counter as C;
        let outcomes = [
            C::ParseFailures,
            C::NonTcp,
            C::Fragments,
            C::OtherTcp,
            C::Probes,
        ]
        .iter()
        .map(|c| self.get(*c))
        .sum::<u64>();
        if outcomes != self.get(C::Packets) {
            return Some(format!(
                "packets {} != outcomes {outcomes}",
                self.get(C::Packets)
            ));
        }
        let fates = [
            C::AllowListed,
            C::Deduplicated,
            C::SourceBudget,
            C::CpuBudget,
            C::RecordsSent,
            C::RingBufFull,
        ]
        .iter()
        .map(|c| self.get(*c))
        .sum::<u64>();
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
    }
}
