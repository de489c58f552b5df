//! Every event encodes in every format; the JSON formats give one line holding one JSON
//! object, with the event's addresses in it; a compact port list encodes as the plain one.
#![no_main]

use arbitrary::Unstructured;
use bytes::BytesMut;
use sensor::format::{Format, FormatContext, encode};
use sensor_fuzz::event;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(event) = event(&mut u) else { return };
    let device: String = u.arbitrary().unwrap_or_default();
    let ctx = FormatContext::for_device(&device);
    for format in Format::ALL {
        let mut out = BytesMut::new();
        encode(format, &event, &ctx, &mut out).unwrap_or_else(|e| panic!("{format:?} failed: {e}"));
        // A compact port list encodes as the same list held as JSON strings.
        let mut plain = event.clone();
        plain.extra = event.extra.to_map().into();
        let mut plain_out = BytesMut::new();
        encode(format, &plain, &ctx, &mut plain_out).unwrap_or_else(|e| panic!("{format:?} failed: {e}"));
        assert_eq!(out, plain_out, "{format:?}: compact and plain ports differ");
        let text = std::str::from_utf8(&out).unwrap_or_else(|e| panic!("{format:?}: {e}"));
        let line = text
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("{format:?}: no final newline: {text:?}"));
        assert!(!line.contains('\n'), "{format:?}: several lines: {text:?}");
        if format == Format::Cef {
            continue;
        }
        let json: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{format:?} is not JSON ({e}): {line}"));
        assert!(json.is_object(), "{format:?}: {line}");
        let src = sensor::event::display_ip(event.session.src_ip).to_string();
        assert!(line.contains(&src), "{format:?}: no {src} in {line}");
    }
});
