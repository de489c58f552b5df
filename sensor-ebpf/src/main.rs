//! The sensor's XDP program.
//!
//! Sees every packet on the interface, classifies TCP probes (SYN, FIN, NULL, XMAS), skips
//! allow-listed sources, suppresses repeated identical probes, enforces per-source and per-CPU
//! record budgets and sends one [`ScanRecord`] per remaining probe over a ring buffer. It never
//! drops or alters traffic: every path returns `XDP_PASS`. Every packet lands in exactly one of
//! the outcome counters, and every probe in exactly one of the record counters (see
//! [`Counter`]), so nothing is lost without being counted.
#![no_std]
#![no_main]
#![expect(
    missing_docs,
    reason = "the #[xdp] macro emits an undocumented extern wrapper"
)]

mod parse;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, xdp_action},
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, LpmTrie, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::XdpContext,
};
use parse::{Parsed, Segment, parse};
use sensor_common::{
    ALLOWLIST_MAX_ENTRIES, BUDGET_WINDOW_NS, BudgetSlot, Counter, DEDUP_SLOTS, DedupSlot,
    ProbeKind, RECORDS_MAP_BYTES, SOURCE_BUDGET_SLOTS, ScanRecord, Settings,
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

#[map]
static SOURCE_BUDGET: PerCpuArray<BudgetSlot> =
    PerCpuArray::with_max_entries(SOURCE_BUDGET_SLOTS, 0);

#[map]
static CPU_BUDGET: PerCpuArray<BudgetSlot> = PerCpuArray::with_max_entries(1, 0);

#[map]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// Entry point: classifies the packet, records probes, and always passes the packet on.
#[xdp]
pub fn sensor(ctx: XdpContext) -> u32 {
    let Some(counters) = COUNTERS.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: per-CPU value, only this CPU writes it while this program runs.
    let counters = unsafe { &mut *counters };
    let mut count = |counter: Counter| counters[counter as usize] += 1;
    count(Counter::Packets);
    match parse(&ctx) {
        Err(parse::Malformed) => count(Counter::ParseFailures),
        Ok(Parsed::NonTcp) => count(Counter::NonTcp),
        Ok(Parsed::Fragment) => count(Counter::Fragments),
        Ok(Parsed::Tcp(segment)) => match ProbeKind::classify(segment.flags) {
            None => count(Counter::OtherTcp),
            Some(kind) => {
                count(Counter::Probes);
                count(probe(&ctx, &segment, kind));
            }
        },
    }
    xdp_action::XDP_PASS
}

/// Decides what happens to one probe and returns the counter that records the outcome.
#[inline(always)]
fn probe(ctx: &XdpContext, seg: &Segment, kind: ProbeKind) -> Counter {
    let settings = SETTINGS.get(0).copied().unwrap_or(Settings::DEFAULT);
    if settings.allowlist_enabled != 0 {
        let key = Key::new(128, words_to_bytes(seg.src));
        if ALLOWLIST.get(&key).is_some() {
            return Counter::AllowListed;
        }
    }
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let dedup = dedup_slot(seg, kind);
    if settings.dedup_window_ns != 0
        && let Some(slot) = dedup
    {
        // SAFETY: per-CPU map value; no other writer while this program runs on this CPU.
        let slot = unsafe { &*slot };
        if slot.ts_ns != 0
            && now.wrapping_sub(slot.ts_ns) < settings.dedup_window_ns
            && slot.src_addr == seg.src
            && slot.dst_addr == seg.dst
            && slot.dst_port == seg.dst_port
            && slot.kind == kind as u32
        {
            return Counter::Deduplicated;
        }
    }
    if settings.source_budget != 0 {
        let index = hash_words(seg.src[0], seg.src[1]) & (SOURCE_BUDGET_SLOTS - 1);
        if let Some(slot) = SOURCE_BUDGET.get_ptr_mut(index)
            && !take_budget(slot, seg.src, now, settings.source_budget)
        {
            return Counter::SourceBudget;
        }
    }
    if settings.cpu_budget != 0
        && let Some(slot) = CPU_BUDGET.get_ptr_mut(0)
        && !take_budget(slot, [0, 0], now, settings.cpu_budget)
    {
        return Counter::CpuBudget;
    }
    let Some(mut entry) = RECORDS.reserve::<ScanRecord>(0) else {
        return Counter::RingBufFull;
    };
    entry.write(ScanRecord {
        kind: kind as u32,
        ifindex: ctx.ingress_ifindex() as u32,
        ts_ns: now,
        src_addr: words_to_bytes(seg.src),
        dst_addr: words_to_bytes(seg.dst),
        src_port: seg.src_port,
        dst_port: seg.dst_port,
        family: seg.family,
        tcp_flags: seg.flags,
        vlan_id: seg.vlan_id,
    });
    // Wake the reader once, when pending data crosses the threshold; below it (and while the
    // reader has not caught up) it drains on its own timer. A wakeup per record costs
    // microseconds; one per crossing is free.
    let pending = RECORDS.query(u64::from(BPF_RB_AVAIL_DATA));
    let threshold = u64::from(settings.wakeup_bytes);
    let record = size_of::<ScanRecord>() as u64 + 8;
    let wake = if threshold == 0 || (pending >= threshold && pending < threshold + record) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(u64::from(wake));
    if let Some(slot) = dedup {
        // SAFETY: per-CPU map value, as above.
        unsafe {
            *slot = DedupSlot {
                ts_ns: now,
                src_addr: seg.src,
                dst_addr: seg.dst,
                dst_port: seg.dst_port,
                reserved: 0,
                kind: kind as u32,
            };
        }
    }
    Counter::RecordsSent
}

#[inline(always)]
fn dedup_slot(seg: &Segment, kind: ProbeKind) -> Option<*mut DedupSlot> {
    let h = hash_words(
        seg.src[0] ^ seg.dst[0].rotate_left(17),
        seg.src[1] ^ seg.dst[1].rotate_left(29),
    ) ^ hash_words(u64::from(seg.dst_port), u64::from(kind as u32));
    DEDUP.get_ptr_mut(h & (DEDUP_SLOTS - 1))
}

/// Counts one record against a budget window; false when the window's budget is spent.
#[inline(always)]
fn take_budget(slot: *mut BudgetSlot, src: [u64; 2], now: u64, limit: u32) -> bool {
    // SAFETY: per-CPU map value; no other writer while this program runs on this CPU.
    let slot = unsafe { &mut *slot };
    if slot.src_addr != src || now.wrapping_sub(slot.window_start_ns) >= BUDGET_WINDOW_NS {
        slot.src_addr = src;
        slot.window_start_ns = now;
        slot.count = 0;
    }
    if slot.count >= limit {
        return false;
    }
    slot.count += 1;
    true
}

/// Cheap multiplicative mix of two words into 32 bits.
#[inline(always)]
fn hash_words(a: u64, b: u64) -> u32 {
    let x = (a ^ b.rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 32) as u32 ^ x as u32
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
