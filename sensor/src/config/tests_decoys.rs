//! `sensor.decoys`: read into the services plan, and every mistake named by its field (and
//! line, where the JSON itself does not fit).

use super::{Config, ConfigError};

#[test]
fn decoys_are_off_by_default_and_reach_the_services_plan() {
    let config = Config::parse("{}", "x").unwrap();
    assert!(!config.services_plan().decoys.enabled);
    let config = Config::parse(
        r#"{"sensor": {"decoys": {"enabled": true, "tcp": ["1-65535"],
            "ports": {"2200": "ssh", "8081": "http", "9443": "https"}, "banner": "ftp"}}}"#,
        "x",
    )
    .unwrap();
    let decoys = config.services_plan().decoys;
    assert!(decoys.enabled);
    assert_eq!(decoys.tcp.len(), 1);
    assert_eq!(decoys.ports.len(), 3);
    assert_eq!(decoys.banner(), Some("ftp"));
    assert!(decoys.steers(1) && decoys.steers(65_535));
}

#[test]
fn a_bad_range_names_the_field_and_line() {
    let text = "{\"sensor\": {\"decoys\": {\n  \"enabled\": true,\n  \"tcp\": [\"1-70000\"]\n}}}";
    match Config::parse(text, "x") {
        Err(ConfigError::Parse {
            field,
            message,
            line,
            ..
        }) => {
            assert_eq!(field, "sensor.decoys.tcp[0]");
            assert!(message.contains("`1-70000` is not a port"), "{message}");
            assert_eq!(line, 3);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_run_would_refuse_is_refused_with_its_field() {
    for (decoys, field, needle) in [
        (
            r#"{"ports": {"2200": "sshd"}}"#,
            "sensor.decoys.ports.2200",
            "`sshd` is not an emulated TCP service",
        ),
        (
            r#"{"banner": "snmp"}"#,
            "sensor.decoys.banner",
            "served over UDP only",
        ),
        (
            r#"{"sniff_timeout_ms": 60000}"#,
            "sensor.decoys.sniff_timeout_ms",
            "outside 100..=10000",
        ),
        (r#"{"enabled": true}"#, "sensor.decoys.tcp", "names a port"),
        (
            r#"{"udp_ports": {"5300": "ssh"}}"#,
            "sensor.decoys.udp_ports.5300",
            "`ssh` is served over TCP only",
        ),
    ] {
        let text = format!(r#"{{"sensor": {{"decoys": {decoys}}}}}"#);
        match Config::parse(&text, "x") {
            Err(ConfigError::Invalid {
                field: f, message, ..
            }) => {
                assert_eq!(f, field, "{decoys}");
                assert!(message.contains(needle), "{decoys}: {message}");
            }
            other => panic!("{decoys}: {other:?}"),
        }
    }
}

#[test]
fn a_bad_udp_range_names_the_field_and_line() {
    let text =
        "{\"sensor\": {\"decoys\": {\n  \"enabled\": true,\n  \"udp\": [\"53\", \"900-80\"]\n}}}";
    match Config::parse(text, "x") {
        Err(ConfigError::Parse {
            field,
            message,
            line,
            ..
        }) => {
            assert_eq!(field, "sensor.decoys.udp[1]");
            assert!(
                message.contains("the first port is after the last"),
                "{message}"
            );
            assert_eq!(line, 3);
        }
        other => panic!("{other:?}"),
    }
    let config = Config::parse(
        r#"{"sensor": {"decoys": {"enabled": true, "udp": ["1-65535"], "udp_ports": {"5300": "dns"}}}}"#,
        "x",
    )
    .unwrap();
    let decoys = config.services_plan().decoys;
    assert_eq!(decoys.udp.len(), 1);
    assert_eq!(decoys.udp_ports.get(&5300).map(String::as_str), Some("dns"));
    assert!(decoys.steers_udp(1) && !decoys.steers(1));
}

/// `check` tries the raw socket `run` opens for replies from low UDP decoy ports: with
/// `CAP_NET_RAW` (root here) no warning; on a thread without it (capabilities are per thread),
/// a warning naming `sensor.decoys.udp`. Skipped when not root.
#[test]
fn low_udp_decoy_ports_without_cap_net_raw_are_a_named_warning() {
    if !nix::unistd::geteuid().is_root()
        || crate::services::instances::unprivileged_port_start() <= 53
    {
        eprintln!("skipped: needs root and a port start above 53");
        return;
    }
    let text = r#"{"sensor": {"decoys": {"enabled": true, "udp": ["53"]}}}"#;
    let named = |config: &Config| {
        config
            .warnings
            .iter()
            .any(|w| w.field == "sensor.decoys.udp" && w.message.contains("CAP_NET_RAW"))
    };
    assert!(
        !named(&Config::parse(text, "x").unwrap()),
        "root holds CAP_NET_RAW"
    );
    let high = r#"{"sensor": {"decoys": {"enabled": true, "udp": ["5300"]}}}"#;
    let without = std::thread::spawn(move || {
        drop_this_threads_capabilities();
        (
            named(&Config::parse(text, "x").unwrap()),
            named(&Config::parse(high, "x").unwrap()),
        )
    })
    .join()
    .unwrap();
    assert_eq!(
        without,
        (true, false),
        "(port 53, port 5300) without CAP_NET_RAW"
    );
}

/// Empties the calling thread's capability sets (`capset` acts on the thread only).
fn drop_this_threads_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    let header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let empty = [[0u32; 3]; 2];
    // SAFETY: capset with valid pointers to a version-3 header and two data structs.
    let r = unsafe { libc::syscall(libc::SYS_capset, &raw const header, empty.as_ptr()) };
    assert_eq!(r, 0, "capset: {}", std::io::Error::last_os_error());
}
