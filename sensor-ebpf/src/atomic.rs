//! Atomic read-modify-write on map values shared by all CPUs.
//!
//! The BPF target only advertises atomic loads and stores, so `core::sync::atomic` offers no
//! `fetch_add` or `compare_exchange` there, and the object is generated for the generic (v1)
//! BPF CPU, where LLVM refuses the fetching atomics (aya-build owns the flags that would select
//! v3). The instructions themselves (`BPF_ATOMIC | BPF_ADD | BPF_FETCH` and `BPF_CMPXCHG`,
//! kernel 5.12+) are what the verifier checks, not the CPU level, so they are written here as
//! inline assembly. Hand-written because no crate covers this target.

use core::arch::asm;

/// Adds `value` to `*dst` atomically and returns the previous value.
///
/// # Safety
/// `dst` must point to a live, 8-byte aligned map value.
#[inline(always)]
pub unsafe fn fetch_add(dst: *mut u64, value: u64) -> u64 {
    let mut old = value;
    // SAFETY: the caller vouches for `dst`; the instruction reads and writes only `*dst` and
    // the register holding `old`.
    unsafe {
        asm!(
            "{old} = atomic_fetch_add((u64 *)({dst} + 0), {old})",
            dst = in(reg) dst,
            old = inout(reg) old,
            options(nostack),
        );
    }
    old
}

/// ORs `value` into `*dst` atomically and returns the previous value.
///
/// # Safety
/// As [`fetch_add`].
#[inline(always)]
pub unsafe fn fetch_or(dst: *mut u64, value: u64) -> u64 {
    let mut old = value;
    // SAFETY: as in `fetch_add` (`BPF_ATOMIC | BPF_OR | BPF_FETCH`).
    unsafe {
        asm!(
            "{old} = atomic_fetch_or((u64 *)({dst} + 0), {old})",
            dst = in(reg) dst,
            old = inout(reg) old,
            options(nostack),
        );
    }
    old
}

/// Replaces `*dst` with `new` if it still holds `old`; true when this call did it.
///
/// # Safety
/// As [`fetch_add`].
#[inline(always)]
pub unsafe fn compare_exchange(dst: *mut u64, old: u64, new: u64) -> bool {
    let mut seen = old;
    // SAFETY: the caller vouches for `dst`; BPF_CMPXCHG compares `*dst` with r0, stores `new`
    // when equal, and leaves the previous value of `*dst` in r0.
    unsafe {
        asm!(
            "r0 = cmpxchg_64({dst} + 0, r0, {new})",
            dst = in(reg) dst,
            new = in(reg) new,
            inout("r0") seen,
            options(nostack),
        );
    }
    seen == old
}

/// Reads `*dst` in one access (an aligned 64-bit load is one instruction; LLVM's BPF backend
/// has no pattern for an atomic load at the generic CPU level, so it is a volatile read).
///
/// # Safety
/// As [`fetch_add`].
#[inline(always)]
pub unsafe fn load(dst: *const u64) -> u64 {
    // SAFETY: the caller vouches for `dst`.
    unsafe { dst.read_volatile() }
}

/// Writes `*dst` in one access (one aligned 64-bit store, as [`load`]).
///
/// # Safety
/// As [`fetch_add`].
#[inline(always)]
pub unsafe fn store(dst: *mut u64, value: u64) {
    // SAFETY: the caller vouches for `dst`.
    unsafe { dst.write_volatile(value) }
}
