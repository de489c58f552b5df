//! Telnet option negotiation side by side with a real Linux telnetd (Debian's
//! `inetutils-telnetd`, started by the test on loopback with the accepted socket as its
//! standard input and output, as inetd does), and the terminal type a real `telnet` client
//! reports captured in `telnet.login`.

#![expect(
    clippy::unwrap_used,
    reason = "the shared test helpers fail loudly on purpose"
)]

mod harness;

use std::{os::fd::OwnedFd, process::Stdio, time::Duration};

use harness::{Harness, run};
use sensor::event::{Action, Service};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const LIMIT: Duration = Duration::from_secs(30);

/// What Debian 12's `telnet` client (inetutils 2.4, `TERM=vt100`) answers to each of the
/// server's first two flights, as recorded between it and inetutils-telnetd.
const CLIENT_ANSWERS: [&[u8]; 2] = [
    b"\xff\xfd%\xff\xfd&\xff\xfa&\x01\xff\xf0\xff\xfb\x18\xff\xfb \xff\xfc#\xff\xfb'\xff\xfc$",
    b"\xff\xfa \x000,0\xff\xf0\xff\xfa'\x00\xff\xf0\xff\xfa\x18\x00VT100\xff\xf0",
];

/// Reads exactly `n` bytes.
async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(LIMIT, s.read_exact(&mut buf))
        .await
        .expect("the server answers in time")
        .unwrap();
    buf
}

/// The server's three negotiation flights, answering the first two as the real client does.
async fn flights(s: &mut TcpStream) -> Vec<Vec<u8>> {
    let first = read_n(s, 21).await;
    s.write_all(CLIENT_ANSWERS[0]).await.unwrap();
    let second = read_n(s, 18).await;
    s.write_all(CLIENT_ANSWERS[1]).await.unwrap();
    let third = read_n(s, 18).await;
    vec![first, second, third]
}

/// A real `telnetd` serving one connection on an ephemeral loopback port.
fn real_telnetd() -> (u16, std::thread::JoinHandle<std::process::Child>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        let fd: OwnedFd = socket.into();
        std::process::Command::new("/usr/sbin/telnetd")
            .stdin(Stdio::from(fd.try_clone().unwrap()))
            .stdout(Stdio::from(fd))
            .stderr(Stdio::null())
            .spawn()
            .expect("inetutils-telnetd is installed (cargo xtask deps --test)")
    });
    (port, handle)
}

#[tokio::test(flavor = "multi_thread")]
async fn linux_negotiation_matches_inetutils_telnetd_side_by_side() {
    let (port, spawned) = real_telnetd();
    let mut real = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let want = flights(&mut real).await;
    let mut child = spawned.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        want[0], b"\xff\xfb%\xff\xfb&\xff\xfd\x18\xff\xfd \xff\xfd#\xff\xfd'\xff\xfd$",
        "the real telnetd's first flight (nmap: Linux telnetd)"
    );

    let mut h = Harness::start(
        json!({"telnet": [{"port": 0, "version": "Linux"}]}),
        json!({}),
    )
    .await;
    let addr = h.addr(Service::Telnet);
    let mut decoy = TcpStream::connect(addr).await.unwrap();
    assert_eq!(flights(&mut decoy).await, want);
    // The client accepts SGA, NAWS, STATUS and LFLOW, refuses to echo and linemode.
    decoy
        .write_all(b"\xff\xfd\x03\xff\xfc\x01\xff\xfc\"\xff\xfb\x1f\xff\xfd\x05\xff\xfb!")
        .await
        .unwrap();
    let banner = b"\xff\xfb\x01\r\nLinux 6.1.0-28-amd64 (127.0.0.1) (pts/0)\r\n\r\nsrv01 login: ";
    assert_eq!(read_n(&mut decoy, banner.len()).await, banner);
    decoy.write_all(b"admin\r\n").await.unwrap();
    assert_eq!(
        read_n(&mut decoy, b"admin\r\nPassword: ".len()).await,
        b"admin\r\nPassword: "
    );
    decoy.write_all(b"hunter2\r\n").await.unwrap();
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = events.iter().find(|e| e.action == Action::Login).unwrap();
    let mut extra = login.extra.clone();
    extra.remove("session_id");
    assert_eq!(
        serde_json::Value::from(extra),
        json!({"username": "admin", "password": "hunter2", "terminal_type": "VT100"})
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_telnet_clients_terminal_type_is_in_the_login_event() {
    let mut h = Harness::start(
        json!({"telnet": [{"port": 0, "version": "Linux"}, {"port": 0, "version": "Cisco IOS"}]}),
        json!({}),
    )
    .await;
    let addrs: Vec<_> = h
        .services
        .as_ref()
        .unwrap()
        .bound()
        .iter()
        .filter(|(s, a)| *s == Service::Telnet && a.is_ipv4())
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(addrs.len(), 2);
    for addr in addrs {
        let cmd = format!(
            "(sleep 1; echo root; sleep 0.5; echo toor; sleep 1) | telnet {} {}",
            addr.ip(),
            addr.port()
        );
        let _ = run("sh", &["-c", &cmd], &[("TERM", "xterm")], LIMIT).await;
        let events = h.until(Action::Login, 1, LIMIT).await;
        let login = events.iter().find(|e| e.action == Action::Login).unwrap();
        assert_eq!(login.extra.get("username"), Some(&json!("root")), "{addr}");
        assert_eq!(login.extra.get("password"), Some(&json!("toor")), "{addr}");
        assert_eq!(
            login.extra.get("terminal_type"),
            Some(&json!("XTERM")),
            "{addr}"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_client_gets_the_products_login_timeout() {
    let h = Harness::start(
        json!({"telnet": [{"port": 0, "version": "Linux", "handshake_timeout_secs": 2}]}),
        json!({}),
    )
    .await;
    // One that never answers the negotiation: the real telnetd never starts `login`, so the
    // connection ends without a word.
    let mut s = TcpStream::connect(h.addr(Service::Telnet)).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out,
        b"\xff\xfb%\xff\xfb&\xff\xfd\x18\xff\xfd \xff\xfd#\xff\xfd'\xff\xfd$"
    );
    // One that negotiates, then stays silent at the prompt: `login`'s message.
    let mut s = TcpStream::connect(h.addr(Service::Telnet)).await.unwrap();
    let _ = flights(&mut s).await;
    s.write_all(b"\xff\xfd\x03\xff\xfc\x01\xff\xfc\"\xff\xfb\x1f\xff\xfd\x05\xff\xfb!")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.ends_with(b"srv01 login: \r\nLogin timed out after 2 seconds.\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    h.stop().await;
}
