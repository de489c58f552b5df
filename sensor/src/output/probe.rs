//! `sensor send-test`: an `incident_test` message sent once through an output's own transport,
//! and the receiver's answer, as Trapster's "Send test" button does.

use bytes::BytesMut;

use super::{
    Message, OutputConfig, Transport,
    sink::{
        Body, api::ApiOutput, email::EmailOutput, file::FileOutput, redis::RedisOutput,
        syslog::SyslogOutput,
    },
};
use crate::{format::FormatContext, incident::test_incident};

/// Sends a test incident through `cfg`; returns what the receiver answered.
///
/// # Errors
/// What went wrong, without secrets.
pub async fn send_test(
    cfg: &OutputConfig,
    name: &str,
    ctx: &FormatContext,
) -> Result<String, String> {
    let message = Message::Incident(test_incident(chrono::Utc::now()));
    let mut buf = BytesMut::new();
    Body::of(cfg)
        .encode(&message, ctx, &mut buf)
        .map_err(|e| e.to_string())?;
    let record = buf.strip_suffix(b"\n").unwrap_or(&buf).to_vec();
    match &cfg.transport {
        Transport::Terminal => {
            use tokio::io::AsyncWriteExt as _;
            let mut out = tokio::io::stdout();
            out.write_all(&buf).await.map_err(|e| e.to_string())?;
            out.flush().await.map_err(|e| e.to_string())?;
            Ok("written to standard output".to_owned())
        }
        Transport::File(file) => {
            FileOutput::new(file.clone())
                .try_write(&buf)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("appended to {}", file.path.display()))
        }
        Transport::Redis(redis) => {
            let score = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
            RedisOutput::new(redis.clone(), name)
                .try_write(&[(score, &record)])
                .await?;
            Ok(format!("stored under key `{}`", redis.key))
        }
        Transport::Syslog(syslog) => {
            let mut out = SyslogOutput::new(syslog.clone());
            out.try_write(&[&record]).await?;
            Ok(format!("sent to {}", out.describe()))
        }
        Transport::Email(email) => {
            let out = EmailOutput::new(email.clone(), name, &ctx.identity.device_name);
            let envelope: serde_json::Value =
                serde_json::from_slice(&record).map_err(|e| e.to_string())?;
            let mail = super::sink::email::compose(&envelope, "[Trapster sensor]");
            let answer = out.send(&mail).await?;
            Ok(format!("accepted by {}: {answer}", email.host))
        }
        Transport::Elasticsearch(es) => {
            let time = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
            super::sink::elasticsearch::ElasticsearchOutput::new(es.clone(), name)
                .probe(&record, time)
                .await
        }
        other => {
            let api = other.http().ok_or("no transport")?;
            ApiOutput::new(api, name).probe(&record).await
        }
    }
}
