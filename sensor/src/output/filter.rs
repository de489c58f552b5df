//! Which messages each output takes (`receive`, `min_severity`).

use serde::Deserialize;

use crate::event::{Message, Severity};

/// What an output receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Receive {
    /// Every event, no incident message.
    Events,
    /// Incident messages only.
    Incidents,
    /// Both.
    Both,
}

/// An output's choice of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// Events, incidents or both.
    pub receive: Receive,
    /// Messages below this severity are not sent to it.
    pub min_severity: Severity,
}

impl Filter {
    /// Whether `message` goes to this output. Test incidents always do.
    #[must_use]
    pub fn accepts(&self, message: &Message) -> bool {
        let kind = match (message, self.receive) {
            (Message::Incident(i), _) if i.action == crate::incident::IncidentAction::Test => {
                return true;
            }
            (Message::Event(e), _) if e.service == crate::event::Service::Sensor => {
                // Health events go wherever events go.
                return self.receive != Receive::Incidents;
            }
            (Message::Event(_), Receive::Events | Receive::Both)
            | (Message::Incident(_), Receive::Incidents | Receive::Both) => true,
            _ => false,
        };
        kind && message.severity() >= self.min_severity
    }
}
