//! Configuration parsing and validation.

use super::{Config, ConfigError, XdpMode};

/// The community example file, as Trapster ships it.
pub(super) const COMMUNITY: &str = r#"{
  "id": "trapster-1",
  "description": "example configuration file",
  "whitelist_ips": ["127.0.0.1"],
  "interface": "",
  "services": {
"ftp": [ { "port": 2121, "username": null, "password": null, "banner": "Microsoft FTP Service" } ],
"ssh": [ { "port": 2222, "version": "SSH-2.0-OpenSSH_8.1p1 Debian-1", "banner": null, "users": {} } ],
"vnc": [ { "port": 5901, "version": "RFB_38" } ]
  },
  "logger": { "name": "JsonLogger", "kwargs": {} }
}"#;

#[test]
fn service_mistakes_are_named() {
    let dup = r#"{"services": {"ftp": [{"port": 21}], "http": [{"port": 21}]}}"#;
    let err = Config::parse(dup, "t").unwrap_err().to_string();
    assert!(err.contains("http and ftp both use port 21"), "{err}");
    let zero = r#"{"sensor": {"services": {"idle_timeout_secs": 0}}}"#;
    let err = Config::parse(zero, "t").unwrap_err().to_string();
    assert!(err.contains("sensor.services.idle_timeout_secs"), "{err}");
    for field in ["udp_idle_timeout_ms", "udp_max_sessions"] {
        let zero = format!(r#"{{"sensor": {{"services": {{"{field}": 0}}}}}}"#);
        let err = Config::parse(&zero, "t").unwrap_err().to_string();
        assert!(err.contains(&format!("sensor.services.{field}")), "{err}");
    }
    let zero = r#"{"sensor": {"services": {"udp_flood_window_secs": 0}}}"#;
    let err = Config::parse(zero, "t").unwrap_err().to_string();
    assert!(
        err.contains("sensor.services.udp_flood_window_secs"),
        "{err}"
    );
    let typo = r#"{"services": {"ssh": [{"port": "twenty-two"}]}}"#;
    let err = Config::parse(typo, "t").unwrap_err().to_string();
    assert!(err.contains("services.ssh[0].port"), "{err}");
    let unknown = r#"{"sensor": {"services": {"max_conns": 3}}}"#;
    let err = Config::parse(unknown, "t").unwrap_err().to_string();
    assert!(err.contains("max_conns"), "{err}");
}

#[test]
fn community_file_is_accepted_unchanged() {
    let config = Config::parse(COMMUNITY, "trapster.conf").unwrap();
    assert_eq!(config.id, "trapster-1");
    assert_eq!(config.whitelist_ips.len(), 1);
    assert_eq!(config.services.listed("ftp").len(), 1);
    assert_eq!(
        config.services.listed("ftp")[0]["banner"],
        "Microsoft FTP Service"
    );
    assert_eq!(
        config.services.ports(),
        vec![("ftp", 2121), ("ssh", 2222), ("vnc", 5901)]
    );
    assert_eq!(config.services.unknown().count(), 0);
    assert_eq!(config.sensor.portscan.threshold, 3);
    assert!(config.xdp_interfaces().is_empty());
}

#[test]
fn embedded_default_parses() {
    let config = Config::embedded_default().unwrap();
    assert!(config.unknown.is_empty(), "{:?}", config.unknown);
}

#[test]
fn readme_example_parses() {
    let readme = include_str!("../../../README.md");
    let marker = "<!-- config-example -->\n```json\n";
    let start = readme
        .find(marker)
        .expect("README has a marked config example")
        + marker.len();
    let end = start + readme[start..].find("```").unwrap();
    let config = Config::parse(&readme[start..end], "README.md").unwrap();
    assert!(config.unknown.is_empty(), "{:?}", config.unknown);
    assert_eq!(config.whitelist_ips.len(), 3);
}

#[test]
fn sensor_section_is_read() {
    let text = r#"{"id": "s1", "interface": "eth0",
        "sensor": {"xdp": {"mode": "skb", "interfaces": ["veth0"]},
                   "portscan": {"threshold": 10, "idle_timeout_ms": 2000}}}"#;
    let config = Config::parse(text, "t").unwrap();
    assert_eq!(config.sensor.xdp.mode, XdpMode::Skb);
    assert_eq!(config.xdp_interfaces(), vec!["veth0".to_owned()]);
    assert_eq!(config.sensor.portscan.threshold, 10);
}

#[test]
fn errors_name_field_line_and_column() {
    let text =
        "{\n  \"id\": \"s\",\n  \"sensor\": {\n    \"portscan\": {\"threshold\": \"many\"}\n  }\n}";
    let err = Config::parse(text, "x.conf").unwrap_err();
    let ConfigError::Parse {
        field,
        line,
        column,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(field, "sensor.portscan.threshold");
    assert_eq!(*line, 4);
    assert!(*column > 20, "{column}");
    let shown = err.to_string();
    assert!(
        shown.contains("x.conf") && shown.contains("line 4"),
        "{shown}"
    );
}

#[test]
fn unknown_sensor_keys_are_rejected_by_name() {
    let text = "{\"sensor\": {\"portscan\": {\"treshold\": 3}}}";
    let err = Config::parse(text, "x").unwrap_err().to_string();
    assert!(err.contains("treshold"), "{err}");
}

#[test]
fn bad_cidr_is_reported_with_position() {
    let text = "{\n\"whitelist_ips\": [\"10.0.0.0/8\", \"10.0.0.300\"]\n}";
    let err = Config::parse(text, "x").unwrap_err();
    let ConfigError::Parse { field, line, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(field, "whitelist_ips[1]");
    assert_eq!(*line, 2);
}

#[test]
fn dedup_window_must_be_shorter_than_idle_timeout() {
    let text =
        r#"{"sensor": {"xdp": {"dedup_window_ms": 5000}, "portscan": {"idle_timeout_ms": 5000}}}"#;
    let err = Config::parse(text, "x").unwrap_err().to_string();
    assert!(err.contains("sensor.xdp.dedup_window_ms"), "{err}");
}

#[test]
fn map_sizes_and_drain_batch_are_checked_by_name() {
    let config = Config::parse("{}", "x").unwrap();
    let xdp = &config.sensor.xdp;
    assert_eq!(
        (
            xdp.dedup_slots,
            xdp.source_slots,
            xdp.max_map_memory_mib,
            xdp.drain_batch
        ),
        (65_536, 65_536, 64, 4_096)
    );
    for (text, field) in [
        (r#"{"dedup_slots": 3000}"#, "sensor.xdp.dedup_slots"),
        (r#"{"dedup_slots": 512}"#, "sensor.xdp.dedup_slots"),
        (r#"{"source_slots": 0}"#, "sensor.xdp.source_slots"),
        (r#"{"source_slots": 33554432}"#, "sensor.xdp.source_slots"),
        (
            r#"{"max_map_memory_mib": 1}"#,
            "sensor.xdp.max_map_memory_mib",
        ),
        (r#"{"drain_batch": 0}"#, "sensor.xdp.drain_batch"),
    ] {
        let text = format!(r#"{{"sensor": {{"xdp": {text}}}}}"#);
        let err = Config::parse(&text, "x").unwrap_err();
        let ConfigError::Invalid { field: got, .. } = &err else {
            panic!("{text}: {err}")
        };
        assert_eq!(*got, field, "{text}: {err}");
    }
    let ok = r#"{"sensor": {"xdp": {"dedup_slots": 1024, "source_slots": 1024,
        "max_map_memory_mib": 1, "drain_batch": 1}}}"#;
    assert_eq!(Config::parse(ok, "x").unwrap().sensor.xdp.drain_batch, 1);
}

#[test]
fn unknown_top_level_keys_are_kept_not_fatal() {
    let config = Config::parse(r#"{"future_key": 1}"#, "x").unwrap();
    assert_eq!(config.unknown, vec!["future_key".to_owned()]);
}

#[test]
fn logger_format_and_identity_are_read() {
    let text = r#"{"id": "s1", "hostname": "files-02",
        "logger": {"output": "terminal", "format": "cef", "kwargs": {}},
        "sensor": {"identity": {"namespace_name": "prod", "cef_severity": 7}}}"#;
    let config = Config::parse(text, "t").unwrap();
    assert_eq!(config.logger.format, crate::format::Format::Cef);
    let ctx = config.format_context();
    assert_eq!(ctx.identity.device_name, "files-02");
    assert_eq!(ctx.identity.namespace_name, "prod");
    assert_eq!(ctx.cef_severity, 7);
}

#[test]
fn bad_outputs_and_formats_are_refused_by_name() {
    let err = Config::parse(r#"{"logger": {"output": "api"}}"#, "x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("logger.kwargs.url"), "{err}");
    let err = Config::parse(r#"{"logger": {"output": "carrier-pigeon"}}"#, "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("logger.output") && err.contains("carrier-pigeon"),
        "{err}"
    );
    let api = Config::parse(
        r#"{"logger": {"output": "api", "kwargs": {"url": "https://siem.example/in", "headers": {"X-Key": "k"}}}}"#,
        "x",
    )
    .unwrap();
    assert!(matches!(
        api.effective_outputs()[0].transport,
        crate::output::Transport::Api(_)
    ));
    let redis = Config::parse(
        r#"{"logger": {"output": "redis", "kwargs": {"host": "10.1.2.3", "port": 6380}}}"#,
        "x",
    )
    .unwrap();
    let crate::output::Transport::Redis(r) = &redis.effective_outputs()[0].transport else {
        panic!("not redis")
    };
    assert_eq!(
        (r.host.as_str(), r.port, r.key.as_str()),
        ("10.1.2.3", 6380, "events")
    );
    let err = Config::parse("{\"logger\":\n {\"format\": \"xml\"}}", "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("logger.format") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn community_logger_blocks_become_outputs() {
    use crate::output::Transport;
    let file = Config::parse(
        r#"{"logger": {"output": "file", "format": "ecs", "kwargs": {"logfile": "/tmp/t.log", "mode": "640"}}}"#,
        "x",
    )
    .unwrap();
    let outputs = file.effective_outputs();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].format, crate::format::Format::Ecs);
    let Transport::File(f) = &outputs[0].transport else {
        panic!("{outputs:?}")
    };
    assert_eq!(f.path, std::path::Path::new("/tmp/t.log"));
    let legacy = Config::parse(r#"{"logger": {"name": "FileLogger", "kwargs": {}}}"#, "x").unwrap();
    let Transport::File(f) = &legacy.effective_outputs()[0].transport else {
        panic!()
    };
    assert_eq!(
        f.path,
        std::path::Path::new("/var/log/trapster-community.log")
    );
    let ecs = Config::parse(r#"{"logger": {"name": "EcsLogger", "kwargs": {}}}"#, "x").unwrap();
    assert_eq!(
        ecs.effective_outputs()[0].format,
        crate::format::Format::Ecs
    );
}

#[test]
fn when_full_policies_parse_and_spool_needs_a_spool() {
    let text = r#"{"outputs": [
        {"when_full": "block", "block_ms": 250, "transport": {"type": "terminal"}},
        {"when_full": "drop_oldest", "transport": {"type": "terminal"}},
        {"when_full": "spool", "spool": {"dir": "/var/spool/sensor/api"},
         "transport": {"type": "api", "url": "https://collector.example/e"}}
    ]}"#;
    // Parsing validates.
    let config = Config::parse(text, "x").unwrap();
    let outputs = config.effective_outputs();
    assert_eq!(outputs[0].block_ms, 250);
    assert_eq!(outputs[1].when_full, crate::output::WhenFull::DropOldest);
    assert_eq!(outputs[1].block_ms, 1000);
    assert_eq!(outputs[2].when_full, crate::output::WhenFull::Spool);
    let text = r#"{"outputs": [{"when_full": "spool",
        "transport": {"type": "api", "url": "https://collector.example/e"}}]}"#;
    let err = Config::parse(text, "x").unwrap_err().to_string();
    assert!(err.contains("outputs[].when_full"), "{err}");
}

#[test]
fn the_outputs_list_configures_several_outputs() {
    let text = r#"{"outputs": [
        {"name": "console", "transport": {"type": "terminal"}},
        {"format": "cef", "when_full": "drop_newest", "queue_size": 100,
         "transport": {"type": "file", "path": "/var/log/sensor.cef"}}
    ]}"#;
    let config = Config::parse(text, "x").unwrap();
    let outputs = config.effective_outputs();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[1].format, crate::format::Format::Cef);
    assert_eq!(outputs[1].when_full, crate::output::WhenFull::DropNewest);
    let err = Config::parse(r#"{"outputs": [{"transport": {"type": "file"}}]}"#, "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("outputs[0].transport") && err.contains("path"),
        "{err}"
    );
}

#[test]
fn trailing_garbage_is_an_error() {
    assert!(Config::parse("{} x", "x").is_err());
}
