//! What flows to the outputs: events and incident messages, and which of them each output takes
//! (`receive`, `min_severity`).

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::{
    event::Event,
    format::{self, Format, FormatContext, FormatError},
    incident::{Incident, Severity, envelope},
};

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

    /// Encodes it in `format`: events as the format says, incidents as the enterprise envelope
    /// (JSON formats) or a CEF line.
    ///
    /// # Errors
    /// [`FormatError`] if serialisation fails.
    pub fn encode(
        &self,
        format: Format,
        ctx: &FormatContext,
        out: &mut BytesMut,
    ) -> Result<(), FormatError> {
        match self {
            Self::Event(e) => format::encode(format, e, ctx, out),
            Self::Incident(i) => match format {
                Format::Cef => {
                    envelope::encode_cef(i, ctx, out);
                    Ok(())
                }
                Format::Default | Format::Trapster | Format::Ecs => {
                    envelope::encode_json(i, ctx, out)
                }
            },
        }
    }
}

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
