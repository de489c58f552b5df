//! The kernel/user contract of the sensor.
//!
//! Everything that crosses the boundary between the XDP program (`sensor-ebpf`) and the
//! userspace agent (`sensor`) is defined once, here: the record sent over the ring buffer, the
//! probe kinds, the per-CPU counters, the runtime knobs and the names and sizes of the maps.
//! Records are `#[repr(C)]` with no implicit padding and no `bool`, and their sizes are checked at
//! compile time, so both sides always agree on the layout. Enum discriminants are fixed: never
//! renumber them, only append.
#![no_std]

pub mod aggregate;
pub mod classify;
pub mod decoy;

use core::mem::size_of;

/// Name of the XDP program inside the object file.
pub const PROGRAM_NAME: &str = "sensor";

/// Ring buffer carrying [`ScanRecord`]s from the kernel to userspace.
pub const RECORDS_MAP: &str = "RECORDS";
/// Default size of [`RECORDS_MAP`] in bytes (a power of two, a multiple of the page size).
///
/// 16 MiB absorbs multi-million-packet-per-second bursts while the agent is descheduled; smaller
/// rings measurably lose records at line rate on the reference machines.
pub const RECORDS_MAP_BYTES: u32 = 16 * 1024 * 1024;

/// Per-CPU array with one entry: `[u64; Counter::COUNT]`, indexed by [`Counter`].
pub const COUNTERS_MAP: &str = "COUNTERS";

/// LPM trie of allow-listed source networks (`whitelist_ips`): keys are a 32-bit prefix length
/// followed by a 128-bit address (IPv4 mapped, so IPv4 `/n` is `/(96 + n)`), values `u8`.
pub const ALLOWLIST_MAP: &str = "ALLOWLIST";
/// Maximum number of allow-list entries.
pub const ALLOWLIST_MAX_ENTRIES: u32 = 4096;

/// Per-CPU direct-mapped cache that suppresses repeated identical probes, of [`DedupSlot`]s.
///
/// Its size is chosen at load time (`sensor.xdp.dedup_slots`, reduced to fit
/// `sensor.xdp.max_map_memory_mib` on hosts with many CPUs); the kernel masks slot indexes with
/// [`Settings::dedup_slot_mask`].
pub const DEDUP_MAP: &str = "DEDUP";
/// Number of slots per CPU of [`DEDUP_MAP`] compiled into the object (a power of two); the
/// loader overrides it.
pub const DEDUP_SLOTS: u32 = 1 << 16;

/// Shared (not per-CPU) direct-mapped table of per-source record budgets, of [`BudgetSlot`]s,
/// updated with atomic operations: one budget per source whichever CPU its packets reach.
///
/// Its size is chosen at load time (`sensor.xdp.source_slots`); the kernel masks slot indexes
/// with [`Settings::source_slot_mask`].
pub const SOURCE_BUDGET_MAP: &str = "SOURCE_BUDGET";
/// Number of slots of [`SOURCE_BUDGET_MAP`] compiled into the object (a power of two); the
/// loader overrides it.
pub const SOURCE_BUDGET_SLOTS: u32 = 1 << 16;

/// Per-CPU single-slot array holding the CPU-wide record budget, of [`BudgetSlot`].
pub const CPU_BUDGET_MAP: &str = "CPU_BUDGET";

/// Per-CPU table of recently seen sources, of [`HoldSlot`]s: the flood reserve.
///
/// Every probe that passed dedup and budgets counts against its source's slot, one of two
/// candidates ([`hold_slots`]: two-choice hashing). A new source takes a candidate that is free
/// (empty or idle), else the one with fewer probes (a one-off spoofed source before a scan on
/// its way to promotion), the older on a tie; so a flood source hashing onto a scanner's slot
/// takes its other candidate unless that one is better protected still. A source seen
/// with [`PROMOTE_PROBES`] probes within [`HOLD_IDLE_NS`] of each other is *promoted* (probing
/// many ports: a scan). While the ring is under pressure (at least 1/[`PRESSURE_FRACTION`] of
/// it pending), probes of sources not promoted are held in their slot ([`Counter::Held`])
/// instead of a record each, and released as records when their source is promoted
/// ([`Counter::Released`]); a promoted, active source is never evicted from its slot by another.
/// So a one-off spoofed source costs a slot write, not ring space, and a real scan keeps its
/// records, including its first ones.
pub const HOLD_MAP: &str = "HOLD";
/// Slots of [`HOLD_MAP`] per CPU (a power of two, at most 2^16: [`hold_slots`] takes the two
/// candidates from the two halves of one 32-bit hash).
pub const HOLD_SLOTS: u32 = 1 << 16;

const _: () = assert!(HOLD_SLOTS.is_power_of_two() && HOLD_SLOTS <= 1 << 16);

/// The two distinct candidate slots of [`HOLD_MAP`] for a source `key` (its masked address as
/// two native-endian words) under `seed` (`Settings::hash_seed`).
#[inline(always)]
#[must_use]
pub const fn hold_slots(key: [u64; 2], seed: u64) -> (u32, u32) {
    let h = hash_words(key[0] ^ seed.rotate_left(7), key[1]);
    let first = h & (HOLD_SLOTS - 1);
    let second = (h >> 16) & (HOLD_SLOTS - 1);
    (first, if second == first { first ^ 1 } else { second })
}

/// Mixes two words into 32 bits. Every input bit reaches every output bit (two rounds of the
/// murmur3 64-bit finaliser): slot indexes are low bits, and IPv6 prefixes differ in high ones.
#[inline(always)]
#[must_use]
pub const fn hash_words(a: u64, b: u64) -> u32 {
    let x = fmix64(a.wrapping_add(fmix64(b)));
    (x ^ (x >> 32)) as u32
}

/// The murmur3 64-bit finaliser.
#[inline(always)]
const fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}
/// Probes from one source (within [`HOLD_IDLE_NS`] of each other, on one CPU) that promote it.
pub const PROMOTE_PROBES: u32 = 8;
/// A source slot idle this long is free again (and its promotion forgotten).
pub const HOLD_IDLE_NS: u64 = 1_000_000_000;
/// The ring is under pressure when at least `1 / PRESSURE_FRACTION` of it holds unread records.
pub const PRESSURE_FRACTION: u64 = 4;

/// Single-slot array holding the runtime knobs, of [`Settings`].
pub const SETTINGS_MAP: &str = "SETTINGS";

/// Length of a budget window in nanoseconds: budgets are "records per second".
pub const BUDGET_WINDOW_NS: u64 = 1_000_000_000;

/// Maximum number of IPv6 extension headers walked before the packet is given up as odd.
pub const MAX_IPV6_EXT_HEADERS: u32 = 8;
/// Maximum number of VLAN tags (802.1Q / 802.1ad) walked.
pub const MAX_VLAN_TAGS: u32 = 2;

/// A probe kind. TCP kinds come from the flags (and, for [`ProbeKind::Os`], the window and
/// option layout of nmap's OS-detection probes); [`ProbeKind::Udp`] and [`ProbeKind::Ping`] are
/// the UDP and ICMP probes. The rules live in [`classify`], shared by the kernel program and the
/// userspace (libpcap) classifier, so both always agree.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeKind {
    /// SYN without ACK (half-open scan, or the first packet of any connection).
    Syn = 1,
    /// FIN alone (`nmap -sF`).
    Fin = 2,
    /// No flag at all (`nmap -sN`).
    Null = 3,
    /// FIN, PSH and URG (`nmap -sX`).
    Xmas = 4,
    /// ACK alone, without payload, that no local connection expects (`nmap -sA`, `-sW`).
    Ack = 5,
    /// FIN + ACK without payload that no local connection expects (`nmap -sM`).
    Maimon = 6,
    /// A flag combination no TCP stack sends: SYN+FIN, SYN+RST, FIN+RST, or flags without ACK
    /// other than SYN, FIN, RST, NULL and XMAS (`nmap --scanflags`).
    Odd = 7,
    /// One of nmap's OS-detection probes (SEQ set, ECN, T2–T7), recognised by flags, window
    /// and TCP option layout (`nmap -O`).
    Os = 8,
    /// A UDP datagram (empty or with a payload) that is not a reply to a local connected socket
    /// (`nmap -sU`).
    Udp = 9,
    /// An ICMP echo, timestamp or address-mask request (ICMPv6 echo request): host discovery
    /// (`nmap -sn -PE -PP -PM`, `ping`).
    Ping = 10,
}

impl ProbeKind {
    /// All kinds, in discriminant order.
    pub const ALL: [Self; 10] = [
        Self::Syn,
        Self::Fin,
        Self::Null,
        Self::Xmas,
        Self::Ack,
        Self::Maimon,
        Self::Odd,
        Self::Os,
        Self::Udp,
        Self::Ping,
    ];

    /// Decodes a raw discriminant coming from the kernel; `None` for unknown values.
    #[must_use]
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Syn),
            2 => Some(Self::Fin),
            3 => Some(Self::Null),
            4 => Some(Self::Xmas),
            5 => Some(Self::Ack),
            6 => Some(Self::Maimon),
            7 => Some(Self::Odd),
            8 => Some(Self::Os),
            9 => Some(Self::Udp),
            10 => Some(Self::Ping),
            _ => None,
        }
    }

    /// Uppercase token used in `portscan.query` events (`extra.flags`).
    #[must_use]
    pub const fn token(self) -> &'static str {
        match self {
            Self::Syn => "SYN",
            Self::Fin => "FIN",
            Self::Null => "NULL",
            Self::Xmas => "XMAS",
            Self::Ack => "ACK",
            Self::Maimon => "MAIMON",
            Self::Odd => "ODD",
            Self::Os => "OS",
            Self::Udp => "UDP",
            Self::Ping => "PING",
        }
    }

    /// The IP protocol of probes of this kind ([`protocol`]).
    #[must_use]
    pub const fn protocol(self) -> u8 {
        match self {
            Self::Udp => protocol::UDP,
            Self::Ping => protocol::ICMP,
            _ => protocol::TCP,
        }
    }

    /// Classifies the low six TCP flag bits (FIN, SYN, RST, PSH, ACK, URG) of a segment
    /// without options or payload information: SYN, FIN, NULL and XMAS only. The full rule,
    /// used by both classifiers, is [`classify::tcp`].
    #[must_use]
    pub const fn classify(flags: u8) -> Option<Self> {
        match flags & tcp_flags::MASK {
            tcp_flags::SYN => Some(Self::Syn),
            tcp_flags::FIN => Some(Self::Fin),
            0 => Some(Self::Null),
            tcp_flags::XMAS => Some(Self::Xmas),
            _ => None,
        }
    }
}

/// IP protocol numbers of a record (`ScanRecord::protocol`).
pub mod protocol {
    /// ICMP (IPv4) and ICMPv6 records both use this value; the family tells them apart.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6 as it appears in the IPv6 next-header field.
    pub const ICMPV6: u8 = 58;
}

/// TCP flag bits as they appear in byte 13 of the TCP header.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// The six classic flags; ECE and CWR are ignored for classification.
    pub const MASK: u8 = 0x3f;
    /// FIN + PSH + URG: the "Christmas tree" probe.
    pub const XMAS: u8 = FIN | PSH | URG;
}

/// Address family of a record (`ScanRecord::family`).
pub mod family {
    /// IPv4; the addresses are IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
    pub const IPV4: u8 = 4;
    /// IPv6.
    pub const IPV6: u8 = 6;
}

/// One probe packet, as sent by the kernel over [`RECORDS_MAP`].
///
/// Besides the addresses and ports, it carries what scanner attribution and the passive OS
/// hint need (IP TTL, IP ID, DF, TCP window, sequence numbers and the raw TCP options, from
/// which userspace reads MSS, window scale, timestamps and the option layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanRecord {
    /// Raw [`ProbeKind`] discriminant (kept raw: userspace validates it).
    pub kind: u32,
    /// Interface index the packet arrived on.
    pub ifindex: u32,
    /// `bpf_ktime_get_coarse_ns()` when the packet was seen (CLOCK_MONOTONIC, tick resolution).
    pub ts_ns: u64,
    /// Source address; IPv4 is IPv4-mapped (`::ffff:a.b.c.d`).
    pub src_addr: [u8; 16],
    /// Destination address; IPv4 is IPv4-mapped.
    pub dst_addr: [u8; 16],
    /// TCP or UDP source port, host byte order; 0 for ICMP.
    pub src_port: u16,
    /// TCP or UDP destination port, host byte order; 0 for ICMP.
    pub dst_port: u16,
    /// [`family::IPV4`] or [`family::IPV6`].
    pub family: u8,
    /// TCP flags byte as received (ECE and CWR included); 0 for UDP and ICMP.
    pub tcp_flags: u8,
    /// Outer VLAN id (12 bits), or 0 for untagged frames.
    pub vlan_id: u16,
    /// [`protocol::TCP`], [`protocol::UDP`] or [`protocol::ICMP`] (ICMPv6 included).
    pub protocol: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification, host byte order; 0 for IPv6.
    pub ip_id: u16,
    /// TCP window, host byte order.
    pub window: u16,
    /// TCP urgent pointer, host byte order.
    pub urg_ptr: u16,
    /// TCP sequence number, host byte order (ICMP: identifier << 16 | sequence).
    pub seq: u32,
    /// TCP acknowledgment number, host byte order.
    pub ack: u32,
    /// Bit 0 ([`classify::QUIRK_DF`]): IPv4 "don't fragment"; other bits zero.
    pub quirks: u8,
    /// ICMP type (ICMPv6 type for IPv6); 0 for TCP and UDP.
    pub icmp_type: u8,
    /// Bytes after the TCP / UDP / ICMP header.
    pub payload_len: u16,
    /// Valid bytes of `options` (TCP data offset × 4 − 20, at most 40).
    pub options_len: u8,
    /// Reserved, zero.
    pub reserved: [u8; 3],
    /// The TCP options area as received (zero after `options_len`); userspace parses it with
    /// [`classify::tcp_options`].
    pub options: [u8; classify::MAX_OPTIONS_BYTES],
}

// Layout extended deliberately with the fingerprint fields of scan kinds, attribution and OS
// hints (was 56 bytes); the original fields keep their offsets.
const _: () = assert!(size_of::<ScanRecord>() == 120);
const _: () = assert!(core::mem::offset_of!(ScanRecord, vlan_id) == 54);
const _: () = assert!(core::mem::offset_of!(ScanRecord, protocol) == 56);
const _: () = assert!(core::mem::offset_of!(ScanRecord, seq) == 64);
const _: () = assert!(core::mem::offset_of!(ScanRecord, quirks) == 72);
const _: () = assert!(core::mem::offset_of!(ScanRecord, options) == 80);

/// One slot of the per-CPU deduplication cache.
///
/// The slot is chosen by a hash of the key; a slot holding another key is simply overwritten
/// (a collision costs at most one extra record, never a lost one).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupSlot {
    /// When the key was last let through, `bpf_ktime_get_coarse_ns()`; 0 means empty.
    pub ts_ns: u64,
    /// Source address as two native-endian words (comparisons stay two loads).
    pub src_addr: [u64; 2],
    /// Destination address as two native-endian words.
    pub dst_addr: [u64; 2],
    /// Destination port.
    pub dst_port: u16,
    /// Reserved, zero.
    pub reserved: u16,
    /// Raw [`ProbeKind`].
    pub kind: u32,
}

const _: () = assert!(size_of::<DedupSlot>() == 48);

/// One slot of the per-CPU source table [`HOLD_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldSlot {
    /// Source key (address masked to its prefix) as two native-endian words.
    pub src_addr: [u64; 2],
    /// Last probe of the source, `bpf_ktime_get_coarse_ns()`; 0 means empty.
    pub last_ns: u64,
    /// Probes counted since the source took the slot (saturating at [`PROMOTE_PROBES`]).
    pub probes: u32,
    /// Held probes in `ports` / `kinds` (at most [`PROMOTE_PROBES`] − 1).
    pub held: u32,
    /// Destination ports (ICMP: type) of the held probes.
    pub ports: [u16; PROMOTE_PROBES as usize],
    /// Raw [`ProbeKind`]s of the held probes.
    pub kinds: [u8; PROMOTE_PROBES as usize],
}

const _: () = assert!(size_of::<HoldSlot>() == 56);

/// A records-per-second budget window, per source (direct-mapped, shared by all CPUs) or per CPU.
///
/// In [`SOURCE_BUDGET_MAP`] a slot is a bucket: every source whose key hashes to it shares its
/// budget (a collision makes the bound stricter, never looser; the hash is seeded at load time
/// with [`Settings::hash_seed`], so collisions cannot be aimed). `window_start_ns` and `count`
/// are 64-bit so that the kernel can update them with atomic instructions.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetSlot {
    /// Start of the current window, `bpf_ktime_get_coarse_ns()`.
    pub window_start_ns: u64,
    /// Source key (address masked to its prefix) that opened the current window, as two
    /// native-endian words; diagnostics only (unused for the CPU budget).
    pub src_addr: [u64; 2],
    /// Records let through (or asked for) in the current window.
    pub count: u64,
}

// Layout changed deliberately with the shared budget (count widened to 64 bits for atomics,
// replacing `count: u32` + `reserved: u32`): same size, `count` at the same offset.
const _: () = assert!(size_of::<BudgetSlot>() == 32);
const _: () = assert!(core::mem::offset_of!(BudgetSlot, count) == 24);

/// Runtime knobs of the XDP program, written by userspace into [`SETTINGS_MAP`] before attach.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Identical probes (source, destination, port, kind) within this window produce one record.
    /// 0 disables deduplication.
    pub dedup_window_ns: u64,
    /// Records per second allowed per source (all CPUs together); 0 means unlimited.
    pub source_budget: u32,
    /// Records per second allowed per CPU; 0 means unlimited.
    pub cpu_budget: u32,
    /// The reader is woken each time a CPU has written this many bytes of records; otherwise it
    /// drains on its own timer. 0 wakes on every record.
    pub wakeup_bytes: u32,
    /// Non-zero when the allow-list holds at least one entry (saves the trie lookup otherwise).
    pub allowlist_enabled: u32,
    /// Slots of [`DEDUP_MAP`] per CPU minus one (the map size is a power of two chosen at load).
    pub dedup_slot_mask: u32,
    /// Slots of [`SOURCE_BUDGET_MAP`] minus one (a power of two chosen at load).
    pub source_slot_mask: u32,
    /// Mask turning an IPv4 (IPv4-mapped) source address into its source key, as two
    /// native-endian words (see [`Settings::source_mask`]); `/32` by default.
    pub source_mask_v4: [u64; 2],
    /// Mask turning an IPv6 source address into its source key; `/64` by default.
    pub source_mask_v6: [u64; 2],
    /// Seed of the slot hashes, random per load (the loader draws one when this is 0), so that
    /// colliding keys cannot be chosen.
    pub hash_seed: u64,
}

// Layout extended deliberately with load-time map sizes, the source prefix and the hash seed
// (was 24 bytes).
const _: () = assert!(size_of::<Settings>() == 72);
const _: () = assert!(core::mem::offset_of!(Settings, dedup_slot_mask) == 24);
const _: () = assert!(core::mem::offset_of!(Settings, source_mask_v4) == 32);
const _: () = assert!(core::mem::offset_of!(Settings, hash_seed) == 64);

impl Settings {
    /// Defaults used when userspace has not written the map (all-zero map value means: no
    /// dedup, no budgets, wake on every record, no allow-list). Userspace always writes it.
    pub const DEFAULT: Self = Self {
        dedup_window_ns: 1_000_000_000,
        source_budget: 0,
        cpu_budget: 0,
        wakeup_bytes: 64 * 1024,
        allowlist_enabled: 0,
        dedup_slot_mask: DEDUP_SLOTS - 1,
        source_slot_mask: SOURCE_BUDGET_SLOTS - 1,
        source_mask_v4: Self::source_mask(96 + 32),
        source_mask_v6: Self::source_mask(64),
        hash_seed: 0,
    };

    /// The mask keeping the first `bits` bits (of 128, clamped) of a 16-byte address, as the
    /// two native-endian words the kernel compares. An IPv4 `/n` is `/(96 + n)` of its
    /// IPv4-mapped form.
    #[must_use]
    pub const fn source_mask(bits: u32) -> [u64; 2] {
        let bits = if bits > 128 { 128 } else { bits };
        let mask: u128 = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits)
        };
        let b = mask.to_be_bytes();
        [
            u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        ]
    }
}

/// Index of each per-CPU counter in [`COUNTERS_MAP`].
///
/// Two identities hold for the sums over all CPUs:
/// `Packets = ParseFailures + NonTcp + Fragments + OtherTcp + Probes` and
/// `Probes = AllowListed + Deduplicated + SourceBudget + CpuBudget + RecordsSent + RingBufFull
/// + Held + Aggregated`. Records written to the ring are `RecordsSent + Released` (`Released <= Held`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// Every packet the program saw.
    Packets = 0,
    /// Truncated or malformed headers, too many VLAN tags or IPv6 extension headers.
    ParseFailures = 1,
    /// Well-formed packets that are neither TCP nor a UDP or ICMP probe (ARP, ICMP replies,
    /// UDP replies to local connected sockets, multicast UDP, ...).
    NonTcp = 2,
    /// IP fragments whose TCP header is not (entirely) in this fragment.
    Fragments = 3,
    /// TCP packets that are not probes (connection traffic, RSTs, payload-carrying ACKs, ACKs
    /// a local socket expects).
    OtherTcp = 4,
    /// Probe packets (every [`ProbeKind`]).
    Probes = 5,
    /// Probes from allow-listed sources, ignored.
    AllowListed = 6,
    /// Probes suppressed because an identical one was recorded within the dedup window.
    Deduplicated = 7,
    /// Probes not recorded because their source exceeded its per-second budget.
    SourceBudget = 8,
    /// Probes not recorded because the CPU exceeded its per-second budget.
    CpuBudget = 9,
    /// Records written to the ring buffer.
    RecordsSent = 10,
    /// Records lost because the ring buffer was full.
    RingBufFull = 11,
    /// Probes of sources not (yet) seen probing many ports, held in [`HOLD_MAP`] instead of a
    /// record while the ring was under pressure (the one-off sources of a spoofed flood).
    Held = 12,
    /// Held probes written as records later, when their source was promoted.
    Released = 13,
    /// Probes of an aggregated block (a source known to scan), set as a bit in its port
    /// bitmap instead of a record (see [`aggregate`]).
    Aggregated = 14,
}

impl Counter {
    /// Number of counters (size of [`COUNTERS_MAP`]).
    pub const COUNT: u32 = 15;

    /// All counters, in index order.
    pub const ALL: [Self; Self::COUNT as usize] = [
        Self::Packets,
        Self::ParseFailures,
        Self::NonTcp,
        Self::Fragments,
        Self::OtherTcp,
        Self::Probes,
        Self::AllowListed,
        Self::Deduplicated,
        Self::SourceBudget,
        Self::CpuBudget,
        Self::RecordsSent,
        Self::RingBufFull,
        Self::Held,
        Self::Released,
        Self::Aggregated,
    ];

    /// Stable snake_case name used in logs and exported statistics.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Packets => "packets",
            Self::ParseFailures => "parse_failures",
            Self::NonTcp => "non_tcp",
            Self::Fragments => "fragments",
            Self::OtherTcp => "other_tcp",
            Self::Probes => "probes",
            Self::AllowListed => "allow_listed",
            Self::Deduplicated => "deduplicated",
            Self::SourceBudget => "source_budget",
            Self::CpuBudget => "cpu_budget",
            Self::RecordsSent => "records_sent",
            Self::RingBufFull => "ringbuf_full",
            Self::Held => "held",
            Self::Released => "released",
            Self::Aggregated => "aggregated",
        }
    }
}

#[cfg(feature = "user")]
mod user {
    use super::{
        BudgetSlot, DedupSlot, HoldSlot, ScanRecord, Settings,
        aggregate::{AggBits, AggKey},
    };

    // SAFETY: all of these are `#[repr(C)]` plain-old-data with no padding and no invalid bit
    // patterns (the sizes are asserted above).
    unsafe impl aya::Pod for ScanRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DedupSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BudgetSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Settings {}
    // SAFETY: as above.
    unsafe impl aya::Pod for HoldSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for AggKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for AggBits {}
}

#[cfg(test)]
mod tests {
    use super::{Counter, ProbeKind, Settings, tcp_flags};

    fn to_bytes(words: [u64; 2]) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&words[0].to_ne_bytes());
        out[8..].copy_from_slice(&words[1].to_ne_bytes());
        out
    }

    #[test]
    fn source_masks_keep_the_leading_bits_of_the_address_bytes() {
        let v6 = to_bytes(Settings::source_mask(64));
        assert_eq!(
            v6,
            [
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        let v4_24 = to_bytes(Settings::source_mask(96 + 24));
        assert_eq!(&v4_24[..15], &[0xff; 15]);
        assert_eq!(v4_24[15], 0);
        assert_eq!(to_bytes(Settings::source_mask(0)), [0; 16]);
        assert_eq!(to_bytes(Settings::source_mask(200)), [0xff; 16]);
        assert_eq!(to_bytes(Settings::source_mask(12))[..2], [0xff, 0xf0]);
        assert_eq!(Settings::DEFAULT.source_mask_v4, Settings::source_mask(128));
    }

    #[test]
    fn classification_matches_nmap_probe_types() {
        assert_eq!(ProbeKind::classify(tcp_flags::SYN), Some(ProbeKind::Syn));
        assert_eq!(ProbeKind::classify(tcp_flags::FIN), Some(ProbeKind::Fin));
        assert_eq!(ProbeKind::classify(0), Some(ProbeKind::Null));
        assert_eq!(ProbeKind::classify(tcp_flags::XMAS), Some(ProbeKind::Xmas));
        // ECE/CWR on a SYN (ECN negotiation) is still a SYN.
        assert_eq!(
            ProbeKind::classify(tcp_flags::SYN | 0xc0),
            Some(ProbeKind::Syn)
        );
        for ordinary in [
            tcp_flags::SYN | tcp_flags::ACK,
            tcp_flags::ACK,
            tcp_flags::RST,
            tcp_flags::RST | tcp_flags::ACK,
            tcp_flags::FIN | tcp_flags::ACK,
            tcp_flags::PSH | tcp_flags::ACK,
            tcp_flags::SYN | tcp_flags::FIN,
        ] {
            assert_eq!(ProbeKind::classify(ordinary), None, "flags {ordinary:#x}");
        }
    }

    #[test]
    fn raw_kinds_round_trip_and_reject_unknown() {
        for kind in ProbeKind::ALL {
            assert_eq!(ProbeKind::from_raw(kind as u32), Some(kind));
        }
        assert_eq!(ProbeKind::from_raw(0), None);
        assert_eq!(ProbeKind::from_raw(11), None);
    }

    #[test]
    fn counters_are_numbered_by_position() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
