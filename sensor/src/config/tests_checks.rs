//! The checks `sensor check` and `run` share: each mistake named by its field, each warning
//! by its field.

use super::{Config, ConfigError, ConfigWarning};

/// The community example file, as Trapster ships it.
const COMMUNITY: &str = super::tests::COMMUNITY;

/// The field an invalid configuration is refused for, with its message.
fn invalid(text: &str) -> (String, String) {
    match Config::parse(text, "x") {
        Err(ConfigError::Invalid { field, message, .. }) => (field, message),
        Err(ConfigError::Service { source, .. }) => (source.field, source.message),
        other => panic!("{text}: {other:?}"),
    }
}

/// `transport` as the second entry of `outputs`, after a terminal.
fn second_output(transport: &str) -> String {
    format!(
        r#"{{"outputs": [{{"transport": {{"type": "terminal"}}}}, {{"transport": {transport}}}]}}"#
    )
}

#[test]
fn service_port_zero_is_refused_and_a_missing_port_takes_the_default() {
    assert_eq!(
        invalid(r#"{"services": {"ftp": [{"port": 2121}, {"port": 0}]}}"#),
        (
            "services.ftp[1].port".to_owned(),
            "port 0 is not a port to listen on (1 to 65535; leave `port` out for the default)"
                .to_owned()
        )
    );
    let config = Config::parse(r#"{"services": {"ftp": [{}]}}"#, "x").unwrap();
    assert_eq!(config.services.ports(), vec![("ftp", 21)]);
    let tests = r#"{"services": {"ftp": [{"port": 0}]},
        "sensor": {"services": {"ephemeral_ports": true}}}"#;
    assert_eq!(
        Config::parse(tests, "x").unwrap().services.ports(),
        vec![("ftp", 0)]
    );
}

#[test]
fn http_output_urls_need_an_http_scheme_and_to_parse() {
    for (transport, field, message) in [
        (
            r#"{"type": "api", "url": "collector.example/events"}"#,
            "outputs[1].transport.url",
            "has no scheme: write http:// or https://",
        ),
        (
            r#"{"type": "webhook", "url": "ftp://files.example/in"}"#,
            "outputs[1].transport.url",
            "scheme `ftp` is not http or https",
        ),
        (
            r#"{"type": "splunk_hec", "url": "https://[::1/", "token": "t"}"#,
            "outputs[1].transport.url",
            "is not a URL: invalid IPv6 address",
        ),
        (
            r#"{"type": "sekoia", "intake_key": "k", "url": "intake.sekoia.io"}"#,
            "outputs[1].transport.url",
            "has no scheme: write http:// or https://",
        ),
        (
            r#"{"type": "slack", "webhook_url": "hooks.slack.com/services/T/B/X"}"#,
            "outputs[1].transport.webhook_url",
            "has no scheme: write http:// or https://",
        ),
        (
            r#"{"type": "teams", "webhook_url": "gopher://teams.example/x"}"#,
            "outputs[1].transport.webhook_url",
            "scheme `gopher` is not http or https",
        ),
    ] {
        assert_eq!(
            invalid(&second_output(transport)),
            (field.to_owned(), message.to_owned()),
            "{transport}"
        );
    }
    assert_eq!(
        invalid(r#"{"logger": {"output": "api", "kwargs": {"url": "ftp://x.example/"}}}"#),
        (
            "logger.kwargs.url".to_owned(),
            "scheme `ftp` is not http or https".to_owned()
        )
    );
    let ok = second_output(r#"{"type": "api", "url": "http://127.0.0.1:8080/e"}"#);
    Config::parse(&ok, "x").unwrap();
    // The secret part of a URL never appears in the error.
    let err = Config::parse(
        &second_output(r#"{"type": "webhook", "url": "ftp://h.example/s3cr3t-token"}"#),
        "x",
    )
    .unwrap_err()
    .to_string();
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn syslog_redis_and_email_ports_facility_and_addresses_are_checked() {
    let port0 = "0 is not a port (1 to 65535; leave `port` out for the default)";
    for (transport, field, message) in [
        (
            r#"{"type": "syslog", "host": "siem.example", "facility": 24}"#,
            "outputs[1].transport.facility",
            "24 is outside 0..=23 (16 is local0)",
        ),
        (
            r#"{"type": "syslog", "host": "siem.example", "port": 0}"#,
            "outputs[1].transport.port",
            port0,
        ),
        (
            r#"{"type": "redis", "host": "127.0.0.1", "port": 0}"#,
            "outputs[1].transport.port",
            port0,
        ),
        (
            r#"{"type": "email", "host": "smtp.example", "port": 0, "from": "s@example.com", "to": ["soc@example.com"]}"#,
            "outputs[1].transport.port",
            port0,
        ),
        (
            r#"{"type": "email", "host": "smtp.example", "from": "s@example.com", "to": []}"#,
            "outputs[1].transport.to",
            "needs at least one recipient",
        ),
    ] {
        assert_eq!(
            invalid(&second_output(transport)),
            (field.to_owned(), message.to_owned()),
            "{transport}"
        );
    }
    let (field, message) = invalid(&second_output(
        r#"{"type": "email", "host": "smtp.example", "from": "sensor at corp", "to": ["soc@example.com"]}"#,
    ));
    assert_eq!(field, "outputs[1].transport.from");
    assert!(
        message.starts_with("`sensor at corp` is not a mail address"),
        "{message}"
    );
    let (field, _) = invalid(&second_output(
        r#"{"type": "email", "host": "smtp.example", "from": "s@example.com", "to": ["soc"]}"#,
    ));
    assert_eq!(field, "outputs[1].transport.to");
    assert_eq!(
        invalid(r#"{"logger": {"output": "redis", "kwargs": {"port": 0}}}"#).0,
        "logger.kwargs.port"
    );
    let ok = second_output(
        r#"{"type": "email", "host": "smtp.example", "from": "Sensor <s@example.com>", "to": ["soc@example.com"]}"#,
    );
    Config::parse(&ok, "x").unwrap();
    let ok = second_output(r#"{"type": "syslog", "host": "siem.example", "facility": 23}"#);
    Config::parse(&ok, "x").unwrap();
}

#[test]
fn file_outputs_need_an_existing_directory_and_an_octal_mode() {
    assert_eq!(
        invalid(&second_output(
            r#"{"type": "file", "path": "/nonexistent-sensor-dir/events.log"}"#
        )),
        (
            "outputs[1].transport.path".to_owned(),
            "directory /nonexistent-sensor-dir does not exist".to_owned()
        )
    );
    assert_eq!(
        invalid(&second_output(
            r#"{"type": "file", "path": "/etc/hostname/events.log"}"#
        ))
        .1,
        "/etc/hostname is not a directory"
    );
    for mode in ["rw-r-----", "0x640", "8", "77777", ""] {
        let text = second_output(&format!(
            r#"{{"type": "file", "path": "/tmp/events.log", "mode": "{mode}"}}"#
        ));
        assert_eq!(
            invalid(&text),
            (
                "outputs[1].transport.mode".to_owned(),
                format!("`{mode}` is not an octal permission such as \"640\" or \"0600\"")
            ),
            "{mode}"
        );
    }
    for mode in ["640", "0600", "0o644"] {
        let text = second_output(&format!(
            r#"{{"type": "file", "path": "/tmp/events.log", "mode": "{mode}"}}"#
        ));
        Config::parse(&text, "x").unwrap();
    }
    assert_eq!(
        invalid(r#"{"logger": {"output": "file", "kwargs": {"logfile": "/nonexistent-sensor-dir/t.log"}}}"#).0,
        "logger.kwargs.logfile"
    );
    // Trapster's own `mode` is a Python open() mode, honoured: `w+` empties the file at start.
    for (kwargs, truncate) in [
        (r#"{"logfile": "/tmp/t.log", "mode": "w+"}"#, true),
        (r#"{"logfile": "/tmp/t.log", "mode": "a"}"#, false),
        (r#"{"logfile": "/tmp/t.log"}"#, true),
        (
            r#"{"output_kwargs": {"logfile": "/tmp/t.log", "mode": "a"}}"#,
            false,
        ),
    ] {
        let trapster = Config::parse(
            &format!(r#"{{"logger": {{"output": "file", "kwargs": {kwargs}}}}}"#),
            "x",
        )
        .unwrap();
        assert_eq!(trapster.warnings, Vec::<ConfigWarning>::new(), "{kwargs}");
        let crate::output::Transport::File(f) = &trapster.effective_outputs()[0].transport else {
            panic!()
        };
        assert_eq!(
            (f.mode.as_deref(), f.truncate),
            (None, truncate),
            "{kwargs}"
        );
        assert_eq!(f.path, std::path::Path::new("/tmp/t.log"));
    }
    assert_eq!(
        invalid(r#"{"logger": {"output": "file", "kwargs": {"logfile": "/tmp/t.log", "mode": "rw-r-----"}}}"#).0,
        "logger.kwargs.mode"
    );
}

#[test]
fn unknown_services_and_instance_keys_are_named_warnings() {
    let config = Config::parse(
        r#"{"future": 1, "services": {"ftp": [{"port": 2121, "bannr": "typo"}],
            "https": [{"port": 8443, "key": "k.pem", "certfile": "c.pem"}], "smtp": [{"port": 25}]}}"#,
        "x",
    )
    .unwrap();
    let shown: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "future: unknown top-level key, ignored",
            "services.smtp: protocol not emulated by this version, its instances are ignored",
            "services.ftp[0].bannr: unknown key, ignored",
            "services.https[0].certfile: unknown key, ignored",
        ]
    );
    let community = Config::parse(COMMUNITY, "trapster.conf").unwrap();
    assert!(community.warnings.is_empty(), "{:?}", community.warnings);
}

#[test]
fn a_connection_cap_beyond_the_open_file_limit_is_refused() {
    let err = Config::parse(
        r#"{"sensor": {"services": {"max_connections": 4000000000}}}"#,
        "x",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "field `sensor.services.max_connections`: 4000000000 connections need 4000000256 \
             open files"
        ),
        "{err}"
    );
    let limit = crate::net::fds::current().unwrap();
    let fits =
        crate::net::fds::check_connections(2_048, crate::net::fds::target(limit).min(limit.hard))
            .is_ok();
    assert_eq!(Config::parse("{}", "x").is_ok(), fits);
}

#[test]
fn a_file_over_the_cap_is_refused_before_parsing() {
    let dir = std::env::temp_dir().join(format!("sensor-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("huge.conf");
    let file = std::fs::File::create(&path).unwrap();
    // Sparse: no 16 MiB written.
    file.set_len(super::MAX_CONFIG_BYTES + 1).unwrap();
    let err = Config::from_file(&path).unwrap_err();
    let ConfigError::TooLarge { size, max, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!((*size, *max), (16 * 1024 * 1024 + 1, 16 * 1024 * 1024));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: 16777217 bytes, larger than the 16777216 bytes a configuration may have",
            path.display()
        )
    );
    std::fs::write(&path, "{}").unwrap();
    Config::from_file(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unknown_run_as_user_is_refused_naming_field_line_and_column() {
    let text = "{\n  \"sensor\": {\n    \"run_as\": \"no-such-sensor-user\"\n  }\n}";
    match Config::parse(text, "x.conf") {
        Err(err @ ConfigError::Parse { .. }) => {
            let ConfigError::Parse {
                ref field,
                line,
                column,
                ..
            } = err
            else {
                unreachable!()
            };
            assert_eq!((field.as_str(), line, column), ("sensor.run_as", 3, 5));
            assert!(
                err.to_string().starts_with(
                    "x.conf: field `sensor.run_as`: no user `no-such-sensor-user` on this system"
                ),
                "{err}"
            );
        }
        other => panic!("{other:?}"),
    }
    // `root` and an existing user are accepted.
    for user in ["root", "nobody"] {
        let text = format!(r#"{{"sensor": {{"run_as": "{user}"}}}}"#);
        assert_eq!(
            Config::parse(&text, "x").unwrap().sensor.run_as.as_deref(),
            Some(user)
        );
    }
}

#[test]
fn a_persona_is_one_of_the_known_machines() {
    let Err(ConfigError::Parse {
        field,
        message,
        line,
        ..
    }) = Config::parse(r#"{"sensor": {"persona": "windows-xp"}}"#, "x")
    else {
        panic!("an unknown persona parses");
    };
    assert_eq!((field.as_str(), line), ("sensor.persona", 1));
    assert!(
        message.contains("`debian-12-server`, `windows-server-2022`, `cisco-ios`, `none`"),
        "{message}"
    );
    let config = Config::parse(r#"{"services": {"ftp": [{}]}}"#, "x").unwrap();
    assert_eq!(
        config.services_plan().persona,
        crate::services::Persona::Debian12Server
    );
    let config = Config::parse(r#"{"sensor": {"persona": "cisco-ios"}}"#, "x").unwrap();
    assert_eq!(
        config.services_plan().persona,
        crate::services::Persona::CiscoIos
    );
}
