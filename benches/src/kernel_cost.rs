//! Kernel cost per packet: the sensor program against the empty program, same run, same frames.
//!
//! With `SENSOR_BASELINE_OBJECT` naming another build of the sensor program (an object file
//! copied from `target/*/build/sensor-*/out/sensor` before a change), that build is measured
//! too, interleaved with the others, so a change's before and after come from one run.

use std::os::fd::AsFd as _;

use aya::programs::Xdp;
use std::net::IpAddr;

use sensor::{
    capture::{
        Fingerprint, Observation,
        aggregate::Aggregator,
        testrun,
        xdp::{LoadOptions, Loaded, bench_programs, load, load_object},
    },
    config::Cidr,
};
use sensor_common::{Settings, tcp_flags as f};
use serde_json::{Value, json};
use tests::frames::{ETH_IPV4, eth, ipv4, tcp, v4_tcp, v6_tcp};

use crate::median;

/// Repetitions per measurement round (fits the 16 MiB ring when every one is a record).
const REPEAT: u32 = 100_000;
/// Rounds per mix; the median is reported.
const ROUNDS: usize = 9;

/// One packet mix's figures.
#[derive(Debug, Clone)]
pub struct MixResult {
    /// Mix name.
    pub name: &'static str,
    /// Median ns/packet of the sensor program.
    pub sensor_ns: f64,
    /// Median ns/packet of the empty program on the same frame.
    pub empty_ns: f64,
    /// Median ns/packet of the baseline build (`SENSOR_BASELINE_OBJECT`), when one was given.
    pub before_ns: Option<f64>,
}

impl MixResult {
    /// Ratio sensor / empty.
    #[must_use]
    pub fn ratio(&self) -> f64 {
        if self.empty_ns > 0.0 {
            self.sensor_ns / self.empty_ns
        } else {
            f64::NAN
        }
    }

    /// As JSON.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({"mix": self.name, "sensor_ns": self.sensor_ns, "empty_ns": self.empty_ns, "ratio": self.ratio(), "before_ns": self.before_ns})
    }
}

fn sensor_program(settings: Settings, allow: &[&str], object: Option<&[u8]>) -> Loaded {
    let options = LoadOptions {
        ring_buffer_bytes: sensor_common::RECORDS_MAP_BYTES,
        settings,
        allowlist: allow
            .iter()
            .filter_map(|c| c.parse::<Cidr>().ok())
            .collect(),
        ..LoadOptions::default()
    };
    match object {
        Some(object) => load_object(&options, object),
        None => load(&options),
    }
    .unwrap_or_else(|e| panic!("loading the sensor program: {e}"))
}

/// The baseline build named by `SENSOR_BASELINE_OBJECT`, in an 8-byte aligned buffer (the ELF
/// parser reads its headers in place).
fn baseline_object() -> Option<(usize, Vec<u64>)> {
    let path = std::env::var_os("SENSOR_BASELINE_OBJECT")?;
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", std::path::Path::new(&path).display()));
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *word = u64::from_ne_bytes(b);
    }
    Some((bytes.len(), words))
}

/// Views `words` as the first `len` bytes they hold.
fn as_bytes(words: &[u64], len: usize) -> &[u8] {
    // SAFETY: a u64 slice is valid as bytes for its whole length; `len` is clamped to it.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), len.min(words.len() * 8)) }
}

/// One round of `program` on `frame`, its ring drained afterwards.
fn round(loaded: &mut Loaded, frame: &[u8]) -> f64 {
    let out = loaded
        .test_run(frame, REPEAT)
        .unwrap_or_else(|e| panic!("test run: {e}"));
    if let Some(ring) = loaded.records.as_mut() {
        while ring.next().is_some() {}
    }
    f64::from(out.duration_ns)
}

fn measure(
    loaded: &mut Loaded,
    mut before: Option<&mut Loaded>,
    empty: &mut Xdp,
    frame: &[u8],
) -> (f64, f64, Option<f64>) {
    let mut sensor = Vec::new();
    let mut baseline = Vec::new();
    let mut previous = Vec::new();
    for _ in 0..ROUNDS {
        sensor.push(round(loaded, frame));
        if let Some(before) = before.as_deref_mut() {
            previous.push(round(before, frame));
        }
        let fd = empty
            .fd()
            .unwrap_or_else(|e| panic!("empty program fd: {e}"));
        let out =
            testrun::run(fd.as_fd(), frame, REPEAT).unwrap_or_else(|e| panic!("test run: {e}"));
        baseline.push(f64::from(out.duration_ns));
    }
    let previous = (!previous.is_empty()).then(|| median(previous));
    (median(sensor), median(baseline), previous)
}

/// A SYN of a block the agent aggregates: one bit, no record.
const AGGREGATED: &str = "aggregated SYN (bit)";
/// A new-port SYN while another source's block is aggregated: the index lookup misses, then
/// the record path.
const AGGREGATING: &str = "new-port SYN, index miss";

/// Installs the block of port 22 from `src` to the test sensor address, as the agent does after
/// that scan's first records.
fn install(loaded: &mut Loaded, src: [u8; 4]) -> Aggregator {
    let mut aggregator = loaded
        .aggregator()
        .unwrap_or_else(|e| panic!("aggregation maps: {e}"));
    let now = tokio::time::Instant::now();
    for port in 0..sensor_common::aggregate::INSTALL_AFTER {
        let obs = Observation {
            ts_ns: 1,
            src: IpAddr::from(src),
            dst: IpAddr::from([198, 18, 200, 1]),
            src_port: 40_000,
            dst_port: u16::try_from(port).unwrap_or(0).saturating_add(22),
            kind: sensor_common::ProbeKind::Syn,
            ifindex: 1,
            vlan_id: 0,
            fp: Fingerprint::default(),
        };
        // The merger's count of the scan's distinct ports so far.
        aggregator.note(
            &obs,
            usize::try_from(port).unwrap_or(0).saturating_add(1),
            now,
        );
    }
    aggregator
}

/// Runs every mix and returns the figures.
#[must_use]
pub fn run() -> Vec<MixResult> {
    let mut empty_obj = crate::load_xdp(bench_programs::PASS, "pass");
    let empty = crate::xdp(&mut empty_obj, "pass");
    let baseline = baseline_object();

    // Budgets off: the record path is measured, not the cheaper refusal path.
    let unlimited = Settings {
        source_budget: 0,
        cpu_budget: 0,
        ..Settings::DEFAULT
    };
    // Every repetition takes the full record path: dedup off (with a coarse-clock window no
    // window is shorter than one repetition).
    let new_probe = Settings {
        dedup_window_ns: 0,
        ..unlimited
    };
    // The same record path plus the shared per-source budget (atomic fetch-add and, once per
    // window, compare-and-swap), with a limit no run reaches.
    let budgeted = Settings {
        source_budget: u32::MAX,
        ..new_probe
    };
    let mut payload = tcp(40_000, 443, f::ACK | f::PSH, 0);
    payload.extend_from_slice(&[0x17; 100]);
    let established = eth(
        ETH_IPV4,
        &ipv4([198, 18, 200, 2], [198, 18, 200, 1], 6, 0, &payload),
    );
    let udp = eth(
        ETH_IPV4,
        &ipv4([198, 18, 200, 2], [198, 18, 200, 1], 17, 0, &[0u8; 64]),
    );

    // A SYN with a 20-byte options area and one of nmap's OS-probe windows (65,535): the
    // options must be read to tell an OS probe from a SYN.
    let syn_options = eth(
        ETH_IPV4,
        &ipv4(
            [198, 18, 200, 2],
            [198, 18, 200, 1],
            6,
            0,
            &tcp(40_000, 22, f::SYN, 20),
        ),
    );

    // The other probe kinds, each a new probe that writes its record: an ACK (`nmap -sA`), an
    // empty UDP datagram to port 53 (`nmap -sU`), an ICMP echo request (`nmap -sn -PE`).
    let udp_probe = eth(
        ETH_IPV4,
        &ipv4(
            [198, 18, 200, 2],
            [198, 18, 200, 1],
            17,
            0,
            &[0x9c, 0x40, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00],
        ),
    );
    let mut echo = vec![8, 0, 0, 0, 0x12, 0x34, 0x00, 0x01];
    echo.extend_from_slice(&[0u8; 56]);
    let ping = eth(
        ETH_IPV4,
        &ipv4([198, 18, 200, 2], [198, 18, 200, 1], 1, 0, &echo),
    );

    let mixes: Vec<(&'static str, Settings, &[&str], Vec<u8>)> = vec![
        ("new-port ACK (record)", new_probe, &[], v4_tcp(22, f::ACK)),
        ("new-port UDP probe (record)", new_probe, &[], udp_probe),
        ("ICMP echo request (record)", new_probe, &[], ping),
        ("established TCP (ACK+data)", unlimited, &[], established),
        (AGGREGATED, new_probe, &[], v4_tcp(22, f::SYN)),
        (AGGREGATING, new_probe, &[], v4_tcp(22, f::SYN)),
        ("non-TCP (UDP)", unlimited, &[], udp),
        ("new-port SYN (record)", new_probe, &[], v4_tcp(22, f::SYN)),
        (
            "new-port SYN IPv6 (record)",
            new_probe,
            &[],
            v6_tcp(22, f::SYN),
        ),
        (
            "new-port SYN + source budget",
            budgeted,
            &[],
            v4_tcp(22, f::SYN),
        ),
        ("repeat SYN (dedup hit)", unlimited, &[], v4_tcp(22, f::SYN)),
        (
            "new-port SYN, 20 B options",
            new_probe,
            &[],
            syn_options.clone(),
        ),
        ("repeat SYN, 20 B options", unlimited, &[], syn_options),
        (
            "allow-listed source SYN",
            unlimited,
            &["198.18.200.0/24"],
            v4_tcp(22, f::SYN),
        ),
    ];
    mixes
        .into_iter()
        .map(|(name, settings, allow, frame)| {
            let mut loaded = sensor_program(settings, allow, None);
            // Kept for the measurement: the agent's side of the installed block.
            let _aggregator = match name {
                AGGREGATED => Some(install(&mut loaded, [198, 18, 200, 2])),
                AGGREGATING => Some(install(&mut loaded, [198, 18, 200, 3])),
                _ => None,
            };
            let mut before = baseline
                .as_ref()
                .map(|(len, words)| sensor_program(settings, allow, Some(as_bytes(words, *len))));
            let (sensor_ns, empty_ns, before_ns) =
                measure(&mut loaded, before.as_mut(), empty, &frame);
            MixResult {
                name,
                sensor_ns,
                empty_ns,
                before_ns,
            }
        })
        .collect()
}
