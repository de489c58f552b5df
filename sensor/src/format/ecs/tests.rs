//! The ECS document against Trapster 1.2's `EcsFormatter` (expected texts are what it writes
//! for the same community events, the side-by-side test in `tests/trapster_ecs.rs` checks the
//! live one).

use bytes::BytesMut;
use serde_json::json;

use super::{EcsOptions, document, encode};
use crate::{
    event::{Action, Service},
    format::{FormatContext, golden},
};

fn text(event: &crate::event::Event, ctx: &FormatContext) -> String {
    let mut out = BytesMut::new();
    encode(event, ctx, &mut out).unwrap();
    String::from_utf8(out.to_vec()).unwrap()
}

/// `EcsFormatter(node_id="s1").format(...)` of the same FTP login, `json.dump`ed.
#[test]
fn a_login_is_trapsters_text_byte_for_byte() {
    let mut event = golden::hostile(b"root");
    event.extra = json!({"username": "root", "password": "toor"})
        .as_object()
        .unwrap()
        .clone()
        .into();
    let want = concat!(
        r#"{"@timestamp": "2026-01-01T00:00:00Z", "ecs": {"version": "8.11.0"}, "#,
        r#""event": {"kind": "event", "category": ["authentication", "network"], "#,
        r#""type": ["start", "info"], "action": "login", "outcome": "failure", "#,
        r#""dataset": "trapster.ftp"}, "observer": {"name": "Trapster", "id": "s1", "#,
        r#""type": "honeypot", "vendor": "Ballpoint", "product": "Trapster"}, "#,
        r#""host": {"name": "s1"}, "network": {"transport": "tcp", "protocol": "ftp", "#,
        r#""application": "ftp", "type": "ipv6"}, "source": {"ip": "2001:db8::66", "#,
        r#""port": 40000, "user": {"name": "root"}}, "destination": {"ip": "2001:db8::1", "#,
        r#""port": 21}, "related": {"ip": ["2001:db8::66", "2001:db8::1"], "user": ["root"]}, "#,
        r#""user": {"name": "root"}, "trapster": {"raw": "726f6f74", "login": "#,
        r#"{"username": "root", "password": "toor"}}}"#,
        "\n"
    );
    assert_eq!(text(&event, &FormatContext::for_device("s1")), want);
}

#[test]
fn format_options_fill_observer_service_and_host() {
    let event = &golden::catalogue_events()[0];
    let mut ctx = FormatContext::for_device("s1");
    ctx.ecs = EcsOptions {
        ecs_version: "8.17.0".to_owned(),
        observer_name: "decoys".to_owned(),
        environment: Some("prod".to_owned()),
        host_name: Some("dc01".to_owned()),
        service_version: Some("1.2.3".to_owned()),
        extended: false,
    };
    let doc = document(event, &ctx);
    assert_eq!(doc["ecs"], json!({"version": "8.17.0"}));
    assert_eq!(
        doc["observer"],
        json!({"name": "decoys", "id": "s1", "type": "honeypot", "vendor": "Ballpoint",
               "product": "Trapster"})
    );
    assert_eq!(
        doc["service"],
        json!({"version": "1.2.3", "environment": "prod"})
    );
    assert_eq!(doc["host"], json!({"name": "dc01"}));
    // A port scan: no transport (TCP and UDP probes alike), no empty `trapster.raw` removed.
    assert_eq!(
        doc["network"],
        json!({"protocol": "portscan", "application": "portscan", "type": "ipv4"})
    );
    assert_eq!(
        doc["trapster"],
        json!({"raw": "", "portscan": {"flags": ["SYN"], "ports": ["1", "3", "25"]}})
    );
    assert_eq!(doc["@timestamp"], "2026-02-13T13:00:09.677008Z");
}

#[test]
fn http_fills_http_and_url_and_keeps_only_trapsters_keys() {
    let mut event = golden::hostile(b"x");
    event.service = Service::Http;
    event.action = Action::Query;
    event.extra = json!({"skin": "default_apache", "method": "GET", "target": "/a?b=1",
                         "version": "1.1", "headers": {"user-agent": "curl/8", "x": null},
                         "status_code": 404, "session_id": "abc"})
    .as_object()
    .unwrap()
    .clone()
    .into();
    let doc = document(&event, &FormatContext::for_device("s1"));
    assert_eq!(
        doc["http"],
        json!({"version": "1.1", "request": {"method": "GET", "headers": {"user-agent": "curl/8"}},
               "response": {"status_code": 404}})
    );
    assert_eq!(doc["url"], json!({"path": "/a?b=1"}));
    assert_eq!(
        doc["trapster"]["http"],
        json!({"skin": "default_apache", "method": "GET", "target": "/a?b=1", "version": "1.1",
               "headers": {"user-agent": "curl/8"}, "status_code": 404})
    );
    assert_eq!(doc["event"]["type"], json!(["access", "info"]));
    assert!(doc.get("user").is_none());
    assert!(doc["related"].get("user").is_none());
}

#[test]
fn extended_adds_the_sensors_fields() {
    let mut event = golden::hostile(b"x");
    event.service = Service::Http;
    event.action = Action::Query;
    event.extra = json!({"target": "/a?b=1", "headers": {"User-Agent": "curl/8"},
                         "session_id": "abc"})
    .as_object()
    .unwrap()
    .clone()
    .into();
    let mut ctx = FormatContext::for_device("s1");
    ctx.ecs.extended = true;
    let doc = document(&event, &ctx);
    assert_eq!(doc["event"]["id"], event.id.to_string());
    assert_eq!(doc["source"]["address"], "2001:db8::66");
    assert_eq!(doc["destination"]["address"], "2001:db8::1");
    assert_eq!(doc["url"], json!({"path": "/a?b=1", "original": "/a?b=1"}));
    assert_eq!(doc["user_agent"], json!({"original": "curl/8"}));
    assert_eq!(doc["trapster"]["http"]["session_id"], "abc");
    assert_eq!(
        doc["message"],
        "http.query from 2001:db8::66:40000 to 2001:db8::1:21"
    );
}

#[test]
fn a_mysql_login_carries_trapsters_password_and_details() {
    let mut event = golden::hostile(b"");
    event.service = Service::Mysql;
    event.extra = json!({"username": "bob", "auth_plugin": "mysql_native_password",
                         "auth_response": "1111", "hashcat": "$mysqlna$x*1111"})
    .as_object()
    .unwrap()
    .clone()
    .into();
    let doc = document(&event, &FormatContext::for_device("s1"));
    assert_eq!(
        doc["trapster"],
        json!({"raw": "", "login": {"username": "bob", "password": "1111"},
               "mysql": {"details": "mysql_native_password\u{0}"}})
    );
    assert_eq!(
        doc["event"]["category"],
        json!(["authentication", "network"])
    );
}

#[test]
fn hostile_bytes_stay_one_ascii_json_line() {
    let ctx = FormatContext::for_device("s1");
    for (payload, v) in golden::hostile_json(|e, out| encode(e, &ctx, out).unwrap()) {
        assert_eq!(v["trapster"]["raw"], hex::encode(&payload));
        let name = String::from_utf8_lossy(&payload);
        assert_eq!(v["trapster"]["login"]["username"], name.as_ref());
        // Not a key Trapster's FTP writes: left out.
        assert!(v["trapster"].get("ftp").is_none());
    }
    let event = golden::hostile("é\u{2028}".as_bytes());
    assert!(text(&event, &ctx).is_ascii());
}
