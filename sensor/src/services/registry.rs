//! The emulated protocols, one line each: the name of its list in the `services` block, the
//! event channel it reports on, its default port and its implementation (whose type says the
//! transport: [`TcpProtocol`] or [`UdpProtocol`], or both for a protocol such as DNS that one
//! instance serves on the same port over UDP and TCP).
//!
//! Adding a protocol is one file under `proto/` implementing one of the two traits, and one
//! line in [`PROTOCOLS`]; configuration checking, `sensor check`'s listing, binding (every
//! address of the interface, IPv4 and IPv6), admission, the session identity, the event caps,
//! timeouts and shutdown come from the framework.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    Context, ServiceError,
    framework::{
        tcp::{Handler, TcpProtocol},
        timeouts::Timeouts,
        udp::{UdpHandler, UdpProtocol},
    },
    proto::{
        dns, ftp, http, ldap, mssql, mysql, postgres, rdp, rsync, smb, snmp, ssh, telnet, vnc,
    },
};
use crate::event::Service;

/// Every emulated protocol, in the order `sensor check` lists them.
pub static PROTOCOLS: &[Protocol] = &[
    Protocol::tcp::<ftp::Ftp>("ftp", Service::Ftp, 21),
    Protocol::tcp::<telnet::Telnet>("telnet", Service::Telnet, 23),
    Protocol::tcp::<ssh::Ssh>("ssh", Service::Ssh, 22),
    Protocol::tcp::<http::Http>("http", Service::Http, 80),
    Protocol::tcp::<http::Https>("https", Service::Https, 443),
    Protocol::tcp::<mysql::Mysql>("mysql", Service::Mysql, 3306),
    Protocol::tcp::<postgres::Postgres>("postgres", Service::Postgres, 5432).alias("postgresql"),
    Protocol::tcp::<ldap::Ldap>("ldap", Service::Ldap, 389),
    Protocol::tcp::<ldap::Ldaps>("ldaps", Service::Ldap, 636),
    Protocol::tcp::<mssql::Mssql>("mssql", Service::Mssql, 1433),
    Protocol::tcp::<smb::Smb>("smb", Service::Smb, 445),
    Protocol::tcp::<rdp::Rdp>("rdp", Service::Rdp, 3389),
    Protocol::udp::<snmp::Snmp>("snmp", Service::Snmp, 161),
    Protocol::udp_tcp::<dns::Dns>("dns", Service::Dns, 53),
    Protocol::tcp::<vnc::Vnc>("vnc", Service::Vnc, 5900),
    Protocol::tcp::<rsync::Rsync>("rsync", Service::Rsync, 873),
];

/// How a protocol's clients reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Connections ([`TcpProtocol`]).
    Tcp,
    /// Datagrams, in pseudo-sessions per peer ([`UdpProtocol`]).
    Udp,
    /// Both, on the same port: one instance binds a UDP socket and a TCP listener.
    UdpTcp,
}

impl Transport {
    /// Whether two protocols on one port would want the same socket.
    #[must_use]
    pub const fn overlaps(self, other: Self) -> bool {
        matches!(
            (self, other),
            (Self::Tcp | Self::UdpTcp, Self::Tcp | Self::UdpTcp)
                | (Self::Udp | Self::UdpTcp, Self::Udp | Self::UdpTcp)
        )
    }
}

/// The two handlers of a protocol served over UDP and TCP.
pub type BothHandlers = (UdpHandler, Handler);

/// How one instance's handler is built, from its settings (runs on the blocking pool: it may
/// generate keys and read files).
#[derive(Clone, Copy)]
pub enum Build {
    /// A TCP protocol.
    Tcp(fn(&Value, &Context) -> Result<Handler, ServiceError>),
    /// A UDP protocol.
    Udp(fn(&Value, &Context) -> Result<UdpHandler, ServiceError>),
    /// A protocol served over both.
    UdpTcp(fn(&Value, &Context) -> Result<BothHandlers, ServiceError>),
}

impl std::fmt::Debug for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp(_) => "Build::Tcp",
            Self::Udp(_) => "Build::Udp",
            Self::UdpTcp(_) => "Build::UdpTcp",
        })
    }
}

/// A built handler, ready to serve a socket.
#[derive(Clone)]
pub enum Built {
    /// Serves accepted connections.
    Tcp(Handler),
    /// Makes one protocol state per UDP peer.
    Udp(UdpHandler),
    /// Both, for one port.
    UdpTcp(UdpHandler, Handler),
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp(_) => "Built::Tcp",
            Self::Udp(_) => "Built::Udp",
            Self::UdpTcp(..) => "Built::UdpTcp",
        })
    }
}

/// An instance's settings do not fit its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// Path inside the instance (`port`, `users.root`), empty for the instance itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// One emulated protocol.
#[derive(Debug)]
pub struct Protocol {
    /// Its list's name in the `services` block; also what `sensor check` prints.
    pub name: &'static str,
    /// Another name accepted for the list (Trapster spellings).
    pub alias: Option<&'static str>,
    /// The channel of its events (`<service>.<action>`).
    pub service: Service,
    /// Port used when an instance names none.
    pub default_port: u16,
    /// Checks an instance's settings (configuration load time).
    pub check: fn(&Value) -> Result<(), SettingsError>,
    /// Keys of an instance's settings the protocol does not read (dotted paths inside the
    /// instance), reported as warnings: Trapster files carry keys this sensor does not use.
    pub ignored: fn(&Value) -> Vec<String>,
    /// Builds an instance's handler.
    pub build: Build,
    /// The imitated product's timeouts for an instance's settings (none: the framework's).
    pub timeouts: fn(&Value) -> Option<Timeouts>,
}

impl Protocol {
    /// A TCP protocol implemented by `P`.
    #[must_use]
    pub const fn tcp<P: TcpProtocol>(name: &'static str, service: Service, port: u16) -> Self {
        Self {
            name,
            alias: None,
            service,
            default_port: port,
            check: check::<P::Config>,
            ignored: ignored::<P::Config>,
            build: Build::Tcp(build_tcp::<P>),
            timeouts: timeouts::<P>,
        }
    }

    /// A UDP protocol implemented by `P`.
    #[must_use]
    pub const fn udp<P: UdpProtocol>(name: &'static str, service: Service, port: u16) -> Self {
        Self {
            name,
            alias: None,
            service,
            default_port: port,
            check: check::<P::Config>,
            ignored: ignored::<P::Config>,
            build: Build::Udp(build_udp::<P>),
            timeouts: no_timeouts,
        }
    }

    /// A protocol implemented by `P` over UDP and TCP on the same port, from one instance's
    /// settings.
    #[must_use]
    pub const fn udp_tcp<P>(name: &'static str, service: Service, port: u16) -> Self
    where
        P: UdpProtocol + TcpProtocol<Config = <P as UdpProtocol>::Config>,
    {
        Self {
            name,
            alias: None,
            service,
            default_port: port,
            check: check::<<P as UdpProtocol>::Config>,
            ignored: ignored::<<P as UdpProtocol>::Config>,
            build: Build::UdpTcp(build_udp_tcp::<P>),
            timeouts: timeouts::<P>,
        }
    }

    /// The same protocol, also accepted under `alias`.
    #[must_use]
    pub const fn alias(mut self, alias: &'static str) -> Self {
        self.alias = Some(alias);
        self
    }

    /// Its transport.
    #[must_use]
    pub const fn transport(&self) -> Transport {
        match self.build {
            Build::Tcp(_) => Transport::Tcp,
            Build::Udp(_) => Transport::Udp,
            Build::UdpTcp(_) => Transport::UdpTcp,
        }
    }

    /// Whether `name` (a key of the `services` block) is this protocol's list.
    #[must_use]
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.alias == Some(name)
    }

    /// Builds the handler for one instance.
    ///
    /// # Errors
    /// [`ServiceError::Setup`] when the instance cannot start (keys, certificates, skins).
    pub fn build(&self, settings: &Value, ctx: &Context) -> Result<Built, ServiceError> {
        match self.build {
            Build::Tcp(build) => build(settings, ctx).map(Built::Tcp),
            Build::Udp(build) => build(settings, ctx).map(Built::Udp),
            Build::UdpTcp(build) => build(settings, ctx).map(|(u, t)| Built::UdpTcp(u, t)),
        }
    }
}

/// The protocol whose list is called `name`.
#[must_use]
pub fn find(name: &str) -> Option<&'static Protocol> {
    PROTOCOLS.iter().find(|p| p.answers_to(name))
}

/// Reads settings into `T`, naming the field that does not fit.
///
/// # Errors
/// [`SettingsError`] with the path inside `value`.
pub fn parse<T: DeserializeOwned>(value: &Value) -> Result<T, SettingsError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        SettingsError {
            path: if path == "." { String::new() } else { path },
            message: err.into_inner().to_string(),
        }
    })
}

fn check<T: DeserializeOwned>(value: &Value) -> Result<(), SettingsError> {
    parse::<T>(value).map(drop)
}

/// The paths of the keys in `value` that `T` does not read (none when `value` does not fit
/// `T`: that is [`check`]'s error to report).
fn ignored<T: DeserializeOwned>(value: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    let read: Result<T, _> = serde_ignored::deserialize(value, |path| paths.push(path.to_string()));
    if read.is_err() {
        paths.clear();
    }
    paths
}

fn settings<T: DeserializeOwned>(value: &Value, ctx: &Context) -> Result<T, ServiceError> {
    parse(value).map_err(|err| ctx.setup_error(format!("{}: {}", err.path, err.message)))
}

const fn no_timeouts(_value: &Value) -> Option<Timeouts> {
    None
}

fn timeouts<P: TcpProtocol>(value: &Value) -> Option<Timeouts> {
    parse::<P::Config>(value).ok().and_then(|c| P::timeouts(&c))
}

fn build_tcp<P: TcpProtocol>(value: &Value, ctx: &Context) -> Result<Handler, ServiceError> {
    P::handler(settings(value, ctx)?, ctx)
}

fn build_udp<P: UdpProtocol>(value: &Value, ctx: &Context) -> Result<UdpHandler, ServiceError> {
    P::handler(settings(value, ctx)?, ctx)
}

fn build_udp_tcp<P>(value: &Value, ctx: &Context) -> Result<BothHandlers, ServiceError>
where
    P: UdpProtocol + TcpProtocol<Config = <P as UdpProtocol>::Config>,
{
    let udp = <P as UdpProtocol>::handler(settings(value, ctx)?, ctx)?;
    let tcp = <P as TcpProtocol>::handler(settings(value, ctx)?, ctx)?;
    Ok((udp, tcp))
}

#[cfg(test)]
mod tests {
    use super::{PROTOCOLS, Transport, find};

    #[test]
    fn names_and_ports_are_unique_and_found() {
        for (i, p) in PROTOCOLS.iter().enumerate() {
            assert!(std::ptr::eq(find(p.name).unwrap(), p), "{}", p.name);
            for q in &PROTOCOLS[..i] {
                assert_ne!(p.name, q.name);
                // LDAPS reports on the `ldap` channel, as Trapster's LDAPS module does.
                if (p.name, q.name) != ("ldaps", "ldap") {
                    assert_ne!(p.service, q.service, "{} and {}", p.name, q.name);
                }
                assert!(
                    p.default_port != q.default_port || !p.transport().overlaps(q.transport()),
                    "{} and {} share a default port",
                    p.name,
                    q.name
                );
            }
            let channel = if p.name == "ldaps" { "ldap" } else { p.name };
            assert_eq!(p.service.as_str(), channel, "channel named as its list");
        }
        assert_eq!(find("postgresql").unwrap().name, "postgres");
        assert!(find("kafka").is_none());
        for p in PROTOCOLS {
            let expected = match p.name {
                "snmp" => Transport::Udp,
                "dns" => Transport::UdpTcp,
                _ => Transport::Tcp,
            };
            assert_eq!(p.transport(), expected, "{}", p.name);
        }
        assert!(Transport::UdpTcp.overlaps(Transport::Tcp));
        assert!(Transport::Udp.overlaps(Transport::UdpTcp));
        assert!(!Transport::Udp.overlaps(Transport::Tcp));
    }
}
