//! The live-frames traffic generator: the project's `trafgen` XDP program run with
//! `BPF_PROG_TEST_RUN` + `BPF_F_TEST_XDP_LIVE_FRAMES` from the peer namespace, transmitting
//! (`XDP_TX`) a SYN per (source, port) pair into the veth towards the sensor.

use std::{
    ffi::CString,
    os::fd::AsFd as _,
    time::{Duration, Instant},
};

use crate::{
    frames::{ETH_IPV4, ipv4, tcp},
    net::NetNs,
};
use aya::maps::{Array, PerCpuArray};
use sensor::capture::{testrun, xdp::bench_programs};

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Spoofed sources (240.0.0.0/4 plus an index).
    pub sources: u32,
    /// Destination ports per source.
    pub ports: u32,
    /// First destination port.
    pub first_port: u32,
    /// Target rate in packets per second; `None` sends as fast as possible.
    pub rate: Option<u64>,
}

impl Plan {
    /// Total packets: one per (source, port) pair.
    #[must_use]
    pub fn total(&self) -> u64 {
        u64::from(self.sources) * u64::from(self.ports)
    }
}

/// What was sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Packets handed to the kernel.
    pub packets: u64,
    /// Time from the first to the last frame sent.
    pub elapsed: Duration,
    /// When the last frame was sent.
    pub finished: Instant,
}

/// The SYN template: Ethernet to `dst_mac`, IPv4 to `dst_ip`, TCP SYN; the generator rewrites
/// the source address and destination port of every copy.
#[must_use]
pub fn template(dst_mac: [u8; 6], src_mac: [u8; 6], dst_ip: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&ETH_IPV4.to_be_bytes());
    frame.extend_from_slice(&ipv4(
        [240, 0, 0, 0],
        dst_ip,
        6,
        0,
        &tcp(40_000, 1, 0x02, 0),
    ));
    frame
}

/// Parses `aa:bb:cc:dd:ee:ff`.
#[must_use]
pub fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (i, part) in text.split(':').take(6).enumerate() {
        mac[i] = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    mac
}

/// Sends `plan` out of `iface` in namespace `ns`. The pacing happens inside the program, so
/// each test run is long (about 0.2 s) and the per-call setup cost of live-frames mode does not
/// distort the rate.
#[must_use]
pub fn send(ns: &NetNs, iface: &str, frame: Vec<u8>, plan: Plan) -> Sent {
    let iface = iface.to_owned();
    ns.run(move || {
        let mut ebpf = crate::load_xdp(bench_programs::TRAFGEN, "trafgen");
        let interval = plan.rate.map_or(0, |r| 1_000_000_000 / r.max(1));
        {
            let map = ebpf
                .map_mut("GEN_CONFIG")
                .unwrap_or_else(|| panic!("GEN_CONFIG missing"));
            let mut config: Array<_, u64> = Array::try_from(map).unwrap_or_else(|e| panic!("{e}"));
            let values = [
                u64::from(plan.sources),
                u64::from(plan.ports),
                u64::from(plan.first_port),
                plan.total(),
                interval,
            ];
            for (i, v) in values.into_iter().enumerate() {
                config
                    .set(u32::try_from(i).unwrap_or(0), v, 0)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        let state_map = ebpf
            .take_map("GEN_STATE")
            .unwrap_or_else(|| panic!("GEN_STATE missing"));
        let state: PerCpuArray<_, [u64; 4]> =
            PerCpuArray::try_from(state_map).unwrap_or_else(|e| panic!("{e}"));
        let program = crate::xdp(&mut ebpf, "trafgen");
        let fd = program.fd().unwrap_or_else(|e| panic!("{e}"));
        let name = CString::new(iface.clone()).unwrap_or_default();
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(
            ifindex, 0,
            "no interface {iface} in the generator namespace"
        );
        // One CPU, so the per-CPU state walks every pair exactly once.
        crate::net::pin_to_cpu(0);
        let read = || -> [u64; 4] {
            state
                .get(&0, 0)
                .map(|v| v.iter().copied().find(|s| s[0] > 0).unwrap_or([0; 4]))
                .unwrap_or([0; 4])
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut repeat: u32 = 1 << 20;
        loop {
            let started = Instant::now();
            testrun::run_live(fd.as_fd(), &frame, ifindex, repeat, 64)
                .unwrap_or_else(|e| panic!("live-frames run: {e}"));
            let took = started.elapsed().as_secs_f64().max(1e-3);
            if read()[0] >= plan.total() || Instant::now() > deadline {
                break;
            }
            // Aim for calls of about 0.2 s.
            let scaled = f64::from(repeat) * 0.2 / took;
            repeat = scaled.clamp(65_536.0, f64::from(1u32 << 31)) as u32;
        }
        let [sent, _, first_ns, last_ns] = read();
        let (now, now_ns) = (Instant::now(), sensor::clock::monotonic_ns());
        let finished = now
            .checked_sub(Duration::from_nanos(now_ns.saturating_sub(last_ns)))
            .unwrap_or(now);
        Sent {
            packets: sent,
            elapsed: Duration::from_nanos(last_ns.saturating_sub(first_ns).max(1)),
            finished,
        }
    })
}
