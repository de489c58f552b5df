//! One client session: its identity, fixed from the socket when the connection is accepted (or
//! the first datagram arrives), and the events it emits.
//!
//! Protocol code gets a [`Session`] (and, over TCP, a [`super::conn::Conn`]). It can add `extra`
//! fields and raw bytes to events, never change who talked to whom. The same session type serves
//! TCP connections and UDP pseudo-sessions, so identity, the per-session event cap and the
//! whitelist behave the same whatever the transport.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use chrono::Utc;
use serde_json::{Map, Value};
use tokio::{sync::mpsc, time::Instant};
use uuid::Uuid;

use super::gate::ServiceCounters;
use crate::event::{Action, Event, Service, SessionIdentity};
use crate::output::durable::{Durability, Unconfirmed};
use crate::services::ServiceLimits;

/// Where services send their events: the agent forwards them to the outputs. A durable sink
/// (the agent's, with spooled outputs) makes a TCP session wait, bounded, until its event is in
/// every spool that takes it before the session goes on to answer the client
/// ([`crate::output::durable`]).
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Event>,
    durability: Option<Arc<Durability>>,
}

impl From<mpsc::Sender<Event>> for EventSink {
    fn from(tx: mpsc::Sender<Event>) -> Self {
        Self {
            tx,
            durability: None,
        }
    }
}

impl EventSink {
    /// A sink whose sessions wait for the spooled outputs to have their events on disk.
    #[must_use]
    pub const fn durable(tx: mpsc::Sender<Event>, durability: Arc<Durability>) -> Self {
        Self {
            tx,
            durability: Some(durability),
        }
    }

    /// The same channel, never waiting for the disk (UDP: one loop serves every source, so a
    /// wait would hold up the whole decoy).
    #[must_use]
    pub fn best_effort(&self) -> Self {
        self.tx.clone().into()
    }

    /// The channel itself.
    #[must_use]
    pub const fn sender(&self) -> &mpsc::Sender<Event> {
        &self.tx
    }
}

/// Why a session ended before the client closed it cleanly.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client closed the connection.
    #[error("client closed the connection")]
    Closed,
    /// The client did not finish the handshake in time.
    #[error("handshake timeout")]
    HandshakeTimeout,
    /// The client sent nothing for too long, or did not read what it was sent.
    #[error("idle timeout")]
    IdleTimeout,
    /// The whole session took too long.
    #[error("session timeout")]
    SessionTimeout,
    /// A line longer than `max_line_bytes`.
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    /// More unprocessed input than `max_buffer_bytes`.
    #[error("more than {0} bytes buffered")]
    BufferFull(usize),
    /// The client broke the protocol beyond what the emulation tolerates.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A socket or TLS error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl SessionError {
    /// True for the three timeouts.
    #[must_use]
    pub const fn is_timeout(&self) -> bool {
        matches!(
            self,
            Self::HandshakeTimeout | Self::IdleTimeout | Self::SessionTimeout
        )
    }

    /// True when the client broke a limit or the protocol.
    #[must_use]
    pub const fn is_violation(&self) -> bool {
        matches!(
            self,
            Self::LineTooLong(_) | Self::BufferFull(_) | Self::Protocol(_)
        )
    }
}

/// One accepted connection's session.
#[derive(Debug)]
pub struct Session {
    identity: SessionIdentity,
    service: Service,
    id: Uuid,
    sink: EventSink,
    limits: Arc<ServiceLimits>,
    counters: Arc<ServiceCounters>,
    handshake_deadline: Option<Instant>,
    silent: bool,
    /// Folded by the listener's flood control: events are counted there, not sent.
    fold: Option<Arc<super::tcp_flood::TcpFlood>>,
    emitted: AtomicUsize,
}

impl Session {
    /// A session for a connection just accepted; a `silent` one (whitelisted source) emits
    /// nothing.
    #[must_use]
    pub fn new(
        identity: SessionIdentity,
        service: Service,
        sink: impl Into<EventSink>,
        limits: Arc<ServiceLimits>,
        counters: Arc<ServiceCounters>,
        silent: bool,
    ) -> Self {
        let handshake_deadline = Some(Instant::now() + limits.handshake_timeout());
        Self {
            identity,
            service,
            id: Uuid::new_v4(),
            sink: sink.into(),
            limits,
            counters,
            handshake_deadline,
            silent,
            fold: None,
            emitted: AtomicUsize::new(0),
        }
    }

    /// The same session folded into `flood`: its events are counted in the listener's
    /// `tcp.flood` summary instead of being sent.
    #[must_use]
    pub fn folded(mut self, flood: Option<Arc<super::tcp_flood::TcpFlood>>) -> Self {
        self.fold = flood;
        self
    }

    /// Addresses and ports, as accepted.
    #[must_use]
    pub const fn identity(&self) -> SessionIdentity {
        self.identity
    }

    /// The session id (in every event's `extra.session_id`).
    #[must_use]
    pub const fn id(&self) -> Uuid {
        self.id
    }

    /// The emitting service.
    #[must_use]
    pub const fn service(&self) -> Service {
        self.service
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &ServiceLimits {
        &self.limits
    }

    /// The client got through the handshake: reads now wait up to the idle timeout.
    pub const fn handshake_done(&mut self) {
        self.handshake_deadline = None;
    }

    /// How long the next read may wait, and the error if it does not finish in time.
    pub(super) fn read_deadline(&self) -> (Duration, SessionError) {
        let idle = self.limits.idle_timeout();
        match self.handshake_deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left < idle {
                    (left, SessionError::HandshakeTimeout)
                } else {
                    (idle, SessionError::IdleTimeout)
                }
            }
            None => (idle, SessionError::IdleTimeout),
        }
    }

    /// Emits one event. `data` is the client's raw bytes (kept up to `max_data_bytes`; longer
    /// input is cut and `extra.data_truncated`/`extra.data_length` say so). With a durable sink,
    /// returns once the event is in every spool that takes it (at most
    /// [`crate::output::durable::WAIT`]; beyond, counted in `events_unconfirmed`), so what the
    /// session answers next was recorded first.
    pub async fn emit(&self, action: Action, data: &[u8], mut extra: Map<String, Value>) {
        if self.silent {
            return;
        }
        if let Some(flood) = &self.fold {
            flood.fold_event(action);
            return;
        }
        let n = self
            .emitted
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let cap = self.limits.max_events_per_session;
        if n > cap {
            self.counters
                .events_suppressed
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if n == cap {
            extra.insert("events_capped".to_owned(), Value::Bool(true));
        }
        let cap = self.limits.max_data_bytes;
        let kept = if data.len() > cap {
            extra.insert("data_truncated".to_owned(), Value::Bool(true));
            extra.insert("data_length".to_owned(), Value::from(data.len()));
            data.get(..cap).unwrap_or(data)
        } else {
            data
        };
        extra.insert("session_id".to_owned(), Value::String(self.id.to_string()));
        let event = Event {
            id: Uuid::new_v4(),
            timestamp: Utc::now(),
            session: self.identity,
            service: self.service,
            action,
            data: Bytes::copy_from_slice(kept),
            extra: extra.into(),
        };
        let id = event.id;
        let durability = self.sink.durability.as_deref();
        let wait = durability.map(|d| d.expect(id));
        if self.sink.tx.send(event).await.is_err() {
            self.counters.events_lost.fetch_add(1, Ordering::Relaxed);
            if let Some(d) = durability {
                d.forget(id);
            }
            return;
        }
        let outcome = match (durability, wait) {
            (Some(d), Some(Ok(Some(rx)))) => d.confirmed(id, rx).await,
            (_, Some(Err(why))) => Err(why),
            _ => Ok(()),
        };
        if let Err(why) = outcome {
            let n = self
                .counters
                .events_unconfirmed
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if n.is_power_of_two() {
                let reason = match why {
                    Unconfirmed::TimedOut => "timeout",
                    Unconfirmed::TooMany => "too many waiting",
                    Unconfirmed::Stopped => "outputs stopped",
                };
                tracing::warn!(
                    service = self.service.as_str(),
                    unconfirmed = n,
                    reason,
                    "Session answered before its event was confirmed in the spool."
                );
            }
        }
    }

    /// `<service>.connection`.
    pub async fn connection(&self) {
        self.emit(Action::Connection, &[], Map::new()).await;
    }

    /// `<service>.data` with the bytes received.
    pub async fn data(&self, bytes: &[u8]) {
        self.emit(Action::Data, bytes, Map::new()).await;
    }

    /// `<service>.login` with the captured credentials.
    pub async fn login(&self, data: &[u8], extra: Map<String, Value>) {
        self.emit(Action::Login, data, extra).await;
    }

    /// `<service>.query` with what was asked.
    pub async fn query(&self, data: &[u8], extra: Map<String, Value>) {
        self.emit(Action::Query, data, extra).await;
    }
}

/// Builds an `extra` map from pairs.
#[must_use]
pub fn extra<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Text from client bytes: invalid UTF-8 replaced, never rejected.
#[must_use]
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
