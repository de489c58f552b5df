//! The running catch-all: its listeners (bound once, kept across configuration reloads so the
//! kernel program's SOCKMAP never points at a closed socket), the steered ports, and the
//! accept loops, relaunched with a new [`Dispatch`] when a reload changes what the
//! connections are handed to.

use std::{net::SocketAddr, os::fd::OwnedFd, sync::Arc};

use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use super::{Dispatch, config::DecoysConfig, descriptors, listening_ports};
use crate::{
    event::Service,
    services::{Context, ServiceError, ServiceLimits, ServicesPlan, framework::Shared},
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
    /// Where the listeners are bound (loopback, ephemeral ports).
    pub addresses: Vec<SocketAddr>,
    /// The TCP ports to steer: those `sensor.decoys` names, less those excluded and those
    /// something listened on when they were last computed (start, reload).
    pub ports: Vec<u16>,
}

/// The serving catch-all.
#[derive(Debug)]
pub struct CatchAll {
    listeners: Vec<Arc<TcpListener>>,
    sockets: DecoySockets,
    /// What the running dispatch was built from; a reload with another one relaunches.
    recipe: String,
    /// Ends the accept loops only (a relaunch keeps the sessions).
    accepting: CancellationToken,
    /// Ends the sessions too.
    stop: CancellationToken,
    tracker: TaskTracker,
    loops: Vec<tokio::task::JoinHandle<()>>,
    shared: Shared,
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
        dispatch: Dispatch,
        recipe: String,
        decoys: &DecoysConfig,
        shared: &Shared,
        parent: &CancellationToken,
    ) -> Result<Self, ServiceError> {
        let (v4, v6) = descriptors(&listeners).map_err(|source| {
            super::super::bind_error("tcp", SocketAddr::from(([127, 0, 0, 1], 0)), source)
        })?;
        let addresses = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let stop = parent.child_token();
        let tracker = TaskTracker::new();
        let mut catch_all = Self {
            listeners: listeners.into_iter().map(Arc::new).collect(),
            sockets: DecoySockets {
                v4,
                v6,
                addresses,
                ports: Vec::new(),
            },
            recipe,
            accepting: stop.child_token(),
            shared: Shared {
                tracker: tracker.clone(),
                shutdown: stop.clone(),
                ..shared.clone()
            },
            stop,
            tracker,
            loops: Vec::new(),
        };
        catch_all.refresh_ports(decoys);
        catch_all.spawn(Arc::new(dispatch));
        tracing::info!(ports = catch_all.sockets.ports.len(), listeners = ?catch_all.sockets.addresses, "Any-port decoy listeners ready.");
        Ok(catch_all)
    }

    fn spawn(&mut self, dispatch: Arc<Dispatch>) {
        for listener in &self.listeners {
            self.loops.push(tokio::spawn(super::accept_loop(
                Arc::clone(listener),
                Arc::clone(&dispatch),
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

    /// Recomputes the steered ports from `decoys` and what listens now (after a reload bound
    /// or closed instances).
    pub fn refresh_ports(&mut self, decoys: &DecoysConfig) {
        let listening = listening_ports();
        self.sockets.ports = (1..=u16::MAX)
            .filter(|p| decoys.steers(*p) && listening.binary_search(p).is_err())
            .collect();
    }

    /// Accepts with `dispatch` from now on, on the same listeners (connections queued meanwhile
    /// wait in their backlog); sessions already handed over go on. `shared` brings the gate and
    /// limits in force.
    pub async fn relaunch(&mut self, dispatch: Dispatch, recipe: String, shared: &Shared) {
        self.accepting.cancel();
        for handle in std::mem::take(&mut self.loops) {
            let _ignored = handle.await;
        }
        self.accepting = self.stop.child_token();
        self.shared = Shared {
            tracker: self.tracker.clone(),
            shutdown: self.stop.clone(),
            ..shared.clone()
        };
        self.recipe = recipe;
        self.spawn(Arc::new(dispatch));
    }

    /// Stops accepting and ends its sessions ([`Self::finish`] waits).
    pub fn cancel(&self) {
        self.stop.cancel();
        self.tracker.close();
    }

    /// Waits for the accept loops after [`Self::cancel`], closes the listeners, and returns
    /// what its sessions are awaited with.
    pub async fn finish(self) -> TaskTracker {
        for handle in self.loops {
            let _ignored = handle.await;
        }
        drop(self.listeners);
        drop(self.sockets);
        self.tracker
    }
}

/// What the dispatch is built from: a reload that changes it relaunches the accept loops.
#[must_use]
pub fn recipe(plan: &ServicesPlan) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?}",
        plan.decoys, plan.services, plan.hostname, plan.domain, plan.limits
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
) -> Result<CatchAll, ServiceError> {
    let dispatch = super::prepare(plan, &base(plan, &shared.limits)).await?;
    let listeners = super::bind()?;
    CatchAll::launch(
        listeners,
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
    catch_all.refresh_ports(&plan.decoys);
    Ok(())
}
