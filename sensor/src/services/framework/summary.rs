//! What the UDP and TCP alert-flood controls ([`super::udp_flood`], [`super::tcp_flood`])
//! share: the lists of a summary's `extra`. The summary event itself is sent by
//! [`super::Shared::emit_flood`].

use std::{collections::BTreeSet, net::IpAddr};

use serde_json::{Map, Value, json};

/// Adds `top_sources` (`[{"ip", <unit>: n}]`), `sample`, and, when `ports_count` is not 0,
/// `ports` and `ports_count` to `extra`.
pub fn lists(
    extra: &mut Map<String, Value>,
    unit: &str,
    top: &[(IpAddr, u64)],
    sample: &[IpAddr],
    ports: &BTreeSet<u16>,
    ports_count: u64,
) {
    let show = |ip: IpAddr| crate::event::display_ip(ip).to_string();
    let top: Vec<Value> = top
        .iter()
        .map(|(ip, n)| json!({"ip": show(*ip), unit: n}))
        .collect();
    let sample: Vec<Value> = sample.iter().map(|ip| Value::String(show(*ip))).collect();
    extra.insert("top_sources".to_owned(), Value::Array(top));
    extra.insert("sample".to_owned(), Value::Array(sample));
    if ports_count > 0 {
        let ports: Vec<Value> = ports.iter().map(|p| Value::from(*p)).collect();
        extra.insert("ports".to_owned(), Value::Array(ports));
        extra.insert("ports_count".to_owned(), ports_count.into());
    }
}
