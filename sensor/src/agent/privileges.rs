//! Least privilege after start: once the BPF programs are attached, the ring buffer is open and
//! every listener is bound, the agent needs no privilege at all. [`drop_privileges`] then
//!
//! 1. as root, hands the paths the sensor still writes (state directory, spools, file outputs,
//!    the stats file) to `sensor.run_as` (default [`DEFAULT_USER`]) and switches to that user and
//!    its group (`setgroups`, `setresgid`, `setresuid`: glibc applies them to every thread, and
//!    leaving uid 0 clears every capability);
//! 2. clears the effective, permitted, inheritable and ambient capability sets and sets
//!    `no_new_privs` on **every thread** (a non-root start with capabilities, e.g. systemd's
//!    `AmbientCapabilities=`, keeps its uid), and checks `/proc/self/task/*/status`: `CapEff`
//!    must be 0 on every thread, or the start fails.
//!
//! No feature needs a capability after start: sockets, BPF links, map and ring-buffer file
//! descriptors and the libpcap handle stay usable without one (kernels ≥ 6.5 check BPF
//! privileges when a map or program is created, not when an open one is read).
//!
//! Linux keeps credentials per thread and `capset(2)` changes only the calling one, while the
//! runtime's threads already exist. No crate on crates.io changes them process-wide (libcap's
//! `psx` does it in C), so step 2 is hand-written the same way: a real-time signal is sent to
//! each thread, whose handler makes the two raw system calls (async-signal-safe), and the
//! threads are listed again until no new one appears.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// The system user the Debian package creates and the sensor switches to by default.
pub const DEFAULT_USER: &str = "trapster-sensor";

/// Giving up privileges failed; each names the field, capability or path to fix.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The configured user does not exist.
    #[error(
        "field `sensor.run_as`: no user `{0}` on this system (create it with \
         `useradd --system --no-create-home --shell /usr/sbin/nologin {0}`)"
    )]
    NoSuchUser(String),
    /// The user database could not be read.
    #[error("field `sensor.run_as`: looking up user `{user}` failed: {source}")]
    Lookup {
        /// The user.
        user: String,
        /// Why.
        source: nix::Error,
    },
    /// A path the sensor writes could not be handed to the user.
    #[error("changing the owner of {} to `{user}` failed (needs root or CAP_CHOWN): {source}", path.display())]
    Chown {
        /// The path.
        path: PathBuf,
        /// The user.
        user: String,
        /// Why.
        source: nix::Error,
    },
    /// The switch itself failed.
    #[error(
        "switching to user `{user}` failed at {step} (needs CAP_SETUID and CAP_SETGID): {source}"
    )]
    Switch {
        /// The user.
        user: String,
        /// `setgroups`, `setresgid` or `setresuid`.
        step: &'static str,
        /// Why.
        source: nix::Error,
    },
    /// A thread kept a capability.
    #[error("dropping capabilities failed: {0}")]
    Capabilities(String),
}

/// What the process runs as after [`drop_privileges`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The user name (`root` when no switch happened as root).
    pub user: String,
    /// The uid.
    pub uid: u32,
    /// Threads whose capabilities were cleared.
    pub threads: usize,
}

/// Switches to `run_as` (as root) and clears every capability on every thread; see the module
/// doc. `writable` are the paths handed to the user first (directories recursively).
///
/// # Errors
/// [`PrivilegeError`], naming the field, capability or path.
pub fn drop_privileges(
    run_as: Option<&str>,
    writable: &[PathBuf],
) -> Result<Dropped, PrivilegeError> {
    use nix::unistd::{Uid, User, geteuid};
    let mut user = User::from_uid(geteuid())
        .ok()
        .flatten()
        .map_or_else(|| geteuid().to_string(), |u| u.name);
    if geteuid().is_root()
        && let Some(target) = target_user(run_as)?
    {
        for path in writable {
            hand_over(path, &target)?;
        }
        switch_to(&target)?;
        user = target.name;
    }
    let threads = clear_capabilities_everywhere()?;
    Ok(Dropped {
        user,
        uid: Uid::effective().as_raw(),
        threads,
    })
}

/// The user to switch to when root: `run_as` (an error if it does not exist), else
/// [`DEFAULT_USER`] if it exists (a warning if not); `None` for `root` or a missing default.
fn target_user(run_as: Option<&str>) -> Result<Option<nix::unistd::User>, PrivilegeError> {
    let wanted = run_as.unwrap_or(DEFAULT_USER);
    if wanted == "root" {
        return Ok(None);
    }
    let found = nix::unistd::User::from_name(wanted).map_err(|source| PrivilegeError::Lookup {
        user: wanted.to_owned(),
        source,
    })?;
    match found {
        Some(user) => Ok(Some(user)),
        None if run_as.is_some() => Err(PrivilegeError::NoSuchUser(wanted.to_owned())),
        None => {
            tracing::warn!(
                user = wanted,
                "The sensor's system user does not exist: staying root (without capabilities). Create it (the Debian package does) or set sensor.run_as."
            );
            Ok(None)
        }
    }
}

/// Gives `path` (and, for a directory, everything under it, bounded) to `user`. Missing paths
/// are skipped: the sensor creates them later as that user.
fn hand_over(path: &Path, user: &nix::unistd::User) -> Result<(), PrivilegeError> {
    /// Most entries handed over under one directory (a spool holds a few segments).
    const MOST_ENTRIES: usize = 100_000;
    let chown = |p: &Path| {
        nix::unistd::chown(p, Some(user.uid), Some(user.gid)).map_err(|source| {
            PrivilegeError::Chown {
                path: p.to_owned(),
                user: user.name.clone(),
                source,
            }
        })
    };
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    chown(path)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mut stack = vec![path.to_owned()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen = seen.saturating_add(1);
            if seen > MOST_ENTRIES {
                return Ok(());
            }
            let p = entry.path();
            chown(&p)?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    Ok(())
}

fn switch_to(user: &nix::unistd::User) -> Result<(), PrivilegeError> {
    use nix::unistd::{setgroups, setresgid, setresuid};
    let failed = |step, source| PrivilegeError::Switch {
        user: user.name.clone(),
        step,
        source,
    };
    setgroups(&[user.gid]).map_err(|e| failed("setgroups", e))?;
    setresgid(user.gid, user.gid, user.gid).map_err(|e| failed("setresgid", e))?;
    setresuid(user.uid, user.uid, user.uid).map_err(|e| failed("setresuid", e))?;
    Ok(())
}

/// Handlers run so far, and how many of them failed a system call.
static HANDLED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3` (64-bit sets in two `CapData`).
const CAP_VERSION_3: u32 = 0x2008_0522;

/// Clears this thread's capabilities and sets `no_new_privs`; raw system calls only, so it may
/// run in a signal handler.
extern "C" fn clear_this_thread(_signal: libc::c_int) {
    let header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let empty = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset and prctl with valid pointers to live, correctly laid out values; no
    // memory is shared with other code but two atomics.
    let results = unsafe {
        [
            libc::syscall(
                libc::SYS_prctl,
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            ),
            libc::syscall(libc::SYS_capset, &raw const header, empty.as_ptr()),
            libc::syscall(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
        ]
    };
    if results.iter().any(|&r| r != 0) {
        FAILED.fetch_add(1, Ordering::SeqCst);
    }
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

fn thread_ids() -> BTreeSet<libc::pid_t> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs [`clear_this_thread`] on every thread (see the module doc), then checks `CapEff` of
/// each; returns how many threads there were.
fn clear_capabilities_everywhere() -> Result<usize, PrivilegeError> {
    /// Rounds of listing threads (a thread started by an unhandled one appears in the next).
    const ROUNDS: usize = 16;
    /// How long a round waits for its handlers.
    const ROUND_WAIT: Duration = Duration::from_secs(2);
    let signal = libc::SIGRTMIN();
    // SAFETY: a zeroed sigaction is valid; the handler only makes raw system calls.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = clear_this_thread as *const () as usize;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: valid pointers to initialised sigaction values.
    if unsafe { libc::sigaction(signal, &raw const action, &raw mut previous) } != 0 {
        return Err(PrivilegeError::Capabilities(format!(
            "installing the signal handler: {}",
            std::io::Error::last_os_error()
        )));
    }
    HANDLED.store(0, Ordering::SeqCst);
    FAILED.store(0, Ordering::SeqCst);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut handled = BTreeSet::new();
    let mut expected = 0usize;
    for _ in 0..ROUNDS {
        let fresh: Vec<libc::pid_t> = thread_ids().difference(&handled).copied().collect();
        if fresh.is_empty() {
            break;
        }
        for tid in fresh {
            // SAFETY: tgkill on our own process; the handler is installed.
            let sent = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) };
            if sent == 0 {
                expected = expected.saturating_add(1);
            }
            handled.insert(tid);
        }
        let deadline = Instant::now() + ROUND_WAIT;
        while HANDLED.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // SAFETY: restores the previous, valid action.
    unsafe { libc::sigaction(signal, &raw const previous, std::ptr::null_mut()) };
    let done = HANDLED.load(Ordering::SeqCst);
    if FAILED.load(Ordering::SeqCst) > 0 || done < expected {
        return Err(PrivilegeError::Capabilities(format!(
            "{} of {expected} threads failed and {} did not answer",
            FAILED.load(Ordering::SeqCst),
            expected.saturating_sub(done)
        )));
    }
    let kept: Vec<String> = thread_ids()
        .into_iter()
        .filter_map(|tid| {
            let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
            let eff = status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            (u64::from_str_radix(&eff, 16).ok() != Some(0))
                .then(|| format!("thread {tid}: CapEff {eff}"))
        })
        .collect();
    if !kept.is_empty() {
        return Err(PrivilegeError::Capabilities(kept.join(", ")));
    }
    Ok(handled.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap_eff(tid: libc::pid_t) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap();
        u64::from_str_radix(eff.trim(), 16).unwrap()
    }

    #[test]
    fn a_missing_configured_user_names_the_field() {
        let text = target_user(Some("no-such-user-sensor-test"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            text,
            "field `sensor.run_as`: no user `no-such-user-sensor-test` on this system (create it \
             with `useradd --system --no-create-home --shell /usr/sbin/nologin \
             no-such-user-sensor-test`)"
        );
    }

    #[test]
    fn root_and_existing_users_resolve() {
        assert!(target_user(Some("root")).unwrap().is_none());
        assert_eq!(target_user(Some("nobody")).unwrap().unwrap().name, "nobody");
    }

    #[test]
    fn hand_over_skips_missing_paths() {
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap();
        hand_over(Path::new("/nonexistent/sensor/spool"), &me).unwrap();
        let dir = std::env::temp_dir().join(format!("sensor-handover-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::write(dir.join("a/segment"), b"x").unwrap();
        hand_over(&dir, &me).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(
            std::fs::metadata(dir.join("a/segment")).unwrap().uid(),
            me.uid.as_raw()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn thread_listing_includes_this_thread() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        // /proc/self/task is read by position: while other test threads start and exit, one
        // listing may skip a live thread (the agent lists in rounds for that reason). A quiet
        // moment comes within a few listings.
        assert!((0..100).any(|_| thread_ids().contains(&tid)));
        // This test thread keeps what the test process has: CapEff of a thread is readable.
        let me = cap_eff(tid);
        let process = std::fs::read_to_string("/proc/self/status").unwrap();
        let leader = process
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .unwrap();
        let bounding = u64::from_str_radix(leader.trim(), 16).unwrap();
        assert_eq!(me & !bounding, 0);
    }
}
