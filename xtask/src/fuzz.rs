//! `cargo xtask fuzz [--seconds N] [--jobs J] [TARGET...]`: the `cargo fuzz` targets in `fuzz/`
//! (libFuzzer, nightly).
//!
//! Installs what is missing (the nightly toolchain through `setup`'s code path, then a pinned
//! `cargo-fuzz` with `cargo install --locked`), builds every target once, then runs each target
//! binary for `--seconds` (libFuzzer's `-max_total_time`) on its committed corpus
//! `fuzz/corpus/<target>/`, `--jobs` targets at a time. A crash, a leak of the time or memory
//! budget of one input, or a panic fails the task, naming the target, its log and the input
//! libFuzzer saved under `fuzz/artifacts/<target>/` (replay it with
//! `fuzz/target/<triple>/release/<target> <artifact>`, or `cargo fuzz run <target> <artifact>`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{output_of, run_cmd, setup, workspace_root};

/// The cargo-fuzz release installed when missing (builds with the pinned lock file).
const CARGO_FUZZ_VERSION: &str = "0.13.1";
/// Sanitizer-free builds: the code is safe Rust, so overflow checks and debug assertions (on in
/// cargo fuzz's builds) find what matters, at several times the speed of ASan.
const SANITIZER: &str = "none";
/// The host triple cargo fuzz builds for.
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Seconds per target (libFuzzer's -max_total_time).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Targets run at the same time.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Targets to run (all when none is given).
    targets: Vec<String>,
}

fn fuzz_dir() -> PathBuf {
    workspace_root().join("fuzz")
}

/// Every target: the files of `fuzz/fuzz_targets/`, sorted.
fn all_targets(dir: &Path) -> anyhow::Result<Vec<String>> {
    let listing = dir.join("fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&listing)
        .with_context(|| format!("listing {}", listing.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".rs").map(str::to_owned))
        .collect();
    targets.sort();
    Ok(targets)
}

/// Installs cargo-fuzz unless the pinned version is already there.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let installed = output_of(Command::new("cargo").args(["fuzz", "--version"])).ok();
    if installed.is_some_and(|v| v.contains(CARGO_FUZZ_VERSION)) {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    run_cmd(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
        "--force",
    ]))
}

/// A running target: its name, log file and process.
struct Running {
    target: String,
    log: PathBuf,
    child: Child,
}

fn spawn(dir: &Path, bin_dir: &Path, target: &str, seconds: u64) -> anyhow::Result<Running> {
    let corpus = dir.join("corpus").join(target);
    let artifacts = dir.join("artifacts").join(target);
    let logs = dir.join("target").join("logs");
    for d in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let log = logs.join(format!("{target}.log"));
    let file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(bin_dir.join(target))
        .arg(format!("-max_total_time={seconds}"))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-max_len=65536")
        .arg("-print_final_stats=1")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting fuzz target {target}"))?;
    Ok(Running {
        target: target.to_owned(),
        log,
        child,
    })
}

/// libFuzzer's final statistics line for the run count, for the summary.
fn runs_of(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
                .map(|n| n.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// Files libFuzzer saved for `target` (crash-, leak-, timeout-, oom-, slow-unit-).
fn artifacts_of(dir: &Path, target: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("artifacts").join(target))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("slow-unit-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    let started = Instant::now();
    setup::ensure_nightly()?;
    ensure_cargo_fuzz()?;
    let dir = fuzz_dir();
    let known = all_targets(&dir)?;
    let targets = if options.targets.is_empty() {
        known.clone()
    } else {
        options.targets.clone()
    };
    if let Some(unknown) = targets.iter().find(|t| !known.contains(t)) {
        bail!("no fuzz target `{unknown}` (known: {})", known.join(", "));
    }
    let target_dir = dir.join("target");
    eprintln!("xtask: building {} fuzz targets", known.len());
    run_cmd(
        Command::new("cargo")
            .current_dir(&dir)
            .arg(format!("+{}", setup::NIGHTLY))
            .args(["fuzz", "build", "--sanitizer", SANITIZER, "--target-dir"])
            .arg(&target_dir),
    )?;
    eprintln!(
        "xtask: fuzz targets built in {} s",
        started.elapsed().as_secs()
    );
    let bin_dir = target_dir.join(TRIPLE).join("release");
    let jobs = options.jobs.max(1);
    let mut pending = targets.iter();
    let mut running: Vec<Running> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    loop {
        while running.len() < jobs {
            let Some(target) = pending.next() else { break };
            let before = artifacts_of(&dir, target);
            if !before.is_empty() {
                eprintln!("xtask: {target}: earlier artifacts present: {before:?}");
            }
            running.push(spawn(&dir, &bin_dir, target, options.seconds)?);
        }
        if running.is_empty() {
            break;
        }
        let mut still = Vec::new();
        for mut r in running {
            match r.child.try_wait()? {
                None => still.push(r),
                Some(status) => {
                    let runs = runs_of(&r.log);
                    if status.success() {
                        eprintln!("xtask: fuzz {}: ok, {runs} inputs", r.target);
                    } else {
                        eprintln!(
                            "xtask: fuzz {}: FAILED ({status}) after {runs} inputs; log {}; artifacts {:?}",
                            r.target,
                            r.log.display(),
                            artifacts_of(&dir, &r.target)
                        );
                        failed.push(r.target);
                    }
                }
            }
        }
        running = still;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    eprintln!(
        "xtask: fuzzing took {} s in all",
        started.elapsed().as_secs()
    );
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{all_targets, fuzz_dir};

    /// Every target file is a `[[bin]]` of the fuzz crate and has committed seeds, so a new
    /// target cannot be forgotten by `cargo fuzz build` or start from nothing in CI.
    #[test]
    fn every_target_is_declared_and_has_seeds() {
        let dir = fuzz_dir();
        let targets = all_targets(&dir).unwrap();
        assert!(targets.len() >= 20, "{targets:?}");
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        for target in &targets {
            assert!(
                manifest.contains(&format!(
                    "name = \"{target}\"\npath = \"fuzz_targets/{target}.rs\""
                )),
                "{target} is not a [[bin]] of fuzz/Cargo.toml"
            );
            let seeds = std::fs::read_dir(dir.join("corpus").join(target))
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("seed-"))
                .count();
            assert!(seeds >= 1, "{target} has no committed seed");
        }
    }
}
