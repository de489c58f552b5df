//! Bounded, verifier-safe parsing of Ethernet / VLAN / IPv4 / IPv6 / TCP / UDP / ICMP headers.
//!
//! Every read goes through [`load`], the one bounds check. Parsing yields a [`Parsed`] outcome:
//! the caller counts exactly one outcome per packet.

use aya_ebpf::programs::XdpContext;
use sensor_common::{MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS};

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
/// UDP header, and the ICMP header through identifier and sequence.
const UDP_HLEN: usize = 8;
const IPV6_HLEN: usize = 40;
const TCP_HLEN: usize = 20;
/// Headers further than this into the frame are not followed (a sane chain is far shorter).
const MAX_L4_OFFSET: usize = 1024;

/// Why a packet could not be parsed.
pub struct Malformed;

/// What the parser found.
pub enum Parsed {
    /// Well-formed, but not TCP, UDP or ICMP over IP.
    NonTcp,
    /// A fragment whose transport header is not (entirely) present.
    Fragment,
    /// A TCP segment, UDP datagram or ICMP message.
    L4(Segment),
}

/// Where a segment's headers are, and the few fields every packet needs. Addresses, ports and
/// the TCP window are read only for possible probes ([`addresses`], [`ports`],
/// [`tcp_window_urg`]), and the rest of the fingerprint ([`tcp_seq_ack`], [`icmp_ident`],
/// [`tcp_options`]) only for a probe that is written as a record, so ordinary traffic and
/// repeated probes cost as little as possible.
pub struct Segment {
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the transport header.
    pub l4: usize,
    /// `sensor_common::protocol` value (ICMPv6 as `ICMP`).
    pub proto: u8,
    /// TCP flags byte (TCP), ICMP type (ICMP), 0 (UDP).
    pub flags: u8,
    /// `sensor_common::family` value.
    pub family: u8,
    /// Outer VLAN id, 0 if untagged.
    pub vlan_id: u16,
    /// Bytes from the transport header to the end of the IP payload.
    pub segment_len: usize,
    /// Transport header length (TCP data offset; 8 for UDP and ICMP).
    pub header_len: usize,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification (0 for IPv6).
    pub ip_id: u16,
    /// IPv4 "don't fragment".
    pub df: bool,
}

/// The one bounds check: a pointer to a `T` at `offset`, if it lies entirely inside the frame.
#[inline(always)]
fn load<T: Copy>(ctx: &XdpContext, offset: usize) -> Result<T, Malformed> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return Err(Malformed);
    }
    // SAFETY: the range [start + offset, start + offset + size_of::<T>()) was checked to lie
    // inside the packet; `read_unaligned` makes no alignment assumption.
    Ok(unsafe { ((start + offset) as *const T).read_unaligned() })
}

/// The bounds check alone: a pointer to `N` bytes at `offset`, read field by field afterwards.
#[inline(always)]
fn at<const N: usize>(ctx: &XdpContext, offset: usize) -> Result<*const [u8; N], Malformed> {
    let start = ctx.data();
    if start + offset + N > ctx.data_end() {
        return Err(Malformed);
    }
    Ok((start + offset) as *const [u8; N])
}

#[inline(always)]
fn be16(ctx: &XdpContext, offset: usize) -> Result<u16, Malformed> {
    load::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

#[inline(always)]
fn byte(ctx: &XdpContext, offset: usize) -> Result<u8, Malformed> {
    load::<u8>(ctx, offset)
}

/// Length of the frame in bytes, for length-field sanity checks.
///
/// Read with volatile loads on purpose: if the compiler could relate this value to the pointer
/// checks in [`load`], it would prove some of those checks redundant and drop them, and the
/// verifier (which cannot follow that arithmetic) would reject the program.
#[inline(always)]
fn frame_len(ctx: &XdpContext) -> usize {
    // SAFETY: `ctx.ctx` is the context pointer the kernel passed to the program.
    let (data, end) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*ctx.ctx).data),
            core::ptr::read_volatile(&raw const (*ctx.ctx).data_end),
        )
    };
    end.wrapping_sub(data) as usize
}

/// Parses the frame in `ctx`.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, Malformed> {
    let mut ethertype = be16(ctx, 12)?;
    let mut off = ETH_HLEN;
    let mut vlan_id = 0u16;
    for i in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let tci = be16(ctx, off)?;
        if i == 0 {
            vlan_id = tci & 0x0fff;
        }
        ethertype = be16(ctx, off + 2)?;
        off += 4;
    }
    match ethertype {
        ETH_P_IPV4 => ipv4(ctx, off, vlan_id),
        ETH_P_IPV6 => ipv6(ctx, off, vlan_id),
        ETH_P_8021Q | ETH_P_8021AD => Err(Malformed),
        _ => Ok(Parsed::NonTcp),
    }
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, off: usize, vlan_id: u16) -> Result<Parsed, Malformed> {
    let hdr = at::<20>(ctx, off)?;
    // SAFETY: `at` checked that the 20 bytes lie inside the packet.
    let (vhl, total, ip_id, frag, ttl, proto) = unsafe {
        let h = &*hdr;
        (
            h[0],
            u16::from_be_bytes([h[2], h[3]]),
            u16::from_be_bytes([h[4], h[5]]),
            u16::from_be_bytes([h[6], h[7]]),
            h[8],
            h[9],
        )
    };
    if vhl >> 4 != 4 {
        return Err(Malformed);
    }
    let ihl = usize::from(vhl & 0x0f) * 4;
    let total = usize::from(total);
    if ihl < 20 || total < ihl || off + total > frame_len(ctx) {
        return Err(Malformed);
    }
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP {
        return Ok(Parsed::NonTcp);
    }
    if frag & 0x1fff != 0 {
        return Ok(Parsed::Fragment);
    }
    let segment_len = total - ihl;
    let need = if proto == IPPROTO_TCP {
        TCP_HLEN
    } else {
        UDP_HLEN
    };
    if segment_len < need {
        return if frag & 0x2000 != 0 {
            Ok(Parsed::Fragment)
        } else {
            Err(Malformed)
        };
    }
    let ip = Ip {
        l3: off,
        family: sensor_common::family::IPV4,
        vlan_id,
        ttl,
        ip_id,
        df: frag & 0x4000 != 0,
    };
    transport(ctx, &ip, proto, off + ihl, segment_len)
}

/// What the IP layer contributes to a [`Segment`].
struct Ip {
    l3: usize,
    family: u8,
    vlan_id: u16,
    ttl: u8,
    ip_id: u16,
    df: bool,
}

#[inline(always)]
fn transport(
    ctx: &XdpContext,
    ip: &Ip,
    proto: u8,
    l4: usize,
    segment_len: usize,
) -> Result<Parsed, Malformed> {
    if proto == IPPROTO_TCP {
        return tcp(ctx, ip, l4, segment_len);
    }
    if l4 > MAX_L4_OFFSET {
        return Err(Malformed);
    }
    let hdr = at::<8>(ctx, l4)?;
    // SAFETY: `at` checked that the 8 bytes lie inside the packet.
    let (first, udp_len) = unsafe { ((*hdr)[0], u16::from_be_bytes([(*hdr)[4], (*hdr)[5]])) };
    let mut segment_len = segment_len;
    let (proto, flags) = if proto == IPPROTO_UDP {
        // The UDP length must cover its header and stay inside the IP payload.
        let udp_len = usize::from(udp_len);
        if udp_len < UDP_HLEN || udp_len > segment_len {
            return Err(Malformed);
        }
        segment_len = udp_len;
        (sensor_common::protocol::UDP, 0)
    } else {
        (sensor_common::protocol::ICMP, first)
    };
    Ok(Parsed::L4(Segment {
        l3: ip.l3,
        l4,
        proto,
        flags,
        family: ip.family,
        vlan_id: ip.vlan_id,
        segment_len,
        header_len: UDP_HLEN,
        ttl: ip.ttl,
        ip_id: ip.ip_id,
        df: ip.df,
    }))
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, off: usize, vlan_id: u16) -> Result<Parsed, Malformed> {
    let first = byte(ctx, off)?;
    if first >> 4 != 6 {
        return Err(Malformed);
    }
    let payload = usize::from(be16(ctx, off + 4)?);
    let end = off + IPV6_HLEN + payload;
    if end > frame_len(ctx) {
        return Err(Malformed);
    }
    let mut next = byte(ctx, off + 6)?;
    let hop_limit = byte(ctx, off + 7)?;
    let mut l4 = off + IPV6_HLEN;
    let mut fragmented = false;
    let mut found = false;
    for _ in 0..MAX_IPV6_EXT_HEADERS + 1 {
        if l4 > MAX_L4_OFFSET {
            return Err(Malformed);
        }
        match next {
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMPV6 => {
                found = true;
                break;
            }
            // Hop-by-hop, routing, destination options: length in 8-octet units, minus one.
            0 | 43 | 60 => {
                let h = load::<[u8; 2]>(ctx, l4)?;
                next = h[0];
                l4 += (usize::from(h[1]) + 1) * 8;
            }
            // Authentication header: length in 4-octet units, minus two.
            51 => {
                let h = load::<[u8; 2]>(ctx, l4)?;
                next = h[0];
                l4 += (usize::from(h[1]) + 2) * 4;
            }
            // Fragment header: fixed 8 octets.
            44 => {
                let h = load::<[u8; 4]>(ctx, l4)?;
                if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                    return Ok(Parsed::Fragment);
                }
                next = h[0];
                fragmented = true;
                l4 += 8;
            }
            _ => return Ok(Parsed::NonTcp),
        }
    }
    if !found {
        return Err(Malformed);
    }
    let need = if next == IPPROTO_TCP {
        TCP_HLEN
    } else {
        UDP_HLEN
    };
    if l4 + need > end {
        return if fragmented {
            Ok(Parsed::Fragment)
        } else {
            Err(Malformed)
        };
    }
    let ip = Ip {
        l3: off,
        family: sensor_common::family::IPV6,
        vlan_id,
        ttl: hop_limit,
        ip_id: 0,
        df: false,
    };
    let proto = if next == IPPROTO_ICMPV6 {
        IPPROTO_ICMP
    } else {
        next
    };
    transport(ctx, &ip, proto, l4, end - l4)
}

#[inline(always)]
fn tcp(ctx: &XdpContext, ip: &Ip, l4: usize, segment_len: usize) -> Result<Parsed, Malformed> {
    if l4 > MAX_L4_OFFSET {
        return Err(Malformed);
    }
    let hdr = at::<20>(ctx, l4)?;
    // SAFETY: `at` checked that the 20 bytes lie inside the packet.
    let (doff, flags) = unsafe { ((*hdr)[12], (*hdr)[13]) };
    let data_offset = usize::from(doff >> 4) * 4;
    if data_offset < TCP_HLEN || data_offset > segment_len {
        return Err(Malformed);
    }
    Ok(Parsed::L4(Segment {
        l3: ip.l3,
        l4,
        proto: sensor_common::protocol::TCP,
        flags,
        family: ip.family,
        vlan_id: ip.vlan_id,
        segment_len,
        header_len: data_offset,
        ttl: ip.ttl,
        ip_id: ip.ip_id,
        df: ip.df,
    }))
}

/// Source and destination addresses of a parsed segment, IPv4 mapped into IPv6, as two
/// native-endian words each.
#[inline(always)]
pub fn addresses(ctx: &XdpContext, seg: &Segment) -> Result<([u64; 2], [u64; 2]), Malformed> {
    if seg.l3 > MAX_L4_OFFSET {
        return Err(Malformed);
    }
    if seg.family == sensor_common::family::IPV4 {
        let a = load::<[u8; 8]>(ctx, seg.l3 + 12)?;
        let mapped = |a: [u8; 4]| {
            [
                0u64,
                u64::from_ne_bytes([0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]]),
            ]
        };
        Ok((
            mapped([a[0], a[1], a[2], a[3]]),
            mapped([a[4], a[5], a[6], a[7]]),
        ))
    } else {
        Ok((
            load::<[u64; 2]>(ctx, seg.l3 + 8)?,
            load::<[u64; 2]>(ctx, seg.l3 + 24)?,
        ))
    }
}

/// Source and destination ports of a parsed segment (TCP and UDP; ICMP reads its first four
/// bytes here: type, code and checksum, which the caller ignores).
#[inline(always)]
pub fn ports(ctx: &XdpContext, seg: &Segment) -> Result<(u16, u16), Malformed> {
    if seg.l4 > MAX_L4_OFFSET {
        return Err(Malformed);
    }
    let p = load::<[u8; 4]>(ctx, seg.l4)?;
    Ok((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

/// Window and urgent pointer of a TCP header (the verifier's bounds were checked while
/// parsing; checked again).
#[inline(always)]
pub fn tcp_window_urg(ctx: &XdpContext, seg: &Segment) -> Result<(u16, u16), Malformed> {
    if seg.l4 > MAX_L4_OFFSET {
        return Err(Malformed);
    }
    let h = load::<[u8; 6]>(ctx, seg.l4 + 14)?;
    Ok((
        u16::from_be_bytes([h[0], h[1]]),
        u16::from_be_bytes([h[4], h[5]]),
    ))
}

/// Sequence and acknowledgment numbers of the TCP header at `l4`.
#[inline(always)]
pub fn tcp_seq_ack(ctx: &XdpContext, l4: usize) -> Result<(u32, u32), Malformed> {
    if l4 > MAX_L4_OFFSET {
        return Err(Malformed);
    }
    let h = load::<[u8; 8]>(ctx, l4 + 4)?;
    Ok((
        u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
        u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
    ))
}

/// Bytes 4..8 of the ICMP header at `l4` (identifier and sequence of echo, timestamp, mask
/// requests).
#[inline(always)]
pub fn icmp_ident(ctx: &XdpContext, l4: usize) -> Result<u32, Malformed> {
    if l4 > MAX_L4_OFFSET {
        return Err(Malformed);
    }
    load::<[u8; 4]>(ctx, l4 + 4).map(u32::from_be_bytes)
}

/// Copies the `len` bytes (at most 40) of the TCP options area of the header at `l4` into
/// `buf` (a stack buffer or a ring-buffer record); returns the bytes copied, 0 when the
/// helper refuses (it cannot, the header was bounds-checked while parsing).
///
/// # Safety
/// `buf` must point to [`sensor_common::classify::MAX_OPTIONS_BYTES`] writable bytes.
#[inline(always)]
pub unsafe fn tcp_options(
    ctx: &XdpContext,
    l4: usize,
    len: usize,
    buf: *mut [u8; sensor_common::classify::MAX_OPTIONS_BYTES],
) -> usize {
    // Opaque to the optimiser: callers bound `len` already, and LLVM would drop this check as
    // redundant in a form the verifier cannot follow (it must see the bound at the helper).
    let len = core::hint::black_box(len);
    if len == 0 || len > sensor_common::classify::MAX_OPTIONS_BYTES || l4 > MAX_L4_OFFSET {
        return 0;
    }
    let offset = (l4 + TCP_HLEN) as u32;
    // SAFETY: the caller vouches for `buf`, which holds at least `len` bytes (checked above);
    // the helper bounds-checks the packet range itself.
    let rc =
        unsafe { aya_ebpf::helpers::bpf_xdp_load_bytes(ctx.ctx, offset, buf.cast(), len as u32) };
    if rc == 0 { len } else { 0 }
}
