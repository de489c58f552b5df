//! Network primitives shared by every component: address-or-CIDR entries and the one notion
//! of "source". A leaf: it imports nothing else of this crate.

pub mod cidr;
pub mod fds;
pub mod raw_udp;
pub mod source_key;

pub use cidr::{Cidr, CidrError};
pub use source_key::{SourceKey, SourcePrefix, SourcePrefixError};
