//! Trapster 1.2's `logger` block, read as its `logger/factory.py` reads it.

use super::Config;
use crate::{format::Format, output::Transport};

fn only_output(text: &str) -> (Format, Transport, Config) {
    let config = Config::parse(text, "x").unwrap();
    let mut outputs = config.effective_outputs();
    assert_eq!(outputs.len(), 1);
    let out = outputs.remove(0);
    (out.format, out.transport, config)
}

#[test]
fn every_legacy_logger_name_works() {
    let (f, t, _) = only_output(r#"{"logger": {"name": "JsonLogger", "kwargs": {}}}"#);
    assert_eq!((f, t), (Format::Default, Transport::Terminal));
    let (f, t, _) = only_output(
        r#"{"logger": {"name": "RedisLogger", "kwargs": {"host": "10.0.0.5", "port": 6380}}}"#,
    );
    assert_eq!(f, Format::Default);
    let Transport::Redis(r) = t else {
        panic!("{t:?}")
    };
    assert_eq!(
        (r.host.as_str(), r.port, r.key.as_str()),
        ("10.0.0.5", 6380, "events")
    );
    let (f, t, _) = only_output(
        r#"{"logger": {"name": "ApiLogger", "kwargs": {"url": "https://siem.example/in",
            "headers": {"Authorization": "Bearer x"}, "event_format": "ecs"}}}"#,
    );
    assert_eq!(f, Format::Ecs);
    let Transport::Api(a) = t else {
        panic!("{t:?}")
    };
    assert_eq!(a.url.expose(), "https://siem.example/in");
    assert_eq!(a.headers["Authorization"].expose(), "Bearer x");
    let (f, t, _) =
        only_output(r#"{"logger": {"name": "FileLogger", "kwargs": {"logfile": "/tmp/f.log"}}}"#);
    assert_eq!(f, Format::Default);
    let Transport::File(file) = t else {
        panic!("{t:?}")
    };
    assert!(file.truncate, "FileLogger's default mode is w+");
}

#[test]
fn ecs_logger_takes_its_options_flat_and_a_logfile() {
    let (f, t, config) = only_output(
        r#"{"id": "n1", "logger": {"name": "EcsLogger", "kwargs": {"logfile": "/tmp/e.log",
            "service_name": "Trapster", "environment": "prod", "host_name": "dc01",
            "observer_name": "decoys", "ecs_version": "8.17.0", "service_version": "1.2"}}}"#,
    );
    assert_eq!(f, Format::Ecs);
    let Transport::File(file) = t else {
        panic!("{t:?}")
    };
    assert!(!file.truncate, "EcsLogger's default mode is a");
    let ecs = config.format_context().ecs;
    assert_eq!(ecs.ecs_version, "8.17.0");
    assert_eq!(ecs.observer_name, "decoys");
    assert_eq!(ecs.environment.as_deref(), Some("prod"));
    assert_eq!(ecs.host_name.as_deref(), Some("dc01"));
    assert_eq!(ecs.service_version.as_deref(), Some("1.2"));
    let fields: Vec<&str> = config.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(fields, ["logger.kwargs.service_name"]);
    let (_, t, _) = only_output(r#"{"logger": {"name": "EcsLogger", "kwargs": {}}}"#);
    assert_eq!(t, Transport::Terminal);
}

#[test]
fn nested_output_and_format_kwargs_are_read_and_unknown_keys_named() {
    let (f, t, config) = only_output(
        r#"{"logger": {"output": "file", "format": "ecs", "kwargs": {
            "output_kwargs": {"logfile": "/tmp/n.log", "mode": "a", "colour": 1},
            "format_kwargs": {"environment": "lab", "flavour": 2}, "extra": 3}}}"#,
    );
    assert_eq!(f, Format::Ecs);
    let Transport::File(file) = t else {
        panic!("{t:?}")
    };
    assert_eq!(file.path, std::path::Path::new("/tmp/n.log"));
    assert!(!file.truncate);
    assert_eq!(
        config.format_context().ecs.environment.as_deref(),
        Some("lab")
    );
    let mut fields: Vec<&str> = config.warnings.iter().map(|w| w.field.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "logger.kwargs.extra",
            "logger.kwargs.format_kwargs.flavour",
            "logger.kwargs.output_kwargs.colour"
        ]
    );
}

#[test]
fn a_mode_that_cannot_write_is_refused_by_name() {
    let err = Config::parse(
        r#"{"logger": {"output": "file", "kwargs": {"logfile": "/tmp/t.log", "mode": "r"}}}"#,
        "x",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("logger.kwargs.mode"), "{err}");
    assert!(err.contains("cannot write"), "{err}");
}
