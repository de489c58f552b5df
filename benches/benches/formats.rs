//! Events per second per core for each format (`cargo bench -p benches --bench formats`).
#![expect(
    missing_docs,
    reason = "criterion_group! emits an undocumented function"
)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sensor::{
    event::{Action, Event, Extra, Service, SessionIdentity},
    format::{Format, FormatContext, encode},
};

fn portscan(ports: u16) -> Event {
    // As the scan path builds it: a compact port list after the flags.
    let mut extra = flags();
    extra.set_ports((1..=ports).collect::<Vec<u16>>());
    scan_event(extra)
}

fn flags() -> Extra {
    let mut extra = Extra::new();
    extra.insert("flags".to_owned(), serde_json::json!(["SYN"]));
    extra
}

fn scan_event(extra: Extra) -> Event {
    Event {
        id: uuid::Uuid::nil(),
        timestamp: chrono::Utc::now(),
        session: SessionIdentity {
            src_ip: "198.18.0.2"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            src_port: 1,
            dst_ip: "198.18.0.1"
                .parse()
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            dst_port: 1,
        },
        service: Service::Portscan,
        action: Action::Query,
        data: bytes::Bytes::new(),
        extra,
    }
}

fn bench(c: &mut Criterion) {
    let ctx = FormatContext::for_device("bench");
    let events: Vec<Event> = (0..1_000).map(|_| portscan(20)).collect();
    let mut group = c.benchmark_group("format_portscan_20_ports");
    group.throughput(Throughput::Elements(events.len() as u64));
    // The same events with their ports held as JSON string values in the map.
    let plain: Vec<Event> = events
        .iter()
        .map(|e| scan_event(e.extra.to_map().into()))
        .collect();
    for (name, format, events) in [
        ("ecs_plain_ports", Format::Ecs, &plain),
        ("cef_plain_ports", Format::Cef, &plain),
        ("default", Format::Default, &events),
        ("trapster", Format::Trapster, &events),
        ("ecs", Format::Ecs, &events),
        ("cef", Format::Cef, &events),
    ] {
        group.bench_function(name, |b| {
            let mut out = BytesMut::with_capacity(1 << 20);
            b.iter(|| {
                out.clear();
                for e in events {
                    let _ = encode(format, black_box(e), &ctx, &mut out);
                }
                black_box(out.len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench, lifecycle, file_output);
criterion_main!(benches);

/// A scan event's whole life on the agent (build its `extra`, encode it in `trapster`, drop it)
/// with the port list held compactly, as the scan path does, against the same list held as one
/// JSON string value per port (how events held it before `Extra`), at 20 ports and at a
/// 31,250-port scan (the end-to-end benchmark's size).
fn lifecycle(c: &mut Criterion) {
    let ctx = FormatContext::for_device("bench");
    for ports in [20u16, 31_250] {
        let list: Vec<u16> = (1..=ports).collect();
        let mut group = c.benchmark_group(format!("portscan_lifecycle_{ports}_ports"));
        group.throughput(Throughput::Elements(1));
        let mut out = BytesMut::with_capacity(1 << 20);
        group.bench_function("compact", |b| {
            b.iter(|| {
                out.clear();
                let mut extra = flags();
                extra.set_ports(black_box(list.as_slice()));
                let event = scan_event(extra);
                let _ = encode(Format::Trapster, &event, &ctx, &mut out);
                black_box(out.len())
            });
        });
        group.bench_function("json_values", |b| {
            b.iter(|| {
                out.clear();
                let mut extra = flags();
                let values: Vec<serde_json::Value> = black_box(list.as_slice())
                    .iter()
                    .map(|p| serde_json::Value::from(p.to_string()))
                    .collect();
                extra.insert("ports".to_owned(), serde_json::Value::Array(values));
                let event = scan_event(extra);
                let _ = encode(Format::Trapster, &event, &ctx, &mut out);
                black_box(out.len())
            });
        });
        group.finish();
    }
}

/// Events per second through the fan-out into the `file` output (encode + queue + append).
fn file_output(c: &mut Criterion) {
    use sensor::output::{Fanout, OutputConfig, Transport, sink::file::FileConfig};
    let dir = std::env::temp_dir().join(format!("sensor-bench-file-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("events.ndjson");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let Ok(runtime) = runtime else { return };
    let ctx = FormatContext::for_device("bench");
    let events: Vec<Event> = (0..10_000).map(|_| portscan(20)).collect();
    let mut group = c.benchmark_group("file_output_portscan_20_ports");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.sample_size(10);
    group.bench_function("default", |b| {
        b.iter(|| {
            let _ = std::fs::remove_file(&path);
            runtime.block_on(async {
                let mut output = OutputConfig::new(
                    Format::Default,
                    Transport::File(FileConfig {
                        path: path.clone(),
                        mode: None,
                        truncate: false,
                    }),
                );
                // `send` never waits: a queue as large as the burst keeps every event.
                output.queue_size = events.len().max(1);
                let fanout = Fanout::start(&[output], &ctx);
                for e in &events {
                    fanout.send(e.clone());
                }
                black_box(fanout.finish(std::time::Duration::from_secs(30)).await)
            })
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}
