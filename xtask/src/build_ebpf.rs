//! `cargo xtask build-ebpf`: the checked wrapper around building the XDP object.

use std::{path::PathBuf, process::Command};

use anyhow::Context as _;

use crate::{run_cmd, setup, target_dir, workspace_root};

/// Options of `build-ebpf`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Build in debug mode (the object is always optimised; this only changes the target dir).
    #[arg(long)]
    debug: bool,
    /// Copy the object here (e.g. for `bpftool prog load`).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    setup::run()?;
    let root = workspace_root();
    run_cmd(
        Command::new("cargo")
            .current_dir(&root)
            .arg(format!("+{}", setup::NIGHTLY))
            .args([
                "build",
                "--package",
                "sensor-ebpf",
                "--bin",
                "sensor",
                "--bin",
                "sk_lookup",
                "--release",
            ])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .env_remove("RUSTC")
            .env_remove("RUSTUP_TOOLCHAIN"),
    )?;
    let object = target_dir().join("bpfel-unknown-none/release/sensor");
    eprintln!("xtask: XDP object at {}", object.display());
    eprintln!(
        "xtask: sk_lookup object at {}",
        target_dir()
            .join("bpfel-unknown-none/release/sk_lookup")
            .display()
    );
    if let Some(out) = &options.out {
        std::fs::copy(&object, out)
            .with_context(|| format!("copying {} to {}", object.display(), out.display()))?;
        eprintln!("xtask: copied to {}", out.display());
    }
    // The userspace binary embeds its own build of the object (sensor/build.rs).
    let mut build = Command::new("cargo");
    build
        .current_dir(&root)
        .args(["build", "--package", "sensor"]);
    if !options.debug {
        build.arg("--release");
    }
    run_cmd(&mut build)
}
