//! Scanner attribution (`extra.tool`) and the passive OS hint (`extra.os`, `extra.os_signature`)
//! of a scan, from the header fields of its probes (never from payload text).
//!
//! Tools are recognised by what their packet builders fix or derive:
//! - zmap: every probe has IP ID 54321;
//! - masscan: the IP ID is the low 16 bits of `destination address ^ destination port ^
//!   sequence number` (its stateless SYN cookie relation);
//! - nmap: its raw TCP probes have window 1024 and either only an MSS 1460 option (every probe
//!   with SYN, `--scanflags` included) or no option at all (FIN, NULL, XMAS, ACK, Maimon), and
//!   its OS-detection probes are unmistakable (the kernel's `OS` kind);
//! - hping3: window 512 (Debian's hping3 3.0.0-rc; its manual says 64, also accepted), without
//!   options.
//!
//! Anything else is `unknown`. The OS hint reads the first probe: the initial TTL (the next of
//! 32, 64, 128, 255 at or above the TTL seen) and the hop distance, and, for TCP, the window,
//! MSS, window scale and option order, written as a p0f-style signature
//! `ver:ittl+hops:olen:mss:wsize,scale:olayout:quirks:pclass`. A SYN built by a real stack is
//! labelled by its option layout (`Linux`, `Windows`, `macOS/BSD`); a crafted probe reveals only
//! its TTL, labelled by the TTL family (`Linux/Unix`, `Windows`, `network device`).

use std::{fmt::Write as _, net::IpAddr};

use sensor_common::{
    ProbeKind,
    classify::{NO_WSCALE, QUIRK_DF, QUIRK_TS, opt},
};

use crate::capture::Observation;

/// A scanner recognised from its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tool {
    /// Nothing recognisable.
    Unknown,
    /// nmap.
    Nmap,
    /// masscan.
    Masscan,
    /// zmap.
    Zmap,
    /// hping3 with its default window.
    Hping3,
}

impl Tool {
    /// The `extra.tool` value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Nmap => "nmap",
            Self::Masscan => "masscan",
            Self::Zmap => "zmap",
            Self::Hping3 => "hping3",
        }
    }
}

/// zmap's fixed IPv4 identification.
const ZMAP_IP_ID: u16 = 54_321;

/// The tool one probe points at.
#[must_use]
pub fn tool(obs: &Observation) -> Tool {
    let fp = &obs.fp;
    if obs.kind == ProbeKind::Os {
        return Tool::Nmap;
    }
    let IpAddr::V4(dst) = obs.dst else {
        return tcp_tool(obs);
    };
    if fp.ip_id == ZMAP_IP_ID {
        return Tool::Zmap;
    }
    if obs.kind.protocol() == sensor_common::protocol::TCP {
        let relation = u32::from(dst) ^ u32::from(obs.dst_port) ^ fp.seq;
        // Truncation intended: masscan writes the low 16 bits into the IP ID.
        #[expect(clippy::cast_possible_truncation, reason = "the low 16 bits")]
        if fp.ip_id == relation as u16 && fp.ip_id != 0 {
            return Tool::Masscan;
        }
    }
    tcp_tool(obs)
}

/// The window/option signatures (both families).
fn tcp_tool(obs: &Observation) -> Tool {
    let fp = &obs.fp;
    if obs.kind.protocol() != sensor_common::protocol::TCP || fp.payload_len != 0 {
        return Tool::Unknown;
    }
    let options = fp.options();
    match (fp.window, options, obs.kind) {
        (1024, [opt::MSS], _) if fp.mss == 1460 => Tool::Nmap,
        (1024, [], kind) if kind != ProbeKind::Syn => Tool::Nmap,
        (64 | 512, [], _) => Tool::Hping3,
        _ => Tool::Unknown,
    }
}

/// The passive OS hint of a scan, from its first probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsHint {
    /// Coarse label (`Linux`, `Windows`, `macOS/BSD`, `Linux/Unix`, `network device`, ...).
    pub label: &'static str,
    /// p0f-style signature.
    pub signature: String,
}

/// The initial TTL a stack most likely used, and the hops since.
#[must_use]
pub const fn initial_ttl(ttl: u8) -> (u8, u8) {
    let initial = match ttl {
        0..=32 => 32,
        33..=64 => 64,
        65..=128 => 128,
        _ => 255,
    };
    (initial, initial - ttl)
}

fn option_name(kind: u8) -> String {
    match kind {
        opt::EOL => "eol".to_owned(),
        opt::NOP => "nop".to_owned(),
        opt::MSS => "mss".to_owned(),
        opt::WS => "ws".to_owned(),
        opt::SOK => "sok".to_owned(),
        opt::SACK => "sack".to_owned(),
        opt::TS => "ts".to_owned(),
        other => format!("?{other}"),
    }
}

/// The OS hint of one probe.
#[must_use]
pub fn os_hint(obs: &Observation) -> OsHint {
    let fp = &obs.fp;
    let ver = if obs.src.is_ipv4() { 4 } else { 6 };
    let (ittl, hops) = initial_ttl(fp.ttl);
    let by_ttl = match ittl {
        64 => "Linux/Unix",
        128 => "Windows",
        255 => "network device",
        _ => "unknown",
    };
    let mut signature = format!("{ver}:{ittl}+{hops}:0:");
    if obs.kind.protocol() != sensor_common::protocol::TCP {
        let what = if obs.kind == ProbeKind::Udp {
            "udp"
        } else {
            "icmp"
        };
        let _ = write!(signature, "{what}:{}", fp.payload_len);
        return OsHint {
            label: by_ttl,
            signature,
        };
    }
    if fp.mss == 0 {
        signature.push('*');
    } else {
        let _ = write!(signature, "{}", fp.mss);
    }
    let _ = write!(signature, ":{},", fp.window);
    if fp.wscale == NO_WSCALE {
        signature.push('*');
    } else {
        let _ = write!(signature, "{}", fp.wscale);
    }
    let names: Vec<String> = fp.options().iter().map(|k| option_name(*k)).collect();
    let _ = write!(signature, ":{}:", names.join(","));
    let mut quirks = Vec::new();
    if fp.quirks & QUIRK_DF != 0 {
        quirks.push("df");
        if fp.ip_id != 0 {
            quirks.push("id+");
        }
    } else if ver == 4 && fp.ip_id == 0 {
        quirks.push("id-");
    }
    if fp.quirks & QUIRK_TS != 0 && fp.ts_val == 0 {
        quirks.push("ts1-");
    }
    let pclass = if fp.payload_len == 0 { "0" } else { "+" };
    let _ = write!(signature, "{}:{pclass}", quirks.join(","));
    let layout = fp.options();
    let label = match (ittl, layout) {
        (64, [opt::MSS, opt::SOK, opt::TS, opt::NOP, opt::WS]) => "Linux",
        (128, [opt::MSS, opt::NOP, opt::WS, opt::NOP, opt::NOP, opt::SOK])
        | (128, [opt::MSS, opt::NOP, opt::WS, opt::SOK, opt::TS]) => "Windows",
        (
            64,
            [
                opt::MSS,
                opt::NOP,
                opt::WS,
                opt::NOP,
                opt::NOP,
                opt::TS,
                opt::SOK,
                ..,
            ],
        ) => "macOS/BSD",
        _ => by_ttl,
    };
    OsHint { label, signature }
}

#[cfg(test)]
mod tests {
    use sensor_common::ProbeKind;

    use super::{Tool, initial_ttl, os_hint, tool};
    use crate::capture::{Fingerprint, Observation};

    fn obs(kind: ProbeKind, fp: Fingerprint) -> Observation {
        Observation {
            ts_ns: 0,
            src: "198.18.0.2".parse().unwrap(),
            dst: "198.18.0.1".parse().unwrap(),
            src_port: 40_000,
            dst_port: 80,
            kind,
            ifindex: 1,
            vlan_id: 0,
            fp,
        }
    }

    fn kinds(k: &[u8]) -> ([u8; 16], u8) {
        let mut out = [0u8; 16];
        out[..k.len()].copy_from_slice(k);
        (out, u8::try_from(k.len()).unwrap())
    }

    #[test]
    fn tools_from_their_packet_builders() {
        let zmap = Fingerprint {
            ip_id: 54_321,
            window: 65_535,
            ..Fingerprint::default()
        };
        assert_eq!(tool(&obs(ProbeKind::Syn, zmap)), Tool::Zmap);
        assert_eq!(tool(&obs(ProbeKind::Ping, zmap)), Tool::Zmap);
        // masscan: ip_id = (198.18.0.1 ^ 80 ^ seq) & 0xffff.
        let seq = 0x1234_5678u32;
        let id = (u32::from(std::net::Ipv4Addr::new(198, 18, 0, 1)) ^ 80 ^ seq) & 0xffff;
        let masscan = Fingerprint {
            ip_id: u16::try_from(id).unwrap(),
            seq,
            window: 1024,
            ..Fingerprint::default()
        };
        assert_eq!(tool(&obs(ProbeKind::Syn, masscan)), Tool::Masscan);
        let (opt_kinds, opt_count) = kinds(&[2]);
        let nmap_syn = Fingerprint {
            ip_id: 4242,
            seq: 1,
            window: 1024,
            mss: 1460,
            opt_kinds,
            opt_count,
            ..Fingerprint::default()
        };
        assert_eq!(tool(&obs(ProbeKind::Syn, nmap_syn)), Tool::Nmap);
        let nmap_ack = Fingerprint {
            ip_id: 4242,
            window: 1024,
            ..Fingerprint::default()
        };
        assert_eq!(tool(&obs(ProbeKind::Ack, nmap_ack)), Tool::Nmap);
        assert_eq!(
            tool(&obs(ProbeKind::Os, Fingerprint::default())),
            Tool::Nmap
        );
        let hping = Fingerprint {
            ip_id: 99,
            window: 512,
            ..Fingerprint::default()
        };
        assert_eq!(tool(&obs(ProbeKind::Syn, hping)), Tool::Hping3);
        // A Linux connect() SYN, or nmap's window with a payload: nobody in particular.
        let (opt_kinds, opt_count) = kinds(&[2, 4, 8, 1, 3]);
        let linux = Fingerprint {
            ip_id: 1,
            window: 64_240,
            mss: 1460,
            wscale: 7,
            opt_kinds,
            opt_count,
            quirks: 5,
            ..Fingerprint::default()
        };
        assert_eq!(tool(&obs(ProbeKind::Syn, linux)), Tool::Unknown);
        let with_payload = Fingerprint {
            payload_len: 10,
            ..nmap_ack
        };
        assert_eq!(tool(&obs(ProbeKind::Ack, with_payload)), Tool::Unknown);
        assert_eq!(
            tool(&obs(ProbeKind::Udp, Fingerprint::default())),
            Tool::Unknown
        );
    }

    #[test]
    fn os_hints_read_the_stack_or_the_ttl() {
        assert_eq!(initial_ttl(64), (64, 0));
        assert_eq!(initial_ttl(50), (64, 14));
        assert_eq!(initial_ttl(120), (128, 8));
        assert_eq!(initial_ttl(250), (255, 5));
        assert_eq!(initial_ttl(1), (32, 31));
        let (opt_kinds, opt_count) = kinds(&[2, 4, 8, 1, 3]);
        let linux = Fingerprint {
            ttl: 62,
            ip_id: 1,
            window: 64_240,
            mss: 1460,
            wscale: 7,
            ts_val: 5,
            opt_kinds,
            opt_count,
            quirks: 5,
            ..Fingerprint::default()
        };
        let h = os_hint(&obs(ProbeKind::Syn, linux));
        assert_eq!(h.label, "Linux");
        assert_eq!(
            h.signature,
            "4:64+2:0:1460:64240,7:mss,sok,ts,nop,ws:df,id+:0"
        );
        let (opt_kinds, opt_count) = kinds(&[2, 1, 3, 1, 1, 4]);
        let windows = Fingerprint {
            ttl: 128,
            window: 64_240,
            mss: 1460,
            wscale: 8,
            opt_kinds,
            opt_count,
            quirks: 1,
            ip_id: 7,
            ..Fingerprint::default()
        };
        assert_eq!(os_hint(&obs(ProbeKind::Syn, windows)).label, "Windows");
        let raw = Fingerprint {
            ttl: 44,
            window: 1024,
            ip_id: 9,
            ..Fingerprint::default()
        };
        let h = os_hint(&obs(ProbeKind::Ack, raw));
        assert_eq!(h.label, "Linux/Unix");
        assert_eq!(h.signature, "4:64+20:0:*:1024,*:::0");
        let udp = Fingerprint {
            ttl: 255,
            payload_len: 40,
            ..Fingerprint::default()
        };
        let h = os_hint(&obs(ProbeKind::Udp, udp));
        assert_eq!(
            (h.label, h.signature.as_str()),
            ("network device", "4:255+0:0:udp:40")
        );
    }
}
