//! Uploads as they arrive ([`Capture`]: SHA-256 streamed, content kept in memory up to
//! `upload_max_bytes` within a service-wide budget) and the store of their copies
//! ([`UploadStore`]: `<state_dir>/ssh-uploads/<sha256>`, files 0600, total bounded by
//! `upload_store_bytes`). Attacker-chosen names never reach the host: copies are named by
//! their hash.

use std::{
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use sha2::{Digest, Sha256};

/// The folder of the kept copies, inside the state directory.
pub const DIR: &str = "ssh-uploads";
/// Files looked at when adding up what the store already holds.
const MAX_SCAN: usize = 100_000;

/// Where finished uploads are kept, with its bounds.
#[derive(Debug)]
pub struct UploadStore {
    dir: PathBuf,
    max_file: usize,
    max_total: u64,
    /// Bytes the store holds.
    used: Mutex<u64>,
    /// Bytes of uploads in progress held in memory, all connections together.
    buffered: AtomicUsize,
    max_buffered: usize,
}

impl UploadStore {
    /// The store in `state_dir`, keeping files up to `max_file` bytes and `max_total` bytes in
    /// all (what is already there counts). Nothing is created until a file is kept.
    #[must_use]
    pub fn new(state_dir: &Path, max_file: usize, max_total: u64) -> Self {
        let dir = state_dir.join(DIR);
        let used = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .take(MAX_SCAN)
                    .filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .filter(std::fs::Metadata::is_file)
                    .map(|m| m.len())
                    .fold(0_u64, u64::saturating_add)
            })
            .unwrap_or(0);
        Self {
            dir,
            max_file,
            max_total,
            used: Mutex::new(used),
            buffered: AtomicUsize::new(0),
            // Room for eight uploads at the cap in flight at once, at least 64 MiB.
            max_buffered: max_file.saturating_mul(8).max(64 << 20),
        }
    }

    /// A new upload.
    #[must_use]
    pub fn capture(self: &Arc<Self>) -> Capture {
        Capture {
            store: Arc::clone(self),
            kept: Vec::new(),
            reserved: 0,
            hasher: Sha256::new(),
            hashed: 0,
            size: 0,
            sequential: true,
            overflow: false,
        }
    }

    /// Keeps `upload` (whole uploads only) as `<state_dir>/ssh-uploads/<sha256>`; that path,
    /// or `None` when it is truncated, over the total, or the disk
    /// refused.
    pub async fn keep(self: &Arc<Self>, upload: &Finished) -> Option<String> {
        if upload.truncated {
            return None;
        }
        let store = Arc::clone(self);
        let sha = upload.sha256.clone();
        let content = upload.content.clone();
        tokio::task::spawn_blocking(move || store.write(&sha, &content))
            .await
            .ok()
            .flatten()
    }

    fn write(&self, sha: &str, content: &[u8]) -> Option<String> {
        let path = self.dir.join(sha);
        // Where the copy is on the sensor, as `ftp.upload` names its own.
        let name = path.display().to_string();
        let mut used = self.used.lock().ok()?;
        if path.exists() {
            return Some(name);
        }
        let len = content.len() as u64;
        if used.saturating_add(len) > self.max_total {
            tracing::warn!(
                dir = %self.dir.display(),
                used = *used,
                "The SSH upload store is full: an upload is not kept."
            );
            return None;
        }
        let part = self.dir.join(format!(".{sha}.part"));
        let written = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .and_then(|()| {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&part)?;
                file.write_all(content)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&part, &path));
        match written {
            Ok(()) => {
                *used = used.saturating_add(len);
                Some(name)
            }
            Err(err) => {
                let _ = std::fs::remove_file(&part);
                tracing::warn!(path = %path.display(), error = %err, "Could not keep an SSH upload.");
                None
            }
        }
    }
}

/// One upload in progress.
#[derive(Debug)]
pub struct Capture {
    store: Arc<UploadStore>,
    kept: Vec<u8>,
    /// Bytes of the memory budget this upload holds.
    reserved: usize,
    hasher: Sha256,
    /// Bytes hashed so far (the upload's prefix written in order).
    hashed: u64,
    /// The end of the furthest write.
    size: u64,
    /// Every write so far continued the previous one.
    sequential: bool,
    /// Bytes were not kept (past `upload_max_bytes`, or the budget was spent).
    overflow: bool,
}

impl Capture {
    /// Bytes `data` written at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset.saturating_add(data.len() as u64);
        self.size = self.size.max(end);
        if self.sequential && offset == self.hashed {
            self.hasher.update(data);
            self.hashed = end;
        } else {
            self.sequential = false;
        }
        if self.overflow {
            return;
        }
        let (Ok(start), Ok(end)) = (usize::try_from(offset), usize::try_from(end)) else {
            self.overflow = true;
            return;
        };
        let keep_end = end.min(self.store.max_file);
        if keep_end < end {
            self.overflow = true;
        }
        if start >= keep_end {
            return;
        }
        let grow = keep_end.saturating_sub(self.kept.len());
        if grow > 0 && !self.reserve(grow) {
            self.overflow = true;
            return;
        }
        if self.kept.len() < keep_end {
            self.kept.resize(keep_end, 0);
        }
        let n = keep_end.saturating_sub(start);
        if let (Some(to), Some(from)) = (self.kept.get_mut(start..keep_end), data.get(..n)) {
            to.copy_from_slice(from);
        }
    }

    fn reserve(&mut self, n: usize) -> bool {
        let max = self.store.max_buffered;
        let got = self
            .store
            .buffered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                b.checked_add(n).filter(|t| *t <= max)
            })
            .is_ok();
        if got {
            self.reserved = self.reserved.saturating_add(n);
        }
        got
    }

    /// Bytes written so far (the end of the furthest write).
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// The upload as it stands: its SHA-256 is of the whole upload when it was written in
    /// order (as every real client writes), else of the bytes kept.
    #[must_use]
    pub fn finish(mut self, complete: bool) -> Finished {
        let kept = std::mem::take(&mut self.kept);
        let whole = self.sequential && self.hashed == self.size;
        let sha256 = if whole {
            hex::encode(std::mem::take(&mut self.hasher).finalize())
        } else {
            hex::encode(Sha256::digest(&kept))
        };
        Finished {
            truncated: self.overflow || (kept.len() as u64) < self.size,
            size: self.size,
            sha256,
            content: kept,
            complete,
            _budget: Budget {
                store: Arc::clone(&self.store),
                bytes: std::mem::take(&mut self.reserved),
            },
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        release(&self.store, self.reserved);
    }
}

fn release(store: &UploadStore, bytes: usize) {
    if bytes > 0 {
        let _ = store
            .buffered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(bytes))
            });
    }
}

/// The share of the memory budget a finished upload still holds.
#[derive(Debug)]
struct Budget {
    store: Arc<UploadStore>,
    bytes: usize,
}

impl Drop for Budget {
    fn drop(&mut self) {
        release(&self.store, self.bytes);
    }
}

/// A finished (or abandoned) upload.
#[derive(Debug)]
pub struct Finished {
    /// The bytes kept (all of them unless `truncated`).
    pub content: Vec<u8>,
    /// The upload's size.
    pub size: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// Not every byte was kept.
    pub truncated: bool,
    /// The client closed the file (false when the channel or connection ended first).
    pub complete: bool,
    _budget: Budget,
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt as _, sync::Arc};

    use sha2::{Digest, Sha256};

    use super::UploadStore;

    #[tokio::test]
    async fn keeps_whole_uploads_by_hash_and_bounds_the_rest() {
        let dir = std::env::temp_dir().join(format!("ssh-store-{}", uuid::Uuid::new_v4()));
        let store = Arc::new(UploadStore::new(&dir, 8, 12));
        let mut c = store.capture();
        c.write(0, b"abcd");
        c.write(4, b"efg");
        let done = c.finish(true);
        let sha = hex::encode(Sha256::digest(b"abcdefg"));
        assert_eq!((done.size, &done.sha256, done.truncated), (7, &sha, false));
        let name = store.keep(&done).await.unwrap();
        let path = dir.join("ssh-uploads").join(&sha);
        assert_eq!(name, path.display().to_string());
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdefg");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The same content again: already kept, nothing added.
        assert_eq!(store.keep(&done).await, Some(name));

        // Over the per-file cap: the hash is of the whole upload, nothing is kept.
        let mut c = store.capture();
        c.write(0, b"0123456789");
        let big = c.finish(true);
        assert_eq!(big.sha256, hex::encode(Sha256::digest(b"0123456789")));
        assert_eq!((big.size, big.truncated, big.content.len()), (10, true, 8));
        assert_eq!(store.keep(&big).await, None);

        // Over the total: 7 kept + 6 > 12.
        let mut c = store.capture();
        c.write(0, b"xyzxyz");
        assert_eq!(store.keep(&c.finish(true)).await, None);

        // Out of order writes: the hash of what was kept.
        let mut c = store.capture();
        c.write(3, b"def");
        c.write(0, b"abc");
        let unordered = c.finish(false);
        assert_eq!(unordered.sha256, hex::encode(Sha256::digest(b"abcdef")));
        assert!(!unordered.truncated && !unordered.complete);
        // Every upload's memory comes back once it is dropped.
        assert_eq!(
            store.buffered.load(std::sync::atomic::Ordering::Relaxed),
            7 + 8 + 6
        );
        drop((done, big, unordered));
        assert_eq!(store.buffered.load(std::sync::atomic::Ordering::Relaxed), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
