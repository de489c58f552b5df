//! JS-clone honeytokens with a real browser: headless Chromium (Debian `chromium`) loads a
//! "cloned" login page, served by this test on another loopback origin, that embeds the script
//! `sensor token js-clone` prints; the script's beacon reaches the HTTP decoy and the sensor
//! reports `honeytoken.js_clone` with the browser's headers, and a critical incident.

#[path = "support/ports.rs"]
mod ports;

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    ports::unused_port()
}

/// Serves `page` to every request on `listener` (bounded: at most 16 requests, 60 s).
fn serve_page(listener: TcpListener, page: String) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        for stream in listener.incoming().take(16) {
            if Instant::now() > deadline {
                break;
            }
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 2048];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65_536 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let (status, body) = if request.starts_with(b"GET /login") {
                ("200 OK", page.as_str())
            } else {
                ("404 Not Found", "")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

#[test]
fn chromium_loading_a_cloned_page_reports_honeytoken_js_clone() {
    let dir = std::env::temp_dir().join(format!("sensor-js-clone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let port = free_port();
    let events = dir.join("events.ndjson");
    let config = json!({
        "interface": "", "services": {"http": [{"port": port}]},
        "outputs": [{"format": "trapster", "receive": "both",
                     "transport": {"type": "file", "path": events}}],
        "sensor": {"services": {"state_dir": dir.join("state")},
                   "honeytokens": {"js_clone": [{"path": "/static/px.gif",
                                                 "origin": "https://portal.corp.example"}]}}
    });
    let path = dir.join("sensor.conf");
    std::fs::write(&path, config.to_string()).expect("config");
    let _sensor = Guard(
        Command::new(env!("CARGO_BIN_EXE_sensor"))
            .args(["run", "--capture", "none", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sensor"),
    );
    let script = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args([
            "token",
            "js-clone",
            "--origin",
            "https://portal.corp.example",
        ])
        .arg("--beacon")
        .arg(format!("http://127.0.0.1:{port}/static/px.gif"))
        .output()
        .expect("sensor token");
    assert!(script.status.success());
    let script = String::from_utf8(script.stdout).expect("utf-8 script");
    // The clone: the real page's markup and its script, served from another origin.
    let page = format!(
        "<!doctype html><html><head><title>Sign in</title>{script}</head>\
         <body><form method=post><input name=user><input name=pass type=password></form>\
         </body></html>"
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("page listener");
    let page_port = listener.local_addr().expect("addr").port();
    serve_page(listener, page);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "http never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let page_url = format!("http://127.0.0.1:{page_port}/login?next=%2Fhome");
    // Root in CI: Chromium refuses to run as root with its sandbox, hence --no-sandbox.
    let mut chromium = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .arg(&page_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed (cargo xtask deps --test)");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = chromium.try_wait().expect("wait chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = chromium.kill();
            let _ = chromium.wait();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut dom = String::new();
    if let Some(mut out) = chromium.stdout.take() {
        let _ = out.read_to_string(&mut dom);
    }
    assert!(status.success(), "chromium: {status}");
    assert!(dom.contains("Sign in"), "the page was not loaded: {dom}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let docs: Vec<Value> = loop {
        let docs: Vec<Value> = std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        if docs
            .iter()
            .any(|d| d["description"] == "Cloned page called home on HTTP")
            || Instant::now() > deadline
        {
            break docs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let clones: Vec<&Value> = docs
        .iter()
        .filter(|d| d["logtype"] == "honeytoken.js_clone")
        .collect();
    assert_eq!(clones.len(), 1, "{docs:#?}");
    let clone = clones[0];
    assert_eq!(
        (&clone["channel"], &clone["category"], &clone["action"]),
        (
            &json!("honeytoken"),
            &json!("js_clone"),
            &json!("event_new")
        )
    );
    assert_eq!(clone["dst_port"], port);
    assert_eq!(clone["src_ip"], "127.0.0.1");
    let headers = clone["extra"]["headers"].as_object().expect("headers");
    // The browser's own request, title-cased as Trapster writes them.
    assert_eq!(headers["Host"], format!("127.0.0.1:{port}"));
    assert_eq!(headers["Remote-Addr"], "127.0.0.1");
    assert_eq!(headers["Referer"], page_url.as_str(), "{headers:#?}");
    let agent = headers["User-Agent"].as_str().expect("User-Agent");
    assert!(agent.contains("Chrome/"), "{agent}");
    assert!(
        headers["Accept"]
            .as_str()
            .expect("Accept")
            .contains("image/"),
        "{headers:#?}"
    );
    // The image request the script made, as the browser labels it.
    assert_eq!(headers["Sec-Fetch-Dest"], "image", "{headers:#?}");
    assert_eq!(headers["Sec-Fetch-Mode"], "no-cors", "{headers:#?}");
    assert!(headers.contains_key("Accept-Language"), "{headers:#?}");
    for key in headers.keys() {
        let title = key
            .split('-')
            .all(|p| p.chars().next().is_some_and(char::is_uppercase));
        assert!(title, "header `{key}` is not title-cased");
    }
    // The beacon's query names the clone's address.
    let query = docs
        .iter()
        .find(|d| {
            d["logtype"] == "http.query"
                && d["extra"]["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("/static/px.gif?c="))
        })
        .expect("the http.query of the beacon");
    assert_eq!(
        query["extra"]["target"],
        format!("/static/px.gif?c=http%3A%2F%2F127.0.0.1%3A{page_port}%2Flogin%3Fnext%3D%252Fhome")
    );
    assert_eq!(query["src_port"], clone["src_port"]);
    assert!(
        docs.iter().any(|d| d["severity"] == "critical"
            && d["description"] == "Cloned page called home on HTTP"),
        "no critical incident: {docs:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
