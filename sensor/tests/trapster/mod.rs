//! Trapster Community 1.2 from PyPI, for side-by-side tests: a venv created once per machine
//! (under the system temp directory, reused by later runs), and child processes killed on drop.

#![allow(dead_code, reason = "each test binary uses part of the helpers")]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod install;
#[path = "../support/ports.rs"]
mod ports;

pub use install::{Trapster, install};

/// A child process killed (and reaped) on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Trapster {
    /// Starts `trapster -c config`, output to `log` (its diagnostics).
    pub fn start(&self, config: &Path, log: &Path) -> Guard {
        let file = std::fs::File::create(log).expect("trapster log");
        let err = file.try_clone().expect("log clone");
        Guard(
            Command::new(self.venv.join("bin/trapster"))
                .arg("-c")
                .arg(config)
                .stdout(Stdio::from(file))
                .stderr(Stdio::from(err))
                .spawn()
                .expect("start trapster"),
        )
    }

    /// Installs one of the sensor's own HTTP skins into Trapster's skin folder (the wheel
    /// ships none), so both serve the same pages.
    pub fn install_skin(&self, name: &str) {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("skins")
            .join(name);
        install::install_skin_from(&self.package, &from, name);
    }
}

/// Starts `sensor run --capture none -c config`, diagnostics to `log`.
pub fn start_sensor(config: &Path, log: &Path) -> Guard {
    let file = std::fs::File::create(log).expect("sensor log");
    let err = file.try_clone().expect("log clone");
    Guard(
        Command::new(env!("CARGO_BIN_EXE_sensor"))
            .args(["run", "--capture", "none", "-c"])
            .arg(config)
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start sensor"),
    )
}

/// Free ports on loopback, distinct, below the kernel's ephemeral range ([`ports`]).
pub fn free_ports(n: usize) -> Vec<u16> {
    ports::unused_ports(n)
}

/// Waits until every port accepts a connection (Trapster imports for many seconds on a busy
/// machine).
pub fn wait_listening(ports: &[u16], what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    for port in ports {
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{what} never listened on {port}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A fresh directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sensor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
