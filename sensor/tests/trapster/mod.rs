//! Trapster Community 1.2 from PyPI, for side-by-side tests: a venv created once per machine
//! (under the system temp directory, reused by later runs), and child processes killed on drop.

#![allow(dead_code, reason = "each test binary uses part of the helpers")]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The PyPI requirement the tests pin.
pub const REQUIREMENT: &str = "trapster>=1.2,<1.3";

/// A venv with Trapster installed.
pub struct Trapster {
    /// The venv.
    pub venv: PathBuf,
    /// The installed package folder (`.../site-packages/trapster`).
    pub package: PathBuf,
}

/// Whether PyPI answers on TCP (the only reason a test may skip).
fn pypi_reachable() -> bool {
    use std::net::ToSocketAddrs as _;
    let Ok(addrs) = ("pypi.org", 443).to_socket_addrs() else {
        return false;
    };
    addrs
        .take(4)
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
}

/// Installs (once) and returns Trapster; `None`, after printing why, only when PyPI cannot be
/// reached. Any other failure panics.
pub fn install() -> Option<Trapster> {
    let venv = std::env::temp_dir().join("sensor-tests-trapster-1.2-venv");
    let trapster = venv.join("bin/trapster");
    if !trapster.exists() {
        let lock = venv.with_extension("lock");
        // Two test binaries may install at once: the first holds the lock directory.
        let deadline = Instant::now() + Duration::from_secs(300);
        while std::fs::create_dir(&lock).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} held too long",
                lock.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let result = create(&venv);
        let _ = std::fs::remove_dir(&lock);
        if let Err(message) = result {
            if !pypi_reachable() {
                eprintln!("SKIP: PyPI is unreachable, Trapster cannot be installed: {message}");
                return None;
            }
            panic!("installing {REQUIREMENT}: {message}");
        }
    }
    let lib = venv.join("lib");
    let python = std::fs::read_dir(&lib)
        .expect("venv lib")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("python"))
        .expect("venv python folder");
    let package = python.path().join("site-packages/trapster");
    assert!(package.join("data/trapster.conf").exists());
    Some(Trapster { venv, package })
}

fn create(venv: &Path) -> Result<(), String> {
    if venv.join("bin/trapster").exists() {
        return Ok(());
    }
    let status = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(venv)
        .status()
        .map_err(|e| format!("python3: {e}"))?;
    // python3-venv is a CI package: a missing one is a broken machine, not a skip.
    assert!(
        status.success(),
        "python3 -m venv failed: install python3-venv"
    );
    let out = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--disable-pip-version-check",
            "--quiet",
            "--timeout",
            "30",
            REQUIREMENT,
        ])
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let _ = std::fs::remove_dir_all(venv);
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

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
        let to = self.package.join("data/http").join(name);
        copy_dir(&from, &to);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("skin dir");
    for entry in std::fs::read_dir(from).expect("skin source") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy skin file");
        }
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

/// Free TCP ports on loopback, all held until returned so none repeats.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
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
