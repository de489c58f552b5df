//! `sensor send-test`: an `incident_test` message sent once through an output's own transport,
//! and the receiver's answer, as Trapster's "Send test" button does.

use bytes::BytesMut;

use super::sink::elasticsearch::Auth;
use super::{
    Message, OutputConfig, Transport,
    sink::{
        Body, api::ApiOutput, email::EmailOutput, file::FileOutput, redis::RedisOutput,
        syslog::SyslogOutput,
    },
};
use crate::{format::FormatContext, incident::test_incident};

/// Sends a test incident through `cfg`; returns what the receiver answered, with every secret
/// of the output masked (a receiver that echoes the request back would otherwise show its
/// token, its webhook path or its basic credentials).
///
/// # Errors
/// What went wrong, without secrets.
pub async fn send_test(
    cfg: &OutputConfig,
    name: &str,
    ctx: &FormatContext,
) -> Result<String, String> {
    let secrets = secrets(&cfg.transport);
    let mask = |text: String| redact(&text, &secrets);
    send(cfg, name, ctx).await.map(mask).map_err(mask)
}

async fn send(cfg: &OutputConfig, name: &str, ctx: &FormatContext) -> Result<String, String> {
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
        Transport::Nats(nats) => {
            let acks = super::sink::nats::NatsOutput::new(nats.clone(), name)
                .try_write(&[&record])
                .await?;
            Ok(match acks.first() {
                Some(ack) => format!("acknowledged by JetStream: {ack}"),
                None => format!("published to {} and flushed", nats.url),
            })
        }
        Transport::Kafka(kafka) => {
            super::sink::kafka::KafkaOutput::new(kafka.clone(), name)
                .try_write(&[&record])
                .await
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

/// Every secret `transport` holds, in the forms a receiver could echo: as written, and for
/// credentials sent as HTTP basic auth, base64 of `user:password`; for a secret URL, its path and
/// query (the host is not secret).
fn secrets(transport: &Transport) -> Vec<String> {
    use base64::Engine as _;
    let basic = |user: &str, password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    let mut out: Vec<String> = Vec::new();
    let url = |out: &mut Vec<String>, url: &str| {
        out.push(url.to_owned());
        if let Ok(parsed) = reqwest::Url::parse(url) {
            let mut tail = parsed.path().to_owned();
            out.extend(parsed.query_pairs().map(|(_, value)| value.into_owned()));
            if let Some(query) = parsed.query() {
                out.push(query.to_owned());
                tail = format!("{tail}?{query}");
            }
            out.push(tail);
        }
    };
    match transport {
        Transport::Terminal | Transport::File(_) | Transport::Syslog(_) => {}
        Transport::Nats(nats) => {
            out.extend(nats.token.as_ref().map(|t| t.expose().to_owned()));
            out.extend(nats.password.as_ref().map(|p| p.expose().to_owned()));
        }
        Transport::Kafka(kafka) => {
            out.extend(kafka.sasl.as_ref().map(|s| s.password.expose().to_owned()));
        }
        Transport::Redis(redis) => {
            out.extend(redis.password.as_ref().map(|p| p.expose().to_owned()));
        }
        Transport::Email(email) => {
            if let Some(password) = &email.password {
                out.push(password.expose().to_owned());
                let user = email.username.as_deref().unwrap_or_default();
                out.push(basic("", password.expose()));
                out.push(basic(user, password.expose()));
            }
        }
        Transport::Elasticsearch(es) => {
            url(&mut out, es.url.expose());
            match &es.auth {
                Some(Auth::Basic { username, password }) => {
                    out.push(password.expose().to_owned());
                    out.push(basic(username, password.expose()));
                }
                Some(Auth::ApiKey(key)) => {
                    out.push(key.expose().to_owned());
                }
                None => {}
            }
        }
        other => {
            if let Some(api) = other.http() {
                url(&mut out, api.url.expose());
                for value in api.headers.values() {
                    out.push(value.expose().to_owned());
                    // `Authorization: Splunk <token>` and the like: the token alone too.
                    if let Some((_, token)) = value.expose().rsplit_once(' ') {
                        out.push(token.to_owned());
                    }
                }
                out.extend(api.hmac_secret.as_ref().map(|s| s.expose().to_owned()));
            }
        }
    }
    // Too short to mask without mangling the answer (`/`, an empty query): not secret anyway.
    out.retain(|s| s.len() >= 4);
    // Longest first, so a secret containing another is masked whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` with every occurrence of every secret replaced by `***`.
fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{redact, secrets};
    use crate::output::Transport;

    fn transport(json: serde_json::Value) -> Transport {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn an_echoed_request_shows_no_token_path_or_basic_credentials() {
        let hec = transport(serde_json::json!({"type": "splunk_hec",
            "url": "https://splunk.example:8088", "token": "TOKEN-0f3a-secret"}));
        let echo =
            "400: you sent Authorization: Splunk TOKEN-0f3a-secret; Splunk wants TOKEN-0f3a-secret";
        assert_eq!(
            redact(echo, &secrets(&hec)),
            "400: you sent Authorization: ***; Splunk wants ***"
        );
        let slack = transport(serde_json::json!({"type": "slack",
            "webhook_url": "https://hooks.slack.example/services/T000/B000/XXXXSECRET"}));
        let echo = "POST /services/T000/B000/XXXXSECRET HTTP/1.1 was not understood";
        assert_eq!(
            redact(echo, &secrets(&slack)),
            "POST *** HTTP/1.1 was not understood"
        );
        let es = transport(serde_json::json!({"type": "elasticsearch",
            "url": "https://es.example:9200", "username": "elastic", "password": "pw-hunter2"}));
        // base64("elastic:pw-hunter2")
        let echo = "got Basic ZWxhc3RpYzpwdy1odW50ZXIy and pw-hunter2";
        assert_eq!(redact(echo, &secrets(&es)), "got Basic *** and ***");
        let api = transport(serde_json::json!({"type": "api",
            "url": "https://collector.example/in?key=Q-SECRET-KEY",
            "headers": {"X-Token": "HDR-SECRET"}}));
        let echo = "unknown key Q-SECRET-KEY with header HDR-SECRET for collector.example";
        assert_eq!(
            redact(echo, &secrets(&api)),
            "unknown key *** with header *** for collector.example"
        );
    }
}
