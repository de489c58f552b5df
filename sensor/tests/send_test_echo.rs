//! `sensor send-test` against receivers that echo the whole request back (request line,
//! headers, body) in their answer, as some debugging endpoints and misconfigured proxies do: the
//! answers are printed, and no secret of any output (URL path and query values, header values,
//! tokens, HMAC keys) appears on stdout or stderr, even with tracing at its most verbose.

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;

const SECRETS: &[&str] = &[
    "PATHSECRET-7f3a",
    "QSECRET-19be",
    "HDRSECRET-55c1",
    "HDR2SECRET-aa02",
    "HECSECRET-0b7d",
    "WHSECRET-3c9e",
    "HMACSECRET-77aa",
];

/// Reads one HTTP request (headers, then `Content-Length` bytes of body) within 10 s.
fn read_request(stream: &mut std::net::TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(n) = stream.read(&mut buf) else { break };
        if n == 0 {
            break;
        }
        request.extend_from_slice(buf.get(..n).unwrap_or_default());
        let text = String::from_utf8_lossy(&request).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text
                .get(..end)
                .unwrap_or_default()
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    request
}

/// An HTTP server that answers every request with 200 and the request itself as the body.
fn echo_server() -> (u16, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let (stopping, serving) = (Arc::clone(&stop), Arc::clone(&served));
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(60);
        while !stopping.load(Ordering::Relaxed) && Instant::now() < until {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let request = read_request(&mut stream);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                request.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&request);
            serving.fetch_add(1, Ordering::Relaxed);
        }
    });
    (port, stop, served)
}

#[test]
fn an_echoing_receiver_never_gets_a_secret_printed() {
    let (port, stop, served) = echo_server();
    let base = format!("http://127.0.0.1:{port}");
    let config = json!({
        "id": "fw01",
        "outputs": [
            {"name": "siem-api", "transport": {
                "type": "api",
                "url": format!("{base}/in/PATHSECRET-7f3a?key=QSECRET-19be"),
                "headers": {"Authorization": "Bearer HDRSECRET-55c1", "X-Api-Key": "HDR2SECRET-aa02"},
                "gzip": false}},
            {"name": "hec", "transport": {
                "type": "splunk_hec", "url": base, "token": "HECSECRET-0b7d", "gzip": false}},
            {"name": "hook", "transport": {
                "type": "webhook", "url": format!("{base}/hooks/WHSECRET-3c9e"),
                "hmac_secret": "HMACSECRET-77aa"}}
        ]
    });
    let dir = std::env::temp_dir().join(format!("sensor-send-test-echo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("sensor.json");
    std::fs::write(&path, config.to_string()).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["send-test", "-c", path.to_str().expect("path")])
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .output()
        .expect("send-test");
    stop.store(true, Ordering::Relaxed);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Every output reached the receiver, and its echoed answer was printed.
    assert!(served.load(Ordering::Relaxed) >= 3, "{stdout}{stderr}");
    for name in ["siem-api", "hec", "hook"] {
        assert!(stdout.contains(name), "{name} missing: {stdout}");
    }
    // The echoed request line and secret headers are printed masked.
    assert!(
        stdout.contains("POST *** HTTP/1.1") && stdout.contains("authorization: ***"),
        "the echo is printed, masked: {stdout}"
    );
    for secret in SECRETS {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed:\n{stdout}\n{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
