//! Fixtures for the privileged integration tests.
//!
//! Every fixture is a `Drop` guard: network namespaces are deleted and child processes killed
//! and reaped even when a test panics. Namespace names are unique per process and counter, so
//! concurrent runs never collide. Traffic only flows between a test's own namespaces.

pub mod frames;
pub mod generator;
pub mod net;
pub mod sensor;
pub mod spoof;

/// Skips the calling test (returns early) with a reason when not running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (run through `cargo xtask integration-test`)");
            return;
        }
    };
}

/// Loads an embedded object and its XDP program `name` into the kernel; panics with the reason.
#[must_use]
pub fn load_xdp(object: &[u8], name: &str) -> aya::Ebpf {
    let mut ebpf = aya::EbpfLoader::new()
        .load(object)
        .unwrap_or_else(|e| panic!("loading the `{name}` object: {e}"));
    xdp(&mut ebpf, name)
        .load()
        .unwrap_or_else(|e| panic!("loading the `{name}` program: {e}"));
    ebpf
}

/// The XDP program `name` of a loaded object; panics if it is missing.
pub fn xdp<'a>(ebpf: &'a mut aya::Ebpf, name: &str) -> &'a mut aya::programs::Xdp {
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .unwrap_or_else(|| panic!("no XDP program `{name}` in the object"))
}
