//! Secrets in configuration (passwords, tokens, intake keys, header values, webhook URLs), held
//! as [`secrecy::SecretString`] (zeroed on drop, never shown by `Debug`). Every secret field
//! takes one of three forms:
//!
//! - `"token": "inline value"`;
//! - `"token": {"env": "SPLUNK_TOKEN"}`: the environment variable, read when the configuration
//!   is loaded (`check` and `run`); unset or empty is an error naming the field;
//! - `"token": {"file": "/run/secrets/splunk"}`: the file's contents without the trailing
//!   newline; a missing or empty file is an error naming the field.

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

/// A secret string: an inline string, `{"env": VAR}` or `{"file": PATH}`; never shown.
#[derive(Clone)]
pub struct Secret(SecretString);

/// Largest secret file read.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let value = serde_json::Value::deserialize(d)?;
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Object(map) if map.len() == 1 => match map.into_iter().next() {
                Some((key, serde_json::Value::String(name))) if key == "env" => {
                    match std::env::var(&name) {
                        Ok(v) if !v.is_empty() => v,
                        Ok(_) => {
                            return Err(D::Error::custom(format!(
                                "environment variable `{name}` is empty"
                            )));
                        }
                        Err(_) => {
                            return Err(D::Error::custom(format!(
                                "environment variable `{name}` is not set"
                            )));
                        }
                    }
                }
                Some((key, serde_json::Value::String(path))) if key == "file" => {
                    read_file(&path).map_err(D::Error::custom)?
                }
                _ => {
                    return Err(D::Error::custom(
                        "a secret is a string, {\"env\": \"VAR\"} or {\"file\": \"/path\"}",
                    ));
                }
            },
            _ => {
                return Err(D::Error::custom(
                    "a secret is a string, {\"env\": \"VAR\"} or {\"file\": \"/path\"}",
                ));
            }
        };
        Ok(Self::new(text))
    }
}

fn read_file(path: &str) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("secret file {path}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("secret file {path}: {e}"))?;
    let text = text.trim_end_matches(['\n', '\r']).to_owned();
    if text.is_empty() {
        return Err(format!("secret file {path} is empty"));
    }
    Ok(text)
}

impl Secret {
    /// Wraps a value.
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(SecretString::from(value))
    }

    /// The secret itself, for the one place that needs it.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_hides_the_value_and_expose_returns_it() {
        let s: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(format!("{s:?}"), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(s, Secret::new("hunter2".to_owned()));
    }

    #[test]
    fn env_and_file_references_are_read_and_missing_ones_named() {
        // SAFETY: a variable only this test reads.
        unsafe { std::env::set_var("SENSOR_TEST_SECRET_A", "from-env") };
        let s: Secret = serde_json::from_str(r#"{"env": "SENSOR_TEST_SECRET_A"}"#).unwrap();
        assert_eq!(s.expose(), "from-env");
        let err = serde_json::from_str::<Secret>(r#"{"env": "SENSOR_TEST_SECRET_UNSET"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`SENSOR_TEST_SECRET_UNSET` is not set"),
            "{err}"
        );
        let path = std::env::temp_dir().join(format!("sensor-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let s: Secret = serde_json::from_value(serde_json::json!({"file": path})).unwrap();
        assert_eq!(s.expose(), "from-file");
        std::fs::remove_file(&path).unwrap();
        let err = serde_json::from_value::<Secret>(serde_json::json!({"file": path}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret file"), "{err}");
        assert!(serde_json::from_str::<Secret>(r#"{"vault": "x"}"#).is_err());
    }
}
