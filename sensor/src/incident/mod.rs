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
//! | used a breadcrumb (`breadcrumb.login`) | critical, "Breadcrumb used on FTP" |
//! | fetched a honeytoken URL (`honeytoken.url`) | critical, "Honeytoken URL fetched on HTTP" |
//!
//! An incident closes after `idle_timeout_secs` without an event; the next event opens a new
//! one. The tracker is pure: time is an input, its size is bounded (`max_tracked`, the
//! least recently active incident is closed first), and each event costs O(1).
//!
//! A source is the event's address masked to `sensor.source_prefix` (IPv4 /32, IPv6 /64 by
//! default, [`crate::net::SourcePrefix`]): an attacker rotating addresses inside one IPv6 /64
//! is one incident, whose `src_ip` is the first address seen.

mod breadcrumb;
mod honeytoken;
mod tracker;

use crate::event::Service;
pub use crate::event::{Incident, IncidentAction, Severity, test_incident};
pub use breadcrumb::{Breadcrumb, Breadcrumbs, event_for as breadcrumb_event};
pub use honeytoken::{HoneytokenConfig, JsCloneToken, UrlToken, js_clone_script};
pub use tracker::{IncidentConfig, Tracker};

pub(crate) fn service_label(service: Service) -> String {
    match service {
        Service::Ftp => "FTP".to_owned(),
        Service::Ssh => "SSH".to_owned(),
        Service::Http => "HTTP".to_owned(),
        Service::Https => "HTTPS".to_owned(),
        Service::Mysql => "MySQL".to_owned(),
        Service::Postgres => "PostgreSQL".to_owned(),
        Service::Mssql => "MSSQL".to_owned(),
        Service::Telnet => "Telnet".to_owned(),
        Service::Nbns => "NBT-NS".to_owned(),
        other => other.as_str().to_uppercase(),
    }
}
