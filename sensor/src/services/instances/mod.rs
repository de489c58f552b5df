//! The decoys one instance at a time: what identifies an instance across configuration
//! reloads, what it is built from, and the sockets it serves.
//!
//! - An instance is known by its [`InstanceKey`]: protocol, configured port and, for several
//!   instances of one protocol on one port (only possible with `ephemeral_ports`), its position
//!   among them. The bind addresses are the interface's, the same for every instance.
//! - What it is built from ([`Recipe`]) is its own keys as written plus the host and domain
//!   names it presents: its own `hostname`/`domain`, else the top-level ones. A top-level
//!   `hostname` or `domain` change therefore restarts the instances that do not set their own;
//!   the framework cannot tell which protocols actually present them (most do), so all of those
//!   restart. The plan-wide settings every instance is built and admitted with (`interface`,
//!   `sensor.source_prefix`, `sensor.services`) restart every instance when they change.
//! - Each instance keeps its bound sockets (the listening TCP sockets, the UDP sockets), keyed
//!   by address, port and transport. An instance that starts while another one stops takes
//!   the stopping one's socket for the same address, port and transport (its own, for a changed
//!   instance) instead of binding again, so a port below the unprivileged port start stays
//!   served after the privileges were dropped; connections queued on it meanwhile are accepted
//!   by the new instance. The serving loop gets a duplicate of the descriptor, the instance
//!   keeps the other: a stopped instance's sockets close with it unless taken over.
//! - A reload builds and binds every instance that starts before any instance stops
//!   ([`prepare`]), so a refusal (`sensor.services.strict`, an interface without addresses)
//!   leaves the running decoys untouched (`bind.rs`: the socket registry).

mod bind;

use std::{fmt, net::SocketAddr, time::Duration};

use bind::{Held, Kind, Serving};
pub use bind::{Phase, Prepared, prepare, unprivileged_port_start};
use serde_json::Value;
use tokio_util::task::TaskTracker;

use super::{
    ServicesPlan,
    framework::{Shared, tasks::Tasks, tcp, udp},
    plan::SectionError,
    registry::Protocol,
};
use crate::{event::Service, shutdown::CancellationToken};

/// Which instance of the `services` block an entry is, across reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    /// The protocol's name in the registry (aliases folded: `postgresql` is `postgres`).
    pub protocol: &'static str,
    /// The configured port (0: the kernel's pick, with `ephemeral_ports`).
    pub port: u16,
    /// Position among the instances of this protocol on this port (0 but with port 0).
    pub nth: usize,
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.protocol, self.port)?;
        if self.nth > 0 {
            write!(f, "#{}", self.nth)?;
        }
        Ok(())
    }
}

/// What an instance is built from: any difference restarts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// Its keys, as written.
    settings: Value,
    /// The host name it presents (its own, else the top-level one, else `srv01`).
    hostname: String,
    /// The domain it presents (its own, else the top-level one).
    domain: String,
    /// The IP TTL of its sockets (the persona's), else the kernel's.
    ttl: Option<u32>,
}

/// One instance the plan asks for.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// Its identity.
    pub key: InstanceKey,
    /// What it is built from.
    pub recipe: Recipe,
    /// Its protocol.
    pub protocol: &'static Protocol,
}

/// Every instance of emulated protocols the plan lists, in registry order.
///
/// # Errors
/// [`SectionError`] naming the field, for a block the configuration did not check.
pub fn wanted(plan: &ServicesPlan) -> Result<Vec<Wanted>, SectionError> {
    let hostname = if plan.hostname.is_empty() {
        "srv01".to_owned()
    } else {
        plan.hostname.clone()
    };
    let mut out: Vec<Wanted> = Vec::new();
    for instance in plan.services.instances()? {
        let nth = out
            .iter()
            .filter(|w| w.key.protocol == instance.protocol.name && w.key.port == instance.port)
            .count();
        out.push(Wanted {
            key: InstanceKey {
                protocol: instance.protocol.name,
                port: instance.port,
                nth,
            },
            // Trapster merges the top-level `hostname`/`domain` into each instance, which may
            // set its own.
            recipe: Recipe {
                // The persona's keys under the instance's own.
                settings: plan
                    .persona
                    .apply(instance.protocol.name, instance.settings),
                hostname: instance_text(instance.settings, "hostname")
                    .unwrap_or_else(|| hostname.clone()),
                domain: instance_text(instance.settings, "domain")
                    .unwrap_or_else(|| plan.domain.clone()),
                ttl: plan.persona.ttl(),
            },
            protocol: instance.protocol,
        });
    }
    Ok(out)
}

/// The settings every instance is built and admitted with; a change restarts them all.
#[must_use]
pub fn plan_wide(plan: &ServicesPlan) -> String {
    format!(
        "{:?} {:?} {:?}",
        plan.interface, plan.source_prefix, plan.limits
    )
}

/// What a reload does with the running instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Running and unchanged: left alone, sessions and listeners included.
    pub keep: Vec<InstanceKey>,
    /// Running, and removed or changed: stopped.
    pub stop: Vec<InstanceKey>,
    /// Wanted and not kept (added, changed, or down until now): started.
    pub start: Vec<InstanceKey>,
}

/// Compares the running instances with the wanted ones; `everything` (a plan-wide change)
/// restarts them all.
#[must_use]
pub fn diff<'a>(
    running: impl IntoIterator<Item = (&'a InstanceKey, &'a Recipe)>,
    wanted: &[Wanted],
    everything: bool,
) -> Diff {
    let mut out = Diff::default();
    for (key, recipe) in running {
        let same = !everything && wanted.iter().any(|w| &w.key == key && &w.recipe == recipe);
        if same {
            out.keep.push(key.clone());
        } else {
            out.stop.push(key.clone());
        }
    }
    out.start = wanted
        .iter()
        .filter(|w| !out.keep.contains(&w.key))
        .map(|w| w.key.clone())
        .collect();
    out
}

/// Bound addresses, each with its service.
pub type Addresses = Vec<(Service, SocketAddr)>;

/// A serving instance.
#[derive(Debug)]
pub struct Running {
    key: InstanceKey,
    recipe: Recipe,
    service: Service,
    sockets: Vec<Held>,
    /// Its loops and sessions (they stop with the services' token).
    tasks: Tasks,
}

impl Running {
    /// Its identity.
    #[must_use]
    pub const fn key(&self) -> &InstanceKey {
        &self.key
    }

    /// What it was built from.
    #[must_use]
    pub const fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// Its bound addresses: TCP listeners, then UDP sockets.
    #[must_use]
    pub fn addresses(&self) -> (Addresses, Addresses) {
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for held in &self.sockets {
            if let Ok(addr) = held.socket.local_addr() {
                match held.socket.kind() {
                    Kind::Tcp => tcp.push((self.service, addr)),
                    Kind::Udp => udp.push((self.service, addr)),
                }
            }
        }
        (tcp, udp)
    }

    /// Stops accepting and ends its sessions (they stop at once; [`Self::finish`] waits).
    pub fn cancel(&self) {
        self.tasks.cancel();
    }

    /// Waits for its loops after [`Self::cancel`], closes its sockets (unless another instance
    /// took them over), and returns what its sessions are awaited with.
    pub async fn finish(self) -> TaskTracker {
        let tracker = self.tasks.finish().await;
        drop(self.sockets);
        tracker
    }
}

/// Waits (up to `grace` in all) for the sessions of stopped instances; warns when some did not
/// end.
pub async fn wait_sessions(trackers: Vec<TaskTracker>, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    for tracker in trackers {
        if tokio::time::timeout_at(deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("Some service sessions did not end within the grace period.");
            return;
        }
    }
}

/// Starts serving `prepared` with its own limits and `shared`'s gate, counters, whitelist and
/// sink; its loops and sessions stop with `parent`.
#[must_use]
pub fn launch(prepared: Prepared, shared: &Shared, parent: &CancellationToken) -> Running {
    let mut tasks = Tasks::new(parent);
    let shared = Shared {
        limits: prepared.limits,
        tracker: tasks.tracker().clone(),
        shutdown: tasks.stop().clone(),
        ..shared.clone()
    };
    let service = prepared.service;
    for serving in prepared.serving {
        match serving {
            Serving::Tcp(listener, handler) => {
                if let Ok(addr) = listener.local_addr() {
                    tracing::info!(service = service.as_str(), %addr, "Service listening.");
                }
                tasks.push(tokio::spawn(tcp::accept_loop(
                    listener,
                    service,
                    handler,
                    shared.clone(),
                )));
            }
            Serving::Udp(socket, handler) => {
                if let Ok(addr) = socket.local_addr() {
                    tracing::info!(service = service.as_str(), %addr, "Service listening on UDP.");
                }
                tasks.push(tokio::spawn(udp::serve(
                    socket,
                    service,
                    handler,
                    shared.clone(),
                )));
            }
        }
    }
    Running {
        key: prepared.key,
        recipe: prepared.recipe,
        service,
        sockets: prepared.sockets,
        tasks,
    }
}

/// A non-empty string key of an instance (`hostname`, `domain`).
fn instance_text(settings: &Value, key: &str) -> Option<String> {
    settings
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
