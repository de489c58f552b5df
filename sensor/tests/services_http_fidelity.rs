//! The Apache skin side by side with Debian's Apache 2.4 (`apache2 -X`, its stock modules and
//! `security.conf`, on a loopback port with a config of its own in a temp dir): raw requests
//! compared case by case (status, header names, `Allow`, content type, error page), nmap's
//! `http-methods`, `http-headers` and `http-title` on both; and the TLS shape every TLS decoy
//! shares (RSA 2048 snakeoil-like certificate, server cipher preference).

#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod harness;
mod support;

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use harness::Harness;
use sensor::event::Service;
use serde_json::json;

/// One response: status code, headers in order, body.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Seconds until the server closed.
    closed_after: f64,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Header names, without the ones whose presence depends on the moment.
    fn names(&self) -> Vec<String> {
        self.headers
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k != "Date")
            .collect()
    }

    /// The body with the Apache version and the port made neutral (the skin claims 2.4.62).
    fn page(&self, port: u16) -> String {
        let text = String::from_utf8_lossy(&self.body).into_owned();
        let re = regex_lite(&text);
        re.replace(&format!("Port {port}<"), "Port P<")
    }
}

/// `Apache/2.4.NN (Debian)` → `Apache/2.4.x (Debian)`.
fn regex_lite(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("Apache/2.4.") {
        out.push_str(&rest[..i]);
        out.push_str("Apache/2.4.x");
        rest = rest[i + "Apache/2.4.".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// Sends `request` and reads until the server closes (at most `limit`).
fn raw(addr: SocketAddr, request: &[u8], limit: Duration) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn parse(bytes: &[u8], closed_after: f64) -> Reply {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_owned(), v.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
        closed_after,
    }
}

fn ask(addr: SocketAddr, request: &str) -> Reply {
    ask_within(addr, request, Duration::from_secs(10))
}

fn ask_within(addr: SocketAddr, request: &str, limit: Duration) -> Reply {
    let start = Instant::now();
    let bytes = raw(addr, request.as_bytes(), limit);
    parse(&bytes, start.elapsed().as_secs_f64())
}

const CLOSE: &str = "Host: x\r\nConnection: close\r\n\r\n";

/// The raw cases: (name, request).
fn cases() -> Vec<(&'static str, String)> {
    let long = "a".repeat(9000);
    vec![
        ("get", format!("GET / HTTP/1.1\r\n{CLOSE}")),
        ("head", "HEAD / HTTP/1.0\r\n\r\n".to_owned()),
        ("options", format!("OPTIONS / HTTP/1.1\r\n{CLOSE}")),
        (
            "post",
            format!("POST / HTTP/1.1\r\nContent-Length: 3\r\n{CLOSE}abc"),
        ),
        (
            "put",
            format!("PUT / HTTP/1.1\r\nContent-Length: 3\r\n{CLOSE}abc"),
        ),
        ("delete", format!("DELETE /index.html HTTP/1.1\r\n{CLOSE}")),
        ("trace", format!("TRACE / HTTP/1.1\r\n{CLOSE}")),
        ("unknown", format!("FOO / HTTP/1.1\r\n{CLOSE}")),
        ("lowercase", format!("get / HTTP/1.1\r\n{CLOSE}")),
        ("missing", format!("GET /nope HTTP/1.1\r\n{CLOSE}")),
        (
            "no_host",
            "GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
        ),
        ("bad_escape", format!("GET /%zz HTTP/1.1\r\n{CLOSE}")),
        ("long_uri", format!("GET /{long} HTTP/1.1\r\n{CLOSE}")),
        (
            "logo",
            format!("GET /icons/openlogo-75.png HTTP/1.1\r\n{CLOSE}"),
        ),
    ]
}

fn decoy_http() -> serde_json::Value {
    json!({
        "http": [{"port": 0, "skin": "default_apache"}],
        "https": [{"port": 0, "skin": "default_apache", "common_name": "www.corp.example"}]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apache_skin_answers_raw_requests_as_apache_does() {
    let h = Harness::start(decoy_http(), json!({})).await;
    let addr = h.addr(Service::Http);
    let port = addr.port();
    let got = tokio::task::spawn_blocking(move || {
        cases()
            .into_iter()
            .map(|(name, req)| (name, ask(addr, &req)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let by = |n: &str| got.iter().find(|(name, _)| *name == n).unwrap().1.clone();
    let names = |r: &Reply| r.names().join(",");

    let get = by("get");
    assert_eq!(get.status, 200);
    assert_eq!(
        names(&get),
        "Server,Last-Modified,ETag,Accept-Ranges,Content-Length,Vary,Connection,Content-Type"
    );
    assert_eq!(get.header("Content-Length"), Some("10701"));
    assert_eq!(get.body.len(), 10701);
    assert_eq!(
        get.header("ETag").unwrap().split('-').next(),
        Some("\"29cd")
    );
    assert_eq!(get.header("Vary"), Some("Accept-Encoding"));
    assert!(
        String::from_utf8_lossy(&get.body)
            .contains("<title>Apache2 Debian Default Page: It works</title>")
    );

    let head = by("head");
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("Content-Length"), Some("10701"));

    let options = by("options");
    assert_eq!(options.status, 200);
    assert_eq!(options.header("Allow"), Some("POST,OPTIONS,HEAD,GET"));
    assert_eq!(
        names(&options),
        "Server,Allow,Content-Length,Connection,Content-Type"
    );
    assert_eq!(options.header("Content-Length"), Some("0"));

    let post = by("post");
    assert_eq!((post.status, post.body.len()), (200, 10701));

    for (case, method) in [("put", "PUT"), ("delete", "DELETE")] {
        let r = by(case);
        assert_eq!(r.status, 405, "{case}");
        assert_eq!(r.header("Allow"), Some("POST,OPTIONS,HEAD,GET"));
        assert_eq!(
            r.header("Content-Type"),
            Some("text/html; charset=iso-8859-1")
        );
        assert!(r.page(port).contains(&format!(
            "<p>The requested method {method} is not allowed for this URL.</p>\n<hr>\n<address>Apache/2.4.x (Debian) Server at x Port P</address>"
        )));
    }
    let trace = by("trace");
    assert_eq!((trace.status, trace.header("Allow")), (405, Some("")));
    for (case, method) in [("unknown", "FOO"), ("lowercase", "get")] {
        let r = by(case);
        assert_eq!(r.status, 501, "{case}");
        assert_eq!(r.header("Allow"), Some("POST,OPTIONS,HEAD,GET"));
        assert!(r.page(port).contains(&format!(
            "<p>{method} not supported for current URL.<br />\n</p>"
        )));
    }
    let missing = by("missing");
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("Content-Type"),
        Some("text/html; charset=iso-8859-1")
    );
    assert_eq!(
        names(&missing),
        "Server,Content-Length,Connection,Content-Type"
    );
    assert!(
        missing
            .page(port)
            .starts_with("<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"")
    );
    assert!(missing.page(port).ends_with("</body></html>\n"));

    let no_host = by("no_host");
    assert_eq!(no_host.status, 400);
    assert!(no_host.page(port).contains("Server at 127.0.0.1 Port P"));
    assert_eq!(by("bad_escape").status, 400);
    let long = by("long_uri");
    assert_eq!(long.status, 414);
    assert!(long.page(port).contains(
        "<p>The requested URL's length exceeds the capacity\nlimit for this server.<br />\n</p>"
    ));
    let logo = by("logo");
    assert_eq!(logo.status, 200);
    assert_eq!(logo.header("Content-Type"), Some("image/png"));
    assert_eq!(logo.body.len(), 5754);
    assert_eq!(
        names(&logo),
        "Server,Last-Modified,ETag,Accept-Ranges,Content-Length,Connection,Content-Type"
    );

    // HTTP/0.9: the page alone.
    let nine =
        tokio::task::spawn_blocking(move || raw(addr, b"GET /\r\n", Duration::from_secs(10)))
            .await
            .unwrap();
    assert_eq!(nine.len(), 10701);
    assert!(nine.starts_with(b"<!DOCTYPE html"));

    // Plain HTTP on the TLS port: mod_ssl's 400 page.
    let https = h.addr(Service::Https);
    let plain =
        tokio::task::spawn_blocking(move || ask(https, &format!("GET / HTTP/1.1\r\n{CLOSE}")))
            .await
            .unwrap();
    assert_eq!(plain.status, 400);
    assert!(String::from_utf8_lossy(&plain.body).contains("Reason: You're speaking plain HTTP to an SSL-enabled server port.<br />\n Instead use the HTTPS scheme to access this URL, please.<br />\n</p>"));
    assert_eq!(
        plain.header("Content-Type"),
        Some("text/html; charset=iso-8859-1")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_ends_at_five_seconds_and_a_stalled_request_gets_408() {
    let h = Harness::start(decoy_http(), json!({})).await;
    let addr = h.addr(Service::Http);
    let (kept, stalled) = tokio::task::spawn_blocking(move || {
        let kept = ask(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let stalled = ask_within(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\n",
            Duration::from_secs(30),
        );
        (kept, stalled)
    })
    .await
    .unwrap();
    assert_eq!(kept.header("Keep-Alive"), Some("timeout=5, max=100"));
    assert!(
        (4.5..7.0).contains(&kept.closed_after),
        "{}",
        kept.closed_after
    );
    assert_eq!(stalled.status, 408);
    assert!(
        String::from_utf8_lossy(&stalled.body)
            .contains("<p>Server timeout waiting for the HTTP request from the client.</p>")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_appliance_skin_redirects_with_a_page_and_an_absolute_location() {
    let h = Harness::start(
        json!({"http": [{"port": 0, "skin": "appliance_login"}]}),
        json!({}),
    )
    .await;
    let addr = h.addr(Service::Http);
    let r = tokio::task::spawn_blocking(move || {
        ask(
            addr,
            "GET / HTTP/1.1\r\nHost: fw.corp\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("http://fw.corp/login"));
    assert!(String::from_utf8_lossy(&r.body).contains("<head><title>302 Found</title></head>"));
}

/// Debian's Apache on a loopback port, killed when dropped.
struct Apache {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_apache() -> Apache {
    assert!(
        std::path::Path::new("/usr/sbin/apache2").exists(),
        "apache2 is installed (xtask deps TEST)"
    );
    let dir = harness::temp_dir("apache");
    let hold = support::PortHold::new();
    let port = hold.port();
    let d = dir.display();
    let user = if nix_is_root() {
        "User www-data\nGroup www-data\n"
    } else {
        ""
    };
    // Debian's apache2.conf with the paths of this test, and the stock enabled modules and
    // conf snippets (the access log one needs the init script's variables: left out).
    let config = format!(
        "ServerRoot /etc/apache2\nServerName 127.0.0.1\nDefaultRuntimeDir {d}\nPidFile {d}/apache.pid\nMutex file:{d} default\nTimeout 300\nKeepAlive On\nMaxKeepAliveRequests 100\nKeepAliveTimeout 5\n{user}HostnameLookups Off\nErrorLog {d}/error.log\nLogLevel warn\nIncludeOptional mods-enabled/*.load\nIncludeOptional mods-enabled/*.conf\nListen 127.0.0.1:{port}\n<Directory />\n Options FollowSymLinks\n AllowOverride None\n Require all denied\n</Directory>\n<Directory /usr/share>\n AllowOverride None\n Require all granted\n</Directory>\n<Directory /var/www/>\n Options Indexes FollowSymLinks\n AllowOverride None\n Require all granted\n</Directory>\nAccessFileName .htaccess\n<FilesMatch \"^\\.ht\">\n Require all denied\n</FilesMatch>\nInclude conf-available/charset.conf\nInclude conf-available/localized-error-pages.conf\nInclude conf-available/security.conf\n<VirtualHost *:{port}>\n DocumentRoot /var/www/html\n</VirtualHost>\n"
    );
    let path = dir.join("httpd.conf");
    std::fs::write(&path, config).unwrap();
    drop(hold);
    let mut child = Command::new("/usr/sbin/apache2")
        .arg("-X")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apache2 starts");
    assert!(
        support::wait_serving(&mut child, &[(port, false)], Duration::from_secs(15)),
        "apache2 listens: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    Apache { child, port, dir }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_requests_get_what_debians_apache_answers() {
    let apache = start_apache();
    let real: SocketAddr = ([127, 0, 0, 1], apache.port).into();
    let h = Harness::start(decoy_http(), json!({})).await;
    let decoy = h.addr(Service::Http);
    let (real_port, decoy_port) = (real.port(), decoy.port());
    let pairs = tokio::task::spawn_blocking(move || {
        cases()
            .into_iter()
            .map(|(name, req)| (name, ask(real, &req), ask(decoy, &req)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (name, real, decoy) in &pairs {
        assert_eq!(real.status, decoy.status, "{name}: status");
        assert_eq!(real.names(), decoy.names(), "{name}: header names");
        // Apache lists `Allow` from an APR hash seeded per process: the order changes from one
        // start to the next, the set does not.
        let allow = |r: &Reply| {
            let mut m: Vec<String> = r
                .header("Allow")
                .map(|a| a.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            m.sort();
            m
        };
        assert_eq!(allow(real), allow(decoy), "{name}: Allow");
        for header in ["Content-Type", "Accept-Ranges", "Vary", "Connection"] {
            assert_eq!(
                real.header(header),
                decoy.header(header),
                "{name}: {header}"
            );
        }
        if real.status >= 400 {
            assert_eq!(
                real.page(real_port),
                decoy.page(decoy_port),
                "{name}: error page"
            );
        } else if *name != "logo" {
            assert_eq!(
                real.header("Content-Length"),
                decoy.header("Content-Length"),
                "{name}"
            );
        }
    }

    // nmap's view of both.
    let scan = |port: u16| {
        let out = Command::new("nmap")
            // -sV (light) names the service http on a high port, so the scripts run.
            .args(["-Pn", "-n", "-sV", "--version-intensity", "1"])
            .args(["--script", "http-methods,http-headers,http-title", "-p"])
            .arg(port.to_string())
            .arg("127.0.0.1")
            .output()
            .expect("nmap runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| {
                let l = regex_lite(l);
                let l = l.replace(&port.to_string(), "P");
                // Dates and the validators differ by nature; keep the header name.
                match l.split_once(": ") {
                    Some((k, _)) if ["|   Date", "|   Last-Modified", "|   ETag"].contains(&k) => {
                        k.to_owned()
                    }
                    Some((k, methods)) if k.ends_with("Supported Methods") => {
                        let mut m: Vec<&str> = methods.split(' ').collect();
                        m.sort_unstable();
                        format!("{k}: {}", m.join(" "))
                    }
                    _ => l,
                }
            })
            .fold(Vec::<Vec<String>>::new(), |mut blocks, line| {
                // A script's block starts at `| name:` or `|_name:`; nmap prints them in the
                // order the scripts finish.
                let starts = line.get(2..3).is_some_and(|c| c != " ");
                match blocks.last_mut() {
                    Some(block) if !starts => block.push(line),
                    _ => blocks.push(vec![line]),
                }
                blocks
            })
    };
    let (real_scan, decoy_scan) = tokio::task::spawn_blocking(move || {
        let real = std::thread::spawn(move || scan(real_port));
        let decoy = scan(decoy_port);
        (real.join().unwrap(), decoy)
    })
    .await
    .unwrap();
    let (mut real_scan, mut decoy_scan) = (real_scan, decoy_scan);
    real_scan.sort();
    decoy_scan.sort();
    assert_eq!(real_scan.len(), 3, "{real_scan:?}");
    assert_eq!(real_scan, decoy_scan);
    drop(apache);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_decoys_present_an_rsa_2048_certificate_shaped_as_debians_snakeoil() {
    let h = Harness::start(decoy_http(), json!({})).await;
    let https = h.addr(Service::Https);
    let pem = tokio::task::spawn_blocking(move || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {https} </dev/null 2>/dev/null | openssl x509 -noout -text"
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap();
    assert!(pem.contains("Public-Key: (2048 bit)"), "{pem}");
    assert!(pem.contains("Signature Algorithm: sha256WithRSAEncryption"));
    let exts: Vec<&str> = pem
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("X509v3 ") && !l.starts_with("X509v3 extensions"))
        .collect();
    assert_eq!(
        exts,
        [
            "X509v3 Basic Constraints:",
            "X509v3 Subject Alternative Name:",
            "X509v3 Subject Key Identifier:"
        ]
    );
    assert!(pem.contains("CA:FALSE"));
    assert!(pem.contains("DNS:www.corp.example"));
    let not_before = pem.lines().find(|l| l.contains("Not Before")).unwrap();
    assert!(!not_before.contains("00:00:00"), "{not_before}");

    // A client preferring AES128 in TLS 1.2: Debian's Apache (SSLHonorCipherOrder off) follows
    // it; nginx (Debian's `ssl_prefer_server_ciphers on`) and the other decoys pick AES256.
    let choose = |addr: SocketAddr| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {addr} -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384 </dev/null 2>/dev/null"
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let other = Harness::start(
        json!({"https": [{"port": 0, "skin": "appliance_login"}]}),
        json!({}),
    )
    .await;
    let nginx = other.addr(Service::Https);
    let (apache, appliance) = tokio::task::spawn_blocking(move || (choose(https), choose(nginx)))
        .await
        .unwrap();
    assert!(
        apache.contains("Cipher is ECDHE-RSA-AES128-GCM-SHA256"),
        "{apache}"
    );
    assert!(
        appliance.contains("Cipher is ECDHE-RSA-AES256-GCM-SHA384"),
        "{appliance}"
    );
}
