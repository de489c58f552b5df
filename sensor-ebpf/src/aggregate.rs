//! The kernel half of scan aggregation ([`sensor_common::aggregate`]): a probe of a block the
//! agent installed sets its port's bit instead of writing a record.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap},
};
use sensor_common::aggregate::{
    AGG_BLOCK_PORTS, AGG_BLOCK_SHIFT, AGG_SLOTS, AGG_WORDS, AggBits, AggKey,
};

use crate::atomic;

/// Installed blocks: key to slot index, written by the agent only.
#[map]
static AGG_INDEX: HashMap<AggKey, u32> = HashMap::with_max_entries(AGG_SLOTS, 0);

/// The slots' bitmaps, mapped by the agent; updated with atomic instructions only.
#[map]
static AGG_BITS: Array<AggBits> = Array::with_max_entries(AGG_SLOTS, BPF_F_MMAPABLE);

/// How many slots are installed: 0 spares every probe the index lookup.
#[map]
static AGG_ACTIVE: Array<u64> = Array::with_max_entries(1, 0);

/// Sets the bit of the probe's port when its block is installed; false when it is not (the
/// probe then takes the record path).
#[inline(always)]
pub fn aggregate(src: [u64; 2], dst: [u64; 2], kind: u32, port: u16) -> bool {
    match AGG_ACTIVE.get(0) {
        Some(active) if *active != 0 => {}
        _ => return false,
    }
    let key = AggKey {
        src_addr: src,
        dst_addr: dst,
        kind,
        block: u32::from(port) >> AGG_BLOCK_SHIFT,
    };
    let Some(index) = AGG_INDEX.get_ptr(key) else {
        return false;
    };
    // SAFETY: a live map value of the index, a plain u32.
    let index = unsafe { *index };
    let Some(slot) = AGG_BITS.get_ptr_mut(index) else {
        return false;
    };
    let offset = u32::from(port) & (AGG_BLOCK_PORTS - 1);
    let word = (offset >> 6) as usize & (AGG_WORDS - 1);
    let bit = 1u64 << (offset & 63);
    // SAFETY: `slot` is a live, 8-byte aligned value of AGG_BITS and `word` is below
    // AGG_WORDS, so both pointers stay inside it; every CPU and the agent touch it atomically.
    unsafe {
        let bits = (&raw mut (*slot).bits).cast::<u64>().add(word);
        let old = atomic::fetch_or(bits, bit);
        if old & bit == 0 {
            atomic::store(&raw mut (*slot).dirty, 1);
        }
    }
    true
}
