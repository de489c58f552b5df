//! `cargo xtask test` and `cargo xtask integration-test`. `test` first installs (or prints the
//! command for) every package of the build, run and test groups ([`crate::deps`]).
//!
//! Integration tests need root (network namespaces, XDP). They are built as the current user
//! with `cargo test --no-run`, then each test executable is run under the runner (`sudo -E`
//! unless already root), with `SENSOR_BIN` pointing at the freshly built `sensor` binary.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow};

use crate::{deps, output_of, run_cmd, setup, target_dir, workspace_root};

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
    deps::ensure(&deps::Options {
        test: true,
        ..deps::Options::default()
    })?;
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
        // The fixtures library has no tests of its own; only the test targets are run.
        .filter(|msg| {
            msg["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|x| x == "test"))
        })
        .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .collect();
    if executables.is_empty() {
        return Err(anyhow!("no integration test executable was built"));
    }
    let runner = match &options.runner {
        Some(r) => r.split_whitespace().map(str::to_owned).collect(),
        None if crate::is_root() => Vec::new(),
        None => vec!["sudo".to_owned(), "-E".to_owned()],
    };
    let (mut passed, mut failed) = (0u64, 0u64);
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
            .args(&options.test_args)
            .stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", exe.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                passed += count_of(rest, " passed");
                failed += count_of(rest, " failed");
            }
        }
        let status = child.wait()?;
        if !status.success() {
            println!("integration: {passed} passed, {} failed", failed.max(1));
            return Err(anyhow!(
                "integration tests in {} failed: {status}",
                exe.display()
            ));
        }
    }
    // One closing line for the whole privileged suite.
    println!("integration: {passed} passed, {failed} failed");
    Ok(())
}

/// The number before `label` in a libtest summary (`ok. 10 passed; 0 failed; ...`).
fn count_of(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label.trim_start())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
