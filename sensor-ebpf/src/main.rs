//! The sensor's XDP program.
//!
//! Sees every packet on the interface, classifies probes with the rules shared with userspace
//! ([`sensor_common::classify`]: SYN, FIN, NULL, XMAS, ACK, MAIMON, ODD, nmap OS probes, UDP,
//! ICMP host discovery; ACK, MAIMON and UDP only when no local connection expects the packet,
//! asked of the kernel's socket tables with `bpf_skc_lookup_tcp` / `bpf_sk_lookup_udp`), skips
//! allow-listed sources, suppresses repeated identical probes, enforces per-source and per-CPU
//! record budgets and sends one [`ScanRecord`] per remaining probe over a ring buffer.
//!
//! Cheap decisions first: a probe is classified from the fixed-offset header fields (the
//! options area is read only when nmap's OS marker could be in it), then checked against the
//! allow-list, the dedup table and the budgets; the rest of the fingerprint (sequence and
//! acknowledgment numbers, options, ICMP identifier) is read only by [`write_record`], for a
//! probe that is recorded.
//!
//! Aggregation: a probe of a (source, destination, kind, port block) the agent installed in
//! the aggregation index sets its port's bit in a shared bitmap instead of a record
//! ([`sensor_common::aggregate`]), before dedup and budgets.
//!
//! Flood reserve: while a quarter of the ring is unread, probes of sources not yet seen probing
//! [`PROMOTE_PROBES`] times are held in a per-CPU source table instead of a record each, and
//! released as records when their source reaches that count; a promoted, active source keeps
//! its slot. A spoofed flood of one-off sources then fills table slots, not the ring, and a
//! real scan (a source probing many ports) keeps every record (see
//! [`sensor_common::HOLD_MAP`]).
//!
//! Map sizes are chosen by the loader at load time; slot indexes are masked with the masks in
//! [`Settings`], and every array lookup is bounds-checked by the kernel helper, so a mask that
//! disagreed with the map size could only make a lookup miss (counted as a record sent without
//! deduplication or budget), never read out of bounds. The per-source budget lives in one map
//! shared by all CPUs and is updated with atomic instructions: a source spraying packets across
//! every RX queue still gets one budget. It never
//! drops or alters traffic: every path returns `XDP_PASS`. Every packet lands in exactly one of
//! the outcome counters, and every probe in exactly one of the record counters (see
//! [`Counter`]), so nothing is lost without being counted.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]
#![expect(
    missing_docs,
    reason = "the #[xdp] macro emits an undocumented extern wrapper"
)]

mod aggregate;
mod atomic;
mod parse;

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, bpf_sock_tuple, xdp_action, xdp_md},
    helpers::{bpf_ktime_get_coarse_ns, bpf_sk_lookup_udp, bpf_sk_release, bpf_skc_lookup_tcp},
    macros::{map, xdp},
    maps::{Array, LpmTrie, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::XdpContext,
};
use parse::{
    Parsed, Segment, addresses, icmp_ident, parse, ports, tcp_options, tcp_seq_ack, tcp_window_urg,
};
use sensor_common::{
    ALLOWLIST_MAX_ENTRIES, BUDGET_WINDOW_NS, BudgetSlot, Counter, DEDUP_SLOTS, DedupSlot,
    HOLD_IDLE_NS, HOLD_SLOTS, HoldSlot, PRESSURE_FRACTION, PROMOTE_PROBES, ProbeKind,
    RECORDS_MAP_BYTES, SOURCE_BUDGET_SLOTS, ScanRecord, Settings,
    classify::{self, MAX_OPTIONS_BYTES, QUIRK_DF, TcpHead, Verdict},
    family, hash_words, hold_slots, protocol,
};

#[map]
static RECORDS: RingBuf = RingBuf::with_byte_size(RECORDS_MAP_BYTES, 0);

/// All counters of this CPU in one value: one map lookup per packet.
#[map]
static COUNTERS: PerCpuArray<[u64; Counter::COUNT as usize]> = PerCpuArray::with_max_entries(1, 0);

#[map]
static ALLOWLIST: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(ALLOWLIST_MAX_ENTRIES, 0);

#[map]
static DEDUP: PerCpuArray<DedupSlot> = PerCpuArray::with_max_entries(DEDUP_SLOTS, 0);

/// Shared by all CPUs: one budget per source, updated atomically.
#[map]
static SOURCE_BUDGET: Array<BudgetSlot> = Array::with_max_entries(SOURCE_BUDGET_SLOTS, 0);

#[map]
static CPU_BUDGET: PerCpuArray<BudgetSlot> = PerCpuArray::with_max_entries(1, 0);

#[map]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// The flood reserve: recently seen sources per CPU (see [`sensor_common::HOLD_MAP`]).
#[map]
static HOLD: PerCpuArray<HoldSlot> = PerCpuArray::with_max_entries(HOLD_SLOTS, 0);

/// Entry point: classifies the packet, records probes, and always passes the packet on.
#[xdp]
pub fn sensor(ctx: XdpContext) -> u32 {
    let Some(counters) = COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: per-CPU value, only this CPU writes it while this program runs.
    let counters = unsafe { &mut *counters };
    bump(counters, Counter::Packets);
    match parse(&ctx) {
        Err(parse::Malformed) => bump(counters, Counter::ParseFailures),
        Ok(Parsed::NonTcp) => bump(counters, Counter::NonTcp),
        Ok(Parsed::Fragment) => bump(counters, Counter::Fragments),
        Ok(Parsed::L4(segment)) => {
            let not_probe = if segment.proto == protocol::TCP {
                Counter::OtherTcp
            } else {
                Counter::NonTcp
            };
            // Cheap exit for ordinary TCP (SYN+ACK, RST, data with ACK+PSH, ...): no rule
            // can make these a probe, whatever their options or payload.
            if segment.proto == protocol::TCP && !classify::tcp_flags_may_probe(segment.flags) {
                bump(counters, Counter::OtherTcp);
                return xdp_action::XDP_PASS;
            }
            match inspect(&ctx, &segment) {
                Err(parse::Malformed) => bump(counters, Counter::ParseFailures),
                Ok(None) => bump(counters, not_probe),
                Ok(Some(p)) => {
                    bump(counters, Counter::Probes);
                    let fate = probe(&ctx, &p, counters);
                    bump(counters, fate);
                }
            }
        }
    }
    xdp_action::XDP_PASS
}

/// Reads what the rules need and classifies: `Ok(None)` when the packet is not a probe.
///
/// Reads only the fixed-offset fields: the options area only for a segment whose flags and
/// window say nmap's OS marker could be in it ([`classify::may_carry_os_marker`]), and the
/// rest of the fingerprint not at all (see [`write_record`]), so that a probe refused by the
/// allow-list, the dedup table or a budget costs no more than its classification.
#[inline(always)]
fn inspect(ctx: &XdpContext, seg: &Segment) -> Result<Option<Probe>, parse::Malformed> {
    let (src, dst) = addresses(ctx, seg)?;
    let (mut src_port, mut dst_port) = ports(ctx, seg)?;
    let payload_len = seg.segment_len.saturating_sub(seg.header_len);
    let payload_len = if payload_len > usize::from(u16::MAX) {
        u16::MAX
    } else {
        payload_len as u16
    };
    let options_len = seg.header_len.saturating_sub(20).min(MAX_OPTIONS_BYTES) as u8;
    let (mut window, mut urg_ptr) = (0, 0);
    let verdict = if seg.proto == protocol::TCP {
        (window, urg_ptr) = tcp_window_urg(ctx, seg)?;
        let head = TcpHead {
            flags: seg.flags,
            window,
            urg_ptr,
            payload_len,
            options_len,
        };
        if classify::may_carry_os_marker(&head) && os_marker(ctx.ctx, seg.l4, options_len) {
            Verdict::Probe(ProbeKind::Os)
        } else {
            classify::tcp_head(&head)
        }
    } else if seg.proto == protocol::UDP {
        let unicast = if seg.family == family::IPV4 {
            let b = dst[1].to_ne_bytes();
            classify::ipv4_unicast([b[4], b[5], b[6], b[7]])
        } else {
            classify::ipv6_unicast(dst[0].to_ne_bytes()[0])
        };
        classify::udp(unicast)
    } else {
        src_port = 0;
        dst_port = 0;
        classify::icmp(seg.family == family::IPV6, seg.flags, seg.segment_len)
    };
    let kind = match verdict {
        Verdict::NotProbe => return Ok(None),
        Verdict::Probe(kind) => kind,
        Verdict::IfNoConnection(kind) => {
            if expected_by_a_socket(ctx, seg, src, dst, src_port, dst_port) {
                return Ok(None);
            }
            kind
        }
    };
    Ok(Some(Probe {
        src,
        dst,
        src_port,
        dst_port,
        kind,
        family: seg.family,
        proto: seg.proto,
        flags: seg.flags,
        vlan_id: seg.vlan_id,
        ttl: seg.ttl,
        ip_id: seg.ip_id,
        df: seg.df,
        payload_len,
        window,
        urg_ptr,
        options_len: if seg.proto == protocol::TCP {
            options_len
        } else {
            0
        },
        l4: seg.l4,
    }))
}

/// Whether the first `len` bytes of the TCP options area at `l4` hold nmap's OS marker.
///
/// A BPF subprogram, not inlined: its 40-byte buffer then takes no stack slots of the main
/// program, which stays under the 512-byte BPF stack.
#[inline(never)]
fn os_marker(ctx: *mut xdp_md, l4: usize, len: u8) -> bool {
    let ctx = XdpContext::new(ctx);
    let mut words = [0u64; MAX_OPTIONS_BYTES / 8];
    // SAFETY: `words` is a live, aligned array of five words.
    unsafe { zero_words(&raw mut words) };
    let buf = words.as_mut_ptr().cast::<[u8; MAX_OPTIONS_BYTES]>();
    // SAFETY: `buf` covers the MAX_OPTIONS_BYTES bytes of the live, initialised `words`.
    unsafe {
        let read = tcp_options(&ctx, l4, usize::from(len), buf);
        classify::has_nmap_timestamp(&*buf, read as u8)
    }
}

/// `state` of a listening TCP socket (`TCP_LISTEN`).
const TCP_LISTEN: u32 = 10;

/// Whether a local socket expects this packet: an established (or closing, or half-open) TCP
/// connection for ACK and FIN+ACK, a connected UDP socket (a reply to the sensor's own
/// request) for UDP. A listening socket or none at all means the stack would answer with a RST
/// or an ICMP error: a probe. Addresses and ports go to the helpers in network byte order.
#[inline(always)]
fn expected_by_a_socket(
    ctx: &XdpContext,
    seg: &Segment,
    src: [u64; 2],
    dst: [u64; 2],
    src_port: u16,
    dst_port: u16,
) -> bool {
    // SAFETY: an all-zero tuple is a valid value of this plain C union.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let size = if seg.family == family::IPV4 {
        // SAFETY: writing the IPv4 member of the union.
        unsafe {
            let v4 = &mut tuple.__bindgen_anon_1.ipv4;
            v4.saddr = u32::from_ne_bytes(low_four(src));
            v4.daddr = u32::from_ne_bytes(low_four(dst));
            v4.sport = src_port.to_be();
            v4.dport = dst_port.to_be();
        }
        size_of::<aya_ebpf::bindings::bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>()
    } else {
        // SAFETY: writing the IPv6 member of the union.
        unsafe {
            let v6 = &mut tuple.__bindgen_anon_1.ipv6;
            v6.saddr = words_to_u32s(src);
            v6.daddr = words_to_u32s(dst);
            v6.sport = src_port.to_be();
            v6.dport = dst_port.to_be();
        }
        size_of::<aya_ebpf::bindings::bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2>()
    };
    let current_netns = u64::MAX;
    // SAFETY: `tuple` is a live stack value of at least `size` bytes; a non-null result is a
    // referenced socket, released below on every path.
    unsafe {
        if seg.proto == protocol::TCP {
            let sk = bpf_skc_lookup_tcp(
                ctx.ctx.cast(),
                &raw mut tuple,
                size as u32,
                current_netns,
                0,
            );
            if sk.is_null() {
                return false;
            }
            let state = (*sk).state;
            bpf_sk_release(sk.cast());
            state != TCP_LISTEN
        } else {
            let sk = bpf_sk_lookup_udp(
                ctx.ctx.cast(),
                &raw mut tuple,
                size as u32,
                current_netns,
                0,
            );
            if sk.is_null() {
                return false;
            }
            let connected = (*sk).dst_port != 0;
            bpf_sk_release(sk.cast());
            connected
        }
    }
}

#[inline(always)]
fn low_four(words: [u64; 2]) -> [u8; 4] {
    let b = words[1].to_ne_bytes();
    [b[4], b[5], b[6], b[7]]
}

#[inline(always)]
fn words_to_u32s(words: [u64; 2]) -> [u32; 4] {
    let a = words[0].to_ne_bytes();
    let b = words[1].to_ne_bytes();
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    ]
}

/// Adds one to a counter of this CPU.
#[inline(always)]
fn bump(counters: &mut [u64; Counter::COUNT as usize], counter: Counter) {
    counters[counter as usize] += 1;
}

/// The fields of one probe packet.
struct Probe {
    src: [u64; 2],
    dst: [u64; 2],
    src_port: u16,
    dst_port: u16,
    kind: ProbeKind,
    family: u8,
    proto: u8,
    /// TCP flags, or the ICMP type.
    flags: u8,
    vlan_id: u16,
    ttl: u8,
    ip_id: u16,
    df: bool,
    payload_len: u16,
    /// TCP window (0 otherwise).
    window: u16,
    /// TCP urgent pointer (0 otherwise).
    urg_ptr: u16,
    /// Length of the TCP options area (0 otherwise), read only when a record is written.
    options_len: u8,
    /// Offset of the transport header, where [`write_record`] reads the rest of the
    /// fingerprint.
    l4: usize,
}

impl Probe {
    /// The port of the dedup key: the destination port, or the ICMP type (each ICMP request
    /// type seen is worth a record).
    #[inline(always)]
    const fn key_port(&self) -> u16 {
        if self.proto == protocol::ICMP {
            self.flags as u16
        } else {
            self.dst_port
        }
    }
}

/// Decides what happens to one probe and returns the counter that records the outcome.
#[inline(always)]
fn probe(ctx: &XdpContext, p: &Probe, counters: &mut [u64; Counter::COUNT as usize]) -> Counter {
    let kind = p.kind;
    let settings = SETTINGS.get(0).copied().unwrap_or(Settings::DEFAULT);
    if settings.allowlist_enabled != 0 {
        let key = Key::new(128, words_to_bytes(p.src));
        if ALLOWLIST.get(&key).is_some() {
            return Counter::AllowListed;
        }
    }
    // A block the agent aggregates: one bit, no record (ICMP has no ports to aggregate).
    if p.proto != protocol::ICMP && aggregate::aggregate(p.src, p.dst, kind as u32, p.dst_port) {
        return Counter::Aggregated;
    }
    // The coarse clock (CLOCK_MONOTONIC at tick resolution, a few ms) is several times cheaper
    // than the precise one and plenty for windows of a second and for first-probe timestamps.
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let dedup = dedup_slot(p, &settings);
    if settings.dedup_window_ns != 0
        && let Some(slot) = dedup
    {
        // SAFETY: per-CPU map value; no other writer while this program runs on this CPU.
        let slot = unsafe { &*slot };
        if slot.ts_ns != 0
            && now.wrapping_sub(slot.ts_ns) < settings.dedup_window_ns
            && slot.src_addr == p.src
            && slot.dst_addr == p.dst
            && slot.dst_port == p.key_port()
            && slot.kind == kind as u32
        {
            return Counter::Deduplicated;
        }
    }
    let mask = if p.family == family::IPV4 {
        settings.source_mask_v4
    } else {
        settings.source_mask_v6
    };
    let key = [p.src[0] & mask[0], p.src[1] & mask[1]];
    if settings.source_budget != 0 {
        let index = hash_words(key[0] ^ settings.hash_seed, key[1]) & settings.source_slot_mask;
        if let Some(slot) = SOURCE_BUDGET.get_ptr_mut(index)
            && !take_shared_budget(slot, key, now, settings.source_budget)
        {
            return Counter::SourceBudget;
        }
    }
    if settings.cpu_budget != 0
        && let Some(slot) = CPU_BUDGET.get_ptr_mut(0)
        && !take_cpu_budget(slot, now, settings.cpu_budget)
    {
        return Counter::CpuBudget;
    }
    match hold(p, key, now, &settings) {
        Hold::Record => {}
        Hold::Held => return Counter::Held,
        Hold::Promoted(slot) => {
            // Release the source's held probes as records, then record this one.
            // SAFETY: per-CPU map value; no other writer while this program runs here.
            let slot = unsafe { &mut *slot };
            let held = slot.held;
            slot.held = 0;
            let mut i = 0;
            while i < PROMOTE_PROBES as usize - 1 {
                if (i as u32) < held
                    && let (Some(port), Some(raw)) = (slot.ports.get(i), slot.kinds.get(i))
                {
                    let kind_port = u32::from(*raw) << 16 | u32::from(*port);
                    let wake = wake_flag(&settings, counters);
                    if write_record(ctx.ctx, p, kind_port, now, wake) {
                        bump(counters, Counter::Released);
                    }
                }
                i += 1;
            }
        }
    }
    let kind_port = (kind as u32) << 16 | u32::from(p.key_port());
    let wake = wake_flag(&settings, counters);
    if !write_record(ctx.ctx, p, kind_port, now, wake) {
        return Counter::RingBufFull;
    }
    if let Some(slot) = dedup {
        // SAFETY: per-CPU map value, as above.
        unsafe {
            *slot = DedupSlot {
                ts_ns: now,
                src_addr: p.src,
                dst_addr: p.dst,
                dst_port: p.key_port(),
                reserved: 0,
                kind: kind as u32,
            };
        }
    }
    Counter::RecordsSent
}

/// What the flood reserve decided for one probe.
enum Hold {
    /// Record it.
    Record,
    /// Held in the source's slot (the ring is under pressure and the source is not promoted).
    Held,
    /// This probe promoted its source: release the held probes of the slot, then record it.
    Promoted(*mut HoldSlot),
}

/// Counts the probe against its source's slot of [`HOLD`] and decides (see
/// [`sensor_common::HOLD_MAP`]). Fail-open: without a slot, the probe is recorded.
#[inline(always)]
fn hold(p: &Probe, key: [u64; 2], now: u64, settings: &Settings) -> Hold {
    let (first, second) = hold_slots(key, settings.hash_seed);
    let (Some(a), Some(b)) = (HOLD.get_ptr_mut(first), HOLD.get_ptr_mut(second)) else {
        return Hold::Record;
    };
    let fresh = |s: &HoldSlot| s.last_ns != 0 && now.wrapping_sub(s.last_ns) < HOLD_IDLE_NS;
    // SAFETY: two distinct per-CPU map values (`hold_slots` never gives one index twice); no
    // other writer while this program runs on this CPU.
    let (sa, sb) = unsafe { (&mut *a, &mut *b) };
    // The ring's fill level is asked (two helper calls) only on the paths that depend on it:
    // a promoted source, the common case of a real scan, never asks.
    let (slot, s) = if fresh(sa) && sa.src_addr == key {
        (a, sa)
    } else if fresh(sb) && sb.src_addr == key {
        (b, sb)
    } else {
        // A newcomer: a free candidate, else the one with fewer probes, else the older.
        let take_a = match (fresh(sa), fresh(sb)) {
            (false, _) => true,
            (true, false) => false,
            (true, true) => {
                sa.probes < sb.probes || (sa.probes == sb.probes && sa.last_ns <= sb.last_ns)
            }
        };
        let (slot, s) = if take_a { (a, sa) } else { (b, sb) };
        if fresh(s) && s.probes >= PROMOTE_PROBES {
            // Both candidates hold promoted, active sources; they keep their slots and the
            // newcomer goes untracked.
            return if under_pressure() {
                Hold::Held
            } else {
                Hold::Record
            };
        }
        s.src_addr = key;
        s.probes = 0;
        s.held = 0;
        (slot, s)
    };
    s.last_ns = now;
    if s.probes >= PROMOTE_PROBES {
        return Hold::Record;
    }
    s.probes += 1;
    if s.probes >= PROMOTE_PROBES {
        return if s.held > 0 {
            Hold::Promoted(slot)
        } else {
            Hold::Record
        };
    }
    if !under_pressure() {
        return Hold::Record;
    }
    let i = s.held as usize;
    if let (Some(port), Some(raw)) = (s.ports.get_mut(i), s.kinds.get_mut(i)) {
        *port = p.key_port();
        *raw = p.kind as u8;
        s.held += 1;
    }
    Hold::Held
}

/// Whether at least `1 / PRESSURE_FRACTION` of the ring holds unread records.
#[inline(always)]
fn under_pressure() -> bool {
    let pending = RECORDS.query(0); // BPF_RB_AVAIL_DATA
    let size = RECORDS.query(1); // BPF_RB_RING_SIZE
    pending.saturating_mul(PRESSURE_FRACTION) >= size && size != 0
}

/// The submit flag of the next record: wake the reader once per `wakeup_bytes` of records
/// written by this CPU; in between it drains on its own timer. A wakeup per record costs
/// microseconds; asking the ring how much is pending costs a helper call; counting costs
/// nothing.
#[inline(always)]
fn wake_flag(settings: &Settings, counters: &[u64; Counter::COUNT as usize]) -> u64 {
    let records_sent =
        counters[Counter::RecordsSent as usize].wrapping_add(counters[Counter::Released as usize]);
    let per_wakeup = u64::from(settings.wakeup_bytes) / (size_of::<ScanRecord>() as u64 + 8);
    let wake = if per_wakeup == 0 || (records_sent + 1).is_multiple_of(per_wakeup) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    u64::from(wake)
}

/// Writes one record for `p` with the kind and port packed in `kind_port` (kind << 16 | port:
/// a held probe's on release), submitted with `wake`; false when the ring is full.
///
/// The fingerprint fields no rule needed (TCP sequence and acknowledgment numbers, the options
/// area, the ICMP identifier) are read from the packet here, straight into the record: only
/// a probe that is recorded pays for them. Their bounds were checked while parsing; a read
/// that failed anyway leaves zeros.
///
/// A BPF subprogram, not inlined: it has two call sites (release and record), and each inlined
/// copy would take its own stack slots, past the 512-byte BPF stack.
#[inline(never)]
fn write_record(ctx: *mut xdp_md, p: &Probe, kind_port: u32, now: u64, wake: u64) -> bool {
    let ctx = XdpContext::new(ctx);
    let ifindex = ctx.ingress_ifindex() as u32;
    let kind = kind_port >> 16;
    let key_port = (kind_port & 0xffff) as u16;
    let Some(mut entry) = RECORDS.reserve::<ScanRecord>(0) else {
        return false;
    };
    let icmp = p.proto == protocol::ICMP;
    let tcp = p.proto == protocol::TCP;
    let dst_port = if icmp { p.dst_port } else { key_port };
    let (seq, ack) = if tcp {
        tcp_seq_ack(&ctx, p.l4).unwrap_or((0, 0))
    } else if icmp {
        (icmp_ident(&ctx, p.l4).unwrap_or(0), 0)
    } else {
        (0, 0)
    };
    // Written field by field into the ring's memory: a record built on the stack (120 bytes)
    // and copied, once per call site, overflows the 512-byte BPF stack.
    let r = entry.as_mut_ptr();
    // SAFETY: `r` points to the reserved, writable, suitably aligned record; every field is
    // written before the submit below.
    unsafe {
        (&raw mut (*r).kind).write(kind);
        (&raw mut (*r).ifindex).write(ifindex);
        (&raw mut (*r).ts_ns).write(now);
        // Native-endian words hold the address bytes in order; both fields are 8-byte aligned
        // (offsets 16 and 32): two stores each instead of sixteen.
        (&raw mut (*r).src_addr).cast::<[u64; 2]>().write(p.src);
        (&raw mut (*r).dst_addr).cast::<[u64; 2]>().write(p.dst);
        (&raw mut (*r).src_port).write(p.src_port);
        (&raw mut (*r).dst_port).write(dst_port);
        (&raw mut (*r).family).write(p.family);
        (&raw mut (*r).tcp_flags).write(if p.proto == protocol::TCP { p.flags } else { 0 });
        (&raw mut (*r).vlan_id).write(p.vlan_id);
        (&raw mut (*r).protocol).write(p.proto);
        (&raw mut (*r).ttl).write(p.ttl);
        (&raw mut (*r).ip_id).write(p.ip_id);
        (&raw mut (*r).window).write(p.window);
        (&raw mut (*r).urg_ptr).write(p.urg_ptr);
        (&raw mut (*r).seq).write(seq);
        (&raw mut (*r).ack).write(ack);
        (&raw mut (*r).quirks).write(if p.df { QUIRK_DF } else { 0 });
        (&raw mut (*r).icmp_type).write(if icmp { key_port as u8 } else { 0 });
        (&raw mut (*r).payload_len).write(p.payload_len);
        let options = &raw mut (*r).options;
        // `options` is at offset 80 of the 8-byte aligned record: zeroed as five words.
        zero_words(options.cast::<[u64; MAX_OPTIONS_BYTES / 8]>());
        let read = tcp_options(&ctx, p.l4, usize::from(p.options_len), options);
        // `options_len` and the three reserved bytes as one little-endian word (offset 76):
        // the length in the first byte, zeros after it (three byte stores become a `memset`
        // call, a loop on BPF).
        (&raw mut (*r).options_len)
            .cast::<u32>()
            .write(u32::from(read as u8));
    }
    entry.submit(wake);
    true
}

// The word-wise writes of `write_record` rely on these offsets in the 8-byte aligned record.
const _: () = assert!(core::mem::offset_of!(ScanRecord, src_addr).is_multiple_of(8));
const _: () = assert!(core::mem::offset_of!(ScanRecord, dst_addr).is_multiple_of(8));
const _: () = assert!(core::mem::offset_of!(ScanRecord, options).is_multiple_of(8));
const _: () = assert!(MAX_OPTIONS_BYTES.is_multiple_of(8));
const _: () = assert!(core::mem::offset_of!(ScanRecord, options_len).is_multiple_of(4));
const _: () = assert!(
    core::mem::offset_of!(ScanRecord, reserved)
        == core::mem::offset_of!(ScanRecord, options_len) + 1
);

/// Zeroes the five words at `dst` with five 8-byte stores. Volatile on purpose: LLVM would
/// turn plain stores into a call to `memset`, which on BPF is a loop of byte stores.
///
/// # Safety
/// `dst` must point to five writable, 8-byte aligned words.
#[inline(always)]
unsafe fn zero_words(dst: *mut [u64; MAX_OPTIONS_BYTES / 8]) {
    let words = dst.cast::<u64>();
    let mut i = 0;
    while i < MAX_OPTIONS_BYTES / 8 {
        // SAFETY: the caller vouches for the five words; `i` stays below five.
        unsafe { words.add(i).write_volatile(0) };
        i += 1;
    }
}

#[inline(always)]
fn dedup_slot(p: &Probe, settings: &Settings) -> Option<*mut DedupSlot> {
    let h = hash_words(
        p.src[0] ^ p.dst[0].rotate_left(17) ^ settings.hash_seed,
        p.src[1] ^ p.dst[1].rotate_left(29),
    ) ^ hash_words(u64::from(p.key_port()), u64::from(p.kind as u32));
    DEDUP.get_ptr_mut(h & settings.dedup_slot_mask)
}

/// Counts one record against a shared per-source budget window; false when it is spent.
///
/// The window is renewed by the one CPU whose compare-and-swap of `window_start_ns` succeeds;
/// it then clears the count. Increments other CPUs make between that swap and the clear are
/// forgotten, so a window may let through up to one extra record per other CPU: the bound is
/// `limit + possible CPUs - 1` records per source per window, whatever the number of RX queues.
#[inline(always)]
fn take_shared_budget(slot: *mut BudgetSlot, key: [u64; 2], now: u64, limit: u32) -> bool {
    // SAFETY: `slot` is a live, 8-byte aligned map value; every CPU accesses these two words
    // only through atomic operations.
    unsafe {
        let start = &raw mut (*slot).window_start_ns;
        let count = &raw mut (*slot).count;
        let begun = atomic::load(start);
        if now.wrapping_sub(begun) >= BUDGET_WINDOW_NS
            && atomic::compare_exchange(start, begun, now)
        {
            atomic::store(count, 0);
            // A torn owner is harmless: the program never reads it.
            (&raw mut (*slot).src_addr).write_volatile(key);
        }
        atomic::fetch_add(count, 1) < u64::from(limit)
    }
}

/// Counts one record against this CPU's budget window; false when the window's budget is spent.
#[inline(always)]
fn take_cpu_budget(slot: *mut BudgetSlot, now: u64, limit: u32) -> bool {
    // SAFETY: per-CPU map value; no other writer while this program runs on this CPU.
    let slot = unsafe { &mut *slot };
    if now.wrapping_sub(slot.window_start_ns) >= BUDGET_WINDOW_NS {
        slot.window_start_ns = now;
        slot.count = 0;
    }
    if slot.count >= u64::from(limit) {
        return false;
    }
    slot.count += 1;
    true
}

#[inline(always)]
fn words_to_bytes(words: [u64; 2]) -> [u8; 16] {
    let a = words[0].to_ne_bytes();
    let b = words[1].to_ne_bytes();
    [
        a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], b[0], b[1], b[2], b[3], b[4], b[5], b[6],
        b[7],
    ]
}

sensor_ebpf::xdp_object!();
