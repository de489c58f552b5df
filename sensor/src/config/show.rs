//! `sensor show-config`: the configuration as the sensor reads it, secrets masked. The file's
//! own document with every top-level default filled in, plus what it resolves to
//! (`effective`: the outputs with their formats, the ECS options, the warnings).
//!
//! Masked: the value of every key that names a secret (`password`, `token`, `intake_key`,
//! `api_key`, `hmac_secret`, `secret`, keys ending in `_token`/`_password`), every HTTP header
//! value, and the path and query of every `url`/`webhook_url` (they carry keys). A secret
//! given as `{"env": "VAR"}` or `{"file": "/path"}` shows that reference, never the value.

use serde_json::{Map, Value, json};

use super::Config;
use crate::output::client::http::shown_url;

/// The mask written in place of a secret.
pub const MASK: &str = "***";

fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    matches!(
        key.as_str(),
        "password" | "token" | "intake_key" | "api_key" | "hmac_secret" | "secret"
    ) || key.ends_with("_token")
        || key.ends_with("_password")
}

/// A secret's shown form: a reference to the environment or a file as is, else the mask.
fn masked(value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::Object(o) if o.len() == 1 && (o.contains_key("env") || o.contains_key("file")) => {
            value.clone()
        }
        _ => Value::from(MASK),
    }
}

/// Masks secrets in `value` in place.
pub fn mask(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if secret_key(key) {
                    *v = masked(v);
                } else if key == "headers" {
                    if let Value::Object(headers) = v {
                        for h in headers.values_mut() {
                            *h = masked(h);
                        }
                    }
                } else if (key == "url" || key == "webhook_url") && v.is_string() {
                    *v = Value::from(format!(
                        "{}/{MASK}",
                        shown_url(v.as_str().unwrap_or_default())
                    ));
                } else {
                    mask(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

impl Config {
    /// The document `sensor show-config` prints for configuration `text` read into `self`.
    #[must_use]
    pub fn shown(&self, text: &str) -> Value {
        let mut doc = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let defaults = [
            ("id", Value::from(self.id.clone())),
            ("description", json!(self.description)),
            ("interface", Value::from(self.interface.clone())),
            ("whitelist_ips", json!([])),
            ("hostname", json!(self.hostname)),
            ("domain", json!(self.domain)),
            ("services", json!({})),
            (
                "logger",
                json!({"output": "terminal", "format": "default", "kwargs": {}}),
            ),
            ("sensor", json!({})),
        ];
        for (key, value) in defaults {
            doc.entry(key).or_insert(value);
        }
        let ecs = self.ecs_options();
        let outputs: Vec<Value> = self
            .effective_outputs()
            .iter()
            .enumerate()
            .map(|(i, o)| {
                json!({
                    "name": o.name.clone().unwrap_or_else(|| format!("{}-{i}", o.transport.kind())),
                    "transport": o.transport.kind(),
                    "format": format!("{:?}", o.format).to_ascii_lowercase(),
                })
            })
            .collect();
        doc.insert(
            "effective".to_owned(),
            json!({
                "outputs": outputs,
                "ecs": {
                    "ecs_version": ecs.ecs_version, "observer_name": ecs.observer_name,
                    "environment": ecs.environment, "host_name": ecs.host_name,
                    "service_version": ecs.service_version, "extended": ecs.extended,
                },
                "warnings": self.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        );
        let mut doc = Value::Object(doc);
        mask(&mut doc);
        doc
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Config, MASK};

    #[test]
    fn secrets_are_masked_and_references_kept() {
        let text = r#"{"id": "s1", "services": {"http": [{"port": 8080, "password": "decoy"}]},
            "outputs": [
              {"name": "hec", "transport": {"type": "splunk_hec",
               "url": "https://hec.example:8088/services/collector?k=1",
               "token": {"env": "SENSOR_TEST_SHOW_TOKEN"}}},
              {"name": "api", "transport": {"type": "api", "url": "https://siem.example/in/KEY",
               "headers": {"Authorization": "Bearer abc"}}}]}"#;
        // SAFETY: set before any thread of this test reads the environment.
        unsafe { std::env::set_var("SENSOR_TEST_SHOW_TOKEN", "t0ken") };
        let config = Config::parse(text, "x").unwrap();
        let shown = config.shown(text);
        let printed = shown.to_string();
        for secret in ["decoy", "t0ken", "Bearer", "KEY", "collector"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert_eq!(shown["services"]["http"][0]["password"], MASK);
        let hec = &shown["outputs"][0]["transport"];
        assert_eq!(hec["token"], json!({"env": "SENSOR_TEST_SHOW_TOKEN"}));
        assert_eq!(hec["url"], "https://hec.example:8088/***");
        assert_eq!(
            shown["outputs"][1]["transport"]["headers"]["Authorization"],
            MASK
        );
        assert_eq!(shown["interface"], "");
        assert_eq!(shown["effective"]["outputs"][0]["transport"], "splunk_hec");
        assert_eq!(shown["effective"]["ecs"]["observer_name"], "Trapster");
    }
}
