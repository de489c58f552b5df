//! Runs the real `sensor` binary inside a test namespace and collects its events and counters.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::net::{ChildGuard, NetNs};

/// Path of the sensor binary under test (`SENSOR_BIN`, set by `cargo xtask integration-test`).
#[must_use]
pub fn sensor_bin() -> PathBuf {
    std::env::var_os("SENSOR_BIN").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/debug/sensor"
            ))
        },
        PathBuf::from,
    )
}

/// A configuration for tests: given device id, allow-list and interface, short idle timeout.
#[must_use]
pub fn test_config(interface: &str, whitelist: &[&str]) -> String {
    serde_json::json!({
        "id": "it-sensor",
        "interface": interface,
        "whitelist_ips": whitelist,
        "services": {},
        "logger": {"output": "terminal", "format": "default", "kwargs": {}},
        "sensor": {
            "xdp": {"mode": "auto", "dedup_window_ms": 500, "stats_interval_secs": 1},
            "portscan": {"threshold": 3, "idle_timeout_ms": 3000, "max_window_secs": 120}
        }
    })
    .to_string()
}

/// A running sensor.
pub struct RunningSensor {
    child: ChildGuard,
    stdout: thread::JoinHandle<()>,
    /// Stdout lines as they arrive (read while the sensor runs, collected at the end).
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    stderr: thread::JoinHandle<Vec<String>>,
    /// Stderr lines as they arrive, for [`RunningSensor::wait_for_log`].
    logs: Arc<Mutex<Vec<String>>>,
    stats: PathBuf,
    dir: PathBuf,
}

/// What a stopped sensor produced.
#[derive(Debug)]
pub struct SensorRun {
    /// Events printed on stdout, parsed.
    pub events: Vec<Value>,
    /// When each event line arrived.
    pub arrivals: Vec<Instant>,
    /// The final `--stats-file` contents.
    pub stats: Value,
    /// Diagnostics printed on stderr.
    pub stderr: Vec<String>,
    /// Whether it exited successfully after SIGTERM.
    pub clean_exit: bool,
}

impl RunningSensor {
    /// Starts `sensor run` in `ns` with `config` and extra CLI arguments, and waits (at most
    /// 60 s) until it reports being ready.
    #[must_use]
    pub fn start(ns: &NetNs, config: &str, extra_args: &[&str]) -> Self {
        Self::start_wrapped(ns, &[], config, extra_args)
    }

    /// The scratch folder [`RunningSensor::start`] uses for `ns` (to prepare it, e.g. to hand it
    /// to the user the sensor switches to).
    #[must_use]
    pub fn dir_for(ns: &NetNs) -> PathBuf {
        std::env::temp_dir().join(format!("{}-run", ns.name))
    }

    /// As [`RunningSensor::start`], with the sensor started through `wrapper` (e.g.
    /// `setpriv --reuid=...`) inside the namespace.
    #[must_use]
    pub fn start_wrapped(ns: &NetNs, wrapper: &[&str], config: &str, extra_args: &[&str]) -> Self {
        let dir = Self::dir_for(ns);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config_path = dir.join("trapster.conf");
        std::fs::write(&config_path, config).expect("write config");
        let stats = dir.join("stats.json");
        let bin = sensor_bin();
        let bin = bin.to_str().expect("utf-8 path");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = ns.command(first);
                c.args(rest).arg(bin);
                c
            }
            None => ns.command(bin),
        };
        cmd.args(["--log-level", "info", "run", "-c"])
            .arg(&config_path)
            .arg("--stats-file")
            .arg(&stats)
            .args(extra_args)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn(&mut cmd);
        let inner = child.0.as_mut().expect("child");
        let out = inner.stdout.take().expect("stdout");
        let err = inner.stderr.take().expect("stderr");
        let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let seen = Arc::clone(&lines);
        let stdout = thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                seen.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((Instant::now(), line));
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let logged = Arc::clone(&logs);
        let stderr = thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[sensor] {line}");
                logged
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line.clone());
                if line.contains("Sensor ready.") {
                    let _ = ready_tx.send(true);
                }
                lines.push(line);
            }
            let _ = ready_tx.send(false);
            lines
        });
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or(false);
        let sensor = Self {
            child,
            stdout,
            lines,
            stderr,
            logs,
            stats,
            dir,
        };
        assert!(
            ready,
            "the sensor did not become ready (see [sensor] lines above)"
        );
        sensor
    }

    /// Process id (for `kill -9` tests).
    #[must_use]
    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    /// The `--stats-file` as the sensor last wrote it (every stats tick), if it has yet.
    #[must_use]
    pub fn stats_now(&self) -> Option<Value> {
        std::fs::read_to_string(&self.stats)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    }

    /// A scratch folder of this run (removed when the run is collected).
    #[must_use]
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Waits (at most `limit`, polling every 100 ms) until the `--stats-file` written by a
    /// stats tick of the running sensor satisfies `want`; returns it, or the last one read.
    #[must_use]
    pub fn wait_for_stats(&self, limit: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Some(v) = std::fs::read_to_string(&self.stats)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            {
                if want(&v) {
                    return v;
                }
                last = v;
            }
            thread::sleep(Duration::from_millis(100));
        }
        last
    }

    /// The events printed so far (complete JSON lines), while the sensor runs.
    #[must_use]
    pub fn events_now(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|(_, l)| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (at most `limit`, polling every 100 ms) until the events printed so far satisfy
    /// `want`; returns whether they did.
    #[must_use]
    pub fn wait_for_events(&self, limit: Duration, want: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if want(&self.events_now()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (at most `limit`, polling every 50 ms) until `count` diagnostics lines printed so
    /// far contain `needle`; returns whether they did.
    #[must_use]
    pub fn wait_for_log(&self, limit: Duration, needle: &str, count: usize) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self
                .logs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            if seen >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM, waits (at most 30 s) and collects events, counters and diagnostics.
    #[must_use]
    pub fn stop(mut self) -> SensorRun {
        let status = self.child.stop(libc::SIGTERM, Duration::from_secs(30));
        self.finish(status.is_some_and(|s| s.success()))
    }

    /// Sends SIGKILL and collects what was printed.
    #[must_use]
    pub fn kill(mut self) -> SensorRun {
        let _ = self.child.stop(libc::SIGKILL, Duration::from_secs(10));
        self.finish(false)
    }

    fn finish(self, clean_exit: bool) -> SensorRun {
        self.stdout.join().expect("stdout reader");
        let lines = std::mem::take(
            &mut *self
                .lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let stderr = self.stderr.join().expect("stderr reader");
        let arrivals = lines.iter().map(|(t, _)| *t).collect();
        let events = lines
            .iter()
            .map(|(_, l)| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
            })
            .collect();
        let stats = std::fs::read_to_string(&self.stats)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let _ = std::fs::remove_dir_all(&self.dir);
        SensorRun {
            events,
            arrivals,
            stats,
            stderr,
            clean_exit,
        }
    }
}

impl SensorRun {
    /// Events whose logtype is `portscan.query`.
    #[must_use]
    pub fn portscans(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["logtype"] == "portscan.query")
            .collect()
    }

    /// A kernel counter from the final statistics.
    #[must_use]
    pub fn kernel(&self, name: &str) -> u64 {
        self.stats["kernel"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name} in {}", self.stats))
    }

    /// Asserts the counter identities: every packet has one outcome, every probe one fate, and
    /// no more probes were released from the flood reserve than were held in it.
    pub fn assert_counters_add_up(&self) {
        let k = |n: &str| self.kernel(n);
        assert!(k("released") <= k("held"), "{}", self.stats);
        assert_eq!(
            k("packets"),
            k("parse_failures") + k("non_tcp") + k("fragments") + k("other_tcp") + k("probes"),
            "{}",
            self.stats
        );
        assert_eq!(
            k("probes"),
            k("allow_listed")
                + k("deduplicated")
                + k("source_budget")
                + k("cpu_budget")
                + k("records_sent")
                + k("ringbuf_full")
                + k("held")
                + k("aggregated"),
            "{}",
            self.stats
        );
        let ports = self.stats["aggregation"]["ports"].as_u64().unwrap_or(0);
        assert!(ports <= k("aggregated"), "{}", self.stats);
        assert_eq!(
            self.stats["merger"]["observations"].as_u64(),
            Some(k("records_sent") + k("released") + ports),
            "every record sent (or held and released) was received and decoded, and every \
             aggregated port taken: {}",
            self.stats
        );
    }
}
