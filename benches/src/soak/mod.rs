//! The soak test (`cargo xtask soak`, never run by CI): the real `sensor` binary for minutes to
//! an hour, in four phases that each print their figures (timing is never asserted):
//!
//! - [`outage`]: an `api` output with a spool whose HTTP receiver is down for the outage while
//!   FTP logins are produced, then back: produced = delivered, lost and duplicates counted.
//! - [`idle`]: 10,000 idle connections and slowloris clients on every service: the caps hold,
//!   the descriptors stay bounded, a fresh client of every service is still answered.
//! - [`load`]: moderate load on every service for the duration, the sensor's resident memory
//!   sampled: first, last, highest, growth.
//! - [`chaos`]: SIGTERM, `kill -9` and restart in turn during load, with a spool: delivered
//!   against produced, duplicates counted.
//!
//! Each phase's figures are then checked ([`verdict`]): a loss, a cap that did not hold, a
//! service that stopped answering or memory that keeps growing fails the soak.
//!
//! Helpers: [`process`] (the sensor process: start, restart, signals, memory, descriptors,
//! stats file) and [`receiver`] (an HTTP receiver that can be stopped and started again,
//! counting events by id).

pub mod chaos;
pub mod idle;
pub mod load;
pub mod outage;
pub mod process;
pub mod receiver;
pub mod verdict;

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    task::JoinHandle,
};

/// The test suite's port chooser: ports below the kernel's ephemeral range, free on loopback
/// when chosen (a `bind(0)` port released and bound again by the sensor races with every
/// outgoing connection of the machine).
#[path = "../../../sensor/tests/support/ports.rs"]
mod ports;

/// `n` distinct ports for the servers a phase starts (the sensor's services, a receiver).
#[must_use]
pub fn unused_ports<const N: usize>() -> [u16; N] {
    let ports = ports::unused_ports(N);
    std::array::from_fn(|i| ports.get(i).copied().unwrap_or(0))
}

/// Raises this process's soft open-file limit to its hard limit; returns the soft limit then.
#[must_use]
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on this process, with a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim);
        }
    }
    lim.rlim_cur
}

/// Polls `done` every 100 ms until it holds or `limit` passes; whether it held.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One FTP login as `user` (USER, PASS and QUIT in one write, at most 10 s): true when the
/// service said goodbye, so the login was handled (its `ftp.login` event produced).
pub async fn ftp_login(addr: SocketAddr, user: &str) -> bool {
    let run = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("USER {user}\r\nPASS soak-{user}\r\nQUIT\r\n").as_bytes())
            .await
            .ok()?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.ok()?;
        Some(reply.windows(4).any(|w| w == b"221 "))
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// FTP logins from concurrent clients with unique user names (`{prefix}-{client}-{n}`) until
/// stopped; a failed login (the sensor restarting) is not counted and its name not reused.
pub struct Producer {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<(Vec<String>, u64)>>,
}

impl Producer {
    /// Starts `clients` clients against `addr`, each pausing `pause` between logins.
    #[must_use]
    pub fn start(addr: SocketAddr, clients: usize, pause: Duration, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|c| {
                let stop = Arc::clone(&stop);
                let prefix = format!("{prefix}-{c}");
                tokio::spawn(async move {
                    let (mut done, mut failed) = (Vec::new(), 0u64);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let user = format!("{prefix}-{n}");
                        n += 1;
                        if ftp_login(addr, &user).await {
                            done.push(user);
                        } else {
                            failed += 1;
                        }
                        tokio::time::sleep(pause).await;
                    }
                    (done, failed)
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the clients; the logins acknowledged, and the attempts that failed.
    pub async fn finish(self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut all, mut failed) = (Vec::new(), 0);
        for t in self.tasks {
            if let Ok((done, f)) = t.await {
                all.extend(done);
                failed += f;
            }
        }
        (all, failed)
    }
}

/// Produced against delivered: logins acknowledged by the sensor against `ftp.login` events
/// the receiver got (by user name), and events received against distinct event ids.
#[must_use]
pub fn delivery(produced: &[String], tally: &receiver::Tally) -> Value {
    let delivered = produced
        .iter()
        .filter(|u| tally.logins.contains(u.as_str()))
        .count();
    let lost: Vec<&String> = produced
        .iter()
        .filter(|u| !tally.logins.contains(u.as_str()))
        .collect();
    let distinct = tally.ids.len() as u64;
    let acknowledged: HashSet<&str> = produced.iter().map(String::as_str).collect();
    let unknown = tally
        .logins
        .iter()
        .filter(|u| !acknowledged.contains(u.as_str()))
        .count();
    json!({
        "logins_produced": produced.len(),
        "logins_delivered": delivered,
        "logins_lost": lost.len(),
        "lost_sample": lost.iter().take(5).collect::<Vec<_>>(),
        // Logins the sensor handled whose client saw no reply (a kill between the two).
        "logins_unacknowledged_delivered": unknown,
        "events_received": tally.lines,
        "events_distinct": distinct,
        "duplicates": tally.lines.saturating_sub(distinct),
    })
}

/// The resident memory of `pid`, KiB (0 when it is gone).
#[must_use]
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The open descriptors of `pid` (0 when it is gone).
#[must_use]
pub fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}
