//! An event's `extra`: a JSON object, in insertion order, whose one bulky member, a scan's port
//! list, is held compactly.
//!
//! A `portscan.query` event lists every distinct port its scan probed, as strings
//! (`"ports": ["1", "3", "25"]`, as Trapster reports them). Held as `serde_json` values, a
//! 31,250-port scan is 31,250 heap strings in a 2.2 MiB array, built, serialised and freed
//! once per event: two thirds of the agent's CPU on the aggregated scan path. [`Extra`] keeps
//! such a list as two bytes a port, shared by every clone, and writes the very same JSON in
//! its place among the other keys.
//!
//! Readers see the other keys through `Deref` to the map; the ports only through
//! [`Extra::ports`] or the full object [`Extra::to_map`] (what a format that rebuilds the
//! object, ECS or CEF, uses).

use std::{
    ops::{Deref, DerefMut},
    sync::Arc,
};

use serde::{Serialize, Serializer, ser::SerializeMap as _, ser::SerializeSeq as _};
use serde_json::{Map, Value};

/// The key a compact port list is written under.
pub const PORTS: &str = "ports";

/// An event's `extra` object (see the module doc).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extra {
    map: Map<String, Value>,
    /// The compact port list and how many of `map`'s keys come before it.
    ports: Option<(usize, Arc<[u16]>)>,
}

impl Extra {
    /// An empty object.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `"ports"` to `ports` (written as strings, in the given order) at the current end of
    /// the object, replacing any `"ports"` key the map held.
    pub fn set_ports(&mut self, ports: impl Into<Arc<[u16]>>) {
        let _ = self.map.shift_remove(PORTS);
        self.ports = Some((self.map.len(), ports.into()));
    }

    /// The compact port list, if [`Self::set_ports`] set one.
    #[must_use]
    pub fn ports(&self) -> Option<&[u16]> {
        self.ports.as_ref().map(|(_, p)| &**p)
    }

    /// The whole object as `serde_json` values, ports expanded, keys in order.
    #[must_use]
    pub fn to_map(&self) -> Map<String, Value> {
        self.to_map_where(|_| true)
    }

    /// The keys `keep` accepts, as `serde_json` values in order (ports expanded only if kept):
    /// nothing else is copied.
    #[must_use]
    pub fn to_map_where(&self, keep: impl Fn(&str) -> bool) -> Map<String, Value> {
        let Some((at, ports)) = &self.ports else {
            return self
                .map
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        };
        let expanded = || Value::Array(ports.iter().map(|p| Value::from(p.to_string())).collect());
        let keep_ports = keep(PORTS);
        let mut out = Map::new();
        let rest = self.map.iter().filter(|(k, _)| k.as_str() != PORTS);
        for (i, (k, v)) in rest.enumerate() {
            if i == *at && keep_ports {
                out.insert(PORTS.to_owned(), expanded());
            }
            if keep(k) {
                out.insert(k.clone(), v.clone());
            }
        }
        if keep_ports && !out.contains_key(PORTS) {
            out.insert(PORTS.to_owned(), expanded());
        }
        out
    }

    /// Consumes the object into `serde_json`'s map, ports expanded.
    #[must_use]
    pub fn into_map(self) -> Map<String, Value> {
        if self.ports.is_none() {
            self.map
        } else {
            self.to_map()
        }
    }
}

impl Deref for Extra {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl DerefMut for Extra {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl From<Map<String, Value>> for Extra {
    fn from(map: Map<String, Value>) -> Self {
        Self { map, ports: None }
    }
}

impl From<Extra> for Value {
    fn from(extra: Extra) -> Self {
        Self::Object(extra.into_map())
    }
}

/// A port list written as JSON strings, without building them on the heap.
struct PortStrings<'a>(&'a [u16]);

impl Serialize for PortStrings<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        let mut buf = itoa::Buffer::new();
        for port in self.0 {
            seq.serialize_element(buf.format(*port))?;
        }
        seq.end()
    }
}

impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some((at, ports)) = &self.ports else {
            return self.map.serialize(serializer);
        };
        let rest = self.map.iter().filter(|(k, _)| k.as_str() != PORTS);
        let mut map = serializer.serialize_map(Some(rest.clone().count().saturating_add(1)))?;
        let mut written = false;
        for (i, (k, v)) in rest.enumerate() {
            if i == *at {
                map.serialize_entry(PORTS, &PortStrings(ports))?;
                written = true;
            }
            map.serialize_entry(k, v)?;
        }
        if !written {
            map.serialize_entry(PORTS, &PortStrings(ports))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::Extra;

    fn object(v: &Value) -> Extra {
        v.as_object().cloned().unwrap_or_default().into()
    }

    #[test]
    fn compact_ports_serialise_as_trapster_strings_in_their_place() {
        let mut extra = object(&json!({"flags": ["SYN"]}));
        extra.set_ports(vec![1, 3, 25, 65_535]);
        extra.insert("protocol".to_owned(), json!("tcp"));
        let text = serde_json::to_string(&extra).unwrap();
        assert_eq!(
            text,
            r#"{"flags":["SYN"],"ports":["1","3","25","65535"],"protocol":"tcp"}"#
        );
        assert_eq!(serde_json::to_string(&extra.to_map()).unwrap(), text);
        assert_eq!(Value::from(extra.clone()).to_string(), text);
        assert_eq!(extra.ports(), Some(&[1, 3, 25, 65_535][..]));
    }

    #[test]
    fn ports_set_last_or_first_and_empty_lists_keep_their_place() {
        let mut last = object(&json!({"a": 1, "b": 2}));
        last.set_ports(Vec::new());
        assert_eq!(
            serde_json::to_string(&last).unwrap(),
            r#"{"a":1,"b":2,"ports":[]}"#
        );
        let mut first = Extra::new();
        first.set_ports(vec![7]);
        first.insert("z".to_owned(), json!(true));
        assert_eq!(
            serde_json::to_string(&first).unwrap(),
            r#"{"ports":["7"],"z":true}"#
        );
        assert_eq!(
            serde_json::to_string(&first.to_map()).unwrap(),
            r#"{"ports":["7"],"z":true}"#
        );
    }

    #[test]
    fn a_ports_key_never_appears_twice() {
        // Set over a map's own "ports": replaced.
        let mut extra = object(&json!({"ports": ["9"], "x": 1}));
        extra.set_ports(vec![10]);
        assert_eq!(
            serde_json::to_string(&extra).unwrap(),
            r#"{"x":1,"ports":["10"]}"#
        );
        // A "ports" key inserted afterwards is shadowed by the compact list.
        extra.insert("ports".to_owned(), json!(["11"]));
        let text = serde_json::to_string(&extra).unwrap();
        assert_eq!(text, r#"{"x":1,"ports":["10"]}"#);
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, Value::from(extra));
    }

    #[test]
    fn a_filtered_copy_keeps_the_order_and_only_the_kept_keys() {
        let mut extra = object(&json!({"flags": ["SYN"], "username": "u"}));
        extra.set_ports(vec![2, 1_000]);
        extra.insert("tool".to_owned(), json!("nmap"));
        let kept = extra.to_map_where(|k| k != "username");
        assert_eq!(
            Value::Object(kept).to_string(),
            r#"{"flags":["SYN"],"ports":["2","1000"],"tool":"nmap"}"#
        );
        let no_ports = extra.to_map_where(|k| k != "ports");
        assert_eq!(
            Value::Object(no_ports).to_string(),
            r#"{"flags":["SYN"],"username":"u","tool":"nmap"}"#
        );
    }

    #[test]
    fn a_plain_map_is_written_unchanged() {
        let v = json!({"username": "root", "password": "toor", "n": [1, 2]});
        let extra = object(&v);
        assert_eq!(serde_json::to_string(&extra).unwrap(), v.to_string());
        assert_eq!(extra.to_map(), *v.as_object().unwrap());
        assert_eq!(extra.ports(), None);
    }
}
