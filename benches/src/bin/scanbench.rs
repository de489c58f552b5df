//! `scanbench`: the privileged scan-detection benchmark. Run through `cargo xtask bench`.
//!
//! Prints the tables, writes `benches/results/scan.json` and `benches/results/scan.svg`
//! (`--kernel-only`: the kernel cost alone; `--extremes-only`: the extreme cases alone;
//! `--top-only`: the top rate on both XDP paths alone, for profiling the agent; the last two
//! write nothing).
//! Traffic stays inside the benchmark's own network namespaces; every run is bounded in
//! packets, and namespaces are deleted even on failure.

use benches::{
    e2e::{self, Path},
    kernel_cost, report,
};
use serde_json::json;
use tests::generator::Plan;

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("scanbench needs root: run `cargo xtask bench`");
        std::process::exit(2);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let out_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    // A quick run never replaces the figures the README quotes.
    let stem = if quick { "scan-quick" } else { "scan" };

    if std::env::args().any(|a| a == "--extremes-only") {
        // A check of the extreme cases alone; writes no results.
        let _ = extremes(false);
        return;
    }
    if std::env::args().any(|a| a == "--top-only") {
        top_only();
        return;
    }
    let mixes = kernel_cost::run();
    report::print_kernel(&mixes);
    if std::env::args().any(|a| a == "--kernel-only") {
        return;
    }

    // 256 sources, each probing enough ports for the rate to last `seconds` (sustained, well
    // past what the libpcap buffer can absorb); "max" sends 8 M pairs as fast as possible.
    let (sources, seconds) = if quick { (64u32, 0.5) } else { (256u32, 3.0) };
    let rates: Vec<Option<u64>> = if quick {
        vec![Some(100_000), None]
    } else {
        vec![
            Some(50_000),
            Some(100_000),
            Some(200_000),
            Some(400_000),
            Some(800_000),
            Some(1_600_000),
            None,
        ]
    };
    let ports_for = |rate: Option<u64>| -> u32 {
        let total = rate.map_or(if quick { 1_000_000.0 } else { 8_000_000.0 }, |r| {
            r as f64 * seconds
        });
        ((total / f64::from(sources)).ceil() as u32).clamp(64, 65_535)
    };
    let mut points = Vec::new();
    for path in [Path::Xdp, Path::XdpRecords, Path::Pcap] {
        for rate in &rates {
            let plan = Plan {
                sources,
                ports: ports_for(*rate),
                first_port: 1,
                rate: *rate,
            };
            points.push(e2e::run(path, "rate sweep", plan));
        }
    }
    // Real scanners for realism: their own pacing, valid packets, the sensor's stack answers.
    for path in [Path::Xdp, Path::XdpRecords, Path::Pcap] {
        points.push(e2e::run_traffic(
            path,
            "masscan 1-65535",
            e2e::Traffic::Masscan {
                ports: 65_535,
                rate: 300_000,
            },
        ));
        points.push(e2e::run_traffic(
            path,
            "nmap -T5 1-65535",
            e2e::Traffic::Nmap { ports: 65_535 },
        ));
    }
    report::print_points(
        "End to end: same traffic, XDP (aggregating), XDP (a record per probe), libpcap",
        &points,
    );

    let extremes = extremes(quick);

    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    let (xdp, pcap) = (
        report::lossless_rate(&points, Path::Xdp),
        report::lossless_rate(&points, Path::Pcap),
    );
    println!(
        "\nLossless (every offered pair reported): XDP {xdp:.0} pps, libpcap {pcap:.0} pps, ratio {:.2}x",
        ratio(xdp, pcap)
    );
    let (xdp_c, pcap_c) = (
        report::complete_rate(&points, Path::Xdp),
        report::complete_rate(&points, Path::Pcap),
    );
    println!(
        "Complete (every probe seen reported, nothing lost): XDP {xdp_c:.0} pps, libpcap {pcap_c:.0} pps, ratio {:.2}x",
        ratio(xdp_c, pcap_c)
    );
    let (xdp_cpu, pcap_cpu) = (
        report::cpu_at_top(&points, Path::Xdp),
        report::cpu_at_top(&points, Path::Pcap),
    );
    println!(
        "Agent CPU per M packets at the top rate: XDP {xdp_cpu:.3} s, libpcap {pcap_cpu:.3} s, libpcap/XDP {:.2}x",
        ratio(pcap_cpu, xdp_cpu)
    );

    let records_cpu = report::cpu_at_top(&points, Path::XdpRecords);
    println!(
        "Agent CPU per M packets at the top rate, aggregation: {xdp_cpu:.3} s with it, {records_cpu:.3} s with a record per probe, ratio {:.2}x",
        ratio(records_cpu, xdp_cpu)
    );

    let json = json!({
        "kernel_cost": mixes.iter().map(kernel_cost::MixResult::to_json).collect::<Vec<_>>(),
        "end_to_end": points.iter().map(e2e::Point::to_json).collect::<Vec<_>>(),
        "extremes": extremes.iter().map(e2e::Point::to_json).collect::<Vec<_>>(),
        "lossless_pps": {"xdp": xdp, "pcap": pcap},
        "complete_pps": {"xdp": xdp_c, "pcap": pcap_c},
        "cpu_s_per_mpkt_at_top": {"xdp": xdp_cpu, "xdp_records": records_cpu, "pcap": pcap_cpu},
        "quick": quick,
    });
    if let Err(e) = std::fs::create_dir_all(&out_dir)
        .and_then(|()| std::fs::write(out_dir.join(format!("{stem}.json")), format!("{json:#}\n")))
        .and_then(|()| std::fs::write(out_dir.join(format!("{stem}.svg")), report::svg(&points)))
    {
        eprintln!("writing results to {}: {e}", out_dir.display());
        std::process::exit(1);
    }
    println!(
        "\nResults: {0}/{stem}.json, {0}/{stem}.svg",
        out_dir.display()
    );
}

/// The top rate of the sweep (256 sources, 8 M pairs as fast as possible) on both XDP paths,
/// with their agent CPU ratio; printed.
fn top_only() {
    let plan = Plan {
        sources: 256,
        ports: 31_250,
        first_port: 1,
        rate: None,
    };
    let points: Vec<_> = [Path::Xdp, Path::XdpRecords]
        .into_iter()
        .map(|path| e2e::run(path, "rate sweep", plan))
        .collect();
    report::print_points(
        "Top rate (XDP aggregating, XDP a record per probe)",
        &points,
    );
    let (xdp, records) = (
        report::cpu_at_top(&points, Path::Xdp),
        report::cpu_at_top(&points, Path::XdpRecords),
    );
    let ratio = if xdp > 0.0 {
        records / xdp
    } else {
        f64::INFINITY
    };
    println!(
        "Agent CPU per M packets at the top rate, aggregation: {xdp:.3} s with it, {records:.3} s with a record per probe, ratio {ratio:.2}x"
    );
}

/// One source probing every port, and (full runs) a million spoofed sources of one probe each,
/// with aggregation and with a record per probe (what aggregation's bookkeeping costs a flood
/// it cannot aggregate); printed.
fn extremes(quick: bool) -> Vec<e2e::Point> {
    let mut extremes = vec![e2e::run(
        Path::Xdp,
        "65535 ports, 1 source",
        Plan {
            sources: 1,
            ports: 65_535,
            first_port: 1,
            rate: None,
        },
    )];
    if !quick {
        for path in [Path::Xdp, Path::XdpRecords] {
            extremes.push(e2e::run(
                path,
                "1M spoofed sources",
                Plan {
                    sources: 1_000_000,
                    ports: 1,
                    first_port: 80,
                    rate: None,
                },
            ));
        }
    }
    report::print_points("Extremes (XDP)", &extremes);
    extremes
}
