//! Admission of connections: a global and a per-source cap on concurrent connections, shared
//! by every service. A connection over either cap is closed at once and counted; an admitted one
//! holds a [`Permit`] that gives its place back when dropped.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use serde_json::{Value, json};

/// Counters of the service framework.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Connections admitted.
    pub accepted: AtomicU64,
    /// Closed at once: the global cap was reached.
    pub rejected_global: AtomicU64,
    /// Closed at once: the source's cap was reached.
    pub rejected_source: AtomicU64,
    /// Closed at once: the source is in `whitelist_ips`.
    pub whitelisted: AtomicU64,
    /// Sessions ended by a handshake, idle or session timeout.
    pub timeouts: AtomicU64,
    /// Sessions ended because the client broke a limit or the protocol.
    pub protocol_errors: AtomicU64,
    /// Events not delivered because the pipeline had shut down.
    pub events_lost: AtomicU64,
    /// Events dropped because their session reached `max_events_per_session`.
    pub events_suppressed: AtomicU64,
}

impl ServiceCounters {
    /// As JSON, for the stats file.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "accepted": get(&self.accepted),
            "rejected_global": get(&self.rejected_global),
            "rejected_source": get(&self.rejected_source),
            "whitelisted": get(&self.whitelisted),
            "timeouts": get(&self.timeouts),
            "protocol_errors": get(&self.protocol_errors),
            "events_lost": get(&self.events_lost),
            "events_suppressed": get(&self.events_suppressed),
        })
    }
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// All services together hold `max_connections`.
    Global,
    /// The source holds `max_connections_per_source`.
    Source,
}

/// The admission gate.
#[derive(Debug)]
pub struct Gate {
    max_total: usize,
    max_per_source: usize,
    state: Mutex<State>,
}

impl Gate {
    /// A gate with the given caps.
    #[must_use]
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_source,
            state: Mutex::new(State::default()),
        })
    }

    /// Admits a connection from `source`, or says why not.
    ///
    /// # Errors
    /// The [`Refusal`] when a cap is reached.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Permit, Refusal> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.total >= self.max_total {
            return Err(Refusal::Global);
        }
        let count = state.per_source.entry(source).or_insert(0);
        if *count >= self.max_per_source {
            return Err(Refusal::Source);
        }
        *count += 1;
        state.total += 1;
        Ok(Permit {
            gate: Arc::clone(self),
            source,
        })
    }

    /// Connections held now.
    #[must_use]
    pub fn open(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// A place held by one connection.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    source: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self
            .gate
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.total = state.total.saturating_sub(1);
        if let Some(count) = state.per_source.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{Gate, Refusal};

    #[test]
    fn caps_per_source_and_globally_and_gives_places_back() {
        let gate = Gate::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), Refusal::Source);
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).unwrap_err(), Refusal::Global);
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _b2 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).unwrap_err(), Refusal::Global);
    }
}
