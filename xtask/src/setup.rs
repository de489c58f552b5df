//! `cargo xtask setup`: makes a fresh machine able to build the XDP program. Idempotent: when
//! everything is in place it only checks, in about a second.
//!
//! bpf-linker must use the same LLVM major version as the nightly rustc that emits the bitcode.
//! It is built against the nightly's own `libLLVM-<major>-rust-<version>.so` (no system LLVM of
//! that version exists here), with the library's directory baked in as an rpath.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, anyhow, bail};

use crate::{output_of, run_cmd};

/// The bpf-linker release known to build against LLVM 22 here.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The nightly toolchain used for the BPF target.
pub(crate) const NIGHTLY: &str = "nightly";

/// What the nightly toolchain says about itself.
struct Nightly {
    llvm_major: u32,
    llvm_lib: String,
    lib_dir: PathBuf,
}

fn nightly() -> anyhow::Result<Nightly> {
    let verbose = output_of(Command::new("rustc").arg(format!("+{NIGHTLY}")).arg("-vV"))
        .context("the nightly toolchain is required (rustup toolchain list)")?;
    let llvm = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .ok_or_else(|| anyhow!("`rustc +nightly -vV` printed no LLVM version"))?;
    let llvm_major: u32 = llvm
        .split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .ok_or_else(|| anyhow!("unparsable LLVM version `{llvm}`"))?;
    let sysroot = output_of(
        Command::new("rustc")
            .arg(format!("+{NIGHTLY}"))
            .args(["--print", "sysroot"]),
    )?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    let prefix = format!("libLLVM-{llvm_major}-rust-");
    let llvm_lib = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("listing {}", lib_dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|name| name.starts_with(&prefix) && name.ends_with(".so"))
        .ok_or_else(|| anyhow!("no {prefix}*.so in {}", lib_dir.display()))?;
    // `libLLVM-22-rust-1.97.0-nightly.so` is linked as `-l dylib=LLVM-22-rust-1.97.0-nightly`.
    let llvm_lib = llvm_lib
        .strip_prefix("lib")
        .and_then(|n| n.strip_suffix(".so"))
        .ok_or_else(|| anyhow!("odd library name {llvm_lib}"))?
        .to_owned();
    Ok(Nightly {
        llvm_major,
        llvm_lib,
        lib_dir,
    })
}

/// Installs the nightly toolchain (minimal profile) when `rustc +nightly` does not run: the BPF
/// build and `cargo xtask fuzz` (libFuzzer) both need it.
pub(crate) fn ensure_nightly() -> anyhow::Result<()> {
    let present = Command::new("rustc")
        .arg(format!("+{NIGHTLY}"))
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("xtask: installing the {NIGHTLY} toolchain");
    run_cmd(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]))
}

fn ensure_rust_src() -> anyhow::Result<()> {
    let installed = output_of(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src for {NIGHTLY}");
    run_cmd(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

/// Whether the installed bpf-linker was built for `llvm_major` and starts (its libLLVM loads).
fn bpf_linker_matches(llvm_major: u32) -> bool {
    let Some(home) = cargo_home() else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string(home.join(".crates2.json")) else {
        return false;
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    let wanted = format!("llvm-{llvm_major}");
    let built_for_llvm = json["installs"].as_object().is_some_and(|installs| {
        installs.iter().any(|(key, info)| {
            key.starts_with("bpf-linker ")
                && info["features"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x.as_str() == Some(wanted.as_str())))
        })
    });
    built_for_llvm
        && Command::new("bpf-linker")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

pub(crate) fn run() -> anyhow::Result<()> {
    ensure_nightly()?;
    ensure_rust_src()?;
    let nightly = nightly()?;
    if bpf_linker_matches(nightly.llvm_major) {
        eprintln!(
            "xtask: bpf-linker for LLVM {} is installed",
            nightly.llvm_major
        );
        return Ok(());
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {} (about two minutes)",
        nightly.llvm_lib
    );
    let lib_dir = nightly.lib_dir.display().to_string();
    if lib_dir.contains(char::is_whitespace) {
        bail!("the nightly sysroot path contains spaces: {lib_dir}");
    }
    let rustflags = format!(
        "-L {lib_dir} -l dylib={} -C link-arg=-Wl,-rpath,{lib_dir}",
        nightly.llvm_lib
    );
    run_cmd(
        Command::new("cargo")
            .env("RUSTFLAGS", rustflags)
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
            ])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{},no-llvm-linking", nightly.llvm_major)),
    )?;
    if !bpf_linker_matches(nightly.llvm_major) {
        bail!(
            "bpf-linker was installed but does not start or report LLVM {}",
            nightly.llvm_major
        );
    }
    Ok(())
}
