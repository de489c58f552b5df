//! `sensor check`'s exit codes, as a CI script reads them: 0 valid (warnings printed, `run`
//! would start), 1 valid with warnings under `--strict`, 2 invalid (`run` would refuse; clap's
//! usage errors are 2 too).

use std::process::Command;

/// Runs the sensor; its exit code, stdout and stderr.
fn sensor(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run sensor");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sensor-cli-check-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn ftp_config(port: u16, instance_extra: &str, sensor: &str) -> String {
    format!(
        r#"{{"id": "s", "interface": "",
            "services": {{"ftp": [{{"port": {port}{instance_extra}}}]}},
            "logger": {{"name": "JsonLogger", "kwargs": {{}}}},
            "sensor": {{{sensor}}}}}"#
    )
}

#[test]
fn a_clean_configuration_exits_0_with_or_without_strict() {
    let path = temp_file("ok.conf", &ftp_config(free_port(), "", ""));
    let path = path.to_str().unwrap();
    for args in [
        &["check", "-c", path][..],
        &["check", "--strict", "-c", path],
    ] {
        let (code, stdout, stderr) = sensor(args);
        assert_eq!(code, Some(0), "{args:?}: {stdout}{stderr}");
        assert!(stdout.contains(": OK ("), "{stdout}");
        assert!(!stdout.contains("warning:"), "{stdout}");
    }
}

#[test]
fn warnings_exit_0_and_1_under_strict() {
    let path = temp_file(
        "warn.conf",
        &ftp_config(free_port(), r#", "bannr": "x""#, ""),
    );
    let path = path.to_str().unwrap();
    let (code, stdout, stderr) = sensor(&["check", "-c", path]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("warning: services.ftp[0].bannr: unknown key, ignored"),
        "{stdout}"
    );
    let (code, stdout, stderr) = sensor(&["check", "--strict", "-c", path]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("warning: services.ftp[0].bannr: unknown key, ignored"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 warning(s) and `--strict`: exit 1"),
        "{stderr}"
    );
}

#[test]
fn an_invalid_configuration_a_missing_file_and_a_bad_flag_exit_2() {
    let bad = temp_file(
        "bad.conf",
        &ftp_config(free_port(), "", r#""xdp": {"mode": "turbo"}"#),
    );
    let bad = bad.to_str().unwrap();
    let (code, stdout, stderr) = sensor(&["check", "-c", bad]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("sensor.xdp.mode"), "{stderr}");
    let (code, _, stderr) = sensor(&["check", "--strict", "-c", bad]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, _, stderr) = sensor(&["check", "-c", "/nonexistent/trapster.conf"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/trapster.conf"), "{stderr}");
    let (code, _, stderr) = sensor(&["check", "--no-such-flag", "-c", bad]);
    assert_eq!(code, Some(2), "{stderr}");
    // `run` keeps the ordinary failure code.
    let (code, _, stderr) = sensor(&["run", "--capture", "none", "-c", bad]);
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn a_busy_port_is_a_warning_and_an_error_under_sensor_services_strict() {
    let busy = std::net::TcpListener::bind("0.0.0.0:0").expect("hold a port");
    let port = busy.local_addr().expect("addr").port();
    let path = temp_file("busy.conf", &ftp_config(port, "", ""));
    let (code, stdout, stderr) = sensor(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("warning: services.ftp: port {port}: ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("this decoy would not start (the others would)"),
        "{stdout}"
    );
    let (code, stdout, stderr) = sensor(&["check", "--strict", "-c", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let strict = temp_file(
        "busy-strict.conf",
        &ftp_config(port, "", r#""services": {"strict": true}"#),
    );
    let (code, stdout, stderr) = sensor(&["check", "-c", strict.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(!stdout.contains(": OK ("), "{stdout}");
    assert!(
        stderr.contains(&format!("services.ftp: port {port}: "))
            && stderr.contains("with sensor.services.strict `run` would stop here"),
        "{stderr}"
    );
    drop(busy);
}
