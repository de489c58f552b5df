//! A spoofed-source UDP flood against the DNS decoy: 12,300 queries from 4,001 forged
//! addresses (198.19.0.0/16, routed only between the two test namespaces, which have no route
//! out), crafted with a raw socket in the peer namespace, while a packet socket there captures
//! every reply the sensor sends back. The sensor must stay inside its bounds: peak memory
//! under [`RSS_CAP_MIB`], never more reply bytes to a source than `udp_reply_factor` times
//! what that source sent (from the capture, per source, and from the sensor's own byte
//! counters), one source's burst cut by its reply rate, the pseudo-session table capped, and
//! every `udp_*` counter accounted for: each datagram the kernel delivered (the namespace's
//! `Udp: InDatagrams`) is counted once, and ends dropped (table full, gate) or handled with
//! exactly one reply outcome (sent, refused for reflection, refused for rate, send failed);
//! the capture sees exactly the replies and bytes the counters say were sent.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{
    net::TestNet,
    require_root,
    sensor::RunningSensor,
    spoof::{self, Spoofed},
};

/// `udp_reply_factor` of the test (and no allowance: the bound is exactly the factor).
const FACTOR: u64 = 2;
/// `udp_max_sessions` of the test.
const MAX_SESSIONS: u64 = 1_024;
/// Forged sources asking three times each.
const SOURCES: u32 = 4_000;
/// Queries of the one source that bursts (sent first, so it gets a pseudo-session).
const BURST: u32 = 300;
/// Peak resident memory allowed to the sensor, MiB.
const RSS_CAP_MIB: u64 = 96;

/// A DNS question (`qtype` 1 = A, 255 = ANY), class IN, recursion desired.
fn question(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(u8::try_from(label.len()).expect("short label"));
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// The flood: the bursting source first, then every forged source three times in a row
/// (one source in four asks `ANY corp.local`, an answer several times its question).
fn flood() -> Vec<Spoofed> {
    let mut out = Vec::new();
    let burst = Ipv4Addr::new(198, 19, 200, 1);
    for i in 0..BURST {
        out.push(Spoofed {
            src: burst,
            port: 33_333,
            dst_port: 53,
            payload: question(u16::try_from(i).expect("fits"), "srv01.corp.local", 1),
        });
    }
    for i in 1..=SOURCES {
        let [_, _, hi, lo] = i.to_be_bytes();
        let src = Ipv4Addr::new(198, 19, hi, lo);
        let port = 40_000 + u16::try_from(i % 20_000).expect("fits");
        for n in 0..3u16 {
            let payload = if i % 4 == 0 {
                question(n, "corp.local", 255)
            } else {
                question(n, "srv01.corp.local", 1)
            };
            out.push(Spoofed {
                src,
                port,
                dst_port: 53,
                payload,
            });
        }
    }
    out
}

/// What the peer namespace saw the sensor send: per destination (address, port), packets and
/// UDP payload bytes from port 53; and the packet socket's own drop count.
#[derive(Debug, Default)]
struct Capture {
    replies: HashMap<(Ipv4Addr, u16), (u64, u64)>,
    drops: u32,
}

/// Captures IPv4 on `ifname` until `stop` is set and nothing arrived for 200 ms.
fn capture(ifname: &str, sensor: Ipv4Addr, ready: &AtomicBool, stop: &AtomicBool) -> Capture {
    let proto = u16::try_from(libc::ETH_P_IP).expect("fits").to_be();
    // SAFETY: plain socket call; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(proto)) };
    assert!(
        fd >= 0,
        "packet socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(ifname).expect("name");
    // SAFETY: valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no interface {ifname}");
    // SAFETY: sockaddr_ll is plain data; zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = i32::try_from(index).expect("fits");
    let setopt = |level: i32, name: i32, value: &[u8]| {
        // SAFETY: the option value outlives the call; its length is its own.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                value.as_ptr().cast(),
                u32::try_from(value.len()).expect("fits"),
            )
        };
        assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
    };
    setopt(
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &(64i32 << 20).to_ne_bytes(),
    );
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: timeval is plain data, viewed as its bytes for the call.
    let timeout_bytes = unsafe {
        std::slice::from_raw_parts(
            (&raw const timeout).cast::<u8>(),
            size_of::<libc::timeval>(),
        )
    };
    setopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, timeout_bytes);
    // SAFETY: the address outlives the call; its length is its own.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            u32::try_from(size_of::<libc::sockaddr_ll>()).expect("fits"),
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    ready.store(true, Ordering::SeqCst);
    let mut out = Capture::default();
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        // SAFETY: the buffer outlives the call; its length is its own.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            continue;
        };
        let p = &buf[..n];
        if p.len() < 28 || p[0] >> 4 != 4 || p[9] != 17 {
            continue;
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
        let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
        let Some(udp) = p.get(ihl..ihl + 8) else {
            continue;
        };
        if src != sensor || u16::from_be_bytes([udp[0], udp[1]]) != 53 {
            continue;
        }
        let port = u16::from_be_bytes([udp[2], udp[3]]);
        let payload = u64::from(u16::from_be_bytes([udp[4], udp[5]])).saturating_sub(8);
        let entry = out.replies.entry((dst, port)).or_default();
        entry.0 += 1;
        entry.1 += payload;
    }
    let mut stats = [0u32; 2];
    let mut len = u32::try_from(size_of::<[u32; 2]>()).expect("fits");
    // SAFETY: PACKET_STATISTICS fills a tpacket_stats (two u32) of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            stats.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "PACKET_STATISTICS: {}",
        std::io::Error::last_os_error()
    );
    out.drops = stats[1];
    out
}

/// The namespace's `Udp:` counters from `/proc/net/snmp`, by name.
fn udp_snmp(net: &TestNet) -> HashMap<String, u64> {
    let out = net
        .sensor
        .command("cat")
        .arg("/proc/net/snmp")
        .output()
        .expect("cat /proc/net/snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    rows[0]
        .split_whitespace()
        .zip(rows[1].split_whitespace())
        .skip(1)
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(0)))
        .collect()
}

/// Peak resident memory of `pid`, KiB.
fn vm_hwm_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn count(stats: &Value, name: &str) -> u64 {
    stats["services"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}: {stats}"))
}

#[test]
fn a_spoofed_udp_flood_stays_bounded_never_amplifies_and_every_datagram_is_counted() {
    require_root!();
    let net = TestNet::new();
    net.route_forged_range("198.19.0.0/16");
    let config = json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "services": {"dns": [{"port": 53}]},
        "outputs": [{"transport": {"type": "terminal"}}],
        "sensor": {"services": {
            "udp_reply_factor": FACTOR,
            "udp_reply_allowance_bytes": 0,
            "udp_max_sessions": MAX_SESSIONS,
            "udp_replies_per_source_per_sec": 10,
            "udp_idle_timeout_ms": 60_000,
            "max_events_per_session": 4
        }}
    })
    .to_string();
    let sensor = RunningSensor::start(&net.sensor, &config, &["--capture", "none"]);
    let sensor_ip: Ipv4Addr = net.sensor_ip.parse().expect("address");
    let before = udp_snmp(&net);
    let datagrams = flood();
    let ready = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, captured, rss_kib, after, run) = thread::scope(|scope| {
        let (r, s, ifname) = (ready.clone(), stop.clone(), net.peer_if.clone());
        let peer = &net.peer;
        let capturer = scope.spawn(move || peer.run(move || capture(&ifname, sensor_ip, &r, &s)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the capture did not start");
            thread::sleep(Duration::from_millis(10));
        }
        let forged = datagrams.clone();
        let sent = net.peer.run(move || spoof::send_udp(&forged, sensor_ip));
        // Until the sensor has read everything the kernel delivered.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut after = udp_snmp(&net);
        while Instant::now() < deadline {
            thread::sleep(Duration::from_millis(500));
            let now = udp_snmp(&net);
            if now == after {
                break;
            }
            after = now;
        }
        let rss_kib = vm_hwm_kib(sensor.pid());
        // Stopped first, so nothing is sent after the capture ends.
        let run = sensor.stop();
        stop.store(true, Ordering::SeqCst);
        let captured = capturer.join().expect("capture thread");
        (sent, captured, rss_kib, after, run)
    });
    assert!(run.clean_exit, "{:?}", run.stderr);
    let s = &run.stats;
    let delta = |k: &str| after[k] - before[k];
    eprintln!(
        "sent {sent}; kernel delivered {}, dropped {} (InErrors), no port {}; services {}; \
         captured {} destinations, {} drops; peak RSS {} KiB",
        delta("InDatagrams"),
        delta("InErrors"),
        delta("NoPorts"),
        s["services"],
        captured.replies.len(),
        captured.drops,
        rss_kib
    );
    assert_eq!(sent, datagrams.len(), "every forged datagram left the peer");

    // Every datagram the kernel delivered was read and counted once.
    let datagrams_in = count(s, "udp_datagrams");
    assert_eq!(datagrams_in, delta("InDatagrams"));
    assert!(datagrams_in > 0);
    // ... and ended one way: dropped before any protocol code, or handled with one reply
    // outcome (every question gets an answer from the zone; nothing is forwarded).
    let dropped =
        count(s, "udp_table_full") + count(s, "rejected_global") + count(s, "rejected_source");
    let outcomes = count(s, "udp_replies")
        + count(s, "udp_refused_reflection")
        + count(s, "udp_refused_rate")
        + count(s, "udp_send_failed");
    assert_eq!(datagrams_in, dropped + outcomes, "{}", s["services"]);
    assert_eq!(count(s, "udp_deferred_dropped"), 0);
    assert_eq!(count(s, "whitelisted"), 0);
    // The table held at most its cap; the bursting source got its first second's worth.
    assert_eq!(count(s, "udp_sessions"), MAX_SESSIONS);
    assert!(count(s, "udp_table_full") > 0);
    assert!(
        count(s, "udp_refused_rate") >= u64::from(BURST) - 30,
        "{}",
        s["services"]
    );
    assert!(
        count(s, "udp_refused_reflection") > 0,
        "ANY answers exceed the budget"
    );

    // The capture saw exactly what the sensor says it sent.
    assert_eq!(
        captured.drops, 0,
        "the capture lost packets: the comparison would be wrong"
    );
    let replies: u64 = captured.replies.values().map(|(n, _)| n).sum();
    let bytes_out: u64 = captured.replies.values().map(|(_, b)| b).sum();
    assert_eq!(replies, count(s, "udp_replies"));
    assert_eq!(bytes_out, count(s, "udp_bytes_replied"));
    assert!(bytes_out <= FACTOR * count(s, "udp_bytes_received"));
    // Per source: never more than the factor times what it sent.
    let mut sent_by: HashMap<(Ipv4Addr, u16), u64> = HashMap::new();
    for d in &datagrams {
        *sent_by.entry((d.src, d.port)).or_default() +=
            u64::try_from(d.payload.len()).expect("fits");
    }
    for (dst, (_, bytes)) in &captured.replies {
        let asked = sent_by.get(dst).copied().unwrap_or(0);
        assert!(
            *bytes <= FACTOR * asked,
            "{dst:?} got {bytes} bytes for {asked} sent"
        );
    }
    // Memory stayed bounded.
    assert!(
        rss_kib <= RSS_CAP_MIB * 1024,
        "peak RSS {rss_kib} KiB over {RSS_CAP_MIB} MiB"
    );
}
