//! Trapster's HTTPS certificate keys: `key`/`certificate` files used as they are when both
//! exist, else generated there with `not_valid_before`/`not_valid_after`; checked with openssl.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> String {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is installed");
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write");
    }
    let out = child.wait_with_output().expect("openssl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start(dir: &std::path::Path, instances: &serde_json::Value) -> Guard {
    let config = serde_json::json!({
        "interface": "", "hostname": "WEB01",
        "services": {"https": instances},
        "sensor": {"services": {"state_dir": dir.join("state")}}
    });
    let path = dir.join("sensor.conf");
    std::fs::write(&path, config.to_string()).expect("config");
    Guard(
        Command::new(env!("CARGO_BIN_EXE_sensor"))
            .args(["run", "--capture", "none", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sensor"),
    )
}

fn wait(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "https never listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The certificate the server on `port` presents, as PEM.
fn served(port: u16) -> String {
    let text = openssl(
        &[
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-showcerts",
        ],
        Some(b""),
    );
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text.find("-----END CERTIFICATE-----").expect("its end") + 25;
    text[start..end].to_owned()
}

fn fingerprint(pem: &str) -> String {
    openssl(
        &["x509", "-noout", "-fingerprint", "-sha256"],
        Some(pem.as_bytes()),
    )
}

#[test]
fn key_and_certificate_files_are_generated_with_the_dates_then_reused() {
    let dir = std::env::temp_dir().join(format!("sensor-https-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key) = (dir.join("tls/cert.pem"), dir.join("tls/key.pem"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let instance = serde_json::json!([{
        "port": port, "common_name": "intranet.corp.example",
        "key": key, "certificate": cert,
        "not_valid_before": "2024-01-31", "not_valid_after": "2031-06-30T00:00:00"
    }]);
    let first = {
        let _sensor = start(&dir, &instance);
        wait(port);
        served(port)
    };
    let on_disk = std::fs::read_to_string(&cert).expect("certificate written where named");
    assert!(key.exists(), "key written where named");
    assert_eq!(fingerprint(&first), fingerprint(&on_disk));
    let dates = openssl(
        &["x509", "-noout", "-dates", "-subject"],
        Some(on_disk.as_bytes()),
    );
    assert!(
        dates.contains("notBefore=Jan 31 00:00:00 2024 GMT"),
        "{dates}"
    );
    assert!(
        dates.contains("notAfter=Jun 30 00:00:00 2031 GMT"),
        "{dates}"
    );
    assert!(dates.contains("intranet.corp.example"), "{dates}");
    // A pair that exists is served as it is, whatever the other keys say.
    let _ = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=real-server.corp.example",
            "-keyout",
            key.to_str().expect("utf-8"),
            "-out",
            cert.to_str().expect("utf-8"),
        ],
        None,
    );
    let mine = std::fs::read_to_string(&cert).expect("openssl wrote it");
    assert_ne!(fingerprint(&mine), fingerprint(&on_disk));
    let _sensor = start(&dir, &instance);
    wait(port);
    assert_eq!(fingerprint(&served(port)), fingerprint(&mine));
    let _ = std::fs::remove_dir_all(&dir);
}
