//! `cargo xtask bench`: userspace criterion benchmarks, then the privileged scan benchmark
//! (kernel cost, XDP vs libpcap end to end, extremes), then the emulated-service benchmark
//! (sessions per second, memory with 5,000 idle connections), then the sensor side by side with
//! Trapster from PyPI (same services, same clients, `ab` HTTP load; `--no-trapster` skips it),
//! printed and saved under `benches/results/`. Never run by CI.

use std::process::Command;

use crate::{as_root, run_cmd, setup, target_dir, workspace_root};

/// Options of `bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// A short run (fewer packets and rates) to check the benchmark itself works.
    #[arg(long)]
    quick: bool,
    /// Skip the criterion benchmarks.
    #[arg(long)]
    no_criterion: bool,
    /// Skip the comparison with Trapster from PyPI.
    #[arg(long)]
    no_trapster: bool,
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    setup::run()?;
    let root = workspace_root();
    if !options.no_criterion {
        run_cmd(Command::new("cargo").current_dir(&root).args([
            "bench",
            "--package",
            "benches",
            "--bench",
            "merger",
            "--bench",
            "incidents",
        ]))?;
    }
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
        "scanbench",
        "--bin",
        "servicebench",
        "--bin",
        "trapsterbench",
    ]))?;
    let bench = target_dir().join("release/scanbench");
    let mut cmd = as_root(&bench);
    cmd.current_dir(&root)
        .env("SENSOR_BIN", target_dir().join("release/sensor"));
    if options.quick {
        cmd.arg("--quick");
    }
    run_cmd(&mut cmd)?;
    // The emulated services: sessions per second and memory with 5,000 idle connections.
    let mut services = Command::new(target_dir().join("release/servicebench"));
    services
        .current_dir(&root)
        .env("SENSOR_BIN", target_dir().join("release/sensor"));
    if options.quick {
        services.arg("--quick");
    }
    run_cmd(&mut services)?;
    if options.no_trapster {
        return Ok(());
    }
    // Sensor vs Trapster: same services, same sessions, `ab -c 32` on HTTP.
    let mut versus = Command::new(target_dir().join("release/trapsterbench"));
    versus
        .current_dir(&root)
        .env("SENSOR_BIN", target_dir().join("release/sensor"));
    if options.quick {
        versus.arg("--quick");
    }
    run_cmd(&mut versus)
}
