//! Breadcrumbs: credentials planted on real machines (a saved FTP login, an SSH config entry)
//! that nobody legitimate uses. A login on any decoy with one of them (`sensor.breadcrumbs`)
//! is reported twice: the service's own `<service>.login`, then `breadcrumb.login` shaped as
//! Trapster's (`extra` `{"password", "username"}`, `data` empty), and the source's incident
//! turns critical ("Breadcrumb used on FTP").

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::event::{Action, Event, Service};

/// One planted credential (`sensor.breadcrumbs[]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Breadcrumb {
    /// The planted user name.
    pub username: String,
    /// The planted password.
    pub password: String,
    /// Only logins on this service (`ftp`, `ssh`, ...) count; any service when absent.
    #[serde(default)]
    pub service: Option<String>,
}

impl Breadcrumb {
    /// Whether the login `event` used this breadcrumb.
    #[must_use]
    pub fn used_by(&self, event: &Event) -> bool {
        event.action == Action::Login
            && event.service != Service::Breadcrumb
            && self
                .service
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(event.service.as_str()))
            && event.extra.get("username").and_then(Value::as_str) == Some(&self.username)
            && event.extra.get("password").and_then(Value::as_str) == Some(&self.password)
    }
}

/// The `breadcrumb.login` event reporting that `login` used a breadcrumb: the same session,
/// time and credentials.
#[must_use]
pub fn event_for(login: &Event) -> Event {
    let mut extra = Map::new();
    for key in ["password", "username"] {
        if let Some(v) = login.extra.get(key) {
            extra.insert(key.to_owned(), v.clone());
        }
    }
    Event {
        id: uuid::Uuid::new_v4(),
        timestamp: login.timestamp,
        session: login.session,
        service: Service::Breadcrumb,
        action: Action::Login,
        data: bytes::Bytes::new(),
        extra: extra.into(),
    }
}

/// The breadcrumbs, as the pipeline checks them.
#[derive(Debug, Clone, Default)]
pub struct Breadcrumbs(Vec<Breadcrumb>);

impl Breadcrumbs {
    /// From the configuration.
    #[must_use]
    pub const fn new(list: Vec<Breadcrumb>) -> Self {
        Self(list)
    }

    /// The `breadcrumb.login` event for `event`, when it is a login using a breadcrumb.
    #[must_use]
    pub fn check(&self, event: &Event) -> Option<Event> {
        self.0
            .iter()
            .any(|b| b.used_by(event))
            .then(|| event_for(event))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Breadcrumb, Breadcrumbs};
    use crate::{
        event::{Action, Service},
        format::golden,
    };

    fn login(service: Service, user: &str, password: &str) -> crate::event::Event {
        let mut e = golden::hostile(b"");
        e.service = service;
        e.action = Action::Login;
        e.extra = json!({"username": user, "password": password, "session_id": "x"})
            .as_object()
            .unwrap()
            .clone()
            .into();
        e
    }

    #[test]
    fn a_planted_credential_is_reported_with_its_service_filter() {
        let crumbs = Breadcrumbs::new(vec![
            Breadcrumb {
                username: "svc_backup".to_owned(),
                password: "Winter2026!".to_owned(),
                service: None,
            },
            Breadcrumb {
                username: "deploy".to_owned(),
                password: "d3ploy".to_owned(),
                service: Some("ssh".to_owned()),
            },
        ]);
        let hit = crumbs
            .check(&login(Service::Ftp, "svc_backup", "Winter2026!"))
            .unwrap();
        assert_eq!(hit.logtype().to_string(), "breadcrumb.login");
        assert_eq!(
            serde_json::Value::from(hit.extra.clone()).to_string(),
            r#"{"password":"Winter2026!","username":"svc_backup"}"#
        );
        assert!(hit.data.is_empty());
        assert!(
            crumbs
                .check(&login(Service::Ftp, "svc_backup", "wrong"))
                .is_none()
        );
        assert!(
            crumbs
                .check(&login(Service::Ftp, "deploy", "d3ploy"))
                .is_none()
        );
        assert!(
            crumbs
                .check(&login(Service::Ssh, "deploy", "d3ploy"))
                .is_some()
        );
        // The breadcrumb event itself never matches again.
        assert!(crumbs.check(&hit).is_none());
    }

    /// The seed's `breadcrumb.login` sample (Sekoia's Trapster intake), field by field: only
    /// `src_port` differs, the sensor knowing the port the login came from.
    #[test]
    fn the_envelope_matches_the_seed_sample() {
        let sample: serde_json::Value = serde_json::from_str(
            r#"{"source": "Trapster", "action": "event_new",
            "id": "00000000-0000-0000-0000-000000000000",
            "device": {"id": "11111111-1111-1111-1111-111111111111", "name": "my-trapster",
                       "template": "christmas_tree"},
            "namespace": {"id": "22222222-2222-2222-2222-222222222222", "name": "default"},
            "channel": "breadcrumb", "category": "login", "logtype": "breadcrumb.login",
            "src_ip": "1.2.3.4", "src_ip_reverse": null, "src_port": null, "dst_ip": "5.6.7.8",
            "dst_port": 443, "timestamp": "2026-01-22 13:13:49.603007+00:00", "data": "",
            "extra": {"password": "password", "username": "username"}, "type": 0}"#,
        )
        .unwrap();
        let mut login = login(Service::Https, "username", "password");
        login.session.src_ip = "1.2.3.4".parse().unwrap();
        login.session.dst_ip = "5.6.7.8".parse().unwrap();
        login.session.dst_port = 443;
        login.timestamp = "2026-01-22T13:13:49.603007Z".parse().unwrap();
        let mut event = super::event_for(&login);
        event.id = uuid::Uuid::nil();
        let ctx = crate::format::FormatContext {
            identity: crate::format::Identity {
                device_id: "11111111-1111-1111-1111-111111111111".to_owned(),
                device_name: "my-trapster".to_owned(),
                template: Some("christmas_tree".to_owned()),
                namespace_id: Some("22222222-2222-2222-2222-222222222222".to_owned()),
                namespace_name: "default".to_owned(),
            },
            ..crate::format::FormatContext::for_device("unused")
        };
        let mut out = bytes::BytesMut::new();
        crate::format::trapster::encode(&event, &ctx, &mut out).unwrap();
        let ours: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(keys(&ours), keys(&sample));
        for (key, want) in sample.as_object().unwrap() {
            if key == "src_port" {
                assert_eq!(ours[key], 40_000);
            } else {
                assert_eq!(&ours[key], want, "field `{key}`");
            }
        }
        assert_eq!(keys(&ours["extra"]), ["password", "username"]);
    }
}
