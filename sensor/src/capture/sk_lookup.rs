//! Loading and attaching the embedded any-port decoy program (`sk_lookup`), and owning its maps.
//!
//! The program (`sensor-ebpf/src/bin/sk_lookup.rs`) steers new TCP connections for the ports
//! of one [`PortBitmap`], and UDP datagrams for the ports of another, to the agent's catch-all
//! sockets, which this module puts in the program's SOCKMAP. The maps stay reachable through
//! the descriptors [`Attached`] holds, so a reload after the agent gave up its privileges can
//! still change the steered ports (a map update checks no capability; only loading does). It attaches to the agent's network namespace with a BPF link that is
//! never pinned: when the process exits, even by `kill -9`, the kernel releases the link and
//! the namespace's socket lookup is the kernel's own again. A kernel without `sk_lookup`
//! (before 5.9, or built without it) refuses the load with [`SkLookupError::Load`] or
//! [`SkLookupError::Program`], which the agent logs and reports as `sensor.degraded`; the rest
//! of the sensor keeps running.

use std::os::fd::BorrowedFd;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, SockMap},
    programs::{ProgramError, SkLookup, sk_lookup::SkLookupLinkId},
};
use sensor_common::decoy::{
    DECOY_PORT_WORDS, DECOY_PORTS_MAP, DECOY_PROGRAM_NAME, DECOY_SOCKET_V4, DECOY_SOCKET_V6,
    DECOY_SOCKETS_MAP, DECOY_UDP_PORTS_MAP, DECOY_UDP_SOCKET_V4, DECOY_UDP_SOCKET_V6, port_bit,
};

/// The `sk_lookup` object built by `build.rs`, embedded so the binary needs no other file.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sk_lookup"));

/// The network namespace the agent runs in.
const OWN_NETNS: &str = "/proc/self/ns/net";

/// What went wrong while loading, attaching or updating the decoy program.
#[derive(Debug, thiserror::Error)]
pub enum SkLookupError {
    /// The kernel refused the object.
    #[error(
        "loading the sk_lookup decoy program failed (needs Linux 5.9 or later with BPF socket \
         lookup, and root or CAP_BPF + CAP_NET_ADMIN): {0}"
    )]
    Load(#[source] Box<aya::EbpfError>),
    /// A map or the program is missing from the object.
    #[error("`{0}` is missing from the sk_lookup object")]
    Missing(&'static str),
    /// The program could not be loaded (verifier, or a kernel without `sk_lookup`).
    #[error(
        "the kernel refused the sk_lookup decoy program (needs Linux 5.9 or later with BPF \
         socket lookup): {0}"
    )]
    Program(#[source] ProgramError),
    /// The agent's network namespace could not be opened.
    #[error("opening {OWN_NETNS} failed: {0}")]
    Netns(#[source] std::io::Error),
    /// The kernel refused the attachment to the namespace.
    #[error("attaching the sk_lookup decoy program to the network namespace failed: {0}")]
    Attach(#[source] ProgramError),
    /// A map update failed.
    #[error("sk_lookup map `{name}`: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// The error.
        source: aya::maps::MapError,
    },
}

/// The ports steered to the agent: one bit per port, as the kernel maps hold them.
#[derive(Clone, PartialEq, Eq)]
pub struct PortBitmap(Box<[u32]>);

impl std::fmt::Debug for PortBitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortBitmap")
            .field("ports", &self.len())
            .finish()
    }
}

impl Default for PortBitmap {
    fn default() -> Self {
        Self(vec![0; DECOY_PORT_WORDS as usize].into_boxed_slice())
    }
}

impl PortBitmap {
    /// The set of `ports`.
    #[must_use]
    pub fn from_ports(ports: impl IntoIterator<Item = u16>) -> Self {
        let mut map = Self::default();
        for port in ports {
            map.insert(port);
        }
        map
    }

    /// Adds `port`.
    pub fn insert(&mut self, port: u16) {
        let (word, bit) = port_bit(port);
        if let Some(w) = self.0.get_mut(word as usize) {
            *w |= bit;
        }
    }

    /// Removes `port`.
    pub fn remove(&mut self, port: u16) {
        let (word, bit) = port_bit(port);
        if let Some(w) = self.0.get_mut(word as usize) {
            *w &= !bit;
        }
    }

    /// Whether `port` is in the set.
    #[must_use]
    pub fn contains(&self, port: u16) -> bool {
        let (word, bit) = port_bit(port);
        self.0.get(word as usize).is_some_and(|w| w & bit != 0)
    }

    /// Number of ports in the set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// The words, as written to the kernel map.
    #[must_use]
    pub fn words(&self) -> &[u32] {
        &self.0
    }
}

/// The agent's catch-all sockets, as the program's SOCKMAP takes them.
#[derive(Debug, Clone, Copy)]
pub struct Listeners<'a> {
    /// The IPv4 listener.
    pub v4: BorrowedFd<'a>,
    /// The IPv6 listener (`None` on a host without IPv6: IPv6 decoy connections then go on to
    /// the kernel's lookup).
    pub v6: Option<BorrowedFd<'a>>,
    /// The IPv4 UDP socket (`None`: no UDP decoys; datagrams go on to the kernel's lookup).
    pub udp_v4: Option<BorrowedFd<'a>>,
    /// The IPv6 UDP socket.
    pub udp_v6: Option<BorrowedFd<'a>>,
}

/// The ports to steer, per transport.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steered {
    /// TCP ports.
    pub tcp: PortBitmap,
    /// UDP ports.
    pub udp: PortBitmap,
}

impl Steered {
    /// Number of ports steered, both transports together.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tcp.len().saturating_add(self.udp.len())
    }

    /// Whether no port is steered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.udp.is_empty()
    }
}

/// The loaded and attached program.
pub struct Attached {
    ebpf: Ebpf,
    link: Option<SkLookupLinkId>,
    ports: usize,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("attached", &self.link.is_some())
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

/// Loads the embedded program, fills its maps with `ports` and `listeners`, and attaches it to
/// the agent's network namespace. Without `listeners` (and with no port), the program is
/// attached idle: it steers nothing until [`Attached::set_listeners`] and
/// [`Attached::set_ports`] give it sockets and ports (a reload that turns the decoys on after
/// the privilege drop).
///
/// # Errors
/// [`SkLookupError`] when the kernel lacks `sk_lookup`, refuses the program, a map update or
/// the attachment; nothing stays attached then.
pub fn attach(
    ports: &Steered,
    listeners: Option<Listeners<'_>>,
) -> Result<Attached, SkLookupError> {
    // No kernel BTF: the program reads only its context, there is nothing to relocate.
    let mut ebpf = EbpfLoader::new()
        .btf(None)
        .load(PROGRAM)
        .map_err(|e| SkLookupError::Load(Box::new(e)))?;
    program(&mut ebpf)?.load().map_err(SkLookupError::Program)?;
    let mut attached = Attached {
        ebpf,
        link: None,
        ports: 0,
    };
    attached.set_ports(ports)?;
    if let Some(listeners) = listeners {
        attached.set_listeners(listeners)?;
    }
    let netns = std::fs::File::open(OWN_NETNS).map_err(SkLookupError::Netns)?;
    let link = program(&mut attached.ebpf)?
        .attach(&netns)
        .map_err(SkLookupError::Attach)?;
    attached.link = Some(link);
    Ok(attached)
}

fn sockets_error(source: aya::maps::MapError) -> SkLookupError {
    SkLookupError::Map {
        name: DECOY_SOCKETS_MAP,
        source,
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut SkLookup, SkLookupError> {
    ebpf.program_mut(DECOY_PROGRAM_NAME)
        .ok_or(SkLookupError::Missing(DECOY_PROGRAM_NAME))?
        .try_into()
        .map_err(SkLookupError::Program)
}

impl Attached {
    /// Replaces the steered ports (the program stays attached; each word is one map update, so
    /// a port in both the old and the new set is never left out in between).
    ///
    /// # Errors
    /// [`SkLookupError::Map`] when the kernel refuses an update.
    pub fn set_ports(&mut self, ports: &Steered) -> Result<(), SkLookupError> {
        self.set_bitmap(DECOY_PORTS_MAP, &ports.tcp)?;
        self.set_bitmap(DECOY_UDP_PORTS_MAP, &ports.udp)?;
        self.ports = ports.len();
        Ok(())
    }

    fn set_bitmap(&mut self, name: &'static str, ports: &PortBitmap) -> Result<(), SkLookupError> {
        let err = |source| SkLookupError::Map { name, source };
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(SkLookupError::Missing(name))?;
        let mut array: Array<&mut MapData, u32> = Array::try_from(map).map_err(err)?;
        for (index, word) in (0..DECOY_PORT_WORDS).zip(ports.words()) {
            array.set(index, *word, 0).map_err(err)?;
        }
        Ok(())
    }

    /// Puts `listeners` in the program's SOCKMAP (replacing the previous ones, e.g. after the
    /// services restarted on a reload).
    ///
    /// # Errors
    /// [`SkLookupError::Map`] when the kernel refuses a socket (a TCP listener or a bound UDP
    /// socket).
    pub fn set_listeners(&mut self, listeners: Listeners<'_>) -> Result<(), SkLookupError> {
        let mut sockets = self.sockets()?;
        sockets
            .set(DECOY_SOCKET_V4, &listeners.v4, 0)
            .map_err(sockets_error)?;
        for (slot, socket) in [
            (DECOY_SOCKET_V6, listeners.v6),
            (DECOY_UDP_SOCKET_V4, listeners.udp_v4),
            (DECOY_UDP_SOCKET_V6, listeners.udp_v6),
        ] {
            match socket {
                Some(fd) => sockets.set(slot, &fd, 0).map_err(sockets_error)?,
                // Absent already, or removed now: either way the slot is empty.
                None => {
                    let _ignored = sockets.clear_index(&slot);
                }
            }
        }
        Ok(())
    }

    /// Empties the program's SOCKMAP (the decoys were turned off: their sockets are released).
    ///
    /// # Errors
    /// [`SkLookupError::Missing`] when the map is not in the program.
    pub fn clear_listeners(&mut self) -> Result<(), SkLookupError> {
        let mut sockets = self.sockets()?;
        for slot in [
            DECOY_SOCKET_V4,
            DECOY_SOCKET_V6,
            DECOY_UDP_SOCKET_V4,
            DECOY_UDP_SOCKET_V6,
        ] {
            // Absent already, or removed now: either way the slot is empty.
            let _ignored = sockets.clear_index(&slot);
        }
        Ok(())
    }

    /// The program's SOCKMAP.
    fn sockets(&mut self) -> Result<SockMap<&mut MapData>, SkLookupError> {
        let map = self
            .ebpf
            .map_mut(DECOY_SOCKETS_MAP)
            .ok_or(SkLookupError::Missing(DECOY_SOCKETS_MAP))?;
        SockMap::try_from(map).map_err(sockets_error)
    }

    /// Number of ports steered now (TCP and UDP together).
    #[must_use]
    pub const fn ports(&self) -> usize {
        self.ports
    }

    /// Detaches the program. Also happens on drop and on process exit.
    pub fn detach(&mut self) {
        if let Some(link) = self.link.take()
            && let Ok(program) = program(&mut self.ebpf)
            && let Err(err) = program.detach(link)
        {
            tracing::warn!(error = %err, "Detaching the sk_lookup decoy program failed.");
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::PortBitmap;

    #[test]
    fn the_bitmap_holds_exactly_the_ports_inserted() {
        let mut map = PortBitmap::from_ports([0, 1, 22, 31, 32, 8081, 65_535]);
        assert_eq!(map.len(), 7);
        for port in [0, 1, 22, 31, 32, 8081, 65_535] {
            assert!(map.contains(port), "{port}");
        }
        assert!(!map.contains(2) && !map.contains(65_534));
        map.remove(22);
        assert!(!map.contains(22));
        assert_eq!(map.len(), 6);
        assert_eq!(map.words().len(), 2048);
        assert_eq!(map.words()[0], 1 | 2 | (1 << 31));
        assert_eq!(map.words()[1], 1);
        assert_eq!(map.words()[2047], 1 << 31);
        assert!(PortBitmap::default().is_empty());
        assert_eq!(PortBitmap::from_ports(0..=u16::MAX).len(), 65_536);
    }
}
