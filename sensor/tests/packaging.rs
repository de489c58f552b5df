//! The deployment files: the systemd unit passes `systemd-analyze verify` and grants exactly the
//! five documented capabilities; the man page and completions the package ships are generated
//! from the command line; the packaged default configuration passes `sensor check`.

use std::{path::PathBuf, process::Command};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn unit() -> String {
    std::fs::read_to_string(repo("packaging/trapster-sensor.service")).expect("the unit file")
}

/// Every `Key=value` of the unit (the last one of a repeated key wins, as in systemd).
fn setting(unit: &str, key: &str) -> String {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .next_back()
        .unwrap_or_else(|| panic!("{key}= missing"))
        .to_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sensor-packaging-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    // The unit as installed, with the binary under test in place of /usr/bin/sensor.
    let dir = scratch("unit");
    let path = dir.join("trapster-sensor.service");
    std::fs::write(
        &path,
        unit().replace("/usr/bin/sensor", env!("CARGO_BIN_EXE_sensor")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian systemd)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn the_unit_grants_only_the_five_capabilities_and_locks_the_system_down() {
    let unit = unit();
    let five = "CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_NET_BIND_SERVICE CAP_NET_RAW";
    assert_eq!(setting(&unit, "AmbientCapabilities"), five);
    assert_eq!(setting(&unit, "CapabilityBoundingSet"), five);
    assert_eq!(setting(&unit, "Type"), "notify");
    assert_eq!(setting(&unit, "User"), "trapster-sensor");
    assert_eq!(setting(&unit, "ProtectSystem"), "strict");
    assert_eq!(setting(&unit, "StateDirectory"), "trapster-sensor");
    assert_eq!(setting(&unit, "LogsDirectory"), "trapster-sensor");
    assert_eq!(setting(&unit, "Restart"), "on-failure");
    assert_eq!(setting(&unit, "NoNewPrivileges"), "yes");
    assert!(setting(&unit, "WatchdogSec").ends_with('s'));
}

#[test]
fn man_page_and_completions_are_generated_from_the_command_line() {
    let dir = scratch("assets");
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .arg("generate-assets")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let man = read("sensor.1");
    assert!(man.contains(".TH sensor 1"), "{man}");
    for sub in ["run", "check", "replay", "send\\-test"] {
        assert!(man.contains(sub), "{sub} in the man page");
    }
    assert!(read("sensor.bash").contains("complete -F _sensor"));
    assert!(read("_sensor").starts_with("#compdef sensor"));
    assert!(read("sensor.fish").contains("complete -c sensor"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_packaged_default_configuration_passes_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["check", "-c"])
        .arg(repo("sensor/src/config/default.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK (device `"));
}

#[test]
fn version_names_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let commit = text
        .strip_prefix(concat!("sensor ", env!("CARGO_PKG_VERSION"), " (commit "))
        .and_then(|rest| rest.trim_end().strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{commit}"
    );
}
