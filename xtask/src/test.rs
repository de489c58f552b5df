//! `cargo xtask test` and `cargo xtask integration-test`.
//!
//! Integration tests need root (network namespaces, XDP). They are built as the current user
//! with `cargo test --no-run`, then each test executable is run under the runner (`sudo -E`
//! unless already root), with `SENSOR_BIN` pointing at the freshly built `sensor` binary.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, anyhow};

use crate::{output_of, run_cmd, setup, target_dir, workspace_root};

/// Options of the test tasks.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Command prefix used to run privileged tests; empty when already root.
    #[arg(long)]
    runner: Option<String>,
    /// Arguments passed to the test executables (test name filters, `--nocapture`, ...).
    #[arg(last = true)]
    test_args: Vec<String>,
}

pub(crate) fn run_all(options: &Options) -> anyhow::Result<()> {
    setup::run()?;
    let root = workspace_root();
    run_cmd(Command::new("cargo").current_dir(&root).args([
        "test",
        "--workspace",
        "--exclude",
        "tests",
        "--exclude",
        "sensor-ebpf",
    ]))?;
    run_integration(options)
}

pub(crate) fn is_root() -> bool {
    output_of(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

pub(crate) fn run_integration(options: &Options) -> anyhow::Result<()> {
    setup::run()?;
    let root = workspace_root();
    run_cmd(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "--package", "sensor"]),
    )?;
    let sensor_bin = target_dir().join("debug/sensor");
    let listing = output_of(Command::new("cargo").current_dir(&root).args([
        "test",
        "--package",
        "tests",
        "--no-run",
        "--message-format=json",
    ]))?;
    let executables: Vec<PathBuf> = listing
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["profile"]["test"] == true)
        .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .collect();
    if executables.is_empty() {
        return Err(anyhow!("no integration test executable was built"));
    }
    let runner = match &options.runner {
        Some(r) => r.split_whitespace().map(str::to_owned).collect(),
        None if is_root() => Vec::new(),
        None => vec!["sudo".to_owned(), "-E".to_owned()],
    };
    for exe in executables {
        let mut cmd = match runner.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.current_dir(&root)
            .env("SENSOR_BIN", &sensor_bin)
            .args(["--test-threads", "1"])
            .args(&options.test_args);
        run_cmd(&mut cmd).with_context(|| format!("integration tests in {}", exe.display()))?;
    }
    Ok(())
}
