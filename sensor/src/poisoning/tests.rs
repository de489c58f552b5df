use super::{PoisoningConfig, Protocol};
use crate::config::Config;

#[test]
fn detection_is_off_by_default_and_mistakes_name_their_field() {
    let config = Config::parse("{}", "t").unwrap();
    let p = &config.sensor.poisoning;
    assert!(!p.enabled);
    assert_eq!((p.interval_secs, p.jitter_secs, p.wait_ms), (300, 60, 2000));
    assert_eq!(
        p.protocols,
        vec![Protocol::Llmnr, Protocol::Nbns, Protocol::Mdns]
    );
    assert!(p.ipv6, "LLMNR over IPv6 by default");
    assert!(!p.answer_own_name, "never answers unless asked to");
    assert_eq!(p.own_name, None);
    assert!(p.whitelist_ips.is_empty());
    for (json, field) in [
        (r#"{"interval_secs": 0}"#, "sensor.poisoning.interval_secs"),
        (
            r#"{"interval_secs": 1, "wait_ms": 1001}"#,
            "sensor.poisoning.wait_ms",
        ),
        (r#"{"wait_ms": 0}"#, "sensor.poisoning.wait_ms"),
        (
            r#"{"names": ["OK", "NOT A NAME"]}"#,
            "sensor.poisoning.names",
        ),
        (
            r#"{"names": ["SIXTEEN-CHARS-XX"]}"#,
            "sensor.poisoning.names",
        ),
        (r#"{"protocols": ["wins"]}"#, "sensor.poisoning.protocols"),
        (r#"{"enable": true}"#, "sensor.poisoning"),
        (r#"{"own_name": "dot.ted"}"#, "sensor.poisoning.own_name"),
        (
            r#"{"whitelist_ips": ["10.0.0.53", "wins"]}"#,
            "sensor.poisoning.whitelist_ips",
        ),
        (
            r#"{"answer_own_name": "yes"}"#,
            "sensor.poisoning.answer_own_name",
        ),
    ] {
        let text = format!(r#"{{"sensor": {{"poisoning": {json}}}}}"#);
        let err = Config::parse(&text, "t").unwrap_err().to_string();
        assert!(err.contains(field), "{json}: {err}");
    }
    let ok: PoisoningConfig = serde_json::from_str(
        r#"{"enabled": true, "interval_secs": 30, "jitter_secs": 0, "wait_ms": 500,
            "names": ["FILESRV42"], "protocols": ["llmnr"], "ipv6": false,
            "whitelist_ips": ["10.0.0.53", "fd00::/64"], "answer_own_name": true,
            "own_name": "FILESRV01"}"#,
    )
    .unwrap();
    assert_eq!(ok.check(), Ok(()));
    assert!(ok.whitelist_ips[0].contains("10.0.0.53".parse().unwrap()));
    assert!(ok.whitelist_ips[1].contains("fd00::53".parse().unwrap()));
    assert!(!ok.whitelist_ips[1].contains("fd01::53".parse().unwrap()));
}
