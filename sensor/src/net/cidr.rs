//! Address-or-CIDR entries of `whitelist_ips`, IPv4 and IPv6, parsed and normalised with
//! `ipnet`, and mapped to the 128-bit prefixes of the kernel's allow-list trie.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    str::FromStr,
};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// A network: an address and a prefix length. A bare address is a host (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address with host bits cleared.
    pub addr: IpAddr,
    /// Prefix length in bits of `addr`'s own family.
    pub prefix: u8,
}

/// An entry that is neither an address nor a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part does not parse.
    #[error("`{0}` is not an IPv4 or IPv6 address")]
    Address(String),
    /// The prefix length does not parse or is too long for the family.
    #[error("`{0}` has an invalid prefix length")]
    Prefix(String),
}

impl Cidr {
    /// The network as an IPv6 (or IPv4-mapped IPv6) address and a prefix over 128 bits, the key
    /// layout of the kernel's allow-list trie.
    #[must_use]
    pub fn to_mapped(self) -> (Ipv6Addr, u32) {
        match self.addr {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped(), 96 + u32::from(self.prefix)),
            IpAddr::V6(v6) => (v6, u32::from(self.prefix)),
        }
    }

    /// As an `ipnet` network.
    #[must_use]
    pub fn to_net(self) -> IpNet {
        // The prefix was checked against the family when the entry was parsed.
        IpNet::new(self.addr, self.prefix).unwrap_or_else(|_| IpNet::from(self.addr))
    }

    /// Whether `ip` lies inside the network (IPv4-mapped IPv6 addresses match IPv4 networks).
    #[must_use]
    pub fn contains(self, ip: IpAddr) -> bool {
        self.to_net().contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let net = match s.split_once('/') {
            None => IpNet::from(
                s.parse::<IpAddr>()
                    .map_err(|_| CidrError::Address(s.to_owned()))?,
            ),
            Some((addr, _)) => {
                addr.parse::<IpAddr>()
                    .map_err(|_| CidrError::Address(s.to_owned()))?;
                s.parse::<IpNet>()
                    .map_err(|_| CidrError::Prefix(s.to_owned()))?
            }
        };
        let net = net.trunc();
        Ok(Self {
            addr: net.network(),
            prefix: net.prefix_len(),
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{Cidr, CidrError};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_and_networks_parse_and_normalise() {
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.prefix, 32);
        let net: Cidr = "192.0.2.77/24".parse().unwrap();
        assert_eq!(net.to_string(), "192.0.2.0/24");
        let v6: Cidr = "2001:db8::1/32".parse().unwrap();
        assert_eq!(v6.to_string(), "2001:db8::/32");
        assert_eq!(net.to_mapped().1, 120);
    }

    #[test]
    fn membership_handles_both_families() {
        let net: Cidr = "198.18.0.0/15".parse().unwrap();
        assert!(net.contains(ip("198.19.255.1")));
        assert!(net.contains(ip("::ffff:198.18.0.1")));
        assert!(!net.contains(ip("198.20.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("2001:db8::1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
    }

    #[test]
    fn garbage_is_rejected_with_the_entry() {
        assert_eq!(
            "10.0.0.1/33".parse::<Cidr>(),
            Err(CidrError::Prefix("10.0.0.1/33".into()))
        );
        assert_eq!(
            "host".parse::<Cidr>(),
            Err(CidrError::Address("host".into()))
        );
        assert!("::1/129".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
    }
}
