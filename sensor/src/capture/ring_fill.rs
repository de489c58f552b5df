//! How full the kernel ring buffer is, for the `trapster_sensor_ring_buffer_used_bytes` gauge:
//! the distance between the kernel's producer position and the agent's consumer position.
//!
//! aya's `RingBuf` keeps both positions private, so this maps the ring buffer's two position
//! pages once more, read-only (the kernel allows any read-only mapping of a ring buffer; only
//! the consumer page may be mapped writable), and reads them with acquire loads as libbpf does.
//! Hand-written because no crate exposes them; it is the only `mmap` of the agent.

use std::{
    os::fd::{AsRawFd as _, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

/// A read-only view of a ring buffer's consumer and producer positions.
#[derive(Debug)]
pub struct RingFill {
    base: NonNull<libc::c_void>,
    page: usize,
    size: u64,
}

// SAFETY: the mapping is read-only shared memory read with atomic loads only; it stays valid
// until `drop` unmaps it, whichever thread holds the value.
unsafe impl Send for RingFill {}
// SAFETY: as above; `used` takes `&self` and only performs atomic loads.
unsafe impl Sync for RingFill {}

impl RingFill {
    /// Maps the position pages of the ring buffer `fd` of `size` bytes.
    ///
    /// # Errors
    /// The `mmap` error.
    pub fn map(fd: BorrowedFd<'_>, size: u32) -> std::io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|p| *p >= 8)
            .ok_or_else(|| std::io::Error::other("no page size"))?;
        let len = page.saturating_mul(2);
        // SAFETY: a fresh read-only shared mapping of a valid fd; the kernel checks the range.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(base).ok_or_else(|| std::io::Error::other("mmap gave null"))?;
        Ok(Self {
            base,
            page,
            size: u64::from(size),
        })
    }

    /// The ring buffer's size in bytes.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Bytes written by the kernel and not yet consumed (at most the size).
    #[must_use]
    pub fn used(&self) -> u64 {
        // SAFETY: both pages are mapped for as long as `self` lives; each starts with the
        // kernel's 8-byte-aligned u64 position, only ever read here.
        let (consumer, producer) = unsafe {
            let consumer = &*self.base.as_ptr().cast::<AtomicU64>();
            let producer = &*self.base.as_ptr().byte_add(self.page).cast::<AtomicU64>();
            (
                consumer.load(Ordering::Acquire),
                producer.load(Ordering::Acquire),
            )
        };
        producer.saturating_sub(consumer).min(self.size)
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, once.
        unsafe {
            libc::munmap(self.base.as_ptr(), self.page.saturating_mul(2));
        }
    }
}
