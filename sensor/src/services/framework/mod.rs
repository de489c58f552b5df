//! The service framework: what every protocol gets without writing it. Binding on the
//! interface's addresses ([`bind_addresses`]), the TCP accept loop ([`tcp`]) and the UDP
//! datagram loop with pseudo-sessions and anti-reflection ([`udp`]), the admission gate with its
//! global and per-source caps ([`gate`]), the session identity and its event cap ([`session`]),
//! TCP alert-flood control ([`tcp_flood`]), bounded reads and writes over a stream ([`conn`]), per-instance timeouts ([`timeouts`]),
//! self-signed certificates ([`tls`]), and the any-port decoys' catch-all listeners and hand-off
//! ([`anyport`]).

pub mod anyport;
pub mod conn;
pub mod gate;
mod pktinfo;
pub mod session;
pub mod summary;
pub mod tasks;
pub mod tcp;
pub mod tcp_flood;
pub mod timeouts;
pub mod tls;
pub mod ttl;
pub mod udp;
pub mod udp_flood;
mod udp_rates;
#[cfg(test)]
mod udp_tests;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use tokio_util::task::TaskTracker;

use self::{
    gate::{Gate, Permit, Refusal, ServiceCounters},
    session::EventSink,
};
use super::{ServiceError, ServiceLimits};
use crate::{
    event::{Action, Service, SessionIdentity},
    net::Cidr,
    shutdown::CancellationToken,
};

/// Everything the accept and datagram loops share.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Limits in force.
    pub limits: Arc<ServiceLimits>,
    /// Admission gate.
    pub gate: Arc<Gate>,
    /// Counters.
    pub counters: Arc<ServiceCounters>,
    /// Sources served but never reported (`whitelist_ips`); replaced on configuration reload.
    pub whitelist: Arc<std::sync::RwLock<Vec<Cidr>>>,
    /// Where events go.
    pub sink: EventSink,
    /// Sessions in flight, awaited at shutdown.
    pub tracker: TaskTracker,
    /// Shutdown.
    pub shutdown: CancellationToken,
}

impl Shared {
    /// Sends `<service>.flood` with `extra`, from the unspecified address to `local`, so every
    /// summary of a flood folds into one incident.
    pub async fn emit_flood(
        &self,
        service: Service,
        local: SocketAddr,
        extra: serde_json::Map<String, serde_json::Value>,
    ) {
        let nobody = if local.is_ipv6() {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let mut session = session::Session::new(
            SessionIdentity::between(SocketAddr::new(nobody, 0), local),
            service,
            self.sink.best_effort(),
            Arc::clone(&self.limits),
            Arc::clone(&self.counters),
            false,
        );
        session.handshake_done();
        session.emit(Action::Flood, &[], extra).await;
    }

    /// A session slot for a connection or pseudo-session from `ip`, or `None` with the refusal
    /// counted (`rejected_global`, `rejected_source`).
    #[must_use]
    pub fn admit(&self, ip: IpAddr) -> Option<Permit> {
        match self.gate.admit(ip) {
            Ok(permit) => Some(permit),
            Err(refusal) => {
                let counter = match refusal {
                    Refusal::Global => &self.counters.rejected_global,
                    Refusal::Source => &self.counters.rejected_source,
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                None
            }
        }
    }

    /// Whether `ip` is whitelisted: served like anyone else, so the decoy looks the same to the
    /// company's own scanners, but never reported.
    #[must_use]
    pub fn is_whitelisted(&self, ip: IpAddr) -> bool {
        // A poisoned lock still holds a whole list: the writer only swaps the vector.
        self.whitelist
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|c| c.contains(ip))
    }
}

/// A non-blocking socket of `ty` for `service`, bound to `addr` (IPv6 sockets are IPv6 only,
/// so IPv4 gets its own), with `SO_REUSEADDR`; `prepare` sets what one transport needs before
/// the bind.
///
/// # Errors
/// [`ServiceError::Bind`] naming the service, address and port.
pub fn bound_socket(
    service: &'static str,
    addr: SocketAddr,
    ty: socket2::Type,
    protocol: socket2::Protocol,
    prepare: impl FnOnce(&socket2::Socket) -> std::io::Result<()>,
) -> Result<socket2::Socket, ServiceError> {
    let err = |source: std::io::Error| bind_error(service, addr, source);
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, ty, Some(protocol)).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    prepare(&socket).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    Ok(socket)
}

/// Turns a bind error into one readable message naming the service, address and port, with a
/// hint for the two common causes.
#[must_use]
pub fn bind_error(service: &'static str, addr: SocketAddr, source: std::io::Error) -> ServiceError {
    ServiceError::Bind {
        service,
        addr,
        hint: match source.kind() {
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            }
            std::io::ErrorKind::AddrInUse => " (another program listens on this port)",
            _ => "",
        },
        source,
    }
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
