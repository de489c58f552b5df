//! Output of the scan benchmark: a printed table, a JSON file and an SVG plot.

use std::fmt::Write as _;

use crate::{
    e2e::{Path, Point},
    kernel_cost::MixResult,
};

/// Prints the kernel-cost table.
pub fn print_kernel(mixes: &[MixResult]) {
    println!("\nKernel cost (BPF_PROG_TEST_RUN, median ns/packet, same run)");
    let with_before = mixes.iter().any(|m| m.before_ns.is_some());
    if with_before {
        println!(
            "{:<30} {:>10} {:>10} {:>10} {:>7}",
            "mix", "before", "sensor", "empty", "ratio"
        );
    } else {
        println!(
            "{:<30} {:>10} {:>10} {:>7}",
            "mix", "sensor", "empty", "ratio"
        );
    }
    for m in mixes {
        match m.before_ns {
            Some(before) if with_before => println!(
                "{:<30} {:>10.1} {:>10.1} {:>10.1} {:>6.2}x",
                m.name,
                before,
                m.sensor_ns,
                m.empty_ns,
                m.ratio()
            ),
            _ => println!(
                "{:<30} {:>10.1} {:>10.1} {:>6.2}x",
                m.name,
                m.sensor_ns,
                m.empty_ns,
                m.ratio()
            ),
        }
    }
}

/// Prints the end-to-end table.
pub fn print_points(title: &str, points: &[Point]) {
    println!("\n{title}");
    println!(
        "{:<5} {:<22} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8} {:>7} {:>8} {:>7} {:>9} {:>9}",
        "path",
        "scenario",
        "target",
        "achieved",
        "offered",
        "seen",
        "reported",
        "detect",
        "lost",
        "cpu s/M",
        "cores",
        "rss MiB",
        "lat ms"
    );
    for p in points {
        println!(
            "{:<5} {:<22} {:>10} {:>10.0} {:>9} {:>9} {:>9} {:>7.2}% {:>7} {:>8.3} {:>7.3} {:>9.1} {:>9.0}",
            p.path.name(),
            p.scenario,
            p.target_pps.map_or("max".to_owned(), |r| r.to_string()),
            p.achieved_pps,
            p.offered,
            p.seen,
            p.reported_pairs,
            p.detection() * 100.0,
            p.lost,
            p.cpu_per_mpkt(),
            p.cores(),
            p.peak_rss_kib as f64 / 1024.0,
            p.latency_ms,
        );
    }
}

/// Highest achieved rate of the rate sweep at which every offered pair was reported.
#[must_use]
pub fn lossless_rate(points: &[Point], path: Path) -> f64 {
    sweep(points, path)
        .filter(|p| p.offered > 0 && p.reported_pairs == p.offered)
        .map(|p| p.achieved_pps)
        .fold(0.0, f64::max)
}

/// Highest achieved rate of the rate sweep at which every probe the capture path saw was
/// reported (losses before the capture path, in the test rig, excluded).
#[must_use]
pub fn complete_rate(points: &[Point], path: Path) -> f64 {
    sweep(points, path)
        .filter(|p| p.offered > 0 && p.reported_pairs == p.seen && p.lost == 0)
        .map(|p| p.achieved_pps)
        .fold(0.0, f64::max)
}

/// Agent CPU seconds per million packets at the sweep's highest achieved rate.
#[must_use]
pub fn cpu_at_top(points: &[Point], path: Path) -> f64 {
    sweep(points, path)
        .max_by(|a, b| a.achieved_pps.total_cmp(&b.achieved_pps))
        .map_or(0.0, Point::cpu_per_mpkt)
}

fn sweep(points: &[Point], path: Path) -> impl Iterator<Item = &Point> {
    points
        .iter()
        .filter(move |p| p.path == path && p.scenario == "rate sweep")
}

/// An SVG with two panels against the achieved rate (log scale): detection and agent CPU.
#[must_use]
pub fn svg(points: &[Point]) -> String {
    let (w, h, pad) = (900.0, 360.0, 60.0);
    let panel_w = (w - 3.0 * pad) / 2.0;
    let panel_h = h - 2.0 * pad;
    let rates: Vec<f64> = points.iter().map(|p| p.achieved_pps.max(1.0)).collect();
    let lo = rates
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .log10()
        .floor();
    let hi = rates
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let max_cpu = points
        .iter()
        .map(Point::cpu_per_mpkt)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.1;
    let x = |rate: f64, left: f64| left + (rate.max(1.0).log10() - lo) / (hi - lo) * panel_w;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/>"
    );
    let min_detect = points
        .iter()
        .map(|p| p.detection() * 100.0)
        .fold(100.0, f64::min)
        .min(90.0)
        .floor();
    type Value = Box<dyn Fn(&Point) -> f64>;
    let panels: [(&str, f64, Value, f64, f64); 2] = [
        (
            "pairs reported (%)",
            pad,
            Box::new(|p: &Point| p.detection() * 100.0),
            min_detect,
            100.0,
        ),
        (
            "agent CPU s per M packets",
            2.0 * pad + panel_w,
            Box::new(Point::cpu_per_mpkt),
            0.0,
            max_cpu,
        ),
    ];
    for (title, left, value, ymin, ymax) in &panels {
        let top = pad;
        let _ = write!(
            s,
            "<rect x='{left}' y='{top}' width='{panel_w}' height='{panel_h}' fill='none' stroke='#888'/>\
             <text x='{}' y='{}' text-anchor='middle'>{title}</text>\
             <text x='{}' y='{}' text-anchor='middle'>offered rate (packets/s, log)</text>",
            left + panel_w / 2.0,
            top - 10.0,
            left + panel_w / 2.0,
            top + panel_h + 35.0
        );
        let mut decade = lo;
        while decade <= hi {
            let px = x(10f64.powf(decade), *left);
            let _ = write!(
                s,
                "<line x1='{px}' y1='{top}' x2='{px}' y2='{}' stroke='#eee'/><text x='{px}' y='{}' text-anchor='middle'>1e{decade}</text>",
                top + panel_h,
                top + panel_h + 15.0
            );
            decade += 1.0;
        }
        let _ = write!(
            s,
            "<text x='{}' y='{}' text-anchor='end'>{ymax:.1}</text><text x='{}' y='{}' text-anchor='end'>{ymin:.0}</text>",
            left - 4.0,
            top + 4.0,
            left - 4.0,
            top + panel_h
        );
        for (path, color) in [
            (Path::Xdp, "#1f77b4"),
            (Path::XdpRecords, "#2ca02c"),
            (Path::Pcap, "#ff7f0e"),
        ] {
            let mut series: Vec<&Point> = points
                .iter()
                .filter(|p| p.path == path && p.scenario == "rate sweep")
                .collect();
            series.sort_by(|a, b| a.achieved_pps.total_cmp(&b.achieved_pps));
            let coords: Vec<String> = series
                .iter()
                .map(|p| {
                    let y = top + panel_h
                        - ((value(p) - ymin) / (ymax - ymin)).clamp(0.0, 1.0) * panel_h;
                    format!("{:.1},{:.1}", x(p.achieved_pps, *left), y)
                })
                .collect();
            let _ = write!(
                s,
                "<polyline points='{}' fill='none' stroke='{color}' stroke-width='2'/>",
                coords.join(" ")
            );
            for c in &coords {
                let (cx, cy) = c.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(s, "<circle cx='{cx}' cy='{cy}' r='3' fill='{color}'/>");
            }
        }
    }
    let _ = write!(
        s,
        "<text x='{pad}' y='{}' fill='#1f77b4'>■ XDP</text><text x='{}' y='{}' fill='#2ca02c'>■ XDP, a record per probe</text><text x='{}' y='{}' fill='#ff7f0e'>■ libpcap</text></svg>",
        h - 8.0,
        pad + 70.0,
        h - 8.0,
        pad + 300.0,
        h - 8.0
    );
    s
}
