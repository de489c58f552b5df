//! Starts the emulated services in-process on loopback (port 0, so tests never collide) with a
//! private state directory, and collects the events they emit.
#![allow(dead_code, reason = "each test file uses part of the harness")]

pub mod ntlm;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use sensor::{
    config::Config,
    event::{Action, Event, Service},
    format::{Format, FormatContext},
    services::{self, Services},
    shutdown::CancellationToken,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Running services and their events.
pub struct Harness {
    pub services: Option<Services>,
    pub events: mpsc::Receiver<Event>,
    pub token: CancellationToken,
    pub state: PathBuf,
}

/// A state directory of its own under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sensor-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

impl Harness {
    /// Starts the `services` block with the `sensor.services` limits given.
    pub async fn start(services: Value, limits: Value) -> Self {
        let state = temp_dir("services");
        Self::start_in(services, limits, state, json!([])).await
    }

    /// Same, with a given state directory and whitelist.
    pub async fn start_in(
        services: Value,
        limits: Value,
        state: PathBuf,
        whitelist: Value,
    ) -> Self {
        Self::launch(services, limits, state, whitelist, None, None).await
    }

    /// Starts the `services` block with the top-level `domain` given (the Windows decoys
    /// present it), default limits and a state directory tagged `tag`.
    pub async fn start_in_domain(services: Value, domain: &str, tag: &str) -> Self {
        Self::launch(
            services,
            json!({}),
            temp_dir(tag),
            json!([]),
            Some(domain),
            None,
        )
        .await
    }

    /// Starts the `services` block as `sensor.persona` presents it, default limits.
    pub async fn start_as(services: Value, persona: &str) -> Self {
        let state = temp_dir("persona");
        Self::launch(services, json!({}), state, json!([]), None, Some(persona)).await
    }

    async fn launch(
        services: Value,
        limits: Value,
        state: PathBuf,
        whitelist: Value,
        domain: Option<&str>,
        persona: Option<&str>,
    ) -> Self {
        let mut limits = limits;
        limits["state_dir"] = json!(state);
        // Port 0: the kernel picks each service's port, read back with `addr`.
        limits["ephemeral_ports"] = json!(true);
        let config = json!({
            "id": "sensor-test",
            "interface": "lo",
            "hostname": "srv01",
            "whitelist_ips": whitelist,
            "services": services,
            "sensor": {"services": limits},
        });
        let mut config = config;
        if let Some(domain) = domain {
            config["domain"] = json!(domain);
        }
        // Tests of one module see its own defaults (persona `none`) unless they ask for one.
        config["sensor"]["persona"] = json!(persona.unwrap_or("none"));
        let config = Config::parse(&config.to_string(), "test").expect("config");
        let (tx, events) = mpsc::channel(100_000);
        let token = CancellationToken::new();
        let services = services::start(&config.services_plan(), tx, &token)
            .await
            .expect("services start");
        // A decoy left down would only show up later as a missing listener: say why now.
        assert!(
            services.down().is_empty(),
            "decoys down: {:?}",
            services.down()
        );
        Self {
            services: Some(services),
            events,
            token,
            state,
        }
    }

    /// The IPv4 address of `service`.
    pub fn addr(&self, service: Service) -> SocketAddr {
        self.services
            .as_ref()
            .expect("running")
            .bound()
            .iter()
            .find(|(s, a)| *s == service && a.is_ipv4())
            .map(|(_, a)| *a)
            .expect("service bound")
    }

    /// The IPv6 address of `service`.
    pub fn addr6(&self, service: Service) -> SocketAddr {
        self.services
            .as_ref()
            .expect("running")
            .bound()
            .iter()
            .find(|(s, a)| *s == service && a.is_ipv6())
            .map(|(_, a)| *a)
            .expect("service bound on IPv6")
    }

    /// Events until none arrives for `quiet` (or `limit` passes).
    pub async fn drain(&mut self, quiet: Duration, limit: Duration) -> Vec<Event> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            match tokio::time::timeout(quiet, self.events.recv()).await {
                Ok(Some(event)) => out.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        out
    }

    /// Waits until an event of `action` arrives (up to `limit`); returns everything received.
    pub async fn until(&mut self, action: Action, count: usize, limit: Duration) -> Vec<Event> {
        let deadline = Instant::now() + limit;
        let mut out: Vec<Event> = Vec::new();
        while out.iter().filter(|e| e.action == action).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(event)) => out.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        // The rest of the exchange: once its sessions have ended, all their events are queued
        // (a session sends its events before its connection stops counting as open). A test
        // that keeps a connection open gets what follows at once.
        let _ = self.wait_idle(Duration::from_secs(3)).await;
        out.extend(
            self.drain(Duration::from_millis(200), Duration::from_secs(2))
                .await,
        );
        out
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.services.as_ref().map_or(0, Services::open_connections)
    }

    /// Waits until no connection is open (up to `limit`); returns whether that happened.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.open() == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.open() == 0
    }

    /// Framework counters.
    pub fn counters(&self) -> Value {
        self.services
            .as_ref()
            .expect("running")
            .counters()
            .to_json()
    }

    /// Stops the services and removes the state directory.
    pub async fn stop(mut self) {
        if let Some(services) = self.services.take() {
            services.stop(Duration::from_secs(2)).await;
        }
        let _ignored = std::fs::remove_dir_all(&self.state);
    }
}

/// An event as the default (community) format writes it, with the fields that change from run
/// to run (timestamp, client port, session id) replaced by `*`.
pub fn normalized(event: &Event) -> Value {
    let mut out = bytes::BytesMut::new();
    sensor::format::encode(
        Format::Default,
        event,
        &FormatContext::for_device("sensor-test"),
        &mut out,
    )
    .expect("encodes");
    let mut v: Value = serde_json::from_slice(&out).expect("valid JSON");
    v["timestamp"] = json!("*");
    v["src_port"] = json!("*");
    if v["extra"].get("session_id").is_some() {
        v["extra"]["session_id"] = json!("*");
    }
    v
}

/// Every event in every format is well-formed (JSON parses; CEF is one line).
pub fn assert_well_formed(events: &[Event]) {
    let ctx = FormatContext::for_device("sensor-test");
    for event in events {
        for format in [Format::Default, Format::Trapster, Format::Ecs] {
            let mut out = bytes::BytesMut::new();
            sensor::format::encode(format, event, &ctx, &mut out).expect("encodes");
            let _: Value = serde_json::from_slice(&out).expect("valid JSON");
        }
        let mut out = bytes::BytesMut::new();
        sensor::format::encode(Format::Cef, event, &ctx, &mut out).expect("encodes");
        assert_eq!(
            out.iter().filter(|&&b| b == b'\n').count(),
            1,
            "one CEF line"
        );
    }
}

/// The expected event in normalized form.
pub fn expected(service: &str, action: &str, port: u16, data: &[u8], extra: Value) -> Value {
    let mut extra = extra;
    extra["session_id"] = json!("*");
    json!({
        "device": "sensor-test",
        "logtype": format!("{service}.{action}"),
        "dst_ip": "127.0.0.1",
        "dst_port": port,
        "src_ip": "127.0.0.1",
        "src_port": "*",
        "timestamp": "*",
        "data": hex::encode(data),
        "extra": extra,
    })
}

/// Runs a client program with a time limit; it is killed if it overruns.
pub async fn run(program: &str, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{program} cannot run: {e} (is it installed?)"))
}

/// Resident memory of this process, KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// `len` deterministic pseudo-random bytes (xorshift64 from `seed`), so a failure reproduces.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}
