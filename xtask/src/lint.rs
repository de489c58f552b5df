//! `cargo xtask lint`: formatting and clippy, for the host crates and for the BPF target.

use std::process::Command;

use crate::{run_cmd, setup, workspace_root};

pub(crate) fn run() -> anyhow::Result<()> {
    setup::run()?;
    let root = workspace_root();
    run_cmd(
        Command::new("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--check"]),
    )?;
    run_cmd(
        Command::new("cargo")
            .current_dir(&root)
            .args([
                "clippy",
                "--all-targets",
                "--package",
                "sensor",
                "--package",
                "sensor-common",
            ])
            .args([
                "--package",
                "xtask",
                "--package",
                "tests",
                "--package",
                "benches",
            ])
            .args(["--", "-D", "warnings"]),
    )?;
    // The fuzz targets' entry points (`sensor::fuzzing`) only build with this feature: linted
    // here on stable, so a refactor that breaks them fails at once, not in the fuzz step.
    run_cmd(
        Command::new("cargo")
            .current_dir(&root)
            .args([
                "clippy",
                "--lib",
                "--package",
                "sensor",
                "--features",
                "fuzzing",
            ])
            .args(["--", "-D", "warnings"]),
    )?;
    run_cmd(
        Command::new("cargo")
            .current_dir(&root)
            .arg(format!("+{}", setup::NIGHTLY))
            .args(["clippy", "--package", "sensor-ebpf", "--bins"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .args(["--", "-D", "warnings"])
            .env("AYA_BUILD_SKIP", "1")
            .env_remove("RUSTC")
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
}
