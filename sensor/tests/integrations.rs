//! SIEM, chat and webhook outputs against a local HTTPS receiver started here (loopback, a CA
//! of its own): Splunk HEC, Sekoia.io, Slack, Teams and a signed custom webhook. The receiver
//! checks paths, headers and bodies against each product's documented format and answers with
//! scripted statuses (200, 202, 429, 503, 403). Tokens never appear in logs.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly on purpose")]

mod support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sensor::{
    format::FormatContext,
    output::{Fanout, OutputConfig, sink::api::hmac_sha256},
};
use serde_json::{Value, json};
use support::{incident, login_event};
use tokio::io::AsyncWriteExt as _;

type Request = support::HttpRequest;

struct Receiver {
    addr: SocketAddr,
    ca: std::path::PathBuf,
    requests: Arc<Mutex<Vec<Request>>>,
}

/// An HTTPS receiver answering each request with the next status of `script` (then 200).
async fn receiver(script: &[(u16, &'static str)]) -> Receiver {
    let dir = std::env::temp_dir().join(format!("sensor-int-{}", uuid::Uuid::new_v4()));
    let pki = support::Pki::new(&dir);
    let ca_path = pki.ca.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(script.to_vec()));
    let seen = Arc::clone(&requests);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = Arc::clone(&seen);
            let script = Arc::clone(&script);
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                loop {
                    let Some(req) = support::read_http_request(&mut s).await else {
                        return;
                    };
                    seen.lock().unwrap().push(req);
                    let (status, extra) = {
                        let mut script = script.lock().unwrap();
                        if script.is_empty() {
                            (200, "")
                        } else {
                            script.remove(0)
                        }
                    };
                    let body = format!("{{\"text\":\"status {status}\",\"code\":0}}");
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
                        body.len()
                    );
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Receiver {
        addr,
        ca: ca_path,
        requests,
    }
}

fn output(transport: Value) -> OutputConfig {
    serde_json::from_value(json!({"name": "under-test", "transport": transport, "receive": "both"}))
        .unwrap()
}

async fn wait_for(rx: &Receiver, n: usize, limit: Duration) -> Vec<Request> {
    let deadline = Instant::now() + limit;
    while rx.requests.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rx.requests.lock().unwrap().clone()
}

fn ctx() -> FormatContext {
    FormatContext::for_device("sensor-int")
}

#[tokio::test(flavor = "multi_thread")]
async fn splunk_hec_batches_gzip_and_retries_busy_but_not_bad_tokens() {
    let rx = receiver(&[(503, "")]).await;
    let out = output(json!({
        "type": "splunk_hec", "url": format!("https://127.0.0.1:{}", rx.addr.port()),
        "token": "HEC-SECRET-TOKEN", "index": "deception", "ca_file": rx.ca
    }));
    let fanout = Fanout::start(&[out], &ctx());
    fanout.send(login_event("root"));
    fanout.send(incident());
    let stats = fanout.finish(Duration::from_secs(20)).await;
    assert_eq!(
        (stats[0].counts.sent, stats[0].counts.dropped),
        (2, 0),
        "{stats:?}"
    );
    assert!(stats[0].retried >= 1, "503 is retried");
    // The first request got the 503; the two messages follow in one request or in two:
    // check every later request, and the union of what they carry, in order.
    let requests = wait_for(&rx, 2, Duration::from_secs(5)).await;
    let mut objects: Vec<Value> = Vec::new();
    for r in requests.iter().skip(1) {
        assert_eq!(r.path, "/services/collector/event");
        assert_eq!(r.header("authorization"), Some("Splunk HEC-SECRET-TOKEN"));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        let body = String::from_utf8(r.plain_body()).unwrap();
        objects.extend(
            serde_json::Deserializer::from_str(&body)
                .into_iter::<Value>()
                .map(Result::unwrap),
        );
    }
    assert_eq!(objects.len(), 2);
    for o in &objects {
        for key in ["time", "host", "source", "sourcetype", "index", "event"] {
            assert!(o.get(key).is_some(), "{key} in {o}");
        }
        assert_eq!(o["index"], "deception");
        assert_eq!(o["host"], "sensor-int");
    }
    assert_eq!(objects[0]["event"]["logtype"], "ssh.login");
    assert_eq!(objects[1]["event"]["action"], "incident_created");
    assert_eq!(objects[1]["event"]["type"], 2);

    // A bad token (403) is not retried: the batch is dropped and counted.
    let rx = receiver(&[(403, "")]).await;
    let out = output(json!({
        "type": "splunk_hec", "url": format!("https://127.0.0.1:{}", rx.addr.port()),
        "token": "WRONG", "ca_file": rx.ca
    }));
    let fanout = Fanout::start(&[out], &ctx());
    fanout.send(login_event("root"));
    let stats = fanout.finish(Duration::from_secs(10)).await;
    assert_eq!(
        (
            stats[0].counts.sent,
            stats[0].counts.dropped,
            stats[0].retried
        ),
        (0, 1, 0)
    );
    assert_eq!(wait_for(&rx, 1, Duration::from_secs(2)).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sekoia_intake_gets_envelopes_as_json_strings_with_its_key() {
    let rx = receiver(&[(202, "")]).await;
    let out = output(json!({
        "type": "sekoia", "url": format!("https://localhost:{}", rx.addr.port()),
        "intake_key": "SEKOIA-SECRET-KEY", "ca_file": rx.ca
    }));
    let fanout = Fanout::start(&[out], &ctx());
    fanout.send(login_event("admin"));
    fanout.send(incident());
    let stats = fanout.finish(Duration::from_secs(10)).await;
    assert_eq!(stats[0].counts.sent, 2);
    // The two messages may arrive in one request or in two: check every request, and the
    // union of what they carry, in order.
    let requests = wait_for(&rx, 1, Duration::from_secs(5)).await;
    let mut jsons = Vec::new();
    for r in &requests {
        assert_eq!(r.path, "/jsons");
        assert_eq!(r.header("x-sekoiaio-intake-key"), Some("SEKOIA-SECRET-KEY"));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        jsons.extend(body["jsons"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(jsons.len(), 2, "{requests:?}");
    let event: Value = serde_json::from_str(jsons[0].as_str().unwrap()).unwrap();
    // What Sekoia's Trapster parser reads.
    assert_eq!(event["device"]["name"], "sensor-int");
    assert_eq!(event["channel"], "ssh");
    assert_eq!(event["category"], "login");
    assert_eq!(event["extra"]["username"], "admin");
    let inc: Value = serde_json::from_str(jsons[1].as_str().unwrap()).unwrap();
    assert_eq!(inc["action"], "incident_created");
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_gets_paced_escaped_messages_and_honours_retry_after() {
    let rx = receiver(&[(429, "Retry-After: 2\r\n")]).await;
    let out: OutputConfig = serde_json::from_value(json!({
        "transport": {"type": "slack", "webhook_url": format!("https://127.0.0.1:{}/services/T0/B0/SLACK-SECRET", rx.addr.port()), "ca_file": rx.ca}
    }))
    .unwrap();
    let fanout = Fanout::start(&[out], &ctx());
    // Events are not for chat by default: only the incidents arrive.
    fanout.send(login_event("<!channel> & `rm`"));
    let mut hostile = incident();
    hostile.description = "<!channel> *bold* & `code`".to_owned();
    fanout.send(hostile);
    fanout.send(incident());
    let stats = fanout.finish(Duration::from_secs(20)).await;
    assert_eq!(
        (stats[0].counts.received, stats[0].counts.sent),
        (2, 2),
        "{stats:?}"
    );
    let requests = wait_for(&rx, 3, Duration::from_secs(10)).await;
    assert_eq!(requests.len(), 3, "one 429, then two messages");
    assert!(
        requests[1].at - requests[0].at >= Duration::from_millis(1_900),
        "Retry-After honoured"
    );
    assert!(
        requests[2].at - requests[1].at >= Duration::from_millis(900),
        "about one message per second"
    );
    let body: Value = serde_json::from_slice(&requests[1].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("&lt;!channel&gt;") && text.contains("&amp;"),
        "{text}"
    );
    // mrkdwn fields are escaped; the header is plain_text, which Slack never parses.
    for field in body["blocks"][1]["fields"].as_array().unwrap() {
        assert_eq!(field["type"], "mrkdwn");
        assert!(!field["text"].as_str().unwrap().contains("<!"), "{field}");
    }
    assert_eq!(body["blocks"][0]["text"]["type"], "plain_text");
    assert_eq!(body["blocks"][0]["type"], "header");
    assert_eq!(body["blocks"][1]["type"], "section");
}

#[tokio::test(flavor = "multi_thread")]
async fn teams_gets_an_adaptive_card() {
    let rx = receiver(&[(202, "")]).await;
    let out: OutputConfig = serde_json::from_value(json!({
        "transport": {"type": "teams", "webhook_url": format!("https://127.0.0.1:{}/workflows/TEAMS-SECRET", rx.addr.port()), "ca_file": rx.ca}
    }))
    .unwrap();
    let fanout = Fanout::start(&[out], &ctx());
    fanout.send(incident());
    let stats = fanout.finish(Duration::from_secs(10)).await;
    assert_eq!(stats[0].counts.sent, 1);
    let requests = wait_for(&rx, 1, Duration::from_secs(5)).await;
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(attachment["content"]["type"], "AdaptiveCard");
    assert_eq!(attachment["content"]["body"][1]["type"], "FactSet");
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_webhook_is_signed_with_hmac_sha256() {
    let rx = receiver(&[]).await;
    let out = output(json!({
        "type": "webhook", "url": format!("https://127.0.0.1:{}/hook", rx.addr.port()),
        "headers": {"X-Api-Key": "HOOK-SECRET-HEADER"}, "hmac_secret": "shared-key", "ca_file": rx.ca
    }));
    let fanout = Fanout::start(&[out], &ctx());
    fanout.send(incident());
    fanout.finish(Duration::from_secs(10)).await;
    let requests = wait_for(&rx, 1, Duration::from_secs(5)).await;
    let r = &requests[0];
    let want = format!(
        "sha256={}",
        hex::encode(hmac_sha256(b"shared-key", &r.body))
    );
    assert_eq!(r.header("x-trapster-signature-256"), Some(want.as_str()));
    assert_eq!(r.header("x-api-key"), Some("HOOK-SECRET-HEADER"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["action"], "incident_created");
    assert_eq!(body["device"]["id"], "sensor-int");
}

#[test]
fn tokens_never_appear_in_logs() {
    let logs = support::LogCapture::install();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let rx = receiver(&[(503, ""), (503, ""), (401, "")]).await;
        let outputs = vec![
            output(json!({"type": "splunk_hec", "url": format!("https://127.0.0.1:{}", rx.addr.port()), "token": "HEC-SECRET-TOKEN", "ca_file": rx.ca})),
            output(json!({"type": "sekoia", "url": "https://127.0.0.1:9", "intake_key": "SEKOIA-SECRET-KEY"})),
            output(json!({"type": "slack", "webhook_url": "https://127.0.0.1:9/services/SLACK-SECRET"})),
            output(json!({"type": "webhook", "url": "https://127.0.0.1:9/h?k=HOOK-SECRET-QUERY", "hmac_secret": "HMAC-SECRET"})),
        ];
        let fanout = Fanout::start(&outputs, &ctx());
        fanout.send(incident());
        fanout.finish(Duration::from_secs(4)).await;
    });
    let text = logs.text();
    assert!(text.contains("retrying"), "failures were logged: {text}");
    for secret in [
        "HEC-SECRET-TOKEN",
        "SEKOIA-SECRET-KEY",
        "SLACK-SECRET",
        "HOOK-SECRET-QUERY",
        "HMAC-SECRET",
    ] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
}

/// `sensor send-test` of a webhook with no `ca_file`, the sensor's environment given.
async fn send_test_without_ca_file(
    rx: &Receiver,
    env: &[(&str, &std::path::Path)],
) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("sensor-int-os-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = json!({"id": "fw01", "outputs": [{"name": "hook", "transport": {
        "type": "webhook", "url": format!("https://127.0.0.1:{}/hook", rx.addr.port())}}]});
    let path = dir.join("sensor.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sensor"));
    cmd.args(["send-test", "-c", path.to_str().unwrap(), "-o", "hook"])
        .env("NO_COLOR", "1")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_outputs_trust_the_os_store_as_ssl_cert_file_names_it() {
    let rx = receiver(&[]).await;
    // The test CA installed as the "OS store": trusted without any `ca_file`.
    let (ok, text) = send_test_without_ca_file(&rx, &[("SSL_CERT_FILE", rx.ca.as_path())]).await;
    assert!(ok, "{text}");
    assert!(text.contains("hook (webhook): OK"), "{text}");
    assert_eq!(rx.requests.lock().unwrap().len(), 1);
    // Without it, the same receiver is not trusted and nothing is delivered.
    let (ok, text) = send_test_without_ca_file(&rx, &[]).await;
    assert!(!ok, "{text}");
    assert_eq!(rx.requests.lock().unwrap().len(), 1, "{text}");
}

/// The same as [`send_test_without_ca_file`], but with the test CA appended to the system's
/// own bundle (`/etc/ssl/certs/ca-certificates.crt`, what `update-ca-certificates` writes) in a
/// private mount namespace, so nothing outside this one command sees the change.
async fn send_test_with_the_ca_in_the_system_bundle(rx: &Receiver) -> (bool, String) {
    let system = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
    let dir = std::env::temp_dir().join(format!("sensor-int-sys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bundle = std::fs::read(system).unwrap();
    bundle.extend_from_slice(b"\n");
    bundle.extend_from_slice(&std::fs::read(&rx.ca).unwrap());
    let bundle_path = dir.join("ca-certificates.crt");
    std::fs::write(&bundle_path, bundle).unwrap();
    let config = json!({"id": "fw01", "outputs": [{"name": "hook", "transport": {
        "type": "webhook", "url": format!("https://127.0.0.1:{}/hook", rx.addr.port())}}]});
    let path = dir.join("sensor.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let script = format!(
        "mount --bind {} {} && exec {} send-test -c {} -o hook",
        bundle_path.display(),
        system.display(),
        env!("CARGO_BIN_EXE_sensor"),
        path.display()
    );
    let out = tokio::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("NO_COLOR", "1")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_outputs_trust_a_ca_installed_in_the_system_bundle() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0
        || !std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists()
    {
        eprintln!("skipped: needs root (a private mount namespace) and the system CA bundle");
        return;
    }
    let rx = receiver(&[]).await;
    let (ok, text) = send_test_with_the_ca_in_the_system_bundle(&rx).await;
    assert!(ok, "{text}");
    assert!(text.contains("hook (webhook): OK"), "{text}");
    assert_eq!(rx.requests.lock().unwrap().len(), 1);
    // Outside that namespace the system bundle is unchanged: the receiver is not trusted.
    let (ok, text) = send_test_without_ca_file(&rx, &[]).await;
    assert!(!ok, "{text}");
    assert_eq!(rx.requests.lock().unwrap().len(), 1, "{text}");
}
