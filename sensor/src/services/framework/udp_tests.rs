//! The UDP framework over real loopback sockets, with a test-only echo protocol: events and
//! identity, the per-session event cap, the reflection budget, the per-source reply rate, the
//! table bound, the per-source gate cap, the whitelist and idle expiry; and the pure parts
//! (budget, token bucket, expiry) with injected time.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use serde_json::{Map, Value};
use tokio::{net::UdpSocket, sync::mpsc, time::Instant};
use tokio_util::task::TaskTracker;

use super::{
    Shared,
    gate::{Gate, ServiceCounters},
    udp::{self, Exchange, UdpHandler, UdpSession},
};
use crate::{
    event::{Action, Event, Service},
    net::{Cidr, SourcePrefix},
    services::ServiceLimits,
    shutdown::CancellationToken,
};

/// Echoes each datagram as a `query` event and a reply; `amp` asks for a reply ten times its
/// size, `bye` ends the pseudo-session, `quiet` gets no reply.
struct Echo {
    seen: usize,
}

impl UdpSession for Echo {
    fn handle(&mut self, datagram: &[u8], out: &mut Exchange) -> Option<Vec<u8>> {
        self.seen += 1;
        let mut extra = Map::new();
        extra.insert("n".to_owned(), Value::from(self.seen));
        out.query(datagram, extra);
        match datagram {
            b"amp" => Some(b"amp".repeat(10)),
            b"bye" => {
                out.close();
                Some(b"bye".to_vec())
            }
            b"quiet" => None,
            other => Some(other.to_vec()),
        }
    }
}

fn echo() -> UdpHandler {
    Arc::new(|| Box::new(Echo { seen: 0 }))
}

struct Running {
    addr: SocketAddr,
    events: mpsc::Receiver<Event>,
    counters: Arc<ServiceCounters>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn count(&self, name: &str) -> u64 {
        self.counters.to_json()[name].as_u64().unwrap()
    }

    /// Waits (bounded) until counter `name` reaches `at_least`.
    async fn wait_for(&self, name: &str, at_least: u64) {
        for _ in 0..500 {
            if self.count(name) >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{name} stayed at {}", self.count(name));
    }

    async fn next_event(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(5), self.events.recv())
            .await
            .unwrap()
            .unwrap()
    }

    fn no_event_pending(&mut self) -> bool {
        self.events.try_recv().is_err()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

async fn start(limits: ServiceLimits, per_source: usize, whitelist: Vec<Cidr>) -> Running {
    start_on("127.0.0.1:0", limits, per_source, whitelist).await
}

async fn start_on(
    bind: &str,
    limits: ServiceLimits,
    per_source: usize,
    whitelist: Vec<Cidr>,
) -> Running {
    let socket = udp::bind(Service::Dns, bind.parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let (sink, events) = mpsc::channel(1_000);
    let counters = Arc::new(ServiceCounters::default());
    let stop = CancellationToken::new();
    let shared = Shared {
        limits: Arc::new(limits),
        gate: Gate::new(1_000, per_source, SourcePrefix::default()),
        counters: Arc::clone(&counters),
        whitelist: Arc::new(std::sync::RwLock::new(whitelist)),
        sink: sink.into(),
        tracker: TaskTracker::new(),
        shutdown: stop.clone(),
    };
    let task = tokio::spawn(udp::serve(socket, Service::Dns, echo(), shared));
    Running {
        addr,
        events,
        counters,
        stop,
        task,
    }
}

async fn client(ip: &str) -> UdpSocket {
    UdpSocket::bind(SocketAddr::new(ip.parse().unwrap(), 0))
        .await
        .unwrap()
}

/// Sends `bytes` and returns the next datagram that comes back.
async fn ask(socket: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    socket.send_to(bytes, to).await.unwrap();
    receive(socket).await
}

async fn receive(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf.truncate(n);
    buf
}

fn limits() -> ServiceLimits {
    ServiceLimits {
        max_events_per_session: 4,
        udp_reply_factor: 1,
        udp_reply_allowance_bytes: 4,
        udp_replies_per_source_per_sec: 1_000,
        udp_max_sessions: 3,
        udp_idle_timeout_ms: 60_000,
        ..ServiceLimits::default()
    }
}

#[tokio::test]
async fn pseudo_sessions_log_cap_and_never_amplify() {
    let mut s = start(limits(), 2, Vec::new()).await;
    let a = client("127.0.0.1").await;
    let a_addr = a.local_addr().unwrap();

    assert_eq!(ask(&a, s.addr, b"hello").await, b"hello");
    let connection = s.next_event().await;
    assert_eq!(connection.action, Action::Connection);
    assert_eq!(connection.service, Service::Dns);
    assert_eq!(connection.session.src_ip, a_addr.ip());
    assert_eq!(connection.session.src_port, a_addr.port());
    assert_eq!(connection.session.dst_ip, s.addr.ip());
    assert_eq!(connection.session.dst_port, s.addr.port());
    let id = connection.extra["session_id"].clone();
    let query = s.next_event().await;
    assert_eq!(query.action, Action::Query);
    assert_eq!(&query.data[..], b"hello");
    assert_eq!(query.extra["session_id"], id);

    // 8 bytes received so far; a 30-byte answer exceeds 1 x 8 + 4 and is refused, while the
    // datagram is still logged. The next small answer (4 bytes: 5 + 4 <= 12 + 4) goes out, and
    // is the first thing that comes back.
    a.send_to(b"amp", s.addr).await.unwrap();
    assert_eq!(ask(&a, s.addr, b"ping").await, b"ping");
    assert_eq!(s.count("udp_refused_reflection"), 1);
    assert_eq!(s.count("udp_replies"), 2);
    assert_eq!(s.count("udp_datagrams"), 3);
    // Bytes: hello + amp + ping in, hello + ping out (the refused 30 bytes are not counted).
    assert_eq!(s.count("udp_bytes_received"), 12);
    assert_eq!(s.count("udp_bytes_replied"), 9);
    assert_eq!(s.count("udp_send_failed"), 0);

    // Events: connection, hello, amp, ping = the cap of 4; the last carries events_capped.
    let amp = s.next_event().await;
    assert_eq!(&amp.data[..], b"amp");
    let capped = s.next_event().await;
    assert_eq!(&capped.data[..], b"ping");
    assert_eq!(capped.extra["events_capped"], Value::Bool(true));
    assert_eq!(ask(&a, s.addr, b"more").await, b"more");
    assert!(s.no_event_pending(), "over the cap nothing is emitted");
    assert_eq!(s.count("events_suppressed"), 1);
    assert_eq!(s.count("udp_sessions"), 1);
    s.stop().await;
}

#[tokio::test]
async fn the_reflection_budget_refuses_exactly_what_exceeds_it() {
    let s = start(limits(), 2, Vec::new()).await;
    let a = client("127.0.0.1").await;
    // First datagram: 3 bytes in, budget 3 + 4 = 7, the 30-byte answer is refused.
    a.send_to(b"amp", s.addr).await.unwrap();
    // A second, echoed datagram proves the first was handled (one task, in order).
    assert_eq!(ask(&a, s.addr, b"abc").await, b"abc");
    assert_eq!(s.count("udp_refused_reflection"), 1);
    assert_eq!(s.count("udp_replies"), 1);
    // Received 3 + 3 + 24 = 30, sent 3: budget 34, and 3 + 24 fits.
    assert_eq!(ask(&a, s.addr, &[b'x'; 24]).await, vec![b'x'; 24]);
    s.stop().await;
}

#[tokio::test]
async fn replies_per_source_are_rate_limited_across_its_peers() {
    let mut l = limits();
    l.udp_replies_per_source_per_sec = 1;
    l.udp_max_sessions = 10;
    let s = start(l, 10, Vec::new()).await;
    let a1 = client("127.0.0.1").await;
    let a2 = client("127.0.0.1").await;
    let other = client("127.0.0.2").await;
    assert_eq!(ask(&a1, s.addr, b"one").await, b"one");
    // The source 127.0.0.1 has used its one reply of this second, whichever peer asks.
    a1.send_to(b"three", s.addr).await.unwrap();
    a2.send_to(b"four", s.addr).await.unwrap();
    // Another source is not affected, and its answer proves the two above were handled.
    assert_eq!(ask(&other, s.addr, b"five").await, b"five");
    assert_eq!(s.count("udp_refused_rate"), 2);
    assert_eq!(s.count("udp_replies"), 2);
    assert_eq!(s.count("udp_sessions"), 3);
    s.stop().await;
}

#[tokio::test]
async fn the_table_and_the_gate_bound_pseudo_sessions_and_idle_ones_expire() {
    let mut l = limits();
    l.udp_max_sessions = 2;
    l.udp_idle_timeout_ms = 150;
    let mut s = start(l, 1, Vec::new()).await;
    let a = client("127.0.0.1").await;
    let b = client("127.0.0.2").await;
    let c = client("127.0.0.3").await;
    let a2 = client("127.0.0.1").await;
    assert_eq!(ask(&a, s.addr, b"a").await, b"a");
    // A second peer of the same source is over the per-source cap of 1: no session, no reply.
    a2.send_to(b"a2", s.addr).await.unwrap();
    assert_eq!(ask(&b, s.addr, b"b").await, b"b");
    assert_eq!(s.count("rejected_source"), 1);
    // The table holds two pseudo-sessions: a third peer is dropped.
    c.send_to(b"c", s.addr).await.unwrap();
    assert_eq!(ask(&b, s.addr, b"b2").await, b"b2");
    assert_eq!(s.count("udp_table_full"), 1);
    assert_eq!(s.count("udp_sessions"), 2);
    for _ in 0..5 {
        let _ = s.next_event().await;
    }
    assert!(s.no_event_pending(), "a, b, b2 and two connections only");

    // Both go idle and expire; their places (table and gate) are free again.
    s.wait_for("udp_expired", 2).await;
    assert_eq!(ask(&c, s.addr, b"c").await, b"c");
    assert_eq!(ask(&a2, s.addr, b"a2").await, b"a2");
    let fresh = s.next_event().await;
    assert_eq!(fresh.action, Action::Connection);
    assert_eq!(fresh.session.src_ip, "127.0.0.3".parse::<IpAddr>().unwrap());
    assert_eq!(s.count("udp_sessions"), 4);
    s.stop().await;
}

#[tokio::test]
async fn whitelisted_sources_are_answered_but_not_reported_and_bye_ends_a_session() {
    let whitelist = vec!["127.0.0.9".parse::<Cidr>().unwrap()];
    let mut s = start(limits(), 5, whitelist).await;
    let quiet = client("127.0.0.9").await;
    assert_eq!(ask(&quiet, s.addr, b"hi").await, b"hi");
    assert_eq!(s.count("whitelisted"), 1);
    let a = client("127.0.0.1").await;
    assert_eq!(ask(&a, s.addr, b"bye").await, b"bye");
    assert_eq!(ask(&a, s.addr, b"again").await, b"again");
    let mut got = Vec::new();
    for _ in 0..4 {
        let e = s.next_event().await;
        assert_eq!(e.session.src_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        got.push((e.action, e.data.to_vec(), e.extra["session_id"].clone()));
    }
    assert!(s.no_event_pending());
    assert_eq!(got[0].0, Action::Connection);
    assert_eq!(
        (got[1].0, got[1].1.as_slice()),
        (Action::Query, &b"bye"[..])
    );
    assert_eq!(got[2].0, Action::Connection, "bye ended the first session");
    assert_ne!(got[0].2, got[2].2);
    assert_eq!(
        (got[3].0, got[3].1.as_slice()),
        (Action::Query, &b"again"[..])
    );
    assert_eq!(s.count("udp_sessions"), 3);
    assert_eq!(s.counters.udp_replies.load(Ordering::Relaxed), 3);
    s.stop().await;
}

#[tokio::test]
async fn on_a_wildcard_socket_dst_ip_is_the_address_the_client_sent_to() {
    for (wildcard, target) in [("0.0.0.0:0", "127.0.0.1"), ("[::]:0", "::1")] {
        let mut s = start_on(wildcard, limits(), 5, Vec::new()).await;
        assert!(s.addr.ip().is_unspecified());
        let to = SocketAddr::new(target.parse().unwrap(), s.addr.port());
        let c = client(target).await;
        assert_eq!(ask(&c, to, b"where").await, b"where");
        let connection = s.next_event().await;
        assert_eq!(connection.session.dst_ip, to.ip(), "{wildcard}");
        assert_eq!(connection.session.dst_port, to.port());
        assert_eq!(connection.session.src_ip, c.local_addr().unwrap().ip());
        s.stop().await;
    }
}

#[test]
fn budget_and_bucket_with_injected_time() {
    let l = ServiceLimits {
        udp_reply_factor: 2,
        udp_reply_allowance_bytes: 100,
        ..ServiceLimits::default()
    };
    assert_eq!(udp::reply_budget(&l, 0), 100);
    assert_eq!(udp::reply_budget(&l, 50), 200);
    assert_eq!(
        udp::reply_budget(&l, u64::MAX),
        u64::MAX,
        "saturates, never wraps"
    );

    let mut rates = udp::Rates::new(2, 1);
    let source = SourcePrefix::default().key("192.0.2.1".parse().unwrap());
    let other = SourcePrefix::default().key("192.0.2.2".parse().unwrap());
    let t0 = Instant::now();
    assert!(rates.take(source, t0));
    assert!(rates.take(source, t0));
    assert!(!rates.take(source, t0), "burst of one second's worth");
    assert!(!rates.take(other, t0), "the bucket table is full: refused");
    assert!(!rates.take(source, t0 + Duration::from_millis(499)));
    assert!(
        rates.take(source, t0 + Duration::from_millis(1_000)),
        "refilled"
    );
    rates.sweep(t0 + Duration::from_secs(10));
    assert!(
        rates.take(other, t0 + Duration::from_secs(10)),
        "swept, room again"
    );
}
