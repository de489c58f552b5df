//! SNMP (161/udp) as net-snmp's `snmpd` on Linux answers it: v1 and v2c with read-only
//! communities, v3 (USM) engine discovery.
//!
//! ```text
//! C: v2c get public 1.3.6.1.2.1.1.5.0   -> snmp.login {"version":"2c","community":"public","matched":true}
//!                                          snmp.query {"pdu":"get","oids":["1.3.6.1.2.1.1.5.0"],...}
//! S: response sysName.0 = "srv01"
//! C: v2c get private 1.3.6.1.2.1.1.5.0  -> snmp.login {"community":"private","matched":false}, snmp.query
//! S: (nothing, as snmpd with an unknown community)
//! C: v3 get, no engine id               -> snmp.query {"version":"3","pdu":"get",...}
//! S: report usmStatsUnknownEngineIDs.0 (engine id 80001f8880..., boots, time)
//! C: v3 get, user "admin", authNoPriv   -> snmp.login {"version":"3","username":"admin",
//!                                          "hashcat":"$SNMPv3$0$...",...}, snmp.query
//! S: report usmStatsUnknownUserNames.0
//! ```
//!
//! A community is logged (`snmp.login`) the first time a pseudo-session tries it, with whether
//! it matched a configured one; every request is logged (`snmp.query`) with its PDU type, its
//! OIDs and its community. Answers cover `get`, `get-next` and `get-bulk` over the objects of
//! [`mib`] (system group, `ifNumber`, `ifTable`); `set` is refused (`noAccess`, v1
//! `noSuchName`) as for a read-only community; traps, informs and responses get no answer.
//! Messages that do not decode are logged as `snmp.data` and get no answer.
//!
//! v3 ([`usm`]): no user is ever accepted, so the agent answers what `snmpd` answers an
//! unknown user, after logging the username and the message's authentication parameters in
//! hashcat's SNMPv3 format. `nmap -sU -sV -p161` reports `SNMPv1 server; net-snmp SNMPv3
//! server` with the default communities (its v1 probe asks `public` for sysName, its v3 probe
//! reads the net-snmp enterprise number 8072 from the engine id).
//!
//! BER encoding and decoding is `rasn` with the SNMP types of `rasn-snmp` (v1/v2c/v3) and
//! `rasn-smi`; nothing of the wire format is hand-written here.

pub mod mib;
#[cfg(test)]
mod tests;
pub mod usm;
mod v2;

use std::{
    sync::{Arc, atomic::AtomicU32},
    time::{Duration, Instant},
};

use rasn_snmp::{v2::Pdus, v2c, v3};
use serde::Deserialize;

use crate::services::{
    Context, ServiceError,
    framework::udp::{Exchange, UdpHandler, UdpProtocol, UdpSession},
};
use mib::{Interface, Mib, System};

/// net-snmp's sysObjectID for Linux (`NET-SNMP-TC::linux`).
const LINUX_OBJECT_ID: &str = "1.3.6.1.4.1.8072.3.2.10";
/// Debian's snmpd.conf defaults.
const DEFAULT_CONTACT: &str = "Me <me@example.org>";
const DEFAULT_LOCATION: &str = "Sitting on the Dock of the Bay";
/// Communities a pseudo-session has logged its first try of; further new ones are still
/// checked and queried but no longer logged as logins (the queries carry them).
const MAX_LOGGED_COMMUNITIES: usize = 32;

/// An SNMP instance.
#[derive(Debug, Clone, Deserialize)]
pub struct SnmpConfig {
    /// Read-only communities (v1, v2c); default `["public"]`.
    #[serde(default = "default_communities")]
    pub communities: Vec<String>,
    /// `sysDescr`; default a Debian Linux kernel line naming the host.
    #[serde(default)]
    pub sys_descr: Option<String>,
    /// `sysObjectID`, dotted; default net-snmp's Linux `1.3.6.1.4.1.8072.3.2.10`.
    #[serde(default)]
    pub sys_object_id: Option<DottedOid>,
    /// `sysContact`.
    #[serde(default)]
    pub sys_contact: Option<String>,
    /// `sysLocation`.
    #[serde(default)]
    pub sys_location: Option<String>,
    /// Interface names for `ifTable`; default `["lo", "eth0"]`.
    #[serde(default)]
    pub interfaces: Option<Vec<String>>,
    /// The v3 engine id, hex (5 to 32 bytes); default a net-snmp style id (enterprise 8072,
    /// format 128) derived from the host name, so it stays the same across restarts.
    #[serde(default)]
    pub engine_id: Option<HexBytes>,
    /// `snmpEngineBoots` reported in v3 reports; default 1.
    #[serde(default)]
    pub engine_boots: Option<u32>,
    /// Seconds the agent claims to have been up at start (sysUpTime, snmpEngineTime); default
    /// between 5 and 60 days, derived from the host name.
    #[serde(default)]
    pub uptime_offset_secs: Option<u32>,
}

fn default_communities() -> Vec<String> {
    vec!["public".to_owned()]
}

/// A dotted OID setting.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct DottedOid(Vec<u32>);

impl TryFrom<String> for DottedOid {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        mib::parse_dotted(&text)
            .map(Self)
            .ok_or_else(|| format!("`{text}` is not a dotted OID (such as 1.3.6.1.4.1.8072)"))
    }
}

/// A hex setting of 5 to 32 bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct HexBytes(Vec<u8>);

impl TryFrom<String> for HexBytes {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bytes = hex::decode(text.trim_start_matches("0x"))
            .map_err(|err| format!("`{text}` is not hex: {err}"))?;
        if (5..=32).contains(&bytes.len()) {
            Ok(Self(bytes))
        } else {
            Err(format!(
                "an engine id is 5 to 32 bytes, not {}",
                bytes.len()
            ))
        }
    }
}

/// What every pseudo-session of one instance shares.
#[derive(Debug)]
pub struct Agent {
    communities: Vec<String>,
    mib: Mib,
    engine_id: Vec<u8>,
    engine_boots: u32,
    /// When the agent claims to have booted.
    booted: Instant,
    /// usmStatsUnknownEngineIDs.
    unknown_engine_ids: AtomicU32,
    /// usmStatsUnknownUserNames.
    unknown_user_names: AtomicU32,
}

impl Agent {
    /// The agent for `config` on host `hostname`.
    #[must_use]
    pub fn new(config: SnmpConfig, hostname: &str) -> Self {
        let seed = seed(hostname);
        let system = System {
            descr: config.sys_descr.unwrap_or_else(|| {
                format!("Linux {hostname} 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22) x86_64")
            }),
            object_id: config
                .sys_object_id
                .map_or_else(|| mib::parse_dotted(LINUX_OBJECT_ID).unwrap_or_default(), |o| o.0),
            contact: config
                .sys_contact
                .unwrap_or_else(|| DEFAULT_CONTACT.to_owned()),
            name: hostname.to_owned(),
            location: config
                .sys_location
                .unwrap_or_else(|| DEFAULT_LOCATION.to_owned()),
            // Internet, end-to-end and application layers.
            services: 72,
        };
        let names = config
            .interfaces
            .unwrap_or_else(|| vec!["lo".to_owned(), "eth0".to_owned()]);
        let interfaces: Vec<Interface> = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let loopback = name == "lo";
                let mut mac = vec![0x52, 0x54, 0x00];
                mac.extend(seed.get(8..11).unwrap_or(&[0, 0, 0]));
                if let Some(last) = mac.last_mut() {
                    *last = last.wrapping_add(u8::try_from(i).unwrap_or(0));
                }
                Interface {
                    name,
                    kind: if loopback { 24 } else { 6 },
                    mtu: if loopback { 65_536 } else { 1_500 },
                    speed: if loopback { 10_000_000 } else { 1_000_000_000 },
                    mac: if loopback { Vec::new() } else { mac },
                }
            })
            .collect();
        let engine_id = config.engine_id.map_or_else(
            || {
                // net-snmp: enterprise 8072 with the high bit, format 128 (random), 8 random
                // bytes and 4 bytes of time.
                let mut id = vec![0x80, 0x00, 0x1f, 0x88, 0x80];
                id.extend(seed.get(..12).unwrap_or(&[0; 12]));
                id
            },
            |hex| hex.0,
        );
        let offset = config.uptime_offset_secs.unwrap_or_else(|| {
            let n = u32::from_be_bytes([
                seed.get(12).copied().unwrap_or(0),
                seed.get(13).copied().unwrap_or(0),
                seed.get(14).copied().unwrap_or(0),
                seed.get(15).copied().unwrap_or(0),
            ]);
            5 * 86_400 + n % (55 * 86_400)
        });
        let now = Instant::now();
        let booted = now
            .checked_sub(Duration::from_secs(u64::from(offset)))
            .unwrap_or(now);
        Self {
            communities: config.communities,
            mib: Mib::new(&system, &interfaces),
            engine_id,
            engine_boots: config.engine_boots.unwrap_or(1),
            booted,
            unknown_engine_ids: AtomicU32::new(0),
            unknown_user_names: AtomicU32::new(0),
        }
    }

    /// sysUpTime in hundredths of a second (wraps as TimeTicks do).
    fn uptime_ticks(&self) -> u32 {
        let centis = self.booted.elapsed().as_millis() / 10;
        u32::try_from(centis % (u128::from(u32::MAX) + 1)).unwrap_or(0)
    }

    /// snmpEngineTime in seconds.
    fn engine_time(&self) -> u32 {
        u32::try_from(self.booted.elapsed().as_secs()).unwrap_or(i32::MAX.unsigned_abs())
    }
}

fn seed(hostname: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(format!("snmp engine {hostname}").as_bytes()).to_vec()
}

/// The SNMP protocol.
#[derive(Debug)]
pub struct Snmp;

impl UdpProtocol for Snmp {
    type Config = SnmpConfig;

    fn handler(config: SnmpConfig, ctx: &Context) -> Result<UdpHandler, ServiceError> {
        let agent = Arc::new(Agent::new(config, &ctx.hostname));
        Ok(Arc::new(move || {
            Box::new(Peer {
                agent: Arc::clone(&agent),
                communities: Vec::new(),
                users: Vec::new(),
            })
        }))
    }
}

/// One peer's state: what it has already been logged for.
#[derive(Debug)]
pub struct Peer {
    agent: Arc<Agent>,
    communities: Vec<Vec<u8>>,
    users: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Peer {
    /// A peer of `agent`.
    #[must_use]
    pub const fn new(agent: Arc<Agent>) -> Self {
        Self {
            agent,
            communities: Vec::new(),
            users: Vec::new(),
        }
    }
}

impl UdpSession for Peer {
    fn handle(&mut self, datagram: &[u8], out: &mut Exchange) -> Option<Vec<u8>> {
        if let Ok(message) = rasn::ber::decode::<v2c::Message<Pdus>>(datagram) {
            return v2::handle(self, message, datagram, out);
        }
        if let Ok(message) = rasn::ber::decode::<v3::Message>(datagram) {
            return usm::handle(self, &message, datagram, out);
        }
        out.data(datagram);
        None
    }
}
