//! Outputs: transports that deliver encoded events. They never see an unencoded format choice.

pub mod terminal;
