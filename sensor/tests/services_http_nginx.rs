//! The nginx-style skins side by side with Debian's nginx 1.22 (`server_tokens off`, on a
//! loopback port with a config of its own in a temp dir): the refusals nginx makes before any
//! location handler, compared byte for byte (status line, header names in order, content type,
//! length and the built-in error page), and the 404 page of the appliance skin.

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod harness;
mod support;

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use harness::Harness;
use sensor::event::Service;
use serde_json::json;

/// Debian's nginx on a loopback port, stopped when dropped.
struct Nginx {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_nginx() -> Nginx {
    assert!(
        std::path::Path::new("/usr/sbin/nginx").exists(),
        "nginx is installed (xtask deps TEST)"
    );
    let dir = harness::temp_dir("nginx");
    let hold = support::PortHold::new();
    let port = hold.port();
    let d = dir.display();
    // Debian's nginx.conf and default site, with this test's paths and port.
    let config = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 64; }}\nhttp {{\n include /etc/nginx/mime.types;\n default_type application/octet-stream;\n sendfile on;\n tcp_nopush on;\n keepalive_timeout 65;\n server_tokens off;\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n server {{\n  listen 127.0.0.1:{port} default_server;\n  root /var/www/html;\n  index index.html index.htm index.nginx-debian.html;\n  server_name _;\n  location / {{ try_files $uri $uri/ =404; }}\n }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    drop(hold);
    let mut child = Command::new("/usr/sbin/nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    assert!(
        support::wait_serving(&mut child, &[(port, false)], Duration::from_secs(15)),
        "nginx listens: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    Nginx { child, port, dir }
}

/// Sends `request` and reads until the server closes (at most 10 s).
fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The response with its `Date` value masked.
fn masked(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .map(|line| {
            if line.starts_with("Date: ") {
                "Date: D"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

const CLOSE: &str = "Host: x\r\nConnection: close\r\n\r\n";

/// The requests nginx refuses itself, and one for a page neither has.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let long = "a".repeat(9000);
    let big = "b".repeat(9000);
    vec![
        ("trace", format!("TRACE / HTTP/1.1\r\n{CLOSE}").into_bytes()),
        (
            "lowercase",
            format!("get / HTTP/1.1\r\n{CLOSE}").into_bytes(),
        ),
        (
            "no_host",
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "bad_escape",
            format!("GET /%zz HTTP/1.1\r\n{CLOSE}").into_bytes(),
        ),
        (
            "above_root",
            format!("GET /../../etc/passwd HTTP/1.1\r\n{CLOSE}").into_bytes(),
        ),
        (
            "long_uri",
            format!("GET /{long} HTTP/1.1\r\n{CLOSE}").into_bytes(),
        ),
        (
            "big_header",
            format!("GET / HTTP/1.1\r\nX-Big: {big}\r\n{CLOSE}").into_bytes(),
        ),
        (
            "http_2_5",
            format!("GET / HTTP/2.5\r\n{CLOSE}").into_bytes(),
        ),
        (
            "tls_on_plain",
            b"\x16\x03\x01\x00\x05hello\r\n\r\n".to_vec(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_refusals_are_byte_for_byte_nginxs() {
    let nginx = start_nginx();
    let real: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    let h = Harness::start(
        json!({"http": [{"port": 0, "skin": "appliance_login"}]}),
        json!({}),
    )
    .await;
    let decoy = h.addr(Service::Http);
    let pairs = tokio::task::spawn_blocking(move || {
        cases()
            .into_iter()
            .map(|(name, req)| (name, masked(&raw(real, &req)), masked(&raw(decoy, &req))))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (name, real, decoy) in &pairs {
        assert!(
            real.starts_with("HTTP/1.1 4") || real.starts_with("HTTP/1.1 5"),
            "{name}: {real}"
        );
        assert_eq!(real, decoy, "{name}");
    }
    // The appliance's 404 is nginx's page (its headers are the application's).
    let missing = format!("GET /nope HTTP/1.1\r\n{CLOSE}").into_bytes();
    let (real_404, decoy_404) = tokio::task::spawn_blocking(move || {
        (masked(&raw(real, &missing)), masked(&raw(decoy, &missing)))
    })
    .await
    .unwrap();
    let body = |r: &str| r.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap();
    assert!(real_404.starts_with("HTTP/1.1 404 Not Found\r\nServer: nginx\r\n"));
    assert!(decoy_404.starts_with("HTTP/1.1 404 Not Found\r\nServer: nginx\r\n"));
    assert_eq!(body(&real_404), body(&decoy_404));
    h.stop().await;
    drop(nginx);
}
