//! Network namespaces, veth pairs and child processes, each cleaned up on drop.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs `ip` with `args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    /// Its name under /var/run/netns.
    pub name: String,
}

impl NetNs {
    /// Creates a namespace with a unique name and its loopback up.
    #[must_use]
    pub fn new(role: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("sns-{role}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A command run inside this namespace (`ip netns exec`).
    #[must_use]
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `f` on a thread that has entered this namespace, and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        thread::spawn(move || {
            let file = File::open(&path).expect("open netns");
            // SAFETY: setns on this thread only, with a valid namespace fd.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in namespace panicked")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Never panic here: this may run while a test is already panicking.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair: the sensor side and the peer (scanner) side.
///
/// Addresses come from the benchmarking ranges (RFC 2544 198.18.0.0/15 and RFC 5180
/// 2001:2::/48) and exist only inside these namespaces.
#[derive(Debug)]
pub struct TestNet {
    /// Sensor namespace.
    pub sensor: NetNs,
    /// Peer namespace.
    pub peer: NetNs,
    /// Sensor-side interface name.
    pub sensor_if: String,
    /// Peer-side interface name.
    pub peer_if: String,
    /// Sensor IPv4 address.
    pub sensor_ip: String,
    /// Peer IPv4 address.
    pub peer_ip: String,
    /// Sensor IPv6 address.
    pub sensor_ip6: String,
    /// Peer IPv6 address.
    pub peer_ip6: String,
}

impl TestNet {
    /// Creates both namespaces, the veth pair and the addresses, and waits until IPv6 is usable.
    #[must_use]
    pub fn new() -> Self {
        let sensor = NetNs::new("s");
        let peer = NetNs::new("p");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 250 + 1;
        let sensor_if = format!("vs{}-{n}", std::process::id() % 10_000);
        let peer_if = format!("vp{}-{n}", std::process::id() % 10_000);
        ip(&[
            "link",
            "add",
            &sensor_if,
            "netns",
            &sensor.name,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
            "netns",
            &peer.name,
        ]);
        let net = Self {
            sensor_ip: format!("198.18.{n}.1"),
            peer_ip: format!("198.18.{n}.2"),
            sensor_ip6: format!("2001:2:0:{n:x}::1"),
            peer_ip6: format!("2001:2:0:{n:x}::2"),
            sensor,
            peer,
            sensor_if,
            peer_if,
        };
        for (ns, ifname, v4, v6) in [
            (&net.sensor, &net.sensor_if, &net.sensor_ip, &net.sensor_ip6),
            (&net.peer, &net.peer_if, &net.peer_ip, &net.peer_ip6),
        ] {
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                ifname,
            ]);
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ]);
            ip(&["-n", &ns.name, "link", "set", ifname, "up"]);
        }
        net
    }

    /// MAC address of the sensor-side interface.
    #[must_use]
    pub fn sensor_mac(&self) -> String {
        mac(&self.sensor.name, &self.sensor_if)
    }

    /// Readies the pair for forged-source traffic from the peer ([`crate::spoof`]): `range` is
    /// routed from the sensor to the peer, so replies to it leave on the veth and go nowhere
    /// else (the peer does not forward), and both sides know each other's MAC address for
    /// good, so no datagram waits for (or is lost behind) address resolution.
    pub fn route_forged_range(&self, range: &str) {
        ip(&[
            "-n",
            &self.sensor.name,
            "route",
            "add",
            range,
            "via",
            &self.peer_ip,
        ]);
        let peer_mac = mac(&self.peer.name, &self.peer_if);
        let sensor_mac = self.sensor_mac();
        for (ns, addr, mac, dev) in [
            (&self.sensor.name, &self.peer_ip, &peer_mac, &self.sensor_if),
            (&self.peer.name, &self.sensor_ip, &sensor_mac, &self.peer_if),
        ] {
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                addr,
                "lladdr",
                mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        }
    }

    /// The XDP attach mode of the sensor interface: `None`, or 1 (native), 2 (generic).
    #[must_use]
    pub fn xdp_mode(&self) -> Option<u64> {
        xdp_mode(&self.sensor.name, &self.sensor_if)
    }

    /// The ids of the `sk_lookup` links attached to the sensor's namespace (`bpftool`).
    #[must_use]
    pub fn sk_lookup_links(&self) -> Vec<u64> {
        use std::os::unix::fs::MetadataExt as _;
        let ino = std::fs::metadata(format!("/var/run/netns/{}", self.sensor.name))
            .expect("the sensor's namespace")
            .ino();
        let out = Command::new("bpftool")
            .args(["-j", "link", "show"])
            .output()
            .expect("bpftool");
        assert!(out.status.success(), "bpftool: {out:?}");
        let links: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("bpftool -j output");
        links
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|link| link["attach_type"] == "sk_lookup" && link["netns_ino"] == ino)
                    .filter_map(|link| link["id"].as_u64())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The MAC address of `dev` in namespace `ns`.
#[must_use]
pub fn mac(ns: &str, dev: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", dev])
        .output()
        .expect("ip link show");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    json[0]["address"].as_str().expect("mac").to_owned()
}

/// The XDP attach mode of `iface` in namespace `ns`: `None`, or 1 (native), 2 (generic).
#[must_use]
pub fn xdp_mode(ns: &str, iface: &str) -> Option<u64> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", iface])
        .output()
        .expect("ip link show");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    json[0]["xdp"]["mode"].as_u64()
}

impl Default for TestNet {
    fn default() -> Self {
        Self::new()
    }
}

/// A child process killed and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Spawns `cmd`.
    #[must_use]
    pub fn spawn(cmd: &mut Command) -> Self {
        Self(Some(
            cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
        ))
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> i32 {
        self.0
            .as_ref()
            .map_or(0, |c| i32::try_from(c.id()).unwrap_or(0))
    }

    /// Sends `signal` and waits up to `limit` for the exit; kills it if it is still running.
    pub fn stop(&mut self, signal: i32, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        // SAFETY: kill with a pid we spawned and have not reaped.
        unsafe { libc::kill(i32::try_from(child.id()).unwrap_or(0), signal) };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Calls `done` every `every` until it holds, for at most `limit`: how long it took, or `None`.
pub fn poll_until(
    limit: Duration,
    every: Duration,
    mut done: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        thread::sleep(every);
    }
    None
}

/// Runs `cmd` to completion within `limit` (killed after), returning its output.
#[must_use]
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let watchdog = thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if flag.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: kill of our own child's pid; harmless if it already exited and was reaped
        // only by the wait below, which has not returned yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("wait");
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    out
}

/// Pins the calling thread to `cpu` (per-CPU maps then see one CPU only).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity on the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set);
    }
}
