//! The community `logger` block as Trapster 1.2 reads it (`logger/factory.py`): either a legacy
//! class `name` with that class's keyword arguments, or `output` + `format` with
//! `kwargs.output_kwargs` / `kwargs.format_kwargs` (or the same keys flat in `kwargs`).
//!
//! | `name`        | output                         | keys (defaults)                                        |
//! |---------------|--------------------------------|--------------------------------------------------------|
//! | `JsonLogger`  | terminal                       | `event_format`, `format_kwargs`                        |
//! | `FileLogger`  | file                           | `logfile`, `mode` (`w+`), `event_format`, `format_kwargs` |
//! | `RedisLogger` | redis (ZADD `events`)          | `host`, `port`, `event_format`, `format_kwargs`        |
//! | `ApiLogger`   | api (POST JSON)                | `url`, `headers`, `event_format`, `format_kwargs`      |
//! | `EcsLogger`   | file if `logfile`, else terminal, ECS | `logfile`, `mode` (`a`), ECS options, `service_name` |
//!
//! A file `mode` is Python's `open()` mode: `w`/`w+` empty the file at start, `a`/`a+`
//! append (an octal permission such as `640` is accepted too, this sensor's extension).

use serde_json::{Map, Value};

use super::{Config, ConfigWarning, outputs, sections::FORMAT_KWARGS};
use crate::{
    format::Format,
    output::{
        OutputConfig, Transport,
        sink::{file::FileConfig, redis::RedisConfig},
    },
};

/// Where Trapster's file logger writes by default.
const TRAPSTER_LOGFILE: &str = "/var/log/trapster-community.log";

/// Keyword arguments each legacy logger class takes (besides `node_id`).
fn legacy_keys(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "JsonLogger" => &["event_format", "format_kwargs"],
        "FileLogger" => &["logfile", "mode", "event_format", "format_kwargs"],
        "RedisLogger" => &["host", "port", "event_format", "format_kwargs"],
        "ApiLogger" => &["url", "headers", "event_format", "format_kwargs"],
        "EcsLogger" => &[
            "service_name",
            "service_version",
            "environment",
            "host_name",
            "observer_name",
            "logfile",
            "mode",
            "ecs_version",
        ],
        _ => return None,
    })
}

/// Keys of `kwargs` in the `output` form.
const OUTPUT_FORM_KEYS: [&str; 13] = [
    "output_kwargs",
    "format_kwargs",
    "logfile",
    "mode",
    "url",
    "headers",
    "host",
    "port",
    "service_version",
    "environment",
    "host_name",
    "observer_name",
    "ecs_version",
];

/// What a Trapster file `mode` means here: `Ok(truncate)`, or why it is not a mode.
fn file_mode(mode: &str) -> Result<bool, String> {
    if outputs::octal_mode(mode).is_some() {
        return Ok(false);
    }
    if !outputs::python_open_mode(mode) {
        return Err(format!(
            "`{mode}` is neither a Python open() mode such as \"a\" or \"w+\" nor an octal \
             permission such as \"640\""
        ));
    }
    if mode.contains('w') {
        Ok(true)
    } else if mode.contains('a') {
        Ok(false)
    } else {
        Err(format!(
            "`{mode}` cannot write (Trapster's logger would fail): use \"a\" or \"w+\""
        ))
    }
}

impl Config {
    /// The `logger` block's keyword arguments for the output: `output_kwargs` or flat keys.
    fn output_args(&self) -> Map<String, Value> {
        if self.logger.name.is_some() {
            return self.logger.kwargs.as_object().cloned().unwrap_or_default();
        }
        self.logger.output_kwargs()
    }

    /// The one output the community `logger` block defines.
    pub(super) fn logger_output(&self) -> Result<OutputConfig, (&'static str, String)> {
        let logger = &self.logger;
        let args = self.output_args();
        let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_owned);
        let file = |default_mode: &str| -> Result<Transport, (&'static str, String)> {
            let mode = text("mode").unwrap_or_else(|| default_mode.to_owned());
            let truncate = file_mode(&mode).map_err(|m| ("logger.kwargs.mode", m))?;
            Ok(Transport::File(FileConfig {
                path: text("logfile")
                    .unwrap_or_else(|| TRAPSTER_LOGFILE.to_owned())
                    .into(),
                mode: Some(mode).filter(|m| outputs::octal_mode(m).is_some()),
                truncate,
            }))
        };
        let redis = || {
            let port = args
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            Transport::Redis(RedisConfig {
                host: text("host").unwrap_or_else(|| "localhost".to_owned()),
                port: port.unwrap_or(6379),
                db: 0,
                username: None,
                password: None,
                command: crate::output::sink::redis::RedisCommand::Zadd,
                key: "events".to_owned(),
                max_len: None,
                tls: false,
                ca_file: None,
                client_cert_file: None,
                client_key_file: None,
                insecure: false,
                cluster: Vec::new(),
                sentinel: None,
            })
        };
        let api = || {
            let url = args
                .get("url")
                .cloned()
                .ok_or(("logger.kwargs.url", "the api output needs a url".to_owned()))?;
            let headers = args
                .get("headers")
                .cloned()
                .unwrap_or(Value::Object(Map::new()));
            serde_json::from_value(serde_json::json!({"url": url, "headers": headers}))
                .map(Transport::Api)
                .map_err(|e| ("logger.kwargs", e.to_string()))
        };
        if let Some(name) = logger.name.as_deref() {
            let format = match args.get("event_format").and_then(Value::as_str) {
                None => logger.format,
                Some(f) => serde_json::from_value(Value::from(f)).map_err(|_| {
                    (
                        "logger.kwargs.event_format",
                        format!("unknown format `{f}` (default, trapster, ecs or cef)"),
                    )
                })?,
            };
            return match name {
                "JsonLogger" => Ok(OutputConfig::new(format, Transport::Terminal)),
                "FileLogger" => Ok(OutputConfig::new(format, file("w+")?)),
                "RedisLogger" => Ok(OutputConfig::new(format, redis())),
                "ApiLogger" => Ok(OutputConfig::new(format, api()?)),
                "EcsLogger" if text("logfile").is_some() => {
                    Ok(OutputConfig::new(Format::Ecs, file("a")?))
                }
                "EcsLogger" => Ok(OutputConfig::new(Format::Ecs, Transport::Terminal)),
                other => Err((
                    "logger.name",
                    format!(
                        "unknown logger `{other}` (JsonLogger, FileLogger, RedisLogger, \
                         ApiLogger or EcsLogger)"
                    ),
                )),
            };
        }
        match logger.output.as_deref().unwrap_or("terminal") {
            "terminal" => Ok(OutputConfig::new(logger.format, Transport::Terminal)),
            "file" => Ok(OutputConfig::new(logger.format, file("w+")?)),
            "redis" => Ok(OutputConfig::new(logger.format, redis())),
            "api" => Ok(OutputConfig::new(logger.format, api()?)),
            other => Err((
                "logger.output",
                format!("unknown output `{other}` (terminal, file, api or redis)"),
            )),
        }
    }

    /// Keys of the `logger` block Trapster would not take, or this sensor does not use.
    pub(super) fn logger_warnings(&self) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        let Some(kwargs) = self.logger.kwargs.as_object() else {
            return warnings;
        };
        let known: &[&str] = match self.logger.name.as_deref() {
            Some(name) => legacy_keys(name).unwrap_or(&[]),
            None => &OUTPUT_FORM_KEYS,
        };
        for key in kwargs.keys().filter(|k| !known.contains(&k.as_str())) {
            warnings.push(ConfigWarning {
                field: format!("logger.kwargs.{key}"),
                message: "unknown key, ignored (Trapster refuses a logger with it)".to_owned(),
            });
        }
        let nested = |name: &str, allowed: &[&str]| -> Vec<ConfigWarning> {
            kwargs
                .get(name)
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|o| o.keys())
                .filter(|k| !allowed.contains(&k.as_str()))
                .map(|k| ConfigWarning {
                    field: format!("logger.kwargs.{name}.{k}"),
                    message: "unknown key, ignored".to_owned(),
                })
                .collect()
        };
        if self.logger.name.as_deref() != Some("EcsLogger") {
            warnings.extend(nested("format_kwargs", &FORMAT_KWARGS));
        }
        if self.logger.name.is_none() {
            warnings.extend(nested("output_kwargs", &super::sections::OUTPUT_KWARGS));
        }
        if self.logger.name.as_deref() == Some("EcsLogger") && kwargs.contains_key("service_name") {
            warnings.push(ConfigWarning {
                field: "logger.kwargs.service_name".to_owned(),
                message: "accepted and unused, as in Trapster (its ECS documents carry no \
                          service name)"
                    .to_owned(),
            });
        }
        if self.logger.format != Format::Ecs
            && self.logger.name.as_deref() != Some("EcsLogger")
            && !self.logger.format_kwargs().is_empty()
        {
            warnings.push(ConfigWarning {
                field: "logger.kwargs.format_kwargs".to_owned(),
                message: "ECS options given but the format is not `ecs`: they apply to any \
                          `ecs` output in `outputs`"
                    .to_owned(),
            });
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::file_mode;

    #[test]
    fn trapster_file_modes() {
        assert_eq!(file_mode("w+"), Ok(true));
        assert_eq!(file_mode("w"), Ok(true));
        assert_eq!(file_mode("a"), Ok(false));
        assert_eq!(file_mode("a+"), Ok(false));
        assert_eq!(file_mode("640"), Ok(false));
        assert!(file_mode("r").unwrap_err().contains("cannot write"));
        assert!(file_mode("zz").unwrap_err().contains("neither"));
    }
}
