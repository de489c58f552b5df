//! `cargo xtask`: the project's tasks. CI calls these same commands.
//!
//! - `deps`: installs (as root) or prints the command for the Debian packages of the build,
//!   the run and (`--test`) the tests; `run` and `test` call it first.
//! - `setup`: installs the eBPF toolchain (nightly `rust-src`, LLVM-matched `bpf-linker`).
//! - `build-ebpf`: builds the XDP object, optionally copying it somewhere for `bpftool`.
//! - `run`: builds the sensor and runs it as root with the given arguments.
//! - `test`: the whole suite: unit tests, then the privileged integration tests.
//! - `integration-test`: only the privileged tests (as root, or through `sudo -E`).
//! - `package`: the Debian package (cargo-deb), with the systemd unit from `packaging/`.
//! - `lint`: rustfmt, clippy (userspace and the BPF target).
//! - `fuzz`: builds the `cargo fuzz` targets in `fuzz/` and runs each for a bounded time.
//! - `bench`: criterion benchmarks, the privileged scan benchmark (figures, JSON, SVG), the
//!   service benchmark and the sensor vs Trapster comparison.
//! - `soak`: the soak test (release sensor; outage with a spool, idle connections and
//!   slowloris, memory under long load, SIGTERM / `kill -9` chaos); never run by CI.

mod bench;
mod build_ebpf;
mod deps;
mod fuzz;
mod lint;
mod package;
mod run;
mod setup;
mod soak;
mod test;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install (as root) or print the command for the Debian packages the build, the sensor
    /// and (with --test) the tests need.
    Deps(deps::Options),
    /// Install nightly rust-src and a bpf-linker built against the nightly's LLVM.
    Setup,
    /// Build the XDP object (after `setup`).
    BuildEbpf(build_ebpf::Options),
    /// Build the sensor (release) and run it as root: `cargo xtask run` (watches the default-route interface unless `-- -i IFACE`).
    Run(run::Options),
    /// Run every test: unit tests, then the privileged integration tests.
    Test(test::Options),
    /// Run only the privileged integration tests.
    IntegrationTest(test::Options),
    /// Build the Debian package (cargo-deb): binary, unit, config, user, man page, completions.
    Package(package::Options),
    /// rustfmt and clippy on every crate, the eBPF crate included.
    Lint,
    /// Benchmarks: criterion (userspace), then the privileged scan benchmark.
    Bench(bench::Options),
    /// Fuzzing (cargo fuzz, libFuzzer, nightly): builds every target once, runs each bounded.
    Fuzz(fuzz::Options),
    /// Soak test of the release sensor (not in CI): outage, idle connections, long load, chaos.
    Soak(soak::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Deps(options) => deps::ensure(&options),
        Task::Setup => setup::run(),
        Task::BuildEbpf(options) => build_ebpf::run(&options),
        Task::Run(options) => run::run(&options),
        Task::Test(options) => test::run_all(&options),
        Task::IntegrationTest(options) => test::run_integration(&options),
        Task::Package(options) => package::run(&options),
        Task::Lint => lint::run(),
        Task::Bench(options) => bench::run(&options),
        Task::Fuzz(options) => fuzz::run(&options),
        Task::Soak(options) => soak::run(&options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command, failing with its description when it does not succeed.
pub(crate) fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("spawning {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its standard output.
/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    output_of(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

pub(crate) fn output_of(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("spawning {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{shown} printed non-UTF-8"))
}

/// The workspace root (parent of this crate's directory).
pub(crate) fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// A command running `program` as root: directly when already root, through `sudo -E`
/// otherwise (privileged tests, benchmarks, the sensor itself).
pub(crate) fn as_root(program: &std::path::Path) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-E").arg(program);
        c
    }
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, `<workspace>/target` otherwise.
pub(crate) fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), std::path::PathBuf::from)
}
