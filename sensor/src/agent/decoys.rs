//! Wiring the any-port decoys: the services' catch-all listeners and UDP sockets, and the
//! steered TCP and UDP ports, go into the kernel's `sk_lookup` program
//! ([`crate::capture::sk_lookup`]). A reload (also after the privilege drop: the program's map
//! descriptors are kept from the start) puts the restarted services' sockets and ports in, or
//! takes them out. With an XDP capture the program is attached at start even with the decoys
//! off, idle, so that a reload can turn them on without the capabilities. A kernel that
//! refuses the program costs the any-port decoys only: the failure is logged and reported as
//! `sensor.degraded` (`extra = {decoy: "tcp", port: 0, reason}`), and the configured services
//! and scan detection keep running.

use std::os::fd::AsFd;

use crate::{
    capture::sk_lookup::{self, Attached, Listeners, PortBitmap, SkLookupError, Steered},
    event::{Action, Event},
    services::{DecoySockets, Services},
};

/// Attaches the program for `services`' decoys (none when the kernel refuses: logged, and
/// `sensor.degraded` handed to `report`). With `sensor.decoys` off, the program is attached idle
/// when `idle` (an XDP capture, which loads BPF programs anyway), so that a reload can turn the
/// decoys on after the privilege drop; a kernel that refuses it then is only logged.
pub(super) fn attach(
    services: &Services,
    report: impl FnOnce(Event),
    idle: bool,
) -> Option<Attached> {
    let Some(decoys) = services.decoys() else {
        if !idle {
            return None;
        }
        return match sk_lookup::attach(&Steered::default(), None) {
            Ok(attached) => {
                tracing::debug!(
                    "sk_lookup program attached idle: a reload can turn the any-port decoys on."
                );
                Some(attached)
            }
            Err(err) => {
                tracing::debug!(error = %err, "No idle sk_lookup program; turning the any-port decoys on will need a restart.");
                None
            }
        };
    };
    match sk_lookup::attach(&steered(decoys), Some(listeners(decoys))) {
        Ok(attached) => {
            tracing::info!(
                ports = attached.ports(),
                "Any-port decoys steering connections (sk_lookup attached)."
            );
            Some(attached)
        }
        Err(err) => {
            tracing::error!(error = %err, "Any-port decoys unavailable; the configured services and scan detection keep running.");
            report(degraded(&err));
            None
        }
    }
}

/// Points the attached program at restarted services (configuration reload): their new
/// listeners and steered ports. Without decoys in the new services, nothing is steered.
pub(super) fn refresh(attached: &mut Attached, services: &Services) {
    let outcome = match services.decoys() {
        Some(decoys) => attached
            .set_listeners(listeners(decoys))
            .and_then(|()| attached.set_ports(&steered(decoys))),
        None => attached
            .set_ports(&Steered::default())
            .and_then(|()| attached.clear_listeners()),
    };
    match outcome {
        Ok(()) => tracing::info!(
            ports = attached.ports(),
            "Any-port decoys follow the reloaded services."
        ),
        Err(err) => {
            // Steering to listeners that are gone would reset every decoy connection.
            let _ignored = attached.set_ports(&Steered::default());
            tracing::error!(error = %err, "The any-port decoys could not follow the reloaded services; nothing is steered until a restart.");
        }
    }
}

/// The listening-port watch: a program that began listening on a steered port gets its
/// connections back, and a port it stopped listening on is steered again.
pub(super) fn watch(attached: &mut Attached, services: &mut Services) {
    // A reload may have turned the watch off (`watch_ms: 0`).
    if services.decoy_watch().is_none() || !services.rewatch_decoys() {
        return;
    }
    let Some(decoys) = services.decoys() else {
        return;
    };
    match attached.set_ports(&steered(decoys)) {
        Ok(()) => tracing::info!(
            ports = attached.ports(),
            "A port began or stopped listening: the any-port decoys' steered ports follow."
        ),
        Err(err) => {
            let _ignored = attached.set_ports(&Steered::default());
            tracing::error!(error = %err, "The steered ports could not be updated; nothing is steered until a reload.");
        }
    }
}

fn listeners(decoys: &DecoySockets) -> Listeners<'_> {
    Listeners {
        v4: decoys.v4.as_fd(),
        v6: decoys.v6.as_ref().map(AsFd::as_fd),
        udp_v4: decoys.udp_v4.as_ref().map(AsFd::as_fd),
        udp_v6: decoys.udp_v6.as_ref().map(AsFd::as_fd),
    }
}

fn steered(decoys: &DecoySockets) -> Steered {
    Steered {
        tcp: PortBitmap::from_ports(decoys.ports.iter().copied()),
        udp: PortBitmap::from_ports(decoys.udp_ports.iter().copied()),
    }
}

fn degraded(err: &SkLookupError) -> Event {
    let mut extra = serde_json::Map::new();
    extra.insert("decoy".to_owned(), "tcp".into());
    extra.insert("port".to_owned(), 0.into());
    extra.insert("reason".to_owned(), err.to_string().into());
    Event::health(Action::Degraded, extra)
}
