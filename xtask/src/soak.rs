//! `cargo xtask soak`: builds the release `sensor` and the `soak` driver (`benches/src/bin/
//! soak.rs`) and runs it against the release binary: an output outage with a spool, 10,000
//! idle connections and slowloris on every service, memory under an hour of moderate load,
//! and SIGTERM / `kill -9` chaos during load. Never run by CI; bounded by its durations;
//! prints the figures and writes `benches/results/soak.json`.

use std::process::Command;

use crate::{run_cmd, target_dir, workspace_root};

/// Options of `soak` (passed on to the driver).
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Every phase in about two minutes, to check the soak itself works.
    #[arg(long)]
    quick: bool,
    /// Phases to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_parser = ["outage", "idle", "load", "chaos"])]
    phases: Vec<String>,
    /// Seconds the output's receiver stays down (default 600; 20 with --quick).
    #[arg(long)]
    outage_secs: Option<u64>,
    /// Seconds the idle connections are held (default 120; 10 with --quick).
    #[arg(long)]
    idle_secs: Option<u64>,
    /// Seconds of moderate load (default 3600; 30 with --quick).
    #[arg(long)]
    load_secs: Option<u64>,
    /// Seconds between two samples of the sensor's memory under load (default 30; 2 with --quick).
    #[arg(long)]
    rss_every_secs: Option<u64>,
    /// Stop-and-start cycles of the chaos phase (default 20; 4 with --quick).
    #[arg(long)]
    chaos_cycles: Option<u32>,
    /// Seconds between two chaos cycles (default 15; 4 with --quick).
    #[arg(long)]
    chaos_every_secs: Option<u64>,
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    let root = workspace_root();
    run_cmd(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "sensor",
        "--package",
        "benches",
        "--bin",
        "sensor",
        "--bin",
        "soak",
    ]))?;
    let mut cmd = Command::new(target_dir().join("release/soak"));
    cmd.current_dir(&root)
        .env("SENSOR_BIN", target_dir().join("release/sensor"));
    if options.quick {
        cmd.arg("--quick");
    }
    if !options.phases.is_empty() {
        cmd.args(["--phases", &options.phases.join(",")]);
    }
    let numbers = [
        ("--outage-secs", options.outage_secs),
        ("--idle-secs", options.idle_secs),
        ("--load-secs", options.load_secs),
        ("--rss-every-secs", options.rss_every_secs),
        ("--chaos-cycles", options.chaos_cycles.map(u64::from)),
        ("--chaos-every-secs", options.chaos_every_secs),
    ];
    for (flag, value) in numbers {
        if let Some(v) = value {
            cmd.arg(flag).arg(v.to_string());
        }
    }
    run_cmd(&mut cmd)
}
