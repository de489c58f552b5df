//! One notion of "source" for every component: the admission gate of the services, the
//! incident tracker, the scan merger's per-source limits and the kernel's record budget.
//!
//! An attacker who holds an IPv6 /64 (what one LAN segment or one customer usually gets) can
//! send from 2^64 addresses; counting each address as its own source would let one host defeat
//! every per-source cap. A source is therefore the address masked to a prefix: IPv4 /32 and
//! IPv6 /64 by default, both configurable (`sensor.source_prefix`). IPv4-mapped IPv6 addresses
//! (`::ffff:a.b.c.d`, what a dual-stack socket reports) are IPv4 sources.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

/// A source: an address with its host bits cleared to the configured prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    network: IpAddr,
    prefix: u8,
}

impl SourceKey {
    /// The network address of the source (host bits cleared).
    #[must_use]
    pub const fn network(self) -> IpAddr {
        self.network
    }

    /// The prefix length the source was masked to, in bits of its own family.
    #[must_use]
    pub const fn prefix(self) -> u8 {
        self.prefix
    }
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A prefix length that does not fit its family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourcePrefixError {
    /// IPv4 prefixes are 1 to 32 bits.
    #[error("`ipv4` is {0}: an IPv4 source prefix is 1 to 32 bits")]
    V4(u8),
    /// IPv6 prefixes are 1 to 128 bits.
    #[error("`ipv6` is {0}: an IPv6 source prefix is 1 to 128 bits")]
    V6(u8),
}

const fn default_v4() -> u8 {
    32
}

const fn default_v6() -> u8 {
    64
}

/// `sensor.source_prefix`: how many leading bits of an address name its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePrefix {
    /// IPv4 prefix length (default 32: every address is its own source).
    #[serde(default = "default_v4")]
    pub ipv4: u8,
    /// IPv6 prefix length (default 64: one subnet is one source).
    #[serde(default = "default_v6")]
    pub ipv6: u8,
}

impl Default for SourcePrefix {
    fn default() -> Self {
        Self {
            ipv4: default_v4(),
            ipv6: default_v6(),
        }
    }
}

impl SourcePrefix {
    /// Checks both lengths against their family.
    ///
    /// # Errors
    /// [`SourcePrefixError`] naming the field that is out of range.
    pub const fn validate(&self) -> Result<(), SourcePrefixError> {
        if self.ipv4 == 0 || self.ipv4 > 32 {
            return Err(SourcePrefixError::V4(self.ipv4));
        }
        if self.ipv6 == 0 || self.ipv6 > 128 {
            return Err(SourcePrefixError::V6(self.ipv6));
        }
        Ok(())
    }

    /// The source `ip` belongs to. Lengths out of range are clamped to the family's width.
    #[must_use]
    pub fn key(&self, ip: IpAddr) -> SourceKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let prefix = self.ipv4.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                SourceKey {
                    network: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask)),
                    prefix,
                }
            }
            IpAddr::V6(v6) => {
                let prefix = self.ipv6.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                SourceKey {
                    network: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                    prefix,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{SourcePrefix, SourcePrefixError};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_v6_slash_64_is_one_source_and_the_next_one_is_another() {
        let p = SourcePrefix::default();
        let a = p.key(ip("2001:db8:1:2:aaaa::1"));
        let b = p.key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        let c = p.key(ip("2001:db8:1:3::1"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn v4_addresses_are_their_own_sources_by_default_and_mapped_ones_are_v4() {
        let p = SourcePrefix::default();
        assert_ne!(p.key(ip("198.18.0.1")), p.key(ip("198.18.0.2")));
        assert_eq!(p.key(ip("::ffff:198.18.0.1")), p.key(ip("198.18.0.1")));
        assert_eq!(p.key(ip("198.18.0.1")).to_string(), "198.18.0.1/32");
    }

    #[test]
    fn prefixes_are_configurable_and_checked() {
        let p = SourcePrefix { ipv4: 24, ipv6: 48 };
        assert_eq!(p.key(ip("198.18.0.1")), p.key(ip("198.18.0.254")));
        assert_eq!(p.key(ip("2001:db8:1:ffff::1")), p.key(ip("2001:db8:1::")));
        assert_eq!(
            SourcePrefix { ipv4: 33, ipv6: 64 }.validate(),
            Err(SourcePrefixError::V4(33))
        );
        assert_eq!(
            SourcePrefix { ipv4: 32, ipv6: 0 }.validate(),
            Err(SourcePrefixError::V6(0))
        );
        assert!(
            SourcePrefix {
                ipv4: 32,
                ipv6: 128
            }
            .validate()
            .is_ok()
        );
    }
}
