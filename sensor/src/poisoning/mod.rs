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
//! Answers are read for `wait_ms` on the socket that asked. Each host that answers gives one
//! `llmnr.poisoning`, `nbns.poisoning` or `mdns.poisoning` event per round: `src_ip`/`src_port`
//! are the answering host's, `dst_ip`/`dst_port` the socket that asked, `data` the answer's
//! bytes, `extra` the `name` asked, the `answers` (addresses it gave), the `interface` and the
//! `query_type`. Events go through the same pipeline as the services'.

mod dns;
mod iface;
mod names;
mod nbns;
#[cfg(test)]
mod tests;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::net::UdpSocket;
use uuid::Uuid;

use crate::{
    event::{Action, Event, Service, SessionIdentity},
    shutdown::CancellationToken,
};

/// The LLMNR group and port.
const LLMNR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 252)), 5355);
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
    const fn service(self) -> Service {
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
    /// Which protocols to ask with; default all three.
    pub protocols: Vec<Protocol>,
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
        Ok(())
    }
}

/// Starts the detection on `interfaces` when enabled; events go to `sink`. The task ends with
/// `shutdown`.
#[must_use]
pub fn start(
    config: &PoisoningConfig,
    interfaces: &[String],
    sink: tokio::sync::mpsc::Sender<Event>,
    shutdown: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !config.enabled || config.protocols.is_empty() {
        return None;
    }
    if interfaces.is_empty() {
        tracing::warn!("Poisoning detection needs an interface (-i or `interface`); not started.");
        return None;
    }
    let config = config.clone();
    let interfaces = interfaces.to_vec();
    let token = shutdown.child_token();
    Some(tokio::spawn(async move {
        tokio::select! {
            () = token.cancelled() => {}
            () = run(&config, &interfaces, &sink) => {}
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
            match iface::ipv4(interface) {
                Ok(addrs) => {
                    for (addr, broadcast) in addrs {
                        round(config, interface, addr, broadcast, &name, sink).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(interface = %interface, error = %err, "Poisoning detection cannot read the interface's addresses.");
                }
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

/// One round on one address: every protocol at once.
async fn round(
    config: &PoisoningConfig,
    interface: &str,
    addr: Ipv4Addr,
    broadcast: Ipv4Addr,
    name: &str,
    sink: &tokio::sync::mpsc::Sender<Event>,
) {
    let wait = Duration::from_millis(config.wait_ms);
    let ask = |protocol: Protocol| async move {
        if !config.protocols.contains(&protocol) {
            return;
        }
        let probe = Probe {
            protocol,
            interface,
            addr,
            broadcast,
            name,
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

/// One query on one interface address.
struct Probe<'a> {
    protocol: Protocol,
    interface: &'a str,
    addr: Ipv4Addr,
    broadcast: Ipv4Addr,
    name: &'a str,
}

impl Probe<'_> {
    /// Sends the query and returns one event per host that answered within `wait`.
    async fn ask(&self, wait: Duration) -> std::io::Result<Vec<Event>> {
        let id: u16 = rand::random();
        let (packet, target, asked, ttl) = match self.protocol {
            Protocol::Llmnr => (dns::query(id, self.name), LLMNR, self.name.to_owned(), 1),
            Protocol::Mdns => {
                let asked = format!("{}.local.", self.name);
                (dns::query(id, &asked), MDNS, asked, 255)
            }
            Protocol::Nbns => (
                Some(nbns::query(id, self.name)),
                SocketAddr::new(IpAddr::V4(self.broadcast), NBNS_PORT),
                self.name.to_ascii_uppercase(),
                64,
            ),
        };
        let packet = packet.ok_or_else(|| std::io::Error::other("name cannot be encoded"))?;
        let socket = self.socket(ttl)?;
        socket.send_to(&packet, target).await?;
        let local = socket.local_addr()?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen: Vec<IpAddr> = Vec::new();
        let mut events = Vec::new();
        let mut buf = vec![0u8; 1500];
        for _ in 0..MAX_ANSWERS {
            let Ok(received) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
            else {
                break;
            };
            let (n, from) = received?;
            let answer = buf.get(..n).unwrap_or_default();
            let answers: Option<Vec<IpAddr>> = match self.protocol {
                Protocol::Llmnr | Protocol::Mdns => dns::parse_answer(answer, id, &asked),
                Protocol::Nbns => nbns::parse_answer(answer, id)
                    .filter(|a| a.name.eq_ignore_ascii_case(&asked))
                    .map(|a| a.addresses.into_iter().map(IpAddr::V4).collect()),
            };
            let Some(answers) = answers else { continue };
            if from.ip() == IpAddr::V4(self.addr) || seen.contains(&from.ip()) {
                continue;
            }
            seen.push(from.ip());
            events.push(self.event(from, local, &asked, &answers, answer));
        }
        Ok(events)
    }

    fn socket(&self, ttl: u32) -> std::io::Result<UdpSocket> {
        use socket2::{Domain, Protocol as Proto, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Proto::UDP))?;
        socket.set_nonblocking(true)?;
        // Best effort: SO_BINDTODEVICE needs CAP_NET_RAW; the address bind below already
        // picks the interface for unicast and broadcast, IP_MULTICAST_IF for multicast.
        if let Err(err) = socket.bind_device(Some(self.interface.as_bytes())) {
            tracing::debug!(interface = %self.interface, error = %err, "SO_BINDTODEVICE refused.");
        }
        match self.protocol {
            Protocol::Nbns => socket.set_broadcast(true)?,
            Protocol::Llmnr | Protocol::Mdns => {
                socket.set_multicast_if_v4(&self.addr)?;
                socket.set_multicast_ttl_v4(ttl)?;
                socket.set_multicast_loop_v4(false)?;
            }
        }
        socket.set_ttl_v4(ttl)?;
        socket.bind(&SocketAddr::new(IpAddr::V4(self.addr), 0).into())?;
        UdpSocket::from_std(socket.into())
    }

    fn event(
        &self,
        from: SocketAddr,
        local: SocketAddr,
        asked: &str,
        answers: &[IpAddr],
        raw: &[u8],
    ) -> Event {
        let mut extra = Map::new();
        extra.insert("name".to_owned(), Value::String(asked.to_owned()));
        extra.insert(
            "answers".to_owned(),
            json!(answers.iter().map(ToString::to_string).collect::<Vec<_>>()),
        );
        extra.insert(
            "interface".to_owned(),
            Value::String(self.interface.to_owned()),
        );
        extra.insert(
            "query_type".to_owned(),
            json!(match self.protocol {
                Protocol::Nbns => "NB",
                Protocol::Llmnr | Protocol::Mdns => "A",
            }),
        );
        Event {
            id: Uuid::new_v4(),
            timestamp: chrono::Utc::now(),
            session: SessionIdentity {
                src_ip: crate::event::display_ip(from.ip()),
                src_port: from.port(),
                dst_ip: crate::event::display_ip(local.ip()),
                dst_port: local.port(),
            },
            service: self.protocol.service(),
            action: Action::Poisoning,
            data: Bytes::copy_from_slice(raw.get(..raw.len().min(MAX_DATA)).unwrap_or_default()),
            extra,
        }
    }
}
