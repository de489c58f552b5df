//! The hand-off without the kernel program: connections made straight to the catch-all
//! listener on loopback take the same path as steered ones.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::mpsc,
};

use super::{
    Detected, Dispatch, parse_table,
    sniff::{Peeked, Sniffed},
};
use crate::{
    event::{Action, Event, Service},
    services::{ServiceLimits, Services, ServicesPlan, ServicesSection, framework::tcp, start},
    shutdown::CancellationToken,
};

const LIMIT: Duration = Duration::from_secs(20);

fn plan(decoys: Value) -> ServicesPlan {
    ServicesPlan {
        interface: "lo".to_owned(),
        limits: ServiceLimits {
            // Nothing can be kept: SSH and HTTPS (host key, certificate) are left out, which
            // also keeps the test from generating keys.
            state_dir: "/dev/null/state".into(),
            ephemeral_ports: true,
            ..ServiceLimits::default()
        },
        services: ServicesSection::from_map(BTreeMap::new()),
        decoys: serde_json::from_value(decoys).unwrap(),
        ..ServicesPlan::default()
    }
}

async fn started(decoys: Value) -> (Services, mpsc::Receiver<Event>, std::net::SocketAddr) {
    let (sink, events) = mpsc::channel(64);
    let services = start(&plan(decoys), sink, &CancellationToken::new())
        .await
        .unwrap();
    let sockets = services.decoys().expect("decoys enabled");
    let addr = sockets.addresses[0];
    assert!(addr.is_ipv4() && addr.ip().is_loopback(), "{addr}");
    (services, events, addr)
}

/// Events until one of `service`.`action` (at most `LIMIT`).
async fn until(events: &mut mpsc::Receiver<Event>, service: Service, action: Action) -> Vec<Event> {
    let mut got = Vec::new();
    let wait = async {
        while let Some(event) = events.recv().await {
            let done = event.service == service && event.action == action;
            got.push(event);
            if done {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LIMIT, wait).await;
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_request_is_sniffed_and_served_by_the_http_decoy() {
    let (services, mut events, addr) = started(json!({
        "enabled": true, "tcp": ["1-65535"], "banner": "ftp", "sniff_timeout_ms": 5000
    }))
    .await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let request = b"GET / HTTP/1.0\r\nHost: decoy\r\n\r\n";
    client.write_all(request).await.unwrap();
    let mut reply = [0_u8; 7];
    tokio::time::timeout(LIMIT, client.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply, b"HTTP/1.", "an HTTP response");
    let got = until(&mut events, Service::Http, Action::Query).await;
    let first = &got[0];
    assert_eq!(
        (first.service, first.action),
        (Service::Tcp, Action::Connection)
    );
    assert_eq!(first.extra["service"], "http");
    assert_eq!(first.extra["detected"], "sniff");
    assert_eq!(
        &first.data[..],
        &request[..],
        "the bytes seen, still read by http"
    );
    assert_eq!(first.session.dst_port, addr.port());
    let second = &got[1];
    assert_eq!(
        (second.service, second.action),
        (Service::Http, Action::Connection)
    );
    assert_eq!(
        second.session, first.session,
        "same identity, from the socket"
    );
    let query = got.last().unwrap();
    assert_eq!(
        (query.service, query.action),
        (Service::Http, Action::Query)
    );
    assert_eq!(query.extra["method"], "GET");
    assert_eq!(query.extra["target"], "/");
    let counters = services.counters().to_json();
    assert_eq!(counters["decoy_connections"], 1);
    assert_eq!(counters["decoys_unclaimed"], 0);
    services.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_client_gets_the_banner_service() {
    let (services, mut events, addr) = started(json!({
        "enabled": true, "tcp": ["1-65535"], "banner": "ftp", "sniff_timeout_ms": 100
    }))
    .await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut banner = [0_u8; 3];
    tokio::time::timeout(LIMIT, client.read_exact(&mut banner))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&banner, b"220", "the FTP greeting");
    let got = until(&mut events, Service::Ftp, Action::Connection).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].service, Service::Tcp);
    assert_eq!(got[0].extra["service"], "ftp");
    assert_eq!(got[0].extra["detected"], "banner");
    assert!(got[0].data.is_empty());
    assert_eq!(got[1].service, Service::Ftp);
    services.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_bytes_are_a_connection_event_and_the_connection_is_closed() {
    let (services, mut events, addr) = started(json!({
        "enabled": true, "tcp": ["1-65535"], "banner": "ftp", "sniff_timeout_ms": 5000
    }))
    .await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(b"\x01\x02hello").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(LIMIT, client.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "closed (FIN) without a reply: {read:?} {rest:?}"
    );
    let got = until(&mut events, Service::Tcp, Action::Connection).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].extra["service"], Value::Null);
    assert_eq!(got[0].extra["detected"], "none");
    assert_eq!(&got[0].data[..], b"\x01\x02hello");
    assert_eq!(services.counters().to_json()["decoys_unclaimed"], 1);
    services.stop(Duration::from_secs(1)).await;
}

#[test]
fn the_port_map_wins_then_the_bytes_then_the_banner() {
    let noop: tcp::Handler = Arc::new(|_session, _stream| Box::pin(async { Ok(()) }));
    let limits = Arc::new(ServiceLimits::default());
    let dispatch = Dispatch {
        handlers: [
            (
                "ssh",
                (Service::Ssh, Arc::clone(&noop), Arc::clone(&limits)),
            ),
            (
                "http",
                (Service::Http, Arc::clone(&noop), Arc::clone(&limits)),
            ),
            ("ftp", (Service::Ftp, noop, limits)),
        ]
        .into_iter()
        .collect(),
        ports: [(2200, "ssh"), (9443, "https")].into_iter().collect(),
        udp_handlers: BTreeMap::new(),
        udp_ports: BTreeMap::new(),
        banner: Some("ftp"),
        sniff_timeout: Duration::from_millis(100),
        ttl: None,
    };
    let peeked = |sniffed, bytes: &[u8], closed| Peeked {
        sniffed,
        bytes: bytes.to_vec(),
        closed,
    };
    assert!(dispatch.mapped(2200));
    assert_eq!(dispatch.choose(2200, None), (Some("ssh"), Detected::Port));
    // Mapped, but no handler could be built for it.
    assert_eq!(dispatch.choose(9443, None), (None, Detected::None));
    let http = peeked(Sniffed::Service("http"), b"GET ", false);
    assert_eq!(
        dispatch.choose(80, Some(&http)),
        (Some("http"), Detected::Sniff)
    );
    let rdp = peeked(Sniffed::Service("rdp"), b"\x03\x00", false);
    assert_eq!(dispatch.choose(3389, Some(&rdp)), (None, Detected::None));
    let silent = peeked(Sniffed::NeedMore, b"", false);
    assert_eq!(
        dispatch.choose(1, Some(&silent)),
        (Some("ftp"), Detected::Banner)
    );
    let gone = peeked(Sniffed::NeedMore, b"", true);
    assert_eq!(dispatch.choose(1, Some(&gone)), (None, Detected::None));
    let unknown = peeked(Sniffed::Unknown, b"xx", false);
    assert_eq!(dispatch.choose(1, Some(&unknown)), (None, Detected::None));
    let no_banner = Dispatch {
        banner: None,
        ..dispatch
    };
    assert_eq!(no_banner.choose(1, Some(&silent)), (None, Detected::None));
}

#[test]
fn listening_ports_are_read_from_the_proc_table() {
    let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0101A8C0:D431 0201A8C0:0016 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
   3: 00000000000000000000000000000000:0CEA 00000000000000000000000000000000:0000 0A 0 0 0 0 0 0 0 0
   4: garbage
";
    assert_eq!(parse_table(table, "0A"), [22, 8080, 3306]);
    assert_eq!(parse_table("", "0A"), Vec::<u16>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_listeners_and_follows_the_new_handlers_and_ports() {
    let decoys = json!({
        "enabled": true, "tcp": ["2000-2999"], "banner": "ftp", "sniff_timeout_ms": 100
    });
    let (mut services, mut events, addr) = started(decoys).await;
    steered_exactly(&services.decoys().unwrap().ports, 2000..=2999);
    // Another banner service and range: same listener, new handlers and steered ports.
    let mut next = plan(json!({
        "enabled": true, "tcp": ["3000-3009"], "banner": "telnet", "sniff_timeout_ms": 100
    }));
    services
        .reload(&next, Duration::from_secs(1))
        .await
        .unwrap();
    let sockets = services.decoys().unwrap();
    assert_eq!(sockets.addresses[0], addr, "the listener is kept");
    steered_exactly(&sockets.ports, 3000..=3009);
    let mut client = TcpStream::connect(addr).await.unwrap();
    let got = until(&mut events, Service::Telnet, Action::Connection).await;
    assert_eq!(got[0].service, Service::Tcp);
    assert_eq!(got[0].extra["service"], "telnet");
    assert_eq!(got[0].extra["detected"], "banner");
    assert_eq!(got.last().unwrap().service, Service::Telnet);
    drop(client.shutdown().await);
    // Decoys off: the catch-all stops.
    next.decoys = serde_json::from_value(json!({})).unwrap();
    services
        .reload(&next, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(services.decoys().is_none());
    services.stop(Duration::from_secs(1)).await;
}

/// `ports` are the ports of `range` that nothing on this (shared) host listens on.
fn steered_exactly(ports: &[u16], range: std::ops::RangeInclusive<u16>) {
    let listening = super::listening_ports();
    for port in range.clone() {
        let steered = ports.contains(&port);
        let listened = listening.contains(&port);
        assert!(
            steered != listened,
            "port {port}: steered {steered}, listened on {listened}"
        );
    }
    assert!(ports.iter().all(|p| range.contains(p)), "{ports:?}");
}
