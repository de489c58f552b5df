//! Formats: pure functions from an [`Event`](crate::event::Event) to bytes. No I/O here.

pub mod community;
