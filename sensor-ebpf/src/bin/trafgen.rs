//! Benchmark traffic generator, run with `BPF_PROG_TEST_RUN` in live-frames mode.
//!
//! Each invocation either sends the next frame or drops it: a per-CPU token schedule spaces the
//! sends `interval_ns` apart (0: as fast as possible), and once `total` frames are sent every
//! further invocation is dropped, so one long test run produces a paced stream. A sent frame is
//! a SYN template whose IPv4 source address and TCP destination port are rewritten so that
//! successive frames walk `ports` destination ports of `sources` spoofed sources (240.0.0.0/4
//! plus an index: reserved space, never routable); `XDP_TX` then transmits it out of the
//! generator's veth towards the sensor. Checksums are left stale on purpose: the sensor's stack
//! drops the frames after XDP and the capture tap, so no RST storm caps the rate.
#![no_std]
#![no_main]
#![expect(
    missing_docs,
    reason = "the #[xdp] macro emits an undocumented extern wrapper"
)]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

/// Generator state of this CPU: `[sent, next_send_ns, first_send_ns, last_send_ns]`.
#[map]
static GEN_STATE: PerCpuArray<[u64; 4]> = PerCpuArray::with_max_entries(1, 0);

/// `[sources, ports, first_port, total, interval_ns]`.
#[map]
static GEN_CONFIG: Array<u64> = Array::with_max_entries(5, 0);

/// Offset of the IPv4 source address in an untagged Ethernet frame.
const SRC_OFF: usize = 14 + 12;
/// Offset of the TCP destination port with a 20-byte IPv4 header.
const DPORT_OFF: usize = 14 + 20 + 2;

#[inline(always)]
fn config(index: u32, default: u64) -> u64 {
    GEN_CONFIG.get(index).copied().unwrap_or(default)
}

/// Sends the next frame when it is due, drops otherwise.
#[xdp]
pub fn trafgen(ctx: XdpContext) -> u32 {
    let Some(state) = GEN_STATE.get_ptr_mut(0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: per-CPU value, only this CPU writes it.
    let state = unsafe { &mut *state };
    let total = config(3, 0);
    if state[0] >= total {
        return xdp_action::XDP_DROP;
    }
    let interval = config(4, 0);
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if interval != 0 {
        if state[1] == 0 {
            state[1] = now;
        }
        if now < state[1] {
            return xdp_action::XDP_DROP;
        }
        state[1] += interval;
    }
    let start = ctx.data();
    if start + DPORT_OFF + 2 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let n = state[0];
    state[0] = n + 1;
    if n == 0 {
        state[2] = now;
    }
    state[3] = now;
    let ports = config(1, 1).max(1);
    let sources = config(0, 1).max(1);
    let port = (config(2, 1) + n % ports) as u16;
    let source = (n / ports) % sources;
    let addr = 0xf000_0000u32 | (source as u32 & 0x0fff_ffff);
    // SAFETY: both writes were bounds-checked against data_end above.
    unsafe {
        ((start + SRC_OFF) as *mut [u8; 4]).write_unaligned(addr.to_be_bytes());
        ((start + DPORT_OFF) as *mut [u8; 2]).write_unaligned(port.to_be_bytes());
    }
    xdp_action::XDP_TX
}

sensor_ebpf::xdp_object!();
