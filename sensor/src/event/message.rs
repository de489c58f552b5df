//! What flows to the outputs: a security event or an incident message. Encoding it is a format
//! ([`crate::format::encode_message`]); which outputs take it is theirs to say.

use chrono::{DateTime, Utc};

use super::{Event, Incident, Severity};

/// One item for the outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A security event.
    Event(Event),
    /// An incident created, updated, or a test.
    Incident(Incident),
}

impl From<Event> for Message {
    fn from(event: Event) -> Self {
        Self::Event(event)
    }
}

impl From<Incident> for Message {
    fn from(incident: Incident) -> Self {
        Self::Incident(incident)
    }
}

impl Message {
    /// When it happened (an incident: its latest event).
    #[must_use]
    pub fn timestamp(&self) -> DateTime<Utc> {
        match self {
            Self::Event(e) => e.timestamp,
            Self::Incident(i) => i.end_time,
        }
    }

    /// Its severity (an event: what it means on its own).
    #[must_use]
    pub fn severity(&self) -> Severity {
        match self {
            Self::Event(e) => Severity::of_event(e),
            Self::Incident(i) => i.severity,
        }
    }
}
