//! A spoofed-source UDP flood against the DNS decoy gives a bounded number of events and
//! incidents: 1,200 forged addresses (198.19.0.0/16, routed only between the two test
//! namespaces, which have no route out) ask two questions each, crafted with a raw socket in
//! the peer namespace. With `udp_flood_max_sources` 20, exactly 20 forged sources are reported
//! one by one (20 incidents); every other one is folded into `dns.flood` summaries (one shared
//! incident, from `0.0.0.0`) whose counts account for every pseudo-session and datagram the
//! sensor handled.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    thread,
    time::Duration,
};

use serde_json::{Value, json};
use tests::{frames, net::TestNet, require_root, sensor::RunningSensor};

/// `udp_flood_max_sources` of the test.
const MAX_SOURCES: u64 = 20;
/// Forged sources, asking twice each.
const SOURCES: u32 = 1_200;

/// A DNS question for `srv01.corp.local` A, class IN, recursion desired.
fn question(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["srv01", "corp", "local"] {
        q.push(u8::try_from(label.len()).expect("short label"));
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Sends two questions from each forged source with a raw socket (`IPPROTO_RAW`), about
/// 10,000 a second; returns how many were sent.
fn send(dst: Ipv4Addr) -> usize {
    // SAFETY: plain socket call; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(dst).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut sent = 0;
    for i in 1..=SOURCES {
        let [_, _, hi, lo] = i.to_be_bytes();
        let src = Ipv4Addr::new(198, 19, hi, lo);
        let port = 40_000 + u16::try_from(i).expect("fits");
        for n in 0..2u16 {
            let payload = question(n);
            let mut udp = port.to_be_bytes().to_vec();
            udp.extend_from_slice(&53u16.to_be_bytes());
            let len = u16::try_from(8 + payload.len()).expect("fits");
            udp.extend_from_slice(&len.to_be_bytes());
            udp.extend_from_slice(&[0, 0]);
            udp.extend_from_slice(&payload);
            let packet = frames::ipv4(src.octets(), dst.octets(), 17, 0, &udp);
            // SAFETY: the buffer and the address outlive the call; lengths are theirs.
            let n = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&raw const to).cast(),
                    u32::try_from(size_of::<libc::sockaddr_in>()).expect("fits"),
                )
            };
            if usize::try_from(n).ok() == Some(packet.len()) {
                sent += 1;
            }
            if sent % 50 == 49 {
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
    sent
}

fn count(stats: &Value, name: &str) -> u64 {
    stats["services"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}: {stats}"))
}

#[test]
fn a_spoofed_udp_flood_gives_bounded_events_and_incidents_with_the_counts_in_a_summary() {
    require_root!();
    let net = TestNet::new();
    // Replies to the forged range leave on the veth and go nowhere else.
    tests::net::ip(&[
        "-n",
        &net.sensor.name,
        "route",
        "add",
        "198.19.0.0/16",
        "via",
        &net.peer_ip,
    ]);
    let config = json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {"dns": [{"port": 53}]},
        "outputs": [{"transport": {"type": "terminal"}, "receive": "both"}],
        "sensor": {
            "services": {
                "udp_flood_max_sources": MAX_SOURCES,
                "udp_flood_window_secs": 2,
                "udp_idle_timeout_ms": 60_000,
                "max_connections": 4_096
            },
            "xdp": {"stats_interval_secs": 1}
        }
    })
    .to_string();
    let sensor = RunningSensor::start(&net.sensor, &config, &["--capture", "none"]);
    let sensor_ip: Ipv4Addr = net.sensor_ip.parse().expect("address");
    let sent = net.peer.run(move || send(sensor_ip));
    assert_eq!(
        sent,
        2 * SOURCES as usize,
        "every forged datagram left the peer"
    );
    // The window (2 s) closes at a sweep (every 5 s with this idle timeout): its summary.
    let summarised = sensor.wait_for_events(Duration::from_secs(20), |events| {
        events.iter().any(|e| e["logtype"] == "dns.flood")
    });
    // Every datagram the sensor read is handled by now (the window closed after the burst).
    let _ = sensor.wait_for_stats(Duration::from_secs(5), |s| {
        s["services"]["udp_datagrams"].as_u64() == Some(sent as u64)
    });
    let run = sensor.stop();
    assert!(run.clean_exit, "{:?}", run.stderr);
    assert!(summarised, "no dns.flood summary");
    let s = &run.stats;
    let forged = |e: &&Value| {
        e["src_ip"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("198.19."))
    };
    let events: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["logtype"].as_str().is_some_and(|l| l.starts_with("dns.")))
        .collect();
    let reported: BTreeSet<&str> = events
        .iter()
        .copied()
        .filter(forged)
        .filter_map(|e| e["src_ip"].as_str())
        .collect();
    let incidents: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["type"] == 2 && e["action"] == "incident_created")
        .collect();
    let forged_incidents = incidents.iter().copied().filter(forged).count() as u64;
    let summary_incidents = incidents
        .iter()
        .filter(|e| e["src_ip"] == "0.0.0.0")
        .count();
    let floods: Vec<&Value> = events
        .iter()
        .copied()
        .filter(|e| e["logtype"] == "dns.flood")
        .collect();
    let total = |key: &str| -> u64 {
        floods
            .iter()
            .map(|e| e["extra"][key].as_u64().expect("a count"))
            .sum()
    };
    eprintln!(
        "{} dns events ({} sources reported), {} summaries {:?}, {} incidents ({forged_incidents} \
         forged, {summary_incidents} summary); services {}",
        events.len(),
        reported.len(),
        floods.len(),
        floods.iter().map(|e| &e["extra"]).collect::<Vec<_>>(),
        incidents.len(),
        s["services"]
    );
    // Bounded: the first MAX_SOURCES sources one by one, one incident each, never one per
    // forged source; the summaries share one incident.
    assert_eq!(reported.len() as u64, MAX_SOURCES);
    assert_eq!(forged_incidents, MAX_SOURCES);
    assert_eq!(summary_incidents, 1);
    assert!(floods.iter().all(|e| e["src_ip"] == "0.0.0.0"));
    // Nothing lost silently: every pseudo-session is either reported or in a summary, and so
    // is every datagram handled (one `dns.query` per reported datagram).
    let handled = count(s, "udp_datagrams")
        - count(s, "udp_table_full")
        - count(s, "rejected_global")
        - count(s, "rejected_source");
    // (The kernel may drop part of the burst before the sensor reads it: the sensor's own
    // counts are the reference.)
    assert!(handled <= sent as u64, "{}", s["services"]);
    assert!(
        count(s, "udp_sessions") > 10 * MAX_SOURCES,
        "the flood reached the decoy: {}",
        s["services"]
    );
    assert_eq!(MAX_SOURCES + total("sources"), count(s, "udp_sessions"));
    let reported_queries = events
        .iter()
        .copied()
        .filter(forged)
        .filter(|e| e["logtype"] == "dns.query")
        .count() as u64;
    assert_eq!(reported_queries + total("datagrams"), handled);
    // The folded events: a connection and a query per folded datagram's pair.
    assert_eq!(
        total("events_folded"),
        total("sources") + total("datagrams")
    );
    assert!(
        floods
            .iter()
            .all(|e| e["extra"]["reported_sources"] == MAX_SOURCES)
    );
    let first = floods[0];
    assert_eq!(
        first["extra"]["top_sources"].as_array().map(Vec::len),
        Some(5)
    );
    assert_eq!(first["extra"]["sample"].as_array().map(Vec::len), Some(5));
    assert_eq!(first["extra"]["sample"][0], "198.19.0.21");
}
