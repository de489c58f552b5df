//! Capture: getting probe observations out of the kernel.
//!
//! `xdp` loads and attaches the XDP program and owns its maps; `sizing` chooses the map sizes at
//! load time; `ring` drains the ring buffer in bounded batches; `decode` turns ring-buffer
//! records into [`Observation`]s; `pcap` is the libpcap fallback and file reader, `queue` the
//! bounded channel from its capture threads; `counters` reads the kernel's per-CPU counters;
//! `testrun` runs the loaded program on hand-made frames (`BPF_PROG_TEST_RUN`) for tests and
//! benchmarks. Both engines are drained in bounded batches ([`Drained`]).

mod config;
pub mod counters;
pub mod decode;
pub mod pcap;
pub mod queue;
pub mod ring;
pub mod sizing;
pub mod testrun;
pub mod xdp;

pub use config::{XdpConfig, XdpMode};

use std::net::IpAddr;

use sensor_common::ProbeKind;

/// One probe packet, as userspace sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// CLOCK_MONOTONIC time the kernel saw the packet, ns (tick resolution for XDP records).
    pub ts_ns: u64,
    /// Source address (IPv4 as plain IPv4).
    pub src: IpAddr,
    /// Destination address (IPv4 as plain IPv4).
    pub dst: IpAddr,
    /// TCP source port.
    pub src_port: u16,
    /// TCP destination port.
    pub dst_port: u16,
    /// Probe kind.
    pub kind: ProbeKind,
    /// Interface index the packet arrived on.
    pub ifindex: u32,
    /// Outer VLAN id, 0 for untagged frames.
    pub vlan_id: u16,
}

/// What one bounded drain of a capture source did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Records or observations taken.
    pub taken: usize,
    /// Whether the budget ran out with more possibly waiting: the caller should drain again
    /// soon (after yielding), without waiting for readiness.
    pub more: bool,
}
