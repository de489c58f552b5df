//! Code shared by the Windows decoys: TLS configurations and TDS framing.

pub mod certs;
pub mod tds;
