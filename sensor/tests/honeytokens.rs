//! URL honeytokens with a real client: `curl` fetching a token path on the HTTP decoy produces
//! `http.query`, then `honeytoken.url` with the request headers, and a critical incident.

use std::{
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

#[test]
fn curl_of_a_url_token_is_reported_with_its_headers() {
    let dir = std::env::temp_dir().join(format!("sensor-honeytokens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let events = dir.join("events.ndjson");
    let config = json!({
        "interface": "", "services": {"http": [{"port": port}]},
        "outputs": [{"format": "trapster", "receive": "both",
                     "transport": {"type": "file", "path": events}}],
        "sensor": {"services": {"state_dir": dir.join("state")},
                   "honeytokens": {"urls": [{"path": "/it/vpn-passwords.xlsx"}],
                                   "js_clone": [{"path": "/static/px.gif",
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "http never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    for target in ["/index.html", "/it/vpn-passwords.xlsx?download=1"] {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "10",
                "-A",
                "Mozilla/5.0 test",
            ])
            .args(["-H", "Accept-Language: fr"])
            .arg(format!("http://127.0.0.1:{port}{target}"))
            .output()
            .expect("curl is installed");
        assert!(out.status.success());
    }
    // The beacon as the script fetches it from a clone's page.
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
    let script = String::from_utf8_lossy(&script.stdout);
    assert!(
        script.contains(r#"var o="https://portal.corp.example""#),
        "{script}"
    );
    assert!(
        script.contains(&format!(r#"i.src="http://127.0.0.1:{port}/static/px.gif""#)),
        "{script}"
    );
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "-e",
            "https://portal-corp.example.net/login",
        ])
        .arg(format!(
            "http://127.0.0.1:{port}/static/px.gif?c=https%3A%2F%2Fportal-corp.example.net%2Flogin"
        ))
        .output()
        .expect("curl is installed");
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let docs: Vec<Value> = loop {
        let docs: Vec<Value> = std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        // Everything asserted below, not just the first of it: the events come in no set order.
        let complete = docs.iter().any(|d| {
            d["severity"] == "critical" && d["description"] == "Honeytoken URL fetched on HTTP"
        }) && docs.iter().any(|d| d["logtype"] == "honeytoken.js_clone")
            && docs.iter().any(|d| d["logtype"] == "honeytoken.url")
            && docs.iter().any(|d| {
                d["logtype"] == "http.query"
                    && d["extra"]["target"] == "/it/vpn-passwords.xlsx?download=1"
            });
        if complete || Instant::now() > deadline {
            break docs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let tokens: Vec<&Value> = docs
        .iter()
        .filter(|d| d["logtype"] == "honeytoken.url")
        .collect();
    assert_eq!(tokens.len(), 1, "{docs:#?}");
    let token = tokens[0];
    assert_eq!(
        token["extra"],
        json!({"headers": {"Host": format!("127.0.0.1:{port}"), "User-Agent": "Mozilla/5.0 test",
                           "Accept": "*/*", "Accept-Language": "fr", "Remote-Addr": "127.0.0.1"}})
    );
    assert_eq!(
        (&token["channel"], &token["category"]),
        (&json!("honeytoken"), &json!("url"))
    );
    assert_eq!(token["dst_port"], port);
    let query = docs
        .iter()
        .find(|d| {
            d["logtype"] == "http.query"
                && d["extra"]["target"] == "/it/vpn-passwords.xlsx?download=1"
        })
        .expect("the http.query of the fetch");
    assert_eq!(query["src_port"], token["src_port"]);
    assert!(
        docs.iter()
            .any(|d| d["severity"] == "critical"
                && d["description"] == "Honeytoken URL fetched on HTTP"),
        "{docs:#?}"
    );
    let clone = docs
        .iter()
        .find(|d| d["logtype"] == "honeytoken.js_clone")
        .expect("honeytoken.js_clone");
    assert_eq!(
        clone["extra"]["headers"]["Referer"],
        "https://portal-corp.example.net/login"
    );
    assert_eq!(clone["extra"]["headers"]["Remote-Addr"], "127.0.0.1");
    assert_eq!(clone["channel"], "honeytoken");
    assert_eq!(clone["category"], "js_clone");
    let _ = std::fs::remove_dir_all(&dir);
}
