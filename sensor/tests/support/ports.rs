//! Ports for the servers a test starts itself (a sensor, Trapster, redis-server, nats-server)
//! and may restart on the same port.
//!
//! A port the kernel chose for `bind(0)` and that the test then released races with every
//! other socket of the machine: the kernel hands the same range out to every outgoing
//! connection and every other `bind(0)`, so another test can take it before the server binds
//! it. These ports are taken below the kernel's ephemeral range
//! (`net.ipv4.ip_local_port_range`), where the kernel never hands out ports by itself, each
//! checked free (TCP and UDP on loopback) at the time it is chosen, starting at a place that
//! differs per process and per call so that concurrent tests do not walk the same ports.

#![allow(dead_code, reason = "each test file uses part of the helpers")]

use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out.
const LOW: u16 = 10_000;

/// Calls so far in this process (each starts further along).
static CALLS: AtomicU32 = AtomicU32::new(0);

/// The kernel's lowest ephemeral port (32768 when unreadable).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `n` distinct ports that no socket on loopback holds now and that the kernel does not hand
/// out by itself.
///
/// # Panics
/// When the range below the ephemeral ports has fewer than `n` free ports.
#[must_use]
pub fn unused_ports(n: usize) -> Vec<u16> {
    let high = ephemeral_low();
    assert!(high > LOW + 1_000, "ephemeral range starts at {high}");
    let span = u32::from(high - LOW);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(call.wrapping_mul(7_919))
        .wrapping_add(nanos);
    let mut held = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for i in 0..span {
        if ports.len() == n {
            break;
        }
        let Ok(port) = u16::try_from(u32::from(LOW) + seed.wrapping_add(i) % span) else {
            continue;
        };
        // Held until all are chosen, so none repeats; both protocols, as DNS and SNMP decoys
        // bind UDP.
        if let (Ok(tcp), Ok(udp)) = (
            std::net::TcpListener::bind(("127.0.0.1", port)),
            std::net::UdpSocket::bind(("127.0.0.1", port)),
        ) {
            held.push((tcp, udp));
            ports.push(port);
        }
    }
    assert_eq!(ports.len(), n, "not enough free ports below {high}");
    ports
}

/// One port, as [`unused_ports`].
#[must_use]
pub fn unused_port() -> u16 {
    unused_ports(1).remove(0)
}
