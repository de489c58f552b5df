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
    ] {
        let text = format!(r#"{{"sensor": {{"poisoning": {json}}}}}"#);
        let err = Config::parse(&text, "t").unwrap_err().to_string();
        assert!(err.contains(field), "{json}: {err}");
    }
    let ok: PoisoningConfig = serde_json::from_str(
        r#"{"enabled": true, "interval_secs": 30, "jitter_secs": 0, "wait_ms": 500,
            "names": ["FILESRV42"], "protocols": ["llmnr"]}"#,
    )
    .unwrap();
    assert_eq!(ok.check(), Ok(()));
}
