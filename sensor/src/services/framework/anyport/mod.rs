//! Any-port decoys (`sensor.decoys`): one catch-all listener per address family answers on
//! every steered port, and each connection is handed to the emulated service its port or its
//! first bytes name.
//!
//! The kernel side (`capture::sk_lookup`) assigns new connections for the steered ports to
//! these listeners; the accepted socket's local address is still the address and port the
//! client asked for, so the identity (and every event's `dst_port`) is the real one. Each
//! connection goes through the same admission gate, whitelist, limits and session path as a
//! connection to a configured service ([`super::tcp::admit`], [`super::tcp::run_session`]):
//!
//! 1. the service is the one `sensor.decoys.ports` names for the port, else the one the first
//!    bytes name ([`sniff`]; peeked, so the service reads them again), else, when the client
//!    sends nothing within `sniff_timeout_ms`, the `banner` service (server speaks first);
//! 2. a `tcp.connection` event reports the connection whatever happens next: `data` holds the
//!    bytes seen, `extra.service` the service chosen (null when none: unknown bytes, a client
//!    gone, or no banner service), `extra.detected` how (`port`, `sniff`, `banner`, `none`);
//! 3. the chosen service runs the session as if it had accepted it (`<service>.connection`,
//!    logins, ...), with the settings of its first instance in `services` when one is
//!    configured, its defaults otherwise.
//!
//! UDP datagrams for `sensor.decoys.udp` go the same way through one socket per address
//! family ([`udp`]): `udp.connection`, then the UDP service the port or the datagram names.

pub mod config;
mod running;
pub mod sniff;
pub mod udp;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsFd as _, OwnedFd},
    sync::Arc,
};

use serde_json::{Map, Value};
use tokio::{
    io::AsyncReadExt as _,
    net::{TcpListener, TcpStream},
};

pub use self::running::{CatchAll, DecoySockets, follow, start};
use self::{
    config::DecoysConfig,
    sniff::{Peeked, Sniffed},
};
use super::{Shared, tcp};
use crate::{
    event::{Action, Service},
    services::{Context, ServiceError, ServiceLimits, ServicesPlan, registry},
    shutdown::CancellationToken,
};

/// The handlers decoy connections can be given, by registry name, and how one is chosen.
#[derive(Clone)]
pub struct Dispatch {
    /// Each protocol's channel, handler and limits (its own timeouts resolved as for an
    /// instance with the same settings).
    handlers: BTreeMap<&'static str, (Service, tcp::Handler, Arc<ServiceLimits>)>,
    ports: BTreeMap<u16, &'static str>,
    /// The UDP protocols' handlers, as `handlers`.
    udp_handlers: BTreeMap<&'static str, (Service, super::udp::UdpHandler, Arc<ServiceLimits>)>,
    /// UDP ports with a fixed service: `udp_ports`, and each UDP protocol's own port.
    udp_ports: BTreeMap<u16, &'static str>,
    banner: Option<&'static str>,
    sniff_timeout: std::time::Duration,
    /// The persona's TTL for the catch-all sockets and the UDP replies (`None`: the kernel's).
    ttl: Option<u32>,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("services", &self.handlers.keys().collect::<Vec<_>>())
            .field("ports", &self.ports)
            .field(
                "udp_services",
                &self.udp_handlers.keys().collect::<Vec<_>>(),
            )
            .field("udp_ports", &self.udp_ports)
            .field("banner", &self.banner)
            .finish_non_exhaustive()
    }
}

/// How a decoy connection's service was chosen (`extra.detected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// `sensor.decoys.ports` names the port.
    Port,
    /// The first bytes.
    Sniff,
    /// The client sent nothing in time: the banner service.
    Banner,
    /// No service: unknown bytes, the client left, or no banner service.
    None,
}

impl Detected {
    /// Its name in `extra.detected`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Port => "port",
            Self::Sniff => "sniff",
            Self::Banner => "banner",
            Self::None => "none",
        }
    }
}

impl Dispatch {
    /// The service for a connection to `port` whose first bytes were `peeked` (`None` when
    /// the port is mapped: nothing was peeked). A service without a built handler counts as
    /// none.
    #[must_use]
    pub fn choose(&self, port: u16, peeked: Option<&Peeked>) -> (Option<&'static str>, Detected) {
        let (name, detected) = match (self.ports.get(&port), peeked) {
            (Some(name), _) => (Some(*name), Detected::Port),
            (None, None) => (None, Detected::None),
            (None, Some(p)) => match p.sniffed {
                Sniffed::Service(name) => (Some(name), Detected::Sniff),
                Sniffed::NeedMore if p.bytes.is_empty() && !p.closed => {
                    (self.banner, Detected::Banner)
                }
                Sniffed::NeedMore | Sniffed::Unknown => (None, Detected::None),
            },
        };
        match name {
            Some(name) if self.handlers.contains_key(name) => (Some(name), detected),
            _ => (None, Detected::None),
        }
    }

    /// Whether `port` has a fixed service.
    #[must_use]
    pub fn mapped(&self, port: u16) -> bool {
        self.ports.contains_key(&port)
    }
}

/// The protocols decoys may hand connections to: those `ports` and `banner` name, and those the
/// sniffer recognises.
fn wanted(decoys: &DecoysConfig) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ["https", "ssh", "http", "smb", "rdp", "mssql"].to_vec();
    let named = decoys
        .ports
        .values()
        .map(String::as_str)
        .chain(decoys.banner());
    for name in named {
        if let Ok(name) = config::tcp_protocol(name)
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    if decoys.enabled {
        for name in udp_wanted() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// Every protocol served over UDP (the UDP decoys may hand datagrams to any of them).
fn udp_wanted() -> impl Iterator<Item = &'static str> {
    registry::PROTOCOLS
        .iter()
        .filter(|p| p.transport() != registry::Transport::Tcp)
        .map(|p| p.name)
}

/// Builds the handlers decoy connections may get (on the blocking pool, all at once), from the
/// first configured instance of each protocol or its defaults. A protocol whose handler cannot
/// be built is left out (logged): its connections get `tcp.connection` only.
///
/// # Errors
/// [`ServiceError::Setup`] only for a configuration `sensor check` would refuse.
pub async fn prepare(plan: &ServicesPlan, base: &Context) -> Result<Dispatch, ServiceError> {
    let decoys = &plan.decoys;
    let instances = plan.services.instances()?;
    let empty = Value::Object(Map::new());
    let mut builds = Vec::new();
    for name in wanted(decoys) {
        let Some(protocol) = registry::find(name) else {
            continue;
        };
        // The first configured instance's settings and port (its host keys and certificate
        // are kept per port), else the protocol's defaults.
        let configured = instances
            .iter()
            .find(|i| std::ptr::eq(i.protocol, protocol));
        let (settings, port) = configured.map_or_else(
            || (empty.clone(), protocol.default_port),
            |i| (i.settings.clone(), i.port),
        );
        let settings = plan.persona.apply(protocol.name, &settings);
        let ctx = Context {
            service: protocol.service,
            port,
            limits: Arc::new(super::timeouts::resolve(
                &base.limits,
                (protocol.timeouts)(&settings),
                &settings,
            )),
            ..base.clone()
        };
        let limits = Arc::clone(&ctx.limits);
        let task = tokio::task::spawn_blocking(move || protocol.build(&settings, &ctx));
        builds.push((protocol, limits, task));
    }
    let mut handlers = BTreeMap::new();
    let mut udp_handlers = BTreeMap::new();
    for (protocol, limits, task) in builds {
        let built = match task.await {
            Ok(built) => built,
            Err(err) => Err(base.setup_error(format!("set-up did not finish: {err}"))),
        };
        let (tcp_handler, udp_handler) = match built {
            Ok(registry::Built::Tcp(handler)) => (Some(handler), None),
            Ok(registry::Built::UdpTcp(udp, handler)) => (Some(handler), Some(udp)),
            Ok(registry::Built::Udp(udp)) => (None, Some(udp)),
            Err(err) => {
                tracing::error!(service = protocol.name, error = %err, "Decoy service not available for any-port connections; they get tcp.connection or udp.connection only.");
                continue;
            }
        };
        if let Some(handler) = tcp_handler {
            handlers.insert(
                protocol.name,
                (protocol.service, handler, Arc::clone(&limits)),
            );
        }
        if let Some(handler) = udp_handler {
            udp_handlers.insert(protocol.name, (protocol.service, handler, limits));
        }
    }
    // Each UDP protocol's own port, then the configured map over it.
    let mut udp_ports: BTreeMap<u16, &'static str> = registry::PROTOCOLS
        .iter()
        .filter(|p| p.transport() != registry::Transport::Tcp)
        .map(|p| (p.default_port, p.name))
        .collect();
    udp_ports.extend(
        decoys
            .udp_ports
            .iter()
            .filter_map(|(port, name)| config::udp_protocol(name).ok().map(|n| (*port, n))),
    );
    let ports = decoys
        .ports
        .iter()
        .filter_map(|(port, name)| config::tcp_protocol(name).ok().map(|n| (*port, n)))
        .collect();
    Ok(Dispatch {
        handlers,
        ports,
        udp_handlers,
        udp_ports,
        banner: decoys.banner().and_then(|b| config::tcp_protocol(b).ok()),
        sniff_timeout: decoys.sniff_timeout(),
        ttl: plan.persona.ttl(),
    })
}

/// The catch-all listeners: loopback, ephemeral ports (no privilege needed, and nothing outside
/// the host reaches them without the kernel program), one per address family.
///
/// # Errors
/// [`ServiceError::Bind`] when the IPv4 listener cannot be bound; IPv6 is optional.
pub fn bind() -> Result<Vec<TcpListener>, ServiceError> {
    let mut listeners = vec![tcp::bind(
        Service::Tcp,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
    )?];
    match tcp::bind(
        Service::Tcp,
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
    ) {
        Ok(v6) => listeners.push(v6),
        Err(err) => {
            tracing::warn!(error = %err, "No IPv6 catch-all listener; IPv6 decoy connections go to the kernel's own lookup.");
        }
    }
    Ok(listeners)
}

/// Duplicates of the listeners' descriptors, for the kernel program's SOCKMAP: IPv4 first,
/// then IPv6 when bound.
///
/// # Errors
/// The descriptor could not be duplicated.
pub fn descriptors(listeners: &[TcpListener]) -> std::io::Result<(OwnedFd, Option<OwnedFd>)> {
    let mut v4 = None;
    let mut v6 = None;
    for listener in listeners {
        let fd = listener.as_fd().try_clone_to_owned()?;
        match listener.local_addr()? {
            SocketAddr::V4(_) => v4 = Some(fd),
            SocketAddr::V6(_) => v6 = Some(fd),
        }
    }
    let v4 = v4.ok_or_else(|| std::io::Error::other("no IPv4 catch-all listener"))?;
    Ok((v4, v6))
}

/// Accepts steered connections until `accepting` (or the shutdown) is cancelled and serves
/// each in its own task, which ends with `shared.shutdown`.
pub async fn accept_loop(
    listener: Arc<TcpListener>,
    dispatch: Arc<Dispatch>,
    shared: Shared,
    accepting: CancellationToken,
) {
    let flood = tcp::flood_control(&shared, Service::Tcp, true);
    let mut sweep = tokio::time::interval(tcp::FLOOD_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            () = accepting.cancelled() => break,
            () = shared.shutdown.cancelled() => break,
            _ = sweep.tick() => {
                let closed = flood.sweep(tokio::time::Instant::now());
                if let Some(summary) = closed {
                    tcp::report_flood(&summary, &shared).await;
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(service = "tcp", error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = tcp::admit(&shared, &flood, &stream, peer).await else {
            continue;
        };
        shared
            .counters
            .decoy_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dispatch = Arc::clone(&dispatch);
        let shared_task = shared.clone();
        // The admitted connection (and its gate permit) lives as long as the task.
        shared.tracker.spawn(async move {
            tokio::select! {
                () = shared_task.shutdown.cancelled() => {}
                () = serve(&shared_task, &dispatch, &admitted, stream, peer) => {}
            }
        });
    }
    if let Some(summary) = flood.flush() {
        tcp::report_flood(&summary, &shared).await;
    }
}

/// One steered connection: choose its service, report `tcp.connection`, hand it over.
async fn serve(
    shared: &Shared,
    dispatch: &Dispatch,
    admitted: &tcp::Admitted,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let port = admitted.identity.dst_port;
    let peeked = if dispatch.mapped(port) {
        None
    } else {
        Some(sniff::peek(&stream, dispatch.sniff_timeout).await)
    };
    let (chosen, detected) = dispatch.choose(port, peeked.as_ref());
    let connection = admitted.session(Service::Tcp, shared);
    let mut extra = Map::new();
    extra.insert(
        "service".to_owned(),
        chosen.map_or(Value::Null, Value::from),
    );
    extra.insert("detected".to_owned(), Value::from(detected.as_str()));
    let bytes = peeked.as_ref().map_or(&[][..], |p| p.bytes.as_slice());
    connection.emit(Action::Connection, bytes, extra).await;
    let Some((service, handler, limits)) = chosen.and_then(|name| dispatch.handlers.get(name))
    else {
        shared
            .counters
            .decoys_unclaimed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Consume what was peeked, so the close is a FIN, not the RST a socket closed with
        // unread data sends.
        let mut discard = [0_u8; sniff::PEEK_BYTES];
        let _ignored = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            stream.read(&mut discard),
        )
        .await;
        return;
    };
    // The chosen protocol's own limits (its product's timeouts), as its instances get.
    let shared = Shared {
        limits: Arc::clone(limits),
        ..shared.clone()
    };
    let session = admitted.session(*service, &shared);
    tcp::run_session(&shared, session, handler, stream, peer).await;
}

/// Ports something listens on now over TCP (`/proc/net/tcp` and `/proc/net/tcp6`, state
/// `LISTEN`): the decoys leave them to their listener. Unreadable files give no port.
#[must_use]
pub fn listening_ports() -> Vec<u16> {
    let mut ports = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            ports.extend(parse_table(&text, "0A"));
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The local ports of the sockets in `state` (`0A`: TCP `LISTEN`; `07`: an unconnected UDP
/// socket) of one `/proc/net/{tcp,udp}{,6}` table.
fn parse_table(table: &str, wanted: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != wanted {
                return None;
            }
            let (_, port) = local.rsplit_once(':')?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests;
