//! Listening sockets and the accept loop shared by every TCP service: whitelist, admission
//! gate, the `connection` event, the session timeout, and clean cancellation at shutdown.
//! A TCP protocol implements [`TcpProtocol`]: from its settings, a [`Handler`] that runs one
//! session over an accepted stream.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
};

use serde::de::DeserializeOwned;
use socket2::{Protocol, Type};
use tokio::net::{TcpListener, TcpStream};

use super::{
    Shared, bind_error, bound_socket,
    gate::Permit,
    session::{Session, SessionError},
    tcp_flood::{TcpFlood, TcpFloodSummary},
};
use crate::{
    event::{Service, SessionIdentity},
    services::{Context, ServiceError},
};

/// A protocol's session handler: runs one session to its end.
pub type Handler = Arc<
    dyn Fn(Session, TcpStream) -> Pin<Box<dyn Future<Output = Result<(), SessionError>> + Send>>
        + Send
        + Sync,
>;

/// A protocol served over TCP.
pub trait TcpProtocol {
    /// An instance's settings (its entry in the `services` list; unknown keys are ignored, `port`
    /// is read by the framework).
    type Config: DeserializeOwned;

    /// Builds the session handler of one instance. Runs on the blocking pool, so it may read
    /// files and generate keys.
    ///
    /// # Errors
    /// [`ServiceError::Setup`] (see [`Context::setup_error`]) when the instance cannot start.
    fn handler(config: Self::Config, ctx: &Context) -> Result<Handler, ServiceError>;

    /// The imitated product's handshake and idle timeouts for this configuration; `None`
    /// (the default) leaves the framework's. An instance's own keys and `sensor.services`
    /// override them ([`super::timeouts`]).
    fn timeouts(_config: &Self::Config) -> Option<super::timeouts::Timeouts> {
        None
    }
}

/// Binds a listening socket for `service` on `addr`.
///
/// # Errors
/// [`ServiceError::Bind`] naming the service, address and port, with a hint for the two
/// common causes.
pub fn bind(service: Service, addr: SocketAddr) -> Result<TcpListener, ServiceError> {
    let socket = bound_socket(service.as_str(), addr, Type::STREAM, Protocol::TCP, |s| {
        s.set_tcp_nodelay(true)
    })?;
    let err = |source: std::io::Error| bind_error(service.as_str(), addr, source);
    socket.listen(1024).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

/// A connection past the admission gate: its permit, identity and whether its source is
/// whitelisted (served, never reported).
#[derive(Debug)]
pub struct Admitted {
    /// Held for the connection's lifetime (the gate's global and per-source caps).
    pub permit: Permit,
    /// Addresses and ports from the socket: the local side is the address the client asked
    /// for, also when the kernel steered the connection to a catch-all listener.
    pub identity: SessionIdentity,
    /// A whitelisted source: its sessions emit nothing.
    pub silent: bool,
    /// Folded by the listener's flood control: its sessions' events are counted in the
    /// listener's `tcp.flood` summary, not sent.
    pub fold: Option<Arc<TcpFlood>>,
}

impl Admitted {
    /// A session of `service` for this connection.
    #[must_use]
    pub fn session(&self, service: Service, shared: &Shared) -> Session {
        Session::new(
            self.identity,
            service,
            shared.sink.clone(),
            Arc::clone(&shared.limits),
            Arc::clone(&shared.counters),
            self.silent,
        )
        .folded(self.fold.clone())
    }
}

/// Admits one accepted connection: the gate (a refused one is reset at once and counted), the
/// counters, the whitelist, the listener's flood control (a `tcp.flood` summary of a window
/// that closed is sent first) and the identity from the socket. `None` when refused.
pub async fn admit(
    shared: &Shared,
    flood: &Arc<TcpFlood>,
    stream: &TcpStream,
    peer: SocketAddr,
) -> Option<Admitted> {
    let local = stream.local_addr().ok()?;
    let src_ip = crate::event::display_ip(peer.ip());
    let Some(permit) = shared.admit(src_ip) else {
        // Closed at once: RST instead of a lingering FIN_WAIT.
        let _ignored = socket2::SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
        return None;
    };
    shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
    // Whitelisted sources (the company's own scanners) are served like anyone else, so the
    // decoy looks the same to them, but their sessions emit nothing.
    let silent = shared.is_whitelisted(src_ip);
    let fold = if silent {
        shared.counters.whitelisted.fetch_add(1, Ordering::Relaxed);
        None
    } else {
        let now = tokio::time::Instant::now();
        let source = shared.gate.source_of(src_ip);
        let (reported, closed) = flood.admit(source, src_ip, local, now);
        if let Some(summary) = closed {
            report_flood(&summary, shared).await;
        }
        if reported {
            None
        } else {
            shared.counters.tcp_folded.fetch_add(1, Ordering::Relaxed);
            Some(Arc::clone(flood))
        }
    };
    Some(Admitted {
        permit,
        identity: SessionIdentity::between(peer, local),
        silent,
        fold,
    })
}

/// The flood control of a listener of `service` (`any_port` for the catch-all), as the limits
/// say.
#[must_use]
pub fn flood_control(shared: &Shared, service: Service, any_port: bool) -> Arc<TcpFlood> {
    Arc::new(TcpFlood::new(
        service,
        shared.limits.tcp_flood_max_sources,
        std::time::Duration::from_secs(shared.limits.tcp_flood_window_secs),
        any_port,
    ))
}

/// How often an accept loop closes its flood-control window when no connection does.
pub const FLOOD_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends the `tcp.flood` event of a window that folded connections: from the unspecified
/// address (every summary shares one incident) to the window's first folded destination;
/// counted.
pub async fn report_flood(summary: &TcpFloodSummary, shared: &Shared) {
    let local = summary.destination;
    tracing::warn!(
        service = summary.service.as_str(),
        port = local.port(),
        sources = summary.sources,
        connections = summary.connections,
        "TCP flood: connections from sources beyond the bound were folded into one summary event."
    );
    shared
        .counters
        .tcp_flood_summaries
        .fetch_add(1, Ordering::Relaxed);
    shared
        .emit_flood(Service::Tcp, local, summary.extra())
        .await;
}

/// Runs one admitted session to its end: `<service>.connection`, then the handler, within the
/// session timeout and until shutdown; counts how it ended.
pub async fn run_session(
    shared: &Shared,
    session: Session,
    handler: &Handler,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let service = session.service();
    let limit = shared.limits.session_timeout();
    let run = async move {
        session.connection().await;
        handler(session, stream).await
    };
    let outcome = tokio::select! {
        () = shared.shutdown.cancelled() => return,
        outcome = tokio::time::timeout(limit, run) => outcome,
    };
    let result = outcome.unwrap_or(Err(SessionError::SessionTimeout));
    match result {
        Ok(()) | Err(SessionError::Closed) => {}
        Err(err) => {
            if err.is_timeout() {
                shared.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            } else if err.is_violation() {
                shared
                    .counters
                    .protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(service = service.as_str(), peer = %peer, error = %err, "session ended");
        }
    }
}

/// Accepts connections until shutdown, running `handler` for each admitted one.
pub async fn accept_loop(
    listener: TcpListener,
    service: Service,
    handler: Handler,
    shared: Shared,
) {
    let flood = flood_control(&shared, service, false);
    let mut sweep = tokio::time::interval(FLOOD_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => {
                if let Some(summary) = flood.flush() {
                    report_flood(&summary, &shared).await;
                }
                return;
            }
            _ = sweep.tick() => {
                let closed = flood.sweep(tokio::time::Instant::now());
                if let Some(summary) = closed {
                    report_flood(&summary, &shared).await;
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(service = service.as_str(), error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = admit(&shared, &flood, &stream, peer).await else {
            continue;
        };
        let session = admitted.session(service, &shared);
        let handler = Arc::clone(&handler);
        let shared_task = shared.clone();
        let permit = admitted.permit;
        shared.tracker.spawn(async move {
            let _permit = permit;
            run_session(&shared_task, session, &handler, stream, peer).await;
        });
    }
}
