//! The empty XDP program: returns `XDP_PASS` and does nothing else.
//!
//! Benchmarks use it as the baseline the sensor program is compared against, and attach it to
//! a veth whose peer transmits with `XDP_TX` when the sensor program is not attached (the
//! libpcap comparison), so both capture paths see identical traffic.
#![no_std]
#![no_main]
#![expect(
    missing_docs,
    reason = "the #[xdp] macro emits an undocumented extern wrapper"
)]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// Passes every packet.
#[xdp]
pub fn pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

sensor_ebpf::xdp_object!();
