//! Trapster's `target_dns`: recursive queries for names outside the zone are forwarded to one
//! upstream resolver, and its answer is relayed in this server's own words.
//!
//! Trapster relays the upstream's datagram byte for byte, so a client learns who answers
//! (`version.bind`, EDNS NSID and cookies, the upstream's flags and encoding). Here nothing of
//! the client's message reaches the upstream but the question (a fresh message: random ID,
//! RD and CD, EDNS with our payload size and the DO bit, no client option), and nothing of the
//! upstream's message reaches the client but its response code and records: the reply is a
//! new message with the client's ID and flags, this server's EDNS (its NSID), and the
//! upstream's answer, authority and additional records (never its OPT, TSIG or SIG(0)).
//! `CH` queries (`version.bind`, `hostname.bind`), zone transfers and names inside the zone
//! are always answered here.
//!
//! Bounded: at most [`MAX_IN_FLIGHT`] queries wait upstream at once and at most `forward_rate`
//! a second start (a spoofed flood cannot turn the decoy into a flood of the upstream); a query
//! over either bound, or one the upstream does not answer within [`TIMEOUT`], gets SERVFAIL
//! as from a resolver whose upstream is unreachable. A truncated upstream answer is asked
//! again over TCP. A query that is one of this forwarder's own (its ID and question are those
//! of a query waiting upstream) is never forwarded again, so a `target_dns` that points back
//! at this decoy cannot loop.
//!
//! Hand-written rather than a resolver crate: one question to one upstream, with the message
//! rewritten on both sides, is smaller than configuring `hickory-resolver` not to cache,
//! retry elsewhere or validate.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use serde::Deserialize;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

/// Queries waiting upstream at once, per instance.
pub const MAX_IN_FLIGHT: usize = 128;
/// How long the upstream has to answer (UDP, then TCP when truncated, together).
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Queries forwarded per second when `forward_rate` is not set.
pub const DEFAULT_RATE: u32 = 100;
/// The UDP payload size offered upstream.
const UPSTREAM_PAYLOAD: u16 = 1_232;

/// Where queries go: Trapster's `target_dns`, an address with an optional port (`10.0.0.1`,
/// `10.0.0.1:5353`, `[fd00::1]:53`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream(pub SocketAddr);

impl FromStr for Upstream {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self(SocketAddr::new(ip, 53)));
        }
        text.parse::<SocketAddr>().map(Self).map_err(|_| {
            format!(
                "`{text}` is not an IP address with an optional port (`10.0.0.1`, `10.0.0.1:53`)"
            )
        })
    }
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a query was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// [`MAX_IN_FLIGHT`] queries already wait.
    InFlight,
    /// This second's `forward_rate` is spent.
    Rate,
}

/// One instance's forwarder.
#[derive(Debug)]
pub struct Forwarder {
    upstream: SocketAddr,
    per_sec: u32,
    in_flight: Arc<Semaphore>,
    window: Mutex<(Instant, u32)>,
    waiting: Mutex<HashSet<Key>>,
}

/// A query waiting upstream: its ID, name (lower case) and type.
type Key = (u16, String, u16);

fn key(id: u16, question: &Query) -> Key {
    (
        id,
        question.name().to_lowercase().to_ascii(),
        u16::from(question.query_type()),
    )
}

/// The right to forward one query.
#[derive(Debug)]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
}

impl Forwarder {
    /// A forwarder to `upstream` starting at most `per_sec` queries a second.
    #[must_use]
    pub fn new(upstream: Upstream, per_sec: u32) -> Self {
        Self {
            upstream: upstream.0,
            per_sec,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            window: Mutex::new((Instant::now(), 0)),
            waiting: Mutex::new(HashSet::new()),
        }
    }

    /// The upstream's address.
    #[must_use]
    pub const fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Whether `request` is one of this forwarder's own queries coming back (the upstream is
    /// this decoy): then it must not be forwarded again.
    #[must_use]
    pub fn is_own(&self, request: &Message) -> bool {
        let [question] = request.queries.as_slice() else {
            return false;
        };
        self.waiting
            .lock()
            .is_ok_and(|w| w.contains(&key(request.metadata.id, question)))
    }

    /// Takes a slot for one query, or says why there is none.
    ///
    /// # Errors
    /// [`Busy`] when the rate or the in-flight bound is reached.
    pub fn admit(&self) -> Result<Permit, Busy> {
        let permit = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| Busy::InFlight)?;
        let now = Instant::now();
        let mut window = self.window.lock().map_err(|_| Busy::Rate)?;
        if now.saturating_duration_since(window.0) >= Duration::from_secs(1) {
            *window = (now, 0);
        }
        if window.1 >= self.per_sec {
            return Err(Busy::Rate);
        }
        window.1 = window.1.saturating_add(1);
        Ok(Permit { _slot: permit })
    }

    /// Asks the upstream `question` (recursion desired; `checking_disabled` and `dnssec_ok` as
    /// the client asked); its response, or `None` when it gave none that matches in time.
    pub async fn ask(
        &self,
        _permit: Permit,
        question: &Query,
        checking_disabled: bool,
        dnssec_ok: bool,
    ) -> Option<Message> {
        let id: u16 = rand::random();
        let mut message = Message::query();
        message.metadata.id = id;
        message.metadata.op_code = OpCode::Query;
        message.metadata.recursion_desired = true;
        message.metadata.checking_disabled = checking_disabled;
        message.add_query(question.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(UPSTREAM_PAYLOAD);
        edns.set_dnssec_ok(dnssec_ok);
        message.set_edns(edns);
        let bytes = message.to_vec().ok()?;
        let _waiting = Waiting::new(&self.waiting, key(id, question));
        let deadline = Instant::now().checked_add(TIMEOUT)?;
        let answer = tokio::time::timeout_at(deadline, self.over_udp(&bytes, id, question))
            .await
            .ok()
            .flatten()?;
        if !answer.metadata.truncation {
            return Some(answer);
        }
        tokio::time::timeout_at(deadline, self.over_tcp(&bytes, id, question))
            .await
            .ok()
            .flatten()
            .or(Some(answer))
    }

    async fn over_udp(&self, bytes: &[u8], id: u16, question: &Query) -> Option<Message> {
        let any = match self.upstream {
            SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        };
        let socket = UdpSocket::bind(any).await.ok()?;
        socket.connect(self.upstream).await.ok()?;
        socket.send(bytes).await.ok()?;
        let mut buf = vec![0u8; 65_535];
        // Datagrams that are not the answer (a late one, a spoofed one) are skipped; the
        // caller's deadline bounds the loop.
        loop {
            let n = socket.recv(&mut buf).await.ok()?;
            if let Some(answer) = buf.get(..n).and_then(|b| matching(b, id, question)) {
                return Some(answer);
            }
        }
    }

    async fn over_tcp(&self, bytes: &[u8], id: u16, question: &Query) -> Option<Message> {
        let mut stream = TcpStream::connect(self.upstream).await.ok()?;
        let len = u16::try_from(bytes.len()).ok()?;
        let mut framed = Vec::with_capacity(bytes.len().saturating_add(2));
        framed.extend(len.to_be_bytes());
        framed.extend_from_slice(bytes);
        stream.write_all(&framed).await.ok()?;
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await.ok()?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut answer).await.ok()?;
        matching(&answer, id, question)
    }
}

/// A query's entry in the waiting set, for as long as it waits.
struct Waiting<'a> {
    set: &'a Mutex<HashSet<Key>>,
    key: Key,
}

impl<'a> Waiting<'a> {
    fn new(set: &'a Mutex<HashSet<Key>>, key: Key) -> Self {
        if let Ok(mut s) = set.lock() {
            s.insert(key.clone());
        }
        Self { set, key }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.key);
        }
    }
}

/// `bytes` parsed, if it is the response to our query `id` for `question`.
fn matching(bytes: &[u8], id: u16, question: &Query) -> Option<Message> {
    let message = Message::from_vec(bytes).ok()?;
    let same_question = match message.queries.as_slice() {
        [asked] => {
            asked.name() == question.name()
                && asked.query_type() == question.query_type()
                && asked.query_class() == question.query_class()
        }
        _ => false,
    };
    (message.metadata.id == id
        && message.metadata.message_type == MessageType::Response
        && same_question)
        .then_some(message)
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::RecordType;

    use super::*;

    #[test]
    fn upstreams_parse_with_and_without_a_port() {
        assert_eq!(
            "10.0.0.1".parse::<Upstream>().unwrap().0,
            "10.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            "127.0.0.1:5353".parse::<Upstream>().unwrap().0,
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            "[fd00::1]:53".parse::<Upstream>().unwrap().0,
            "[fd00::1]:53".parse().unwrap()
        );
        assert_eq!(
            "fd00::1".parse::<Upstream>().unwrap().0,
            "[fd00::1]:53".parse().unwrap()
        );
        let err = "dns.example".parse::<Upstream>().unwrap_err();
        assert!(err.contains("`dns.example` is not an IP address"), "{err}");
    }

    #[tokio::test]
    async fn its_own_queries_are_recognised_while_they_wait() {
        // An upstream that never answers: the query waits until the timeout.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let f = Arc::new(Forwarder::new(Upstream(silent.local_addr().unwrap()), 10));
        let question = Query::query("www.example.org.".parse().unwrap(), RecordType::A);
        let asking = {
            let (f, q) = (Arc::clone(&f), question.clone());
            tokio::spawn(async move { f.ask(f.admit().unwrap(), &q, false, false).await })
        };
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), silent.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let sent = Message::from_vec(&buf[..n]).unwrap();
        assert!(f.is_own(&sent));
        let mut other = sent.clone();
        other.metadata.id = sent.metadata.id.wrapping_add(1);
        assert!(!f.is_own(&other));
        asking.abort();
        let _ = asking.await;
        assert!(!f.is_own(&sent));
    }

    #[tokio::test]
    async fn the_rate_and_the_in_flight_bound_hold() {
        let f = Forwarder::new("127.0.0.1".parse().unwrap(), 3);
        let held: Vec<Permit> = (0..3).map(|_| f.admit().unwrap()).collect();
        assert_eq!(f.admit().unwrap_err(), Busy::Rate);
        drop(held);
        let g = Forwarder::new("127.0.0.1".parse().unwrap(), u32::MAX);
        let held: Vec<Permit> = (0..MAX_IN_FLIGHT).map(|_| g.admit().unwrap()).collect();
        assert_eq!(g.admit().unwrap_err(), Busy::InFlight);
        drop(held);
        assert!(g.admit().is_ok());
    }
}
