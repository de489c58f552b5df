//! `cargo xtask run -- ARGS`: set up the toolchain, build the sensor in release mode and run
//! `sensor run ARGS` as root (through `sudo -E` unless already root).

use std::process::Command;

use crate::{as_root, run_cmd, setup, target_dir, workspace_root};

/// Options of `run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Arguments of `sensor run` (e.g. `-i eth0`, `-c trapster.conf`).
    #[arg(last = true)]
    args: Vec<String>,
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    setup::run()?;
    let root = workspace_root();
    run_cmd(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "sensor",
    ]))?;
    let bin = target_dir().join("release/sensor");
    run_cmd(as_root(&bin).arg("run").args(&options.args))
}
