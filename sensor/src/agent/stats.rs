//! What a run reports: the summary at exit and at every stats tick (`--stats-file`), and the
//! warnings the stats tick logs when the kernel loses records.

use serde_json::json;

use crate::{
    capture::{aggregate::AggregateStats, counters::CounterSnapshot, pcap::PcapStats},
    output::OutputStats,
    scan::{Merger, MergerStats},
};

/// What a run did, reported at exit.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Final kernel counters (XDP capture).
    pub kernel: Option<CounterSnapshot>,
    /// Final libpcap counters (pcap capture).
    pub pcap: Option<PcapStats>,
    /// Merger counters.
    pub merger: MergerStats,
    /// Records that did not decode.
    pub undecodable: u64,
    /// In-kernel aggregation (XDP capture with `sensor.xdp.aggregate`).
    pub aggregate: Option<AggregateStats>,
    /// Events handed to the outputs.
    pub events: u64,
    /// Per-output counters.
    pub outputs: Vec<OutputStats>,
    /// Emulated-service counters (connections admitted, refused, timed out, ...).
    pub services: serde_json::Value,
}

impl RunSummary {
    /// As JSON, for `--stats-file`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "kernel": self.kernel.map(|k| k.to_json()),
            "pcap": self.pcap.map(|p| p.to_json()),
            "merger": {
                "observations": self.merger.observations,
                "reports": self.merger.reports,
                "follow_ups": self.merger.follow_ups,
                "below_threshold": self.merger.below_threshold,
                "evicted": self.merger.evicted,
                "flood_folded": self.merger.flood_folded,
                "flood_summaries": self.merger.flood_summaries,
            },
            "undecodable_records": self.undecodable,
            "aggregation": self.aggregate.map(|a| json!({
                "installed": a.installed,
                "installs": a.installs,
                "ports": a.ports,
                "full": a.full,
                "errors": a.errors,
            })),
            "events": self.events,
            "outputs": self.outputs.iter().map(OutputStats::to_json).collect::<Vec<_>>(),
            "services": self.services,
        })
    }
}

pub(super) fn report_counters(delta: &CounterSnapshot, merger: &Merger) {
    use sensor_common::Counter;
    if delta.get(Counter::RingBufFull) > 0 {
        tracing::warn!(
            lost = delta.get(Counter::RingBufFull),
            "Ring buffer full: probe records lost; raise sensor.xdp.ring_buffer_bytes."
        );
    }
    if delta.get(Counter::SourceBudget) + delta.get(Counter::CpuBudget) > 0 {
        tracing::warn!(
            source_budget = delta.get(Counter::SourceBudget),
            cpu_budget = delta.get(Counter::CpuBudget),
            "Record budget exceeded: probes not recorded."
        );
    }
    tracing::debug!(kernel = %delta.to_json(), tracked = merger.tracked(), "Counters.");
}

/// Replaces the stats file atomically (a temporary file, then a rename), on the blocking pool
/// so a slow disk never holds a runtime worker.
pub(super) async fn write_stats(path: &std::path::Path, summary: &RunSummary) {
    let text = summary.to_json().to_string();
    let path = path.to_owned();
    let tmp = path.with_extension("tmp");
    let shown = path.display().to_string();
    let result = tokio::task::spawn_blocking(move || {
        std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path))
    })
    .await
    .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
    if let Err(err) = result {
        tracing::warn!(path = %shown, error = %err, "Writing the stats file failed.");
    }
}
