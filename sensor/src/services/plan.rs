//! What the services are started from: a [`ServicesPlan`] the configuration builds (names
//! presented, interface, whitelist, source prefix, limits and the `services` block). The services
//! never read the configuration itself.
//!
//! The `services` block is Trapster's: per protocol a list of instances, each with its `port`
//! (the protocol's default port when absent) and the protocol's keys. Which names are
//! protocols, and what their keys mean, is the [`registry`](super::registry)'s business: this
//! file only walks the block. Unknown keys inside an instance are accepted and listed by
//! [`ServicesSection::unknown_keys`] for a warning (Trapster files carry keys this sensor does
//! not use, such as `key`/`certificate` paths); protocols this sensor does not emulate yet are
//! kept and reported as a warning. Port 0 is refused unless `sensor.services.ephemeral_ports`
//! asks for ephemeral ports (tests).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;
use serde_json::Value;

use super::registry::{self, Protocol, Transport};
use crate::net::{Cidr, SourcePrefix};

/// Everything the services are started from, built by the configuration
/// (`Config::services_plan`).
#[derive(Debug, Clone, Default)]
pub struct ServicesPlan {
    /// Host name presented (`hostname`, default `srv01`).
    pub hostname: String,
    /// Domain presented (`domain`, may be empty).
    pub domain: String,
    /// Interface whose addresses the services bind (`interface`); empty: the wildcards.
    pub interface: String,
    /// Sources served but never reported (`whitelist_ips`).
    pub whitelist: Vec<Cidr>,
    /// What one source is, for the per-source caps (`sensor.source_prefix`).
    pub source_prefix: SourcePrefix,
    /// Limits and state (`sensor.services`).
    pub limits: ServiceLimits,
    /// The `services` block.
    pub services: ServicesSection,
    /// Any-port decoys (`sensor.decoys`).
    pub decoys: super::framework::anyport::config::DecoysConfig,
    /// The machine every decoy presents (`sensor.persona`): defaults under each instance's
    /// keys, and the decoy sockets' TTL.
    pub persona: super::Persona,
}

/// The `services` block, as written: protocol name to its list of instances.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct ServicesSection(BTreeMap<String, Value>);

/// A mistake in the `services` block, with the dotted path of the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct SectionError {
    /// Dotted path, such as `services.ssh[0].port`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// One configured instance of an emulated protocol.
#[derive(Debug, Clone)]
pub struct Instance<'a> {
    /// Its protocol.
    pub protocol: &'static Protocol,
    /// Position in its protocol's list.
    pub index: usize,
    /// Port (the protocol's default when the instance names none).
    pub port: u16,
    /// The instance's keys, as written.
    pub settings: &'a Value,
}

#[derive(Deserialize)]
struct Common {
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    handshake_timeout_secs: Option<u64>,
    #[serde(default)]
    idle_timeout_secs: Option<u64>,
}

impl ServicesSection {
    /// A section from `(name, instances)` pairs (tests, tools).
    #[must_use]
    pub fn from_map(map: BTreeMap<String, Value>) -> Self {
        Self(map)
    }

    /// The instances listed under `name`, as written (empty when absent or not a list).
    #[must_use]
    pub fn listed(&self, name: &str) -> &[Value] {
        self.0
            .get(name)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Protocol names this version does not emulate, kept as written.
    pub fn unknown(&self) -> impl Iterator<Item = &str> {
        self.0
            .keys()
            .map(String::as_str)
            .filter(|name| registry::find(name).is_none())
    }

    /// Every instance of an emulated protocol, in registry order, each checked against its
    /// protocol's keys.
    ///
    /// # Errors
    /// [`SectionError`] naming the field (`services.ssh[0].port`).
    pub fn instances(&self) -> Result<Vec<Instance<'_>>, SectionError> {
        let mut out = Vec::new();
        for protocol in registry::PROTOCOLS {
            for (name, value) in self.0.iter().filter(|(name, _)| protocol.answers_to(name)) {
                let Value::Array(list) = value else {
                    return Err(SectionError {
                        field: format!("services.{name}"),
                        message: "expected a list of instances".to_owned(),
                    });
                };
                for (index, settings) in list.iter().enumerate() {
                    let at = |inner: String| {
                        if inner.is_empty() || inner == "." {
                            format!("services.{name}[{index}]")
                        } else {
                            format!("services.{name}[{index}].{inner}")
                        }
                    };
                    if !settings.is_object() {
                        return Err(SectionError {
                            field: at(String::new()),
                            message: "expected an object".to_owned(),
                        });
                    }
                    let common: Common = registry::parse(settings).map_err(|e| SectionError {
                        field: at(e.path),
                        message: e.message,
                    })?;
                    for (key, value) in [
                        ("handshake_timeout_secs", common.handshake_timeout_secs),
                        ("idle_timeout_secs", common.idle_timeout_secs),
                    ] {
                        if value == Some(0) {
                            return Err(SectionError {
                                field: at(key.to_owned()),
                                message: "must be at least 1 second".to_owned(),
                            });
                        }
                    }
                    (protocol.check)(settings).map_err(|e| SectionError {
                        field: at(e.path),
                        message: e.message,
                    })?;
                    out.push(Instance {
                        protocol,
                        index,
                        port: common.port.unwrap_or(protocol.default_port),
                        settings,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Checks every instance, that none asks for port 0 unless `ephemeral_ports` (the kernel
    /// then picks a port, which no attacker would find), and that no two instances of one
    /// transport share a port.
    ///
    /// # Errors
    /// [`SectionError`] naming the field.
    pub fn check(&self, ephemeral_ports: bool) -> Result<(), SectionError> {
        let instances = self.instances()?;
        for (i, a) in instances.iter().enumerate() {
            if a.port == 0 {
                if ephemeral_ports {
                    continue;
                }
                let name = self
                    .0
                    .keys()
                    .find(|name| a.protocol.answers_to(name))
                    .map_or(a.protocol.name, String::as_str);
                return Err(SectionError {
                    field: format!("services.{name}[{}].port", a.index),
                    message: "port 0 is not a port to listen on (1 to 65535; leave `port` out \
                              for the default)"
                        .to_owned(),
                });
            }
            let clash = instances.get(..i).unwrap_or(&[]).iter().find(|b| {
                b.port == a.port && b.protocol.transport().overlaps(a.protocol.transport())
            });
            if let Some(b) = clash {
                return Err(SectionError {
                    field: "services".to_owned(),
                    message: format!(
                        "{} and {} both use {}port {}",
                        a.protocol.name,
                        b.protocol.name,
                        match a.protocol.transport() {
                            Transport::Tcp => "",
                            Transport::Udp => "UDP ",
                            Transport::UdpTcp => "UDP and TCP ",
                        },
                        a.port
                    ),
                });
            }
        }
        Ok(())
    }

    /// Keys inside instances of emulated protocols that the protocol does not read, as dotted
    /// paths (`services.ftp[0].bannr`), in registry order; instances that do not check are
    /// left out.
    #[must_use]
    pub fn unknown_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        for instance in self.instances().unwrap_or_default() {
            let name = self
                .0
                .keys()
                .find(|name| instance.protocol.answers_to(name))
                .map_or(instance.protocol.name, String::as_str);
            for path in (instance.protocol.ignored)(instance.settings) {
                // Every instance takes these (the per-instance host and domain names, and
                // timeouts).
                if !matches!(
                    path.as_str(),
                    "port" | "hostname" | "domain" | "handshake_timeout_secs" | "idle_timeout_secs"
                ) {
                    out.push(format!("services.{name}[{}].{path}", instance.index));
                }
            }
        }
        out
    }

    /// (protocol, port) of every emulated instance, in registry order; instances that do not
    /// check are left out (the configuration refuses them at load time).
    #[must_use]
    pub fn ports(&self) -> Vec<(&'static str, u16)> {
        self.instances()
            .unwrap_or_default()
            .iter()
            .map(|i| (i.protocol.name, i.port))
            .collect()
    }

    /// How many instances of emulated protocols are configured.
    #[must_use]
    pub fn emulated(&self) -> usize {
        self.ports().len()
    }
}

/// `sensor.services`: limits that keep hostile clients from exhausting the sensor, and where
/// generated keys and certificates are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceLimits {
    /// Connections (and UDP pseudo-sessions) open at once across all services; excess
    /// connections are closed at once.
    pub max_connections: usize,
    /// Connections (and UDP pseudo-sessions) open at once from one source: one address for
    /// IPv4, one /64 for IPv6 by default (`sensor.source_prefix`).
    pub max_connections_per_source: usize,
    /// Bytes a connection may have buffered and not yet processed (requests, frames).
    pub max_buffer_bytes: usize,
    /// Longest line (FTP, Telnet, HTTP request and header lines).
    pub max_line_bytes: usize,
    /// Time for a client to complete the protocol's handshake (first request, startup packet,
    /// TLS, key exchange, login); unset: each instance's product default
    /// ([`timeouts`](super::framework::timeouts)).
    pub handshake_timeout_secs: Option<u64>,
    /// Time without a byte from the client before the connection is closed; unset: each
    /// instance's product default.
    pub idle_timeout_secs: Option<u64>,
    /// Longest session, whatever the client does.
    pub session_timeout_secs: u64,
    /// Raw client bytes kept in one event's `data` (hex); longer input is cut and flagged.
    pub max_data_bytes: usize,
    /// Events one session may emit; the last one allowed carries `extra.events_capped`, later
    /// ones are counted (`events_suppressed`) and dropped, so one client cannot flood the
    /// outputs with a line-per-event protocol.
    pub max_events_per_session: usize,
    /// UDP: a peer's pseudo-session ends after this long without a datagram from it.
    pub udp_idle_timeout_ms: u64,
    /// UDP: pseudo-sessions one socket tracks at once; datagrams from further peers are
    /// dropped (counted) until one expires.
    pub udp_max_sessions: usize,
    /// UDP anti-reflection: a pseudo-session never sends more than this many times the bytes
    /// it received (plus `udp_reply_allowance_bytes`), so a spoofed source cannot turn the
    /// sensor into an amplifier.
    pub udp_reply_factor: u32,
    /// UDP anti-reflection: bytes a pseudo-session may send beyond `udp_reply_factor` times
    /// what it received (room for a first reply larger than its request).
    pub udp_reply_allowance_bytes: usize,
    /// UDP: replies per second to one source (`sensor.source_prefix`), all its peers together;
    /// further replies are refused (counted).
    pub udp_replies_per_source_per_sec: u32,
    /// UDP alert-flood control: sources (`sensor.source_prefix`) whose pseudo-sessions one
    /// socket reports one by one per `udp_flood_window_secs`, however many ports each uses;
    /// the pseudo-sessions of further sources (a spoofed-source flood) are served but folded
    /// into one `<service>.flood` summary event per window, with their counts.
    pub udp_flood_max_sources: u64,
    /// UDP alert-flood control: length of a window, seconds.
    pub udp_flood_window_secs: u64,
    /// TCP alert-flood control: sources (`sensor.source_prefix`) whose connections one
    /// listener reports one by one per `tcp_flood_window_secs`, however many each makes; the
    /// connections of further sources (a botnet, a worm) are served but folded into one
    /// `tcp.flood` summary event per listener and window, with their counts.
    pub tcp_flood_max_sources: u64,
    /// TCP alert-flood control: length of a window, seconds.
    pub tcp_flood_window_secs: u64,
    /// Accept `port: 0` in the `services` block and let the kernel pick a port (tests and
    /// tools that read the bound port back); off by default, where port 0 is refused.
    pub ephemeral_ports: bool,
    /// Stop the whole sensor when one decoy cannot start (a busy port, a missing certificate);
    /// off by default, where that decoy is reported down (logged with the fix, and a
    /// `sensor.degraded` event) and everything else runs.
    pub strict: bool,
    /// Directory for generated host keys and certificates, created if missing.
    pub state_dir: PathBuf,
    /// Extra directories searched for HTTP skins, before the built-in ones.
    pub skin_dirs: Vec<PathBuf>,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            max_connections: 2_048,
            max_connections_per_source: 64,
            max_buffer_bytes: 64 * 1024,
            max_line_bytes: 8 * 1024,
            handshake_timeout_secs: None,
            idle_timeout_secs: None,
            session_timeout_secs: 600,
            max_data_bytes: 4 * 1024,
            max_events_per_session: 256,
            udp_idle_timeout_ms: 30_000,
            udp_max_sessions: 4_096,
            udp_reply_factor: 1,
            udp_reply_allowance_bytes: 512,
            udp_replies_per_source_per_sec: 10,
            udp_flood_max_sources: 50,
            udp_flood_window_secs: 60,
            tcp_flood_max_sources: 200,
            tcp_flood_window_secs: 60,
            ephemeral_ports: false,
            strict: false,
            state_dir: PathBuf::from("/var/lib/trapster-sensor"),
            skin_dirs: Vec::new(),
        }
    }
}

impl ServiceLimits {
    /// Handshake timeout (resolved per instance when the services start; the framework's
    /// 15 s where nothing resolved it).
    #[must_use]
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(
            self.handshake_timeout_secs
                .unwrap_or(super::framework::timeouts::Timeouts::FRAMEWORK.handshake_secs),
        )
    }

    /// Idle timeout (resolved per instance; the framework's 60 s where nothing resolved it).
    #[must_use]
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(
            self.idle_timeout_secs
                .unwrap_or(super::framework::timeouts::Timeouts::FRAMEWORK.idle_secs),
        )
    }

    /// UDP pseudo-session idle timeout.
    #[must_use]
    pub const fn udp_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.udp_idle_timeout_ms)
    }

    /// Session timeout.
    #[must_use]
    pub const fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.session_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{SectionError, ServicesSection};

    fn section(value: serde_json::Value) -> ServicesSection {
        serde_json::from_value(value).unwrap()
    }

    fn error(value: serde_json::Value) -> SectionError {
        section(value).check(false).unwrap_err()
    }

    #[test]
    fn instances_take_the_registry_default_port_and_aliases() {
        let s = section(json!({
            "postgresql": [{}],
            "ftp": [{"port": 2121}, {}],
            "smtp": [{"port": 25}],
        }));
        s.check(false).unwrap();
        assert_eq!(
            s.ports(),
            vec![("ftp", 2121), ("ftp", 21), ("postgres", 5432)]
        );
        assert_eq!(s.emulated(), 3);
        assert_eq!(s.unknown().collect::<Vec<_>>(), vec!["smtp"]);
        assert_eq!(s.listed("ftp").len(), 2);
        assert!(s.listed("telnet").is_empty());
    }

    #[test]
    fn mistakes_name_the_field() {
        assert_eq!(
            error(json!({"ssh": [{"port": 22}, {"port": "twenty-two"}]})).field,
            "services.ssh[1].port"
        );
        assert_eq!(
            error(json!({"ssh": [{"users": {"root": 5}}]})).field,
            "services.ssh[0].users.root"
        );
        assert_eq!(
            error(json!({"ftp": {"port": 21}})),
            SectionError {
                field: "services.ftp".to_owned(),
                message: "expected a list of instances".to_owned()
            }
        );
        assert_eq!(error(json!({"ftp": [21]})).field, "services.ftp[0]");
        assert_eq!(
            error(json!({"telnet": [{"port": 70000}]})).field,
            "services.telnet[0].port"
        );
    }

    #[test]
    fn two_tcp_instances_on_one_port_are_refused_port_zero_only_when_ephemeral() {
        let err = error(json!({"ftp": [{"port": 8080}], "http": [{"port": 8080}]}));
        assert_eq!(err.field, "services");
        assert_eq!(err.message, "http and ftp both use port 8080");
        let err = error(json!({"http": [{}], "https": [{"port": 80}]}));
        assert_eq!(err.message, "https and http both use port 80");
        section(json!({"ftp": [{"port": 0}], "http": [{"port": 0}]}))
            .check(true)
            .unwrap();
        assert_eq!(
            error(json!({"ftp": [{"port": 21}], "postgresql": [{}, {"port": 0}]})),
            SectionError {
                field: "services.postgresql[1].port".to_owned(),
                message: "port 0 is not a port to listen on (1 to 65535; leave `port` out for \
                          the default)"
                    .to_owned()
            }
        );
    }

    #[test]
    fn unknown_instance_keys_are_listed_not_refused() {
        let s = section(json!({
            "ftp": [{"port": 2121, "banner": "x"}, {"bannr": "typo", "username": null}],
            "https": [{"key": "k.pem", "certificate": "c.pem", "common_name": "fw",
                       "hostname": "WEB01", "keyy": 1}],
            "smtp": [{"port": 25, "whatever": 1}],
        }));
        s.check(false).unwrap();
        assert_eq!(
            s.unknown_keys(),
            vec![
                "services.ftp[1].bannr".to_owned(),
                "services.https[0].keyy".to_owned(),
            ]
        );
    }
}
