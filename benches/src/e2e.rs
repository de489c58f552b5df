//! End to end: the real `sensor` binary (XDP or libpcap capture) in one namespace, the
//! live-frames generator in the peer namespace, identical traffic for both paths.

use std::{
    collections::HashSet,
    process::Command,
    time::{Duration, Instant},
};

use aya::{Ebpf, programs::XdpMode};
use sensor::capture::xdp::bench_programs;
use serde_json::{Value, json};
use tests::{net::TestNet, sensor::RunningSensor};

use tests::generator::{self, Plan};

/// Idle timeout the benchmark sensor runs with: events arrive this long after the last probe.
pub const IDLE_TIMEOUT_MS: u64 = 1_000;

/// Capture path under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The XDP program, with in-kernel aggregation (the default).
    Xdp,
    /// The XDP program with `sensor.xdp.aggregate` off: a record per probe (the baseline the
    /// aggregation is measured against, in the same run).
    XdpRecords,
    /// libpcap.
    Pcap,
}

impl Path {
    /// Lowercase name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Xdp => "xdp",
            Self::XdpRecords => "xdp-rec",
            Self::Pcap => "pcap",
        }
    }

    /// The sensor's `--capture` value.
    #[must_use]
    pub const fn capture(self) -> &'static str {
        match self {
            Self::Xdp | Self::XdpRecords => "xdp",
            Self::Pcap => "pcap",
        }
    }
}

/// Figures of one run.
#[derive(Debug, Clone)]
pub struct Point {
    /// Capture path.
    pub path: Path,
    /// Scenario name.
    pub scenario: String,
    /// Target rate (pps), `None` for "as fast as possible".
    pub target_pps: Option<u64>,
    /// Rate actually achieved by the generator.
    pub achieved_pps: f64,
    /// Probes sent (one per pair).
    pub offered: u64,
    /// Frames received by the sensor's interface (veth counters).
    pub delivered: u64,
    /// Probe frames the capture path saw (XDP program or libpcap).
    pub seen: u64,
    /// Distinct (source, port) pairs reported in events.
    pub reported_pairs: u64,
    /// Events written.
    pub events: u64,
    /// Records lost (XDP: ring full + budgets) or frames dropped (pcap: kernel buffer full).
    pub lost: u64,
    /// Agent CPU seconds (user + system) from the start of the traffic to the last event.
    pub cpu_seconds: f64,
    /// Peak resident memory of the agent, KiB.
    pub peak_rss_kib: u64,
    /// From the last probe sent to the last event received, ms.
    pub latency_ms: f64,
}

impl Point {
    /// Share of offered pairs that were reported.
    #[must_use]
    pub fn detection(&self) -> f64 {
        if self.offered == 0 {
            0.0
        } else {
            self.reported_pairs as f64 / self.offered as f64
        }
    }

    /// Agent CPU seconds per million packets offered.
    #[must_use]
    pub fn cpu_per_mpkt(&self) -> f64 {
        if self.offered == 0 {
            0.0
        } else {
            self.cpu_seconds / (self.offered as f64 / 1e6)
        }
    }

    /// Agent CPU in cores while the traffic lasted (CPU seconds / traffic seconds).
    #[must_use]
    pub fn cores(&self) -> f64 {
        if self.achieved_pps <= 0.0 {
            return 0.0;
        }
        self.cpu_seconds / (self.offered as f64 / self.achieved_pps)
    }

    /// As JSON.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path.name(), "scenario": self.scenario, "target_pps": self.target_pps,
            "achieved_pps": self.achieved_pps, "offered": self.offered, "delivered": self.delivered, "seen": self.seen,
            "reported_pairs": self.reported_pairs, "detection": self.detection(), "events": self.events,
            "lost": self.lost, "cpu_seconds": self.cpu_seconds, "cpu_s_per_mpkt": self.cpu_per_mpkt(),
            "agent_cores": self.cores(), "peak_rss_kib": self.peak_rss_kib, "latency_ms": self.latency_ms,
        })
    }
}

fn bench_config(iface: &str, path: Path) -> String {
    json!({
        "id": "bench-sensor",
        "interface": iface,
        "sensor": {
            "xdp": {"mode": "drv", "dedup_window_ms": 500, "stats_interval_secs": 1,
                    "aggregate": path != Path::XdpRecords},
            "portscan": {"threshold": 3, "idle_timeout_ms": IDLE_TIMEOUT_MS, "max_window_secs": 120}
        }
    })
    .to_string()
}

/// user + system CPU seconds of `pid`.
fn cpu_seconds(pid: i32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

fn peak_rss_kib(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn rx_packets(net: &TestNet) -> u64 {
    let out = Command::new("ip")
        .args([
            "-n",
            &net.sensor.name,
            "-s",
            "-j",
            "link",
            "show",
            "dev",
            &net.sensor_if,
        ])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    json[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0)
}

/// Attaches the empty program natively to the sensor interface, so the generator's `XDP_TX`
/// frames are accepted by the veth when the sensor itself runs libpcap. Kept until dropped.
fn attach_pass(net: &TestNet) -> Ebpf {
    let iface = net.sensor_if.clone();
    net.sensor.run(move || {
        let mut ebpf = crate::load_xdp(bench_programs::PASS, "pass");
        crate::xdp(&mut ebpf, "pass")
            .attach(&iface, XdpMode::Driver)
            .unwrap_or_else(|e| panic!("attach pass: {e}"));
        ebpf
    })
}

/// The traffic of a scenario.
#[derive(Debug, Clone, Copy)]
pub enum Traffic {
    /// The project's live-frames generator.
    Generator(Plan),
    /// `masscan` SYN scan of ports `1..=ports` at `rate` (it paces itself).
    Masscan {
        /// Highest port.
        ports: u16,
        /// Packets per second asked for.
        rate: u64,
    },
    /// `nmap -sS -T5` of ports `1..=ports`.
    Nmap {
        /// Highest port.
        ports: u16,
    },
}

/// Runs a real scanner from the peer namespace, bounded in time; returns what it sent.
fn scanner(net: &TestNet, traffic: Traffic) -> generator::Sent {
    let (mut cmd, offered) = match traffic {
        Traffic::Masscan { ports, rate } => {
            let mut c = net.peer.command("timeout");
            c.args([
                "-s",
                "INT",
                "120",
                "masscan",
                &net.sensor_ip,
                "-p",
                &format!("1-{ports}"),
            ])
            .args([
                "--rate",
                &rate.to_string(),
                "--wait",
                "0",
                "-e",
                &net.peer_if,
            ])
            .args(["--router-mac", &net.sensor_mac()]);
            (c, u64::from(ports))
        }
        Traffic::Nmap { ports } => {
            let mut c = net.peer.command("nmap");
            c.args([
                "-n",
                "-Pn",
                "-sS",
                "-T5",
                "--max-retries",
                "0",
                "-p",
                &format!("1-{ports}"),
            ])
            .arg(&net.sensor_ip);
            (c, u64::from(ports))
        }
        Traffic::Generator(_) => unreachable!("generator traffic is sent by generator::send"),
    };
    let start = Instant::now();
    let out = tests::net::run_bounded(&mut cmd, Duration::from_secs(150));
    let finished = Instant::now();
    assert!(
        out.status.success(),
        "scanner failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    generator::Sent {
        packets: offered,
        elapsed: finished - start,
        finished,
    }
}

/// Runs one scenario on one path and returns its figures.
#[must_use]
pub fn run(path: Path, scenario: &str, plan: Plan) -> Point {
    run_traffic(path, scenario, Traffic::Generator(plan))
}

/// Runs one scenario with any traffic on one path and returns its figures.
#[must_use]
pub fn run_traffic(path: Path, scenario: &str, traffic: Traffic) -> Point {
    let net = TestNet::new();
    let _pass = (path == Path::Pcap).then(|| attach_pass(&net));
    let sensor = RunningSensor::start(
        &net.sensor,
        &bench_config(&net.sensor_if, path),
        &["--capture", path.capture()],
    );
    let pid = sensor.pid();
    let rx_before = rx_packets(&net);
    let cpu_before = cpu_seconds(pid);
    let sent = match traffic {
        Traffic::Generator(plan) => {
            let dst: Vec<u8> = net
                .sensor_ip
                .split('.')
                .filter_map(|o| o.parse().ok())
                .collect();
            let frame = generator::template(
                generator::parse_mac(&net.sensor_mac()),
                [0x02, 0, 0, 0, 0, 0x99],
                dst.try_into().unwrap_or([0; 4]),
            );
            generator::send(&net.peer, &net.peer_if, frame, plan)
        }
        other => scanner(&net, other),
    };
    // Events come after the idle timeout and the next sweep; give them time, then stop.
    std::thread::sleep(Duration::from_millis(IDLE_TIMEOUT_MS + 1_500));
    let cpu = cpu_seconds(pid) - cpu_before;
    let rss = peak_rss_kib(pid);
    let delivered = rx_packets(&net).saturating_sub(rx_before);
    let run = sensor.stop();
    // `SCANBENCH_STATS=1`: the kernel's and aggregation's counters of each run, for profiling.
    if std::env::var_os("SCANBENCH_STATS").is_some() {
        eprintln!(
            "stats {}: kernel {} aggregation {}",
            path.name(),
            run.stats["kernel"],
            run.stats["aggregation"]
        );
    }
    let mut pairs = HashSet::new();
    for event in run.portscans() {
        let src = event["src_ip"].as_str().unwrap_or_default().to_owned();
        for port in event["extra"]["ports"].as_array().into_iter().flatten() {
            pairs.insert((src.clone(), port.as_str().unwrap_or_default().to_owned()));
        }
    }
    let seen = match path {
        Path::Xdp | Path::XdpRecords => run.stats["kernel"]["probes"].as_u64().unwrap_or(0),
        Path::Pcap => run.stats["pcap"]["probes"].as_u64().unwrap_or(0),
    };
    let lost = match path {
        Path::Xdp | Path::XdpRecords => ["ringbuf_full", "source_budget", "cpu_budget"]
            .iter()
            .map(|k| run.stats["kernel"][k].as_u64().unwrap_or(0))
            .sum(),
        Path::Pcap => run.stats["pcap"]["kernel_dropped"].as_u64().unwrap_or(0),
    };
    let last_event = run
        .arrivals
        .iter()
        .max()
        .copied()
        .unwrap_or_else(Instant::now);
    Point {
        path,
        scenario: scenario.to_owned(),
        target_pps: match traffic {
            Traffic::Generator(plan) => plan.rate,
            Traffic::Masscan { rate, .. } => Some(rate),
            Traffic::Nmap { .. } => None,
        },
        achieved_pps: sent.packets as f64 / sent.elapsed.as_secs_f64().max(1e-9),
        offered: sent.packets,
        delivered,
        seen,
        reported_pairs: pairs.len() as u64,
        events: run.portscans().len() as u64,
        lost,
        cpu_seconds: cpu,
        peak_rss_kib: rss,
        latency_ms: last_event
            .saturating_duration_since(sent.finished)
            .as_secs_f64()
            * 1e3,
    }
}
