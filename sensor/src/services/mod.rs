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
//! - [`instances`]: one instance at a time: its identity across configuration reloads, what it
//!   is built from, its bound sockets (taken over by a changed instance on the same port, so a
//!   privileged port stays served after the privilege drop); [`Services::reload`] applies a
//!   new plan instance by instance.
//! - [`proto`]: one file (or folder) per protocol, which only reads, answers and adds `extra`
//!   fields: FTP, Telnet, SSH, HTTP and HTTPS with Trapster skins, MySQL, PostgreSQL.
//!
//! With `sensor.decoys`, [`framework::anyport`] adds catch-all listeners that the kernel's
//! `sk_lookup` program feeds with connections to every steered port, each handed to the
//! service its port or first bytes name ([`Services::decoys`] gives the agent what the kernel
//! program needs).
//!
//! Handlers are built on the blocking pool (host keys, certificates and skins are generated or
//! read there), all instances at once. The services never open outbound connections, except
//! FTP's active-mode data connections (`PORT`/`EPRT`), and those only to the control
//! connection's own peer.

pub mod framework;
pub mod instances;
pub mod persona;
pub mod plan;
pub mod proto;
pub mod registry;
mod reload;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio_util::task::TaskTracker;

pub use framework::anyport::DecoySockets;
pub use framework::{
    gate::ServiceCounters,
    session::{EventSink, Session, SessionError},
};
pub use persona::Persona;
pub use plan::{SectionError, ServiceLimits, ServicesPlan, ServicesSection};

use self::framework::{Shared, gate::Gate};
pub use self::reload::Reloaded;
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
    /// A port below the unprivileged port start, new at a configuration reload: binding it
    /// needs `CAP_NET_BIND_SERVICE`, which the sensor gave up after start.
    #[error(
        "{service}: port {port} is below the unprivileged port start ({first_free}) and binding \
         it needs CAP_NET_BIND_SERVICE, which the sensor gives up after start; restart the \
         sensor to apply this decoy"
    )]
    Privileged {
        /// Service name.
        service: &'static str,
        /// The port.
        port: u16,
        /// `net.ipv4.ip_unprivileged_port_start`.
        first_free: u16,
    },
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

/// The running services: every instance serves on its own (see [`instances`]), with one
/// admission gate, one set of counters and one whitelist for all.
#[derive(Debug)]
pub struct Services {
    bound: Vec<(Service, SocketAddr)>,
    udp: Vec<(Service, SocketAddr)>,
    down: Vec<DownService>,
    /// Limits, gate, counters, whitelist and sink every instance is launched with.
    shared: Shared,
    /// The parent of every instance's token.
    stop: CancellationToken,
    instances: Vec<instances::Running>,
    /// [`instances::plan_wide`] of the plan in force.
    plan_wide: String,
    /// The any-port decoys' catch-all, when `sensor.decoys` is enabled.
    decoys: Option<framework::anyport::CatchAll>,
    /// Send-only raw sockets for UDP decoy replies from ports below the unprivileged port
    /// start, opened before the privilege drop when the decoys steer such a port
    /// ([`crate::net::raw_udp`]); kept across reloads.
    raw_udp: Option<Arc<crate::net::raw_udp::RawUdp>>,
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

    /// The any-port decoys' listeners and ports, when `sensor.decoys` is enabled.
    #[must_use]
    pub fn decoys(&self) -> Option<&DecoySockets> {
        self.decoys
            .as_ref()
            .map(framework::anyport::CatchAll::sockets)
    }

    /// The listening-port watch: recomputes the any-port decoys' steered ports from what
    /// listens now; whether they changed (false without decoys).
    pub fn rewatch_decoys(&mut self) -> bool {
        self.decoys
            .as_mut()
            .is_some_and(framework::anyport::CatchAll::rewatch)
    }

    /// How often the any-port decoys' steered ports are recomputed, `None` without decoys or
    /// with the watch off.
    #[must_use]
    pub fn decoy_watch(&self) -> Option<Duration> {
        self.decoys.as_ref().and_then(|d| d.decoys().watch())
    }

    /// Framework counters (kept across configuration reloads).
    #[must_use]
    pub fn counters(&self) -> Arc<ServiceCounters> {
        Arc::clone(&self.shared.counters)
    }

    /// Connections open now.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.shared.gate.open()
    }

    /// Replaces the whitelist every listener checks (configuration reload); sessions already
    /// open keep the decision made when they started.
    pub fn set_whitelist(&self, whitelist: Vec<Cidr>) {
        let mut current = self
            .shared
            .whitelist
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = whitelist;
    }

    /// Stops accepting, ends every session and waits (up to `grace`) for them to finish.
    pub async fn stop(self, grace: Duration) {
        self.stop.cancel();
        let mut trackers = Vec::new();
        for instance in &self.instances {
            instance.cancel();
        }
        if let Some(decoys) = &self.decoys {
            decoys.cancel();
        }
        for instance in self.instances {
            trackers.push(instance.finish().await);
        }
        if let Some(decoys) = self.decoys {
            trackers.push(decoys.finish().await);
        }
        instances::wait_sessions(trackers, grace).await;
    }

    /// The bound address lists, from the running instances.
    fn refresh_bound(&mut self) {
        self.bound.clear();
        self.udp.clear();
        for instance in &self.instances {
            let (tcp, udp) = instance.addresses();
            self.bound.extend(tcp);
            self.udp.extend(udp);
        }
    }

    /// Logs the instances that are down.
    fn log_down(&self) {
        for d in &self.down {
            if let ServiceError::Privileged { first_free, .. } = &d.error {
                tracing::warn!(
                    service = d.service.as_str(),
                    port = d.port,
                    unprivileged_port_start = first_free,
                    capability = "CAP_NET_BIND_SERVICE",
                    "New decoy on a privileged port not started: binding it needs CAP_NET_BIND_SERVICE, given up after start; restart the sensor to apply it."
                );
            } else {
                tracing::error!(service = d.service.as_str(), port = d.port, error = %d.error, "Decoy not started; every other decoy and scan detection keep running (`sensor.services.strict` stops the sensor instead).");
            }
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

/// The raw sockets UDP decoys reply through from ports below the unprivileged port start
/// (binding those needs `CAP_NET_BIND_SERVICE`, gone after the privilege drop), opened now, while
/// `CAP_NET_RAW` is held, only when `decoys` steers such a port. `None` otherwise, or when they
/// cannot be opened: such datagrams are then reported but not answered (`udp_send_failed`).
fn low_port_sender(
    decoys: &framework::anyport::config::DecoysConfig,
) -> Option<Arc<crate::net::raw_udp::RawUdp>> {
    let first_free = instances::unprivileged_port_start();
    if !decoys.steers_udp_below(first_free) {
        return None;
    }
    match crate::net::raw_udp::RawUdp::open(first_free) {
        Ok(raw) => {
            tracing::info!(
                below = first_free,
                "UDP decoy replies from privileged ports go through a send-only raw socket."
            );
            Some(Arc::new(raw))
        }
        Err(err) => {
            tracing::warn!(error = %err, below = first_free, "No raw socket (needs CAP_NET_RAW at start): datagrams to UDP decoy ports below the unprivileged port start are reported but not answered.");
            None
        }
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
    sink: impl Into<EventSink>,
    shutdown: &CancellationToken,
) -> Result<Services, ServiceError> {
    let sink = sink.into();
    // Protocols this version does not emulate are named among the configuration's warnings
    // (`sensor check` prints them, `sensor run` logs them once).
    let limits = Arc::new(plan.limits.clone());
    let wanted = instances::wanted(plan)?;
    let all: Vec<&instances::Wanted> = wanted.iter().collect();
    // Every handler is built on the blocking pool (RSA host keys, certificates, skin files),
    // all instances at once.
    let (prepared, down) =
        instances::prepare(&all, &limits, &plan.interface, &[], instances::Phase::Start).await?;
    let stop = shutdown.child_token();
    let shared = Shared {
        gate: Gate::new(
            limits.max_connections,
            limits.max_connections_per_source,
            plan.source_prefix,
        ),
        limits,
        counters: Arc::new(ServiceCounters::default()),
        whitelist: Arc::new(std::sync::RwLock::new(plan.whitelist.clone())),
        sink,
        tracker: TaskTracker::new(),
        shutdown: stop.clone(),
    };
    let instances = prepared
        .into_iter()
        .map(|p| instances::launch(p, &shared, &stop))
        .collect();
    let mut down = down;
    // After the instances are bound: the ports they listen on are left to them.
    let raw_udp = low_port_sender(&plan.decoys);
    let decoys = if plan.decoys.enabled {
        match framework::anyport::start(plan, &shared, &stop, raw_udp.clone()).await {
            Ok(decoys) => Some(decoys),
            Err(err) if !shared.limits.strict => {
                down.push(DownService::new(Service::Tcp, 0, err));
                None
            }
            Err(err) => {
                stop.cancel();
                return Err(err);
            }
        }
    } else {
        None
    };
    let mut services = Services {
        bound: Vec::new(),
        udp: Vec::new(),
        down,
        shared,
        stop,
        instances,
        plan_wide: instances::plan_wide(plan),
        decoys,
        raw_udp,
    };
    services.refresh_bound();
    services.log_down();
    Ok(services)
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
