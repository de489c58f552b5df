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

/// Starts `program` with the arguments `args(port)` on a port of its own: the port is held
/// (bound, not listening) until the program serves it itself, and another one is tried when the
/// program exits first (another process took the port after all). No free-then-bind race: a
/// server that answered on a port someone else already served is never mistaken for this one.
///
/// # Panics
/// When five ports in a row fail.
#[must_use]
pub fn serve_on_own_port(program: &str, args: impl Fn(u16) -> Vec<String>) -> (u16, Server) {
    for _ in 0..5 {
        let hold = super::PortHold::new();
        let port = hold.port();
        let mut server = Server(
            Command::new(program)
                .args(args(port))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|err| panic!("spawn {program}: {err}")),
        );
        let serving = super::wait_serving(&mut server.0, &[(port, false)], Duration::from_secs(10));
        drop(hold);
        if serving {
            return (port, server);
        }
    }
    panic!("{program} did not start on any of five ports");
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

/// A throw-away server's arguments: listen on `127.0.0.1:port`, persist nothing.
#[must_use]
pub fn plain_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Starts `redis-server` with `args(port)` (working directory `dir(port)`) on a port of its own
/// ([`serve_on_own_port`]), once it answers PING.
///
/// # Panics
/// When it does not start within 10 s.
#[must_use]
pub fn start(
    dir: impl Fn(u16) -> std::path::PathBuf,
    args: impl Fn(u16) -> Vec<String>,
) -> (u16, Server) {
    let (port, server) = serve_on_own_port("redis-server", |port| {
        let dir = dir(port);
        std::fs::create_dir_all(&dir).expect("server dir");
        let mut all = args(port);
        all.extend(plain_args(port));
        all.push("--dir".to_owned());
        all.push(dir.to_string_lossy().into_owned());
        all
    });
    wait_for(Duration::from_secs(10), "redis-server", || {
        cli(port, &["PING"]) == "PONG"
    });
    (port, server)
}

/// Three masters and three replicas with a 1 s node timeout, `cluster_state:ok` on every node.
///
/// # Panics
/// When the cluster does not form within 30 s.
#[must_use]
pub fn cluster(dir: &Path) -> Vec<(u16, Server)> {
    let nodes: Vec<(u16, Server)> = (0..6)
        .map(|_| {
            start(
                |port| dir.join(port.to_string()),
                |port| {
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &format!("nodes-{port}.conf"),
                        "--cluster-node-timeout",
                        "1000",
                    ]
                    .map(str::to_owned)
                    .to_vec()
                },
            )
        })
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|(port, _)| *port).collect();
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
