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
