//! The zone the server is authoritative for, and how one query is answered.
//!
//! - `IN` names inside the zone: the matching records (authoritative); a name that exists
//!   without the type: NOERROR and the SOA (NODATA); a name that does not exist: NXDOMAIN and
//!   the SOA. Empty non-terminals (`_tcp.corp.local`) exist.
//! - the reverse name of the host's address: its PTR, wherever the query came from.
//! - any other `IN` name: REFUSED, recursion not available (BIND with `recursion no`); with
//!   `target_dns`, a recursive query for it is forwarded (see [`super::forward`]) and every
//!   answer says recursion is available.
//! - `CH TXT version.bind`/`version.server`: the configured version; `hostname.bind`/`id.server`:
//!   the configured server id. EDNS NSID (RFC 5001) is answered with the same id.
//! - AXFR/IXFR: over TCP the whole zone (SOA first and last) when transfers are allowed,
//!   otherwise REFUSED; over UDP always REFUSED (transfers need TCP).
//! - anything but a standard query: NOTIMP; responses (QR set) are never answered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, ResponseCode},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{
            A, AAAA, TXT,
            opt::{EdnsCode, EdnsOption, NSIDPayload},
        },
    },
};

/// Largest UDP answer without EDNS (RFC 1035 4.2.1).
const CLASSIC_UDP: usize = 512;
/// Largest UDP answer with EDNS, whatever the client offers (DNS flag day 2020).
const EDNS_UDP: u16 = 1_232;

/// How a query reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram.
    Udp,
    /// A TCP connection.
    Tcp,
}

impl Transport {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// The configured zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The zone's apex (`corp.local.`).
    pub origin: Name,
    /// The server's own name (`srv01.corp.local.`).
    pub host: Name,
    /// The host's IPv4 address; `None`: the address the query was sent to.
    pub address: Option<Ipv4Addr>,
    /// The host's IPv6 address; `None`: the address the query was sent to, if IPv6.
    pub address6: Option<Ipv6Addr>,
    /// TTL of the host's records.
    pub ttl: u32,
    /// SOA first, then every other record but the host's addresses.
    pub records: Vec<Record>,
    /// `version.bind`.
    pub version: String,
    /// `hostname.bind`, `id.server`, NSID.
    pub server_id: String,
    /// Whether AXFR/IXFR over TCP get the zone.
    pub allow_transfer: bool,
    /// Whether recursion is offered (a forwarder is configured).
    pub recursion: bool,
}

/// What one query produced: its `dns.query` fields and the reply.
#[derive(Debug)]
pub struct Outcome {
    /// `extra` of the `dns.query` event; `None` when the message was not a query (logged as
    /// `dns.data`).
    pub query: Option<serde_json::Map<String, serde_json::Value>>,
    /// The reply's bytes, if any.
    pub reply: Option<Vec<u8>>,
    /// The query to forward instead of replying, when forwarding was allowed and the question
    /// is one to forward.
    pub forward: Option<Forward>,
}

/// A recursive query to forward upstream; [`Zone::relay`] makes the client's reply.
#[derive(Debug, Clone)]
pub struct Forward {
    request: Message,
    /// The question.
    pub query: hickory_proto::op::Query,
    transport: Transport,
}

impl Forward {
    /// Whether the client asked not to validate (CD).
    #[must_use]
    pub const fn checking_disabled(&self) -> bool {
        self.request.metadata.checking_disabled
    }

    /// Whether the client asked for DNSSEC records (EDNS DO).
    #[must_use]
    pub fn dnssec_ok(&self) -> bool {
        self.request
            .edns
            .as_ref()
            .is_some_and(|e| e.flags().dnssec_ok)
    }
}

impl Zone {
    /// Every record of the zone for a query that reached `local`.
    fn all(&self, local: IpAddr) -> Vec<Record> {
        let mut all = self.records.clone();
        for name in [&self.host, &self.origin] {
            if let Some(v4) = self.address.or(match local {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(v6) => v6.to_ipv4_mapped(),
            }) {
                all.push(Record::from_rdata(name.clone(), self.ttl, RData::A(A(v4))));
            }
            if let Some(v6) = self.address6.or(match local {
                IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => Some(v6),
                _ => None,
            }) {
                all.push(Record::from_rdata(
                    name.clone(),
                    self.ttl,
                    RData::AAAA(AAAA(v6)),
                ));
            }
        }
        all
    }

    fn soa(&self) -> Option<Record> {
        self.records
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
            .cloned()
    }

    /// The PTR for the host's address, if `name` is its reverse name.
    fn reverse(&self, name: &Name, local: IpAddr) -> Option<Record> {
        let net = name.parse_arpa_name().ok()?;
        let full = match net.addr() {
            IpAddr::V4(_) => net.prefix_len() == 32,
            IpAddr::V6(_) => net.prefix_len() == 128,
        };
        let ours = self.all(local).into_iter().any(|r| match &r.data {
            RData::A(a) => IpAddr::V4(a.0) == net.addr(),
            RData::AAAA(a) => IpAddr::V6(a.0) == net.addr(),
            _ => false,
        });
        (full && ours).then(|| {
            Record::from_rdata(
                name.clone(),
                self.ttl,
                RData::PTR(hickory_proto::rr::rdata::PTR(self.host.clone())),
            )
        })
    }

    /// Answers one message that reached `local` over `transport`, never forwarding.
    #[must_use]
    pub fn answer(&self, bytes: &[u8], local: IpAddr, transport: Transport) -> Outcome {
        self.answer_or_forward(bytes, local, transport, &|_| false)
    }

    /// Answers one message that reached `local` over `transport`; when `may_forward` says so
    /// of the request, a recursive `IN` query for a name outside the zone comes back as
    /// [`Outcome::forward`] (no reply yet, `forwarded: true` in the event).
    #[must_use]
    pub fn answer_or_forward(
        &self,
        bytes: &[u8],
        local: IpAddr,
        transport: Transport,
        may_forward: &dyn Fn(&Message) -> bool,
    ) -> Outcome {
        let Ok(request) = Message::from_vec(bytes) else {
            return Outcome {
                query: None,
                reply: format_error(bytes),
                forward: None,
            };
        };
        if request.metadata.message_type != MessageType::Query {
            return Outcome {
                query: None,
                reply: None,
                forward: None,
            };
        }
        let mut response = self.response_to(&request);
        let mut extra = serde_json::Map::new();
        let query = match request.queries.as_slice() {
            [query] if request.metadata.op_code == OpCode::Query => query.clone(),
            _ => {
                response.metadata.response_code = if request.metadata.op_code == OpCode::Query {
                    ResponseCode::FormErr
                } else {
                    ResponseCode::NotImp
                };
                extra.insert("opcode".into(), u8::from(request.metadata.op_code).into());
                extra.insert("questions".into(), request.queries.len().into());
                return self.finish(&request, response, extra, transport);
            }
        };
        response.add_query(query.clone());
        let name = query.name();
        let mut qname = name.to_ascii();
        if qname.len() > 1 {
            qname = qname.trim_end_matches('.').to_owned();
        }
        extra.insert("qname".into(), qname.into());
        extra.insert("qtype".into(), query.query_type().to_string().into());
        extra.insert("qclass".into(), query.query_class().to_string().into());
        if self.recursion && self.forwardable(&request, &query, local) && may_forward(&request) {
            extra.insert("transport".into(), transport.as_str().into());
            extra.insert("recursion_desired".into(), true.into());
            extra.insert("forwarded".into(), true.into());
            return Outcome {
                query: Some(extra),
                reply: None,
                forward: Some(Forward {
                    request,
                    query,
                    transport,
                }),
            };
        }
        let code = self.resolve(&query, &mut response, local, transport);
        response.metadata.response_code = code;
        self.finish(&request, response, extra, transport)
    }

    /// The response header for `request`: its ID, opcode, RD and CD, recursion available
    /// when offered, and this server's EDNS (with its NSID when asked) when the client sent
    /// EDNS.
    fn response_to(&self, request: &Message) -> Message {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.checking_disabled = request.metadata.checking_disabled;
        response.metadata.recursion_available = self.recursion;
        if let Some(edns) = &request.edns {
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_UDP);
            if edns.option(EdnsCode::NSID).is_some()
                && let Ok(payload) = NSIDPayload::new(self.server_id.as_bytes().to_vec())
            {
                ours.options_mut().insert(EdnsOption::NSID(payload));
            }
            response.set_edns(ours);
        }
        response
    }

    /// Whether `query` is one to forward: a recursive `IN` question outside the zone that is
    /// not the host's own reverse name nor a transfer.
    fn forwardable(
        &self,
        request: &Message,
        query: &hickory_proto::op::Query,
        local: IpAddr,
    ) -> bool {
        request.metadata.recursion_desired
            && query.query_class() == DNSClass::IN
            && !matches!(
                query.query_type(),
                RecordType::AXFR | RecordType::IXFR | RecordType::OPT
            )
            && !self.origin.zone_of(query.name())
            && self.reverse(query.name(), local).is_none()
    }

    /// The client's reply to a forwarded query: the upstream's response code and records
    /// (never its OPT, TSIG or SIG(0)) in this server's message; SERVFAIL without an upstream
    /// answer.
    #[must_use]
    pub fn relay(&self, forward: &Forward, upstream: Option<&Message>) -> Option<Vec<u8>> {
        let request = &forward.request;
        let mut response = self.response_to(request);
        response.add_query(forward.query.clone());
        match upstream {
            Some(upstream) => {
                let ours = |r: &&Record| {
                    !matches!(
                        r.record_type(),
                        RecordType::OPT | RecordType::TSIG | RecordType::SIG
                    )
                };
                response.metadata.response_code = upstream.metadata.response_code;
                response.metadata.authentic_data = upstream.metadata.authentic_data
                    && (request.metadata.authentic_data || forward.dnssec_ok());
                response.add_answers(upstream.answers.iter().filter(ours).cloned());
                response.add_authorities(upstream.authorities.iter().filter(ours).cloned());
                response.add_additionals(upstream.additionals.iter().filter(ours).cloned());
            }
            None => response.metadata.response_code = ResponseCode::ServFail,
        }
        encode(request, &response, forward.transport).0
    }

    fn finish(
        &self,
        request: &Message,
        response: Message,
        mut extra: serde_json::Map<String, serde_json::Value>,
        transport: Transport,
    ) -> Outcome {
        let _ = self;
        extra.insert("transport".into(), transport.as_str().into());
        extra.insert(
            "rcode".into(),
            rcode(response.metadata.response_code).into(),
        );
        extra.insert(
            "recursion_desired".into(),
            request.metadata.recursion_desired.into(),
        );
        let (reply, truncated) = encode(request, &response, transport);
        if truncated {
            extra.insert("truncated".into(), true.into());
        }
        Outcome {
            query: Some(extra),
            reply,
            forward: None,
        }
    }

    /// Fills `response` for `query`; returns its code.
    fn resolve(
        &self,
        query: &hickory_proto::op::Query,
        response: &mut Message,
        local: IpAddr,
        transport: Transport,
    ) -> ResponseCode {
        let name = query.name();
        let qtype = query.query_type();
        if query.query_class() == DNSClass::CH {
            let lower = name.to_lowercase().to_ascii();
            let text = match lower.trim_end_matches('.') {
                "version.bind" | "version.server" => &self.version,
                "hostname.bind" | "id.server" => &self.server_id,
                _ => return ResponseCode::Refused,
            };
            if matches!(qtype, RecordType::TXT | RecordType::ANY) {
                let mut record =
                    Record::from_rdata(name.clone(), 0, RData::TXT(TXT::new(vec![text.clone()])));
                record.dns_class = DNSClass::CH;
                response.add_answer(record);
            }
            response.metadata.authoritative = true;
            return ResponseCode::NoError;
        }
        if query.query_class() != DNSClass::IN && query.query_class() != DNSClass::ANY {
            return ResponseCode::Refused;
        }
        if let Some(ptr) = self.reverse(name, local)
            && matches!(qtype, RecordType::PTR | RecordType::ANY)
        {
            response.metadata.authoritative = true;
            response.add_answer(ptr);
            return ResponseCode::NoError;
        }
        if !self.origin.zone_of(name) {
            // Not ours, and no recursion: BIND's `recursion no`.
            return ResponseCode::Refused;
        }
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            if transport == Transport::Udp || !self.allow_transfer || *name != self.origin {
                return ResponseCode::Refused;
            }
            let all = self.all(local);
            let soa = self.soa();
            response.metadata.authoritative = true;
            response.add_answers(soa.clone());
            response.add_answers(
                all.into_iter()
                    .filter(|r| r.record_type() != RecordType::SOA),
            );
            response.add_answers(soa);
            return ResponseCode::NoError;
        }
        response.metadata.authoritative = true;
        let all = self.all(local);
        let matching: Vec<Record> = all
            .iter()
            .filter(|r| r.name == *name && (qtype == RecordType::ANY || r.record_type() == qtype))
            .cloned()
            .collect();
        if !matching.is_empty() {
            if qtype == RecordType::NS {
                let glue: Vec<Record> = all
                    .iter()
                    .filter(|r| {
                        r.name == self.host
                            && matches!(r.record_type(), RecordType::A | RecordType::AAAA)
                    })
                    .cloned()
                    .collect();
                response.add_additionals(glue);
            }
            response.add_answers(matching);
            return ResponseCode::NoError;
        }
        // A CNAME at the name answers every type.
        if let Some(cname) = all
            .iter()
            .find(|r| r.name == *name && r.record_type() == RecordType::CNAME)
        {
            response.add_answer(cname.clone());
            return ResponseCode::NoError;
        }
        response.add_authorities(self.soa());
        if all.iter().any(|r| name.zone_of(&r.name)) {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        }
    }
}

/// `response` as bytes within what `transport` and the client allow; whether it had to be
/// truncated (TC set, question only, so the client retries over TCP).
fn encode(request: &Message, response: &Message, transport: Transport) -> (Option<Vec<u8>>, bool) {
    let limit = match (&request.edns, transport) {
        (_, Transport::Tcp) => usize::from(u16::MAX),
        (Some(edns), Transport::Udp) => usize::from(edns.max_payload().clamp(512, EDNS_UDP)),
        (None, Transport::Udp) => CLASSIC_UDP,
    };
    let Ok(bytes) = response.to_vec() else {
        return (None, false);
    };
    if bytes.len() <= limit {
        return (Some(bytes), false);
    }
    let mut cut = response.truncate();
    cut.metadata.id = request.metadata.id;
    cut.metadata.message_type = MessageType::Response;
    (cut.to_vec().ok(), true)
}

/// A response code as `dig` prints it.
fn rcode(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        other => u16::from(other).to_string(),
    }
}

/// FORMERR for a message that does not parse, when its header can be read and is a query
/// (never for responses, so two servers cannot ping-pong errors).
fn format_error(bytes: &[u8]) -> Option<Vec<u8>> {
    let header = bytes.get(..4)?;
    let (id_hi, id_lo, flags) = (*header.first()?, *header.get(1)?, *header.get(2)?);
    if flags & 0x80 != 0 {
        return None;
    }
    let op_code = OpCode::from_u8((flags >> 3) & 0x0f);
    let mut response = Message::error_msg(
        u16::from_be_bytes([id_hi, id_lo]),
        op_code,
        ResponseCode::FormErr,
    );
    response.metadata.recursion_desired = flags & 0x01 != 0;
    response.to_vec().ok()
}
