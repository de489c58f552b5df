//! Every event's CEF line parses back, field for field: addresses, ports, service, action,
//! user name, id, device, the `extra` JSON (exactly) and the data (hex).
#![no_main]

use arbitrary::Unstructured;
use sensor::event::display_ip;
use sensor::format::{FormatContext, cef};
use sensor_fuzz::{cef_header, cef_value, event, parse_cef};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(event) = event(&mut u) else { return };
    let device: String = u.arbitrary().unwrap_or_default();
    let ctx = FormatContext::for_device(&device);
    let line = cef::line(&event, &ctx);
    assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
    let cef = parse_cef(&line).unwrap_or_else(|| panic!("unparsable: {line:?}"));
    assert_eq!(cef.header[0], "CEF:0");
    assert_eq!(cef.header[4], cef_header(event.service.as_str()));
    assert_eq!(cef.header[5], cef_header(event.action.as_str()));
    let ext = |k: &str| {
        cef.get(k)
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
            .to_owned()
    };
    assert_eq!(ext("rt"), event.timestamp.timestamp_millis().to_string());
    assert_eq!(ext("src"), display_ip(event.session.src_ip).to_string());
    assert_eq!(ext("spt"), event.session.src_port.to_string());
    assert_eq!(ext("dst"), display_ip(event.session.dst_ip).to_string());
    assert_eq!(ext("dpt"), event.session.dst_port.to_string());
    assert_eq!(ext("app"), event.service.as_str());
    assert_eq!(ext("act"), event.logtype().to_string());
    match event.extra.get("username").and_then(|v| v.as_str()) {
        Some(user) => assert_eq!(ext("suser"), cef_value(user), "{line:?}"),
        None => assert!(cef.get("suser").is_none(), "{line:?}"),
    }
    assert_eq!(ext("externalId"), event.id.to_string());
    assert_eq!(ext("dvchost"), cef_value(&device));
    assert_eq!(ext("cs1"), cef_value(&device));
    let extra: serde_json::Value = serde_json::from_str(&ext("cs2"))
        .unwrap_or_else(|e| panic!("cs2 is not JSON ({e}): {line:?}"));
    assert_eq!(extra, serde_json::Value::from(event.extra.clone()));
    assert_eq!(ext("cs3"), sensor::format::hex_data(&event));
    let keys: Vec<&str> = cef.extensions.iter().map(|(k, _)| k.as_str()).collect();
    let expected: Vec<&str> = ["rt", "src", "spt", "dst", "dpt", "proto", "app", "act"]
        .into_iter()
        .chain(cef.get("suser").map(|_| "suser"))
        .chain([
            "dvchost",
            "externalId",
            "msg",
            "cs1Label",
            "cs1",
            "cs2Label",
            "cs2",
        ])
        .chain(["cs3Label", "cs3"])
        .collect();
    assert_eq!(keys, expected, "{line:?}");
});
