//! Sensor vs Trapster: Trapster Community 1.2 from PyPI (in the venv the side-by-side tests
//! use, installed on first use) and the `sensor` binary run side by side on loopback with the
//! same services and the same configuration (`default` format to a file), driven by the same
//! clients:
//! 1. per service, the sessions of `servicebench` (connect, log in or request, close) from 32
//!    concurrent clients for a few seconds each: sessions per second, and the login or query
//!    events that reached each one's file;
//! 2. an `ab -c 32` HTTP load (Debian `apache2-utils`) on each one's HTTP decoy: requests per
//!    second and `http.query` events logged.
//!
//! Prints one table with both and the ratio sensor/Trapster, writes
//! `benches/results/trapster.json` (`trapster-quick.json`). `SENSOR_BIN` names the binary
//! (default `target/release/sensor`); `--quick` shortens the runs. A machine that cannot reach
//! PyPI prints why and exits 0 (nothing to compare with). Figures are printed, never asserted.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use benches::sessions::{Kind, count_logged, load, port_of, tls_connector};
use serde_json::{Value, json};
use tokio::net::TcpStream;

#[path = "../../../sensor/tests/trapster/install.rs"]
#[allow(dead_code, reason = "shared with the tests, which use all of it")]
mod trapster;

const CLIENTS: usize = 32;
const SENSOR_BASE: u16 = 42_300;
const TRAPSTER_BASE: u16 = 42_400;

/// A child process stopped (and reaped) on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The configuration both read: every benchmarked service, events to `log`.
fn config(base: u16, log: &Path) -> Value {
    let services: serde_json::Map<String, Value> = Kind::ALL
        .iter()
        .map(|k| {
            let mut instance = json!({"port": port_of(base, *k)});
            if matches!(k, Kind::Http | Kind::Https) {
                instance["skin"] = json!("default_apache");
            }
            (k.name().to_owned(), json!([instance]))
        })
        .collect();
    json!({
        "id": "bench", "interface": "", "hostname": "DC01", "domain": "corp.local",
        "services": services,
        "logger": {"output": "file", "format": "default",
                   "kwargs": {"output_kwargs": {"logfile": log}}}
    })
}

fn spawn(cmd: &mut Command, log: &Path) -> Guard {
    let file = std::fs::File::create(log).expect("diagnostics file");
    let err = file.try_clone().expect("clone");
    Guard(
        cmd.stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start"),
    )
}

async fn wait_listening(base: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for kind in Kind::ALL {
        let addr = SocketAddr::from(([127, 0, 0, 1], port_of(base, kind)));
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "{what} never listened on {addr}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits (at most `patience`) until `log` holds `before + sessions` lines of `logtype`; the
/// events logged since `before`.
async fn logged_since(
    log: &Path,
    logtype: &str,
    before: u64,
    sessions: u64,
    patience: Duration,
) -> u64 {
    let deadline = Instant::now() + patience;
    loop {
        let logged = count_logged(log, logtype).saturating_sub(before);
        if logged >= sessions || Instant::now() > deadline {
            return logged;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `ab -c 32 -t seconds` on `port`: (complete requests, requests per second).
fn ab(port: u16, seconds: u64) -> (u64, f64) {
    let out = Command::new("ab")
        .args(["-q", "-r", "-s", "10", "-c"])
        .arg(CLIENTS.to_string())
        .arg("-t")
        .arg(seconds.to_string())
        .args(["-n", "10000000"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("ab (apache2-utils) is installed: cargo xtask deps --test");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().find_map(|w| w.parse::<f64>().ok()))
    };
    match (field("Complete requests:"), field("Requests per second:")) {
        (Some(n), Some(rate)) => (n as u64, rate),
        _ => {
            eprintln!(
                "ab on port {port} gave no figures: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            (0, 0.0)
        }
    }
}

/// One row: what both did under the same load.
struct Row {
    load: String,
    sensor: (f64, u64),
    trapster: (f64, u64),
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a / b >= 10.0 {
        format!("{:.0}x", a / b)
    } else if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".to_owned()
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let Some(trapster) = trapster::install() else {
        println!("trapster benchmark skipped: Trapster cannot be installed from PyPI");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    trapster::install_skin_from(
        &trapster.package,
        &root.join("../sensor/skins/default_apache"),
        "default_apache",
    );
    let bin = std::env::var_os("SENSOR_BIN")
        .map_or_else(|| PathBuf::from("target/release/sensor"), PathBuf::from);
    let dir = std::env::temp_dir().join(format!("trapsterbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (s_log, t_log) = (dir.join("sensor.ndjson"), dir.join("trapster.ndjson"));
    let mut s_conf = config(SENSOR_BASE, &s_log);
    s_conf["sensor"] = json!({"services": {"state_dir": dir.join("state"),
        "max_connections": 4_096, "max_connections_per_source": 4_096}});
    std::fs::write(dir.join("sensor.conf"), s_conf.to_string()).expect("config");
    std::fs::write(
        dir.join("trapster.conf"),
        config(TRAPSTER_BASE, &t_log).to_string(),
    )
    .expect("config");
    let s_diag = dir.join("sensor.log");
    let t_diag = dir.join("trapster.log");
    let _sensor = spawn(
        Command::new(&bin)
            .args(["run", "--capture", "none", "-c"])
            .arg(dir.join("sensor.conf"))
            .env("RUST_LOG", "warn"),
        &s_diag,
    );
    let _trapster = spawn(
        // Trapster writes its generated TLS key and certificate under its working directory
        // (`trapster/data/ssl/`): keep them in the benchmark's own directory.
        Command::new(trapster.venv.join("bin/trapster"))
            .current_dir(&dir)
            .arg("-c")
            .arg(dir.join("trapster.conf")),
        &t_diag,
    );
    wait_listening(SENSOR_BASE, "the sensor", &s_diag).await;
    wait_listening(TRAPSTER_BASE, "Trapster", &t_diag).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let duration = Duration::from_secs(if quick { 1 } else { 3 });
    let ab_seconds = if quick { 2 } else { 5 };
    let tls = tls_connector();
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        let logtype = format!("{}.{}", kind.name(), kind.logged());
        let mut measured = [(0.0, 0), (0.0, 0)];
        for (slot, (base, log)) in [(SENSOR_BASE, &s_log), (TRAPSTER_BASE, &t_log)]
            .into_iter()
            .enumerate()
        {
            let addr = SocketAddr::from(([127, 0, 0, 1], port_of(base, kind)));
            let before = count_logged(log, &logtype);
            let (sessions, elapsed) = load(kind, addr, &tls, CLIENTS, duration).await;
            let logged =
                logged_since(log, &logtype, before, sessions, Duration::from_secs(5)).await;
            if let Some(m) = measured.get_mut(slot) {
                *m = (sessions as f64 / elapsed, logged);
            }
        }
        rows.push(Row {
            load: format!("{} sessions", kind.name()),
            sensor: measured[0],
            trapster: measured[1],
        });
    }
    let http = Kind::Http;
    let mut measured = [(0.0, 0), (0.0, 0)];
    for (slot, (base, log)) in [(SENSOR_BASE, &s_log), (TRAPSTER_BASE, &t_log)]
        .into_iter()
        .enumerate()
    {
        let before = count_logged(log, "http.query");
        let port = port_of(base, http);
        let (requests, rate) = tokio::task::spawn_blocking(move || ab(port, ab_seconds))
            .await
            .unwrap_or((0, 0.0));
        let logged =
            logged_since(log, "http.query", before, requests, Duration::from_secs(10)).await;
        if let Some(m) = measured.get_mut(slot) {
            *m = (rate, logged);
        }
    }
    rows.push(Row {
        load: format!("http ab -c {CLIENTS}"),
        sensor: measured[0],
        trapster: measured[1],
    });

    println!(
        "sensor vs Trapster ({}): {CLIENTS} concurrent clients, {duration:?} per service, ab for {ab_seconds} s, loopback",
        trapster::REQUIREMENT
    );
    println!(
        "{:<18} {:>12} {:>10} {:>12} {:>10} {:>7}",
        "load", "sensor /s", "logged", "trapster /s", "logged", "ratio"
    );
    for r in &rows {
        println!(
            "{:<18} {:>12.0} {:>10} {:>12.0} {:>10} {:>7}",
            r.load,
            r.sensor.0,
            r.sensor.1,
            r.trapster.0,
            r.trapster.1,
            ratio(r.sensor.0, r.trapster.0)
        );
    }
    let report = json!({
        "trapster": trapster::REQUIREMENT,
        "clients": CLIENTS,
        "seconds_per_service": duration.as_secs(),
        "ab_seconds": ab_seconds,
        "rows": rows.iter().map(|r| json!({
            "load": r.load,
            "sensor_per_sec": r.sensor.0.round(), "sensor_logged": r.sensor.1,
            "trapster_per_sec": r.trapster.0.round(), "trapster_logged": r.trapster.1,
        })).collect::<Vec<_>>(),
    });
    let name = if quick {
        "trapster-quick.json"
    } else {
        "trapster.json"
    };
    let path = root.join("results").join(name);
    let _ = std::fs::write(
        &path,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    println!("written: {}", path.display());
    let _ = std::fs::remove_dir_all(&dir);
}
