//! Emulated services: the decoys attackers talk to.
//!
//! [`start`] takes a [`ServicesPlan`] (built by the configuration; the services never read the
//! configuration itself) and starts every instance its `services` block lists:
//!
//! - [`registry`]: one line per protocol (name, channel, default port, implementation; the
//!   implementation's trait says TCP or UDP).
//! - [`framework`]: binding on the interface's addresses (IPv4 and IPv6), the TCP accept loop
//!   and the UDP datagram loop (pseudo-sessions per peer, anti-reflection), the admission gate
//!   (global and per-source caps, a source being an IPv4 address or an IPv6 /64 by default),
//!   the session identity fixed from the socket, `<service>.connection`, the per-session event
//!   cap, bounded reads and writes, timeouts, self-signed certificates.
//! - [`proto`]: one file (or folder) per protocol, which only reads, answers and adds `extra`
//!   fields: FTP, Telnet, SSH, HTTP and HTTPS with Trapster skins, MySQL, PostgreSQL.
//!
//! Handlers are built on the blocking pool (host keys, certificates and skins are generated or
//! read there), all instances at once. The services never open outbound connections, except
//! FTP's active-mode data connections (`PORT`/`EPRT`), and those only to the control
//! connection's own peer.

pub mod framework;
pub mod plan;
pub mod proto;
pub mod registry;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio_util::task::TaskTracker;

pub use framework::{
    gate::ServiceCounters,
    session::{EventSink, Session, SessionError},
};
pub use plan::{SectionError, ServiceLimits, ServicesPlan, ServicesSection};

use self::{
    framework::{Shared, gate::Gate, tcp, udp},
    registry::Built,
};
use crate::{event::Service, net::Cidr, shutdown::CancellationToken};

/// A service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The listening socket could not be bound.
    #[error("{service}: cannot listen on {addr}: {source}{hint}")]
    Bind {
        /// Service name.
        service: &'static str,
        /// Address and port.
        addr: SocketAddr,
        /// A hint for the common causes.
        hint: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configured interface cannot be used.
    #[error("interface `{interface}`: {message}")]
    Interface {
        /// Interface name.
        interface: String,
        /// What is wrong.
        message: String,
    },
    /// The `services` block does not fit the registry (a plan not checked by the configuration).
    #[error("{0}")]
    Section(#[from] SectionError),
    /// A service's configuration cannot be used (a skin that does not load, ...).
    #[error("{service} port {port}: {message}")]
    Setup {
        /// Service name.
        service: &'static str,
        /// Configured port.
        port: u16,
        /// What is wrong.
        message: String,
    },
}

/// What protocol set-up code may read: the instance it builds, names presented to clients and
/// where to keep state.
#[derive(Debug, Clone)]
pub struct Context {
    /// The instance's channel.
    pub service: Service,
    /// The instance's port.
    pub port: u16,
    /// Host name presented (`hostname`, default `srv01`).
    pub hostname: String,
    /// Domain presented (`domain`, may be empty).
    pub domain: String,
    /// Limits in force.
    pub limits: Arc<ServiceLimits>,
}

impl Context {
    /// Where generated keys and certificates live.
    #[must_use]
    pub fn state_dir(&self) -> PathBuf {
        self.limits.state_dir.clone()
    }

    /// The error for an instance that cannot start, naming its service and port.
    #[must_use]
    pub fn setup_error(&self, message: String) -> ServiceError {
        ServiceError::Setup {
            service: self.service.as_str(),
            port: self.port,
            message,
        }
    }
}

/// The running services.
#[derive(Debug)]
pub struct Services {
    bound: Vec<(Service, SocketAddr)>,
    udp: Vec<(Service, SocketAddr)>,
    down: Vec<DownService>,
    counters: Arc<ServiceCounters>,
    gate: Arc<Gate>,
    tracker: TaskTracker,
    stop: CancellationToken,
    loops: Vec<tokio::task::JoinHandle<()>>,
    whitelist: Arc<std::sync::RwLock<Vec<Cidr>>>,
}

impl Services {
    /// Every listening TCP address, with its service.
    #[must_use]
    pub fn bound(&self) -> &[(Service, SocketAddr)] {
        &self.bound
    }

    /// Every bound UDP address, with its service.
    #[must_use]
    pub fn udp_bound(&self) -> &[(Service, SocketAddr)] {
        &self.udp
    }

    /// The first TCP address `service` listens on.
    #[must_use]
    pub fn address_of(&self, service: Service) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, a)| *a)
    }

    /// The instances that could not start (only without `sensor.services.strict`).
    #[must_use]
    pub fn down(&self) -> &[DownService] {
        &self.down
    }

    /// Framework counters.
    #[must_use]
    pub fn counters(&self) -> Arc<ServiceCounters> {
        Arc::clone(&self.counters)
    }

    /// Connections open now.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.gate.open()
    }

    /// Replaces the whitelist every listener checks (configuration reload); sessions already
    /// open keep the decision made when they started.
    pub fn set_whitelist(&self, whitelist: Vec<Cidr>) {
        let mut current = self
            .whitelist
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = whitelist;
    }

    /// Stops accepting, ends every session and waits (up to `grace`) for them to finish.
    pub async fn stop(self, grace: Duration) {
        self.stop.cancel();
        self.tracker.close();
        for handle in self.loops {
            let _ignored = handle.await;
        }
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("Some service sessions did not end within the grace period.");
        }
    }
}

/// A decoy that could not start, and why.
#[derive(Debug)]
pub struct DownService {
    /// Its channel.
    pub service: Service,
    /// Its configured port.
    pub port: u16,
    /// What stopped it, with the fix where one is known.
    pub error: ServiceError,
}

impl DownService {
    fn new(service: Service, port: u16, error: ServiceError) -> Self {
        Self {
            service,
            port,
            error,
        }
    }

    /// The `sensor.degraded` event that tells the SOC this decoy is down:
    /// `extra = {decoy, port, reason}`.
    #[must_use]
    pub fn event(&self) -> crate::event::Event {
        let mut extra = serde_json::Map::new();
        extra.insert("decoy".to_owned(), self.service.as_str().into());
        extra.insert("port".to_owned(), self.port.into());
        extra.insert("reason".to_owned(), self.error.to_string().into());
        crate::event::Event::health(crate::event::Action::Degraded, extra)
    }
}

/// Binds every instance the plan lists and starts serving; events go to `sink`.
///
/// An instance that cannot be built or bound is left out and listed by [`Services::down`]
/// (logged), unless `sensor.services.strict` asks for the whole start to fail.
///
/// # Errors
/// [`ServiceError`] when the interface cannot be used, or (strict) naming the first service and
/// port that cannot start; nothing is left listening.
pub async fn start(
    plan: &ServicesPlan,
    sink: EventSink,
    shutdown: &CancellationToken,
) -> Result<Services, ServiceError> {
    // Protocols this version does not emulate are named among the configuration's warnings
    // (`sensor check` prints them, `sensor run` logs them once).
    let limits = Arc::new(plan.limits.clone());
    let hostname = if plan.hostname.is_empty() {
        "srv01".to_owned()
    } else {
        plan.hostname.clone()
    };
    // Every handler is built on the blocking pool (RSA host keys, certificates, skin files),
    // all instances at once.
    let mut builds = Vec::new();
    for instance in plan.services.instances()? {
        let protocol = instance.protocol;
        let ctx = Context {
            service: protocol.service,
            port: instance.port,
            // Trapster merges the top-level `hostname`/`domain` into each instance, which may
            // set its own.
            hostname: instance_text(instance.settings, "hostname")
                .unwrap_or_else(|| hostname.clone()),
            domain: instance_text(instance.settings, "domain")
                .unwrap_or_else(|| plan.domain.clone()),
            // The instance's own timeouts: its keys, `sensor.services`, or its product's.
            limits: Arc::new(framework::timeouts::resolve(
                &limits,
                (protocol.timeouts)(instance.settings),
                instance.settings,
            )),
        };
        let instance_limits = Arc::clone(&ctx.limits);
        let settings = instance.settings.clone();
        let task = tokio::task::spawn_blocking(move || protocol.build(&settings, &ctx));
        builds.push((protocol, instance.port, instance_limits, task));
    }
    let mut planned: Vec<(Service, u16, Arc<ServiceLimits>, Built)> = Vec::new();
    let mut down = Vec::new();
    for (protocol, port, instance_limits, task) in builds {
        let built = task
            .await
            .map_err(|err| ServiceError::Setup {
                service: protocol.name,
                port,
                message: format!("set-up did not finish: {err}"),
            })
            .and_then(|built| built);
        match built {
            Ok(built) => planned.push((protocol.service, port, instance_limits, built)),
            Err(err) if !limits.strict => down.push(DownService::new(protocol.service, port, err)),
            Err(err) => return Err(err),
        }
    }

    let addresses = if planned.is_empty() {
        Vec::new()
    } else {
        framework::bind_addresses(&plan.interface)?
    };
    let mut sockets = Vec::new();
    for (service, port, instance_limits, built) in planned {
        match bind_instance(service, port, &built, &addresses) {
            Ok(bound) => sockets.extend(
                bound
                    .into_iter()
                    .map(|socket| (service, Arc::clone(&instance_limits), socket)),
            ),
            Err(err) if !limits.strict => down.push(DownService::new(service, port, err)),
            Err(err) => return Err(err),
        }
    }
    for d in &down {
        tracing::error!(service = d.service.as_str(), port = d.port, error = %d.error, "Decoy not started; every other decoy and scan detection keep running (`sensor.services.strict` stops the sensor instead).");
    }

    let stop = shutdown.child_token();
    let shared = Shared {
        limits: Arc::clone(&limits),
        gate: Gate::new(
            limits.max_connections,
            limits.max_connections_per_source,
            plan.source_prefix,
        ),
        counters: Arc::new(ServiceCounters::default()),
        whitelist: Arc::new(std::sync::RwLock::new(plan.whitelist.clone())),
        sink,
        tracker: TaskTracker::new(),
        shutdown: stop.clone(),
    };
    let mut bound = Vec::new();
    let mut udp_bound = Vec::new();
    let mut loops = Vec::new();
    for (service, instance_limits, socket) in sockets {
        let shared = Shared {
            limits: instance_limits,
            ..shared.clone()
        };
        match socket {
            Socket::Tcp(listener, handler) => {
                if let Ok(addr) = listener.local_addr() {
                    tracing::info!(service = service.as_str(), %addr, "Service listening.");
                    bound.push((service, addr));
                }
                loops.push(tokio::spawn(tcp::accept_loop(
                    listener,
                    service,
                    handler,
                    shared.clone(),
                )));
            }
            Socket::Udp(socket, handler) => {
                if let Ok(addr) = socket.local_addr() {
                    tracing::info!(service = service.as_str(), %addr, "Service listening on UDP.");
                    udp_bound.push((service, addr));
                }
                loops.push(tokio::spawn(udp::serve(
                    socket,
                    service,
                    handler,
                    shared.clone(),
                )));
            }
        }
    }
    Ok(Services {
        bound,
        udp: udp_bound,
        down,
        counters: shared.counters,
        gate: shared.gate,
        tracker: shared.tracker,
        stop,
        loops,
        whitelist: shared.whitelist,
    })
}

/// What `sensor check` can tell before `run`: the instances whose port cannot be bound now, by
/// this user (another program holds it, or a port below 1024 without the capability), each as
/// `run` would report it down. Nothing stays bound.
///
/// # Errors
/// [`ServiceError`] when the `services` block or the interface cannot be used at all.
pub fn probe_ports(plan: &ServicesPlan) -> Result<Vec<DownService>, ServiceError> {
    let instances = plan.services.instances()?;
    let wanted: Vec<_> = instances.iter().filter(|i| i.port != 0).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let addresses = framework::bind_addresses(&plan.interface)?;
    let mut down = Vec::new();
    for instance in wanted {
        let protocol = instance.protocol;
        let kinds: &[(socket2::Type, socket2::Protocol)] = match protocol.transport() {
            registry::Transport::Tcp => &[(socket2::Type::STREAM, socket2::Protocol::TCP)],
            registry::Transport::Udp => &[(socket2::Type::DGRAM, socket2::Protocol::UDP)],
            registry::Transport::UdpTcp => &[
                (socket2::Type::DGRAM, socket2::Protocol::UDP),
                (socket2::Type::STREAM, socket2::Protocol::TCP),
            ],
        };
        'instance: for ip in &addresses {
            let addr = SocketAddr::new(*ip, instance.port);
            for &(ty, proto) in kinds {
                let probed = framework::bound_socket(protocol.name, addr, ty, proto, |_| Ok(()))
                    .and_then(|socket| {
                        if ty == socket2::Type::STREAM {
                            socket
                                .listen(1)
                                .map_err(|err| framework::bind_error(protocol.name, addr, err))
                        } else {
                            Ok(())
                        }
                    });
                match probed {
                    Ok(()) => {}
                    Err(ServiceError::Bind { source, .. })
                        if ip.is_ipv6()
                            && ip.is_unspecified()
                            && source.kind() == std::io::ErrorKind::AddrNotAvailable => {}
                    Err(err) => {
                        down.push(DownService::new(protocol.service, instance.port, err));
                        break 'instance;
                    }
                }
            }
        }
    }
    Ok(down)
}

/// Binds one instance on every address; all or nothing (a host without IPv6 still serves IPv4
/// on the wildcard).
fn bind_instance(
    service: Service,
    port: u16,
    built: &Built,
    addresses: &[std::net::IpAddr],
) -> Result<Vec<Socket>, ServiceError> {
    let mut sockets = Vec::new();
    for ip in addresses {
        let addr = SocketAddr::new(*ip, port);
        let bound = match built {
            Built::Tcp(handler) => tcp::bind(service, addr)
                .map(|listener| vec![Socket::Tcp(listener, Arc::clone(handler))]),
            Built::Udp(handler) => udp::bind(service, addr)
                .map(|socket| vec![Socket::Udp(socket, Arc::clone(handler))]),
            Built::UdpTcp(udp_handler, tcp_handler) => {
                // With `port: 0` the TCP listener takes the port the kernel gave UDP.
                udp::bind(service, addr).and_then(|socket| {
                    let port = socket.local_addr().map_or(addr.port(), |a| a.port());
                    tcp::bind(service, SocketAddr::new(addr.ip(), port)).map(|listener| {
                        vec![
                            Socket::Udp(socket, Arc::clone(udp_handler)),
                            Socket::Tcp(listener, Arc::clone(tcp_handler)),
                        ]
                    })
                })
            }
        };
        match bound {
            Ok(bound) => sockets.extend(bound),
            Err(ServiceError::Bind { source, .. })
                if ip.is_ipv6()
                    && ip.is_unspecified()
                    && source.kind() == std::io::ErrorKind::AddrNotAvailable =>
            {
                tracing::warn!(
                    service = service.as_str(),
                    port,
                    "IPv6 unavailable; IPv4 only."
                );
            }
            Err(err) => return Err(err),
        }
    }
    Ok(sockets)
}

/// A bound socket and the handler that serves it.
enum Socket {
    Tcp(tokio::net::TcpListener, tcp::Handler),
    Udp(tokio::net::UdpSocket, udp::UdpHandler),
}

/// A non-empty string key of an instance (`hostname`, `domain`).
fn instance_text(settings: &serde_json::Value, key: &str) -> Option<String> {
    settings
        .get(key)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::{ServiceLimits, ServicesPlan, ServicesSection, start};
    use crate::{event::Service, shutdown::CancellationToken};

    fn plan(services: serde_json::Value, strict: bool) -> ServicesPlan {
        let map: BTreeMap<String, serde_json::Value> = serde_json::from_value(services).unwrap();
        ServicesPlan {
            interface: "lo".to_owned(),
            limits: ServiceLimits {
                // A state directory that cannot be created: the SSH host key cannot be kept.
                state_dir: "/dev/null/state".into(),
                ephemeral_ports: true,
                strict,
                ..ServiceLimits::default()
            },
            services: ServicesSection::from_map(map),
            ..ServicesPlan::default()
        }
    }

    #[tokio::test]
    async fn a_decoy_that_cannot_be_set_up_is_down_and_the_others_serve() {
        let (sink, _events) = tokio::sync::mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let plan = plan(json!({"ssh": [{"port": 0}], "ftp": [{"port": 0}]}), false);
        let services = start(&plan, sink, &shutdown).await.unwrap();
        let down: Vec<_> = services.down().iter().map(|d| d.service).collect();
        assert_eq!(down, [Service::Ssh]);
        assert!(services.address_of(Service::Ftp).is_some());
        assert!(services.address_of(Service::Ssh).is_none());
        let event = services.down()[0].event();
        assert_eq!(event.logtype().to_string(), "sensor.degraded");
        assert_eq!(event.extra["decoy"], "ssh");
        assert_eq!(event.extra["port"], 0);
        assert!(
            event.extra["reason"]
                .as_str()
                .unwrap()
                .starts_with("ssh port 0:")
        );
        services.stop(std::time::Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn strict_start_fails_on_the_first_decoy_that_cannot_start() {
        let (sink, _events) = tokio::sync::mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let plan = plan(json!({"ssh": [{"port": 0}], "ftp": [{"port": 0}]}), true);
        let err = start(&plan, sink, &shutdown).await.unwrap_err();
        assert!(err.to_string().starts_with("ssh port 0:"), "{err}");
    }
}
