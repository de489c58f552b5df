//! Fixtures for the privileged integration tests.
//!
//! Every fixture is a `Drop` guard: network namespaces are deleted and child processes killed
//! and reaped even when a test panics. Namespace names are unique per process and counter, so
//! concurrent runs never collide. Traffic only flows between a test's own namespaces.

pub mod frames;
pub mod net;
pub mod sensor;

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
