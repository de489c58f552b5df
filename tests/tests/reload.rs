//! Configuration reload on SIGHUP: a changed whitelist takes effect without detaching (the XDP
//! link id stays the same, read with `bpftool`), and a broken configuration is refused while
//! the running one keeps working.

use std::time::Duration;

use serde_json::Value;
use tests::{
    net::{TestNet, run_bounded},
    require_root,
    sensor::{RunningSensor, test_config},
};

/// A SYN scan of `ports` from the peer namespace, bounded to a minute.
fn scan(net: &TestNet, ports: &str) {
    let mut cmd = net.peer.command("nmap");
    cmd.args(["-n", "-Pn", "-sS", "--max-retries", "1", "-T4", "-p", ports])
        .arg(&net.sensor_ip);
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "nmap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The id of the XDP link on the sensor's interface: the program id from `ip link`, then the
/// link of that program from `bpftool link`.
fn xdp_link_id(net: &TestNet) -> u64 {
    let out = run_bounded(
        std::process::Command::new("ip").args([
            "-n",
            &net.sensor.name,
            "-j",
            "link",
            "show",
            "dev",
            &net.sensor_if,
        ]),
        Duration::from_secs(10),
    );
    let link: Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    let prog = link[0]["xdp"]["prog"]["id"]
        .as_u64()
        .or_else(|| link[0]["xdp"]["progs"][0]["id"].as_u64())
        .unwrap_or_else(|| panic!("no XDP program on the interface: {link}"));
    let out = run_bounded(
        std::process::Command::new("bpftool").args(["-j", "link", "show"]),
        Duration::from_secs(10),
    );
    let links: Value = serde_json::from_slice(&out.stdout).expect("bpftool -j output");
    let ids: Vec<u64> = links
        .as_array()
        .expect("a list of links")
        .iter()
        .filter(|l| l["prog_id"].as_u64() == Some(prog) && l["type"] == "xdp")
        .filter_map(|l| l["id"].as_u64())
        .collect();
    assert_eq!(ids.len(), 1, "one XDP link for program {prog}: {links}");
    ids[0]
}

fn allow_listed(sensor: &RunningSensor) -> u64 {
    sensor
        .stats_now()
        .and_then(|s| s["kernel"]["allow_listed"].as_u64())
        .unwrap_or(0)
}

fn hangup(sensor: &RunningSensor) {
    // SAFETY: sending SIGHUP to our own child.
    assert_eq!(unsafe { libc::kill(sensor.pid(), libc::SIGHUP) }, 0);
}

fn portscans_from(events: &[Value], src: &str) -> usize {
    events
        .iter()
        .filter(|e| e["logtype"] == "portscan.query" && e["src_ip"] == src)
        .count()
}

#[test]
fn sighup_applies_a_new_whitelist_without_detaching_and_refuses_a_broken_file() {
    require_root!();
    let net = TestNet::new();
    let sensor = RunningSensor::start(&net.sensor, &test_config(&net.sensor_if, &[]), &[]);
    let link = xdp_link_id(&net);
    let config_path = sensor.dir().join("trapster.conf");

    // Before: the peer's scan is reported.
    scan(&net, "1-40");
    assert!(
        sensor.wait_for_events(Duration::from_secs(20), |e| {
            portscans_from(e, &net.peer_ip) == 1
        }),
        "the first scan was not reported: {:?}",
        sensor.events_now()
    );
    assert_eq!(allow_listed(&sensor), 0);

    // A whitelist naming the peer: its next scan is counted as allow-listed, not reported.
    let allowed = format!("{}/32", net.peer_ip);
    std::fs::write(
        &config_path,
        test_config(&net.sensor_if, &[allowed.as_str()]),
    )
    .unwrap();
    hangup(&sensor);
    let mut taken = false;
    for _ in 0..20 {
        scan(&net, "41-80");
        let stats = sensor.wait_for_stats(Duration::from_secs(3), |s| {
            s["kernel"]["allow_listed"].as_u64().unwrap_or(0) > 0
        });
        if stats["kernel"]["allow_listed"].as_u64().unwrap_or(0) > 0 {
            taken = true;
            break;
        }
    }
    assert!(taken, "the new whitelist never took effect");
    assert_eq!(xdp_link_id(&net), link, "the reload replaced the XDP link");

    // A broken file is refused: the whitelist in force stays.
    std::fs::write(&config_path, "{\"whitelist_ips\": [\"not-an-ip\"]").unwrap();
    hangup(&sensor);
    assert!(
        sensor.wait_for_log(
            Duration::from_secs(10),
            "Configuration reload refused; the running configuration stays.",
            1
        ),
        "the broken file was never refused"
    );
    let before = allow_listed(&sensor);
    scan(&net, "81-120");
    let stats = sensor.wait_for_stats(Duration::from_secs(10), |s| {
        s["kernel"]["allow_listed"].as_u64().unwrap_or(0) >= before + 40
    });
    assert!(
        stats["kernel"]["allow_listed"].as_u64().unwrap_or(0) >= before + 40,
        "the old whitelist stopped applying: {stats}"
    );
    assert_eq!(xdp_link_id(&net), link);
    // Past the idle timeout, still one scan reported from the peer: the whitelisted ones
    // never became events.
    std::thread::sleep(Duration::from_secs(4));
    let run = sensor.stop();
    assert!(run.clean_exit, "{:#?}", run.stderr);
    assert_eq!(
        portscans_from(&run.events, &net.peer_ip),
        1,
        "{:#?}",
        run.events
    );
    let stderr = run.stderr.join("\n");
    assert!(stderr.contains("Configuration reloaded."), "{stderr}");
    assert!(
        stderr.contains("Configuration reload refused; the running configuration stays."),
        "{stderr}"
    );
    assert!(stderr.contains("whitelist_ips"), "{stderr}");
}
