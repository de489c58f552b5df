//! Attaching: generic and native mode on a veth, the CLI's mode switch, clean detach on
//! SIGTERM and no program left behind after `kill -9` (BPF links).

use std::time::Duration;

use sensor::{
    capture::xdp::{AttachedMode, LoadOptions, load},
    config::XdpMode,
};
use sensor_common::Settings;
use tests::{
    net::{TestNet, xdp_mode},
    require_root,
    sensor::{RunningSensor, test_config},
};

fn options() -> LoadOptions {
    LoadOptions {
        ring_buffer_bytes: 1 << 16,
        settings: Settings::DEFAULT,
        ..LoadOptions::default()
    }
}

#[test]
fn attaches_in_generic_and_native_mode() {
    require_root!();
    let net = TestNet::new();
    for (mode, want, kernel_mode) in [
        (XdpMode::Skb, AttachedMode::Generic, 2),
        (XdpMode::Drv, AttachedMode::Driver, 1),
        (XdpMode::Auto, AttachedMode::Driver, 1),
    ] {
        let (ns, iface) = (net.sensor.name.clone(), net.sensor_if.clone());
        let (attached, seen) = net.sensor.run(move || {
            let mut loaded = load(&options()).expect("load");
            let attached = loaded.attach(&iface, mode).expect("attach");
            (attached, xdp_mode(&ns, &iface))
        });
        assert_eq!(attached, want, "{mode:?}");
        assert_eq!(seen, Some(kernel_mode), "{mode:?}: kernel reports the mode");
        assert_eq!(net.xdp_mode(), None, "{mode:?}: detached on drop");
    }
}

#[test]
fn unknown_interface_is_a_clear_error() {
    require_root!();
    let mut loaded = load(&options()).expect("load");
    let err = loaded
        .attach("no-such-if0", XdpMode::Auto)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no-such-if0") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn cli_mode_switch_and_clean_detach() {
    require_root!();
    let net = TestNet::new();
    let sensor = RunningSensor::start(
        &net.sensor,
        &test_config(&net.sensor_if, &[]),
        &["--xdp-mode", "skb"],
    );
    assert_eq!(
        net.xdp_mode(),
        Some(2),
        "generic mode as asked on the command line"
    );
    let run = sensor.stop();
    assert!(run.clean_exit, "{:?}", run.stderr);
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("mode=\"skb\"") || l.contains("mode=skb")),
        "{:?}",
        run.stderr
    );
    assert_eq!(net.xdp_mode(), None, "detached after SIGTERM");
}

#[test]
fn kill_9_leaves_no_program_attached() {
    require_root!();
    let net = TestNet::new();
    let sensor = RunningSensor::start(&net.sensor, &test_config(&net.sensor_if, &[]), &[]);
    assert_eq!(net.xdp_mode(), Some(1));
    let _ = sensor.kill();
    // The link is released when the last fd closes, which the kernel does as the process dies.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while net.xdp_mode().is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(net.xdp_mode(), None, "no XDP program left after kill -9");
}
