//! Capture: getting probe observations out of the kernel.
//!
//! `xdp` loads and attaches the XDP program and owns its maps; `sizing` chooses the map sizes at
//! load time; `ring` drains the ring buffer in bounded batches; `decode` turns ring-buffer
//! records into [`Observation`]s; `pcap` is the libpcap fallback and file reader, `queue` the
//! bounded channel from its capture threads, `allowlist` the allow-list they apply (replaced on
//! a configuration reload); `counters` reads the kernel's per-CPU counters;
//! `sk_lookup` loads the any-port decoy program and owns its maps; `testrun` runs the loaded
//! program on hand-made frames (`BPF_PROG_TEST_RUN`) for tests and
//! benchmarks. Both engines are drained in bounded batches ([`Drained`]).

pub mod aggregate;
pub mod allowlist;
mod config;
pub mod counters;
pub mod decode;
pub mod pcap;
pub mod queue;
pub mod ring;
pub mod ring_fill;
pub mod sizing;
pub mod sk_lookup;
pub mod testrun;
pub mod xdp;

pub use config::{XdpConfig, XdpMode};

use std::net::IpAddr;

use sensor_common::{ProbeKind, classify::NO_WSCALE};

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
    /// What the probe says about the sender (attribution and OS hints).
    pub fp: Fingerprint,
}

/// The header fields of a probe that scanner attribution and the passive OS hint read, as the
/// kernel records them ([`sensor_common::ScanRecord`]) or the pcap classifier reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification (0 for IPv6).
    pub ip_id: u16,
    /// TCP flags byte (0 for UDP and ICMP).
    pub tcp_flags: u8,
    /// TCP window.
    pub window: u16,
    /// TCP MSS; 0 when absent.
    pub mss: u16,
    /// TCP window scale; [`NO_WSCALE`] when absent.
    pub wscale: u8,
    /// TCP sequence number (ICMP: identifier << 16 | sequence).
    pub seq: u32,
    /// TCP acknowledgment number.
    pub ack: u32,
    /// TCP TSval (0 when absent).
    pub ts_val: u32,
    /// TCP TSecr (0 when absent).
    pub ts_ecr: u32,
    /// `sensor_common::classify::QUIRK_*` bits.
    pub quirks: u8,
    /// ICMP type (0 for TCP and UDP).
    pub icmp_type: u8,
    /// Bytes after the transport header.
    pub payload_len: u16,
    /// TCP urgent pointer.
    pub urg_ptr: u16,
    /// TCP option kinds in order.
    pub opt_kinds: [u8; sensor_common::classify::MAX_OPTIONS],
    /// Valid entries of `opt_kinds`.
    pub opt_count: u8,
    /// The raw TCP options area (zero after `options_len`), as the kernel copied it.
    pub options: [u8; sensor_common::classify::MAX_OPTIONS_BYTES],
    /// Valid bytes of `options`.
    pub options_len: u8,
}

impl Default for Fingerprint {
    fn default() -> Self {
        Self {
            ttl: 64,
            ip_id: 0,
            tcp_flags: 0,
            window: 0,
            mss: 0,
            wscale: NO_WSCALE,
            seq: 0,
            ack: 0,
            ts_val: 0,
            ts_ecr: 0,
            quirks: 0,
            icmp_type: 0,
            payload_len: 0,
            urg_ptr: 0,
            opt_kinds: [0; sensor_common::classify::MAX_OPTIONS],
            opt_count: 0,
            options: [0; sensor_common::classify::MAX_OPTIONS_BYTES],
            options_len: 0,
        }
    }
}

impl Fingerprint {
    /// The option kinds present, in order.
    #[must_use]
    pub fn options(&self) -> &[u8] {
        let n = usize::from(self.opt_count).min(self.opt_kinds.len());
        self.opt_kinds.get(..n).unwrap_or(&[])
    }
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
