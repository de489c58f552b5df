//! Bounded, verifier-safe parsing of Ethernet / VLAN / IPv4 / IPv6 / TCP headers.
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
const IPV6_HLEN: usize = 40;
const TCP_HLEN: usize = 20;
/// Headers further than this into the frame are not followed (a sane chain is far shorter).
const MAX_L4_OFFSET: usize = 1024;

/// Why a packet could not be parsed.
pub struct Malformed;

/// What the parser found.
pub enum Parsed {
    /// Well-formed, but not TCP over IP.
    NonTcp,
    /// A fragment whose TCP header is not (entirely) present.
    Fragment,
    /// A TCP segment.
    Tcp(Segment),
}

/// The fields of a TCP segment the sensor needs.
pub struct Segment {
    /// Source address, IPv4 mapped, as two native-endian words.
    pub src: [u64; 2],
    /// Destination address, IPv4 mapped, as two native-endian words.
    pub dst: [u64; 2],
    /// TCP source port.
    pub src_port: u16,
    /// TCP destination port.
    pub dst_port: u16,
    /// TCP flags byte.
    pub flags: u8,
    /// `sensor_common::family` value.
    pub family: u8,
    /// Outer VLAN id, 0 if untagged.
    pub vlan_id: u16,
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
    let hdr = load::<[u8; 20]>(ctx, off)?;
    if hdr[0] >> 4 != 4 {
        return Err(Malformed);
    }
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if ihl < 20 || total < ihl || off + total > frame_len(ctx) {
        return Err(Malformed);
    }
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
    let more_fragments = frag & 0x2000 != 0;
    if hdr[9] != IPPROTO_TCP {
        return Ok(Parsed::NonTcp);
    }
    if frag & 0x1fff != 0 {
        return Ok(Parsed::Fragment);
    }
    let segment_len = total - ihl;
    if segment_len < TCP_HLEN {
        return if more_fragments {
            Ok(Parsed::Fragment)
        } else {
            Err(Malformed)
        };
    }
    let mapped = |a: [u8; 4]| {
        [
            0u64,
            u64::from_ne_bytes([0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]]),
        ]
    };
    let src = mapped([hdr[12], hdr[13], hdr[14], hdr[15]]);
    let dst = mapped([hdr[16], hdr[17], hdr[18], hdr[19]]);
    tcp(
        ctx,
        off + ihl,
        segment_len,
        src,
        dst,
        sensor_common::family::IPV4,
        vlan_id,
    )
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
    let src = load::<[u64; 2]>(ctx, off + 8)?;
    let dst = load::<[u64; 2]>(ctx, off + 24)?;
    let mut l4 = off + IPV6_HLEN;
    let mut fragmented = false;
    let mut found = false;
    for _ in 0..MAX_IPV6_EXT_HEADERS + 1 {
        if l4 > MAX_L4_OFFSET {
            return Err(Malformed);
        }
        match next {
            IPPROTO_TCP => {
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
    if l4 + TCP_HLEN > end {
        return if fragmented {
            Ok(Parsed::Fragment)
        } else {
            Err(Malformed)
        };
    }
    tcp(
        ctx,
        l4,
        end - l4,
        src,
        dst,
        sensor_common::family::IPV6,
        vlan_id,
    )
}

#[inline(always)]
fn tcp(
    ctx: &XdpContext,
    l4: usize,
    segment_len: usize,
    src: [u64; 2],
    dst: [u64; 2],
    family: u8,
    vlan_id: u16,
) -> Result<Parsed, Malformed> {
    if l4 > MAX_L4_OFFSET {
        return Err(Malformed);
    }
    let hdr = load::<[u8; 20]>(ctx, l4)?;
    let data_offset = usize::from(hdr[12] >> 4) * 4;
    if data_offset < TCP_HLEN || data_offset > segment_len {
        return Err(Malformed);
    }
    Ok(Parsed::Tcp(Segment {
        src,
        dst,
        src_port: u16::from_be_bytes([hdr[0], hdr[1]]),
        dst_port: u16::from_be_bytes([hdr[2], hdr[3]]),
        flags: hdr[13],
        family,
        vlan_id,
    }))
}
