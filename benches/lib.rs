//! Benchmarks live in `benches/`; this library target only anchors the crate.
