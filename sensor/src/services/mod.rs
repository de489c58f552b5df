//! Emulated services: the decoys attackers talk to.
//!
//! The framework ([`listen`], [`session`], [`gate`]) binds each configured instance on the
//! configured interface's addresses (IPv4 and IPv6), admits connections under global and
//! per-source caps, fixes each session's identity from the socket, emits
//! `<service>.connection`, and bounds every session in bytes and time. Protocol files
//! (one each) only read, answer and add `extra` fields:
//!
//! - [`ftp`], [`telnet`], [`ssh`], [`http`] (HTTP and HTTPS with Trapster skins), [`mysql`],
//!   [`postgres`].
//!
//! The services never open outbound connections.

pub mod config;
pub mod ftp;
pub mod gate;
pub mod http;
pub mod listen;
pub mod mysql;
pub mod postgres;
pub mod session;
pub mod ssh;
pub mod telnet;
pub mod tls;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio_util::task::TaskTracker;

pub use config::{ServiceLimits, ServicesSection};
pub use gate::ServiceCounters;
pub use session::{EventSink, Session, SessionError};

use crate::{config::Config, event::Service, shutdown::CancellationToken};

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

/// What protocol set-up code may read: names presented to clients and where to keep state.
#[derive(Debug, Clone)]
pub struct Context {
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
}

/// The running services.
#[derive(Debug)]
pub struct Services {
    bound: Vec<(Service, SocketAddr)>,
    counters: Arc<ServiceCounters>,
    gate: Arc<gate::Gate>,
    tracker: TaskTracker,
    stop: CancellationToken,
    accept_loops: Vec<tokio::task::JoinHandle<()>>,
}

impl Services {
    /// Every listening address, with its service.
    #[must_use]
    pub fn bound(&self) -> &[(Service, SocketAddr)] {
        &self.bound
    }

    /// The first address `service` listens on.
    #[must_use]
    pub fn address_of(&self, service: Service) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, a)| *a)
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

    /// Stops accepting, ends every session and waits (up to `grace`) for them to finish.
    pub async fn stop(self, grace: Duration) {
        self.stop.cancel();
        self.tracker.close();
        for handle in self.accept_loops {
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

/// Binds every configured service and starts accepting; events go to `sink`.
///
/// # Errors
/// [`ServiceError`] naming the service and port that cannot start; nothing is left listening.
pub async fn start(
    config: &Config,
    sink: EventSink,
    shutdown: &CancellationToken,
) -> Result<Services, ServiceError> {
    let section = &config.services;
    for name in section.other.keys() {
        tracing::warn!(
            service = %name,
            "This protocol is not emulated by this version; its instances are ignored."
        );
    }
    let limits = Arc::new(config.sensor.services.clone());
    let ctx = Context {
        hostname: config
            .hostname
            .clone()
            .unwrap_or_else(|| "srv01".to_owned()),
        domain: config.domain.clone().unwrap_or_default(),
        limits: Arc::clone(&limits),
    };
    let mut planned: Vec<(Service, u16, listen::Handler)> = Vec::new();
    for c in &section.ftp {
        planned.push((Service::Ftp, c.port, ftp::handler(c, &ctx)));
    }
    for c in &section.telnet {
        planned.push((Service::Telnet, c.port, telnet::handler(c, &ctx)));
    }
    for c in &section.ssh {
        planned.push((Service::Ssh, c.port, ssh::handler(c, &ctx)?));
    }
    for c in &section.http {
        planned.push((Service::Http, c.port, http::handler(c, &ctx, false)?));
    }
    for c in &section.https {
        planned.push((Service::Https, c.port, http::handler(c, &ctx, true)?));
    }
    for c in &section.mysql {
        planned.push((Service::Mysql, c.port, mysql::handler(c, &ctx)));
    }
    for c in &section.postgres {
        planned.push((Service::Postgres, c.port, postgres::handler(c, &ctx)?));
    }

    let addresses = if planned.is_empty() {
        Vec::new()
    } else {
        listen::bind_addresses(&config.interface)?
    };
    let mut listeners = Vec::new();
    for (service, port, handler) in planned {
        for ip in &addresses {
            let addr = SocketAddr::new(*ip, port);
            match listen::bind(service, addr) {
                Ok(listener) => listeners.push((service, listener, Arc::clone(&handler))),
                // A host without IPv6 still serves IPv4 on the wildcard.
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
    }

    let stop = shutdown.child_token();
    let shared = listen::Shared {
        limits: Arc::clone(&limits),
        gate: gate::Gate::new(limits.max_connections, limits.max_connections_per_source),
        counters: Arc::new(ServiceCounters::default()),
        whitelist: Arc::new(config.whitelist_ips.clone()),
        sink,
        tracker: TaskTracker::new(),
        shutdown: stop.clone(),
    };
    let mut bound = Vec::new();
    let mut accept_loops = Vec::new();
    for (service, listener, handler) in listeners {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(service = service.as_str(), %addr, "Service listening.");
            bound.push((service, addr));
        }
        accept_loops.push(tokio::spawn(listen::accept_loop(
            listener,
            service,
            handler,
            shared.clone(),
        )));
    }
    Ok(Services {
        bound,
        counters: shared.counters,
        gate: shared.gate,
        tracker: shared.tracker,
        stop,
        accept_loops,
    })
}
