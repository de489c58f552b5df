//! Sizes of the kernel maps, chosen at load time from the configuration and the host.
//!
//! The deduplication cache is per CPU, so its memory grows with the number of possible CPUs:
//! 65,536 slots of 48 bytes are 3 MiB per CPU, 384 MiB on a 128-CPU host. The loader therefore
//! halves the slots per CPU (never below [`MIN_DEDUP_SLOTS`]) until the cache and the shared
//! source-budget table fit `sensor.xdp.max_map_memory_mib`. Pure: the CPU count is an input.

use sensor_common::{BudgetSlot, DedupSlot};

/// Fewest deduplication slots per CPU the loader goes down to.
pub const MIN_DEDUP_SLOTS: u32 = 1 << 10;
/// Most deduplication slots per CPU accepted in the configuration.
pub const MAX_DEDUP_SLOTS: u32 = 1 << 22;
/// Fewest source-budget slots accepted in the configuration.
pub const MIN_SOURCE_SLOTS: u32 = 1 << 10;
/// Most source-budget slots accepted in the configuration.
pub const MAX_SOURCE_SLOTS: u32 = 1 << 24;

const DEDUP_SLOT_BYTES: u64 = size_of::<DedupSlot>() as u64;
const BUDGET_SLOT_BYTES: u64 = size_of::<BudgetSlot>() as u64;

/// What the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRequest {
    /// Deduplication slots per CPU wanted (a power of two): the upper bound.
    pub dedup_slots: u32,
    /// Source-budget slots (a power of two), shared by all CPUs.
    pub source_slots: u32,
    /// Memory the deduplication cache and the source-budget table may take together, bytes.
    pub max_bytes: u64,
}

impl Default for MapRequest {
    fn default() -> Self {
        Self {
            dedup_slots: sensor_common::DEDUP_SLOTS,
            source_slots: sensor_common::SOURCE_BUDGET_SLOTS,
            max_bytes: 64 << 20,
        }
    }
}

/// The sizes the loader chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapPlan {
    /// Possible CPUs of the host (per-CPU maps hold one copy each).
    pub possible_cpus: u32,
    /// Deduplication slots per CPU (a power of two).
    pub dedup_slots: u32,
    /// Source-budget slots (a power of two).
    pub source_slots: u32,
}

impl MapPlan {
    /// Bytes of the deduplication cache over all CPUs.
    #[must_use]
    pub fn dedup_bytes(&self) -> u64 {
        u64::from(self.possible_cpus)
            .saturating_mul(u64::from(self.dedup_slots))
            .saturating_mul(DEDUP_SLOT_BYTES)
    }

    /// Bytes of the source-budget table.
    #[must_use]
    pub fn source_bytes(&self) -> u64 {
        u64::from(self.source_slots).saturating_mul(BUDGET_SLOT_BYTES)
    }

    /// Bytes of both, what `max_map_memory_mib` bounds.
    #[must_use]
    pub fn bounded_bytes(&self) -> u64 {
        self.dedup_bytes().saturating_add(self.source_bytes())
    }
}

/// The request cannot be met on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizingError {
    /// A slot count is not a power of two within its range.
    #[error("`{field}` is {value}: expected a power of two from {min} to {max}")]
    Slots {
        /// Configuration field.
        field: &'static str,
        /// Value given.
        value: u32,
        /// Smallest accepted.
        min: u32,
        /// Largest accepted.
        max: u32,
    },
    /// Even the smallest cache does not fit the memory bound on this many CPUs.
    #[error(
        "`sensor.xdp.max_map_memory_mib` is too small for {cpus} possible CPUs: the smallest \
         maps need {needed} bytes, the bound is {max} bytes"
    )]
    TooSmall {
        /// Possible CPUs.
        cpus: u32,
        /// Bytes the smallest plan needs.
        needed: u64,
        /// The bound.
        max: u64,
    },
}

/// Checks that a slot count is a power of two in `min..=max`.
///
/// # Errors
/// [`SizingError::Slots`] naming `field`.
pub const fn check_slots(
    field: &'static str,
    value: u32,
    min: u32,
    max: u32,
) -> Result<(), SizingError> {
    if value.is_power_of_two() && value >= min && value <= max {
        Ok(())
    } else {
        Err(SizingError::Slots {
            field,
            value,
            min,
            max,
        })
    }
}

/// Chooses the map sizes for `possible_cpus` CPUs (at least one is assumed).
///
/// # Errors
/// [`SizingError`] when a slot count is out of range or the bound cannot be met.
pub fn plan(request: &MapRequest, possible_cpus: u32) -> Result<MapPlan, SizingError> {
    check_slots(
        "sensor.xdp.dedup_slots",
        request.dedup_slots,
        MIN_DEDUP_SLOTS,
        MAX_DEDUP_SLOTS,
    )?;
    check_slots(
        "sensor.xdp.source_slots",
        request.source_slots,
        MIN_SOURCE_SLOTS,
        MAX_SOURCE_SLOTS,
    )?;
    let mut plan = MapPlan {
        possible_cpus: possible_cpus.max(1),
        dedup_slots: request.dedup_slots,
        source_slots: request.source_slots,
    };
    while plan.bounded_bytes() > request.max_bytes && plan.dedup_slots > MIN_DEDUP_SLOTS {
        plan.dedup_slots /= 2;
    }
    if plan.bounded_bytes() > request.max_bytes {
        return Err(SizingError::TooSmall {
            cpus: plan.possible_cpus,
            needed: plan.bounded_bytes(),
            max: request.max_bytes,
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::{MapPlan, MapRequest, SizingError, plan};

    #[test]
    fn small_hosts_get_what_they_ask_for() {
        let p = plan(&MapRequest::default(), 2).unwrap();
        assert_eq!(
            p,
            MapPlan {
                possible_cpus: 2,
                dedup_slots: 1 << 16,
                source_slots: 1 << 16
            }
        );
        assert_eq!(p.dedup_bytes(), 2 * 65_536 * 48);
        assert_eq!(p.source_bytes(), 65_536 * 32);
    }

    #[test]
    fn many_cpus_shrink_the_dedup_cache_to_the_bound() {
        // 128 CPUs: 64 MiB - 2 MiB of budget table leaves 62 MiB, 8,192 slots of 48 bytes
        // per CPU (48 MiB); 16,384 would need 96 MiB.
        let p = plan(&MapRequest::default(), 128).unwrap();
        assert_eq!((p.dedup_slots, p.source_slots), (8_192, 65_536));
        assert_eq!(p.bounded_bytes(), 128 * 8_192 * 48 + 65_536 * 32);
        assert!(p.bounded_bytes() <= 64 << 20);
    }

    #[test]
    fn impossible_bounds_and_odd_sizes_are_refused_with_the_field() {
        let tiny = MapRequest {
            max_bytes: 1 << 20,
            ..MapRequest::default()
        };
        assert_eq!(
            plan(&tiny, 4),
            Err(SizingError::TooSmall {
                cpus: 4,
                needed: 4 * 1024 * 48 + 65_536 * 32,
                max: 1 << 20
            })
        );
        let odd = MapRequest {
            dedup_slots: 3_000,
            ..MapRequest::default()
        };
        assert!(
            plan(&odd, 1)
                .unwrap_err()
                .to_string()
                .contains("sensor.xdp.dedup_slots")
        );
        let small = MapRequest {
            source_slots: 512,
            ..MapRequest::default()
        };
        assert!(
            plan(&small, 1)
                .unwrap_err()
                .to_string()
                .contains("sensor.xdp.source_slots")
        );
    }
}
