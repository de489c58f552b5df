//! How serious an event or an incident is.

use serde::Deserialize;

use super::{Action, Event, Service};

/// How serious an incident (or an event) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A connection, nothing more.
    #[default]
    Low,
    /// Data or a query.
    Medium,
    /// A login attempt, a port scan or a name-poisoning answer.
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
            (Service::Breadcrumb | Service::Honeytoken, _) => Self::Critical,
            (Service::Portscan, _) | (_, Action::Login | Action::Poisoning | Action::Upload) => {
                Self::High
            }
            (_, Action::Data | Action::Query) => Self::Medium,
            _ => Self::Low,
        }
    }
}
