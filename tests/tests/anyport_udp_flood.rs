//! A spoofed-source UDP flood against the any-port UDP decoys (the `sk_lookup` catch-all):
//! 400 forged sources (198.19.0.0/16, routed only between the test's namespaces, which have no
//! route out), one datagram each to one of 40 steered ports nothing is bound to, crafted with a
//! raw socket in the peer namespace. The first `udp_flood_max_sources` sources of the window
//! are reported one by one (`udp.connection` with their real port); every later one is folded
//! into one `udp.flood` summary whose counts add up to exactly what was sent, with the ports
//! the folded datagrams went to. A real client afterwards, in a new window, is reported again.

use std::{collections::BTreeSet, net::Ipv4Addr, time::Duration};

use serde_json::{Value, json};
use tests::{
    net::TestNet,
    require_root,
    sensor::RunningSensor,
    spoof::{self, Spoofed},
};

const LIMIT: Duration = Duration::from_secs(30);
/// `udp_flood_max_sources` of the test.
const MAX_SOURCES: u64 = 10;
/// Forged sources, one datagram each.
const SOURCES: u16 = 400;
/// Steered ports the flood spreads over (5000..5040).
const PORTS: u16 = 40;

fn of<'a>(events: &'a [Value], logtype: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["logtype"] == logtype).collect()
}

#[test]
fn a_spoofed_flood_of_the_udp_decoy_ports_folds_into_one_summary_that_counts_everything() {
    require_root!();
    let net = TestNet::new();
    net.route_forged_range("198.19.0.0/16");
    let state = std::env::temp_dir().join(format!("anyport-udp-flood-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let config = json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {"ftp": [{"port": 2121}]},
        "logger": {"output": "terminal", "format": "default", "kwargs": {}},
        "sensor": {
            "xdp": {"mode": "auto", "stats_interval_secs": 1},
            "services": {
                "state_dir": state,
                "udp_flood_max_sources": MAX_SOURCES,
                "udp_flood_window_secs": 4,
            },
            "decoys": {"enabled": true, "tcp": ["2000-2100"], "udp": ["5000-5999"]},
        }
    })
    .to_string();
    let sensor = RunningSensor::start(&net.sensor, &config, &[]);
    let sensor_ip: Ipv4Addr = net.sensor_ip.parse().expect("address");
    let flood: Vec<Spoofed> = (0..SOURCES)
        .map(|i| {
            let [hi, lo] = (i + 1).to_be_bytes();
            Spoofed {
                src: Ipv4Addr::new(198, 19, hi, lo),
                port: 40_000 + i,
                dst_port: 5000 + i % PORTS,
                payload: b"\x00\x01not a known protocol".to_vec(),
            }
        })
        .collect();
    let sent = net.peer.run(move || spoof::send_udp(&flood, sensor_ip));
    assert_eq!(sent, usize::from(SOURCES));

    let summarised = sensor.wait_for_events(LIMIT, |e| !of(e, "udp.flood").is_empty());
    // A new window: a real client is its own event again.
    let target = format!("{}:5999", net.sensor_ip);
    net.peer.run(move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.send_to(b"\x00\x01after", &target).unwrap();
    });
    let peer_ip = net.peer_ip.clone();
    let after = sensor.wait_for_events(LIMIT, |e| {
        of(e, "udp.connection")
            .iter()
            .any(|c| c["src_ip"] == peer_ip.as_str() && c["dst_port"] == 5999)
    });
    let run = sensor.stop();
    let _ = std::fs::remove_dir_all(&state);
    assert!(summarised && after, "{:#?}", run.events);

    let forged = |e: &&Value| {
        e["src_ip"]
            .as_str()
            .is_some_and(|s| s.starts_with("198.19."))
    };
    let reported: Vec<&Value> = of(&run.events, "udp.connection")
        .into_iter()
        .filter(forged)
        .collect();
    assert_eq!(reported.len() as u64, MAX_SOURCES, "{reported:#?}");
    for r in &reported {
        let port = r["dst_port"].as_u64().expect("port");
        assert!((5000..5000 + u64::from(PORTS)).contains(&port), "{r}");
    }
    let floods = of(&run.events, "udp.flood");
    assert_eq!(floods.len(), 1, "one summary for the window: {floods:#?}");
    let f = floods[0];
    assert_eq!(f["src_ip"], "0.0.0.0");
    let folded = u64::from(SOURCES) - MAX_SOURCES;
    assert_eq!(f["extra"]["sources"], folded, "{f}");
    assert_eq!(f["extra"]["datagrams"], folded, "{f}");
    assert_eq!(f["extra"]["reported_sources"], MAX_SOURCES, "{f}");
    assert_eq!(f["extra"]["ports_count"], PORTS, "{f}");
    let ports: BTreeSet<u64> = f["extra"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(
        ports,
        (5000..5032).collect::<BTreeSet<u64>>(),
        "the lowest 32"
    );
    assert!(
        run.events.iter().filter(|e| forged(e)).count() as u64 <= 2 * MAX_SOURCES,
        "a bounded number of events for the forged sources: {:#?}",
        run.events
    );
}
