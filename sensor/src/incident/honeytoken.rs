//! URL honeytokens: paths on the HTTP/HTTPS decoys (`sensor.honeytokens.urls`) that are only
//! ever written down somewhere an intruder looks (a wiki page, a saved bookmark, a document).
//! A request for one is reported twice: the service's own `http.query`, then
//! `honeytoken.url` shaped as Trapster's (`extra.headers`: the request headers in `Title-Case`
//! plus `Remote-Addr`), and the source's incident turns critical.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::event::{Action, Event, Service, display_ip};

/// One URL token (`sensor.honeytokens.urls[]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlToken {
    /// The path (`/finance/payroll-2026.xlsx`), matched exactly, without the query string.
    pub path: String,
    /// Only on the HTTP/HTTPS instance listening on this port; any when absent.
    #[serde(default)]
    pub port: Option<u16>,
}

/// One JS-clone token (`sensor.honeytokens.js_clone[]`): the beacon path the script of
/// `sensor token js-clone` fetches when its page is served from another origin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsCloneToken {
    /// The beacon's path on an HTTP/HTTPS decoy (`/static/px.gif`).
    pub path: String,
    /// The real page's origin (`https://portal.corp.example`), for the operator's records (the
    /// script carries it; the event does not, as Trapster's).
    #[serde(default)]
    pub origin: Option<String>,
}

/// `sensor.honeytokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoneytokenConfig {
    /// URL tokens.
    #[serde(default)]
    pub urls: Vec<UrlToken>,
    /// JS-clone tokens.
    #[serde(default)]
    pub js_clone: Vec<JsCloneToken>,
}

/// The script to embed in the real login page served at `origin`: when the page is served from
/// any other origin (a phishing clone), it fetches `beacon` once, the clone's address in the
/// `Referer`. Plain ES5, no cookies, nothing sent from the real origin.
#[must_use]
pub fn js_clone_script(origin: &str, beacon: &str) -> String {
    // A JSON string is a JS string; `</` is escaped so no argument can close the tag.
    let quote = |s: &str| Value::from(s).to_string().replace("</", "<\\/");
    format!(
        "<script>(function(){{var o={};if(location.origin!==o){{\
         var i=new Image();i.referrerPolicy=\"unsafe-url\";\
         i.src={}+\"?c=\"+encodeURIComponent(location.href);}}}})();</script>\n",
        quote(origin.trim_end_matches('/')),
        quote(beacon)
    )
}

/// `user-agent` as `User-Agent`.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase))
                    .collect()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

impl HoneytokenConfig {
    /// The `honeytoken.url` event for `event`, when it is an HTTP(S) request for a token.
    #[must_use]
    pub fn check(&self, event: &Event) -> Option<Event> {
        if !matches!(event.service, Service::Http | Service::Https)
            || !matches!(event.action, Action::Query | Action::Login)
        {
            return None;
        }
        let target = event.extra.get("target").and_then(Value::as_str)?;
        let path = target.split(['?', '#']).next().unwrap_or(target);
        let action = if self
            .urls
            .iter()
            .any(|t| t.path == path && t.port.is_none_or(|p| p == event.session.dst_port))
        {
            Action::Url
        } else if self.js_clone.iter().any(|t| t.path == path) {
            Action::JsClone
        } else {
            return None;
        };
        let mut headers = Map::new();
        if let Some(Value::Object(h)) = event.extra.get("headers") {
            for (k, v) in h {
                headers.insert(title_case(k), v.clone());
            }
        }
        headers.insert(
            "Remote-Addr".to_owned(),
            Value::from(display_ip(event.session.src_ip).to_string()),
        );
        let mut extra = Map::new();
        extra.insert("headers".to_owned(), Value::Object(headers));
        Some(Event {
            id: uuid::Uuid::new_v4(),
            timestamp: event.timestamp,
            session: event.session,
            service: Service::Honeytoken,
            action,
            data: bytes::Bytes::new(),
            extra: extra.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{HoneytokenConfig, JsCloneToken, UrlToken, js_clone_script, title_case};
    use crate::{
        event::{Action, Service},
        format::golden,
    };

    #[test]
    fn a_token_path_is_reported_with_title_case_headers() {
        assert_eq!(
            title_case("upgrade-insecure-requests"),
            "Upgrade-Insecure-Requests"
        );
        let tokens = HoneytokenConfig {
            urls: vec![UrlToken {
                path: "/backup/passwords.kdbx".to_owned(),
                port: None,
            }],
            js_clone: vec![JsCloneToken {
                path: "/static/px.gif".to_owned(),
                origin: None,
            }],
        };
        let mut e = golden::hostile(b"");
        e.service = Service::Http;
        e.action = Action::Query;
        e.extra = json!({"target": "/backup/passwords.kdbx?x=1",
                         "headers": {"host": "example.com:8000", "user-agent": "curl/8"}})
        .as_object()
        .unwrap()
        .clone()
        .into();
        let hit = tokens.check(&e).unwrap();
        assert_eq!(hit.logtype().to_string(), "honeytoken.url");
        assert_eq!(
            serde_json::Value::from(hit.extra.clone()),
            json!({"headers": {"Host": "example.com:8000", "User-Agent": "curl/8",
                               "Remote-Addr": "2001:db8::66"}})
        );
        e.extra.insert(
            "target".to_owned(),
            json!("/static/px.gif?c=https%3A%2F%2Fevil"),
        );
        assert_eq!(
            tokens.check(&e).unwrap().logtype().to_string(),
            "honeytoken.js_clone"
        );
        e.extra.insert("target".to_owned(), json!("/backup/other"));
        assert!(tokens.check(&e).is_none());
        assert!(tokens.check(&hit).is_none());
    }

    /// The seed's `honeytoken.url` sample, field by field, from a request with its headers:
    /// `src_port`, `dst_ip` and `data` differ (the sensor knows the socket and writes `""` for
    /// no bytes, where the sample has nulls), as do `device` and `namespace` (the sample's are
    /// empty, the sensor names itself); everything else is equal.
    #[test]
    fn the_envelope_matches_the_seed_sample() {
        let sample: serde_json::Value = serde_json::from_str(
            r#"{"source": "Trapster", "action": "event_new", "channel": "honeytoken",
            "category": "url", "logtype": "honeytoken.url", "src_ip": "1.2.3.4",
            "dst_port": 443, "timestamp": "2026-01-23 15:11:30.345795+00:00",
            "extra": {"headers": {"Host": "example.com:8000",
              "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
              "Connection": "keep-alive",
              "User-Agent": "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:147.0) Gecko/20100101 Firefox/147.0",
              "Accept-Encoding": "gzip, deflate",
              "Accept-Language": "fr,fr-FR;q=0.9,en-US;q=0.8,en;q=0.7",
              "Upgrade-Insecure-Requests": "1", "Remote-Addr": "1.2.3.4"}}, "type": 0}"#,
        )
        .unwrap();
        let mut e = golden::hostile(b"");
        e.service = Service::Https;
        e.action = Action::Query;
        e.session.src_ip = "1.2.3.4".parse().unwrap();
        e.session.dst_port = 443;
        e.timestamp = "2026-01-23T15:11:30.345795Z".parse().unwrap();
        let headers: serde_json::Map<String, serde_json::Value> = sample["extra"]["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "Remote-Addr")
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        e.extra = json!({"target": "/t", "headers": headers})
            .as_object()
            .unwrap()
            .clone()
            .into();
        let tokens = HoneytokenConfig {
            urls: vec![UrlToken {
                path: "/t".to_owned(),
                port: Some(443),
            }],
            js_clone: Vec::new(),
        };
        let hit = tokens.check(&e).unwrap();
        let mut out = bytes::BytesMut::new();
        crate::format::trapster::encode(
            &hit,
            &crate::format::FormatContext::for_device("d"),
            &mut out,
        )
        .unwrap();
        let ours: serde_json::Value = serde_json::from_slice(&out).unwrap();
        for (key, want) in sample.as_object().unwrap() {
            assert_eq!(&ours[key], want, "field `{key}`");
        }
        let order: Vec<&String> = ours["extra"]["headers"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(order.last().map(|k| k.as_str()), Some("Remote-Addr"));
    }

    #[test]
    fn the_script_beacons_only_from_another_origin() {
        let script = js_clone_script("https://portal.corp.example/", "https://s.corp:8443/px.gif");
        assert_eq!(
            script,
            "<script>(function(){var o=\"https://portal.corp.example\";if(location.origin!==o){\
             var i=new Image();i.referrerPolicy=\"unsafe-url\";\
             i.src=\"https://s.corp:8443/px.gif\"+\"?c=\"+encodeURIComponent(location.href);}})();\
             </script>\n"
        );
        // Quotes in the arguments cannot break out of the strings.
        assert!(js_clone_script("a\"+alert(1)+\"", "b").contains(r#"var o="a\"+alert(1)+\"""#));
    }
}
