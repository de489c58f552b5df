//! `sensor.decoys`: which TCP and UDP ports the any-port decoy answers on, which service a
//! port gets, and how long the first bytes are waited for.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use crate::services::registry::{self, Transport};

/// Default wait for a client's first bytes before the banner service takes the connection.
pub const DEFAULT_SNIFF_TIMEOUT_MS: u64 = 1_500;

/// `sensor.decoys` (off by default).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecoysConfig {
    /// Steer connections to the agent; default false.
    pub enabled: bool,
    /// The catch-all: TCP port ranges (`"1-65535"`, `"8000-8999"`, `"2222"`) whose
    /// connections reach the agent. A port something listens on (a configured service or any
    /// other program, when the sensor starts) keeps going to that listener.
    pub tcp: Vec<PortRange>,
    /// Ports with a fixed service (`{"2200": "ssh", "8081": "http"}`); they are steered too,
    /// whether or not the ranges hold them. Other ports get the service the first bytes name.
    pub ports: BTreeMap<u16, String>,
    /// The service a client that sends nothing within `sniff_timeout_ms` gets (a protocol where
    /// the server speaks first: `ssh`, `ftp`, `telnet`, `mysql`, `vnc`, ...), or `none` to
    /// close such a connection after its `tcp.connection` event; default `ssh`.
    pub banner: String,
    /// How long the first bytes are waited for, milliseconds (100–10000); default 1500.
    pub sniff_timeout_ms: u64,
    /// Ports never steered, in the same form as `tcp` (TCP and UDP).
    pub exclude: Vec<PortRange>,
    /// The UDP catch-all: port ranges, in the same form as `tcp`, whose datagrams reach the
    /// agent. A port something is bound to over UDP when the sensor starts (or reloads) keeps
    /// going to that socket.
    pub udp: Vec<PortRange>,
    /// UDP ports with a fixed service (`{"5300": "dns", "1161": "snmp"}`), steered too. Without
    /// an entry, a UDP service's own port (53 `dns`, 161 `snmp`) gets that service; other
    /// ports get the service the datagram's form names (a DNS query, an SNMP message).
    pub udp_ports: BTreeMap<u16, String>,
    /// How often the ports something listens on (TCP) or is bound to (UDP) are read again,
    /// milliseconds (0: only at start and reload; else 100–60000); default 2000. A program
    /// that starts listening on a steered port gets its connections within this period, and a
    /// port it stops listening on is steered again.
    pub watch_ms: u64,
}

/// Default period of the listening-port watch.
pub const DEFAULT_WATCH_MS: u64 = 2_000;

impl Default for DecoysConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            tcp: Vec::new(),
            ports: BTreeMap::new(),
            banner: "ssh".to_owned(),
            sniff_timeout_ms: DEFAULT_SNIFF_TIMEOUT_MS,
            exclude: Vec::new(),
            udp: Vec::new(),
            udp_ports: BTreeMap::new(),
            watch_ms: DEFAULT_WATCH_MS,
        }
    }
}

/// An inclusive range of ports, written `"first-last"` or `"port"` (ports 1–65535).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Whether `port` is in the range.
    #[must_use]
    pub const fn contains(self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    /// The ports of the range.
    pub fn ports(self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let port = |s: &str| match s.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(format!(
                "`{text}` is not a port or a range `first-last` of ports 1-65535"
            )),
            Ok(p) => Ok(p),
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(&text)?;
                (p, p)
            }
        };
        if first > last {
            return Err(format!("`{text}`: the first port is after the last"));
        }
        Ok(Self { first, last })
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl DecoysConfig {
    /// The first-bytes wait.
    #[must_use]
    pub const fn sniff_timeout(&self) -> Duration {
        Duration::from_millis(self.sniff_timeout_ms)
    }

    /// The listening-port watch's period, `None` when off.
    #[must_use]
    pub const fn watch(&self) -> Option<Duration> {
        if self.watch_ms == 0 {
            None
        } else {
            Some(Duration::from_millis(self.watch_ms))
        }
    }

    /// The banner service, `None` for `none`.
    #[must_use]
    pub fn banner(&self) -> Option<&str> {
        (self.banner != "none").then_some(self.banner.as_str())
    }

    /// Whether connections to `port` are steered (before the ports something listens on are
    /// taken out): in a `tcp` range or the `ports` map, and not excluded.
    #[must_use]
    pub fn steers(&self, port: u16) -> bool {
        (self.ports.contains_key(&port) || self.tcp.iter().any(|r| r.contains(port)))
            && !self.exclude.iter().any(|r| r.contains(port))
    }

    /// Whether a UDP port below `first` is steered (enabled, not excluded): replies from it
    /// need a socket the agent cannot bind after the privilege drop.
    #[must_use]
    pub fn steers_udp_below(&self, first: u16) -> bool {
        self.enabled && (1..first).any(|p| self.steers_udp(p))
    }

    /// Whether datagrams to `port` are steered (before the ports something is bound to are
    /// taken out): in a `udp` range or the `udp_ports` map, and not excluded.
    #[must_use]
    pub fn steers_udp(&self, port: u16) -> bool {
        (self.udp_ports.contains_key(&port) || self.udp.iter().any(|r| r.contains(port)))
            && !self.exclude.iter().any(|r| r.contains(port))
    }

    /// What `run` would refuse, as `(field inside sensor.decoys, message)`.
    ///
    /// # Errors
    /// The first field that cannot be used.
    pub fn check(&self) -> Result<(), (String, String)> {
        if !(100..=10_000).contains(&self.sniff_timeout_ms) {
            return Err((
                "sniff_timeout_ms".to_owned(),
                format!("{} is outside 100..=10000", self.sniff_timeout_ms),
            ));
        }
        if self.watch_ms != 0 && !(100..=60_000).contains(&self.watch_ms) {
            return Err((
                "watch_ms".to_owned(),
                format!(
                    "{} is neither 0 (off) nor inside 100..=60000",
                    self.watch_ms
                ),
            ));
        }
        if let Some(banner) = self.banner() {
            tcp_protocol(banner).map_err(|message| ("banner".to_owned(), message))?;
        }
        for (port, name) in &self.ports {
            if *port == 0 {
                return Err((
                    format!("ports.{port}"),
                    "port 0 cannot be steered".to_owned(),
                ));
            }
            tcp_protocol(name).map_err(|message| (format!("ports.{port}"), message))?;
        }
        for (port, name) in &self.udp_ports {
            if *port == 0 {
                return Err((
                    format!("udp_ports.{port}"),
                    "port 0 cannot be steered".to_owned(),
                ));
            }
            udp_protocol(name).map_err(|message| (format!("udp_ports.{port}"), message))?;
        }
        if self.enabled
            && self.tcp.is_empty()
            && self.ports.is_empty()
            && self.udp.is_empty()
            && self.udp_ports.is_empty()
        {
            return Err((
                "tcp".to_owned(),
                "decoys are enabled but none of `tcp`, `ports`, `udp` or `udp_ports` names a port"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// The registry's name of the TCP protocol `name`, or why it cannot serve decoy connections.
///
/// # Errors
/// `name` is no protocol, or one served over UDP only.
pub fn tcp_protocol(name: &str) -> Result<&'static str, String> {
    let Some(protocol) = registry::find(name) else {
        let known: Vec<&str> = registry::PROTOCOLS
            .iter()
            .filter(|p| p.transport() != Transport::Udp)
            .map(|p| p.name)
            .collect();
        return Err(format!(
            "`{name}` is not an emulated TCP service (one of: {})",
            known.join(", ")
        ));
    };
    if protocol.transport() == Transport::Udp {
        return Err(format!("`{name}` is served over UDP only"));
    }
    Ok(protocol.name)
}

/// The registry's name of the UDP protocol `name`, or why it cannot serve decoy datagrams.
///
/// # Errors
/// `name` is no protocol, or one served over TCP only.
pub fn udp_protocol(name: &str) -> Result<&'static str, String> {
    let Some(protocol) = registry::find(name) else {
        let known: Vec<&str> = registry::PROTOCOLS
            .iter()
            .filter(|p| p.transport() != Transport::Tcp)
            .map(|p| p.name)
            .collect();
        return Err(format!(
            "`{name}` is not an emulated UDP service (one of: {})",
            known.join(", ")
        ));
    };
    if protocol.transport() == Transport::Tcp {
        return Err(format!("`{name}` is served over TCP only"));
    }
    Ok(protocol.name)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{DecoysConfig, PortRange};

    fn parse(json: &str) -> Result<DecoysConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn ranges_single_ports_and_the_map_are_read() {
        let c = parse(
            r#"{"enabled": true, "tcp": ["1-1024", "8080"], "exclude": ["22"],
                "ports": {"2200": "ssh", "9443": "https"}, "banner": "ftp"}"#,
        )
        .unwrap();
        assert_eq!(
            c.tcp,
            [
                PortRange {
                    first: 1,
                    last: 1024
                },
                PortRange {
                    first: 8080,
                    last: 8080
                }
            ]
        );
        assert_eq!(c.ports.get(&2200).map(String::as_str), Some("ssh"));
        assert!(c.steers(1) && c.steers(1024) && c.steers(8080));
        assert!(c.steers(2200) && c.steers(9443), "mapped ports are steered");
        assert!(!c.steers(22), "excluded");
        assert!(!c.steers(1025) && !c.steers(8081));
        assert_eq!(c.banner(), Some("ftp"));
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.tcp[0].to_string(), "1-1024");
        assert_eq!(c.tcp[1].to_string(), "8080");
        assert!(!c.steers_udp_below(1024), "no UDP range");
    }

    #[test]
    fn low_udp_ports_are_seen_in_ranges_and_fixed_ports_but_not_when_excluded() {
        let c = parse(r#"{"enabled": true, "udp": ["5000-5999"], "udp_ports": {"500": "dns"}}"#)
            .unwrap();
        assert!(c.steers_udp_below(1024));
        assert!(!c.steers_udp_below(500) && !c.steers_udp_below(0));
        let c = parse(r#"{"enabled": true, "udp": ["100-200"], "exclude": ["1-1023"]}"#).unwrap();
        assert!(!c.steers_udp_below(1024), "all excluded");
        let c = parse(r#"{"enabled": false, "udp": ["1-65535"]}"#).unwrap();
        assert!(!c.steers_udp_below(1024), "disabled");
    }

    #[test]
    fn defaults_are_off_with_the_ssh_banner() {
        let c = parse("{}").unwrap();
        assert_eq!(c, DecoysConfig::default());
        assert!(!c.enabled);
        assert_eq!(c.banner(), Some("ssh"));
        assert_eq!(c.sniff_timeout_ms, 1_500);
        assert_eq!(c.watch(), Some(Duration::from_secs(2)));
        assert_eq!(c.check(), Ok(()));
        let off = parse(r#"{"watch_ms": 0}"#).unwrap();
        assert_eq!((off.watch(), off.check()), (None, Ok(())));
        let none = parse(r#"{"banner": "none"}"#).unwrap();
        assert_eq!(none.banner(), None);
        assert_eq!(none.check(), Ok(()));
    }

    #[test]
    fn bad_ranges_are_refused_with_the_value() {
        for (text, want) in [
            ("0-10", "`0-10` is not a port"),
            ("10-70000", "`10-70000` is not a port"),
            ("http", "`http` is not a port"),
            ("900-80", "the first port is after the last"),
            ("", "`` is not a port"),
        ] {
            let err = parse(&format!(r#"{{"tcp": ["{text}"]}}"#)).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = parse(r#"{"ports": {"x": "ssh"}}"#).unwrap_err();
        assert!(err.contains("invalid"), "{err}");
        let err = parse(r#"{"tpc": []}"#).unwrap_err();
        assert!(err.contains("unknown field `tpc`"), "{err}");
    }

    #[test]
    fn check_names_the_field_that_cannot_be_used() {
        let check = |json: &str| parse(json).unwrap().check().unwrap_err();
        let (field, message) = check(r#"{"ports": {"2200": "sshh"}}"#);
        assert_eq!(field, "ports.2200");
        assert!(
            message.contains("`sshh` is not an emulated TCP service"),
            "{message}"
        );
        assert!(message.contains("ssh, http"), "{message}");
        let (field, message) = check(r#"{"ports": {"161": "snmp"}}"#);
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("ports.161", "`snmp` is served over UDP only")
        );
        assert_eq!(check(r#"{"banner": "kafka"}"#).0, "banner");
        let (field, message) = check(r#"{"watch_ms": 50}"#);
        assert_eq!(field, "watch_ms");
        assert!(
            message.contains("neither 0 (off) nor inside 100..=60000"),
            "{message}"
        );
        assert_eq!(
            check(r#"{"sniff_timeout_ms": 50}"#),
            (
                "sniff_timeout_ms".to_owned(),
                "50 is outside 100..=10000".to_owned()
            )
        );
        assert_eq!(check(r#"{"enabled": true}"#).0, "tcp");
        assert_eq!(check(r#"{"ports": {"0": "ssh"}}"#).0, "ports.0");
        // The Trapster alias of a protocol is accepted.
        assert_eq!(
            parse(r#"{"ports": {"5433": "postgresql"}}"#)
                .unwrap()
                .check(),
            Ok(())
        );
    }

    #[test]
    fn udp_ranges_and_the_udp_map_are_read_and_checked() {
        let c = parse(
            r#"{"enabled": true, "udp": ["5000-5999", "1161"], "exclude": ["5353"],
                "udp_ports": {"5300": "dns", "1162": "snmp"}}"#,
        )
        .unwrap();
        assert_eq!(
            c.udp,
            [
                PortRange {
                    first: 5000,
                    last: 5999
                },
                PortRange {
                    first: 1161,
                    last: 1161
                }
            ]
        );
        assert!(c.steers_udp(5000) && c.steers_udp(5999) && c.steers_udp(1161));
        assert!(c.steers_udp(1162), "mapped UDP ports are steered");
        assert!(!c.steers_udp(5353), "excluded");
        assert!(!c.steers_udp(6000) && !c.steers_udp(53));
        assert!(!c.steers(5000), "UDP ranges steer no TCP port");
        assert_eq!(c.check(), Ok(()));
        let check = |json: &str| parse(json).unwrap().check().unwrap_err();
        assert_eq!(
            check(r#"{"udp_ports": {"5300": "ssh"}}"#),
            (
                "udp_ports.5300".to_owned(),
                "`ssh` is served over TCP only".to_owned()
            )
        );
        let (field, message) = check(r#"{"udp_ports": {"5300": "dnss"}}"#);
        assert_eq!(field, "udp_ports.5300");
        assert_eq!(
            message,
            "`dnss` is not an emulated UDP service (one of: snmp, dns)"
        );
        assert_eq!(check(r#"{"udp_ports": {"0": "dns"}}"#).0, "udp_ports.0");
        let err = parse(r#"{"udp": ["900-80"]}"#).unwrap_err();
        assert!(err.contains("the first port is after the last"), "{err}");
        let err = parse(r#"{"udp": ["0"]}"#).unwrap_err();
        assert!(err.contains("`0` is not a port"), "{err}");
        // UDP alone is enough to enable the decoys.
        assert_eq!(
            parse(r#"{"enabled": true, "udp": ["1-65535"]}"#)
                .unwrap()
                .check(),
            Ok(())
        );
    }
}
