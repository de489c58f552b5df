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
    /// Only new incidents (and tests): an `email` output without a digest mails nothing else,
    /// so it does not take (nor count as sent) what it would never mail.
    pub new_incidents_only: bool,
}

impl Filter {
    /// Whether `message` goes to this output. Test incidents always do.
    #[must_use]
    pub fn accepts(&self, message: &Message) -> bool {
        if self.new_incidents_only
            && !matches!(message, Message::Incident(i) if i.action != crate::incident::IncidentAction::Updated)
        {
            return false;
        }
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

#[cfg(test)]
mod tests {
    use super::{Filter, Receive};
    use crate::event::{IncidentAction, Message, Severity, test_incident};

    #[test]
    fn a_mail_output_without_digest_takes_new_incidents_and_tests_only() {
        let filter = Filter {
            receive: Receive::Both,
            min_severity: Severity::Low,
            new_incidents_only: true,
        };
        let mut incident = test_incident(chrono::Utc::now());
        assert!(filter.accepts(&Message::Incident(incident.clone())));
        incident.action = IncidentAction::Created;
        assert!(filter.accepts(&Message::Incident(incident.clone())));
        incident.action = IncidentAction::Updated;
        assert!(!filter.accepts(&Message::Incident(incident.clone())));
        let open = Filter {
            new_incidents_only: false,
            ..filter
        };
        assert!(open.accepts(&Message::Incident(incident)));
    }
}
