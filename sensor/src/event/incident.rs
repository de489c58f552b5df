//! The incident record as it is sent: a snapshot of what one source did so far. The tracker
//! that builds it lives in [`crate::incident`]; its encodings in [`crate::format::incident`].

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Severity;

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
