//! Kernel cost per packet: the sensor program against the empty program, same run, same frames.

use std::os::fd::AsFd as _;

use aya::programs::Xdp;
use sensor::{
    capture::{
        testrun,
        xdp::{LoadOptions, Loaded, bench_programs, load},
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
        json!({"mix": self.name, "sensor_ns": self.sensor_ns, "empty_ns": self.empty_ns, "ratio": self.ratio()})
    }
}

fn sensor_program(settings: Settings, allow: &[&str]) -> Loaded {
    load(&LoadOptions {
        ring_buffer_bytes: sensor_common::RECORDS_MAP_BYTES,
        settings,
        allowlist: allow
            .iter()
            .filter_map(|c| c.parse::<Cidr>().ok())
            .collect(),
        ..LoadOptions::default()
    })
    .unwrap_or_else(|e| panic!("loading the sensor program: {e}"))
}

fn measure(loaded: &mut Loaded, empty: &mut Xdp, frame: &[u8]) -> (f64, f64) {
    let mut sensor = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..ROUNDS {
        let out = loaded
            .test_run(frame, REPEAT)
            .unwrap_or_else(|e| panic!("test run: {e}"));
        sensor.push(f64::from(out.duration_ns));
        if let Some(ring) = loaded.records.as_mut() {
            while ring.next().is_some() {}
        }
        let fd = empty
            .fd()
            .unwrap_or_else(|e| panic!("empty program fd: {e}"));
        let out =
            testrun::run(fd.as_fd(), frame, REPEAT).unwrap_or_else(|e| panic!("test run: {e}"));
        baseline.push(f64::from(out.duration_ns));
    }
    (median(sensor), median(baseline))
}

/// Runs every mix and returns the figures.
#[must_use]
pub fn run() -> Vec<MixResult> {
    let mut empty_obj = crate::load_xdp(bench_programs::PASS, "pass");
    let empty = crate::xdp(&mut empty_obj, "pass");

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

    let mixes: Vec<(&'static str, Settings, &[&str], Vec<u8>)> = vec![
        ("established TCP (ACK+data)", unlimited, &[], established),
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
            "allow-listed source SYN",
            unlimited,
            &["198.18.200.0/24"],
            v4_tcp(22, f::SYN),
        ),
    ];
    mixes
        .into_iter()
        .map(|(name, settings, allow, frame)| {
            let mut loaded = sensor_program(settings, allow);
            let (sensor_ns, empty_ns) = measure(&mut loaded, empty, &frame);
            MixResult {
                name,
                sensor_ns,
                empty_ns,
            }
        })
        .collect()
}
