//! The command line as a Trapster user meets it: Trapster's own shipped `trapster.conf` (from
//! the PyPI package, ports rewritten only), `sensor -c FILE` with no subcommand,
//! `show-config` with secrets masked, and secrets from the environment named at `check`.

mod trapster;

use std::process::Command;

use serde_json::Value;

fn sensor(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .output()
        .expect("run sensor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The warnings `check` gives for Trapster 1.2.3's shipped file, as the README documents them:
/// the protocols this version does not emulate, and the demo skin served by a built-in one.
const SHIPPED_WARNINGS: &[&str] = &[
    "warning: services.http[0].skin: skin `demo_api` is not in the skin directories nor built \
     in: the built-in `json_api` (same kind) is served instead",
    "warning: services.https[0].skin: skin `demo_api` is not in the skin directories nor built \
     in: the built-in `json_api` (same kind) is served instead",
    // Every one of Trapster's 15 services is emulated, its DNS forwarder (`target_dns`) too.
];

#[test]
fn trapsters_shipped_configuration_passes_check_with_the_documented_warnings() {
    let Some(trapster) = trapster::install() else {
        return;
    };
    let text = std::fs::read_to_string(trapster.package.join("data/trapster.conf")).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    let services = config["services"].as_object_mut().unwrap();
    let count: usize = services.values().map(|v| v.as_array().unwrap().len()).sum();
    let ports = trapster::free_ports(count);
    let mut next = ports.iter();
    for instances in services.values_mut() {
        for instance in instances.as_array_mut().unwrap() {
            instance["port"] = Value::from(*next.next().unwrap());
        }
    }
    let dir = trapster::temp_dir("cli-trapster");
    let path = dir.join("trapster.conf");
    std::fs::write(&path, config.to_string()).unwrap();
    let (ok, stdout, stderr) = sensor(&["check", "-c", path.to_str().unwrap()], &[]);
    assert!(ok, "{stderr}");
    let mut warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    warnings.sort_unstable();
    let mut want = SHIPPED_WARNINGS.to_vec();
    want.sort_unstable();
    assert_eq!(warnings, want, "{stdout}");
    // `run` starts every service it emulates, the demo skin served by the built-in one.
    let log = dir.join("sensor.log");
    let _sensor = {
        let file = std::fs::File::create(&log).unwrap();
        trapster::Guard(
            Command::new(env!("CARGO_BIN_EXE_sensor"))
                .args(["run", "--capture", "none", "-c", path.to_str().unwrap()])
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap(),
        )
    };
    // Every service Trapster ships listens (SNMP on UDP only, DNS on UDP and TCP).
    let emulated: Vec<u16> = [
        "ftp", "http", "https", "ssh", "mysql", "postgres", "telnet", "ldap", "ldaps", "mssql",
        "rdp", "vnc", "rsync", "dns",
    ]
    .iter()
    .map(|s| u16::try_from(config["services"][s][0]["port"].as_u64().unwrap()).unwrap())
    .collect();
    trapster::wait_listening(&emulated, "sensor", &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("fallback=\"json_api\""), "{text}");
    assert!(!text.contains("Decoy not started"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn show_config_masks_secrets_and_a_missing_variable_is_named_at_check() {
    let dir = trapster::temp_dir("cli-show");
    let path = dir.join("s.conf");
    std::fs::write(
        &path,
        r#"{"id": "s1", "services": {"http": [{"port": 8080, "password": "decoy-pw"}]},
            "outputs": [{"name": "hec", "transport": {"type": "splunk_hec",
              "url": "https://hec.example:8088/services/collector",
              "token": {"env": "SENSOR_CLI_TEST_HEC_TOKEN"}}}]}"#,
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (ok, _, stderr) = sensor(&["check", "-c", p], &[]);
    assert!(!ok);
    assert!(stderr.contains("outputs[0].transport"), "{stderr}");
    assert!(
        stderr.contains("environment variable `SENSOR_CLI_TEST_HEC_TOKEN` is not set"),
        "{stderr}"
    );
    let env = [("SENSOR_CLI_TEST_HEC_TOKEN", "hec-s3cret-value")];
    let (ok, stdout, stderr) = sensor(&["show-config", "-c", p], &env);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("hec-s3cret-value") && !stderr.contains("hec-s3cret-value"));
    assert!(!stdout.contains("decoy-pw"), "{stdout}");
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        shown["outputs"][0]["transport"]["token"],
        serde_json::json!({"env": "SENSOR_CLI_TEST_HEC_TOKEN"})
    );
    assert_eq!(
        shown["outputs"][0]["transport"]["url"],
        "https://hec.example:8088/***"
    );
    assert_eq!(shown["effective"]["outputs"][0]["transport"], "splunk_hec");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dash_c_without_a_subcommand_is_run() {
    // `run` with no interface and the default XDP capture says how to name one: so does
    // `sensor -c FILE`, proving it took the `run` path with that file.
    let dir = trapster::temp_dir("cli-dash-c");
    let path = dir.join("t.conf");
    std::fs::write(&path, r#"{"id": "dash-c", "interface": ""}"#).unwrap();
    let (ok_run, _, run_err) = sensor(&["run", "-c", path.to_str().unwrap()], &[]);
    let (ok, stdout, stderr) = sensor(&["-c", path.to_str().unwrap()], &[]);
    assert!(!ok && !ok_run);
    assert!(stdout.is_empty());
    assert!(stderr.contains("-i IFACE"), "{stderr}");
    let last = |s: &str| {
        s.lines()
            .last()
            .unwrap_or("")
            .split_once("ERROR")
            .map(|(_, m)| m.to_owned())
    };
    assert_eq!(last(&stderr), last(&run_err));
    let (ok, _, stderr) = sensor(&["-c", "/nonexistent/trapster.conf"], &[]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/trapster.conf"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
