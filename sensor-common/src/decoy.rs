//! The contract of the any-port decoy program (`sk_lookup`): its name, its maps and how the
//! port set is laid out.
//!
//! The agent owns a small number of sockets (a TCP listener and a UDP socket per address
//! family) and puts them in [`DECOY_SOCKETS_MAP`]; the kernel program assigns every new TCP
//! connection whose destination port is set in [`DECOY_PORTS_MAP`], and every UDP datagram
//! whose destination port is set in [`DECOY_UDP_PORTS_MAP`] (when the destination is not a
//! loopback address), to the socket of its transport and address family. Everything else continues the kernel's
//! normal socket lookup, so ports the agent leaves out keep reaching whoever listens on them.

/// Name of the `sk_lookup` program inside its object file.
pub const DECOY_PROGRAM_NAME: &str = "decoy_lookup";

/// The port set: an array of [`DECOY_PORT_WORDS`] `u32` words, bit `port % 32` of word
/// `port / 32` set when connections to `port` are steered to the agent.
pub const DECOY_PORTS_MAP: &str = "DECOY_PORTS";

/// The UDP port set, laid out as [`DECOY_PORTS_MAP`]: bit set when datagrams to the port are
/// steered to the agent's UDP sockets.
pub const DECOY_UDP_PORTS_MAP: &str = "DECOY_UDP_PORTS";

/// Words of [`DECOY_PORTS_MAP`] (and [`DECOY_UDP_PORTS_MAP`]): one bit per port.
pub const DECOY_PORT_WORDS: u32 = 65_536 / 32;

/// The SOCKMAP holding the agent's catch-all listeners, indexed by [`DECOY_SOCKET_V4`] and
/// [`DECOY_SOCKET_V6`].
pub const DECOY_SOCKETS_MAP: &str = "DECOY_SOCKETS";

/// Slot of the IPv4 listener in [`DECOY_SOCKETS_MAP`].
pub const DECOY_SOCKET_V4: u32 = 0;

/// Slot of the IPv6 listener in [`DECOY_SOCKETS_MAP`].
pub const DECOY_SOCKET_V6: u32 = 1;

/// Slot of the IPv4 UDP socket in [`DECOY_SOCKETS_MAP`].
pub const DECOY_UDP_SOCKET_V4: u32 = 2;

/// Slot of the IPv6 UDP socket in [`DECOY_SOCKETS_MAP`].
pub const DECOY_UDP_SOCKET_V6: u32 = 3;

/// Entries of [`DECOY_SOCKETS_MAP`].
pub const DECOY_SOCKET_SLOTS: u32 = 4;

/// `AF_INET`, as `bpf_sk_lookup.family` reports an IPv4 connection.
pub const AF_INET: u32 = 2;

/// `AF_INET6`, as `bpf_sk_lookup.family` reports an IPv6 connection.
pub const AF_INET6: u32 = 10;

/// The word of [`DECOY_PORTS_MAP`] holding `port`, and the bit inside it.
#[must_use]
pub const fn port_bit(port: u16) -> (u32, u32) {
    ((port as u32) >> 5, 1 << ((port as u32) & 31))
}

#[cfg(test)]
mod tests {
    use super::{DECOY_PORT_WORDS, port_bit};

    #[test]
    fn every_port_has_one_bit_inside_the_map() {
        assert_eq!(port_bit(0), (0, 1));
        assert_eq!(port_bit(31), (0, 1 << 31));
        assert_eq!(port_bit(32), (1, 1));
        assert_eq!(port_bit(65_535), (DECOY_PORT_WORDS - 1, 1 << 31));
    }
}
