//! The running catch-all: its TCP listeners and UDP sockets (bound once, kept across
//! configuration reloads so the kernel program's SOCKMAP never points at a closed socket), the
//! steered ports, and the accept and datagram loops, relaunched with a new [`Dispatch`] when a
//! reload changes what the connections are handed to.

use std::{
    net::SocketAddr,
    os::fd::{AsFd as _, OwnedFd},
    sync::Arc,
};

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::task::TaskTracker;

use super::{Dispatch, config::DecoysConfig, descriptors, listening_ports, udp::UdpSockets};
use crate::{
    event::Service,
    net::raw_udp::RawUdp,
    services::{
        Context, ServiceError, ServiceLimits, ServicesPlan,
        framework::{Shared, tasks::Tasks},
    },
    shutdown::CancellationToken,
};

/// The any-port decoys' catch-all listeners, for the kernel program that steers connections
/// to them (`capture::sk_lookup`), and the ports to steer.
#[derive(Debug)]
pub struct DecoySockets {
    /// A duplicate of the IPv4 listener's descriptor.
    pub v4: OwnedFd,
    /// A duplicate of the IPv6 listener's descriptor, when one is bound.
    pub v6: Option<OwnedFd>,
    /// A duplicate of the IPv4 UDP socket's descriptor.
    pub udp_v4: Option<OwnedFd>,
    /// A duplicate of the IPv6 UDP socket's descriptor, when one is bound.
    pub udp_v6: Option<OwnedFd>,
    /// Where the listeners are bound (loopback, ephemeral ports).
    pub addresses: Vec<SocketAddr>,
    /// Where the UDP sockets are bound (loopback, ephemeral ports).
    pub udp_addresses: Vec<SocketAddr>,
    /// The TCP ports to steer: those `sensor.decoys` names, less those excluded and those
    /// something listened on when they were last computed (start, reload).
    pub ports: Vec<u16>,
    /// The UDP ports to steer, as `ports`: less those something was bound to.
    pub udp_ports: Vec<u16>,
}

/// The serving catch-all.
#[derive(Debug)]
pub struct CatchAll {
    listeners: Vec<Arc<TcpListener>>,
    udp: Vec<Arc<UdpSocket>>,
    sockets: DecoySockets,
    /// What the running dispatch was built from; a reload with another one relaunches.
    recipe: String,
    /// The `sensor.decoys` in force, for the listening-port watch.
    decoys: DecoysConfig,
    /// Ends the accept loops only (a relaunch keeps the sessions).
    accepting: CancellationToken,
    /// The loops and sessions.
    tasks: Tasks,
    shared: Shared,
    /// Replies from UDP ports the agent can no longer bind ([`crate::net::raw_udp`]).
    raw_udp: Option<Arc<RawUdp>>,
}

impl CatchAll {
    /// Starts accepting on `listeners` with `dispatch`; sessions use `shared`'s gate, counters,
    /// whitelist and sink, and stop with `parent`. The steered ports are computed now, once
    /// every configured service is bound.
    ///
    /// # Errors
    /// [`ServiceError::Bind`] when a listener's descriptor cannot be duplicated.
    pub fn launch(
        listeners: Vec<TcpListener>,
        udp: UdpSockets,
        dispatch: Dispatch,
        recipe: String,
        decoys: &DecoysConfig,
        shared: &Shared,
        parent: &CancellationToken,
    ) -> Result<Self, ServiceError> {
        let UdpSockets {
            catch_all: udp,
            raw: raw_udp,
        } = udp;
        let (v4, v6) = descriptors(&listeners).map_err(|source| {
            super::super::bind_error("tcp", SocketAddr::from(([127, 0, 0, 1], 0)), source)
        })?;
        let addresses = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let udp_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let (mut udp_v4, mut udp_v6) = (None, None);
        let mut udp_addresses = Vec::new();
        for socket in &udp {
            let fd = socket.as_fd().try_clone_to_owned();
            let fd = fd.map_err(|source| super::super::bind_error("udp", udp_addr, source))?;
            let local = socket
                .local_addr()
                .map_err(|source| super::super::bind_error("udp", udp_addr, source))?;
            udp_addresses.push(local);
            if local.is_ipv4() {
                udp_v4 = Some(fd);
            } else {
                udp_v6 = Some(fd);
            }
        }
        let tasks = Tasks::new(parent);
        let mut catch_all = Self {
            listeners: listeners.into_iter().map(Arc::new).collect(),
            udp: udp.into_iter().map(Arc::new).collect(),
            sockets: DecoySockets {
                v4,
                v6,
                udp_v4,
                udp_v6,
                addresses,
                udp_addresses,
                ports: Vec::new(),
                udp_ports: Vec::new(),
            },
            recipe,
            decoys: decoys.clone(),
            accepting: tasks.stop().child_token(),
            shared: Shared {
                tracker: tasks.tracker().clone(),
                shutdown: tasks.stop().clone(),
                ..shared.clone()
            },
            tasks,
            raw_udp,
        };
        let _changed = catch_all.refresh_ports(decoys);
        catch_all.spawn(Arc::new(dispatch));
        tracing::info!(ports = catch_all.sockets.ports.len(), udp_ports = catch_all.sockets.udp_ports.len(), listeners = ?catch_all.sockets.addresses, udp = ?catch_all.sockets.udp_addresses, "Any-port decoy listeners ready.");
        Ok(catch_all)
    }

    fn spawn(&mut self, dispatch: Arc<Dispatch>) {
        // The persona's TTL: SYN-ACKs and accepted connections inherit the listener's, replies
        // leave through the UDP sockets (or a socket given the same TTL).
        let tcp = self
            .listeners
            .iter()
            .map(|l| (socket2::SockRef::from(l.as_ref()), l.local_addr()));
        let udp = self
            .udp
            .iter()
            .map(|s| (socket2::SockRef::from(s.as_ref()), s.local_addr()));
        for (socket, addr) in tcp.chain(udp) {
            if let Ok(addr) = addr
                && let Err(err) = super::super::ttl::set(&socket, addr.ip(), dispatch.ttl)
            {
                tracing::warn!(error = %err, "Setting the persona's TTL on a catch-all socket failed.");
            }
        }
        for listener in &self.listeners {
            self.tasks.push(tokio::spawn(super::accept_loop(
                Arc::clone(listener),
                Arc::clone(&dispatch),
                self.shared.clone(),
                self.accepting.clone(),
            )));
        }
        for socket in &self.udp {
            self.tasks.push(tokio::spawn(super::udp::serve(
                Arc::clone(socket),
                Arc::clone(&dispatch),
                self.raw_udp.clone(),
                self.shared.clone(),
                self.accepting.clone(),
            )));
        }
    }

    /// The descriptors, addresses and steered ports.
    #[must_use]
    pub const fn sockets(&self) -> &DecoySockets {
        &self.sockets
    }

    /// What the running dispatch was built from.
    #[must_use]
    pub fn recipe(&self) -> &str {
        &self.recipe
    }

    /// Recomputes the steered ports from `decoys` (kept as the ones in force) and what listens
    /// now (after a reload bound or closed instances); returns whether they changed.
    pub fn refresh_ports(&mut self, decoys: &DecoysConfig) -> bool {
        decoys.clone_into(&mut self.decoys);
        self.rewatch()
    }

    /// The listening-port watch: the steered ports recomputed with the `sensor.decoys` in
    /// force; returns whether they changed (a program began or stopped listening on one).
    pub fn rewatch(&mut self) -> bool {
        let listening = listening_ports();
        let ports: Vec<u16> = (1..=u16::MAX)
            .filter(|p| self.decoys.steers(*p) && listening.binary_search(p).is_err())
            .collect();
        let bound = super::udp::bound_ports();
        let udp_ports: Vec<u16> = (1..=u16::MAX)
            .filter(|p| self.decoys.steers_udp(*p) && bound.binary_search(p).is_err())
            .collect();
        let changed = ports != self.sockets.ports || udp_ports != self.sockets.udp_ports;
        self.sockets.ports = ports;
        self.sockets.udp_ports = udp_ports;
        changed
    }

    /// The `sensor.decoys` in force.
    #[must_use]
    pub const fn decoys(&self) -> &DecoysConfig {
        &self.decoys
    }

    /// Accepts with `dispatch` from now on, on the same listeners (connections queued meanwhile
    /// wait in their backlog); sessions already handed over go on. `shared` brings the gate and
    /// limits in force.
    pub async fn relaunch(&mut self, dispatch: Dispatch, recipe: String, shared: &Shared) {
        self.accepting.cancel();
        self.tasks.join_loops().await;
        self.accepting = self.tasks.stop().child_token();
        self.shared = Shared {
            tracker: self.tasks.tracker().clone(),
            shutdown: self.tasks.stop().clone(),
            ..shared.clone()
        };
        self.recipe = recipe;
        self.spawn(Arc::new(dispatch));
    }

    /// Stops accepting and ends its sessions ([`Self::finish`] waits).
    pub fn cancel(&self) {
        self.tasks.cancel();
    }

    /// Waits for the accept loops after [`Self::cancel`], closes the listeners, and returns
    /// what its sessions are awaited with.
    pub async fn finish(self) -> TaskTracker {
        let tracker = self.tasks.finish().await;
        drop(self.listeners);
        drop(self.udp);
        drop(self.sockets);
        tracker
    }
}

/// What the dispatch is built from: a reload that changes it relaunches the accept loops.
#[must_use]
pub fn recipe(plan: &ServicesPlan) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        plan.decoys, plan.services, plan.hostname, plan.domain, plan.limits, plan.persona
    )
}

/// The context every decoy handler is built from (then given its protocol and port).
fn base(plan: &ServicesPlan, limits: &Arc<ServiceLimits>) -> Context {
    Context {
        service: Service::Tcp,
        port: 0,
        hostname: if plan.hostname.is_empty() {
            "srv01".to_owned()
        } else {
            plan.hostname.clone()
        },
        domain: plan.domain.clone(),
        limits: Arc::clone(limits),
    }
}

/// Builds the handlers, binds the listeners and starts accepting (see [`CatchAll::launch`]).
///
/// # Errors
/// [`ServiceError`] when the listeners cannot be bound, or for a configuration `sensor check`
/// would refuse.
pub async fn start(
    plan: &ServicesPlan,
    shared: &Shared,
    parent: &CancellationToken,
    raw_udp: Option<Arc<RawUdp>>,
) -> Result<CatchAll, ServiceError> {
    let dispatch = super::prepare(plan, &base(plan, &shared.limits)).await?;
    let listeners = super::bind()?;
    let udp = super::udp::bind(raw_udp)?;
    CatchAll::launch(
        listeners,
        udp,
        dispatch,
        recipe(plan),
        &plan.decoys,
        shared,
        parent,
    )
}

/// Follows a reloaded `plan`: rebuilds the handlers and relaunches the accept loops when what
/// they are built from changed, and recomputes the steered ports in any case.
///
/// # Errors
/// [`ServiceError`] for a configuration `sensor check` would refuse; the running catch-all is
/// left as it was then.
pub async fn follow(
    catch_all: &mut CatchAll,
    plan: &ServicesPlan,
    shared: &Shared,
) -> Result<(), ServiceError> {
    let wanted = recipe(plan);
    if wanted != catch_all.recipe() {
        let dispatch = super::prepare(plan, &base(plan, &shared.limits)).await?;
        catch_all.relaunch(dispatch, wanted, shared).await;
    }
    let _changed = catch_all.refresh_ports(&plan.decoys);
    Ok(())
}
