//! In-kernel aggregation, run by the kernel on hand-built frames with `BPF_PROG_TEST_RUN` and
//! driven by the agent's own `Aggregator` and `Merger`: once a source's scan of a destination
//! holds 16 ports its scan qualifies, and the record that finds it so installs every block of
//! 4,096 ports of that scan's address pair and kind (only its own block once the free slots
//! fall to the reserve); from then on every probe of an installed block is one bit (counted in
//! `aggregated`, no record) that the agent takes back as exactly one observation of its port.
//! Other sources keep their records, another kind of a qualified scan is installed on its first
//! record; a quiet block leaves the index and its probes are records again. Counter identities
//! hold after every step.

use std::collections::BTreeSet;

use sensor::capture::{
    Observation,
    aggregate::{Aggregator, GRACE, IDLE, RESERVE},
    decode::decode,
    testrun::XDP_PASS,
    xdp::{LoadOptions, Loaded, load},
};
use sensor::scan::{Merger, PortscanConfig};
use sensor_common::{
    Counter, ProbeKind, Settings,
    aggregate::{AGG_SLOTS, INSTALL_AFTER},
    tcp_flags as f,
};
use tests::{frames::*, require_root};
use tokio::time::Instant;

fn loaded() -> Loaded {
    tests::net::pin_to_cpu(0);
    load(&LoadOptions {
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

fn syn_from(src: [u8; 4], port: u16) -> Vec<u8> {
    eth(
        ETH_IPV4,
        &ipv4(src, DST4, 6, 0, &tcp(40_000, port, f::SYN, 0)),
    )
}

/// Runs `frame` once; returns its records, after handing them to the aggregator as the agent
/// does.
fn run(
    prog: &mut Loaded,
    agg: &mut Aggregator,
    merger: &mut Merger,
    frame: &[u8],
    now: Instant,
) -> Vec<Observation> {
    let out = prog.test_run(frame, 1).expect("test run");
    assert_eq!(out.retval, XDP_PASS);
    assert_eq!(out.data, frame, "frame altered");
    let mut records = Vec::new();
    let ring = prog.records.as_mut().expect("ring");
    while let Some(item) = ring.next() {
        let obs = decode(&item).expect("a decodable record");
        let ports = merger.observe_counted(&obs, &mut Vec::new());
        agg.note(&obs, ports, now);
        records.push(obs);
    }
    records
}

/// The observations the agent takes, one per port (each word expanded).
fn taken(agg: &mut Aggregator, now: Instant) -> Vec<Observation> {
    let mut out = Vec::new();
    agg.drain(now, 7, |o, word| {
        assert_eq!(o.dst_port % 64, 0, "a word starts at a multiple of 64");
        for bit in 0..64u16 {
            if word & (1 << bit) != 0 {
                out.push(Observation {
                    dst_port: o.dst_port + bit,
                    ..*o
                });
            }
        }
    });
    out
}

fn balanced(prog: &Loaded) {
    let c = prog.counters().expect("counters");
    assert_eq!(c.imbalance(), None, "{c:?}");
}

#[test]
fn an_installed_block_turns_probes_into_bits_the_agent_takes_back_exactly_once() {
    require_root!();
    let mut prog = loaded();
    let mut agg = prog.aggregator().expect("the aggregation maps");
    let mut merger = Merger::new(&PortscanConfig::default());
    let t0 = Instant::now();
    let before = prog.counters().unwrap();

    // The first INSTALL_AFTER probes are records; the last of them installs the 16 blocks.
    for port in 1..=u16::try_from(INSTALL_AFTER).unwrap() {
        let records = run(&mut prog, &mut agg, &mut merger, &syn_from(SRC4, port), t0);
        assert_eq!(records.len(), 1, "port {port}");
        assert_eq!(records[0].dst_port, port);
    }
    assert_eq!(agg.stats().installed, BLOCKS);
    // From here, block 0 is bits: no record, and each port comes back once, repeats or not.
    for port in (100..400u16).chain(100..110) {
        let records = run(&mut prog, &mut agg, &mut merger, &syn_from(SRC4, port), t0);
        assert!(records.is_empty(), "port {port}: {records:?}");
    }
    let back = taken(&mut agg, t0);
    let ports: BTreeSet<u16> = back.iter().map(|o| o.dst_port).collect();
    assert_eq!(ports, (100..400).collect::<BTreeSet<u16>>());
    assert_eq!(back.len(), 300, "one observation per port");
    let first = back[0];
    assert_eq!(
        (first.src, first.dst, first.kind, first.ts_ns),
        (
            std::net::IpAddr::from(SRC4),
            std::net::IpAddr::from(DST4),
            ProbeKind::Syn,
            7
        )
    );
    assert!(taken(&mut agg, t0).is_empty(), "bits are taken once");
    let delta = prog.counters().unwrap().since(&before);
    assert_eq!(delta.get(Counter::Aggregated), 310);
    assert_eq!(delta.get(Counter::RecordsSent), u64::from(INSTALL_AFTER));
    balanced(&prog);

    // Another block of the same scan, up to the last port: bits from its first probe on.
    for port in [5000, 5001, 65_535] {
        assert!(run(&mut prog, &mut agg, &mut merger, &syn_from(SRC4, port), t0).is_empty());
    }
    assert_eq!(agg.stats().installed, BLOCKS);
    // Another kind of the same scan: its first probe is a record (that installs its blocks);
    // another source: records, whatever the port.
    let fin = eth(
        ETH_IPV4,
        &ipv4(SRC4, DST4, 6, 0, &tcp(40_000, 120, f::FIN, 0)),
    );
    assert_eq!(run(&mut prog, &mut agg, &mut merger, &fin, t0).len(), 1);
    assert_eq!(
        run(
            &mut prog,
            &mut agg,
            &mut merger,
            &syn_from([198, 18, 200, 3], 120),
            t0
        )
        .len(),
        1
    );
    let back = taken(&mut agg, t0);
    assert_eq!(
        back.iter().map(|o| o.dst_port).collect::<Vec<_>>(),
        vec![5000, 5001, 65_535]
    );
    assert_eq!(agg.stats().installed, 2 * BLOCKS, "SYN and FIN");

    // Quiet blocks leave the index: the next probes are records again, and the last bits set
    // before that were still taken.
    assert!(run(&mut prog, &mut agg, &mut merger, &syn_from(SRC4, 4000), t0).is_empty());
    let later = t0 + IDLE;
    let back = taken(&mut agg, later);
    assert_eq!(back.len(), 1, "port 4000, taken as the idle check runs");
    let later = later + IDLE;
    assert!(taken(&mut agg, later).is_empty());
    assert_eq!(agg.stats().installed, 0, "{:?}", agg.stats());
    taken(&mut agg, later + GRACE);
    assert_eq!(
        run(
            &mut prog,
            &mut agg,
            &mut merger,
            &syn_from(SRC4, 4001),
            later
        )
        .len(),
        1,
        "a record once its block left the index (and it installs the blocks again)"
    );
    assert_eq!(agg.stats().installed, BLOCKS);
    let stats = agg.stats();
    assert_eq!(stats.ports, 304);
    assert_eq!((stats.full, stats.errors), (0, 0));
    balanced(&prog);
}

/// Blocks of the port space: what one qualifying scan installs.
const BLOCKS: u64 = 16;

/// Scans install the whole port space while more than the reserve stays free; past that, a
/// scan gets its record's block alone, and its other blocks come one record each.
#[test]
fn past_the_reserve_a_scan_installs_its_records_block_only() {
    require_root!();
    let mut prog = loaded();
    let mut agg = prog.aggregator().expect("the aggregation maps");
    let mut merger = Merger::new(&PortscanConfig::default());
    let t0 = Instant::now();
    let whole = (u64::from(AGG_SLOTS) - RESERVE as u64 - 1) / BLOCKS;
    let scan = |i: u64| -> [u8; 4] {
        let [_, _, hi, lo] = u32::try_from(i).unwrap().to_be_bytes();
        [198, 18, hi, lo]
    };
    for i in 0..=whole {
        for port in 1..=u16::try_from(INSTALL_AFTER).unwrap() {
            assert_eq!(
                run(
                    &mut prog,
                    &mut agg,
                    &mut merger,
                    &syn_from(scan(i), port),
                    t0
                )
                .len(),
                1
            );
        }
    }
    assert_eq!(
        agg.stats().installed,
        whole * BLOCKS + 1,
        "{:?}",
        agg.stats()
    );
    let last = scan(whole);
    assert!(run(&mut prog, &mut agg, &mut merger, &syn_from(last, 17), t0).is_empty());
    assert_eq!(
        run(&mut prog, &mut agg, &mut merger, &syn_from(last, 5000), t0).len(),
        1,
        "another block: a record, which installs it"
    );
    assert!(run(&mut prog, &mut agg, &mut merger, &syn_from(last, 5001), t0).is_empty());
    assert_eq!(agg.stats().installed, whole * BLOCKS + 2);
    let ports: Vec<u16> = taken(&mut agg, t0).iter().map(|o| o.dst_port).collect();
    assert_eq!(ports, vec![17, 5001]);
    assert_eq!((agg.stats().full, agg.stats().errors), (0, 0));
    balanced(&prog);
}

#[test]
fn without_the_agent_nothing_is_aggregated() {
    require_root!();
    let mut prog = loaded();
    let before = prog.counters().unwrap();
    for port in 1..200u16 {
        prog.test_run(&syn_from(SRC4, port), 1).expect("test run");
    }
    let delta = prog.counters().unwrap().since(&before);
    assert_eq!(delta.get(Counter::Aggregated), 0);
    assert_eq!(delta.get(Counter::RecordsSent), 199);
    balanced(&prog);
}
