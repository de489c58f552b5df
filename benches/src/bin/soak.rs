//! The soak test of the real `sensor` binary (run by `cargo xtask soak`, never by CI; see
//! `benches::soak`). Phases and durations:
//!
//! ```text
//! soak [--quick] [--phases outage,idle,load,chaos] [--outage-secs 600] [--idle-secs 120]
//!      [--load-secs 3600] [--rss-every-secs 30] [--chaos-cycles 20] [--chaos-every-secs 15]
//! ```
//!
//! `--quick` checks every phase in about two minutes. `SENSOR_BIN` names the binary (default
//! `target/release/sensor`). Prints the figures of each phase and writes them to
//! `benches/results/soak.json`, then checks them (`benches::soak::verdict`): exit code 1 when
//! a check fails.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use benches::soak;
use serde_json::{Value, json};

#[derive(Debug)]
struct Options {
    phases: Vec<String>,
    outage: Duration,
    idle: Duration,
    load: Duration,
    rss_every: Duration,
    chaos_cycles: u32,
    chaos_every: Duration,
    quick: bool,
}

const PHASES: [&str; 4] = ["outage", "idle", "load", "chaos"];

fn parse() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = if quick {
        Options {
            phases: Vec::new(),
            outage: Duration::from_secs(20),
            idle: Duration::from_secs(10),
            load: Duration::from_secs(30),
            rss_every: Duration::from_secs(2),
            chaos_cycles: 4,
            chaos_every: Duration::from_secs(4),
            quick,
        }
    } else {
        Options {
            phases: Vec::new(),
            outage: Duration::from_secs(600),
            idle: Duration::from_secs(120),
            load: Duration::from_secs(3600),
            rss_every: Duration::from_secs(30),
            chaos_cycles: 20,
            chaos_every: Duration::from_secs(15),
            quick,
        }
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--quick" {
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let secs = || {
            value
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|e| format!("{arg} {value}: {e}"))
        };
        match arg.as_str() {
            "--phases" => {
                for p in value.split(',') {
                    if !PHASES.contains(&p) {
                        return Err(format!("unknown phase `{p}` (expected {PHASES:?})"));
                    }
                    o.phases.push(p.to_owned());
                }
            }
            "--outage-secs" => o.outage = secs()?,
            "--idle-secs" => o.idle = secs()?,
            "--load-secs" => o.load = secs()?,
            "--rss-every-secs" => o.rss_every = secs()?.max(Duration::from_secs(1)),
            "--chaos-every-secs" => o.chaos_every = secs()?.max(Duration::from_secs(1)),
            "--chaos-cycles" => {
                o.chaos_cycles = value
                    .parse()
                    .map_err(|e| format!("--chaos-cycles {value}: {e}"))?;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if o.phases.is_empty() {
        o.phases = PHASES.iter().map(|p| (*p).to_owned()).collect();
    }
    Ok(o)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fd_limit = soak::raise_fd_limit();
    let bin = std::env::var_os("SENSOR_BIN")
        .map_or_else(|| PathBuf::from("target/release/sensor"), PathBuf::from);
    println!(
        "soak of {} ({}), phases {:?}; open-file limit {fd_limit}",
        bin.display(),
        if options.quick { "quick" } else { "full" },
        options.phases
    );
    let drain = Duration::from_secs(if options.quick { 60 } else { 300 });
    let mut report = serde_json::Map::new();
    report.insert("quick".to_owned(), json!(options.quick));
    report.insert("open_file_limit".to_owned(), json!(fd_limit));
    let (mut passed, mut failed) = (0u32, 0u32);
    for phase in &options.phases {
        let figures: Value = match phase.as_str() {
            "outage" => soak::outage::run(&bin, options.outage, drain).await,
            "idle" => soak::idle::run(&bin, options.idle).await,
            "load" => soak::load::run(&bin, options.load, options.rss_every).await,
            _ => soak::chaos::run(&bin, options.chaos_cycles, options.chaos_every, drain).await,
        };
        for (check, ok) in soak::verdict::checks(phase, &figures) {
            println!("{phase}: {check}: {}", if ok { "ok" } else { "FAILED" });
            if ok {
                passed += 1;
            } else {
                failed += 1;
            }
        }
        report.insert(phase.clone(), figures);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("results")
        .join("soak.json");
    let text = serde_json::to_string_pretty(&Value::Object(report)).unwrap_or_default();
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("soak: writing {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("written: {}", path.display());
    println!("soak: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
