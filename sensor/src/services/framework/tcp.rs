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
    gate::Refusal,
    session::{Session, SessionError},
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

/// Accepts connections until shutdown, running `handler` for each admitted one.
pub async fn accept_loop(
    listener: TcpListener,
    service: Service,
    handler: Handler,
    shared: Shared,
) {
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
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
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let src_ip = crate::event::display_ip(peer.ip());
        let permit = match shared.gate.admit(src_ip) {
            Ok(permit) => permit,
            Err(refusal) => {
                let counter = match refusal {
                    Refusal::Global => &shared.counters.rejected_global,
                    Refusal::Source => &shared.counters.rejected_source,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                // Closed at once: RST instead of a lingering FIN_WAIT.
                let _ignored =
                    socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
                continue;
            }
        };
        shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
        // Whitelisted sources (the company's own scanners) are served like anyone else, so the
        // decoy looks the same to them, but their sessions emit nothing.
        let silent = shared.is_whitelisted(src_ip);
        if silent {
            shared.counters.whitelisted.fetch_add(1, Ordering::Relaxed);
        }
        let identity = SessionIdentity {
            src_ip,
            src_port: peer.port(),
            dst_ip: crate::event::display_ip(local.ip()),
            dst_port: local.port(),
        };
        let session = Session::new(
            identity,
            service,
            shared.sink.clone(),
            Arc::clone(&shared.limits),
            Arc::clone(&shared.counters),
            silent,
        );
        let handler = Arc::clone(&handler);
        let shared_task = shared.clone();
        shared.tracker.spawn(async move {
            let _permit = permit;
            let limit = shared_task.limits.session_timeout();
            let run = async move {
                session.connection().await;
                handler(session, stream).await
            };
            let outcome = tokio::select! {
                () = shared_task.shutdown.cancelled() => return,
                outcome = tokio::time::timeout(limit, run) => outcome,
            };
            let result = outcome.unwrap_or(Err(SessionError::SessionTimeout));
            match result {
                Ok(()) | Err(SessionError::Closed) => {}
                Err(err) => {
                    if err.is_timeout() {
                        shared_task.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                    } else if err.is_violation() {
                        shared_task
                            .counters
                            .protocol_errors
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(service = service.as_str(), peer = %peer, error = %err, "session ended");
                }
            }
        });
    }
}
