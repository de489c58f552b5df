//! The sensor process of a soak phase: `sensor run --capture none` with a configuration in the
//! phase's scratch folder, started again as often as the phase needs (the same spool, state and
//! ports), stopped with SIGTERM or `kill -9`; its log goes to one file per start.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// A sensor, running or not.
pub struct SensorProcess {
    bin: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    stats: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl SensorProcess {
    /// A sensor of binary `bin` whose configuration `config` is written to `dir` (created).
    ///
    /// # Panics
    /// When the folder or the configuration cannot be written.
    #[must_use]
    pub fn new(bin: &Path, dir: &Path, config: &Value) -> Self {
        std::fs::create_dir_all(dir).expect("scratch folder");
        let path = dir.join("sensor.json");
        std::fs::write(&path, config.to_string()).expect("write the configuration");
        Self {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            config: path,
            stats: dir.join("stats.json"),
            child: None,
            starts: 0,
        }
    }

    /// Starts it and waits (at most 60 s) until it logs that it is ready; the time that took.
    ///
    /// # Panics
    /// When it cannot be spawned, or exits or stays unready for 60 s.
    pub async fn start(&mut self) -> Duration {
        let started = Instant::now();
        self.starts += 1;
        let log = self.dir.join(format!("sensor-{}.log", self.starts));
        let file = std::fs::File::create(&log).expect("log file");
        let _ = std::fs::remove_file(&self.stats);
        let child = Command::new(&self.bin)
            .args(["--log-level", "info", "run", "--capture", "none", "-c"])
            .arg(&self.config)
            .arg("--stats-file")
            .arg(&self.stats)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let ready = super::wait_until(Duration::from_secs(60), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Sensor ready."))
        })
        .await;
        assert!(
            ready,
            "the sensor did not become ready; see {}",
            log.display()
        );
        started.elapsed()
    }

    /// Its process id while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its resident memory, KiB (0 when not running).
    #[must_use]
    pub fn rss_kib(&self) -> u64 {
        self.pid().map_or(0, super::rss_kib)
    }

    /// Its open descriptors (0 when not running).
    #[must_use]
    pub fn fds(&self) -> u64 {
        self.pid().map_or(0, super::fd_count)
    }

    /// The stats file as last written (every second, and at exit).
    #[must_use]
    pub fn stats(&self) -> Option<Value> {
        std::fs::read_to_string(&self.stats)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    }

    /// The counters of its first output in the stats file.
    #[must_use]
    pub fn output_stats(&self) -> Value {
        self.stats().map_or(Value::Null, |s| {
            s["outputs"].get(0).cloned().unwrap_or(Value::Null)
        })
    }

    /// SIGTERM, then waits at most `limit` (killed after): the exit status (`None` if it had to
    /// be killed) and the time the shutdown took.
    pub async fn terminate(&mut self, limit: Duration) -> (Option<ExitStatus>, Duration) {
        let started = Instant::now();
        let Some(mut child) = self.child.take() else {
            return (None, Duration::ZERO);
        };
        // SAFETY: SIGTERM to our own child, not yet reaped.
        unsafe { libc::kill(i32::try_from(child.id()).unwrap_or(0), libc::SIGTERM) };
        while started.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return (Some(status), started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        (None, started.elapsed())
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The phase's scratch folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SensorProcess {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
