//! `BPF_PROG_TEST_RUN` for XDP programs: runs the loaded program on a hand-made frame in the
//! kernel, without attaching it or sending traffic. Used by tests (malformed frames) and benches
//! (nanoseconds per packet).

use std::os::fd::{AsRawFd as _, BorrowedFd};

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of the kernel's `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// Issues `bpf(BPF_PROG_TEST_RUN, attr)`.
///
/// # Safety
/// Every pointer in `attr` must reference a live buffer of the size given next to it.
unsafe fn test_run_syscall(attr: &mut TestRunAttr) -> Result<(), TestRunError> {
    // SAFETY: `attr` is a valid `bpf_attr.test`; the caller vouches for its pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            std::ptr::from_mut(attr),
            size_of::<TestRunAttr>(),
        )
    };
    if rc < 0 {
        return Err(TestRunError(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// What one test run returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The program's return value (an `xdp_action`).
    pub retval: u32,
    /// The frame after the program ran.
    pub data: Vec<u8>,
    /// Average run time per repetition reported by the kernel, ns.
    pub duration_ns: u32,
}

/// `XDP_PASS`.
pub const XDP_PASS: u32 = 2;

/// A failed `bpf(BPF_PROG_TEST_RUN)` call.
#[derive(Debug, thiserror::Error)]
#[error("BPF_PROG_TEST_RUN failed: {0}")]
pub struct TestRunError(#[from] std::io::Error);

/// Runs the XDP program `prog` on `frame`, `repeat` times (at least once).
///
/// # Errors
/// The syscall failed (no privileges, frame too short for the kernel, ...).
pub fn run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> Result<TestRunOutput, TestRunError> {
    let mut out = vec![0u8; frame.len() + 256];
    let too_big = || std::io::Error::from(std::io::ErrorKind::InvalidInput);
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(prog.as_raw_fd()).map_err(|_| too_big())?,
        data_size_in: u32::try_from(frame.len()).map_err(|_| too_big())?,
        data_size_out: u32::try_from(out.len()).map_err(|_| too_big())?,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    // SAFETY: the data pointers reference live buffers of the sizes given; the kernel writes at
    // most `data_size_out` bytes to `out`.
    unsafe { test_run_syscall(&mut attr)? };
    out.truncate(attr.data_size_out as usize);
    Ok(TestRunOutput {
        retval: attr.retval,
        data: out,
        duration_ns: attr.duration,
    })
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: frames are really transmitted according to the verdict.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// The kernel's `struct xdp_md`, the context given to a test run.
#[repr(C)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Runs the XDP program `prog` in live-frames mode: `repeat` copies of `frame`, as if received
/// on interface `ifindex`, in batches of `batch_size`; a program returning `XDP_TX` transmits
/// them out of that interface. This is how the benchmark generator sends traffic. Must be
/// called from a thread in the network namespace of `ifindex`.
///
/// # Errors
/// The syscall failed (no privileges, unknown interface, kernel older than 5.18).
pub fn run_live(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
    batch_size: u32,
) -> Result<(), TestRunError> {
    let too_big = || std::io::Error::from(std::io::ErrorKind::InvalidInput);
    let len = u32::try_from(frame.len()).map_err(|_| too_big())?;
    let mut ctx = XdpMd {
        data: 0,
        data_end: len,
        data_meta: 0,
        ingress_ifindex: ifindex,
        rx_queue_index: 0,
        egress_ifindex: 0,
    };
    let mut attr = TestRunAttr {
        prog_fd: u32::try_from(prog.as_raw_fd()).map_err(|_| too_big())?,
        data_size_in: len,
        data_in: frame.as_ptr() as u64,
        repeat,
        ctx_size_in: u32::try_from(size_of::<XdpMd>()).map_err(|_| too_big())?,
        ctx_in: (&raw mut ctx) as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size,
        ..TestRunAttr::default()
    };
    // SAFETY: `attr` is a valid `bpf_attr.test` whose input pointers reference live buffers of
    // the sizes given; live mode writes no output buffer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &raw mut attr,
            size_of::<TestRunAttr>(),
        )
    };
    if rc < 0 {
        return Err(TestRunError(std::io::Error::last_os_error()));
    }
    Ok(())
}
