//! File descriptors: every accepted connection holds one, so the open-file limit
//! (`RLIMIT_NOFILE`) bounds `sensor.services.max_connections`. With the common soft limit of
//! 1,024, an attacker holding 3,000 idle connections would exhaust descriptors below the
//! default 2,048 connection cap, and accepts, output sockets and state files would fail instead.
//! `sensor run` raises the soft limit to the hard one ([`raise`]) and refuses a connection cap
//! the result cannot hold with [`RESERVE`] descriptors to spare ([`check_connections`]);
//! `sensor check` refuses it too, with the limits the current process could raise itself to.
//!
//! Hand-written over `libc` (two calls): the crates that wrap `getrlimit` add nothing here.

/// Descriptors kept beyond the connection cap: outputs, spool and state files, listeners (one
/// per address and service), the runtime, and sessions accepted before the cap closes them.
pub const RESERVE: u64 = 256;

/// The soft limit tried when the hard limit is unlimited (Linux's default `fs.nr_open`).
const UNLIMITED_TARGET: u64 = 1 << 20;

/// The process's open-file limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// What the process may open now.
    pub soft: u64,
    /// What the soft limit may be raised to without privileges.
    pub hard: u64,
}

/// The connection cap does not fit the open-file limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{max_connections} connections need {needed} open files ({RESERVE} kept for outputs, \
     state, listeners and new sessions), but the open-file limit (RLIMIT_NOFILE) is {limit}: \
     lower the field or raise the limit (`LimitNOFILE=` in the service unit, `ulimit -n`)"
)]
pub struct FdError {
    /// `sensor.services.max_connections`.
    pub max_connections: usize,
    /// Descriptors it needs with the reserve.
    pub needed: u64,
    /// The limit it was checked against.
    pub limit: u64,
}

/// The current limits.
///
/// # Errors
/// The `getrlimit` error.
pub fn current() -> std::io::Result<FdLimit> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut rl) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(FdLimit {
        soft: rl.rlim_cur,
        hard: rl.rlim_max,
    })
}

/// The soft limit [`raise`] aims for: the hard limit, or [`UNLIMITED_TARGET`] when the hard
/// limit is unlimited (Linux refuses a soft limit above `fs.nr_open`).
#[must_use]
pub const fn target(limit: FdLimit) -> u64 {
    if limit.hard == libc::RLIM_INFINITY {
        if limit.soft > UNLIMITED_TARGET {
            limit.soft
        } else {
            UNLIMITED_TARGET
        }
    } else {
        limit.hard
    }
}

/// Raises the soft limit to [`target`] (never lowers it) and returns the limits in force.
///
/// # Errors
/// The `getrlimit` or `setrlimit` error; the limits are then unchanged.
pub fn raise() -> std::io::Result<FdLimit> {
    let limit = current()?;
    let wanted = target(limit);
    if wanted <= limit.soft {
        return Ok(limit);
    }
    let rl = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: limit.hard,
    };
    // SAFETY: `rl` is a valid `rlimit`; setrlimit only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const rl) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    current()
}

/// Whether `max_connections` connections, plus [`RESERVE`], fit in `limit` open files.
///
/// # Errors
/// [`FdError`] with the numbers.
pub fn check_connections(max_connections: usize, limit: u64) -> Result<(), FdError> {
    let needed = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(RESERVE);
    if needed > limit {
        return Err(FdError {
            max_connections,
            needed,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{FdError, FdLimit, RESERVE, check_connections, current, raise, target};

    #[test]
    fn the_reserve_is_kept_beside_the_connections() {
        check_connections(2_048, 2_048 + RESERVE).unwrap();
        assert_eq!(
            check_connections(2_048, 1_024),
            Err(FdError {
                max_connections: 2_048,
                needed: 2_304,
                limit: 1_024
            })
        );
        assert_eq!(
            check_connections(usize::MAX, u64::MAX - 1)
                .unwrap_err()
                .needed,
            u64::MAX
        );
        let text = check_connections(3_000, 1_024).unwrap_err().to_string();
        assert!(
            text.starts_with(
                "3000 connections need 3256 open files (256 kept for outputs, state, listeners \
                 and new sessions), but the open-file limit (RLIMIT_NOFILE) is 1024"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_target_is_the_hard_limit_or_nr_open_when_unlimited() {
        assert_eq!(
            target(FdLimit {
                soft: 1_024,
                hard: 524_288
            }),
            524_288
        );
        let unlimited = libc::RLIM_INFINITY;
        assert_eq!(
            target(FdLimit {
                soft: 1_024,
                hard: unlimited
            }),
            1 << 20
        );
        assert_eq!(
            target(FdLimit {
                soft: 1 << 21,
                hard: unlimited
            }),
            1 << 21
        );
    }

    /// Raising needs no privilege: the soft limit goes up to the hard one, never above it.
    #[test]
    fn raising_reaches_the_hard_limit_without_privileges() {
        let before = current().unwrap();
        let after = raise().unwrap();
        assert_eq!(after.hard, before.hard);
        assert!(after.soft >= before.soft);
        assert_eq!(after.soft, target(before).max(before.soft).min(after.hard));
        assert_eq!(raise().unwrap(), after);
    }
}
