//! The IPv4 addresses of an interface with their broadcast addresses (`getifaddrs`).

use std::net::Ipv4Addr;

/// `(address, broadcast)` for each IPv4 address of `name`.
///
/// # Errors
/// The OS error, or `NotFound` when the interface has no IPv4 address.
pub fn ipv4(name: &str) -> std::io::Result<Vec<(Ipv4Addr, Ipv4Addr)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_name.is_null() || entry.ifa_addr.is_null() || entry.ifa_netmask.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated C string owned by the list.
        let entry_name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
        // SAFETY: ifa_addr points to a sockaddr whose family tells its real type.
        let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
        if entry_name.to_bytes() != name.as_bytes() || family != libc::AF_INET {
            continue;
        }
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
        let addr = u32::from_be(addr);
        let mask = u32::from_be(mask);
        out.push((Ipv4Addr::from(addr), Ipv4Addr::from(addr | !mask)));
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    if out.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no IPv4 address on this interface",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::ipv4;

    #[test]
    fn loopback_has_its_address_and_a_missing_interface_none() {
        let lo = ipv4("lo").unwrap();
        assert!(
            lo.iter()
                .any(|(a, b)| a.octets() == [127, 0, 0, 1] && b.octets() == [127, 255, 255, 255])
        );
        assert!(ipv4("no-such-if0").is_err());
    }
}
