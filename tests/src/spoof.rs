//! Forged-source UDP for the flood tests: datagrams with any source address, sent from a raw
//! socket in the peer namespace. Only between a test's own namespaces, which have no route
//! out: the forged range is routed to the peer, which does not forward, so no reply can leave.

use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    thread,
    time::Duration,
};

use crate::frames;

/// One forged datagram: source, source port, destination port and UDP payload.
#[derive(Debug, Clone)]
pub struct Spoofed {
    /// The forged source address.
    pub src: Ipv4Addr,
    /// Its source port.
    pub port: u16,
    /// The destination port.
    pub dst_port: u16,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// Sends every datagram to `dst` from a raw socket (`IPPROTO_RAW`: the header is ours, the kernel
/// fills the checksum), about 10,000 a second; returns how many were sent.
pub fn send_udp(datagrams: &[Spoofed], dst: Ipv4Addr) -> usize {
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
    for (i, d) in datagrams.iter().enumerate() {
        let mut udp = d.port.to_be_bytes().to_vec();
        udp.extend_from_slice(&d.dst_port.to_be_bytes());
        let len = u16::try_from(8 + d.payload.len()).expect("fits");
        udp.extend_from_slice(&len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&d.payload);
        let packet = frames::ipv4(d.src.octets(), dst.octets(), 17, 0, &udp);
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
        if i % 50 == 49 {
            thread::sleep(Duration::from_millis(5));
        }
    }
    sent
}
