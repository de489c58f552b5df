//! Host-side stub so `sensor` can name this crate as a build-dependency (for rebuilds); the XDP
//! program itself is the `sensor` binary target, built for `bpfel-unknown-none`.
#![no_std]
