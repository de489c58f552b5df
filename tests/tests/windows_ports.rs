//! Impacket's example scripts as an attacker runs them, on the ports they insist on: the
//! SMB decoy listens on 445 in the sensor's namespace and `smbclient.py` (which takes only
//! 139 or 445) dials it from the peer namespace. A password login gives an `smb.login` event
//! whose NetNTLMv2 line verifies against the password typed (recomputed here with MD4 and
//! HMAC-MD5, independently of the sensor's code); an anonymous session's `use` of a share is
//! an `smb.query` with its UNC path.

#[path = "../../sensor/tests/harness/ntlm.rs"]
mod ntlm;

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::{Value, json};
use tests::{
    net::{TestNet, run_bounded},
    require_root,
    sensor::RunningSensor,
};

const LIMIT: Duration = Duration::from_secs(60);

fn config(net: &TestNet, state: &std::path::Path) -> String {
    json!({
        "id": "it-sensor",
        "interface": net.sensor_if,
        "hostname": "dc01",
        "domain": "corp.local",
        "services": {"smb": [{"port": 445}]},
        "logger": {"output": "terminal", "format": "default", "kwargs": {}},
        "sensor": {
            "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1},
            "services": {"state_dir": state},
        }
    })
    .to_string()
}

/// Where pip put impacket's example scripts (`smbclient.py`, ...): the running Python's
/// scripts directory, whatever Python that is (a pyenv or the system's).
fn impacket_script(name: &str) -> PathBuf {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .expect("python3");
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let path = PathBuf::from(dir).join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo xtask deps --test` installs impacket",
        path.display()
    );
    path
}

/// Runs `smbclient.py args` in the peer namespace with `commands` on its standard input.
fn smbclient_py(net: &TestNet, args: &[&str], commands: &str) -> String {
    let script = impacket_script("smbclient.py");
    let input = std::env::temp_dir().join(format!("smbclient-py-{}", std::process::id()));
    std::fs::write(&input, commands).unwrap();
    let mut cmd = net.peer.command("python3");
    cmd.arg(&script).args(args);
    cmd.stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = run_bounded(&mut cmd, LIMIT);
    let _ = std::fs::remove_file(&input);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn of<'a>(events: &'a [Value], logtype: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["logtype"] == logtype).collect()
}

#[test]
fn impacket_smbclient_py_on_445_gives_a_login_that_verifies_and_a_share_query() {
    require_root!();
    let net = TestNet::new();
    let state = std::env::temp_dir().join(format!("windows-ports-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let sensor = RunningSensor::start(&net.sensor, &config(&net, &state), &[]);
    let target = |user: &str| format!("{user}@{}", net.sensor_ip);

    // A password login, as `smbclient.py CORP/bob:password@host` makes it.
    let text = smbclient_py(&net, &[&target("CORP/bob:Winter#2025")], "exit\n");
    assert!(text.contains("STATUS_LOGON_FAILURE"), "{text}");
    // An anonymous session that tries a share by hand.
    let text = smbclient_py(&net, &["-no-pass", &target("")], "use ADMIN$\nexit\n");
    assert!(text.contains("STATUS_ACCESS_DENIED"), "{text}");

    let ok = sensor.wait_for_events(LIMIT, |e| {
        of(e, "smb.login").len() >= 2 && !of(e, "smb.query").is_empty()
    });
    let run = sensor.stop();
    assert!(ok, "events: {:#?}\nstderr: {:#?}", run.events, run.stderr);
    let logins = of(&run.events, "smb.login");
    let bob = logins
        .iter()
        .find(|e| e["extra"]["username"] == "bob")
        .unwrap_or_else(|| panic!("no login of bob in {logins:#?}"));
    assert_eq!(bob["dst_port"], 445);
    assert_eq!(bob["src_ip"], net.peer_ip.as_str());
    assert_eq!(bob["extra"]["domain"], "CORP");
    ntlm::assert_netntlmv2(
        bob["extra"]["hashcat"].as_str().expect("a hashcat line"),
        "bob",
        "Winter#2025",
    );
    assert!(
        logins
            .iter()
            .any(|e| e["extra"]["ntlm_version"] == "anonymous"),
        "{logins:#?}"
    );
    let queries = of(&run.events, "smb.query");
    assert!(
        queries.iter().any(|q| q["extra"]["share"] == "ADMIN$"
            && q["extra"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("\\ADMIN$"))),
        "{queries:#?}"
    );
    let _ = std::fs::remove_dir_all(&state);
}
