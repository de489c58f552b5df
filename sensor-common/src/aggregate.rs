//! In-kernel aggregation of scans: once a source is known to scan, its probes set bits in a
//! port bitmap instead of writing a record each.
//!
//! The agent decides what is aggregated. When a (source, destination, kind) has sent
//! [`INSTALL_AFTER`] records, the agent gives the 4,096-port block of the record's port a slot
//! of [`AGG_BITS_MAP`] and enters the block's [`AggKey`] with that slot index in
//! [`AGG_INDEX_MAP`]. From then on the program, for a probe whose key is in the index, sets the
//! port's bit in the slot (an atomic OR, whichever CPU), marks the slot dirty and counts the
//! probe in [`crate::Counter::Aggregated`]: no dedup lookup, no budget, no 120-byte record.
//! The agent maps [`AGG_BITS_MAP`] (it is `BPF_F_MMAPABLE`) and takes the set bits with atomic
//! swaps every drain tick, so no bit set by the kernel is ever lost, and each becomes one
//! observation of that port. A slot whose block went quiet is removed from the index, drained
//! once more after a grace period (a program run that had already found the index entry may
//! still set a bit) and reused.
//!
//! The program looks the index up only while [`AGG_ACTIVE_MAP`] says a slot is installed, so
//! a sensor that sees no scan pays one array read per probe.

/// Hash map from [`AggKey`] to a slot index (`u32`) of [`AGG_BITS_MAP`], written by the agent.
pub const AGG_INDEX_MAP: &str = "AGG_INDEX";
/// Array of [`AggBits`], `BPF_F_MMAPABLE`, shared by all CPUs.
pub const AGG_BITS_MAP: &str = "AGG_BITS";
/// Single-slot array (`u64`): how many slots the agent has installed (0: skip the lookup).
pub const AGG_ACTIVE_MAP: &str = "AGG_ACTIVE";
/// Slots of [`AGG_BITS_MAP`] and entries of [`AGG_INDEX_MAP`] (a power of two).
pub const AGG_SLOTS: u32 = 4096;
/// Ports per slot: one block of the port space.
pub const AGG_BLOCK_PORTS: u32 = 4096;
/// `port >> AGG_BLOCK_SHIFT` is the block of a port.
pub const AGG_BLOCK_SHIFT: u32 = 12;
/// 64-bit words of a slot's bitmap.
pub const AGG_WORDS: usize = (AGG_BLOCK_PORTS / 64) as usize;
/// Records of one (source, destination, kind) after which the agent aggregates its blocks.
pub const INSTALL_AFTER: u32 = 16;

/// The key of one aggregated block.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AggKey {
    /// Source address (IPv4-mapped for IPv4) as two native-endian words, as the record's
    /// bytes read in order.
    pub src_addr: [u64; 2],
    /// Destination address, likewise.
    pub dst_addr: [u64; 2],
    /// Raw [`crate::ProbeKind`] (never [`crate::ProbeKind::Ping`]: ICMP has no ports).
    pub kind: u32,
    /// `dst_port >> AGG_BLOCK_SHIFT`.
    pub block: u32,
}

const _: () = assert!(size_of::<AggKey>() == 40);

/// One slot: a dirty flag and the bitmap of its block's ports (bit `p % 64` of word `p / 64`
/// for port offset `p` within the block).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AggBits {
    /// Non-zero when a bit was set since the agent last took them.
    pub dirty: u64,
    /// The ports seen and not yet taken.
    pub bits: [u64; AGG_WORDS],
}

const _: () = assert!(size_of::<AggBits>() == 520);

impl AggKey {
    /// The key of `port`'s block for addresses given as 16 bytes each.
    #[must_use]
    pub fn new(src: [u8; 16], dst: [u8; 16], kind: u32, port: u16) -> Self {
        Self {
            src_addr: words(src),
            dst_addr: words(dst),
            kind,
            block: u32::from(port) >> AGG_BLOCK_SHIFT,
        }
    }
}

/// Two native-endian words of 16 address bytes, as the kernel program holds addresses.
#[must_use]
pub fn words(b: [u8; 16]) -> [u64; 2] {
    [
        u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_covers_4096_ports() {
        let k = |port| AggKey::new([1; 16], [2; 16], 1, port).block;
        assert_eq!((k(0), k(4095), k(4096), k(65535)), (0, 0, 1, 15));
        assert_eq!(AGG_WORDS * 64, AGG_BLOCK_PORTS as usize);
    }
}
