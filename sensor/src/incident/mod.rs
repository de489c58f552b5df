//! Incidents: events folded per source address on the sensor itself (no cloud), as Trapster's
//! enterprise console does.
//!
//! An incident opens with the first event from a source (`incident_created`), counts every later
//! event (`events_count`, `end_time`), and is sent again (`incident_updated`) each time its
//! severity rises:
//!
//! | what the source did | severity |
//! | --- | --- |
//! | connected only | low |
//! | sent data or a query | medium |
//! | tried to log in, or scanned ports | high |
//! | logged in on two services or more, or logged in after scanning | critical |
//!
//! An incident closes after `idle_timeout_secs` without an event; the next event opens a new
//! one. The tracker is pure: time is an input, and its size is bounded (`max_tracked`, the
//! least recently active incident is closed first).

pub mod envelope;

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::event::{Action, Event, Service};

/// How serious an incident (or an event) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A connection, nothing more.
    #[default]
    Low,
    /// Data or a query.
    Medium,
    /// A login attempt or a port scan.
    High,
    /// Logins on several services, or a login after a scan.
    Critical,
}

impl Severity {
    /// Lowercase name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// CEF severity (0-10).
    #[must_use]
    pub const fn cef(self) -> u8 {
        match self {
            Self::Low => 3,
            Self::Medium => 5,
            Self::High => 8,
            Self::Critical => 10,
        }
    }

    /// The severity one event has on its own.
    #[must_use]
    pub fn of_event(event: &Event) -> Self {
        match (event.service, event.action) {
            (Service::Portscan, _) | (_, Action::Login) => Self::High,
            (_, Action::Data | Action::Query) => Self::Medium,
            _ => Self::Low,
        }
    }
}

/// Why an incident message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentAction {
    /// A new incident.
    Created,
    /// Its severity rose.
    Updated,
    /// `sensor send-test`.
    Test,
}

impl IncidentAction {
    /// The envelope's `action`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "incident_created",
            Self::Updated => "incident_updated",
            Self::Test => "incident_test",
        }
    }
}

/// A snapshot of an incident, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Stable id across its messages.
    pub id: Uuid,
    /// Created, updated or test.
    pub action: IncidentAction,
    /// Channel of the event that set the severity (`ssh`, `portscan`, ...).
    pub channel: String,
    /// Category of that event (`login`, `query`, ...).
    pub category: String,
    /// "Port scan detected", "Login attempt on SSH", ...
    pub description: String,
    /// The source.
    pub src_ip: IpAddr,
    /// Source port of the first event (none for scans).
    pub src_port: Option<u16>,
    /// Sensor address the first event targeted.
    pub dst_ip: Option<IpAddr>,
    /// Port the event that set the severity targeted.
    pub dst_port: Option<u16>,
    /// First event.
    pub start_time: DateTime<Utc>,
    /// Latest event.
    pub end_time: DateTime<Utc>,
    /// Events folded in so far.
    pub events_count: u64,
    /// Always false on the sensor (acknowledging is a console action).
    pub acknowledged: bool,
    /// Current severity.
    pub severity: Severity,
    /// Services with a login attempt, in order.
    pub login_services: Vec<String>,
}

/// The test incident `sensor send-test` sends.
#[must_use]
pub fn test_incident(now: DateTime<Utc>) -> Incident {
    Incident {
        id: Uuid::new_v4(),
        action: IncidentAction::Test,
        channel: "test".to_owned(),
        category: "login".to_owned(),
        description: "Test incident".to_owned(),
        src_ip: IpAddr::from([192, 0, 2, 1]),
        src_port: None,
        dst_ip: None,
        dst_port: Some(22),
        start_time: now,
        end_time: now,
        events_count: 0,
        acknowledged: false,
        severity: Severity::High,
        login_services: Vec::new(),
    }
}

fn service_label(service: Service) -> String {
    match service {
        Service::Ftp => "FTP".to_owned(),
        Service::Ssh => "SSH".to_owned(),
        Service::Http => "HTTP".to_owned(),
        Service::Https => "HTTPS".to_owned(),
        Service::Mysql => "MySQL".to_owned(),
        Service::Postgres => "PostgreSQL".to_owned(),
        Service::Mssql => "MSSQL".to_owned(),
        Service::Telnet => "Telnet".to_owned(),
        other => other.as_str().to_uppercase(),
    }
}

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
    /// Monotonic time of the last event, for the idle timeout.
    last_ns: u64,
}

/// Folds events into incidents.
#[derive(Debug)]
pub struct Tracker {
    open: std::collections::HashMap<IpAddr, Open>,
    idle: Duration,
    max_tracked: usize,
}

impl Tracker {
    /// A tracker with `config`'s limits.
    #[must_use]
    pub fn new(config: &IncidentConfig) -> Self {
        Self {
            open: std::collections::HashMap::new(),
            idle: Duration::from_secs(config.idle_timeout_secs.max(1)),
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
        let src = event.session.src_ip;
        let severity = Severity::of_event(event);
        // Only this source's incident is checked for idleness here (O(1) per event); the agent
        // sweeps all of them on its drain tick, and a full tracker sweeps before evicting.
        if self
            .open
            .get(&src)
            .is_some_and(|o| now_ns.saturating_sub(o.last_ns) >= self.idle_ns())
        {
            self.open.remove(&src);
        }
        if !self.open.contains_key(&src) && self.open.len() >= self.max_tracked {
            self.sweep(now_ns);
        }
        if !self.open.contains_key(&src) && self.open.len() >= self.max_tracked {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, o)| o.last_ns)
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.open.remove(&ip);
            }
        }
        let Some(open) = self.open.get_mut(&src) else {
            let mut logins = BTreeSet::new();
            if event.action == Action::Login {
                logins.insert(event.service);
            }
            let incident = Incident {
                id: Uuid::new_v4(),
                action: IncidentAction::Created,
                channel: event.service.as_str().to_owned(),
                category: event.action.as_str().to_owned(),
                description: describe(event, severity, &logins),
                src_ip: src,
                src_port: (event.service != Service::Portscan).then_some(event.session.src_port),
                dst_ip: Some(event.session.dst_ip),
                dst_port: (event.service != Service::Portscan).then_some(event.session.dst_port),
                start_time: event.timestamp,
                end_time: event.timestamp,
                events_count: 1,
                acknowledged: false,
                severity,
                login_services: logins.iter().map(|s| s.as_str().to_owned()).collect(),
            };
            self.open.insert(
                src,
                Open {
                    incident: incident.clone(),
                    scanned: event.service == Service::Portscan,
                    logins,
                    last_ns: now_ns,
                },
            );
            return Some(incident);
        };
        open.last_ns = now_ns;
        open.incident.events_count += 1;
        open.incident.end_time = open.incident.end_time.max(event.timestamp);
        if event.service == Service::Portscan {
            open.scanned = true;
        }
        if event.action == Action::Login {
            open.logins.insert(event.service);
        }
        let mut level = severity;
        if !open.logins.is_empty() && (open.logins.len() >= 2 || open.scanned) {
            level = Severity::Critical;
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

    /// Closes incidents idle for longer than the timeout.
    pub fn sweep(&mut self, now_ns: u64) {
        let idle = self.idle_ns();
        self.open
            .retain(|_, o| now_ns.saturating_sub(o.last_ns) < idle);
    }

    fn idle_ns(&self) -> u64 {
        u64::try_from(self.idle.as_nanos()).unwrap_or(u64::MAX)
    }
}

fn describe(event: &Event, severity: Severity, logins: &BTreeSet<Service>) -> String {
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
        (_, Action::Query) => format!("Query on {service}"),
        (_, Action::Data) => format!("Data sent to {service}"),
        _ => format!("Connection to {service}"),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::Utc;
    use serde_json::Map;
    use uuid::Uuid;

    use super::{IncidentAction, IncidentConfig, Severity, Tracker};
    use crate::event::{Action, Event, Service, SessionIdentity};

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
            extra: Map::new(),
        }
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn severity_escalates_and_each_rise_is_sent_once() {
        let mut t = Tracker::new(&IncidentConfig::default());
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
        let mut t = Tracker::new(&IncidentConfig::default());
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
        let mut t = Tracker::new(&IncidentConfig {
            idle_timeout_secs: 10,
            max_tracked: 2,
        });
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
}
