//! The any-port decoy program (`sk_lookup`): steers new TCP connections and UDP datagrams for
//! decoy ports to the agent's catch-all sockets, so one socket answers on every port an
//! attacker tries.
//!
//! Runs in the network namespace's socket lookup, before the kernel's own. A connection is
//! assigned with `bpf_sk_assign` when its destination port is set in its transport's port
//! bitmap ([`sensor_common::decoy::DECOY_PORTS_MAP`] for TCP,
//! [`sensor_common::decoy::DECOY_UDP_PORTS_MAP`] for UDP), its destination is not a loopback
//! address and the agent's socket of its transport and address family is in the SOCKMAP. (The
//! kernel runs the program for a UDP datagram only when no connected socket matches it.) Every other case, and every
//! failure, returns `SK_PASS` without an assignment: the kernel's normal lookup continues, so
//! nothing is ever blocked, and ports the agent leaves out of the bitmap (those its services or
//! other programs listen on) keep reaching their own socket.
#![no_std]
#![no_main]
#![expect(
    missing_docs,
    reason = "the #[sk_lookup] macro emits an undocumented extern wrapper"
)]

use aya_ebpf::{
    bindings::sk_action,
    macros::{map, sk_lookup},
    maps::{Array, SockMap},
    programs::SkLookupContext,
};
use sensor_common::{
    decoy::{
        AF_INET, AF_INET6, DECOY_PORT_WORDS, DECOY_SOCKET_SLOTS, DECOY_SOCKET_V4, DECOY_SOCKET_V6,
        DECOY_UDP_SOCKET_V4, DECOY_UDP_SOCKET_V6, port_bit,
    },
    protocol,
};

/// One bit per TCP port: set for the ports steered to the agent.
#[map]
static DECOY_PORTS: Array<u32> = Array::with_max_entries(DECOY_PORT_WORDS, 0);

/// One bit per UDP port: set for the ports steered to the agent.
#[map]
static DECOY_UDP_PORTS: Array<u32> = Array::with_max_entries(DECOY_PORT_WORDS, 0);

/// The agent's catch-all sockets, one per transport and address family.
#[map]
static DECOY_SOCKETS: SockMap = SockMap::with_max_entries(DECOY_SOCKET_SLOTS, 0);

/// Entry point: assigns decoy connections, and always lets the lookup go on otherwise.
#[sk_lookup]
pub fn decoy_lookup(ctx: SkLookupContext) -> u32 {
    if let Some(slot) = decoy_slot(&ctx) {
        // An error (listener missing or closed) leaves the lookup to the kernel.
        let _ignored = DECOY_SOCKETS.redirect_sk_lookup(&ctx, slot, 0);
    }
    sk_action::SK_PASS
}

/// The SOCKMAP slot to assign this lookup to, or `None` to leave it alone.
#[inline(always)]
fn decoy_slot(ctx: &SkLookupContext) -> Option<u32> {
    let lookup = ctx.lookup;
    // Every field is read with one 4-byte load: the verifier refuses wider loads of the
    // context (a copied array could become 8-byte loads).
    macro_rules! field {
        ($($f:tt)+) => {
            // SAFETY: the kernel hands the program a valid `bpf_sk_lookup` for the whole run;
            // the verifier checks every context access against its layout.
            unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*lookup).$($f)+)) }
        };
    }
    let proto = field!(protocol);
    let (ports, v4, v6) = if proto == u32::from(protocol::TCP) {
        (&DECOY_PORTS, DECOY_SOCKET_V4, DECOY_SOCKET_V6)
    } else if proto == u32::from(protocol::UDP) {
        (&DECOY_UDP_PORTS, DECOY_UDP_SOCKET_V4, DECOY_UDP_SOCKET_V6)
    } else {
        return None;
    };
    let local_port = field!(local_port);
    let port = u16::try_from(local_port).ok()?;
    let (word, bit) = port_bit(port);
    let steered = ports.get(word).copied().unwrap_or(0);
    if steered & bit == 0 {
        return None;
    }
    let fam = field!(family);
    if fam == AF_INET {
        // Network byte order in memory: the first octet is the lowest byte of the load.
        if field!(local_ip4) & 0xff == 127 {
            return None;
        }
        Some(v4)
    } else if fam == AF_INET6 {
        let loopback = field!(local_ip6[0]) == 0
            && field!(local_ip6[1]) == 0
            && field!(local_ip6[2]) == 0
            && field!(local_ip6[3]) == u32::from_be(1);
        if loopback {
            return None;
        }
        Some(v6)
    } else {
        None
    }
}

sensor_ebpf::xdp_object!();
