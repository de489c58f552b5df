//! Userspace throughput: decoding ring-buffer records and merging them into scans.
//!
//! `cargo bench -p benches` prints records per second for each stage.

#![expect(
    missing_docs,
    reason = "criterion_group! emits an undocumented function"
)]

use std::{hint::black_box, net::IpAddr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sensor::{
    capture::{
        Observation,
        decode::{decode, encode},
    },
    config::PortscanConfig,
    scan::Merger,
};
use sensor_common::ProbeKind;

/// `sources` scanners probing `ports` ports each, interleaved as a fast scan would arrive.
fn workload(sources: u32, ports: u16) -> Vec<Observation> {
    let mut out = Vec::with_capacity(sources as usize * usize::from(ports));
    for port in 1..=ports {
        for s in 0..sources {
            out.push(Observation {
                ts_ns: u64::from(port) * 1_000 + u64::from(s),
                src: IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000 | s)),
                dst: IpAddr::from([198, 18, 255, 1]),
                src_port: 40_000,
                dst_port: port,
                kind: ProbeKind::Syn,
                ifindex: 2,
                vlan_id: 0,
                fp: sensor::capture::Fingerprint::default(),
            });
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let observations = workload(1_000, 100);
    let records: Vec<_> = observations.iter().map(encode).collect();
    let mut group = c.benchmark_group("userspace");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| {
            for r in &records {
                black_box(decode(black_box(r)).ok());
            }
        });
    });
    group.bench_function("merge_1000_sources_x_100_ports", |b| {
        b.iter(|| {
            let mut merger = Merger::new(&PortscanConfig::default());
            let mut reports = Vec::new();
            for o in &observations {
                merger.observe(o, &mut reports);
            }
            merger.flush(&mut reports);
            black_box(reports.len())
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
