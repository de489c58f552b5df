//! LLMNR / NBT-NS / mDNS poisoning detection: the sensor asks, on the interfaces it watches,
//! for host names that do not exist, and reports any host that answers.
//!
//! Responder, Inveigh and their kind answer every LLMNR, NBT-NS and mDNS name query on a LAN
//! with their own address, to collect the NTLM hashes of whoever connects. No honest host
//! answers for a name nobody has, so an answer to a made-up name is poisoning. Each round (every
//! `interval_secs`, plus up to `jitter_secs` at random, the first within `jitter_secs` of the
//! start) picks a name (one of `names`, or a random plausible one such as `FILESRV07` or
//! `NAS-BKP3`) and sends, from each interface's IPv4 address:
//!
//! - LLMNR: an A question to 224.0.0.252:5355, TTL 1 ([`dns`], with `hickory-proto`);
//! - NBT-NS: a broadcast name query (suffix `<20>`) to the subnet's broadcast address, port 137
//!   ([`nbns`], by hand);
//! - mDNS: an A question for `<name>.local.` to 224.0.0.251:5353 from an ephemeral port, a
//!   "legacy unicast" query (RFC 6762 6.7) answered straight to that port.
//!
//! - with `ipv6` (default on), from the interface's IPv6 address (a global one if it has one,
//!   else its link-local one): LLMNR's A question to ff02::1:3 port 5355, hop limit 1.
//!
//! Answers are read for `wait_ms` on the socket that asked. Each host that answers gives one
//! `llmnr.poisoning`, `nbns.poisoning` or `mdns.poisoning` event per round: `src_ip`/`src_port`
//! are the answering host's, `dst_ip`/`dst_port` the socket that asked, `data` the answer's
//! bytes, `extra` the `name` asked, the `answers` (addresses it gave), the `interface` and the
//! `query_type`. Answers from the sensor's own addresses and from `whitelist_ips` (the real
//! DNS and WINS servers, which may answer NBT-NS for names they know) are not poisoning.
//! Events go through the same pipeline as the services'.
//!
//! With `answer_own_name` (off by default) the sensor also answers, as a Windows host does,
//! LLMNR and NBT-NS queries for its own name (`own_name`, default `hostname`'s first label)
//! with its own address, and never for any other name ([`answer`], [`reply`]).

mod answer;
mod dns;
mod iface;
mod names;
mod nbns;
mod probe;
mod reply;
#[cfg(test)]
mod tests;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use serde::Deserialize;

use crate::{
    event::{Event, Service},
    net::Cidr,
    shutdown::CancellationToken,
};

/// The LLMNR group and port.
const LLMNR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 252)), 5355);
/// The LLMNR IPv6 group (link scope).
const LLMNR6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 3);
/// The mDNS group and port.
const MDNS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 251)), 5353);
/// The NetBIOS name service port.
const NBNS_PORT: u16 = 137;
/// Datagrams read per query at most (a flood of answers stays bounded).
const MAX_ANSWERS: usize = 64;
/// Bytes of an answer kept in `data`.
const MAX_DATA: usize = 512;

/// One name-resolution protocol that can be watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Link-Local Multicast Name Resolution.
    Llmnr,
    /// NetBIOS name service.
    Nbns,
    /// Multicast DNS.
    Mdns,
}

impl Protocol {
    pub(crate) const fn service(self) -> Service {
        match self {
            Self::Llmnr => Service::Llmnr,
            Self::Nbns => Service::Nbns,
            Self::Mdns => Service::Mdns,
        }
    }
}

/// `sensor.poisoning`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoisoningConfig {
    /// Whether the sensor sends its decoy queries; default false.
    pub enabled: bool,
    /// Seconds between rounds; default 300.
    pub interval_secs: u64,
    /// Up to this many seconds are added to each wait at random; default 60.
    pub jitter_secs: u64,
    /// How long answers are read after each query, ms; default 2000.
    pub wait_ms: u64,
    /// Names to ask for (one per round, at random); default: random plausible host names.
    pub names: Vec<String>,
    /// Which protocols to ask with (and, with `answer_own_name`, answer); default all three.
    pub protocols: Vec<Protocol>,
    /// Ask (and answer) LLMNR over IPv6 too, on interfaces with an IPv6 address; default true.
    pub ipv6: bool,
    /// Hosts whose answers are not poisoning (the real DNS / WINS servers): addresses or
    /// CIDRs, IPv4 or IPv6; default none.
    pub whitelist_ips: Vec<Cidr>,
    /// Answer LLMNR and NBT-NS queries for the sensor's own name with its address, as a
    /// Windows host would (never for another name); default false.
    pub answer_own_name: bool,
    /// The name answered; default the first label of `hostname`, else `srv01` (the services'
    /// default).
    pub own_name: Option<String>,
}

impl Default for PoisoningConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_secs: 300,
            jitter_secs: 60,
            wait_ms: 2000,
            names: Vec::new(),
            protocols: vec![Protocol::Llmnr, Protocol::Nbns, Protocol::Mdns],
            ipv6: true,
            whitelist_ips: Vec::new(),
            answer_own_name: false,
            own_name: None,
        }
    }
}

impl PoisoningConfig {
    /// The first setting that cannot work: (field inside `sensor.poisoning`, message).
    ///
    /// # Errors
    /// The field's name and what is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.interval_secs == 0 {
            return Err(("interval_secs", "must be at least 1".to_owned()));
        }
        if self.wait_ms == 0 || self.wait_ms > self.interval_secs.saturating_mul(1000) {
            return Err((
                "wait_ms",
                format!("{} is outside 1..=interval_secs*1000", self.wait_ms),
            ));
        }
        if let Some(bad) = self.names.iter().find(|n| !names::is_valid(n)) {
            return Err((
                "names",
                format!("`{bad}` is not a host name of 1 to 15 letters, digits or `-`"),
            ));
        }
        if let Some(bad) = self.own_name.as_ref().filter(|n| !names::is_valid(n)) {
            return Err((
                "own_name",
                format!("`{bad}` is not a host name of 1 to 15 letters, digits or `-`"),
            ));
        }
        Ok(())
    }
}

/// Starts the detection (and, with `answer_own_name`, the answering) on `interfaces` when
/// enabled; events go to `sink`. The answering sockets are opened before this returns (call
/// it while the process still may bind port 137). `hostname` is the configuration's, the default own name. The
/// task ends with `shutdown`.
#[must_use]
pub fn start(
    config: &PoisoningConfig,
    interfaces: &[String],
    hostname: Option<&str>,
    sink: tokio::sync::mpsc::Sender<Event>,
    shutdown: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !(config.enabled || config.answer_own_name) || config.protocols.is_empty() {
        return None;
    }
    if interfaces.is_empty() {
        tracing::warn!("Poisoning detection needs an interface (-i or `interface`); not started.");
        return None;
    }
    let config = config.clone();
    let interfaces = interfaces.to_vec();
    let own = reply::OwnName::new(
        config
            .own_name
            .as_deref()
            .or(hostname.filter(|h| !h.is_empty()))
            .unwrap_or("srv01"),
    );
    // Opened here, before the agent drops its privileges (NBT-NS listens on port 137).
    let listeners = if config.answer_own_name {
        answer::open(&interfaces, &config.protocols, config.ipv6)
    } else {
        Vec::new()
    };
    let token = shutdown.child_token();
    Some(tokio::spawn(async move {
        let probing = async {
            if config.enabled {
                run(&config, &interfaces, &sink).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let answering = async {
            if config.answer_own_name {
                answer::serve(own, listeners, sink.clone()).await;
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = token.cancelled() => {}
            () = probing => {}
            () = answering => {}
        }
    }))
}

async fn run(
    config: &PoisoningConfig,
    interfaces: &[String],
    sink: &tokio::sync::mpsc::Sender<Event>,
) {
    let mut wait = jitter(config.jitter_secs);
    loop {
        tokio::time::sleep(wait).await;
        let name = names::pick(&config.names);
        for interface in interfaces {
            let own = match iface::addresses(interface) {
                Ok(own) => own,
                Err(err) => {
                    tracing::warn!(interface = %interface, error = %err, "Poisoning detection cannot read the interface's addresses.");
                    continue;
                }
            };
            if own.v4.is_empty() && own.v6.is_empty() {
                tracing::warn!(interface = %interface, "Poisoning detection: the interface has no address.");
            }
            for a in &own.v4 {
                let from = probe::Source::V4 {
                    addr: a.addr,
                    broadcast: a.broadcast(),
                };
                round(config, interface, from, &own, &name, sink).await;
            }
            if config.ipv6
                && let (Some(addr), Some(index)) = (own.v6_source(), iface::index(interface))
            {
                let from = probe::Source::V6 { addr, index };
                round(config, interface, from, &own, &name, sink).await;
            }
        }
        wait = Duration::from_secs(config.interval_secs).saturating_add(jitter(config.jitter_secs));
    }
}

fn jitter(max_secs: u64) -> Duration {
    let ms = max_secs.saturating_mul(1000);
    Duration::from_millis(if ms == 0 {
        0
    } else {
        rand::random::<u64>() % ms.saturating_add(1)
    })
}

/// One round on one address: every protocol at once (only LLMNR from an IPv6 address).
async fn round(
    config: &PoisoningConfig,
    interface: &str,
    from: probe::Source,
    own: &iface::Addresses,
    name: &str,
    sink: &tokio::sync::mpsc::Sender<Event>,
) {
    let wait = Duration::from_millis(config.wait_ms);
    let v6 = matches!(from, probe::Source::V6 { .. });
    let ask = |protocol: Protocol| async move {
        if !config.protocols.contains(&protocol) || (v6 && protocol != Protocol::Llmnr) {
            return;
        }
        let probe = probe::Probe {
            protocol,
            interface,
            from,
            name,
            own,
            whitelist: &config.whitelist_ips,
        };
        match probe.ask(wait).await {
            Ok(events) => {
                for event in events {
                    if sink.send(event).await.is_err() {
                        return;
                    }
                }
            }
            Err(err) => {
                tracing::warn!(interface = %interface, protocol = ?protocol, error = %err, "Poisoning query failed.");
            }
        }
    };
    tokio::join!(
        ask(Protocol::Llmnr),
        ask(Protocol::Nbns),
        ask(Protocol::Mdns)
    );
}
