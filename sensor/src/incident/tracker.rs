//! The incident tracker: an LRU of open incidents keyed by source, time injected.

use std::{collections::BTreeSet, time::Duration};

use lru::LruCache;
use serde::Deserialize;
use uuid::Uuid;

use super::service_label;
use crate::{
    event::{Action, Event, Incident, IncidentAction, Service, Severity},
    net::{SourceKey, SourcePrefix},
};

/// `incidents` configuration block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentConfig {
    /// An incident closes after this long without an event from its source.
    pub idle_timeout_secs: u64,
    /// Incidents open at once; the least recently active is closed first.
    pub max_tracked: usize,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 3_600,
            max_tracked: 65_536,
        }
    }
}

#[derive(Debug)]
struct Open {
    incident: Incident,
    scanned: bool,
    logins: BTreeSet<Service>,
    /// The service of the last login, named when a breadcrumb follows it.
    last_login: Option<Service>,
    /// The service of the last HTTP(S) request, named when a honeytoken follows it.
    last_web: Option<Service>,
    /// Monotonic time of the last event, for the idle timeout.
    last_ns: u64,
}

/// Folds events into incidents, one per source.
///
/// The open incidents sit in an LRU ordered by their last event: an event touches only its own
/// source's entry, a full tracker closes the least recently active one, and a sweep pops idle
/// incidents from the cold end until it meets a live one. Every operation is O(1) per event
/// (a sweep is O(closed)), whatever the number of sources.
#[derive(Debug)]
pub struct Tracker {
    open: LruCache<SourceKey, Open, foldhash::fast::RandomState>,
    prefix: SourcePrefix,
    idle_ns: u64,
    max_tracked: usize,
}

impl Tracker {
    /// A tracker with `config`'s limits; sources are addresses masked to `prefix`.
    #[must_use]
    pub fn new(config: &IncidentConfig, prefix: SourcePrefix) -> Self {
        let idle = Duration::from_secs(config.idle_timeout_secs.max(1));
        Self {
            open: LruCache::unbounded_with_hasher(foldhash::fast::RandomState::default()),
            prefix,
            idle_ns: u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX),
            max_tracked: config.max_tracked.max(1),
        }
    }

    /// Incidents open now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// True when none is open.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Folds `event` (seen at monotonic `now_ns`); returns the message to send, if any.
    pub fn observe(&mut self, event: &Event, now_ns: u64) -> Option<Incident> {
        if event.service == Service::Sensor {
            return None;
        }
        let key = self.prefix.key(event.session.src_ip);
        let severity = Severity::of_event(event);
        let idle_ns = self.idle_ns;
        // An incident idle for longer than the timeout is closed; this event opens a new one.
        if self
            .open
            .peek(&key)
            .is_some_and(|o| now_ns.saturating_sub(o.last_ns) >= idle_ns)
        {
            self.open.pop(&key);
        }
        let Some(open) = self.open.get_mut(&key) else {
            if self.open.len() >= self.max_tracked {
                // The least recently active incident makes room (closed, as if idle).
                self.open.pop_lru();
            }
            let (incident, open) = open_incident(event, severity, now_ns);
            self.open.push(key, open);
            return Some(incident);
        };
        open.last_ns = now_ns;
        open.incident.events_count = open.incident.events_count.saturating_add(1);
        open.incident.end_time = open.incident.end_time.max(event.timestamp);
        if event.service == Service::Portscan {
            open.scanned = true;
        }
        if event.action == Action::Login && event.service != Service::Breadcrumb {
            open.logins.insert(event.service);
            open.last_login = Some(event.service);
        }
        if matches!(event.service, Service::Http | Service::Https) {
            open.last_web = Some(event.service);
        }
        let mut level = severity;
        if !open.logins.is_empty() && (open.logins.len() >= 2 || open.scanned) {
            level = Severity::Critical;
        }
        if matches!(event.service, Service::Breadcrumb | Service::Honeytoken) {
            // Critical already (a login raised it, or a scan and a login): say why anyway.
            let incident = &mut open.incident;
            let description = if event.service == Service::Honeytoken {
                honeytoken_description(event.action, open.last_web)
            } else {
                breadcrumb_description(open.last_login)
            };
            if incident.description == description {
                return None;
            }
            incident.severity = Severity::Critical;
            incident.action = IncidentAction::Updated;
            incident.channel = event.service.as_str().to_owned();
            incident.category = event.action.as_str().to_owned();
            incident.dst_port = Some(event.session.dst_port);
            incident.description = description;
            return Some(incident.clone());
        }
        if level <= open.incident.severity {
            return None;
        }
        let incident = &mut open.incident;
        incident.severity = level;
        incident.action = IncidentAction::Updated;
        incident.channel = event.service.as_str().to_owned();
        incident.category = event.action.as_str().to_owned();
        incident.dst_port = (event.service != Service::Portscan).then_some(event.session.dst_port);
        incident.login_services = open.logins.iter().map(|s| s.as_str().to_owned()).collect();
        incident.description = describe(event, level, &open.logins);
        Some(incident.clone())
    }

    /// Closes incidents idle for longer than the timeout; returns how many. Costs O(closed):
    /// the LRU's cold end holds the least recently active incident.
    pub fn sweep(&mut self, now_ns: u64) -> usize {
        let mut closed = 0;
        while self
            .open
            .peek_lru()
            .is_some_and(|(_, o)| now_ns.saturating_sub(o.last_ns) >= self.idle_ns)
        {
            self.open.pop_lru();
            closed += 1;
        }
        closed
    }
}

/// A new incident for `event`'s source, and its tracking state.
fn open_incident(event: &Event, severity: Severity, now_ns: u64) -> (Incident, Open) {
    let mut logins = BTreeSet::new();
    if event.action == Action::Login && event.service != Service::Breadcrumb {
        logins.insert(event.service);
    }
    let scan = event.service == Service::Portscan;
    let incident = Incident {
        id: Uuid::new_v4(),
        action: IncidentAction::Created,
        channel: event.service.as_str().to_owned(),
        category: event.action.as_str().to_owned(),
        description: describe(event, severity, &logins),
        src_ip: event.session.src_ip,
        src_port: (!scan).then_some(event.session.src_port),
        dst_ip: Some(event.session.dst_ip),
        dst_port: (!scan).then_some(event.session.dst_port),
        start_time: event.timestamp,
        end_time: event.timestamp,
        events_count: 1,
        acknowledged: false,
        severity,
        login_services: logins.iter().map(|s| s.as_str().to_owned()).collect(),
    };
    let open = Open {
        incident: incident.clone(),
        scanned: scan,
        last_login: logins.iter().next().copied(),
        last_web: matches!(event.service, Service::Http | Service::Https).then_some(event.service),
        logins,
        last_ns: now_ns,
    };
    (incident, open)
}

/// "Honeytoken URL fetched on HTTP".
fn honeytoken_description(action: Action, service: Option<Service>) -> String {
    let what = if action == Action::JsClone {
        "Cloned page called home"
    } else {
        "Honeytoken URL fetched"
    };
    service.map_or_else(
        || what.to_owned(),
        |s| format!("{what} on {}", service_label(s)),
    )
}

/// "Breadcrumb used on FTP".
fn breadcrumb_description(service: Option<Service>) -> String {
    service.map_or_else(
        || "Breadcrumb used".to_owned(),
        |s| format!("Breadcrumb used on {}", service_label(s)),
    )
}

fn describe(event: &Event, severity: Severity, logins: &BTreeSet<Service>) -> String {
    if event.service == Service::Breadcrumb {
        return breadcrumb_description(logins.iter().next().copied());
    }
    if event.service == Service::Honeytoken {
        return honeytoken_description(event.action, None);
    }
    if severity == Severity::Critical {
        let names: Vec<String> = logins.iter().map(|s| service_label(*s)).collect();
        return if logins.len() >= 2 {
            format!("Repeated logins across services ({})", names.join(", "))
        } else {
            format!("Login attempt on {} after a port scan", names.join(", "))
        };
    }
    let service = service_label(event.service);
    match (event.service, event.action) {
        (Service::Portscan, _) => "Port scan detected".to_owned(),
        (_, Action::Login) => format!("Login attempt on {service}"),
        (_, Action::Poisoning) => format!("{service} poisoning detected"),
        (_, Action::Query) => format!("Query on {service}"),
        (_, Action::Data) => format!("Data sent to {service}"),
        (_, Action::Upload) => format!("File uploaded to {service}"),
        _ => format!("Connection to {service}"),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::Utc;
    use uuid::Uuid;

    use super::{IncidentAction, IncidentConfig, Severity, Tracker};
    use crate::{
        event::{Action, Event, Service, SessionIdentity},
        net::SourcePrefix,
    };

    fn event(src: &str, service: Service, action: Action) -> Event {
        Event {
            id: Uuid::new_v4(),
            timestamp: Utc::now(),
            session: SessionIdentity {
                src_ip: src.parse().unwrap(),
                src_port: 40_000,
                dst_ip: "192.0.2.10".parse().unwrap(),
                dst_port: 22,
            },
            service,
            action,
            data: Bytes::new(),
            extra: crate::event::Extra::new(),
        }
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_breadcrumb_makes_the_incident_critical_and_names_the_service() {
        let mut t = Tracker::new(&IncidentConfig::default(), SourcePrefix::default());
        let a = "198.51.100.9";
        let created = t
            .observe(&event(a, Service::Ftp, Action::Login), 0)
            .unwrap();
        assert_eq!(created.severity, Severity::High);
        let up = t
            .observe(&event(a, Service::Breadcrumb, Action::Login), SEC)
            .unwrap();
        assert_eq!(
            (up.action, up.severity, up.description.as_str()),
            (
                IncidentAction::Updated,
                Severity::Critical,
                "Breadcrumb used on FTP"
            )
        );
        assert_eq!(up.channel, "breadcrumb");
        assert_eq!(up.login_services, ["ftp"]);
        // The same breadcrumb again says nothing new; on another service it does.
        assert!(
            t.observe(&event(a, Service::Breadcrumb, Action::Login), 2 * SEC)
                .is_none()
        );
        assert!(
            t.observe(&event(a, Service::Ssh, Action::Login), 3 * SEC)
                .is_none()
        );
        let up = t
            .observe(&event(a, Service::Breadcrumb, Action::Login), 4 * SEC)
            .unwrap();
        assert_eq!(up.description, "Breadcrumb used on SSH");
        assert_eq!(up.events_count, 5);
    }

    #[test]
    fn severity_escalates_and_each_rise_is_sent_once() {
        let mut t = Tracker::new(&IncidentConfig::default(), SourcePrefix::default());
        let a = "198.51.100.7";
        let created = t
            .observe(&event(a, Service::Ssh, Action::Connection), 0)
            .unwrap();
        assert_eq!(created.action, IncidentAction::Created);
        assert_eq!(created.severity, Severity::Low);
        assert_eq!(created.description, "Connection to SSH");
        assert!(
            t.observe(&event(a, Service::Ssh, Action::Connection), SEC)
                .is_none()
        );
        let up = t
            .observe(&event(a, Service::Http, Action::Query), 2 * SEC)
            .unwrap();
        assert_eq!(
            (up.action, up.severity),
            (IncidentAction::Updated, Severity::Medium)
        );
        let up = t
            .observe(&event(a, Service::Ssh, Action::Login), 3 * SEC)
            .unwrap();
        assert_eq!(up.severity, Severity::High);
        assert_eq!(up.description, "Login attempt on SSH");
        assert!(
            t.observe(&event(a, Service::Ssh, Action::Login), 4 * SEC)
                .is_none()
        );
        let up = t
            .observe(&event(a, Service::Ftp, Action::Login), 5 * SEC)
            .unwrap();
        assert_eq!(up.severity, Severity::Critical);
        assert_eq!(up.description, "Repeated logins across services (FTP, SSH)");
        assert_eq!(up.events_count, 6);
        assert_eq!(up.id, created.id);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_scan_then_a_login_is_critical() {
        let mut t = Tracker::new(&IncidentConfig::default(), SourcePrefix::default());
        let a = "2001:db8::5";
        let created = t
            .observe(&event(a, Service::Portscan, Action::Query), 0)
            .unwrap();
        assert_eq!(created.severity, Severity::High);
        assert_eq!(created.description, "Port scan detected");
        let up = t
            .observe(&event(a, Service::Ssh, Action::Login), SEC)
            .unwrap();
        assert_eq!(up.severity, Severity::Critical);
        assert_eq!(up.events_count, 2);
        assert_eq!(up.description, "Login attempt on SSH after a port scan");
    }

    #[test]
    fn incidents_close_when_idle_and_are_bounded() {
        let mut t = Tracker::new(
            &IncidentConfig {
                idle_timeout_secs: 10,
                max_tracked: 2,
            },
            SourcePrefix::default(),
        );
        let first = t
            .observe(&event("192.0.2.1", Service::Ftp, Action::Connection), 0)
            .unwrap();
        let again = t
            .observe(
                &event("192.0.2.1", Service::Ftp, Action::Connection),
                11 * SEC,
            )
            .unwrap();
        assert_eq!(again.action, IncidentAction::Created);
        assert_ne!(again.id, first.id);
        t.observe(
            &event("192.0.2.2", Service::Ftp, Action::Connection),
            12 * SEC,
        );
        t.observe(
            &event("192.0.2.3", Service::Ftp, Action::Connection),
            13 * SEC,
        );
        assert_eq!(t.len(), 2);
        assert!(
            t.observe(
                &event("192.0.2.3", Service::Ftp, Action::Connection),
                14 * SEC
            )
            .is_none()
        );
        assert!(
            t.observe(
                &event("198.51.100.1", Service::Sensor, Action::Degraded),
                15 * SEC
            )
            .is_none()
        );
    }

    #[test]
    fn an_ipv6_slash_64_sweep_is_one_incident_and_the_next_subnet_another() {
        let mut t = Tracker::new(&IncidentConfig::default(), SourcePrefix::default());
        let first = t
            .observe(
                &event("2001:db8:7:1::1", Service::Ssh, Action::Connection),
                0,
            )
            .unwrap();
        for i in 2..500u32 {
            let src = format!("2001:db8:7:1:{:x}:{:x}::{i:x}", i * 7, i * 13);
            assert!(
                t.observe(&event(&src, Service::Ssh, Action::Connection), u64::from(i))
                    .is_none()
            );
        }
        let up = t
            .observe(
                &event("2001:db8:7:1:ffff::9", Service::Ssh, Action::Login),
                SEC,
            )
            .unwrap();
        assert_eq!(up.id, first.id);
        assert_eq!(up.events_count, 500);
        assert_eq!(
            up.src_ip,
            "2001:db8:7:1::1".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(t.len(), 1);
        let other = t
            .observe(
                &event("2001:db8:7:2::1", Service::Ssh, Action::Connection),
                SEC,
            )
            .unwrap();
        assert_ne!(other.id, first.id);
        assert_eq!(t.len(), 2);
        // With IPv6 sources counted per address, the same sweep is many incidents.
        let mut per_address = Tracker::new(
            &IncidentConfig::default(),
            SourcePrefix {
                ipv4: 32,
                ipv6: 128,
            },
        );
        for src in ["2001:db8:7:1::1", "2001:db8:7:1::2"] {
            assert!(
                per_address
                    .observe(&event(src, Service::Ssh, Action::Connection), 0)
                    .is_some()
            );
        }
    }

    #[test]
    fn a_full_tracker_closes_the_least_recently_active_incident() {
        let mut t = Tracker::new(
            &IncidentConfig {
                idle_timeout_secs: 3_600,
                max_tracked: 3,
            },
            SourcePrefix::default(),
        );
        let a = t
            .observe(&event("192.0.2.1", Service::Ftp, Action::Connection), 0)
            .unwrap();
        t.observe(&event("192.0.2.2", Service::Ftp, Action::Connection), 1);
        t.observe(&event("192.0.2.3", Service::Ftp, Action::Connection), 2);
        // The oldest source is active again: 192.0.2.2 is now the least recently active.
        assert!(
            t.observe(&event("192.0.2.1", Service::Ftp, Action::Connection), 3)
                .is_none()
        );
        t.observe(&event("192.0.2.4", Service::Ftp, Action::Connection), 4);
        assert_eq!(t.len(), 3);
        let again = t
            .observe(&event("192.0.2.1", Service::Ftp, Action::Query), 5)
            .unwrap();
        assert_eq!((again.id, again.events_count), (a.id, 3));
        let reopened = t
            .observe(&event("192.0.2.2", Service::Ftp, Action::Connection), 6)
            .unwrap();
        assert_eq!(reopened.action, IncidentAction::Created);
    }

    #[test]
    fn a_sweep_closes_exactly_the_idle_incidents() {
        let mut t = Tracker::new(
            &IncidentConfig {
                idle_timeout_secs: 10,
                max_tracked: 100,
            },
            SourcePrefix::default(),
        );
        for i in 0..10u64 {
            let src = format!("192.0.2.{i}");
            t.observe(&event(&src, Service::Ftp, Action::Connection), i * SEC);
        }
        assert_eq!(t.sweep(9 * SEC), 0);
        // Idle for 10 s or more at 15 s: the ones last seen at 0..=5 s.
        assert_eq!(t.sweep(15 * SEC), 6);
        assert_eq!(t.len(), 4);
        assert_eq!(t.sweep(100 * SEC), 4);
        assert!(t.is_empty());
    }
}
