//! libpcap capture: the fallback for hosts without XDP (`sensor run --capture pcap`) and the
//! engine of `sensor replay FILE.pcap`. Frames are decoded with etherparse and classified with
//! the same rule as the kernel program ([`ProbeKind::classify`]); the allow-list is applied here.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use sensor_common::ProbeKind;
use serde_json::{Value, json};

use super::Observation;
use crate::{clock::monotonic_ns, config::Cidr};

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
    let (src, dst): (IpAddr, IpAddr) = match &packet.net {
        Some(NetSlice::Ipv4(v4)) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(v6)) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
        _ => return Classified::NonTcp,
    };
    let Some(TransportSlice::Tcp(tcp)) = &packet.transport else {
        return Classified::NonTcp;
    };
    let flags = tcp.slice().get(13).copied().unwrap_or(0);
    let Some(kind) = ProbeKind::classify(flags) else {
        return Classified::OtherTcp;
    };
    if allowlist.iter().any(|c| c.contains(src)) {
        return Classified::AllowListed;
    }
    let vlan_id = packet.vlan_ids().first().map_or(0, |v| v.value());
    Classified::Probe(Observation {
        ts_ns,
        src,
        dst,
        src_port: tcp.source_port(),
        dst_port: tcp.destination_port(),
        kind,
        ifindex: 0,
        vlan_id,
    })
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
        self.packets += 1;
        match c {
            Classified::Probe(_) => self.probes += 1,
            Classified::AllowListed => self.allow_listed += 1,
            Classified::OtherTcp => self.other_tcp += 1,
            Classified::NonTcp => self.non_tcp += 1,
            Classified::Malformed => self.malformed += 1,
        }
    }

    /// Adds another capture's counters.
    pub fn add(&mut self, other: &Self) {
        self.packets += other.packets;
        self.probes += other.probes;
        self.allow_listed += other.allow_listed;
        self.other_tcp += other.other_tcp;
        self.non_tcp += other.non_tcp;
        self.malformed += other.malformed;
        self.kernel_dropped += other.kernel_dropped;
        self.if_dropped += other.if_dropped;
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

/// A live capture running on its own thread, sending batches of observations.
#[derive(Debug)]
pub struct LiveCapture {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<PcapStats, PcapError>>,
}

impl LiveCapture {
    /// Opens `iface` (non-blocking, immediate mode, 64 MiB buffer, TCP only) and starts the
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
        cap.filter("tcp or (vlan and tcp)", true).map_err(err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = iface.to_owned();
        let thread = std::thread::Builder::new()
            .name("pcap-capture".to_owned())
            .spawn(move || capture_loop(cap, &name, &allowlist, &tx, &flag))
            .map_err(|e| err(pcap::Error::IoError(e.kind())))?;
        Ok(Self { stop, thread })
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

fn capture_loop(
    mut cap: pcap::Capture<pcap::Active>,
    name: &str,
    allowlist: &[Cidr],
    tx: &tokio::sync::mpsc::Sender<Vec<Observation>>,
    stop: &AtomicBool,
) -> Result<PcapStats, PcapError> {
    use std::os::fd::AsRawFd as _;
    let fd = cap.as_raw_fd();
    let mut stats = PcapStats::default();
    let mut batch = Vec::with_capacity(1024);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
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
                    let c = classify(packet.data, monotonic_ns(), allowlist);
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
    if let Ok(s) = cap.stats() {
        stats.kernel_dropped = u64::from(s.dropped);
        stats.if_dropped = u64::from(s.if_dropped);
    }
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

    use super::{Classified, classify};

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
