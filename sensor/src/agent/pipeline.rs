//! The event path after detection: scan reports and service events become events, are folded
//! into incidents, and go to the fan-out with the incident messages they raise.

use crate::{
    clock::{WallClock, monotonic_ns},
    event::Event,
    incident::{Breadcrumbs, HoneytokenConfig, Tracker},
    output::Fanout,
    scan::{ScanReport, to_event},
};

/// Incidents and outputs, with a count of the events handed over.
pub(super) struct Pipeline {
    pub(super) fanout: Fanout,
    pub(super) incidents: Tracker,
    /// Scan reports waiting to become events.
    pub(super) reports: Vec<ScanReport>,
    /// Events handed to the outputs so far.
    pub(super) events: u64,
    /// Planted credentials (`sensor.breadcrumbs`).
    pub(super) breadcrumbs: Breadcrumbs,
    /// Honeytokens (`sensor.honeytokens`).
    pub(super) honeytokens: HoneytokenConfig,
}

impl Pipeline {
    pub(super) fn new(fanout: Fanout, incidents: Tracker) -> Self {
        Self {
            fanout,
            incidents,
            reports: Vec::new(),
            events: 0,
            breadcrumbs: Breadcrumbs::new(Vec::new()),
            honeytokens: HoneytokenConfig::default(),
        }
    }

    /// Hands pending scan reports to the outputs as events.
    pub(super) fn emit_reports(&mut self) {
        if self.reports.is_empty() {
            return;
        }
        let clock = WallClock::now();
        let reports = std::mem::take(&mut self.reports);
        for report in &reports {
            self.deliver(to_event(report, &clock));
        }
        // Keep the allocation for the next batch.
        self.reports = reports;
        self.reports.clear();
    }

    /// Sends an event, folds it into its source's incident, and sends the incident message when
    /// the incident is new or its severity rose.
    pub(super) fn deliver(&mut self, event: Event) {
        let crumb = self.breadcrumbs.check(&event);
        let token = self.honeytokens.check(&event);
        self.deliver_one(event);
        for follow_up in [crumb, token].into_iter().flatten() {
            self.deliver_one(follow_up);
        }
    }

    fn deliver_one(&mut self, event: Event) {
        let incident = self.incidents.observe(&event, monotonic_ns());
        self.fanout.send(event);
        self.events = self.events.saturating_add(1);
        if let Some(incident) = incident {
            tracing::info!(
                incident = %incident.id,
                action = incident.action.as_str(),
                severity = incident.severity.as_str(),
                source = %incident.src_ip,
                "{}",
                incident.description
            );
            self.fanout.send(incident);
        }
    }

    /// Closes idle incidents (drain tick).
    pub(super) fn sweep_incidents(&mut self) {
        self.incidents.sweep(monotonic_ns());
    }
}
