//! Every scan kind beyond SYN/FIN/NULL/XMAS, scanner attribution and OS hints.
//!
//! First the XDP program on hand-built frames (`BPF_PROG_TEST_RUN`): each new kind gives exactly
//! its record with the fingerprint fields, malformed and truncated variants pass without a
//! record, the userspace classifier agrees frame by frame, and the counters add up. Then real
//! scanners (nmap, masscan, zmap, hping3) from a peer namespace against the real sensor: each
//! scan is one event with the right flags, protocol and tool.

use std::time::Duration;

use sensor::{
    capture::{
        Observation,
        decode::decode,
        pcap::{Classified, classify},
        testrun::XDP_PASS,
        xdp::{LoadOptions, Loaded, load},
    },
    scan::attribution::{Tool, tool},
};
use sensor_common::{Counter, ProbeKind, Settings, tcp_flags as f};
use serde_json::Value;
use tests::{
    frames::*,
    net::{TestNet, run_bounded},
    require_root,
    sensor::{RunningSensor, SensorRun, test_config},
};

fn loaded() -> Loaded {
    tests::net::pin_to_cpu(0);
    load(&LoadOptions {
        ring_buffer_bytes: 1 << 16,
        settings: Settings {
            dedup_window_ns: 0,
            source_budget: 0,
            cpu_budget: 0,
            hash_seed: 0x005e_ed0f_7e57,
            ..Settings::DEFAULT
        },
        ..LoadOptions::default()
    })
    .expect("load the XDP program (root, BPF-capable kernel)")
}

/// A TCP header with the given window, options bytes (padded to 4) and payload.
fn tcp_full(
    dst_port: u16,
    flags: u8,
    window: u16,
    urg: u16,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut o = opts.to_vec();
    while !o.len().is_multiple_of(4) {
        o.push(0);
    }
    let mut h = Vec::new();
    h.extend_from_slice(&40_000u16.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes());
    h.push(u8::try_from((20 + o.len()) / 4).unwrap() << 4);
    h.push(flags);
    h.extend_from_slice(&window.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&urg.to_be_bytes());
    h.extend_from_slice(&o);
    h.extend_from_slice(payload);
    h
}

fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(ETH_IPV4, &ipv4(SRC4, DST4, proto, 0, l4))
}

fn v6(proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(ETH_IPV6, &ipv6(SRC6, DST6, proto, l4))
}

fn udp(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&40_000u16.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

fn icmp(t: u8, extra: usize) -> Vec<u8> {
    let mut h = vec![t, 0, 0, 0, 0x12, 0x34, 0, 1];
    h.resize(8 + extra, 0);
    h
}

/// nmap's T2–T7 option bytes: WS 10, NOP, MSS 265, TS 0xFFFFFFFF/0, SACK permitted.
const NMAP_T: [u8; 20] = [
    3, 3, 10, 1, 2, 4, 1, 9, 8, 10, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 4, 2,
];
/// A Linux SYN's options: MSS 1460, SACK permitted, TS, NOP, WS 7.
const LINUX: [u8; 20] = [
    2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0, 1, 3, 3, 7,
];

/// Runs one frame: verdict, data unaltered, counters balanced; returns the record, if any,
/// and checks that the userspace classifier says the same.
fn run_frame(p: &mut Loaded, name: &str, frame: &[u8]) -> Option<Observation> {
    let before = p.counters().unwrap();
    let out = p
        .test_run(frame, 1)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(out.retval, XDP_PASS, "{name}");
    assert_eq!(out.data, frame, "{name}: altered");
    let delta = p.counters().unwrap().since(&before);
    assert_eq!(delta.imbalance(), None, "{name}");
    assert_eq!(delta.get(Counter::Packets), 1, "{name}");
    let ring = p.records.as_mut().expect("ring");
    let mut records = Vec::new();
    while let Some(item) = ring.next() {
        records.push(decode(&item).unwrap_or_else(|e| panic!("{name}: {e}")));
    }
    assert!(records.len() <= 1, "{name}: {records:?}");
    let record = records.first().copied();
    let user = classify(frame, 0, &[]);
    match (&record, &user) {
        (Some(r), Classified::Probe(u)) => {
            assert_eq!(
                Observation {
                    ts_ns: 0,
                    ifindex: 0,
                    ..*r
                },
                Observation { ifindex: 0, ..*u },
                "{name}: kernel and userspace disagree"
            );
        }
        (None, Classified::Probe(u)) => panic!("{name}: only userspace sees a probe {u:?}"),
        (Some(r), other) => panic!("{name}: only the kernel sees a probe {r:?} ({other:?})"),
        (None, _) => {}
    }
    record
}

fn expect_kind(p: &mut Loaded, name: &str, frame: &[u8], kind: ProbeKind) -> Observation {
    let r = run_frame(p, name, frame).unwrap_or_else(|| panic!("{name}: no record"));
    assert_eq!(r.kind, kind, "{name}");
    r
}

fn expect_none(p: &mut Loaded, name: &str, frame: &[u8], counter: Counter) {
    let before = p.counters().unwrap();
    assert_eq!(run_frame(p, name, frame), None, "{name}");
    let delta = p.counters().unwrap().since(&before);
    assert_eq!(delta.get(counter), 1, "{name}: {delta:?}");
}

#[test]
fn new_tcp_kinds_give_exact_records_with_fingerprints() {
    require_root!();
    let mut p = loaded();
    let ack = expect_kind(
        &mut p,
        "ack",
        &v4(6, &tcp_full(80, f::ACK, 1024, 0, &[], &[])),
        ProbeKind::Ack,
    );
    assert_eq!(
        (ack.dst_port, ack.fp.window, ack.fp.seq, ack.fp.ttl),
        (80, 1024, 0x1234_5678, 64)
    );
    assert_eq!(ack.fp.options(), &[] as &[u8]);
    assert_eq!(tool(&ack), Tool::Nmap);
    expect_kind(
        &mut p,
        "ack v6",
        &v6(6, &tcp_full(81, f::ACK, 1024, 0, &[], &[])),
        ProbeKind::Ack,
    );
    let maimon = expect_kind(
        &mut p,
        "maimon",
        &v4(6, &tcp_full(82, f::FIN | f::ACK, 1024, 0, &[], &[])),
        ProbeKind::Maimon,
    );
    assert_eq!(maimon.fp.tcp_flags, f::FIN | f::ACK);
    for (name, flags) in [
        ("syn-fin", f::SYN | f::FIN),
        ("syn-rst", f::SYN | f::RST),
        ("fin-rst-ack", f::FIN | f::RST | f::ACK),
        ("psh", f::PSH),
        ("urg", f::URG),
    ] {
        expect_kind(
            &mut p,
            name,
            &v4(6, &tcp_full(83, flags, 1024, 0, &[], &[])),
            ProbeKind::Odd,
        );
    }
    // nmap OS probes: T2..T7 and SEQ 1 and ECN.
    for (name, flags, window) in [
        ("t2", 0, 128),
        ("t3", f::SYN | f::FIN | f::PSH | f::URG, 256),
        ("t4", f::ACK, 1024),
        ("t5", f::SYN, 31337),
        ("t6", f::ACK, 32768),
        ("t7", f::XMAS, 65535),
    ] {
        let r = expect_kind(
            &mut p,
            name,
            &v4(6, &tcp_full(84, flags, window, 0, &NMAP_T, &[])),
            ProbeKind::Os,
        );
        assert_eq!(
            (r.fp.mss, r.fp.wscale, r.fp.ts_val, r.fp.ts_ecr),
            (265, 10, u32::MAX, 0),
            "{name}"
        );
        assert_eq!(r.fp.options(), &[3, 1, 2, 8, 4], "{name}");
        assert_eq!(tool(&r), Tool::Nmap);
    }
    let ecn = tcp_full(
        85,
        f::SYN | 0xc0,
        3,
        0xf7f5,
        &[3, 3, 10, 1, 2, 4, 5, 0xb4, 4, 2, 1, 1],
        &[],
    );
    expect_kind(&mut p, "ecn", &v4(6, &ecn), ProbeKind::Os);
    // A Linux SYN: SYN with the stack's options parsed.
    let linux = expect_kind(
        &mut p,
        "linux syn",
        &v4(6, &tcp_full(86, f::SYN, 64_240, 0, &LINUX, &[])),
        ProbeKind::Syn,
    );
    assert_eq!(
        (linux.fp.mss, linux.fp.wscale, linux.fp.ts_val),
        (1460, 7, 9)
    );
    assert_eq!(linux.fp.options(), &[2, 4, 8, 1, 3]);
    assert_eq!(sensor::scan::attribution::os_hint(&linux).label, "Linux");
    // Ordinary TCP stays ordinary.
    for (name, frame) in [
        (
            "ack with data",
            v4(6, &tcp_full(80, f::ACK, 1024, 0, &[], b"x")),
        ),
        (
            "psh-ack",
            v4(6, &tcp_full(80, f::PSH | f::ACK, 1024, 0, &[], b"x")),
        ),
        (
            "syn-ack",
            v4(6, &tcp_full(80, f::SYN | f::ACK, 1024, 0, &LINUX, &[])),
        ),
        ("rst", v4(6, &tcp_full(80, f::RST, 0, 0, &[], &[]))),
        (
            "rst-ack",
            v4(6, &tcp_full(80, f::RST | f::ACK, 0, 0, &[], &[])),
        ),
        (
            "rst with nmap options",
            v4(6, &tcp_full(80, f::RST, 1, 0, &NMAP_T, &[])),
        ),
    ] {
        expect_none(&mut p, name, &frame, Counter::OtherTcp);
    }
    assert_eq!(p.counters().unwrap().imbalance(), None);
}

#[test]
fn udp_and_icmp_probes_give_records() {
    require_root!();
    let mut p = loaded();
    let empty = expect_kind(&mut p, "udp empty", &v4(17, &udp(53, &[])), ProbeKind::Udp);
    assert_eq!(
        (empty.dst_port, empty.src_port, empty.fp.payload_len),
        (53, 40_000, 0)
    );
    let dns = expect_kind(
        &mut p,
        "udp payload",
        &v4(17, &udp(161, &[0x30; 40])),
        ProbeKind::Udp,
    );
    assert_eq!(dns.fp.payload_len, 40);
    expect_kind(&mut p, "udp v6", &v6(17, &udp(500, &[])), ProbeKind::Udp);
    expect_none(
        &mut p,
        "short timestamp",
        &v4(1, &icmp(13, 4)),
        Counter::NonTcp,
    );
    for (name, t) in [("echo", 8u8), ("timestamp", 13), ("mask", 17)] {
        let r = expect_kind(&mut p, name, &v4(1, &icmp(t, 12)), ProbeKind::Ping);
        assert_eq!(
            (r.fp.icmp_type, r.dst_port, r.src_port, r.fp.seq),
            (t, 0, 0, 0x1234_0001),
            "{name}"
        );
        assert_eq!(r.fp.payload_len, 12);
    }
    let r = expect_kind(&mut p, "v6 echo", &v6(58, &icmp(128, 0)), ProbeKind::Ping);
    assert_eq!(r.fp.icmp_type, 128);
    for (name, frame) in [
        ("echo reply", v4(1, &icmp(0, 8))),
        ("unreachable", v4(1, &icmp(3, 28))),
        ("v6 neighbour solicitation", v6(58, &icmp(135, 16))),
        ("v6 echo reply", v6(58, &icmp(129, 0))),
        (
            "udp multicast",
            eth(
                ETH_IPV4,
                &ipv4(SRC4, [224, 0, 0, 251], 17, 0, &udp(5353, &[1; 12])),
            ),
        ),
        (
            "udp broadcast",
            eth(
                ETH_IPV4,
                &ipv4(SRC4, [255, 255, 255, 255], 17, 0, &udp(67, &[1; 12])),
            ),
        ),
        ("gre", v4(47, &[0; 8])),
    ] {
        expect_none(&mut p, name, &frame, Counter::NonTcp);
    }
    // zmap's fixed IP ID.
    let mut z = ipv4(
        SRC4,
        DST4,
        6,
        0,
        &tcp_full(443, f::SYN, 65_535, 0, &[], &[]),
    );
    z[4..6].copy_from_slice(&54_321u16.to_be_bytes());
    let r = expect_kind(&mut p, "zmap syn", &eth(ETH_IPV4, &z), ProbeKind::Syn);
    assert_eq!((r.fp.ip_id, tool(&r)), (54_321, Tool::Zmap));
    assert_eq!(p.counters().unwrap().imbalance(), None);
}

#[test]
fn malformed_and_truncated_variants_pass_without_a_record() {
    require_root!();
    let mut p = loaded();
    let frames = [
        v4(6, &tcp_full(84, f::ACK, 1024, 0, &NMAP_T, &[])),
        v4(17, &udp(53, &[7; 20])),
        v4(1, &icmp(8, 8)),
        v6(58, &icmp(128, 8)),
        v6(17, &udp(53, &[])),
    ];
    for frame in &frames {
        for len in 14..frame.len() {
            let name = format!("truncated to {len} of {}", frame.len());
            assert_eq!(run_frame(&mut p, &name, &frame[..len]), None, "{name}");
        }
    }
    // UDP and ICMP headers shorter than 8 bytes inside a complete IP packet.
    expect_none(
        &mut p,
        "udp 4 bytes",
        &v4(17, &[0, 1, 0, 2]),
        Counter::ParseFailures,
    );
    expect_none(
        &mut p,
        "icmp 4 bytes",
        &v4(1, &[8, 0, 0, 0]),
        Counter::ParseFailures,
    );
    // Option lengths that lie: the record (if the flags make a probe) never claims them.
    for opts in [[8u8, 0, 1, 1], [2, 40, 5, 0xb4], [3, 1, 1, 1]] {
        let r = expect_kind(
            &mut p,
            "lying options",
            &v4(6, &tcp_full(90, f::SYN, 1024, 0, &opts, &[])),
            ProbeKind::Syn,
        );
        assert_eq!((r.fp.mss, r.fp.ts_val), (0, 0), "{opts:?}");
        assert_ne!(
            r.fp.quirks & sensor_common::classify::QUIRK_BAD_OPTIONS,
            0,
            "{opts:?}"
        );
    }
    // Later UDP fragment.
    let mut later = ipv4(SRC4, DST4, 17, 0, &udp(53, &[0; 16]));
    later[6] = 0;
    later[7] = 3;
    expect_none(
        &mut p,
        "udp later fragment",
        &eth(ETH_IPV4, &later),
        Counter::Fragments,
    );
    assert_eq!(p.counters().unwrap().imbalance(), None);
}

/// Deterministic xorshift, so a failing frame can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

/// Structure-aware random frames (1,000,000 unless `SCAN_KINDS_FRAMES` says otherwise): a
/// valid frame of a random kind, then a few random byte flips, a random cut, or a random
/// length field. Every verdict is XDP_PASS, counters add up,
/// kernel and userspace agree on every frame (probe or not, and the whole observation).
#[test]
fn random_frames_kernel_and_userspace_agree() {
    require_root!();
    let mut p = loaded();
    let count: usize = std::env::var("SCAN_KINDS_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let flag_sets = [
        f::SYN,
        f::ACK,
        f::FIN | f::ACK,
        0,
        f::XMAS,
        f::SYN | f::FIN,
        f::PSH | f::ACK,
        f::RST,
    ];
    let opt_sets: [&[u8]; 4] = [&[], &NMAP_T, &LINUX, &[2, 4, 5, 0xb4]];
    let before = p.counters().unwrap();
    for i in 0..count {
        let flags = flag_sets[rng.below(flag_sets.len())];
        let opts = opt_sets[rng.below(opt_sets.len())];
        let window = [1024u16, 128, 1, 64, 65535][rng.below(5)];
        let mut frame = match rng.below(6) {
            0 => v4(
                6,
                &tcp_full(
                    u16::try_from(rng.below(65_536)).unwrap(),
                    flags,
                    window,
                    0,
                    opts,
                    &[],
                ),
            ),
            1 => v6(
                6,
                &tcp_full(
                    u16::try_from(rng.below(65_536)).unwrap(),
                    flags,
                    window,
                    0,
                    opts,
                    &[],
                ),
            ),
            2 => v4(
                17,
                &udp(
                    u16::try_from(rng.below(65_536)).unwrap(),
                    &vec![0x41; rng.below(64)],
                ),
            ),
            3 => v4(1, &icmp([8u8, 13, 17, 0, 3][rng.below(5)], rng.below(32))),
            4 => v6(58, &icmp([128u8, 129, 135][rng.below(3)], rng.below(32))),
            _ => v6(17, &udp(u16::try_from(rng.below(65_536)).unwrap(), &[])),
        };
        match rng.below(4) {
            0 => {}
            1 => {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(frame.len());
                    frame[at] = u8::try_from(rng.next() & 0xff).unwrap();
                }
            }
            2 => frame.truncate(14 + rng.below(frame.len() - 14)),
            _ => {
                // Lengths and offsets: IP total length, IHL, TCP data offset.
                let at = [16usize, 17, 14, 46, 18, 19][rng.below(6)];
                if at < frame.len() {
                    frame[at] = u8::try_from(rng.next() & 0xff).unwrap();
                }
            }
        }
        if frame.len() < 14 {
            continue;
        }
        run_frame(&mut p, &format!("random frame {i} {frame:02x?}"), &frame);
    }
    let delta = p.counters().unwrap().since(&before);
    assert_eq!(delta.imbalance(), None);
    assert!(
        delta.get(Counter::Probes) > 0 && delta.get(Counter::ParseFailures) > 0,
        "{delta:?}"
    );
}

// ---- real scanners ----

fn flags_of(e: &Value) -> Vec<String> {
    e["extra"]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

fn nmap(net: &TestNet, args: &[&str]) {
    let mut cmd = net.peer.command("nmap");
    cmd.args(["-n", "--max-retries", "1", "-T4"])
        .args(args)
        .arg(&net.sensor_ip);
    let out = run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "nmap {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `scan` against a fresh sensor; returns the run and the single `portscan.query`
/// event, checking its source, destination and protocol.
fn one_scan(scan: impl FnOnce(&TestNet), protocol: &str) -> (SensorRun, Value) {
    let net = TestNet::new();
    let sensor = RunningSensor::start(&net.sensor, &test_config(&net.sensor_if, &[]), &[]);
    scan(&net);
    let run = sensor.stop();
    assert!(run.clean_exit);
    run.assert_counters_add_up();
    assert_eq!(run.kernel("ringbuf_full"), 0);
    let scans: Vec<Value> = run.portscans().into_iter().cloned().collect();
    let ours: Vec<&Value> = scans
        .iter()
        .filter(|e| e["extra"]["protocol"] == protocol)
        .collect();
    assert_eq!(ours.len(), 1, "one {protocol} scan: {:#?}", run.events);
    let e = ours[0].clone();
    assert_eq!(e["src_ip"], net.peer_ip.as_str());
    assert_eq!(e["dst_ip"], net.sensor_ip.as_str());
    (run, e)
}

fn port_count(e: &Value) -> usize {
    e["extra"]["ports"].as_array().unwrap().len()
}

#[test]
fn nmap_ack_and_window_scans_are_ack() {
    require_root!();
    for mode in ["-sA", "-sW"] {
        let (_, e) = one_scan(|n| nmap(n, &["-Pn", mode, "-p", "1-200"]), "tcp");
        assert_eq!(flags_of(&e), ["ACK"], "{mode}");
        assert_eq!(port_count(&e), 200, "{mode}");
        assert_eq!(e["extra"]["tool"], "nmap", "{mode}");
        assert!(e["extra"]["os"].as_str().unwrap().contains("Linux"), "{e}");
    }
}

#[test]
fn nmap_maimon_and_synfin_scans() {
    require_root!();
    let (_, e) = one_scan(|n| nmap(n, &["-Pn", "-sM", "-p", "1-200"]), "tcp");
    assert_eq!(flags_of(&e), ["MAIMON"]);
    assert_eq!(
        (port_count(&e), e["extra"]["tool"].as_str()),
        (200, Some("nmap"))
    );
    let (_, e) = one_scan(
        |n| nmap(n, &["-Pn", "-sS", "--scanflags", "SYNFIN", "-p", "1-200"]),
        "tcp",
    );
    assert_eq!(flags_of(&e), ["ODD"]);
    assert_eq!(
        (port_count(&e), e["extra"]["tool"].as_str()),
        (200, Some("nmap"))
    );
}

#[test]
fn nmap_udp_scan() {
    require_root!();
    let (_, e) = one_scan(
        |n| {
            nmap(
                n,
                &[
                    "-Pn",
                    "-sU",
                    "--top-ports",
                    "100",
                    "--max-rtt-timeout",
                    "100ms",
                    "--host-timeout",
                    "60s",
                ],
            )
        },
        "udp",
    );
    assert_eq!(flags_of(&e), ["UDP"]);
    assert_eq!(port_count(&e), 100, "{e}");
}

#[test]
fn nmap_os_detection() {
    require_root!();
    let net = TestNet::new();
    let sensor = RunningSensor::start(&net.sensor, &test_config(&net.sensor_if, &[]), &[]);
    // An open port makes nmap send its whole probe set.
    let bind = format!("{}:2222", net.sensor_ip);
    let listener = net
        .sensor
        .run(move || std::net::TcpListener::bind(bind).expect("bind"));
    nmap(
        &net,
        &["-Pn", "-O", "--max-os-tries", "1", "-p", "1-10,2222"],
    );
    drop(listener);
    let run = sensor.stop();
    assert!(run.clean_exit);
    run.assert_counters_add_up();
    let tcp: Vec<&Value> = run
        .portscans()
        .into_iter()
        .filter(|e| e["extra"]["protocol"] == "tcp")
        .collect();
    assert_eq!(tcp.len(), 1, "{:#?}", run.events);
    let flags = flags_of(tcp[0]);
    assert!(flags.contains(&"OS".to_owned()), "{flags:?}");
    assert_eq!(tcp[0]["extra"]["tool"], "nmap");
}

#[test]
fn nmap_ping_sweep_is_one_host_discovery_event() {
    require_root!();
    // On a shared link nmap would ARP-ping instead.
    let (_, e) = one_scan(
        |n| nmap(n, &["-sn", "-PE", "-PP", "-PM", "--disable-arp-ping"]),
        "icmp",
    );
    assert_eq!(flags_of(&e), ["PING"]);
    assert_eq!(
        e["extra"]["icmp_types"],
        serde_json::json!(["echo", "timestamp", "address_mask"])
    );
    assert_eq!(e["dst_port"], 0);
    assert!(e["extra"]["os"].as_str().unwrap().contains("Linux"), "{e}");
}

#[test]
fn masscan_is_attributed() {
    require_root!();
    let (_, e) = one_scan(
        |net| {
            let mac = net.sensor_mac();
            let mut cmd = net.peer.command("timeout");
            cmd.args([
                "-s",
                "INT",
                "60",
                "masscan",
                &net.sensor_ip,
                "-p",
                "1-200",
                "--rate",
                "5000",
            ])
            .args(["--wait", "1", "-e", &net.peer_if, "--router-mac", &mac]);
            let out = run_bounded(&mut cmd, Duration::from_secs(90));
            assert!(
                out.status.success(),
                "masscan: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        },
        "tcp",
    );
    assert_eq!(flags_of(&e), ["SYN"]);
    assert_eq!(
        (port_count(&e), e["extra"]["tool"].as_str()),
        (200, Some("masscan"))
    );
}

#[test]
fn zmap_is_attributed() {
    require_root!();
    let (_, e) = one_scan(
        |net| {
            let mac = net.sensor_mac();
            for port in 1..=3 {
                let mut cmd = net.peer.command("zmap");
                cmd.args([
                    "-p",
                    &port.to_string(),
                    "-i",
                    &net.peer_if,
                    "-G",
                    &mac,
                    "-r",
                    "100",
                ])
                .args(["--cooldown-time", "1", "-q", "-o", "/dev/null", "-B", "1M"])
                // The default blacklist excludes the benchmark range the tests use.
                .args(["-b", "/dev/null"])
                .arg(format!("{}/32", net.sensor_ip));
                let out = run_bounded(&mut cmd, Duration::from_secs(30));
                assert!(
                    out.status.success(),
                    "zmap: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        },
        "tcp",
    );
    assert_eq!(flags_of(&e), ["SYN"]);
    assert_eq!(
        (port_count(&e), e["extra"]["tool"].as_str()),
        (3, Some("zmap"))
    );
}

#[test]
fn hping3_is_attributed() {
    require_root!();
    let (_, e) = one_scan(
        |net| {
            let mut cmd = net.peer.command("hping3");
            cmd.args(["-S", "-p", "++1", "-c", "50", "-i", "u2000", &net.sensor_ip]);
            let _ = run_bounded(&mut cmd, Duration::from_secs(30));
        },
        "tcp",
    );
    assert_eq!(flags_of(&e), ["SYN"]);
    assert_eq!(
        (port_count(&e), e["extra"]["tool"].as_str()),
        (50, Some("hping3"))
    );
}
