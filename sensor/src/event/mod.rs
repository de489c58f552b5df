//! The one `Event` type for everything the sensor reports, and its vocabulary; `kind` holds the
//! catalogue of event kinds.
//!
//! Identity fields (addresses, ports) come from the packet or socket, never from attacker bytes;
//! protocol code may only add `data` and `extra`. The logtype `<service>.<action>` is derived.

mod extra;
mod incident;
pub mod kind;
mod message;
mod severity;

use std::{fmt, net::IpAddr};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use extra::Extra;
pub use incident::{Incident, IncidentAction, test_incident};
pub use message::Message;
pub use severity::Severity;

/// What the event reports, in Trapster's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// A client connected.
    Connection,
    /// A client sent bytes.
    Data,
    /// A client tried to log in.
    Login,
    /// A client asked for something (a request, a scan).
    Query,
    /// The sensor itself lost events (an output's spool was full); reported once it recovers.
    Degraded,
    /// A host answered a name query the sensor made up (LLMNR/NBT-NS/mDNS poisoning).
    Poisoning,
    /// A honeytoken URL was fetched (`honeytoken.url`).
    Url,
    /// A cloned login page called home (`honeytoken.js_clone`).
    JsClone,
    /// Many sources probed few ports each of one destination: one summary per window
    /// (`portscan.flood`).
    Flood,
    /// The sensor is alive (`sensor.heartbeat`, every `sensor.heartbeat.interval_secs`).
    Heartbeat,
    /// A client uploaded a file (`ftp.upload`; `ssh.upload`: SFTP, SCP): its name, size and
    /// SHA-256.
    Upload,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 11] = [
        Self::Connection,
        Self::Data,
        Self::Login,
        Self::Query,
        Self::Degraded,
        Self::Poisoning,
        Self::Url,
        Self::JsClone,
        Self::Flood,
        Self::Heartbeat,
        Self::Upload,
    ];

    /// Lowercase name used in logtypes.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Data => "data",
            Self::Login => "login",
            Self::Query => "query",
            Self::Degraded => "degraded",
            Self::Poisoning => "poisoning",
            Self::Url => "url",
            Self::JsClone => "js_clone",
            Self::Flood => "flood",
            Self::Heartbeat => "heartbeat",
            Self::Upload => "upload",
        }
    }
}

/// The channel an event comes from: Trapster's service names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Scan probes seen by the XDP program (or libpcap).
    Portscan,
    /// FTP.
    Ftp,
    /// SSH.
    Ssh,
    /// Telnet.
    Telnet,
    /// HTTP.
    Http,
    /// HTTPS.
    Https,
    /// MySQL.
    Mysql,
    /// PostgreSQL.
    Postgres,
    /// Microsoft SQL Server.
    Mssql,
    /// LDAP.
    Ldap,
    /// RDP.
    Rdp,
    /// VNC.
    Vnc,
    /// SNMP.
    Snmp,
    /// DNS.
    Dns,
    /// rsync.
    Rsync,
    /// SMB (Windows file sharing).
    Smb,
    /// LLMNR name resolution (poisoning detection).
    Llmnr,
    /// NetBIOS name service (poisoning detection).
    Nbns,
    /// Multicast DNS (poisoning detection).
    Mdns,
    /// The sensor itself (health events).
    Sensor,
    /// A planted credential was used on a decoy (`breadcrumb.login`).
    Breadcrumb,
    /// A honeytoken was used (`honeytoken.url`).
    Honeytoken,
    /// A connection to an any-port decoy port (`tcp.connection`, Trapster's connection log),
    /// whether or not a service took it.
    Tcp,
    /// A datagram to an any-port decoy UDP port (`udp.connection`, once per pseudo-session),
    /// whether or not a service took it.
    Udp,
}

impl Service {
    /// Every service, in catalogue order.
    pub const ALL: [Self; 24] = [
        Self::Portscan,
        Self::Ftp,
        Self::Ssh,
        Self::Telnet,
        Self::Http,
        Self::Https,
        Self::Mysql,
        Self::Postgres,
        Self::Mssql,
        Self::Ldap,
        Self::Rdp,
        Self::Vnc,
        Self::Snmp,
        Self::Dns,
        Self::Rsync,
        Self::Smb,
        Self::Llmnr,
        Self::Nbns,
        Self::Mdns,
        Self::Sensor,
        Self::Breadcrumb,
        Self::Honeytoken,
        Self::Tcp,
        Self::Udp,
    ];

    /// Lowercase name used in logtypes (Trapster's channel).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Portscan => "portscan",
            Self::Ftp => "ftp",
            Self::Ssh => "ssh",
            Self::Telnet => "telnet",
            Self::Http => "http",
            Self::Https => "https",
            Self::Mysql => "mysql",
            Self::Postgres => "postgres",
            Self::Mssql => "mssql",
            Self::Ldap => "ldap",
            Self::Rdp => "rdp",
            Self::Vnc => "vnc",
            Self::Snmp => "snmp",
            Self::Dns => "dns",
            Self::Rsync => "rsync",
            Self::Smb => "smb",
            Self::Llmnr => "llmnr",
            Self::Nbns => "nbns",
            Self::Mdns => "mdns",
            Self::Sensor => "sensor",
            Self::Breadcrumb => "breadcrumb",
            Self::Honeytoken => "honeytoken",
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    /// Transport protocol, for ECS `network.transport` and CEF `proto`.
    #[must_use]
    pub const fn transport(self) -> &'static str {
        match self {
            Self::Snmp | Self::Dns | Self::Llmnr | Self::Nbns | Self::Mdns | Self::Udp => "udp",
            _ => "tcp",
        }
    }
}

/// Who talked to whom: fixed by the packet or socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionIdentity {
    /// Remote (attacker) address.
    pub src_ip: IpAddr,
    /// Remote port (1 for port scans, as Trapster reports them).
    pub src_port: u16,
    /// Local (sensor) address.
    pub dst_ip: IpAddr,
    /// Local port.
    pub dst_port: u16,
}

impl SessionIdentity {
    /// The identity of traffic from `peer` to the sensor's `local` address, IPv4-mapped IPv6
    /// addresses shown as IPv4.
    #[must_use]
    pub fn between(peer: std::net::SocketAddr, local: std::net::SocketAddr) -> Self {
        Self {
            src_ip: display_ip(peer.ip()),
            src_port: peer.port(),
            dst_ip: display_ip(local.ip()),
            dst_port: local.port(),
        }
    }
}

/// One security event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Stable unique id, for de-duplication and delivery tracking downstream.
    pub id: Uuid,
    /// When it happened (UTC).
    pub timestamp: DateTime<Utc>,
    /// Addresses and ports.
    pub session: SessionIdentity,
    /// Emitting service.
    pub service: Service,
    /// What happened.
    pub action: Action,
    /// Raw bytes received, if any (rendered as lowercase hex).
    pub data: Bytes,
    /// Service-specific details.
    pub extra: Extra,
}

/// `<service>.<action>`, derived, never typed by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogType {
    /// Service part.
    pub service: Service,
    /// Action part.
    pub action: Action,
}

impl fmt::Display for LogType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.service.as_str(), self.action.as_str())
    }
}

impl Event {
    /// The event's logtype.
    #[must_use]
    pub const fn logtype(&self) -> LogType {
        LogType {
            service: self.service,
            action: self.action,
        }
    }

    /// A `sensor.<action>` event about the sensor itself (no peer: addresses unspecified, ports
    /// 0), timestamped now.
    #[must_use]
    pub fn health(action: Action, extra: Map<String, Value>) -> Self {
        let unspecified = IpAddr::from([0, 0, 0, 0]);
        Self {
            id: Uuid::new_v4(),
            timestamp: Utc::now(),
            session: SessionIdentity {
                src_ip: unspecified,
                src_port: 0,
                dst_ip: unspecified,
                dst_port: 0,
            },
            service: Service::Sensor,
            action,
            data: Bytes::new(),
            extra: extra.into(),
        }
    }
}

/// Shows an address as users expect: IPv4-mapped IPv6 addresses as plain IPv4.
#[must_use]
pub fn display_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{Action, LogType, Service, display_ip};

    #[test]
    fn logtype_is_derived() {
        let lt = LogType {
            service: Service::Portscan,
            action: Action::Query,
        };
        assert_eq!(lt.to_string(), "portscan.query");
    }

    #[test]
    fn mapped_addresses_display_as_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(display_ip(mapped).to_string(), "192.0.2.1");
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(display_ip(v6), v6);
    }
}
