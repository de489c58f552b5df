//! The addresses of an interface (`getifaddrs`): IPv4 with their netmasks and broadcast
//! addresses, IPv6, and the interface index multicast needs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One IPv4 address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4 {
    /// The address.
    pub addr: Ipv4Addr,
    /// Its netmask.
    pub mask: Ipv4Addr,
}

impl V4 {
    /// The subnet's broadcast address.
    #[must_use]
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !u32::from(self.mask))
    }

    /// Whether `ip` is on this address's subnet.
    #[must_use]
    pub fn same_subnet(self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.mask);
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }
}

/// Every address of one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// IPv4 addresses.
    pub v4: Vec<V4>,
    /// IPv6 addresses (link-local ones included).
    pub v6: Vec<Ipv6Addr>,
}

impl Addresses {
    /// Whether `ip` is one of them (an IPv4-mapped IPv6 address counts as IPv4).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.v4.iter().any(|a| a.addr == v4),
            IpAddr::V6(v6) => self.v6.contains(&v6),
        }
    }

    /// The IPv6 address to ask from: a global one when there is one (answers then come from
    /// the answerer's global address), else a link-local one.
    #[must_use]
    pub fn v6_source(&self) -> Option<Ipv6Addr> {
        self.v6
            .iter()
            .find(|a| !a.is_unicast_link_local() && !a.is_loopback())
            .or_else(|| self.v6.first())
            .copied()
    }
}

/// The addresses of interface `name` (empty lists when it has none or does not exist).
///
/// # Errors
/// The OS error of `getifaddrs`.
pub fn addresses(name: &str) -> std::io::Result<Addresses> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Addresses::default();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_name.is_null() || entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated C string owned by the list.
        let entry_name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
        if entry_name.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family tells its real type.
        let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
        if family == libc::AF_INET && !entry.ifa_netmask.is_null() {
            // SAFETY: the family is AF_INET, so address and netmask are sockaddr_in.
            let (addr, mask) = unsafe {
                (
                    (*entry.ifa_addr.cast::<libc::sockaddr_in>())
                        .sin_addr
                        .s_addr,
                    (*entry.ifa_netmask.cast::<libc::sockaddr_in>())
                        .sin_addr
                        .s_addr,
                )
            };
            out.v4.push(V4 {
                addr: Ipv4Addr::from(u32::from_be(addr)),
                mask: Ipv4Addr::from(u32::from_be(mask)),
            });
        } else if family == libc::AF_INET6 {
            // SAFETY: the family is AF_INET6, so the address is a sockaddr_in6.
            let addr = unsafe {
                (*entry.ifa_addr.cast::<libc::sockaddr_in6>())
                    .sin6_addr
                    .s6_addr
            };
            out.v6.push(Ipv6Addr::from(addr));
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The interface's index (IPv6 multicast and link-local scopes need it); `None` when there is
/// no such interface.
#[must_use]
pub fn index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::{Addresses, V4, addresses, index};

    #[test]
    fn loopback_has_its_address_and_a_missing_interface_none() {
        let lo = addresses("lo").unwrap();
        assert!(
            lo.v4.iter().any(|a| a.addr.octets() == [127, 0, 0, 1]
                && a.broadcast().octets() == [127, 255, 255, 255])
        );
        assert!(lo.contains(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(addresses("no-such-if0").unwrap(), Addresses::default());
        assert_eq!(index("lo"), Some(1));
        assert_eq!(index("no-such-if0"), None);
    }

    #[test]
    fn subnets_sources_and_membership() {
        let v4 = V4 {
            addr: Ipv4Addr::new(198, 18, 3, 1),
            mask: Ipv4Addr::new(255, 255, 255, 0),
        };
        assert_eq!(v4.broadcast(), Ipv4Addr::new(198, 18, 3, 255));
        assert!(v4.same_subnet(Ipv4Addr::new(198, 18, 3, 200)));
        assert!(!v4.same_subnet(Ipv4Addr::new(198, 18, 4, 1)));
        let link: Ipv6Addr = "fe80::1".parse().unwrap();
        let global: Ipv6Addr = "2001:2::1".parse().unwrap();
        let both = Addresses {
            v4: vec![v4],
            v6: vec![link, global],
        };
        assert_eq!(both.v6_source(), Some(global));
        let only_link = Addresses {
            v4: Vec::new(),
            v6: vec![link],
        };
        assert_eq!(only_link.v6_source(), Some(link));
        assert_eq!(Addresses::default().v6_source(), None);
        assert!(both.contains(IpAddr::V4(v4.addr)));
        assert!(both.contains("::ffff:198.18.3.1".parse().unwrap()));
        assert!(both.contains(IpAddr::V6(link)));
        assert!(!both.contains("198.18.3.2".parse().unwrap()));
    }
}
