//! Real `redis-server` processes on loopback for the tests: single servers, a Redis Cluster of
//! three masters with a replica each, and a master with a replica watched by a Sentinel.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A redis-server child, killed on drop.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// Kills it now (a crash, as far as the others can tell).
    pub fn crash(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ports for `n` servers, all bound at once so none repeats, then released.
#[must_use]
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// Whether redis-server is installed; in CI (`CI` set) it must be.
#[must_use]
pub fn have_redis() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("CI").is_none(),
        "redis-server is required in CI"
    );
    if !found {
        eprintln!("skipped: redis-server not installed (apt-get install redis-server)");
    }
    found
}

/// `redis-cli -p port args...`, its standard output trimmed.
#[must_use]
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Polls `done` every 100 ms for at most `limit`.
///
/// # Panics
/// When `limit` passes first.
pub fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `redis-server` on `port` with `args` (working directory `dir`), once it answers PING.
///
/// # Panics
/// When it does not start within 10 s.
#[must_use]
pub fn start(dir: &Path, port: u16, args: &[&str]) -> Server {
    std::fs::create_dir_all(dir).expect("server dir");
    let server = Server(
        Command::new("redis-server")
            .args(args)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server"),
    );
    wait_for(Duration::from_secs(10), "redis-server", || {
        cli(port, &["PING"]) == "PONG"
    });
    server
}

/// Three masters and three replicas with a 1 s node timeout, `cluster_state:ok` on every node.
///
/// # Panics
/// When the cluster does not form within 30 s.
#[must_use]
pub fn cluster(dir: &Path) -> Vec<(u16, Server)> {
    let ports = free_ports(6);
    let nodes: Vec<(u16, Server)> = ports
        .iter()
        .map(|&port| {
            let conf = format!("nodes-{port}.conf");
            let node = start(
                &dir.join(port.to_string()),
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-node-timeout",
                    "1000",
                ],
            );
            (port, node)
        })
        .collect();
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli --cluster create");
    assert!(created.success(), "the cluster was not created");
    wait_for(Duration::from_secs(30), "cluster_state:ok", || {
        ports
            .iter()
            .all(|&p| cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    });
    nodes
}
