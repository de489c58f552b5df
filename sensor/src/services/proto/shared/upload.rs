//! Files clients upload to a decoy (FTP `STOR`/`APPE`; any protocol that receives a file): every
//! byte is counted and hashed (SHA-256), the first `keep` bytes are kept on disk in
//! `<state_dir>/uploads/<sha256>` (mode 0600, in a 0700 directory), and the first bytes also go
//! into the event. A [`Budget`] shared by an instance bounds what all its uploads may keep on
//! disk together, so a client looping uploads cannot fill the disk; past it, uploads are still
//! counted and hashed, not kept.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Bytes the uploads of one instance may still keep on disk.
#[derive(Debug, Clone)]
pub struct Budget(Arc<AtomicU64>);

impl Budget {
    /// A budget of `bytes`.
    #[must_use]
    pub fn new(bytes: u64) -> Self {
        Self(Arc::new(AtomicU64::new(bytes)))
    }

    /// Takes up to `wanted` bytes; returns how many were granted.
    fn take(&self, wanted: u64) -> u64 {
        let mut granted = 0;
        let _ignored = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                granted = left.min(wanted);
                Some(left.saturating_sub(granted))
            });
        granted
    }
}

/// One upload in progress.
#[derive(Debug)]
pub struct Capture {
    hasher: Sha256,
    size: u64,
    keep: u64,
    kept: u64,
    head: Vec<u8>,
    head_cap: usize,
    file: Option<(tokio::fs::File, PathBuf)>,
    dir: PathBuf,
    budget: Budget,
}

/// What an upload was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Bytes received.
    pub size: u64,
    /// SHA-256 of every byte received, lowercase hex.
    pub sha256: String,
    /// Where the kept bytes are, when any were kept.
    pub stored: Option<PathBuf>,
    /// Bytes kept on disk (`size` unless the cap or the budget cut it).
    pub kept: u64,
    /// The first bytes (at most the `head_cap` given to [`Capture::begin`]).
    pub head: Vec<u8>,
}

impl Capture {
    /// Starts an upload that keeps up to `keep` bytes under `state_dir` (within `budget`) and
    /// `head_cap` bytes in memory. A directory or file that cannot be created only means
    /// nothing is kept (logged); the upload is still counted and hashed.
    pub async fn begin(state_dir: &Path, keep: u64, head_cap: usize, budget: Budget) -> Self {
        let dir = state_dir.join("uploads");
        let file = if keep == 0 {
            None
        } else {
            match open_partial(&dir).await {
                Ok(pair) => Some(pair),
                Err(err) => {
                    tracing::warn!(dir = %dir.display(), error = %err, "Upload not kept: the uploads directory cannot be written.");
                    None
                }
            }
        };
        Self {
            hasher: Sha256::new(),
            size: 0,
            keep,
            kept: 0,
            head: Vec::new(),
            head_cap,
            file,
            dir,
            budget,
        }
    }

    /// Bytes received so far.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Adds received bytes.
    pub async fn feed(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size = self
            .size
            .saturating_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        let room = self.head_cap.saturating_sub(self.head.len());
        self.head
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
        let wanted = self
            .keep
            .saturating_sub(self.kept)
            .min(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        if wanted == 0 || self.file.is_none() {
            return;
        }
        let granted = self.budget.take(wanted);
        let part = bytes
            .get(..usize::try_from(granted).unwrap_or(0))
            .unwrap_or_default();
        if part.is_empty() {
            return;
        }
        let failed = match self.file.as_mut() {
            Some((file, _)) => file.write_all(part).await.err(),
            None => None,
        };
        match failed {
            None => self.kept = self.kept.saturating_add(granted),
            Some(err) => {
                if let Some((file, path)) = self.file.take() {
                    tracing::warn!(file = %path.display(), error = %err, "Upload not kept: write failed.");
                    drop(file);
                    let _ignored = tokio::fs::remove_file(&path).await;
                }
            }
        }
    }

    /// Ends the upload: the kept bytes are renamed after the digest of the whole upload.
    pub async fn finish(self) -> Captured {
        let sha256 = hex::encode(self.hasher.finalize());
        let stored = match self.file {
            Some((mut file, partial)) if self.kept > 0 => {
                let _ignored = file.flush().await;
                drop(file);
                let path = self.dir.join(&sha256);
                match tokio::fs::rename(&partial, &path).await {
                    Ok(()) => Some(path),
                    Err(err) => {
                        tracing::warn!(file = %partial.display(), error = %err, "Upload not kept: rename failed.");
                        let _ignored = tokio::fs::remove_file(&partial).await;
                        None
                    }
                }
            }
            Some((file, partial)) => {
                drop(file);
                let _ignored = tokio::fs::remove_file(&partial).await;
                None
            }
            None => None,
        };
        Captured {
            size: self.size,
            sha256,
            kept: if stored.is_some() { self.kept } else { 0 },
            stored,
            head: self.head,
        }
    }
}

async fn open_partial(dir: &Path) -> std::io::Result<(tokio::fs::File, PathBuf)> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder.create(dir).await?;
    let path = dir.join(format!(".partial-{}", uuid::Uuid::new_v4()));
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .await?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::{Budget, Capture};

    fn temp() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sensor-upload-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn hashes_everything_keeps_up_to_the_cap_and_the_budget() {
        let dir = temp();
        let budget = Budget::new(12);
        let mut c = Capture::begin(&dir, 8, 4, budget.clone()).await;
        c.feed(b"hello ").await;
        c.feed(b"world").await;
        let got = c.finish().await;
        // sha256("hello world"), computed with sha256sum.
        assert_eq!(
            got.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            (got.size, got.kept, got.head.as_slice()),
            (11, 8, &b"hell"[..])
        );
        let path = got.stored.unwrap();
        assert_eq!(path, dir.join("uploads").join(&got.sha256));
        assert_eq!(std::fs::read(&path).unwrap(), b"hello wo");
        // Four bytes of budget left: the next upload keeps four.
        let mut c = Capture::begin(&dir, 8, 4, budget.clone()).await;
        c.feed(b"abcdefgh").await;
        let got = c.finish().await;
        assert_eq!(got.kept, 4);
        assert_eq!(std::fs::read(got.stored.unwrap()).unwrap(), b"abcd");
        // None left: counted and hashed, nothing kept, no partial file left behind.
        let mut c = Capture::begin(&dir, 8, 4, budget).await;
        c.feed(b"xyz").await;
        let got = c.finish().await;
        assert_eq!((got.size, got.kept, got.stored), (3, 0, None));
        let left: Vec<_> = std::fs::read_dir(dir.join("uploads"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".partial"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
