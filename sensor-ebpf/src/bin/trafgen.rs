//! Benchmark traffic generator, run with `BPF_PROG_TEST_RUN` in live-frames mode.
//!
//! For each frame it rewrites the IPv4 source address and the TCP destination port of a SYN
//! template so that successive frames walk `ports` destination ports of `sources` spoofed
//! sources (240.0.0.0/4 plus an index: reserved space, never routable), then returns `XDP_TX`
//! so the kernel transmits the frame out of the generator's veth towards the sensor. Checksums
//! are left stale on purpose: the sensor's stack drops the frames after XDP and the capture tap,
//! so no RST storm caps the rate.
#![no_std]
#![no_main]
#![expect(
    missing_docs,
    reason = "the #[xdp] macro emits an undocumented extern wrapper"
)]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

/// Frames generated so far on this CPU.
#[map]
static GEN_COUNTER: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `[sources, ports, first_port]`.
#[map]
static GEN_CONFIG: Array<u32> = Array::with_max_entries(3, 0);

/// Offset of the IPv4 source address in an untagged Ethernet frame.
const SRC_OFF: usize = 14 + 12;
/// Offset of the TCP destination port with a 20-byte IPv4 header.
const DPORT_OFF: usize = 14 + 20 + 2;

/// Rewrites the frame for the next (source, port) pair and transmits it.
#[xdp]
pub fn trafgen(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + DPORT_OFF + 2 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let sources = GEN_CONFIG.get(0).copied().unwrap_or(1).max(1);
    let ports = GEN_CONFIG.get(1).copied().unwrap_or(1).max(1);
    let first_port = GEN_CONFIG.get(2).copied().unwrap_or(1);
    let Some(counter) = GEN_COUNTER.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: per-CPU value, only this CPU writes it.
    let n = unsafe {
        let n = *counter;
        *counter = n + 1;
        n
    };
    let port = (first_port as u64 + n % u64::from(ports)) as u16;
    let source = (n / u64::from(ports)) % u64::from(sources);
    let addr = 0xf000_0000u32 | (source as u32 & 0x0fff_ffff);
    // SAFETY: both writes were bounds-checked against data_end above.
    unsafe {
        ((start + SRC_OFF) as *mut [u8; 4]).write_unaligned(addr.to_be_bytes());
        ((start + DPORT_OFF) as *mut [u8; 2]).write_unaligned(port.to_be_bytes());
    }
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
