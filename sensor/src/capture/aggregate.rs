//! The agent half of scan aggregation ([`sensor_common::aggregate`]): decides which port
//! blocks the kernel aggregates, and turns the bits it set back into observations.
//!
//! A scan that holds [`INSTALL_AFTER`] distinct ports in the merger (its source by
//! `source_prefix`, destination and protocol) is scanning: the block of each further record's
//! port (for that record's address and kind) gets a slot, and the kernel sets bits there instead of
//! writing records. The first such record installs every block of the port space at once while
//! more than [`RESERVE`] slots would stay free (else its own block only): a scan then sends no
//! record per block it reaches, nor the records that arrive while that block's install is in
//! flight (about one wake-up's worth each, 500 records at 64 KiB, measured as 16 % of a
//! sequential scan's probes when blocks were installed one by one). A block that never sees a
//! port retires after [`IDLE`] like any other. Every drain tick the bits of dirty slots are taken with atomic swaps on
//! the shared mapping (the kernel sets them with atomic ORs, so none is lost between the two)
//! and each set bit becomes one observation of its port (handed over a word of 64 ports at a
//! time, so the merger looks its scan up once per word), with the addresses, interface, VLAN and
//! fingerprint of the record that installed the block (sequence number and IP ID cleared:
//! they belong to that one packet). A block quiet for [`IDLE`] leaves the index and is drained
//! once more after [`GRACE`], then its slot is free again.
//!
//! Hand-written mapping (`mmap` of the `BPF_F_MMAPABLE` array) because aya exposes no mapped
//! view of an array map.

use std::{
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use aya::maps::{Array, HashMap, MapData};
use sensor_common::{
    ProbeKind,
    aggregate::{AGG_BLOCK_SHIFT, AGG_SLOTS, AGG_WORDS, AggBits, AggKey, INSTALL_AFTER},
};
use tokio::time::Instant;

use super::Observation;

/// A block without a new port for this long leaves the index.
pub const IDLE: Duration = Duration::from_secs(2);
/// A block out of the index is drained once more after this long (a program run that found it
/// just before may still set a bit), then its slot is reused.
pub const GRACE: Duration = Duration::from_millis(200);

/// Slots kept free for single-block installs: a scan installs the whole port space only while
/// more than this many would remain.
pub const RESERVE: usize = AGG_SLOTS as usize / 4;

/// Blocks of the port space.
const BLOCKS: u32 = (u16::MAX as u32 + 1) >> AGG_BLOCK_SHIFT;

/// What aggregation did, for the statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateStats {
    /// Blocks in the kernel's index now.
    pub installed: u64,
    /// Blocks ever installed.
    pub installs: u64,
    /// Ports taken from the bitmaps (each one observation).
    pub ports: u64,
    /// Installs skipped because every slot was in use (those probes keep their records).
    pub full: u64,
    /// Map updates the kernel refused (logged; the probes keep their records).
    pub errors: u64,
}

#[derive(Debug)]
enum Slot {
    Free,
    Live {
        key: AggKey,
        template: Observation,
        last_port: Instant,
    },
    Retiring {
        template: Observation,
        since: Instant,
    },
}

/// The shared mapping of the bitmaps.
struct Bits {
    base: NonNull<AggBits>,
    len: usize,
}

// SAFETY: the mapping is shared memory touched only through atomic operations, valid until
// `drop` unmaps it, whichever thread holds the value.
unsafe impl Send for Bits {}

impl Bits {
    fn map(data: &MapData) -> std::io::Result<Self> {
        let len = size_of::<AggBits>().saturating_mul(AGG_SLOTS as usize);
        // SAFETY: a fresh shared mapping of a valid map fd; the kernel checks the length
        // against the map's size.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(base.cast::<AggBits>())
            .ok_or_else(|| std::io::Error::other("mmap gave null"))?;
        Ok(Self { base, len })
    }

    /// The word `i` of slot `slot` (`i == 0` is the dirty flag, then the bitmap).
    fn word(&self, slot: u32, i: usize) -> Option<&AtomicU64> {
        if slot >= AGG_SLOTS || i > AGG_WORDS {
            return None;
        }
        // SAFETY: `slot` is below AGG_SLOTS and `i` at most AGG_WORDS, so the word lies inside
        // the mapping (AGG_SLOTS values of 1 + AGG_WORDS aligned u64s), which lives as long as
        // `self`; the kernel and this process only access it atomically.
        unsafe {
            let value = self.base.as_ptr().add(slot as usize).cast::<u64>().add(i);
            Some(AtomicU64::from_ptr(value))
        }
    }

    /// Takes the set bits of `slot` if it is dirty: `(word index, bits)` of each non-zero word.
    fn take(&self, slot: u32, out: &mut Vec<(usize, u64)>) {
        out.clear();
        let Some(dirty) = self.word(slot, 0) else {
            return;
        };
        // Clear the flag first: a bit set after this sets it again, so none waits unseen.
        if dirty.swap(0, Ordering::AcqRel) == 0 {
            return;
        }
        for i in 0..AGG_WORDS {
            if let Some(w) = self.word(slot, i + 1)
                && w.load(Ordering::Relaxed) != 0
            {
                let bits = w.swap(0, Ordering::AcqRel);
                if bits != 0 {
                    out.push((i, bits));
                }
            }
        }
    }
}

impl Drop for Bits {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, once.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// Aggregation's maps and state. See the module documentation.
pub struct Aggregator {
    index: HashMap<MapData, AggKey, u32>,
    active: Array<MapData, u64>,
    bits: Bits,
    slots: Vec<Slot>,
    free: Vec<u32>,
    installed: std::collections::HashMap<AggKey, u32, foldhash::fast::RandomState>,
    stats: AggregateStats,
    scratch: Vec<(usize, u64)>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl Aggregator {
    /// Takes over the three maps of a loaded program.
    ///
    /// # Errors
    /// The `mmap` of the bitmaps failed.
    pub fn new(
        index: HashMap<MapData, AggKey, u32>,
        active: Array<MapData, u64>,
        bits_map: &MapData,
    ) -> std::io::Result<Self> {
        let bits = Bits::map(bits_map)?;
        Ok(Self {
            index,
            active,
            bits,
            slots: (0..AGG_SLOTS).map(|_| Slot::Free).collect(),
            free: (0..AGG_SLOTS).rev().collect(),
            installed: std::collections::HashMap::default(),
            stats: AggregateStats::default(),
            scratch: Vec::with_capacity(AGG_WORDS),
        })
    }

    /// What aggregation did so far.
    #[must_use]
    pub const fn stats(&self) -> AggregateStats {
        self.stats
    }

    /// A record arrived whose scan (as the merger holds it: source by `source_prefix`,
    /// destination, protocol) has `ports` distinct ports now: once that reaches
    /// [`INSTALL_AFTER`], the record's block is installed. The merger's own bounded state
    /// decides, so a flood of one-probe sources costs aggregation no table of its own.
    pub fn note(&mut self, obs: &Observation, ports: usize, now: Instant) {
        if obs.kind == ProbeKind::Ping || u32::try_from(ports).unwrap_or(u32::MAX) < INSTALL_AFTER {
            return;
        }
        let key = AggKey::new(
            octets(obs.src),
            octets(obs.dst),
            obs.kind as u32,
            obs.dst_port,
        );
        if self.installed.contains_key(&key) {
            // A probe that raced the install, or one the kernel let through since.
            return;
        }
        let mut template = *obs;
        template.fp.seq = 0;
        template.fp.ip_id = 0;
        if !self.install(key, template, now) {
            return;
        }
        if self.free.len() > RESERVE.saturating_add(BLOCKS as usize) {
            for block in (0..BLOCKS).filter(|b| *b != key.block) {
                let other = AggKey { block, ..key };
                if !self.installed.contains_key(&other) {
                    let port = u16::try_from(block << AGG_BLOCK_SHIFT).unwrap_or(0);
                    self.install(
                        other,
                        Observation {
                            dst_port: port,
                            ..template
                        },
                        now,
                    );
                }
            }
        }
        self.set_active();
    }

    /// Gives `key` a free slot, its template (whose `dst_port` lies in the block) and an entry
    /// in the kernel's index; false when no slot is free or the kernel refused.
    fn install(&mut self, key: AggKey, template: Observation, now: Instant) -> bool {
        let Some(slot) = self.free.pop() else {
            self.stats.full = self.stats.full.saturating_add(1);
            return false;
        };
        if let Err(err) = self.index.insert(key, slot, 0) {
            self.free.push(slot);
            self.stats.errors = self.stats.errors.saturating_add(1);
            tracing::warn!(error = %err, "Installing an aggregated block failed; its probes keep their records.");
            return false;
        }
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Slot::Live {
                key,
                template,
                last_port: now,
            };
        }
        self.installed.insert(key, slot);
        self.stats.installs = self.stats.installs.saturating_add(1);
        true
    }

    fn set_active(&mut self) {
        let n = u64::try_from(self.installed.len()).unwrap_or(u64::MAX);
        self.stats.installed = n;
        if let Err(err) = self.active.set(0, n, 0) {
            self.stats.errors = self.stats.errors.saturating_add(1);
            tracing::warn!(error = %err, "Updating the aggregation switch failed.");
        }
    }

    /// Takes every port the kernel set and retires quiet blocks. Each non-zero word of a bitmap
    /// goes to `each` as an observation stamped `ts_ns` whose `dst_port` is the word's first
    /// port, with the word: its set bit `b` stands for port `dst_port + b` (see
    /// [`crate::scan::Merger::observe_word`]).
    pub fn drain(&mut self, now: Instant, ts_ns: u64, mut each: impl FnMut(&Observation, u64)) {
        let mut retired = false;
        for slot in 0..AGG_SLOTS {
            let Some(state) = self.slots.get(slot as usize) else {
                break;
            };
            let template = match state {
                Slot::Free => continue,
                Slot::Live { template, .. } | Slot::Retiring { template, .. } => *template,
            };
            self.bits.take(slot, &mut self.scratch);
            let block = u32::from(template.dst_port) >> AGG_BLOCK_SHIFT;
            let mut taken = 0u64;
            for (i, word) in &self.scratch {
                // `i` < 64 words of a 4,096-port block.
                let word_base = u32::try_from(*i).unwrap_or(0).saturating_mul(64);
                let first = (block << AGG_BLOCK_SHIFT) | word_base;
                each(
                    &Observation {
                        ts_ns,
                        dst_port: u16::try_from(first).unwrap_or(0),
                        ..template
                    },
                    *word,
                );
                taken = taken.saturating_add(u64::from(word.count_ones()));
            }
            self.stats.ports = self.stats.ports.saturating_add(taken);
            let Some(state) = self.slots.get_mut(slot as usize) else {
                break;
            };
            match state {
                Slot::Live { key, last_port, .. } => {
                    if taken > 0 {
                        *last_port = now;
                    } else if now.saturating_duration_since(*last_port) >= IDLE {
                        let key = *key;
                        if let Err(err) = self.index.remove(&key) {
                            tracing::debug!(error = %err, "Removing an aggregated block failed.");
                        }
                        self.installed.remove(&key);
                        *state = Slot::Retiring {
                            template,
                            since: now,
                        };
                        retired = true;
                    }
                }
                Slot::Retiring { since, .. } => {
                    if now.saturating_duration_since(*since) >= GRACE {
                        *state = Slot::Free;
                        self.free.push(slot);
                    }
                }
                Slot::Free => {}
            }
        }
        if retired {
            self.set_active();
        }
    }
}
