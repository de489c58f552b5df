//! libpcap capture: the fallback for hosts without XDP (`sensor run --capture pcap`) and the
//! engine of `sensor replay FILE.pcap`. Frames are decoded with etherparse and classified with
//! the same rules as the kernel program ([`sensor_common::classify`]: the same header fields go
//! into the same functions); the allow-list is applied here.
//!
//! The kernel asks its socket tables whether an ACK, FIN+ACK or UDP datagram belongs to a local
//! connection; this path has no such table and counts every one as a probe. That is exact for
//! capture files and for a sensor making no connections of its own; on a live host with
//! outgoing connections, their empty ACKs count as ACK probes from the peer (one port per
//! connection, so a scan only past the threshold of distinct ports).

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use etherparse::{
    Icmpv4Slice, IpNumber, IpPayloadSlice, NetSlice, SlicedPacket, TcpSlice, TransportSlice,
    UdpSlice,
};
use sensor_common::classify::{self, MAX_OPTIONS_BYTES, QUIRK_DF, TcpView, Verdict};
use serde_json::{Value, json};

use super::{Fingerprint, Observation, allowlist::Allowlist};
use crate::{clock::monotonic_ns, net::Cidr};

/// What one frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// A probe worth recording.
    Probe(Observation),
    /// A probe from an allow-listed source.
    AllowListed,
    /// TCP that is not a probe.
    OtherTcp,
    /// Not TCP, or a fragment without its TCP header.
    NonTcp,
    /// Truncated or malformed.
    Malformed,
}

/// Classifies one Ethernet frame seen at `ts_ns`.
#[must_use]
pub fn classify(frame: &[u8], ts_ns: u64, allowlist: &[Cidr]) -> Classified {
    let Ok(packet) = SlicedPacket::from_ethernet(frame) else {
        return Classified::Malformed;
    };
    let mut fp = Fingerprint::default();
    let (src, dst, unicast, v6): (IpAddr, IpAddr, bool, bool) = match &packet.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            fp.ttl = h.ttl();
            fp.ip_id = h.identification();
            if h.dont_fragment() {
                fp.quirks |= QUIRK_DF;
            }
            let dst = h.destination();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                classify::ipv4_unicast(dst),
                false,
            )
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            // etherparse takes a zero payload length as "up to the end of the frame"
            // (jumbogram); the kernel, like a router without jumbo support, as malformed.
            if h.payload_length() == 0 {
                return Classified::Malformed;
            }
            fp.ttl = h.hop_limit();
            let dst = h.destination();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                classify::ipv6_unicast(dst[0]),
                true,
            )
        }
        _ => return Classified::NonTcp,
    };
    // etherparse leaves the transport of a first IPv4 fragment unparsed; the kernel reads it
    // when the whole header is there (later fragments are never probes).
    let transport = match (&packet.transport, &packet.net) {
        (None, Some(NetSlice::Ipv4(v4)))
            if v4.header().more_fragments() && v4.header().fragments_offset().value() == 0 =>
        {
            first_fragment(v4.payload())
        }
        (t, _) => t.clone(),
    };
    let (verdict, src_port, dst_port, is_tcp) = match &transport {
        Some(TransportSlice::Tcp(tcp)) => {
            fp.tcp_flags = tcp.slice().get(13).copied().unwrap_or(0);
            fp.window = tcp.window_size();
            fp.urg_ptr = tcp.urgent_pointer();
            fp.seq = tcp.sequence_number();
            fp.ack = tcp.acknowledgment_number();
            fp.payload_len = u16::try_from(tcp.payload().len()).unwrap_or(u16::MAX);
            let raw = tcp.options();
            let len = raw.len().min(MAX_OPTIONS_BYTES);
            if let (Some(dst), Some(src)) = (fp.options.get_mut(..len), raw.get(..len)) {
                dst.copy_from_slice(src);
            }
            fp.options_len = u8::try_from(len).unwrap_or(0);
            let o = classify::tcp_options(&fp.options, len);
            fp.mss = o.mss;
            fp.wscale = o.wscale;
            fp.ts_val = o.ts_val;
            fp.ts_ecr = o.ts_ecr;
            fp.opt_kinds = o.kinds;
            fp.opt_count = o.count;
            fp.quirks |= o.quirks;
            let verdict = classify::tcp(&TcpView {
                flags: fp.tcp_flags,
                window: fp.window,
                urg_ptr: fp.urg_ptr,
                payload_len: fp.payload_len,
                options: fp.options,
                options_len: fp.options_len,
            });
            (verdict, tcp.source_port(), tcp.destination_port(), true)
        }
        Some(TransportSlice::Udp(udp)) => {
            // A zero length (IPv6 jumbogram) is malformed for the kernel too.
            if udp.length() < 8 {
                return Classified::Malformed;
            }
            fp.payload_len = u16::try_from(udp.payload().len()).unwrap_or(u16::MAX);
            (
                classify::udp(unicast),
                udp.source_port(),
                udp.destination_port(),
                false,
            )
        }
        Some(TransportSlice::Icmpv4(icmp)) => icmp_fields(&mut fp, icmp.slice(), false),
        Some(TransportSlice::Icmpv6(icmp)) => icmp_fields(&mut fp, icmp.slice(), true),
        _ => return Classified::NonTcp,
    };
    if v6 {
        fp.ip_id = 0;
    }
    let kind = match verdict {
        // No socket table here (see the module documentation): counted as a probe.
        Verdict::Probe(kind) | Verdict::IfNoConnection(kind) => kind,
        Verdict::NotProbe if is_tcp => return Classified::OtherTcp,
        Verdict::NotProbe => return Classified::NonTcp,
    };
    if allowlist.iter().any(|c| c.contains(src)) {
        return Classified::AllowListed;
    }
    let vlan_id = packet.vlan_ids().first().map_or(0, |v| v.value());
    Classified::Probe(Observation {
        ts_ns,
        src,
        dst,
        src_port,
        dst_port,
        kind,
        ifindex: 0,
        vlan_id,
        fp,
    })
}

/// The transport header at the start of a first fragment's payload, if it is whole.
fn first_fragment<'a>(p: &IpPayloadSlice<'a>) -> Option<TransportSlice<'a>> {
    match p.ip_number {
        IpNumber::TCP => TcpSlice::from_slice(p.payload)
            .ok()
            .map(TransportSlice::Tcp),
        IpNumber::UDP => UdpSlice::from_slice(p.payload)
            .ok()
            .map(TransportSlice::Udp),
        IpNumber::ICMP => Icmpv4Slice::from_slice(p.payload)
            .ok()
            .map(TransportSlice::Icmpv4),
        _ => None,
    }
}

/// Reads an ICMP header (type, then identifier and sequence in bytes 4..8) into `fp`.
fn icmp_fields(fp: &mut Fingerprint, header: &[u8], v6: bool) -> (Verdict, u16, u16, bool) {
    fp.icmp_type = header.first().copied().unwrap_or(0);
    let word = |i: usize| header.get(i).copied().map_or(0, u32::from);
    fp.seq = (word(4) << 24) | (word(5) << 16) | (word(6) << 8) | word(7);
    fp.payload_len = u16::try_from(header.len().saturating_sub(8)).unwrap_or(u16::MAX);
    (classify::icmp(v6, fp.icmp_type, header.len()), 0, 0, false)
}

/// Counters of the pcap path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PcapStats {
    /// Frames read from libpcap.
    pub packets: u64,
    /// Probes passed on.
    pub probes: u64,
    /// Probes from allow-listed sources.
    pub allow_listed: u64,
    /// Ordinary TCP.
    pub other_tcp: u64,
    /// Not TCP.
    pub non_tcp: u64,
    /// Malformed frames.
    pub malformed: u64,
    /// Frames the kernel dropped because the capture buffer was full (`ps_drop`).
    pub kernel_dropped: u64,
    /// Frames the interface dropped (`ps_ifdrop`).
    pub if_dropped: u64,
}

impl PcapStats {
    /// Counts one classified frame.
    pub fn count(&mut self, c: &Classified) {
        let bump = |v: &mut u64| *v = v.saturating_add(1);
        bump(&mut self.packets);
        match c {
            Classified::Probe(_) => bump(&mut self.probes),
            Classified::AllowListed => bump(&mut self.allow_listed),
            Classified::OtherTcp => bump(&mut self.other_tcp),
            Classified::NonTcp => bump(&mut self.non_tcp),
            Classified::Malformed => bump(&mut self.malformed),
        }
    }

    /// Adds another capture's counters (saturating).
    pub fn add(&mut self, other: &Self) {
        self.packets = self.packets.saturating_add(other.packets);
        self.probes = self.probes.saturating_add(other.probes);
        self.allow_listed = self.allow_listed.saturating_add(other.allow_listed);
        self.other_tcp = self.other_tcp.saturating_add(other.other_tcp);
        self.non_tcp = self.non_tcp.saturating_add(other.non_tcp);
        self.malformed = self.malformed.saturating_add(other.malformed);
        self.kernel_dropped = self.kernel_dropped.saturating_add(other.kernel_dropped);
        self.if_dropped = self.if_dropped.saturating_add(other.if_dropped);
    }

    /// As JSON.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "packets": self.packets, "probes": self.probes, "allow_listed": self.allow_listed,
            "other_tcp": self.other_tcp, "non_tcp": self.non_tcp, "malformed": self.malformed,
            "kernel_dropped": self.kernel_dropped, "if_dropped": self.if_dropped,
        })
    }
}

/// A libpcap failure.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// libpcap reported an error.
    #[error("libpcap on `{source_name}`: {error}")]
    Pcap {
        /// Interface or file.
        source_name: String,
        /// The error.
        error: pcap::Error,
    },
}

/// libpcap's drop counters are 32-bit and wrap; this folds successive readings into 64-bit
/// totals (a reading below the previous one is a wrap, not a negative count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropTotals {
    last_dropped: u32,
    last_if_dropped: u32,
}

impl DropTotals {
    /// Folds one `pcap_stats` reading into `stats`.
    pub fn update(&mut self, dropped: u32, if_dropped: u32, stats: &mut PcapStats) {
        let grown = dropped.wrapping_sub(self.last_dropped);
        let if_grown = if_dropped.wrapping_sub(self.last_if_dropped);
        stats.kernel_dropped = stats.kernel_dropped.saturating_add(u64::from(grown));
        stats.if_dropped = stats.if_dropped.saturating_add(u64::from(if_grown));
        self.last_dropped = dropped;
        self.last_if_dropped = if_dropped;
    }
}

/// A live capture running on its own thread, sending batches of observations.
#[derive(Debug)]
pub struct LiveCapture {
    stop: Arc<AtomicBool>,
    /// The allow-list the thread applies, replaced by [`Self::set_allowlist`].
    allowlist: Arc<Allowlist>,
    /// Counters as of the thread's last poll, drops included.
    live: Arc<Mutex<PcapStats>>,
    thread: std::thread::JoinHandle<Result<PcapStats, PcapError>>,
}

impl LiveCapture {
    /// Opens `iface` (non-blocking, immediate mode, 64 MiB buffer, TCP, UDP and ICMP) and starts the
    /// capture thread. Batches go to `tx`; when the agent is slower than the traffic, libpcap's
    /// kernel buffer fills and the kernel counts the drops.
    ///
    /// # Errors
    /// The interface cannot be opened (no privileges, no such device).
    pub fn start(
        iface: &str,
        allowlist: Vec<Cidr>,
        tx: tokio::sync::mpsc::Sender<Vec<Observation>>,
    ) -> Result<Self, PcapError> {
        let err = |error| PcapError::Pcap {
            source_name: iface.to_owned(),
            error,
        };
        let mut cap = pcap::Capture::from_device(iface)
            .map_err(err)?
            .promisc(false)
            .snaplen(256)
            .buffer_size(64 * 1024 * 1024)
            .immediate_mode(true)
            .open()
            .map_err(err)?
            .setnonblock()
            .map_err(err)?;
        cap.filter(
            "tcp or udp or icmp or icmp6 or (vlan and (tcp or udp or icmp or icmp6))",
            true,
        )
        .map_err(err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Mutex::new(PcapStats::default()));
        let allowlist = Allowlist::new(allowlist);
        let shared = Shared {
            stop: stop.clone(),
            live: live.clone(),
        };
        let name = iface.to_owned();
        let reader = allowlist.reader();
        let thread = std::thread::Builder::new()
            .name("pcap-capture".to_owned())
            .spawn(move || capture_loop(cap, &name, reader, &tx, &shared))
            .map_err(|e| err(pcap::Error::IoError(e.kind())))?;
        Ok(Self {
            stop,
            allowlist,
            live,
            thread,
        })
    }

    /// Replaces the allow-list (configuration reload): every frame the thread reads from now
    /// on is classified with `allowlist`, while the capture keeps running.
    pub fn set_allowlist(&self, allowlist: &[Cidr]) {
        self.allowlist.set(allowlist);
    }

    /// Counters as of the capture thread's last poll (at most one poll interval old), libpcap's
    /// drop counters included: what the stats tick reports.
    #[must_use]
    pub fn stats(&self) -> PcapStats {
        *self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the thread to stop after its current poll (20 ms at most) and its last batch.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether the thread has ended.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread (after [`Self::request_stop`]) and returns its counters.
    ///
    /// # Errors
    /// The capture failed while running.
    pub fn join(self) -> Result<PcapStats, PcapError> {
        self.thread.join().unwrap_or_else(|_| {
            Err(PcapError::Pcap {
                source_name: "capture thread".to_owned(),
                error: pcap::Error::PcapError("panicked".to_owned()),
            })
        })
    }
}

/// What the capture thread shares with its [`LiveCapture`].
struct Shared {
    stop: Arc<AtomicBool>,
    live: Arc<Mutex<PcapStats>>,
}

impl Shared {
    /// Reads libpcap's drop counters into `stats` and publishes the result.
    fn publish(
        &self,
        cap: &mut pcap::Capture<pcap::Active>,
        drops: &mut DropTotals,
        stats: &mut PcapStats,
    ) {
        if let Ok(s) = cap.stats() {
            drops.update(s.dropped, s.if_dropped, stats);
        }
        *self.live.lock().unwrap_or_else(PoisonError::into_inner) = *stats;
    }
}

fn capture_loop(
    mut cap: pcap::Capture<pcap::Active>,
    name: &str,
    mut allowlist: super::allowlist::Reader,
    tx: &tokio::sync::mpsc::Sender<Vec<Observation>>,
    shared: &Shared,
) -> Result<PcapStats, PcapError> {
    use std::os::fd::AsRawFd as _;
    let fd = cap.as_raw_fd();
    let mut stats = PcapStats::default();
    let mut drops = DropTotals::default();
    let mut batch = Vec::with_capacity(1024);
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a 20 ms timeout bounds the wait.
        unsafe { libc::poll(&raw mut pfd, 1, 20) };
        loop {
            match cap.next_packet() {
                Ok(packet) => {
                    let c = classify(packet.data, monotonic_ns(), allowlist.current());
                    stats.count(&c);
                    if let Classified::Probe(obs) = c {
                        batch.push(obs);
                        if batch.len() >= 1024 {
                            break;
                        }
                    }
                }
                Err(pcap::Error::TimeoutExpired | pcap::Error::NoMorePackets) => break,
                Err(error) => {
                    return Err(PcapError::Pcap {
                        source_name: name.to_owned(),
                        error,
                    });
                }
            }
        }
        // One getsockopt per poll (every 20 ms or 1024 probes): the stats tick always sees
        // current drop figures, not only the final ones.
        shared.publish(&mut cap, &mut drops, &mut stats);
        if !batch.is_empty() {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(1024));
            if tx.blocking_send(full).is_err() {
                break;
            }
        }
        if stopping {
            break;
        }
    }
    shared.publish(&mut cap, &mut drops, &mut stats);
    Ok(stats)
}

/// Reads a capture file and classifies every frame, stamping observations with the file's
/// timestamps (ns since the Unix epoch). Returns the probes and the counters.
///
/// # Errors
/// The file cannot be opened or read.
pub fn read_file(
    path: &std::path::Path,
    allowlist: &[Cidr],
) -> Result<(Vec<Observation>, PcapStats), PcapError> {
    let err = |error| PcapError::Pcap {
        source_name: path.display().to_string(),
        error,
    };
    let mut cap = pcap::Capture::from_file(path).map_err(err)?;
    let mut stats = PcapStats::default();
    let mut out = Vec::new();
    loop {
        match cap.next_packet() {
            Ok(packet) => {
                let tv = packet.header.ts;
                let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
                let micros = u64::try_from(tv.tv_usec).unwrap_or(0);
                let ts = Duration::from_secs(secs) + Duration::from_micros(micros);
                let ts_ns = u64::try_from(ts.as_nanos()).unwrap_or(u64::MAX);
                let c = classify(packet.data, ts_ns, allowlist);
                stats.count(&c);
                if let Classified::Probe(obs) = c {
                    out.push(obs);
                }
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(error) => return Err(err(error)),
        }
    }
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use sensor_common::ProbeKind;

    use super::{Classified, DropTotals, PcapStats, classify};

    #[test]
    fn drop_counters_accumulate_across_readings_and_wraps() {
        let mut drops = DropTotals::default();
        let mut stats = PcapStats::default();
        drops.update(10, 1, &mut stats);
        drops.update(25, 1, &mut stats);
        assert_eq!((stats.kernel_dropped, stats.if_dropped), (25, 1));
        // libpcap's 32-bit counter wrapped: 5 + (2^32 - 25) more drops, not a negative count.
        drops.update(5, 3, &mut stats);
        assert_eq!(
            stats.kernel_dropped,
            25 + (u64::from(u32::MAX) - 25 + 1) + 5
        );
        assert_eq!(stats.if_dropped, 3);
        let mut full = PcapStats {
            packets: u64::MAX,
            ..PcapStats::default()
        };
        full.count(&Classified::OtherTcp);
        full.add(&full.clone());
        assert_eq!((full.packets, full.other_tcp), (u64::MAX, 2));
    }

    fn frame(flags: u8, src: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[198, 18, 0, 1]);
        f.extend_from_slice(&[
            0x9c, 0x40, 0, 22, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        f
    }

    #[test]
    fn same_classification_as_the_kernel() {
        let Classified::Probe(o) = classify(&frame(0x02, [198, 18, 0, 2]), 7, &[]) else {
            panic!("SYN is a probe")
        };
        assert_eq!(
            (o.dst_port, o.src_port, o.kind, o.ts_ns),
            (22, 40_000, ProbeKind::Syn, 7)
        );
        assert_eq!(o.src.to_string(), "198.18.0.2");
        assert_eq!(
            classify(&frame(0x29, [198, 18, 0, 2]), 0, &[]).probe_kind(),
            Some(ProbeKind::Xmas)
        );
        assert_eq!(
            classify(&frame(0x12, [198, 18, 0, 2]), 0, &[]),
            Classified::OtherTcp
        );
        assert_eq!(
            classify(&frame(0x02, [198, 18, 0, 2])[..30], 0, &[]),
            Classified::Malformed
        );
        let allow = vec!["198.18.0.0/24".parse().unwrap()];
        assert_eq!(
            classify(&frame(0x02, [198, 18, 0, 2]), 0, &allow),
            Classified::AllowListed
        );
    }

    impl Classified {
        fn probe_kind(&self) -> Option<ProbeKind> {
            match self {
                Self::Probe(o) => Some(o.kind),
                _ => None,
            }
        }
    }
}
