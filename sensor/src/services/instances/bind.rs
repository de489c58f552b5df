//! Binding an instance's sockets, or taking over those of an instance that stops on the same
//! address, port and transport (see the [parent module](super)): the socket registry of the
//! decoys.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use super::{InstanceKey, Recipe, Running, Wanted};
use crate::{
    event::Service,
    services::{
        Context, DownService, ServiceError, ServiceLimits,
        framework::{self, tcp, udp},
        registry::Built,
    },
};

/// The socket transports, for the socket registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Tcp,
    Udp,
}

/// A bound socket an instance serves, kept so that an instance started later on the same
/// address, port and transport takes it over.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) ip: IpAddr,
    /// The configured port (0: the kernel picked the one bound).
    pub(super) port: u16,
    pub(super) socket: HeldSocket,
}

#[derive(Debug)]
pub(super) enum HeldSocket {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

impl HeldSocket {
    pub(super) const fn kind(&self) -> Kind {
        match self {
            Self::Tcp(_) => Kind::Tcp,
            Self::Udp(_) => Kind::Udp,
        }
    }

    pub(super) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Self::Tcp(s) => s.local_addr(),
            Self::Udp(s) => s.local_addr(),
        }
    }

    /// Another descriptor of the same socket.
    fn try_clone(&self) -> std::io::Result<Self> {
        Ok(match self {
            Self::Tcp(s) => Self::Tcp(s.try_clone()?),
            Self::Udp(s) => Self::Udp(s.try_clone()?),
        })
    }

    /// A duplicate registered with the runtime, for an accept loop.
    fn serve_tcp(&self, handler: &tcp::Handler) -> std::io::Result<Serving> {
        match self {
            Self::Tcp(s) => Ok(Serving::Tcp(
                tokio::net::TcpListener::from_std(s.try_clone()?)?,
                Arc::clone(handler),
            )),
            Self::Udp(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a UDP socket cannot accept connections",
            )),
        }
    }

    /// A duplicate registered with the runtime, for a datagram loop.
    fn serve_udp(&self, handler: &udp::UdpHandler) -> std::io::Result<Serving> {
        match self {
            Self::Udp(s) => Ok(Serving::Udp(
                tokio::net::UdpSocket::from_std(s.try_clone()?)?,
                Arc::clone(handler),
            )),
            Self::Tcp(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a TCP listener cannot serve datagrams",
            )),
        }
    }
}

/// A socket ready to serve, with its handler.
pub(super) enum Serving {
    Tcp(tokio::net::TcpListener, tcp::Handler),
    Udp(tokio::net::UdpSocket, udp::UdpHandler),
}

/// An instance built and bound, not serving yet.
pub struct Prepared {
    pub(super) key: InstanceKey,
    pub(super) recipe: Recipe,
    pub(super) service: Service,
    /// Its own limits (timeouts resolved from its keys, `sensor.services` and its product).
    pub(super) limits: Arc<ServiceLimits>,
    pub(super) sockets: Vec<Held>,
    pub(super) serving: Vec<Serving>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("key", &self.key)
            .field("sockets", &self.sockets)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// Its identity.
    #[must_use]
    pub const fn key(&self) -> &InstanceKey {
        &self.key
    }
}

/// Whether binding happens at start (with whatever privileges the process started with) or at
/// a reload (after they were dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `sensor run` starting.
    Start,
    /// A configuration reload.
    Reload,
}

/// Builds (on the blocking pool, all at once) and binds every instance of `start`, taking the
/// sockets of `donors` (instances about to stop) where address, port and transport match.
/// Instances that cannot start are returned as down, in build then bind order.
///
/// # Errors
/// With `limits.strict`, the first instance that cannot start; always, an interface that cannot
/// be used. Nothing new is left bound, and the donors keep their sockets.
pub async fn prepare(
    start: &[&Wanted],
    limits: &Arc<ServiceLimits>,
    interface: &str,
    donors: &[&Running],
    phase: Phase,
) -> Result<(Vec<Prepared>, Vec<DownService>), ServiceError> {
    let mut builds = Vec::new();
    for wanted in start {
        let protocol = wanted.protocol;
        let ctx = Context {
            service: protocol.service,
            port: wanted.key.port,
            hostname: wanted.recipe.hostname.clone(),
            domain: wanted.recipe.domain.clone(),
            // The instance's own timeouts: its keys, `sensor.services`, or its product's.
            limits: Arc::new(framework::timeouts::resolve(
                limits,
                (protocol.timeouts)(&wanted.recipe.settings),
                &wanted.recipe.settings,
            )),
        };
        let instance_limits = Arc::clone(&ctx.limits);
        let settings = wanted.recipe.settings.clone();
        let task = tokio::task::spawn_blocking(move || protocol.build(&settings, &ctx));
        builds.push((*wanted, instance_limits, task));
    }
    let mut built = Vec::new();
    let mut down = Vec::new();
    for (wanted, instance_limits, task) in builds {
        let outcome = task
            .await
            .map_err(|err| ServiceError::Setup {
                service: wanted.protocol.name,
                port: wanted.key.port,
                message: format!("set-up did not finish: {err}"),
            })
            .and_then(|built| built);
        match outcome {
            Ok(handler) => built.push((wanted, instance_limits, handler)),
            Err(err) if !limits.strict => down.push(DownService::new(
                wanted.protocol.service,
                wanted.key.port,
                err,
            )),
            Err(err) => return Err(err),
        }
    }
    let addresses = if built.is_empty() {
        Vec::new()
    } else {
        framework::bind_addresses(interface)?
    };
    let first_free = unprivileged_port_start();
    let mut prepared = Vec::new();
    for (wanted, instance_limits, handler) in built {
        let service = wanted.protocol.service;
        let binder = Binder {
            service,
            key: &wanted.key,
            donors,
            phase,
            first_free,
            ttl: wanted.recipe.ttl,
        };
        match binder.instance(&handler, &addresses) {
            Ok((sockets, serving)) => prepared.push(Prepared {
                key: wanted.key.clone(),
                recipe: wanted.recipe.clone(),
                service,
                limits: instance_limits,
                sockets,
                serving,
            }),
            Err(err) if !limits.strict => {
                down.push(DownService::new(service, wanted.key.port, err));
            }
            Err(err) => return Err(err),
        }
    }
    Ok((prepared, down))
}

/// Binds (or takes over) the sockets of one instance.
struct Binder<'a> {
    service: Service,
    key: &'a InstanceKey,
    donors: &'a [&'a Running],
    phase: Phase,
    first_free: u16,
    /// The persona's TTL for every socket, else the kernel's.
    ttl: Option<u32>,
}

impl Binder<'_> {
    /// Every socket of the instance on every address; all or nothing (a host without IPv6
    /// still serves IPv4 on the wildcard).
    fn instance(
        &self,
        built: &Built,
        addresses: &[IpAddr],
    ) -> Result<(Vec<Held>, Vec<Serving>), ServiceError> {
        let mut sockets = Vec::new();
        let mut serving = Vec::new();
        for ip in addresses {
            match self.address(*ip, built) {
                Ok(bound) => {
                    for (held, socket) in bound {
                        sockets.push(held);
                        serving.push(socket);
                    }
                }
                Err(ServiceError::Bind { source, .. })
                    if ip.is_ipv6()
                        && ip.is_unspecified()
                        && source.kind() == std::io::ErrorKind::AddrNotAvailable =>
                {
                    tracing::warn!(
                        service = self.service.as_str(),
                        port = self.key.port,
                        "IPv6 unavailable; IPv4 only."
                    );
                }
                Err(err) => return Err(err),
            }
        }
        Ok((sockets, serving))
    }

    /// The instance's sockets on one address.
    fn address(&self, ip: IpAddr, built: &Built) -> Result<Vec<(Held, Serving)>, ServiceError> {
        Ok(match built {
            Built::Tcp(handler) => vec![self.tcp(ip, None, handler)?],
            Built::Udp(handler) => vec![self.udp(ip, handler)?],
            Built::UdpTcp(udp_handler, tcp_handler) => {
                let (udp, tcp) = self.udp_tcp_pair(ip)?;
                let serve_udp = udp
                    .socket
                    .serve_udp(udp_handler)
                    .map_err(|source| self.error(ip, source))?;
                let serve_tcp = tcp
                    .socket
                    .serve_tcp(tcp_handler)
                    .map_err(|source| self.error(ip, source))?;
                vec![(udp, serve_udp), (tcp, serve_tcp)]
            }
        })
    }

    /// A UDP socket and a TCP listener on one port. With `port: 0` the listener takes the
    /// port the kernel gave UDP; when some other TCP socket already holds that port (the
    /// kernel picks UDP ports without looking at TCP), a new UDP port is tried, up to
    /// [`PAIR_TRIES`] times.
    fn udp_tcp_pair(&self, ip: IpAddr) -> Result<(Held, Held), ServiceError> {
        let mut tries = 0;
        loop {
            let udp = self.socket(ip, Kind::Udp, None)?;
            let port = udp.socket.local_addr().map_or(self.key.port, |a| a.port());
            match self.socket(ip, Kind::Tcp, Some(port)) {
                Ok(tcp) => return Ok((udp, tcp)),
                Err(ServiceError::Bind { source, .. })
                    if self.key.port == 0
                        && tries < PAIR_TRIES
                        && source.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    tries += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn tcp(
        &self,
        ip: IpAddr,
        port: Option<u16>,
        handler: &tcp::Handler,
    ) -> Result<(Held, Serving), ServiceError> {
        let held = self.socket(ip, Kind::Tcp, port)?;
        let serving = held
            .socket
            .serve_tcp(handler)
            .map_err(|source| self.error(ip, source))?;
        Ok((held, serving))
    }

    fn udp(&self, ip: IpAddr, handler: &udp::UdpHandler) -> Result<(Held, Serving), ServiceError> {
        let held = self.socket(ip, Kind::Udp, None)?;
        let serving = held
            .socket
            .serve_udp(handler)
            .map_err(|source| self.error(ip, source))?;
        Ok((held, serving))
    }

    fn error(&self, ip: IpAddr, source: std::io::Error) -> ServiceError {
        framework::bind_error(
            self.service.as_str(),
            SocketAddr::new(ip, self.key.port),
            source,
        )
    }

    /// [`Self::take_or_bind`], with the persona's TTL set (replies, and the SYN-ACKs and
    /// accepted connections of a listener, carry it).
    fn socket(&self, ip: IpAddr, kind: Kind, port: Option<u16>) -> Result<Held, ServiceError> {
        let held = self.take_or_bind(ip, kind, port)?;
        if let Some(ttl) = self.ttl {
            let set = match &held.socket {
                HeldSocket::Tcp(s) => {
                    framework::ttl::set(&socket2::SockRef::from(s), ip, Some(ttl))
                }
                HeldSocket::Udp(s) => {
                    framework::ttl::set(&socket2::SockRef::from(s), ip, Some(ttl))
                }
            };
            set.map_err(|source| self.error(ip, source))?;
        }
        Ok(held)
    }

    /// A stopping instance's socket for this address, port and transport (for port 0, only
    /// this instance's own predecessor's), else a new one bound on `port` (the configured one
    /// unless given).
    fn take_or_bind(
        &self,
        ip: IpAddr,
        kind: Kind,
        port: Option<u16>,
    ) -> Result<Held, ServiceError> {
        let configured = self.key.port;
        let addr = SocketAddr::new(ip, port.unwrap_or(configured));
        let err = |source| framework::bind_error(self.service.as_str(), addr, source);
        let donated = self
            .donors
            .iter()
            .filter(|d| configured != 0 || d.key == *self.key)
            .flat_map(|d| d.sockets.iter())
            .find(|h| h.ip == ip && h.port == configured && h.socket.kind() == kind);
        if let Some(held) = donated {
            return Ok(Held {
                ip,
                port: configured,
                socket: held.socket.try_clone().map_err(err)?,
            });
        }
        let bound = match kind {
            Kind::Tcp => tcp::bind(self.service, addr)
                .and_then(|l| l.into_std().map_err(err).map(HeldSocket::Tcp)),
            Kind::Udp => udp::bind(self.service, addr)
                .and_then(|s| s.into_std().map_err(err).map(HeldSocket::Udp)),
        };
        match bound {
            Ok(socket) => Ok(Held {
                ip,
                port: configured,
                socket,
            }),
            Err(ServiceError::Bind { source, .. })
                if self.phase == Phase::Reload
                    && source.kind() == std::io::ErrorKind::PermissionDenied
                    && addr.port() != 0
                    && addr.port() < self.first_free =>
            {
                Err(ServiceError::Privileged {
                    service: self.service.as_str(),
                    port: addr.port(),
                    first_free: self.first_free,
                })
            }
            Err(err) => Err(err),
        }
    }
}

/// How many UDP ports an ephemeral UDP+TCP instance tries before giving up.
const PAIR_TRIES: u32 = 16;

/// The first port an unprivileged process may bind, from the kernel (1024 when unreadable).
#[must_use]
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(1024)
}
