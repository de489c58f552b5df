//! The incident tracker's per-event cost as the number of sources grows: 1,000, 100,000 and
//! 1,000,000 distinct sources through one tracker, each sending one event, with the tracker
//! large enough to hold them all (`fill`), and with the default 65,536-incident bound, so that
//! every new source past the bound closes the least recently active incident (`evict`).
//!
//! `cargo bench -p benches --bench incidents` prints events per second for each size; a flat
//! figure across sizes is the point (an O(n) step per event would fall by 1,000× from the
//! smallest size to the largest).

#![expect(
    missing_docs,
    reason = "criterion_group! emits an undocumented function"
)]

use std::{hint::black_box, net::IpAddr, time::Duration};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sensor::{
    event::{Action, Event, Service, SessionIdentity},
    incident::{IncidentConfig, Tracker},
    net::SourcePrefix,
};

fn template() -> Event {
    Event {
        id: uuid::Uuid::new_v4(),
        timestamp: chrono::Utc::now(),
        session: SessionIdentity {
            src_ip: IpAddr::from([198, 18, 0, 2]),
            src_port: 40_000,
            dst_ip: IpAddr::from([198, 18, 0, 1]),
            dst_port: 22,
        },
        service: Service::Ssh,
        action: Action::Connection,
        data: bytes::Bytes::new(),
        extra: sensor::event::Extra::new(),
    }
}

/// `n` distinct sources, one event each (addresses from 10.0.0.0 up; never sent anywhere).
fn run(n: u32, max_tracked: usize) -> usize {
    let mut tracker = Tracker::new(
        &IncidentConfig {
            idle_timeout_secs: 3_600,
            max_tracked,
        },
        SourcePrefix::default(),
    );
    let mut event = template();
    let mut created = 0;
    for i in 0..n {
        event.session.src_ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 | i));
        created += usize::from(tracker.observe(&event, u64::from(i)).is_some());
    }
    black_box(tracker.len());
    created
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("incidents");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for n in [1_000u32, 100_000, 1_000_000] {
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_with_input(BenchmarkId::new("fill", n), &n, |b, &n| {
            b.iter(|| run(n, n as usize));
        });
        group.bench_with_input(BenchmarkId::new("evict_at_65536", n), &n, |b, &n| {
            b.iter(|| run(n, IncidentConfig::default().max_tracked));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
