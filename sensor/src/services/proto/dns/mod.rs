//! DNS (53/udp and 53/tcp) as an authoritative-only BIND 9 for the configured domain, with
//! the records an Active Directory domain controller publishes.
//!
//! ```text
//! C: srv01.corp.local A (udp)              -> dns.query {"qname":"srv01.corp.local","qtype":"A",
//!                                             "qclass":"IN","transport":"udp","rcode":"NOERROR",...}
//! S: srv01.corp.local A <the address the client asked>, aa
//! C: example.org A, rd                     -> dns.query {..., "rcode":"REFUSED"}
//! S: REFUSED, no ra
//! C: version.bind CH TXT                   -> dns.query {"qclass":"CH",...}
//! S: "9.18.28-1~deb12u2-Debian"
//! C: corp.local AXFR (tcp)                 -> dns.query {"qtype":"AXFR","transport":"tcp",...}
//! S: REFUSED (or the zone with `allow_transfer: true`)
//! ```
//!
//! One instance serves both transports on its port (the registry's `udp_tcp` entry): the
//! datagram path gets the UDP framework's pseudo-sessions and anti-reflection, the TCP path
//! reads length-prefixed messages (RFC 1035 4.2.2) until the client closes or idles. Answers
//! over UDP larger than 512 bytes (or the client's EDNS size, at most 1232) are truncated (TC
//! set, question only) so the client retries over TCP.
//!
//! The zone (see [`zone`]): SOA and NS naming the host, A/AAAA for the host and the apex (the
//! configured address, else the address the query was sent to), the PTR of that address, MX,
//! TXT, and SRV records for `_ldap._tcp`, `_kerberos._tcp`, `_kerberos._udp`, `_kpasswd._tcp`,
//! `_gc._tcp` and `_ldap._tcp.dc._msdcs` pointing at the host, plus configured records.
//! Out-of-zone queries are REFUSED unless `target_dns` names a forwarder (Trapster's key): then
//! recursive ones are forwarded and the upstream's answer relayed in this server's own message
//! (see [`forward`]), so the upstream's identity does not leak as it does through Trapster,
//! which relays the upstream's bytes, its `version.bind` included.
//!
//! The wire format is `hickory-proto`'s; compression pointers, label lengths and counts are
//! its decoder's to check.

pub mod forward;
#[cfg(test)]
mod tests;
pub mod zone;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
    sync::Arc,
};

use hickory_proto::rr::{
    Name, RData, Record,
    rdata::{CNAME, MX, NS, PTR, SOA, SRV, TXT},
};
use serde::Deserialize;

use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError},
        tcp::{Handler, TcpProtocol},
        udp::{self, Exchange, UdpHandler, UdpProtocol, UdpSession},
    },
};
use forward::{Forwarder, Upstream};
use zone::{Outcome, Transport, Zone};

/// Debian 12's bind9.
const DEFAULT_VERSION: &str = "9.18.28-1~deb12u2-Debian";
/// Domain served when neither the instance nor the sensor names one.
const DEFAULT_DOMAIN: &str = "corp.local";
/// The SRV records of an Active Directory domain controller: name, port.
const AD_SRV: [(&str, u16); 6] = [
    ("_ldap._tcp", 389),
    ("_kerberos._tcp", 88),
    ("_kerberos._udp", 88),
    ("_kpasswd._tcp", 464),
    ("_gc._tcp", 3268),
    ("_ldap._tcp.dc._msdcs", 389),
];

/// A DNS instance.
#[derive(Debug, Clone, Deserialize)]
pub struct DnsConfig {
    /// The zone; default the sensor's `domain`, else `corp.local`.
    #[serde(default)]
    pub domain: Option<String>,
    /// The host's IPv4 address; default the address each query was sent to.
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    /// The host's IPv6 address; default the address each query was sent to, if IPv6.
    #[serde(default)]
    pub address6: Option<Ipv6Addr>,
    /// TTL of every record; default 3600.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// MX records; default one, preference 10, the host.
    #[serde(default)]
    pub mx: Option<Vec<MxConfig>>,
    /// TXT strings at the apex; default an SPF record.
    #[serde(default)]
    pub txt: Option<Vec<String>>,
    /// Whether the AD SRV records are published; default true.
    #[serde(default)]
    pub srv: Option<bool>,
    /// Further records.
    #[serde(default)]
    pub records: Vec<RecordConfig>,
    /// `version.bind` (CH TXT); default BIND's Debian 12 version.
    #[serde(default)]
    pub version: Option<String>,
    /// `hostname.bind`, `id.server` and EDNS NSID; default the host name.
    #[serde(default)]
    pub server_id: Option<String>,
    /// Whether AXFR/IXFR over TCP get the zone; default false (REFUSED, as BIND without
    /// `allow-transfer`).
    #[serde(default)]
    pub allow_transfer: bool,
    /// Trapster's forwarder: recursive queries outside the zone go to this address (`ip` or
    /// `ip:port`, port 53 by default); unset, they are REFUSED.
    #[serde(default)]
    pub target_dns: Option<Upstream>,
    /// Queries forwarded per second at most; default [`forward::DEFAULT_RATE`].
    #[serde(default)]
    pub forward_rate: Option<u32>,
}

/// One MX record.
#[derive(Debug, Clone, Deserialize)]
pub struct MxConfig {
    /// Preference.
    pub preference: u16,
    /// Mail host, relative to the zone unless it ends with a dot.
    pub host: String,
}

/// One further record.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordConfig {
    /// Owner name, relative to the zone unless it ends with a dot (`@`: the apex).
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `TXT`, `PTR` or `NS`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The data: an address, a name or a text.
    pub value: String,
}

/// The DNS protocol.
#[derive(Debug)]
pub struct Dns;

fn name_in(text: &str, origin: &Name) -> Result<Name, String> {
    if text == "@" {
        return Ok(origin.clone());
    }
    Name::parse(text, Some(origin)).map_err(|err| format!("`{text}` is not a name: {err}"))
}

/// Builds the zone from `config`.
///
/// # Errors
/// The field that does not fit, and why.
pub fn build_zone(config: DnsConfig, ctx: &Context) -> Result<Zone, String> {
    let domain = config
        .domain
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| (!ctx.domain.is_empty()).then(|| ctx.domain.clone()))
        .unwrap_or_else(|| DEFAULT_DOMAIN.to_owned());
    let origin = Name::from_str(&domain)
        .map(|mut n| {
            n.set_fqdn(true);
            n
        })
        .map_err(|err| format!("domain: `{domain}` is not a domain name: {err}"))?;
    let host = name_in(&ctx.hostname, &origin).map_err(|e| format!("hostname: {e}"))?;
    let ttl = config.ttl.unwrap_or(3_600);
    let hostmaster = name_in("hostmaster", &origin).map_err(|e| format!("domain: {e}"))?;
    let mut records = vec![
        Record::from_rdata(
            origin.clone(),
            ttl,
            RData::SOA(SOA::new(
                host.clone(),
                hostmaster,
                2_024_112_201,
                900,
                600,
                86_400,
                3_600,
            )),
        ),
        Record::from_rdata(origin.clone(), ttl, RData::NS(NS(host.clone()))),
    ];
    let mx = config.mx.clone().unwrap_or_else(|| {
        vec![MxConfig {
            preference: 10,
            host: ctx.hostname.clone(),
        }]
    });
    for (i, mx) in mx.iter().enumerate() {
        let exchange = name_in(&mx.host, &origin).map_err(|e| format!("mx[{i}].host: {e}"))?;
        records.push(Record::from_rdata(
            origin.clone(),
            ttl,
            RData::MX(MX::new(mx.preference, exchange)),
        ));
    }
    let txt = config
        .txt
        .clone()
        .unwrap_or_else(|| vec!["v=spf1 mx -all".to_owned()]);
    for text in txt {
        records.push(Record::from_rdata(
            origin.clone(),
            ttl,
            RData::TXT(TXT::new(vec![text])),
        ));
    }
    if config.srv.unwrap_or(true) {
        for (service, port) in AD_SRV {
            let owner = name_in(service, &origin).map_err(|e| format!("domain: {e}"))?;
            records.push(Record::from_rdata(
                owner,
                600,
                RData::SRV(SRV::new(0, 100, port, host.clone())),
            ));
        }
    }
    for (i, record) in config.records.iter().enumerate() {
        records.push(configured(record, &origin, ttl).map_err(|e| format!("records[{i}].{e}"))?);
    }
    Ok(Zone {
        origin,
        host,
        address: config.address,
        address6: config.address6,
        ttl,
        records,
        version: config.version.unwrap_or_else(|| DEFAULT_VERSION.to_owned()),
        server_id: config.server_id.unwrap_or_else(|| ctx.hostname.clone()),
        allow_transfer: config.allow_transfer,
        recursion: config.target_dns.is_some(),
    })
}

fn configured(record: &RecordConfig, origin: &Name, ttl: u32) -> Result<Record, String> {
    let owner = name_in(&record.name, origin).map_err(|e| format!("name: {e}"))?;
    let value = &record.value;
    let bad = |what: &str| format!("value: `{value}` is not {what}");
    let data = match record.kind.to_ascii_uppercase().as_str() {
        "A" => RData::A(hickory_proto::rr::rdata::A(
            value.parse().map_err(|_| bad("an IPv4 address"))?,
        )),
        "AAAA" => RData::AAAA(hickory_proto::rr::rdata::AAAA(
            value.parse().map_err(|_| bad("an IPv6 address"))?,
        )),
        "CNAME" => RData::CNAME(CNAME(
            name_in(value, origin).map_err(|e| format!("value: {e}"))?,
        )),
        "PTR" => RData::PTR(PTR(
            name_in(value, origin).map_err(|e| format!("value: {e}"))?
        )),
        "NS" => RData::NS(NS(
            name_in(value, origin).map_err(|e| format!("value: {e}"))?
        )),
        "TXT" => RData::TXT(TXT::new(vec![value.clone()])),
        other => {
            return Err(format!(
                "type: `{other}` is not one of A, AAAA, CNAME, TXT, PTR, NS"
            ));
        }
    };
    Ok(Record::from_rdata(owner, ttl, data))
}

/// What every query of an instance is answered from.
#[derive(Debug)]
struct Server {
    zone: Zone,
    forwarder: Option<Forwarder>,
}

impl Server {
    fn new(config: DnsConfig, ctx: &Context) -> Result<Arc<Self>, ServiceError> {
        let forwarder = config.target_dns.map(|upstream| {
            let rate = config.forward_rate.unwrap_or(forward::DEFAULT_RATE);
            tracing::info!(
                port = ctx.port,
                upstream = %upstream.0,
                rate,
                "DNS decoy forwards recursive queries outside its zone."
            );
            Forwarder::new(upstream, rate)
        });
        let zone = build_zone(config, ctx).map_err(|e| ctx.setup_error(e))?;
        Ok(Arc::new(Self { zone, forwarder }))
    }

    /// Answers `message`; a forwarded query comes back as a future of its reply
    /// (`Err`), with the event's fields in either case.
    fn answer(
        self: &Arc<Self>,
        message: &[u8],
        local: IpAddr,
        transport: Transport,
    ) -> (Option<serde_json::Map<String, serde_json::Value>>, Reply) {
        let may_forward = |request: &hickory_proto::op::Message| {
            self.forwarder.as_ref().is_some_and(|f| !f.is_own(request))
        };
        let Outcome {
            query,
            reply,
            forward,
        } = self
            .zone
            .answer_or_forward(message, local, transport, &may_forward);
        let (Some(forward), Some(forwarder)) = (forward, &self.forwarder) else {
            return (query, Reply::Now(reply));
        };
        let mut query = query;
        match forwarder.admit() {
            Ok(permit) => {
                let server = Arc::clone(self);
                let later = async move {
                    let forwarder = server.forwarder.as_ref()?;
                    let upstream = forwarder
                        .ask(
                            permit,
                            &forward.query,
                            forward.checking_disabled(),
                            forward.dnssec_ok(),
                        )
                        .await;
                    server.zone.relay(&forward, upstream.as_ref())
                };
                (query, Reply::Later(Box::pin(later)))
            }
            Err(busy) => {
                if let Some(extra) = query.as_mut() {
                    extra.insert("forwarded".into(), false.into());
                    extra.insert("rcode".into(), "SERVFAIL".into());
                    extra.insert(
                        "forward_refused".into(),
                        match busy {
                            forward::Busy::InFlight => "in_flight",
                            forward::Busy::Rate => "rate",
                        }
                        .into(),
                    );
                }
                (query, Reply::Now(self.zone.relay(&forward, None)))
            }
        }
    }
}

/// A reply now, or one that waits for the upstream.
enum Reply {
    Now(Option<Vec<u8>>),
    Later(udp::Deferred),
}

impl UdpProtocol for Dns {
    type Config = DnsConfig;

    fn handler(config: DnsConfig, ctx: &Context) -> Result<UdpHandler, ServiceError> {
        let server = Server::new(config, ctx)?;
        Ok(Arc::new(move || {
            Box::new(Peer {
                server: Arc::clone(&server),
            })
        }))
    }
}

impl TcpProtocol for Dns {
    type Config = DnsConfig;

    fn handler(config: DnsConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        let server = Server::new(config, ctx)?;
        Ok(Arc::new(move |session, stream| {
            let server = Arc::clone(&server);
            Box::pin(async move { serve_tcp(&server, session, stream).await })
        }))
    }
}

/// One UDP peer (DNS keeps no state between datagrams).
#[derive(Debug)]
pub struct Peer {
    server: Arc<Server>,
}

impl UdpSession for Peer {
    fn handle(&mut self, datagram: &[u8], out: &mut Exchange) -> Option<Vec<u8>> {
        let local = out
            .local()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let (query, reply) = self.server.answer(datagram, local, Transport::Udp);
        match query {
            Some(extra) => out.query(&[], extra),
            None => out.data(datagram),
        }
        match reply {
            Reply::Now(reply) => reply,
            Reply::Later(later) => {
                out.defer(later);
                None
            }
        }
    }
}

async fn serve_tcp(
    server: &Arc<Server>,
    mut session: Session,
    stream: tokio::net::TcpStream,
) -> Result<(), SessionError> {
    let local = stream
        .local_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let mut conn = Conn::new(stream, session.limits());
    loop {
        let prefix = match conn.read_exact(2, &session).await {
            Err(SessionError::Closed) => return Ok(()),
            other => other?,
        };
        session.handshake_done();
        let len = usize::from(u16::from_be_bytes([
            prefix.first().copied().unwrap_or(0),
            prefix.get(1).copied().unwrap_or(0),
        ]));
        let message = match conn.read_exact(len, &session).await {
            Err(SessionError::BufferFull(max)) => {
                session.data(&prefix).await;
                return Err(SessionError::BufferFull(max));
            }
            Err(SessionError::Closed) => {
                session.data(conn.buffered()).await;
                return Ok(());
            }
            other => other?,
        };
        let (query, reply) = server.answer(&message, local, Transport::Tcp);
        match query {
            Some(extra) => session.query(&[], extra).await,
            None => session.data(&message).await,
        }
        let reply = match reply {
            Reply::Now(reply) => reply,
            Reply::Later(later) => later.await,
        };
        let Some(reply) = reply else {
            continue;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(reply.len().saturating_add(2));
        framed.extend(reply_len.to_be_bytes());
        framed.extend(reply);
        conn.write_all(&framed, &session).await?;
    }
}
