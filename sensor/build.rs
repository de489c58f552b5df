//! Builds the XDP program (`sensor-ebpf`) for the BPF target and leaves the object in `OUT_DIR`,
//! where `sensor::capture::xdp` embeds it with `include_bytes_aligned!`.
//!
//! Needs the nightly toolchain with `rust-src` and an LLVM-matched `bpf-linker`:
//! `cargo xtask setup` installs both. `AYA_BUILD_SKIP=1` skips the build (aya-build's switch).
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .ok_or_else(|| anyhow!("CARGO_MANIFEST_DIR not set"))?,
    );
    let ebpf_dir = manifest_dir.join("../sensor-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    println!("cargo:rerun-if-env-changed=PATH");
    git_commit();
    if std::env::var_os("AYA_BUILD_SKIP").is_none() && which::which("bpf-linker").is_err() {
        return Err(anyhow!(
            "bpf-linker is not on PATH: run `cargo xtask setup` once to install the eBPF toolchain"
        ));
    }
    aya_build::build_ebpf(
        [Package {
            name: "sensor-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
    .context(
        "building the XDP program (sensor-ebpf) failed; `cargo xtask setup` installs the toolchain",
    )
}

/// Exports `SENSOR_GIT_COMMIT` and asks for a rerun when `HEAD` or the branch it names moves.
fn git_commit() {
    println!("cargo:rerun-if-env-changed=SENSOR_GIT_COMMIT");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let commit = std::env::var("SENSOR_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SENSOR_GIT_COMMIT={commit}");
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
