//! Installing Trapster Community 1.2 from PyPI into a venv created once per machine (under the
//! system temp directory, reused by later runs). Shared by the side-by-side tests (through
//! `mod.rs`) and by `benches`' `trapsterbench` (through `#[path]`): no `env!` of a test crate.

use std::{
    path::{Path, PathBuf},
    process::Command,
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

/// Copies the skin folder `from` to `<package>/data/http/<name>` (Trapster's wheel ships no
/// skin), so Trapster serves the same pages as the sensor.
pub fn install_skin_from(package: &Path, from: &Path, name: &str) {
    copy_dir(from, &package.join("data/http").join(name));
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
