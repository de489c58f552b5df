//! The destination address of a datagram received on a wildcard-bound UDP socket, from the
//! kernel (`IP_PKTINFO`, `IPV6_RECVPKTINFO`), so a pseudo-session's `dst_ip` is the address the
//! client sent to, as `local_addr` of an accepted TCP stream is. A socket the kernel's
//! `sk_lookup` program hands datagrams for other ports (the any-port decoys) asks for the
//! original destination instead (`IP_RECVORIGDSTADDR`, `IPV6_RECVORIGDSTADDR`): address and
//! port. Neither tokio nor socket2 parses control messages, hence the few lines of libc here.

use std::{
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, RawFd},
};

use tokio::{io::Interest, net::UdpSocket};

/// Asks the kernel to attach the destination address to every datagram.
///
/// # Errors
/// The `setsockopt` error.
pub fn enable(socket: &socket2::Socket, ipv6: bool) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    let on: libc::c_int = 1;
    let len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: a valid socket, an int option and its size.
    let rc =
        unsafe { libc::setsockopt(socket.as_raw_fd(), level, name, (&raw const on).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to attach the original destination address and port to every datagram.
///
/// # Errors
/// The `setsockopt` error.
pub fn enable_original(socket: &socket2::Socket, ipv6: bool) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVORIGDSTADDR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVORIGDSTADDR)
    };
    let on: libc::c_int = 1;
    let len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: a valid socket, an int option and its size.
    let rc =
        unsafe { libc::setsockopt(socket.as_raw_fd(), level, name, (&raw const on).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram: its length, who sent it, and where it was sent to (when the kernel said).
pub async fn recv(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    let fd = socket.as_raw_fd();
    socket
        .async_io(Interest::READABLE, || {
            recv_now(fd, buf).map(|r| (r.len, r.peer, r.destination))
        })
        .await
}

/// One datagram on a socket with [`enable_original`]: its length, who sent it, and the
/// address and port it was sent to (when the kernel said).
pub async fn recv_original(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SocketAddr>)> {
    let fd = socket.as_raw_fd();
    socket
        .async_io(Interest::READABLE, || {
            recv_now(fd, buf).map(|r| (r.len, r.peer, r.original))
        })
        .await
}

/// What `recvmsg` said about one datagram.
struct Received {
    len: usize,
    peer: SocketAddr,
    destination: Option<IpAddr>,
    original: Option<SocketAddr>,
}

/// Control buffer, aligned for `cmsghdr`, room for one `in6_pktinfo` and more.
#[repr(C, align(8))]
struct Control([u8; 128]);

fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: all-zero is a valid sockaddr_storage, msghdr and control buffer.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    let mut control = Control([0; 128]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&raw mut name).cast();
    msg.msg_namelen = libc::socklen_t::try_from(size_of::<libc::sockaddr_storage>()).unwrap_or(0);
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    // SAFETY: `msg` points to live buffers of the sizes it states.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_DONTWAIT) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let peer = peer_of(&name)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP peer"))?;
    let mut destination = None;
    let mut original = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within
    // `msg_controllen`; each payload is read unaligned, with the size of its type.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            if header.cmsg_level == libc::IPPROTO_IP && header.cmsg_type == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                destination = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            } else if header.cmsg_level == libc::IPPROTO_IPV6
                && header.cmsg_type == libc::IPV6_PKTINFO
            {
                let info: libc::in6_pktinfo =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                destination = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            } else if (header.cmsg_level == libc::IPPROTO_IP
                && header.cmsg_type == libc::IP_ORIGDSTADDR)
                || (header.cmsg_level == libc::IPPROTO_IPV6
                    && header.cmsg_type == libc::IPV6_ORIGDSTADDR)
            {
                // A sockaddr_in or sockaddr_in6, whose family field says which.
                let mut storage: libc::sockaddr_storage = zeroed();
                let room = size_of::<libc::sockaddr_storage>();
                let have = header
                    .cmsg_len
                    .saturating_sub(usize::try_from(libc::CMSG_LEN(0)).unwrap_or(usize::MAX))
                    .min(room);
                std::ptr::copy_nonoverlapping(
                    libc::CMSG_DATA(cmsg),
                    (&raw mut storage).cast::<u8>(),
                    have,
                );
                original = peer_of(&storage);
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok(Received {
        len: n,
        peer,
        destination,
        original,
    })
}

/// The IP address and port in a `sockaddr_storage` the kernel filled.
fn peer_of(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in, which fits in the storage.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read_unaligned(std::ptr::from_ref(name).cast()) };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                u16::from_be(sin.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6, which fits in the storage.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read_unaligned(std::ptr::from_ref(name).cast()) };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)),
                u16::from_be(sin6.sin6_port),
            ))
        }
        _ => None,
    }
}
