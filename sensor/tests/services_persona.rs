//! `sensor.persona` against `nmap -sV` and the wire, on loopback: each persona's decoys name
//! one coherent machine, and their replies carry its initial TTL.

mod harness;

use std::{io::IoSliceMut, net::UdpSocket, os::fd::AsRawFd as _, time::Duration};

use harness::{Harness, run};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use sensor::event::Service;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

/// An SNMPv2c get of `sysDescr.0` with community `public`.
const GET_SYS_DESCR: [u8; 43] = [
    0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x1c, 0x02,
    0x04, 0x12, 0x34, 0x56, 0x78, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c, 0x06,
    0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
];

/// Sends the get to the SNMP decoy and returns the reply with the TTL it arrived with.
fn snmp_reply_and_ttl(h: &Harness) -> (Vec<u8>, u8) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("as the test set up");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("as the test set up");
    setsockopt(&socket, sockopt::Ipv4RecvTtl, &true).expect("as the test set up");
    let snmp = h
        .services
        .as_ref()
        .expect("running")
        .udp_bound()
        .iter()
        .find(|(s, a)| *s == Service::Snmp && a.is_ipv4())
        .map(|(_, a)| *a)
        .expect("SNMP bound on UDP");
    socket
        .send_to(&GET_SYS_DESCR, snmp)
        .expect("as the test set up");
    let mut buf = vec![0u8; 2048];
    let mut cmsg = nix::cmsg_space!(libc::c_int);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .expect("an SNMP reply within 10 s");
    let len = msg.bytes;
    let ttl = msg
        .cmsgs()
        .expect("as the test set up")
        .find_map(|c| match c {
            ControlMessageOwned::Ipv4Ttl(ttl) => {
                Some(u8::try_from(ttl).expect("as the test set up"))
            }
            _ => None,
        })
        .expect("IP_TTL control message");
    buf.truncate(len);
    (buf, ttl)
}

/// `nmap -sV` lines of the given services' ports, in order.
async fn nmap_lines(h: &Harness, services: &[Service]) -> Vec<String> {
    let ports: Vec<String> = services
        .iter()
        .map(|s| h.addr(*s).port().to_string())
        .collect();
    let out = run(
        "nmap",
        &[
            "-sV",
            "-Pn",
            "-n",
            "--version-intensity",
            "7",
            "-p",
            &ports.join(","),
            "127.0.0.1",
        ],
        &[],
        Duration::from_secs(240),
    )
    .await;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    ports
        .iter()
        .map(|port| {
            report
                .lines()
                .find(|l| l.starts_with(&format!("{port}/tcp")))
                .unwrap_or_else(|| panic!("no line for {port}: {report}"))
                .to_owned()
        })
        .collect()
}

fn every_service() -> Value {
    json!({
        "ftp": [{"port": 0}],
        "ssh": [{"port": 0}],
        "telnet": [{"port": 0}],
        "http": [{"port": 0}],
        "mysql": [{"port": 0}],
        "snmp": [{"port": 0}]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn debian_persona_is_one_debian_server() {
    let h = Harness::start_as(every_service(), "debian-12-server").await;
    let services = [Service::Ftp, Service::Ssh, Service::Http, Service::Mysql];
    let lines = nmap_lines(&h, &services).await;
    for (line, product) in lines.iter().zip([
        "vsftpd 3.0.3",
        "OpenSSH 9.2p1 Debian 2+deb12u7",
        "Apache httpd 2.4.62 ((Debian))",
        "MySQL 5.5.5-10.11.6-MariaDB-0+deb12u1",
    ]) {
        assert!(line.contains(product), "{line}");
    }
    // Telnet opens as Debian's inetutils telnetd does (WILL TSPEED, WILL XDISPLOC, ...), not
    // with Cisco's options.
    let mut telnet = tokio::net::TcpStream::connect(h.addr(Service::Telnet))
        .await
        .unwrap();
    let mut first = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(10), telnet.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first, b"\xff\xfb%\xff\xfb&");
    let (reply, ttl) = snmp_reply_and_ttl(&h);
    assert_eq!(ttl, 64);
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("Debian"), "{text}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_persona_is_one_windows_server_with_ttl_128() {
    let h = Harness::start_as(every_service(), "windows-server-2022").await;
    let lines = nmap_lines(&h, &[Service::Ftp, Service::Ssh, Service::Http]).await;
    for (line, product) in lines.iter().zip([
        "Microsoft ftpd",
        "OpenSSH for_Windows_8.1",
        "Microsoft IIS httpd 10.0",
    ]) {
        assert!(line.contains(product), "{line}");
    }
    let (reply, ttl) = snmp_reply_and_ttl(&h);
    assert_eq!(ttl, 128);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("Software: Windows Version 6.3 (Build 20348 Multiprocessor Free)"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_key_beats_the_persona_and_none_keeps_the_kernel_ttl() {
    let h = Harness::start_as(
        json!({
            "ftp": [{"port": 0, "banner": "ProFTPD 1.3.8 Server"}],
            "snmp": [{"port": 0, "sys_descr": "custom box"}]
        }),
        "none",
    )
    .await;
    let lines = nmap_lines(&h, &[Service::Ftp]).await;
    assert!(lines[0].contains("ProFTPD 1.3.8"), "{}", lines[0]);
    let (reply, ttl) = snmp_reply_and_ttl(&h);
    let default_ttl: u8 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ttl, default_ttl);
    assert!(String::from_utf8_lossy(&reply).contains("custom box"));
    h.stop().await;
}
