//! A Trapster-compatible honeypot sensor with XDP scan detection.
//!
//! # Layout
//! - [`net`]: address-or-CIDR entries and the one notion of a source (IPv4 /32, IPv6 /64).
//! - [`config`]: the `trapster.conf` tree plus the sensor's own section; one validation step.
//! - [`capture`]: the XDP program (load, attach, maps), record decoding, kernel counters,
//!   `BPF_PROG_TEST_RUN`, and the libpcap fallback.
//! - [`scan`]: the port-scan merger (pure, time as input) and `portscan.query` events.
//! - [`services`]: the emulated services (FTP, Telnet, SSH, HTTP/HTTPS, MySQL, PostgreSQL).
//! - [`event`]: the one [`event::Event`] type.
//! - [`incident`]: events folded into incidents per source, with escalating severity.
//! - [`format`]: pure event-to-bytes encoders.
//! - [`output`]: transports for encoded events and the fan-out with a queue per output.
//! - [`agent`]: wires it all together until shutdown.
//! - [`replay`]: runs a capture file through the same pipeline.
//! - [`clock`], [`shutdown`]: time conversion and the shutdown signal.

pub mod agent;
pub mod capture;
pub mod clock;
pub mod config;
pub mod event;
pub mod format;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod incident;
pub mod net;
pub mod output;
pub mod poisoning;
pub mod replay;
pub mod scan;
pub mod services;
pub mod shutdown;

pub use agent::{CaptureMode, RunOptions, RunSummary, run};
