//! Trapster community ("default") format: one JSON object, keys in Trapster's order
//! `device, logtype, dst_ip, dst_port, src_ip, src_port, timestamp, data, extra`, UTC timestamp
//! `%Y-%m-%d %H:%M:%S.%f`, `data` as lowercase hex. JSON string escaping guarantees no attacker
//! byte can break the line.

use bytes::{BufMut as _, BytesMut};
use serde::Serialize;

use crate::event::{Event, Extra, display_ip};

/// Timestamp layout of Trapster's community logger (Python `%Y-%m-%d %H:%M:%S.%f`).
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

#[derive(Serialize)]
struct Community<'a> {
    device: &'a str,
    logtype: String,
    dst_ip: String,
    dst_port: u16,
    src_ip: String,
    src_port: u16,
    timestamp: String,
    data: String,
    extra: &'a Extra,
}

/// Appends `event` as one JSON line (terminated by `\n`) to `out`.
///
/// # Errors
/// Only if serialisation fails, which plain strings and numbers cannot cause.
pub fn encode(event: &Event, device: &str, out: &mut BytesMut) -> Result<(), serde_json::Error> {
    let record = Community {
        device,
        logtype: event.logtype().to_string(),
        dst_ip: display_ip(event.session.dst_ip).to_string(),
        dst_port: event.session.dst_port,
        src_ip: display_ip(event.session.src_ip).to_string(),
        src_port: event.session.src_port,
        timestamp: event.timestamp.format(TIMESTAMP_FORMAT).to_string(),
        data: hex::encode(&event.data),
        extra: &event.extra,
    };
    let mut writer = out.writer();
    serde_json::to_writer(&mut writer, &record)?;
    writer.into_inner().put_u8(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use chrono::{TimeZone as _, Utc};
    use serde_json::json;
    use uuid::Uuid;

    use super::encode;
    use crate::event::{Action, Event, Service, SessionIdentity};

    fn portscan() -> Event {
        let extra = json!({"flags": ["SYN"], "ports": ["1", "3", "25"]});
        Event {
            id: Uuid::nil(),
            timestamp: Utc.with_ymd_and_hms(2026, 2, 13, 13, 0, 9).unwrap()
                + chrono::Duration::microseconds(677_008),
            session: SessionIdentity {
                src_ip: "::ffff:1.2.3.4".parse().unwrap(),
                src_port: 1,
                dst_ip: "5.6.7.8".parse().unwrap(),
                dst_port: 1,
            },
            service: Service::Portscan,
            action: Action::Query,
            data: Bytes::new(),
            extra: extra.as_object().unwrap().clone().into(),
        }
    }

    #[test]
    fn golden_portscan_line() {
        let mut out = BytesMut::new();
        encode(&portscan(), "trapster-1", &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "{\"device\":\"trapster-1\",\"logtype\":\"portscan.query\",\"dst_ip\":\"5.6.7.8\",\
             \"dst_port\":1,\"src_ip\":\"1.2.3.4\",\"src_port\":1,\
             \"timestamp\":\"2026-02-13 13:00:09.677008\",\"data\":\"\",\
             \"extra\":{\"flags\":[\"SYN\"],\"ports\":[\"1\",\"3\",\"25\"]}}\n"
        );
    }

    #[test]
    fn hostile_bytes_stay_on_one_line() {
        let mut event = portscan();
        event.data = Bytes::from_static(b"\n\r\0\xff\"}");
        event.extra.insert("user".into(), json!("a\nb\"c\u{2028}"));
        let mut out = BytesMut::new();
        encode(&event, "dev\n", &mut out).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        let parsed: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(parsed["data"], "0a0d00ff227d");
        assert_eq!(parsed["extra"]["user"], "a\nb\"c\u{2028}");
    }
}
