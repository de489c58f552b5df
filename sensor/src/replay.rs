//! `sensor replay FILE.pcap`: runs a capture file through the same classification and merger as
//! live capture, using the file's timestamps, and writes the events it would have produced.

use std::{io::Write, path::Path};

use bytes::BytesMut;
use chrono::DateTime;

use crate::{
    capture::pcap::{PcapError, PcapStats, read_file},
    clock::WallClock,
    config::Config,
    format::{self, FormatError},
    scan::{Merger, MergerStats, to_event},
};

/// Scans are swept at most this often (file time), as the live drain tick does.
const SWEEP_EVERY_NS: u64 = 100_000_000;

/// What a replay did.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySummary {
    /// Frame counters.
    pub pcap: PcapStats,
    /// Merger counters.
    pub merger: MergerStats,
    /// Events written.
    pub events: u64,
}

/// A replay that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error(transparent)]
    Pcap(#[from] PcapError),
    /// Writing events failed.
    #[error("writing events failed: {0}")]
    Io(#[from] std::io::Error),
    /// An event could not be encoded.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// Replays `path`, writing one JSON line per event to `out`.
///
/// # Errors
/// [`ReplayError`] when the file cannot be read or `out` cannot be written.
pub fn replay(
    config: &Config,
    path: &Path,
    out: &mut impl Write,
) -> Result<ReplaySummary, ReplayError> {
    let (observations, pcap) = read_file(path, &config.whitelist_ips)?;
    let mut merger =
        Merger::new(&config.sensor.portscan).with_source_prefix(config.sensor.source_prefix);
    let mut reports = Vec::new();
    let mut last_sweep = 0u64;
    for obs in &observations {
        if obs.ts_ns >= last_sweep.saturating_add(SWEEP_EVERY_NS) {
            merger.sweep(obs.ts_ns, &mut reports);
            last_sweep = obs.ts_ns;
        }
        merger.observe(obs, &mut reports);
    }
    merger.flush(&mut reports);
    // File timestamps are wall-clock nanoseconds since the epoch.
    let clock = WallClock::anchored(DateTime::UNIX_EPOCH, 0);
    let mut buf = BytesMut::new();
    let ctx = config.format_context();
    for report in &reports {
        format::encode(
            config.logger.format,
            &to_event(report, &clock),
            &ctx,
            &mut buf,
        )?;
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(ReplaySummary {
        pcap,
        merger: merger.stats(),
        events: reports.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::replay;
    use crate::config::Config;

    fn syn(src: [u8; 4], port: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[198, 18, 0, 1]);
        f.extend_from_slice(&[0x9c, 0x40]);
        f.extend_from_slice(&port.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        f
    }

    fn write_pcap(path: &std::path::Path, frames: &[(i64, Vec<u8>)]) {
        let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap();
        let mut file = cap.savefile(path).unwrap();
        for (ts_ms, data) in frames {
            let header = pcap::PacketHeader {
                ts: libc::timeval {
                    tv_sec: ts_ms / 1000,
                    tv_usec: (ts_ms % 1000) * 1000,
                },
                caplen: u32::try_from(data.len()).unwrap(),
                len: u32::try_from(data.len()).unwrap(),
            };
            file.write(&pcap::Packet::new(&header, data));
        }
        file.flush().unwrap();
    }

    #[test]
    fn a_capture_file_replays_into_the_same_events() {
        let dir = std::env::temp_dir().join(format!("sensor-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("scan.pcap");
        let base = 1_771_000_000_000i64; // 2026-02-13, ms
        let mut frames: Vec<(i64, Vec<u8>)> = (1..=25u16)
            .map(|p| (base + i64::from(p), syn([198, 18, 0, 2], p)))
            .collect();
        // Two ports from another source: below the threshold.
        frames.push((base + 30, syn([198, 18, 0, 3], 22)));
        frames.push((base + 31, syn([198, 18, 0, 3], 80)));
        // The first source again after a long pause: a second scan.
        frames.extend(
            (100..=103u16).map(|p| (base + 60_000 + i64::from(p), syn([198, 18, 0, 2], p))),
        );
        write_pcap(&path, &frames);
        let config = Config::embedded_default().unwrap();
        let mut out = Vec::new();
        let summary = replay(&config, &path, &mut out).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let events: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(summary.pcap.packets, 31);
        assert_eq!(events.len(), 2, "{events:#?}");
        assert_eq!(events[0]["src_ip"], "198.18.0.2");
        assert_eq!(events[0]["extra"]["ports"].as_array().unwrap().len(), 25);
        assert_eq!(events[0]["timestamp"], "2026-02-13 16:26:40.001000");
        assert_eq!(
            events[1]["extra"]["ports"],
            serde_json::json!(["100", "101", "102", "103"])
        );
        assert_eq!(summary.merger.below_threshold, 1);
    }
}
