//! The classification rules, shared by the XDP program and the userspace (libpcap) classifier.
//!
//! Both sides read the same header fields and call the same functions here, so they cannot
//! disagree on what a probe is. Everything is `const`-free plain code with bounded loops and
//! checked indexing, which the BPF verifier accepts.
//!
//! Some TCP kinds (ACK, MAIMON) and UDP depend on whether a local socket expects the packet:
//! the classifiers return [`Verdict::IfNoConnection`] and the caller asks its socket table (the
//! kernel with `bpf_skc_lookup_tcp` / `bpf_sk_lookup_udp`; the pcap path has none and treats
//! every such packet as a probe, which is what it sees on a sensor that makes no connections).

use crate::{ProbeKind, tcp_flags as f};

/// Number of TCP option kinds kept in a record (a SYN has at most 40 bytes of options; real
/// stacks use 5 to 9).
pub const MAX_OPTIONS: usize = 16;
/// Longest TCP options area (data offset 15 → 60 bytes of header).
pub const MAX_OPTIONS_BYTES: usize = 40;
/// `ScanRecord::wscale` when the window scale option is absent.
pub const NO_WSCALE: u8 = 0xff;

/// `ScanRecord::quirks` bit: IPv4 "don't fragment".
pub const QUIRK_DF: u8 = 1;
/// `ScanRecord::quirks` bit: the options area did not parse to its end.
pub const QUIRK_BAD_OPTIONS: u8 = 2;
/// `ScanRecord::quirks` bit: a timestamp option is present.
pub const QUIRK_TS: u8 = 4;

/// TCP option kinds.
pub mod opt {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No operation (padding).
    pub const NOP: u8 = 1;
    /// Maximum segment size.
    pub const MSS: u8 = 2;
    /// Window scale.
    pub const WS: u8 = 3;
    /// SACK permitted.
    pub const SOK: u8 = 4;
    /// SACK blocks.
    pub const SACK: u8 = 5;
    /// Timestamps.
    pub const TS: u8 = 8;
}

/// What the options area of a TCP header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// MSS; 0 when absent.
    pub mss: u16,
    /// Window scale; [`NO_WSCALE`] when absent.
    pub wscale: u8,
    /// TSval; 0 when absent.
    pub ts_val: u32,
    /// TSecr; 0 when absent.
    pub ts_ecr: u32,
    /// Option kinds in order (the first [`MAX_OPTIONS`]).
    pub kinds: [u8; MAX_OPTIONS],
    /// Valid entries of `kinds`.
    pub count: u8,
    /// [`QUIRK_BAD_OPTIONS`] and [`QUIRK_TS`] bits.
    pub quirks: u8,
}

impl TcpOptions {
    /// No options.
    pub const NONE: Self = Self {
        mss: 0,
        wscale: NO_WSCALE,
        ts_val: 0,
        ts_ecr: 0,
        kinds: [0; MAX_OPTIONS],
        count: 0,
        quirks: 0,
    };
}

#[inline(always)]
fn be16(b: &[u8; MAX_OPTIONS_BYTES], i: usize) -> u16 {
    let hi = b.get(i).copied().unwrap_or(0);
    let lo = b.get(i + 1).copied().unwrap_or(0);
    u16::from_be_bytes([hi, lo])
}

#[inline(always)]
fn be32(b: &[u8; MAX_OPTIONS_BYTES], i: usize) -> u32 {
    (u32::from(be16(b, i)) << 16) | u32::from(be16(b, i + 2))
}

/// Walks the first `len` bytes (at most [`MAX_OPTIONS_BYTES`]) of a TCP options area.
///
/// Stops at EOL (recorded), at the end, or at an option whose length is below 2 or runs past
/// the end (then [`QUIRK_BAD_OPTIONS`] is set). At most [`MAX_OPTIONS_BYTES`] steps.
#[inline(always)]
#[must_use]
pub fn tcp_options(bytes: &[u8; MAX_OPTIONS_BYTES], len: usize) -> TcpOptions {
    let len = if len > MAX_OPTIONS_BYTES {
        MAX_OPTIONS_BYTES
    } else {
        len
    };
    let mut out = TcpOptions::NONE;
    let mut i = 0usize;
    for _ in 0..MAX_OPTIONS_BYTES {
        if i >= len {
            break;
        }
        let Some(&kind) = bytes.get(i) else { break };
        if let Some(slot) = out.kinds.get_mut(usize::from(out.count)) {
            *slot = kind;
            out.count += 1;
        } else {
            out.quirks |= QUIRK_BAD_OPTIONS;
            break;
        }
        if kind == opt::EOL {
            break;
        }
        if kind == opt::NOP {
            i += 1;
            continue;
        }
        let olen = usize::from(bytes.get(i + 1).copied().unwrap_or(0));
        if olen < 2 || i + olen > len {
            out.quirks |= QUIRK_BAD_OPTIONS;
            break;
        }
        match (kind, olen) {
            (opt::MSS, 4) => out.mss = be16(bytes, i + 2),
            (opt::WS, 3) => out.wscale = bytes.get(i + 2).copied().unwrap_or(0),
            (opt::TS, 10) => {
                out.ts_val = be32(bytes, i + 2);
                out.ts_ecr = be32(bytes, i + 6);
                out.quirks |= QUIRK_TS;
            }
            _ => {}
        }
        i += olen;
    }
    out
}

/// The fields of a TCP segment the rules look at.
///
/// The rules read the raw options area (the kernel does not walk options: a variable walk
/// costs the verifier too much; userspace parses the same bytes with [`tcp_options`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpView {
    /// Flags byte (ECE and CWR included).
    pub flags: u8,
    /// Window.
    pub window: u16,
    /// Urgent pointer.
    pub urg_ptr: u16,
    /// Bytes after the TCP header.
    pub payload_len: u16,
    /// Raw options area, zero-padded.
    pub options: [u8; MAX_OPTIONS_BYTES],
    /// Valid bytes of `options`.
    pub options_len: u8,
}

/// nmap's timestamp option in every OS-detection probe but ECN: kind 8, length 10,
/// TSval 0xFFFFFFFF, TSecr 0.
const NMAP_TS: [u8; 10] = [8, 10, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// Whether nmap's timestamp option appears at some offset of the options area. A plain scan
/// over fixed offsets (cheap for the verifier); an option boundary is not checked, which can
/// only matter for options that embed these exact ten bytes. The scan stops at the end of
/// the valid bytes and each offset at its first differing byte.
#[inline(always)]
#[must_use]
pub fn has_nmap_timestamp(options: &[u8; MAX_OPTIONS_BYTES], len: u8) -> bool {
    let len = usize::from(len);
    let mut off = 0;
    while off + NMAP_TS.len() <= MAX_OPTIONS_BYTES && off + NMAP_TS.len() <= len {
        let mut j = 0;
        while j < NMAP_TS.len() && options[off + j] == NMAP_TS[j] {
            j += 1;
        }
        if j == NMAP_TS.len() {
            return true;
        }
        off += 1;
    }
    false
}

/// A classifier's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A probe of this kind.
    Probe(ProbeKind),
    /// A probe of this kind unless a local socket expects the packet (an established TCP
    /// connection, a connected UDP socket).
    IfNoConnection(ProbeKind),
    /// Not a probe.
    NotProbe,
}

/// Windows of nmap's OS-detection probes that carry its timestamp marker: the SEQ set (1, 63,
/// 4, 4, 16, 512) and T2–T7 (128, 256, 1024, 31337, 32768, 65535).
const NMAP_OS_WINDOWS: [u16; 11] = [1, 63, 4, 16, 512, 128, 256, 1024, 31337, 32768, 65535];
/// Urgent pointer of nmap's ECN probe (set without the URG flag).
const NMAP_ECN_URG: u16 = 0xf7f5;

/// The fixed-offset fields of a TCP segment: everything the rules look at but the bytes of the
/// options area. Enough to decide every segment for which [`may_carry_os_marker`] is false,
/// so the kernel reads the options area only when it must (or when it writes a record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHead {
    /// Flags byte (ECE and CWR included).
    pub flags: u8,
    /// Window.
    pub window: u16,
    /// Urgent pointer.
    pub urg_ptr: u16,
    /// Bytes after the TCP header.
    pub payload_len: u16,
    /// Length of the options area (data offset × 4 − 20).
    pub options_len: u8,
}

impl TcpView {
    /// The fixed-offset fields of this segment.
    #[inline(always)]
    #[must_use]
    pub const fn head(&self) -> TcpHead {
        TcpHead {
            flags: self.flags,
            window: self.window,
            urg_ptr: self.urg_ptr,
            payload_len: self.payload_len,
            options_len: self.options_len,
        }
    }
}

/// Whether nmap's timestamp marker would make this segment an OS-detection probe: one of the
/// flag sets of SEQ/T5 (SYN), T2 (none), T3 (SYN FIN PSH URG), T4/T6 (ACK), T7 (XMAS), one of
/// nmap's probe windows, and an options area long enough to hold the ten marker bytes. When
/// false, [`tcp_head`] alone is the verdict of [`tcp`].
#[inline(always)]
#[must_use]
pub fn may_carry_os_marker(h: &TcpHead) -> bool {
    let m = h.flags & f::MASK;
    let nmap_flags = m == f::SYN
        || m == 0
        || m == f::SYN | f::FIN | f::PSH | f::URG
        || m == f::ACK
        || m == f::XMAS;
    if !nmap_flags || usize::from(h.options_len) < NMAP_TS.len() {
        return false;
    }
    let mut i = 0;
    while i < NMAP_OS_WINDOWS.len() {
        if NMAP_OS_WINDOWS[i] == h.window {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether a segment is one of nmap's OS-detection probes: its timestamp option says
/// TSval 0xFFFFFFFF, TSecr 0 (no stack sends that) with one of nmap's probe windows, or it is
/// the ECN probe (SYN with ECE and CWR, window 3, urgent pointer 0xF7F5 without URG).
#[inline(always)]
#[must_use]
pub fn is_nmap_os_probe(v: &TcpView) -> bool {
    let h = v.head();
    (may_carry_os_marker(&h) && has_nmap_timestamp(&v.options, v.options_len)) || is_nmap_ecn(&h)
}

/// nmap's ECN probe: SYN with ECE and CWR, window 3, urgent pointer 0xF7F5 without URG.
#[inline(always)]
fn is_nmap_ecn(h: &TcpHead) -> bool {
    h.flags & f::MASK == f::SYN
        && h.flags & 0xc0 == 0xc0
        && h.window == 3
        && h.urg_ptr == NMAP_ECN_URG
}

/// The TCP rule.
///
/// In order: nmap OS probes → OS; SYN, FIN, NULL, XMAS as before; ACK alone or FIN+ACK
/// without payload → ACK / MAIMON unless a connection expects them; SYN+FIN, SYN+RST, FIN+RST
/// (with or without ACK) and any combination without ACK and without RST other than the four
/// classic ones → ODD. Everything else (SYN+ACK, RST, RST+ACK, data) is not a probe.
#[inline(always)]
#[must_use]
pub fn tcp(v: &TcpView) -> Verdict {
    let h = v.head();
    if may_carry_os_marker(&h) && has_nmap_timestamp(&v.options, v.options_len) {
        return Verdict::Probe(ProbeKind::Os);
    }
    tcp_head(&h)
}

/// [`tcp`] without the timestamp marker: the verdict from the fixed-offset fields alone, which
/// is [`tcp`]'s whenever [`may_carry_os_marker`] is false, and otherwise its verdict for an
/// options area without nmap's marker.
#[inline(always)]
#[must_use]
pub fn tcp_head(h: &TcpHead) -> Verdict {
    if is_nmap_ecn(h) {
        return Verdict::Probe(ProbeKind::Os);
    }
    if let Some(kind) = ProbeKind::classify(h.flags) {
        return Verdict::Probe(kind);
    }
    let m = h.flags & f::MASK;
    if m == f::ACK || m == f::FIN | f::ACK {
        if h.payload_len != 0 {
            return Verdict::NotProbe;
        }
        let kind = if m == f::ACK {
            ProbeKind::Ack
        } else {
            ProbeKind::Maimon
        };
        return Verdict::IfNoConnection(kind);
    }
    let both = |a: u8, b: u8| m & a != 0 && m & b != 0;
    if both(f::SYN, f::FIN) || both(f::SYN, f::RST) || both(f::FIN, f::RST) {
        return Verdict::Probe(ProbeKind::Odd);
    }
    if m & (f::ACK | f::RST) == 0 {
        return Verdict::Probe(ProbeKind::Odd);
    }
    Verdict::NotProbe
}

/// Whether [`tcp`] could call a segment with these flags a probe for some window, options and
/// payload: the no-options, no-payload case is the most permissive one (options only add OS
/// probes, whose flag sets are all probes already; a payload only removes ACK and MAIMON).
/// Lets the kernel skip reading anything more of ordinary traffic.
#[inline(always)]
#[must_use]
pub fn tcp_flags_may_probe(flags: u8) -> bool {
    !matches!(
        tcp_head(&TcpHead {
            flags,
            window: 0,
            urg_ptr: 0,
            payload_len: 0,
            options_len: 0,
        }),
        Verdict::NotProbe
    )
}

/// The UDP rule: every datagram to a unicast destination is a probe unless it answers a local
/// connected socket (a DNS reply to the sensor's own resolver, ...). Multicast and broadcast
/// (mDNS, SSDP, DHCP) are not probes.
#[inline(always)]
#[must_use]
pub fn udp(dst_unicast: bool) -> Verdict {
    if dst_unicast {
        Verdict::IfNoConnection(ProbeKind::Udp)
    } else {
        Verdict::NotProbe
    }
}

/// ICMP types that are host-discovery requests: echo (8), timestamp (13), address mask (17).
pub mod icmp {
    /// Echo request.
    pub const ECHO: u8 = 8;
    /// Timestamp request.
    pub const TIMESTAMP: u8 = 13;
    /// Address mask request.
    pub const ADDRESS_MASK: u8 = 17;
    /// ICMPv6 echo request.
    pub const V6_ECHO: u8 = 128;
}

/// The ICMP rule (`v6`: ICMPv6; `len`: bytes of the ICMP message): requests that discover
/// hosts are probes, everything else (replies, errors, neighbour discovery) is not. A
/// timestamp request of another length than its 20 bytes is malformed, not a probe.
#[inline(always)]
#[must_use]
pub fn icmp(v6: bool, icmp_type: u8, len: usize) -> Verdict {
    let request = if v6 {
        icmp_type == icmp::V6_ECHO
    } else {
        icmp_type == icmp::ECHO
            || (icmp_type == icmp::TIMESTAMP && len == 20)
            || icmp_type == icmp::ADDRESS_MASK
    };
    if request {
        Verdict::Probe(ProbeKind::Ping)
    } else {
        Verdict::NotProbe
    }
}

/// Whether an IPv4 destination (network byte order octets) is unicast: not multicast
/// (224/4), not the limited broadcast, not 0.0.0.0.
#[inline(always)]
#[must_use]
pub fn ipv4_unicast(dst: [u8; 4]) -> bool {
    dst[0] < 224 && dst != [0, 0, 0, 0]
}

/// Whether an IPv6 destination is unicast (not ff00::/8).
#[inline(always)]
#[must_use]
pub const fn ipv6_unicast(first_byte: u8) -> bool {
    first_byte != 0xff
}

#[cfg(test)]
mod tests {
    use super::{
        MAX_OPTIONS_BYTES, NMAP_TS, NO_WSCALE, QUIRK_BAD_OPTIONS, QUIRK_TS, TcpOptions, TcpView,
        Verdict, has_nmap_timestamp, icmp, ipv4_unicast, opt, tcp, tcp_options, udp,
    };
    use crate::{ProbeKind, tcp_flags as f};

    #[test]
    fn nmap_timestamp_found_at_every_offset_within_the_valid_bytes_only() {
        for off in 0..=MAX_OPTIONS_BYTES - NMAP_TS.len() {
            let mut b = [1u8; MAX_OPTIONS_BYTES];
            b[off..off + NMAP_TS.len()].copy_from_slice(&NMAP_TS);
            let end = (off + NMAP_TS.len()) as u8;
            assert!(has_nmap_timestamp(&b, end), "offset {off}");
            assert!(
                has_nmap_timestamp(&b, MAX_OPTIONS_BYTES as u8),
                "offset {off}"
            );
            assert!(!has_nmap_timestamp(&b, end - 1), "cut at offset {off}");
            // One byte off anywhere in the ten: not nmap's.
            for j in 0..NMAP_TS.len() {
                let mut c = b;
                c[off + j] ^= 0x01;
                assert!(
                    !has_nmap_timestamp(&c, MAX_OPTIONS_BYTES as u8),
                    "{off}/{j}"
                );
            }
        }
        assert!(!has_nmap_timestamp(
            &[0; MAX_OPTIONS_BYTES],
            MAX_OPTIONS_BYTES as u8
        ));
    }

    fn opts(bytes: &[u8]) -> TcpOptions {
        let mut b = [0u8; MAX_OPTIONS_BYTES];
        b[..bytes.len()].copy_from_slice(bytes);
        tcp_options(&b, bytes.len())
    }

    fn view(flags: u8, window: u16, options: &[u8]) -> TcpView {
        let mut b = [0u8; MAX_OPTIONS_BYTES];
        b[..options.len()].copy_from_slice(options);
        TcpView {
            flags,
            window,
            urg_ptr: 0,
            payload_len: 0,
            options: b,
            options_len: u8::try_from(options.len()).unwrap(),
        }
    }

    /// Linux 6.x SYN: mss 1460, sackOK, TS, nop, wscale 7.
    const LINUX_SYN: [u8; 20] = [
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 1, 2, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    /// nmap's T2–T6 options: WS 10, NOP, MSS 265, TS 0xFFFFFFFF/0, SACK permitted.
    const NMAP_T: [u8; 20] = [
        3, 3, 10, 1, 2, 4, 1, 9, 8, 10, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 4, 2,
    ];

    #[test]
    fn options_are_walked_in_order() {
        let o = opts(&LINUX_SYN);
        assert_eq!(o.mss, 1460);
        assert_eq!(o.wscale, 7);
        assert_eq!((o.ts_val, o.ts_ecr), (0x102, 0));
        assert_eq!(
            &o.kinds[..usize::from(o.count)],
            &[opt::MSS, opt::SOK, opt::TS, opt::NOP, opt::WS]
        );
        assert_eq!(o.quirks, QUIRK_TS);
        assert_eq!(opts(&[]), TcpOptions::NONE);
        let eol = opts(&[2, 4, 5, 0xb4, 0, 0, 0, 0]);
        assert_eq!(&eol.kinds[..usize::from(eol.count)], &[opt::MSS, opt::EOL]);
    }

    #[test]
    fn broken_options_are_flagged_not_trusted() {
        let cut = opts(&[2, 4, 5]);
        assert_eq!(cut.mss, 0);
        assert_eq!(cut.quirks, QUIRK_BAD_OPTIONS);
        let zero_len = opts(&[8, 0, 1, 1]);
        assert_eq!(zero_len.quirks, QUIRK_BAD_OPTIONS);
        assert_eq!(zero_len.ts_val, 0);
        // Wrong length for the kind: skipped, not read.
        let odd = opts(&[3, 4, 9, 9]);
        assert_eq!((odd.wscale, odd.quirks), (NO_WSCALE, 0));
        // 40 NOPs: only 16 kept, flagged.
        let nops = opts(&[1; 40]);
        assert_eq!(nops.count, 16);
        assert_eq!(nops.quirks, QUIRK_BAD_OPTIONS);
        // A length beyond the buffer is clamped.
        let mut b = [1u8; MAX_OPTIONS_BYTES];
        b[0] = 2;
        b[1] = 4;
        assert_eq!(tcp_options(&b, 500).mss, 0x0101);
    }

    #[test]
    fn tcp_kinds() {
        let none: &[u8] = &[];
        let p = |k| Verdict::Probe(k);
        assert_eq!(
            tcp(&view(f::SYN, 1024, &[2, 4, 5, 0xb4])),
            p(ProbeKind::Syn)
        );
        assert_eq!(tcp(&view(f::SYN, 64240, &LINUX_SYN)), p(ProbeKind::Syn));
        assert_eq!(tcp(&view(f::FIN, 1024, none)), p(ProbeKind::Fin));
        assert_eq!(tcp(&view(0, 1024, none)), p(ProbeKind::Null));
        assert_eq!(tcp(&view(f::XMAS, 1024, none)), p(ProbeKind::Xmas));
        assert_eq!(
            tcp(&view(f::ACK, 1024, none)),
            Verdict::IfNoConnection(ProbeKind::Ack)
        );
        assert_eq!(
            tcp(&view(f::FIN | f::ACK, 1024, none)),
            Verdict::IfNoConnection(ProbeKind::Maimon)
        );
        let data = TcpView {
            payload_len: 1,
            ..view(f::ACK, 1024, none)
        };
        assert_eq!(tcp(&data), Verdict::NotProbe);
        for odd in [
            f::SYN | f::FIN,
            f::SYN | f::RST,
            f::FIN | f::RST,
            f::SYN | f::FIN | f::ACK,
            f::SYN | f::RST | f::ACK,
            f::PSH,
            f::URG,
            f::FIN | f::PSH,
            f::SYN | f::PSH | f::URG,
        ] {
            assert_eq!(tcp(&view(odd, 1024, none)), p(ProbeKind::Odd), "{odd:#x}");
        }
        for ordinary in [
            f::SYN | f::ACK,
            f::RST,
            f::RST | f::ACK,
            f::PSH | f::ACK,
            f::RST | f::PSH,
            f::URG | f::ACK,
        ] {
            assert_eq!(
                tcp(&view(ordinary, 1024, none)),
                Verdict::NotProbe,
                "{ordinary:#x}"
            );
        }
    }

    #[test]
    fn nmap_os_probes_are_recognised() {
        let os = Verdict::Probe(ProbeKind::Os);
        // T2 (no flags, window 128), T3 (SYN FIN PSH URG, 256), T4 (ACK, 1024), T5 (SYN,
        // 31337), T6 (ACK, 32768), T7 (FIN PSH URG, 65535).
        for (flags, window) in [
            (0, 128),
            (f::SYN | f::FIN | f::PSH | f::URG, 256),
            (f::ACK, 1024),
            (f::SYN, 31337),
            (f::ACK, 32768),
            (f::XMAS, 65535),
        ] {
            assert_eq!(
                tcp(&view(flags, window, &NMAP_T)),
                os,
                "{flags:#x} {window}"
            );
        }
        // SEQ probe 1: window 1, WS 10, NOP, MSS 1460, TS, SACK permitted.
        let seq1 = [
            3, 3, 10, 1, 2, 4, 5, 0xb4, 8, 10, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 4, 2,
        ];
        assert_eq!(tcp(&view(f::SYN, 1, &seq1)), os);
        // SEQ probe 3: TS first.
        let seq3 = [
            8, 10, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 1, 3, 3, 5, 1, 2, 4, 2, 0x80,
        ];
        assert_eq!(tcp(&view(f::SYN, 4, &seq3)), os);
        // Cut before the marker ends: not OS.
        assert_eq!(
            tcp(&view(f::SYN, 4, &seq3[..9])),
            Verdict::Probe(ProbeKind::Syn)
        );
        // ECN: SYN + ECE + CWR, window 3, urgent pointer 0xF7F5.
        let ecn = TcpView {
            urg_ptr: 0xf7f5,
            ..view(f::SYN | 0xc0, 3, &[3, 3, 10, 1, 2, 4, 5, 0xb4, 4, 2, 1, 1])
        };
        assert_eq!(tcp(&ecn), os);
        // The marker with an ordinary window, or an ordinary TSval: not OS.
        assert_eq!(
            tcp(&view(f::SYN, 29200, &NMAP_T)),
            Verdict::Probe(ProbeKind::Syn)
        );
        let mut real = NMAP_T;
        real[10] = 0x12;
        assert_eq!(
            tcp(&view(f::SYN, 1024, &real)),
            Verdict::Probe(ProbeKind::Syn)
        );
        // ECN SYN of an ordinary stack (no urgent pointer): SYN.
        assert_eq!(
            tcp(&view(f::SYN | 0xc0, 3, &[])),
            Verdict::Probe(ProbeKind::Syn)
        );
    }

    #[test]
    fn the_cheap_flag_check_never_hides_a_probe() {
        let windows = [0u16, 1, 3, 4, 63, 128, 256, 1024, 31337, 32768, 65535];
        for flags in 0..=255u8 {
            for window in windows {
                for payload_len in [0u16, 1] {
                    for options in [&[][..], &NMAP_T[..], &LINUX_SYN[..]] {
                        for urg_ptr in [0u16, 0xf7f5] {
                            let v = TcpView {
                                urg_ptr,
                                payload_len,
                                ..view(flags, window, options)
                            };
                            if tcp(&v) != Verdict::NotProbe {
                                assert!(super::tcp_flags_may_probe(flags), "{v:?}");
                            }
                        }
                    }
                }
            }
        }
        assert!(!super::tcp_flags_may_probe(f::SYN | f::ACK));
        assert!(!super::tcp_flags_may_probe(f::PSH | f::ACK));
    }

    #[test]
    fn the_head_decides_unless_the_marker_may_be_there() {
        let windows = [
            0u16, 1, 3, 4, 63, 128, 256, 1024, 29200, 31337, 32768, 65535,
        ];
        let cut = &NMAP_T[..9];
        let mut marker_only = [1u8; 10];
        marker_only.copy_from_slice(&NMAP_TS);
        for flags in 0..=255u8 {
            for window in windows {
                for payload_len in [0u16, 1] {
                    for options in [&[][..], cut, &marker_only[..], &NMAP_T[..], &LINUX_SYN[..]] {
                        for urg_ptr in [0u16, 0xf7f5] {
                            let v = TcpView {
                                urg_ptr,
                                payload_len,
                                ..view(flags, window, options)
                            };
                            let h = v.head();
                            if super::may_carry_os_marker(&h) {
                                // The marker decides between OS and the head's verdict.
                                let expected = if has_nmap_timestamp(&v.options, v.options_len) {
                                    Verdict::Probe(ProbeKind::Os)
                                } else {
                                    super::tcp_head(&h)
                                };
                                assert_eq!(tcp(&v), expected, "{v:?}");
                            } else {
                                assert_eq!(tcp(&v), super::tcp_head(&h), "{v:?}");
                            }
                        }
                    }
                }
            }
        }
        // Nine option bytes cannot hold the marker: decided without reading them.
        assert!(!super::may_carry_os_marker(&view(f::SYN, 1024, cut).head()));
        assert!(super::may_carry_os_marker(
            &view(f::SYN, 1024, &NMAP_T).head()
        ));
        assert!(!super::may_carry_os_marker(
            &view(f::SYN, 29200, &NMAP_T).head()
        ));
        assert!(!super::may_carry_os_marker(
            &view(f::SYN | f::ACK, 1024, &NMAP_T).head()
        ));
    }

    #[test]
    fn udp_and_icmp() {
        assert_eq!(udp(true), Verdict::IfNoConnection(ProbeKind::Udp));
        assert_eq!(udp(false), Verdict::NotProbe);
        for t in [8, 13, 17] {
            assert_eq!(icmp(false, t, 20), Verdict::Probe(ProbeKind::Ping));
        }
        assert_eq!(icmp(false, 13, 19), Verdict::NotProbe);
        assert_eq!(icmp(false, 13, 28), Verdict::NotProbe);
        for t in [0, 3, 5, 11, 14, 18, 128] {
            assert_eq!(icmp(false, t, 8), Verdict::NotProbe, "{t}");
        }
        assert_eq!(icmp(true, 128, 8), Verdict::Probe(ProbeKind::Ping));
        for t in [129, 133, 135, 136, 8] {
            assert_eq!(icmp(true, t, 8), Verdict::NotProbe, "{t}");
        }
        assert!(ipv4_unicast([198, 18, 0, 1]));
        assert!(!ipv4_unicast([224, 0, 0, 251]));
        assert!(!ipv4_unicast([255, 255, 255, 255]));
        assert!(!ipv4_unicast([0, 0, 0, 0]));
    }
}
