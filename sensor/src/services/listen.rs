//! Listening sockets and the accept loop shared by every TCP service: whitelist, admission
//! gate, the `connection` event, the session timeout, and clean cancellation at shutdown.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::{Arc, atomic::Ordering},
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use super::{
    ServiceError,
    config::ServiceLimits,
    gate::{Gate, Refusal, ServiceCounters},
    session::{EventSink, Session, SessionError},
};
use crate::{
    config::Cidr,
    event::{Service, SessionIdentity},
    shutdown::CancellationToken,
};

/// A protocol's session handler: runs one session to its end.
pub type Handler = Arc<
    dyn Fn(Session, TcpStream) -> Pin<Box<dyn Future<Output = Result<(), SessionError>> + Send>>
        + Send
        + Sync,
>;

/// Everything the accept loops share.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Limits in force.
    pub limits: Arc<ServiceLimits>,
    /// Admission gate.
    pub gate: Arc<Gate>,
    /// Counters.
    pub counters: Arc<ServiceCounters>,
    /// Sources that get no session (`whitelist_ips`).
    pub whitelist: Arc<Vec<Cidr>>,
    /// Where events go.
    pub sink: EventSink,
    /// Sessions in flight, awaited at shutdown.
    pub tracker: TaskTracker,
    /// Shutdown.
    pub shutdown: CancellationToken,
}

/// The addresses services bind on: every address of `interface`, or the IPv4 and IPv6
/// wildcards when it is empty.
///
/// # Errors
/// [`ServiceError::Interface`] when the interface does not exist or has no usable address.
pub fn bind_addresses(interface: &str) -> Result<Vec<IpAddr>, ServiceError> {
    if interface.is_empty() {
        return Ok(vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ]);
    }
    let found = interface_addresses(interface).map_err(|err| ServiceError::Interface {
        interface: interface.to_owned(),
        message: err.to_string(),
    })?;
    // Link-local IPv6 addresses need a scope id and are not reachable from other subnets.
    let usable: Vec<IpAddr> = found
        .into_iter()
        .filter(|ip| match ip {
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
            IpAddr::V4(_) => true,
        })
        .collect();
    if usable.is_empty() {
        return Err(ServiceError::Interface {
            interface: interface.to_owned(),
            message: "no IPv4 or global IPv6 address on this interface".to_owned(),
        });
    }
    Ok(usable)
}

fn interface_addresses(name: &str) -> std::io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut exists = false;
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated C string owned by the list.
        let entry_name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
        if entry_name.to_bytes() != name.as_bytes() {
            continue;
        }
        exists = true;
        if entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family tells its real type.
        let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
        if family == libc::AF_INET {
            // SAFETY: the family is AF_INET, so this is a sockaddr_in.
            let sin = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in>() };
            out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))));
        } else if family == libc::AF_INET6 {
            // SAFETY: the family is AF_INET6, so this is a sockaddr_in6.
            let sin6 = unsafe { &*entry.ifa_addr.cast::<libc::sockaddr_in6>() };
            out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    if !exists {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such interface",
        ));
    }
    Ok(out)
}

/// Binds a listening socket for `service` on `addr`.
///
/// # Errors
/// [`ServiceError::Bind`] naming the service, address and port, with a hint for the two
/// common causes.
pub fn bind(service: Service, addr: SocketAddr) -> Result<TcpListener, ServiceError> {
    let err = |source: std::io::Error| ServiceError::Bind {
        service: service.as_str(),
        addr,
        hint: match source.kind() {
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            }
            std::io::ErrorKind::AddrInUse => " (another program listens on this port)",
            _ => "",
        },
        source,
    };
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_tcp_nodelay(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
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
        let silent = shared.whitelist.iter().any(|c| c.contains(src_ip));
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
