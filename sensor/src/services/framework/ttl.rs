//! The initial IP TTL (IPv6 unicast hop limit) of a decoy's sockets: the persona's, so that the
//! replies, SYN-ACKs and accepted connections of a listener (which inherit it) look like the
//! machine the decoys present.

use std::net::IpAddr;

/// The kernel's default TTL for `ip`'s family (`net.ipv4.ip_default_ttl`,
/// `net.ipv6.conf.default.hop_limit`; 64 when unreadable).
fn kernel_default(ip: IpAddr) -> u32 {
    let path = if ip.is_ipv4() {
        "/proc/sys/net/ipv4/ip_default_ttl"
    } else {
        "/proc/sys/net/ipv6/conf/default/hop_limit"
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(64)
}

/// Sets the TTL of a socket bound on `ip` to `ttl`, or back to the kernel's default for `None`
/// (a reload that turned the persona off).
///
/// # Errors
/// The `setsockopt` error.
pub fn set(socket: &socket2::SockRef<'_>, ip: IpAddr, ttl: Option<u32>) -> std::io::Result<()> {
    let ttl = ttl.unwrap_or_else(|| kernel_default(ip));
    if ip.is_ipv4() {
        socket.set_ttl_v4(ttl)
    } else {
        socket.set_unicast_hops_v6(ttl)
    }
}
