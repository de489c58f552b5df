//! Decoding of ring-buffer records into [`Observation`]s; anything odd is rejected, not trusted:
//! the size, the probe kind, the family, the protocol (it must be the kind's), the VLAN id and
//! the option count are checked, and consumers of the timestamp (the merger) only use
//! saturating arithmetic on it.

use std::net::{IpAddr, Ipv6Addr};

use sensor_common::{
    ProbeKind, ScanRecord,
    classify::{self, MAX_OPTIONS_BYTES, QUIRK_DF},
    family,
};

use super::{Fingerprint, Observation};

/// A record that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is not the size of a [`ScanRecord`].
    #[error("record of {0} bytes, expected {expected}", expected = size_of::<ScanRecord>())]
    Size(usize),
    /// Unknown probe kind.
    #[error("unknown probe kind {0}")]
    Kind(u32),
    /// Unknown address family.
    #[error("unknown address family {0}")]
    Family(u8),
    /// A VLAN id wider than the 12 bits of a tag.
    #[error("VLAN id {0} exceeds 4095")]
    Vlan(u16),
    /// A protocol that is not the probe kind's.
    #[error("protocol {0} does not carry that probe kind")]
    Protocol(u8),
    /// An options length beyond the 40 bytes a TCP header holds.
    #[error("{0} bytes of TCP options, at most {MAX_OPTIONS_BYTES}")]
    Options(u8),
}

/// Largest VLAN id (12 bits).
const MAX_VLAN_ID: u16 = 0x0fff;

/// Decodes one ring-buffer record.
///
/// # Errors
/// [`DecodeError`] when the size, kind or family is not one the kernel program writes.
pub fn decode(bytes: &[u8]) -> Result<Observation, DecodeError> {
    if bytes.len() != size_of::<ScanRecord>() {
        return Err(DecodeError::Size(bytes.len()));
    }
    // SAFETY: the length was checked; ScanRecord is plain old data with no invalid bit pattern,
    // and `read_unaligned` makes no alignment assumption.
    let record = unsafe { bytes.as_ptr().cast::<ScanRecord>().read_unaligned() };
    let kind = ProbeKind::from_raw(record.kind).ok_or(DecodeError::Kind(record.kind))?;
    let (src, dst) = match record.family {
        family::IPV4 => (unmap(record.src_addr), unmap(record.dst_addr)),
        family::IPV6 => (
            IpAddr::V6(Ipv6Addr::from(record.src_addr)),
            IpAddr::V6(Ipv6Addr::from(record.dst_addr)),
        ),
        other => return Err(DecodeError::Family(other)),
    };
    if record.vlan_id > MAX_VLAN_ID {
        return Err(DecodeError::Vlan(record.vlan_id));
    }
    if record.protocol != kind.protocol() {
        return Err(DecodeError::Protocol(record.protocol));
    }
    if usize::from(record.options_len) > MAX_OPTIONS_BYTES {
        return Err(DecodeError::Options(record.options_len));
    }
    let o = classify::tcp_options(&record.options, usize::from(record.options_len));
    Ok(Observation {
        ts_ns: record.ts_ns,
        src,
        dst,
        src_port: record.src_port,
        dst_port: record.dst_port,
        kind,
        ifindex: record.ifindex,
        vlan_id: record.vlan_id,
        fp: Fingerprint {
            ttl: record.ttl,
            ip_id: record.ip_id,
            tcp_flags: record.tcp_flags,
            window: record.window,
            mss: o.mss,
            wscale: o.wscale,
            seq: record.seq,
            ack: record.ack,
            ts_val: o.ts_val,
            ts_ecr: o.ts_ecr,
            quirks: (record.quirks & QUIRK_DF) | o.quirks,
            icmp_type: record.icmp_type,
            payload_len: record.payload_len,
            urg_ptr: record.urg_ptr,
            opt_kinds: o.kinds,
            opt_count: o.count,
            options: record.options,
            options_len: record.options_len,
        },
    })
}

fn unmap(addr: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(addr);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

/// Encodes an observation back into the kernel's record layout (tests and benchmarks).
#[must_use]
pub fn encode(obs: &Observation) -> [u8; size_of::<ScanRecord>()] {
    let to16 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let record = ScanRecord {
        kind: obs.kind as u32,
        ifindex: obs.ifindex,
        ts_ns: obs.ts_ns,
        src_addr: to16(obs.src),
        dst_addr: to16(obs.dst),
        src_port: obs.src_port,
        dst_port: obs.dst_port,
        family: if obs.src.is_ipv4() {
            family::IPV4
        } else {
            family::IPV6
        },
        tcp_flags: obs.fp.tcp_flags,
        vlan_id: obs.vlan_id,
        protocol: obs.kind.protocol(),
        ttl: obs.fp.ttl,
        ip_id: obs.fp.ip_id,
        window: obs.fp.window,
        urg_ptr: obs.fp.urg_ptr,
        seq: obs.fp.seq,
        ack: obs.fp.ack,
        quirks: obs.fp.quirks & QUIRK_DF,
        icmp_type: obs.fp.icmp_type,
        payload_len: obs.fp.payload_len,
        options_len: obs.fp.options_len,
        reserved: [0; 3],
        options: obs.fp.options,
    };
    let mut out = [0u8; size_of::<ScanRecord>()];
    // SAFETY: `out` is exactly the size of the record; write_unaligned needs no alignment.
    unsafe {
        out.as_mut_ptr()
            .cast::<ScanRecord>()
            .write_unaligned(record)
    };
    out
}

#[cfg(test)]
mod tests {
    use sensor_common::{ProbeKind, ScanRecord};

    use super::{DecodeError, decode, encode};
    use crate::capture::{Fingerprint, Observation};

    fn sample(src: &str, dst: &str) -> Observation {
        Observation {
            ts_ns: 123_456_789,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 51_000,
            dst_port: 22,
            kind: ProbeKind::Xmas,
            ifindex: 7,
            vlan_id: 42,
            fp: Fingerprint {
                ttl: 51,
                ip_id: 54_321,
                tcp_flags: 0x29,
                window: 1024,
                mss: 1460,
                wscale: 7,
                seq: 0xdead_beef,
                ack: 7,
                ts_val: u32::MAX,
                ts_ecr: 0,
                quirks: 5,
                icmp_type: 0,
                payload_len: 3,
                urg_ptr: 0xf7f5,
                opt_kinds: [2, 4, 8, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                opt_count: 5,
                options: {
                    let mut o = [0u8; 40];
                    o[..20].copy_from_slice(&[
                        2, 4, 5, 0xb4, 4, 2, 8, 10, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 3, 3, 7,
                    ]);
                    o
                },
                options_len: 20,
            },
        }
    }

    #[test]
    fn round_trips_both_families() {
        for obs in [
            sample("198.18.0.2", "198.18.0.1"),
            sample("2001:db8::2", "2001:db8::1"),
        ] {
            assert_eq!(decode(&encode(&obs)).unwrap(), obs);
        }
    }

    #[test]
    fn ipv4_addresses_come_out_unmapped() {
        let obs = decode(&encode(&sample("192.0.2.9", "192.0.2.1"))).unwrap();
        assert!(obs.src.is_ipv4() && obs.dst.is_ipv4());
    }

    #[test]
    fn odd_records_are_rejected() {
        let good = encode(&sample("192.0.2.9", "192.0.2.1"));
        assert_eq!(decode(&good[..56]), Err(DecodeError::Size(56)));
        let mut bad_kind = good;
        bad_kind[..4].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(decode(&bad_kind), Err(DecodeError::Kind(99)));
        let mut bad_family = good;
        bad_family[std::mem::offset_of!(ScanRecord, family)] = 5;
        assert_eq!(decode(&bad_family), Err(DecodeError::Family(5)));
        let mut bad_vlan = good;
        let at = std::mem::offset_of!(ScanRecord, vlan_id);
        bad_vlan[at..at + 2].copy_from_slice(&0x1000u16.to_ne_bytes());
        assert_eq!(decode(&bad_vlan), Err(DecodeError::Vlan(0x1000)));
        let mut bad_proto = good;
        bad_proto[std::mem::offset_of!(ScanRecord, protocol)] = 17;
        assert_eq!(decode(&bad_proto), Err(DecodeError::Protocol(17)));
        let mut bad_opts = good;
        bad_opts[std::mem::offset_of!(ScanRecord, options_len)] = 41;
        assert_eq!(decode(&bad_opts), Err(DecodeError::Options(41)));
    }

    #[test]
    fn every_kind_decodes_with_its_protocol() {
        for kind in ProbeKind::ALL {
            let obs = Observation {
                kind,
                ..sample("192.0.2.9", "192.0.2.1")
            };
            assert_eq!(decode(&encode(&obs)).unwrap(), obs, "{kind:?}");
        }
    }
}
