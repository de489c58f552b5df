//! Hand-built frames for `BPF_PROG_TEST_RUN`: Ethernet, VLAN, IPv4 (with options), IPv6 (with
//! extension headers) and TCP. Checksums are left zero: the XDP program does not read them.

/// EtherType IPv4.
pub const ETH_IPV4: u16 = 0x0800;
/// EtherType IPv6.
pub const ETH_IPV6: u16 = 0x86dd;
/// EtherType ARP.
pub const ETH_ARP: u16 = 0x0806;
/// 802.1Q tag.
pub const ETH_8021Q: u16 = 0x8100;
/// 802.1ad (QinQ outer) tag.
pub const ETH_8021AD: u16 = 0x88a8;

/// An Ethernet header followed by `payload`.
#[must_use]
pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Ethernet with VLAN tags (`(tpid, vid)` outermost first) around `payload` of `ethertype`.
#[must_use]
pub fn eth_tagged(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A 20-byte TCP header (plus `options` bytes, data offset adjusted).
#[must_use]
pub fn tcp(src_port: u16, dst_port: u16, flags: u8, options: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(20 + options);
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    let doff = u8::try_from((20 + options) / 4).expect("options fit");
    h.push(doff << 4);
    h.push(flags);
    h.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    h.resize(20 + options, 1);
    h
}

/// An IPv4 packet with `options` bytes of options (multiple of 4) around `payload`.
#[must_use]
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, options: usize, payload: &[u8]) -> Vec<u8> {
    let ihl = 20 + options;
    let total = u16::try_from(ihl + payload.len()).expect("fits");
    let mut p = vec![0x40 | u8::try_from(ihl / 4).expect("ihl"), 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.resize(ihl, 1);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet whose first next-header is `next`, around `payload` (extension headers
/// included in `payload`).
#[must_use]
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&u16::try_from(payload.len()).expect("fits").to_be_bytes());
    p.push(next);
    p.push(64);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// A generic IPv6 extension header (hop-by-hop, routing, destination options) of
/// `8 * (units + 1)` bytes whose next header is `next`.
#[must_use]
pub fn ipv6_ext(next: u8, units: u8) -> Vec<u8> {
    let mut h = vec![next, units];
    h.resize(8 * (usize::from(units) + 1), 0);
    h
}

/// An IPv6 fragment header with the given offset (in 8-byte units) and more-fragments flag.
#[must_use]
pub fn ipv6_fragment(next: u8, offset_units: u16, more: bool) -> Vec<u8> {
    let field = (offset_units << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&field.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 7]);
    h
}

/// IPv4 address of the test scanner.
pub const SRC4: [u8; 4] = [198, 18, 200, 2];
/// IPv4 address of the test sensor.
pub const DST4: [u8; 4] = [198, 18, 200, 1];
/// IPv6 address of the test scanner.
pub const SRC6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0xc8, 0, 0, 0, 0, 0, 0, 0, 2];
/// IPv6 address of the test sensor.
pub const DST6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0xc8, 0, 0, 0, 0, 0, 0, 0, 1];

/// A well-formed IPv4 TCP frame.
#[must_use]
pub fn v4_tcp(dst_port: u16, flags: u8) -> Vec<u8> {
    eth(
        ETH_IPV4,
        &ipv4(SRC4, DST4, 6, 0, &tcp(40_000, dst_port, flags, 0)),
    )
}

/// A well-formed IPv6 TCP frame.
#[must_use]
pub fn v6_tcp(dst_port: u16, flags: u8) -> Vec<u8> {
    eth(
        ETH_IPV6,
        &ipv6(SRC6, DST6, 6, &tcp(40_000, dst_port, flags, 0)),
    )
}
