//! The command line as a user meets it, without privileges: `check` and configuration errors.

use std::process::Command;

fn sensor(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run sensor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sensor-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

#[test]
fn check_accepts_the_community_file() {
    let path = temp_file(
        "ok.conf",
        r#"{"id": "trapster-1", "interface": "", "whitelist_ips": ["127.0.0.1"],
            "services": {"ftp": [{"port": 2121, "banner": "Microsoft FTP Service"}]},
            "logger": {"name": "JsonLogger", "kwargs": {}}}"#,
    );
    let (ok, stdout, stderr) = sensor(&["check", "-c", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn check_names_field_line_and_column() {
    let path = temp_file(
        "bad.conf",
        "{\n  \"id\": \"s\",\n  \"sensor\": {\n    \"xdp\": {\"mode\": \"turbo\"}\n  }\n}\n",
    );
    let (ok, stdout, stderr) = sensor(&["check", "-c", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    for needle in ["bad.conf", "sensor.xdp.mode", "turbo", "line 4", "column"] {
        assert!(stderr.contains(needle), "missing `{needle}` in: {stderr}");
    }
}

#[test]
fn check_reports_a_missing_file() {
    let (ok, _, stderr) = sensor(&["check", "-c", "/nonexistent/trapster.conf"]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/trapster.conf"), "{stderr}");
}

#[test]
fn run_without_an_interface_says_how_to_name_one() {
    let (ok, stdout, stderr) = sensor(&["run"]);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(stderr.contains("-i IFACE"), "{stderr}");
}
