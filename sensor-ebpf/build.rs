//! Rebuilds the eBPF object when the `bpf-linker` binary changes.
//!
//! Building this crate has an undeclared dependency on `bpf-linker`; cargo cannot express it, so
//! the linker's path is used as a rerun trigger (as the aya template does).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
