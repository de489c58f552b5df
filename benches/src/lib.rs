//! High-rate scan detection benchmarks (run by `cargo xtask bench`, as root).
//!
//! - [`kernel_cost`]: ns/packet of the XDP program under `BPF_PROG_TEST_RUN`, per packet mix,
//!   against the empty `XDP_PASS` program in the same run.
//! - `tests::generator`: the live-frames traffic generator (`BPF_F_TEST_XDP_LIVE_FRAMES`)
//!   written in this project, pacing scans from many spoofed sources into a veth (shared with
//!   the privileged flood test).
//! - [`e2e`]: the real `sensor` binary, XDP and libpcap capture, fed identical traffic at
//!   increasing rates; probes offered vs (source, port) pairs reported, losses, CPU, RSS,
//!   event latency.
//! - [`report`]: the printed table, the JSON file and the SVG plot.
//! - [`sessions`]: the client sessions of the service benchmarks (`servicebench`, and
//!   `trapsterbench`: Trapster from PyPI side by side with the sensor).
//! - [`soak`]: the soak test's phases (`soak`: output outage with a spool, idle connections and
//!   slowloris, memory under long load, SIGTERM / `kill -9` chaos).
//!
//! Figures are printed, never asserted: no benchmark fails on timing.

pub mod e2e;
pub mod kernel_cost;
pub mod report;
pub mod sessions;
pub mod soak;

/// Median of a non-empty sample (0 for an empty one).
#[must_use]
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub use tests::{load_xdp, xdp};
