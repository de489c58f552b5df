//! Entry points for the `cargo fuzz` targets in `fuzz/` (not a stable API).
//!
//! Each function feeds attacker-shaped bytes to one parser the way the sensor does and returns
//! nothing: the targets only look for panics, hangs and sanitizer reports. Parsers that live
//! behind an async connection ([`Conn`]) are driven over an in-memory stream on a
//! current-thread runtime, with a silent session (it emits no events). Properties that need
//! more than "does not crash" (formats round-trip) live in the targets themselves.

use std::{
    io,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context as TaskContext, Poll},
};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::event::{Service, SessionIdentity};
use crate::services::framework::{
    conn::Conn,
    gate::ServiceCounters,
    session::Session,
    udp::{Exchange, UdpSession as _},
};
use crate::services::proto::{dns, http, ldap, mssql, mysql, postgres, rdp, rsync, shared, smb};
use crate::services::proto::{snmp, ssh, telnet, vnc};
use crate::services::{Context, ServiceLimits};

/// A client that sends `input` then closes, and swallows whatever it is sent.
struct Wire<'a> {
    input: &'a [u8],
}

impl AsyncRead for Wire<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(self.input.len());
        let input = self.input;
        let (now, later) = input.split_at(n);
        buf.put_slice(now);
        self.input = later;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn limits() -> Arc<ServiceLimits> {
    static LIMITS: OnceLock<Arc<ServiceLimits>> = OnceLock::new();
    Arc::clone(LIMITS.get_or_init(|| Arc::new(ServiceLimits::default())))
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

/// A silent session (no events) for `service`.
fn session(service: Service) -> Session {
    let (sink, _) = tokio::sync::mpsc::channel(1);
    Session::new(
        SessionIdentity {
            src_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            src_port: 40_000,
            dst_ip: LOCAL,
            dst_port: 1,
        },
        service,
        sink,
        limits(),
        Arc::new(ServiceCounters::default()),
        true,
    )
}

/// Runs `body` on a current-thread runtime with time enabled.
fn block_on<F: Future>(body: F) -> Option<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .ok()?;
    Some(runtime.block_on(body))
}

fn context(service: Service, port: u16) -> Context {
    Context {
        service,
        port,
        hostname: "srv01".to_owned(),
        domain: "corp.local".to_owned(),
        limits: limits(),
    }
}

/// HTTP: requests read one after another from one connection (request line, headers,
/// `Content-Length` or chunked body), then the credential extractors on each.
pub fn http_request(data: &[u8]) {
    let _ = http::request::chunk_size(data);
    block_on(async {
        let session = session(Service::Http);
        let mut conn = Conn::new(Wire { input: data }, session.limits());
        for _ in 0..8 {
            let Ok(request) = http::request::read_request(&mut conn, &session).await else {
                break;
            };
            let _ = request.path();
            let _ = request.query();
            let _ = request.keep_alive();
            let _ = http::credentials::body_credentials(&request.body);
            let _ = http::credentials::basic_credentials(&request);
            let _ = http::credentials::form_pairs(request.query());
        }
    });
}

/// The line reader every line-based service (FTP, rsync, SMTP-like) uses, then FTP's command
/// split as its session does it.
pub fn ftp_commands(data: &[u8]) {
    block_on(async {
        let session = session(Service::Ftp);
        let mut conn = Conn::new(Wire { input: data }, session.limits());
        for _ in 0..64 {
            let Ok(line) = conn.read_line(&session).await else {
                break;
            };
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            let (verb, _arg) = text.split_once(' ').unwrap_or((text, ""));
            let _ = verb.to_ascii_uppercase();
        }
    });
}

/// Telnet: the option and subnegotiation stripping line parser, byte by byte.
pub fn telnet_options(data: &[u8]) {
    let mut parser = telnet::LineParser::new(256);
    let mut echo = Vec::new();
    for &byte in data {
        if parser.feed(byte, &mut echo).is_err() {
            parser = telnet::LineParser::new(256);
        }
        echo.clear();
    }
}

/// MySQL: the packet header and the client's handshake response.
pub fn mysql_packet(data: &[u8]) {
    if let Some(header) = data.first_chunk::<4>() {
        let _ = mysql::packet_length(*header);
    }
    let _ = mysql::parse_handshake_response(data);
    let _ = mysql::parse_handshake_response(data.get(4..).unwrap_or(&[]));
}

/// PostgreSQL: the length word and the startup message's parameters.
pub fn postgres_packet(data: &[u8]) {
    if let Some(length) = data.first_chunk::<4>() {
        let _ = postgres::body_length(*length, 8, 10_000);
        let _ = postgres::body_length(*length, 0, 16_384);
        let _ = postgres::body_length(*length, 4, usize::MAX);
    }
    let _ = postgres::parse_parameters(data);
    let _ = postgres::parse_parameters(data.get(8..).unwrap_or(&[]));
}

/// SSH after authentication: the fake shell, one line after the other (the first names the
/// user; a line starting with `#` is typed at a password prompt when the shell asks for one),
/// over a TTY and over `exec`.
pub fn ssh_shell(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut lines = text.split('\n');
    let user = lines.next().unwrap_or("root");
    let mut shell = ssh::shell::Shell::new(user, "srv01", "secret");
    let _ = shell.motd();
    for (i, line) in lines.take(64).enumerate() {
        let _ = shell.prompt();
        if shell.wants_password() {
            let _ = shell.password(line.trim_start_matches('#'));
            continue;
        }
        let _ = shell.run(line, i % 2 == 0);
    }
    shell.cancel();
}

fn ntlm_identity() -> Arc<shared::ntlm::Identity> {
    Arc::new(shared::ntlm::Identity::new(
        "SRV01",
        "CORP",
        shared::ntlm::ProductVersion::default(),
    ))
}

/// LDAP: BER framing, then every framed message answered in one connection state.
pub fn ldap_message(data: &[u8]) {
    let names = ldap::rootdse::Names {
        server: "DC01".to_owned(),
        domain: "corp.local".to_owned(),
        level: 6,
    };
    let mut state = ldap::ops::State::new(ntlm_identity(), false, true);
    let now = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let mut rest = data;
    for _ in 0..16 {
        let Ok(Some(len)) = ldap::ber::frame_len(rest, 64 * 1024) else {
            let _ = ldap::ops::handle(&names, &mut state, rest, now);
            break;
        };
        let Some((frame, after)) = rest.split_at_checked(len) else {
            break;
        };
        let _ = ldap::ops::handle(&names, &mut state, frame, now);
        rest = after;
    }
}

/// TDS (MSSQL): message reassembly, PRELOGIN and LOGIN7.
pub fn tds_message(data: &[u8]) {
    let _ = shared::tds::Header::parse(data);
    let mut buf = BytesMut::from(data);
    for _ in 0..16 {
        match shared::tds::take_message(&mut buf, 64 * 1024) {
            Ok(Some((_, message))) => {
                let _ = mssql::wire::parse_prelogin(&message);
                let _ = mssql::login7::parse(&message);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _ = mssql::wire::parse_prelogin(data);
    let _ = mssql::login7::parse(data);
}

/// SMB2: header, NEGOTIATE, SESSION_SETUP's security blob, TREE_CONNECT, SMB1 dialects.
pub fn smb_message(data: &[u8]) {
    let _ = smb::wire::parse_header(data);
    let _ = smb::wire::parse_negotiate(data);
    let _ = smb::wire::tree_connect_path(data);
    let _ = smb::wire::smb1_dialects(data);
    if let Some(blob) = smb::wire::session_setup_blob(data) {
        ntlm_tokens(blob);
    }
}

/// NTLM and SPNEGO: tokens split at `0xff 0x00 0xff` fed in order to one server exchange, and
/// each parsed on its own.
pub fn ntlm_tokens(data: &[u8]) {
    let mut exchange = shared::ntlm::Exchange::new(ntlm_identity());
    for token in split(data).take(4) {
        let _ = shared::ntlm::message::message_type(token);
        let _ = shared::ntlm::message::parse_negotiate(token);
        if let Ok(auth) = shared::ntlm::message::parse_authenticate(token) {
            let _ = shared::ntlm::capture(&auth, &[1; 8]).extra();
        }
        let _ = shared::ntlm::client::read_challenge(token);
        let _ = shared::ntlm::spnego::parse_client(token);
        if exchange.step(token).is_err() {
            break;
        }
    }
}

fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let now = rest?;
        match now.windows(3).position(|w| w == [0xff, 0x00, 0xff]) {
            Some(at) => {
                rest = now.get(at.saturating_add(3)..);
                now.get(..at)
            }
            None => {
                rest = None;
                Some(now)
            }
        }
    })
}

/// RDP: TPKT, the X.224 connection request, CredSSP's TSRequest.
pub fn rdp_message(data: &[u8]) {
    if let Some(header) = data.first_chunk::<4>() {
        let _ = rdp::x224::tpkt_length(*header);
    }
    if let Some(request) = rdp::x224::parse_request(data) {
        let _ = rdp::x224::confirm(&request);
    }
    let _ = rdp::credssp::der_length(data);
    let _ = rdp::credssp::parse(data);
}

fn snmp_agent() -> Option<Arc<snmp::Agent>> {
    static AGENT: OnceLock<Option<Arc<snmp::Agent>>> = OnceLock::new();
    AGENT
        .get_or_init(|| {
            let config: snmp::SnmpConfig =
                serde_json::from_value(serde_json::json!({"communities": ["public"]})).ok()?;
            Some(Arc::new(snmp::Agent::new(config, "srv01")))
        })
        .clone()
}

/// SNMP: one pseudo-session answering each datagram (v1/v2c communities, v3 USM).
pub fn snmp_datagram(data: &[u8]) {
    let Some(agent) = snmp_agent() else {
        return;
    };
    let mut peer = snmp::Peer::new(agent);
    for datagram in split(data).take(4) {
        let mut out = Exchange::default();
        let _ = peer.handle(datagram, &mut out);
    }
}

fn dns_zone() -> Option<&'static dns::zone::Zone> {
    static ZONE: OnceLock<Option<dns::zone::Zone>> = OnceLock::new();
    ZONE.get_or_init(|| {
        let config: dns::DnsConfig = serde_json::from_value(serde_json::json!({})).ok()?;
        dns::build_zone(config, &context(Service::Dns, 53)).ok()
    })
    .as_ref()
}

/// DNS: a query over UDP and over TCP.
pub fn dns_message(data: &[u8]) {
    if let Some(zone) = dns_zone() {
        let _ = zone.answer(data, LOCAL, dns::zone::Transport::Udp);
        let _ = zone.answer(data, LOCAL, dns::zone::Transport::Tcp);
    }
}

/// VNC: the client's version line, and the DES challenge response over the first 8 bytes.
pub fn vnc_handshake(data: &[u8]) {
    for server in [
        vnc::RfbVersion::V33,
        vnc::RfbVersion::V37,
        vnc::RfbVersion::V38,
    ] {
        let _ = vnc::RfbVersion::negotiate(data, server);
    }
    let challenge = [7u8; 16];
    let _ = vnc::response_for(data.get(..8).unwrap_or(data), &challenge);
}

/// rsync: the client's greeting line and the digest names it offers.
pub fn rsync_greeting(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = rsync::parse_greeting(&text);
    for name in text.split_whitespace().take(8) {
        if let Some(digest) = rsync::Digest::from_name(name) {
            let _ = rsync::response_for(digest, "secret", "challenge");
        }
    }
}

/// The configuration: JSON, every section, validation.
pub fn config_text(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::parse(text, "<fuzz>");
    }
}

/// An HTTP skin: `config.yaml`, then after a NUL byte a template (`index.html`, also used as
/// `404.html`); the skin is loaded from a scratch folder and answers a few requests.
pub fn skin(data: &[u8]) {
    let (yaml, template) = match data.iter().position(|&b| b == 0) {
        Some(at) => (
            data.get(..at).unwrap_or(&[]),
            data.get(at.saturating_add(1)..).unwrap_or(&[]),
        ),
        None => (data, &b"{{ request.path }}"[..]),
    };
    let root = scratch_dir("skin");
    let dir = root.join("fuzzskin");
    let templates = dir.join("templates");
    if std::fs::create_dir_all(&templates).is_err()
        || std::fs::write(dir.join("config.yaml"), yaml).is_err()
        || std::fs::write(templates.join("index.html"), template).is_err()
        || std::fs::write(templates.join("404.html"), template).is_err()
    {
        return;
    }
    let Ok(skin) = http::skin::load("fuzzskin", std::slice::from_ref(&root), "srv01", "corp")
    else {
        return;
    };
    let request = http::skin::TemplateRequest {
        url: "http://srv01/".to_owned(),
        path: "/".to_owned(),
        method: "GET".to_owned(),
        headers: std::collections::HashMap::new(),
        body: None,
        remote: "192.0.2.7".to_owned(),
        cookies: std::collections::HashMap::new(),
        query_string: std::collections::HashMap::new(),
        content_type: None,
        host: Some("srv01".to_owned()),
        secure: false,
        scheme: "http".to_owned(),
        path_qs: "/".to_owned(),
        host_name: "srv01".to_owned(),
        port: 80,
    };
    for (method, path) in [("GET", "/"), ("POST", "/login"), ("GET", "/missing")] {
        let _ = skin.respond(method, path, "", &request);
    }
    let _ = skin.error(404, &request);
}

/// A scratch folder private to this process (fuzzers run several processes at once).
fn scratch_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sensor-fuzz-{what}-{}", std::process::id()))
}

/// A ring-buffer record, as the XDP program writes it.
pub fn ring_record(data: &[u8]) {
    let _ = crate::capture::decode::decode(data);
}

/// A captured frame through the userspace (libpcap) classifier.
pub fn pcap_frame(data: &[u8]) {
    let allow = [crate::net::cidr::Cidr {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)),
        prefix: 24,
    }];
    let _ = crate::capture::pcap::classify(data, 0, &[]);
    let _ = crate::capture::pcap::classify(data, 1, &allow);
}

/// A spool left by a crash: the input is split at `0xff 0x00 0xff` into a cursor file and up
/// to three segments; the spool opens, delivers everything in bounded steps, and takes more.
pub fn spool_segments(data: &[u8]) {
    let dir = scratch_dir("spool");
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let mut parts = split(data);
    if let Some(cursor) = parts.next() {
        let _ = std::fs::write(dir.join("cursor"), cursor);
    }
    for (id, segment) in parts.take(3).enumerate() {
        let _ = std::fs::write(
            dir.join(format!("{:020}.seg", id.saturating_add(1))),
            segment,
        );
    }
    if let Ok(mut spool) = crate::output::spool::Spool::open(&dir, 1 << 20) {
        let _ = spool.take_skipped();
        // Every record counted at open is either delivered or counted as skipped.
        let counted = spool.pending_records();
        let mut delivered = 0u64;
        let mut drained = false;
        for _ in 0..64 {
            match spool.peek(16) {
                Ok((records, bytes)) if !records.is_empty() => {
                    let n = records.len() as u64;
                    if spool.commit(bytes, n).is_err() {
                        break;
                    }
                    delivered += n;
                }
                Ok(_) => {
                    drained = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if drained {
            assert_eq!(
                delivered + spool.take_skipped() + spool.pending_records(),
                counted,
                "spool records counted at open went missing"
            );
        }
        let _ = spool.take_skipped();
        let _ = spool.push(&[&b"{\"after\":1}"[..]]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
