//! `file` output: appends one event per line to a file, creating it (mode 0600 by default), and
//! reopens it when asked (the agent asks on SIGHUP) so logrotate can move it away. A failed
//! write is retried by the driver (the file is reopened by path at the next attempt).
//!
//! A full disk never leaves part of a record: a failed append is cut back to where it started.
//! The batch is then written record by record, as far as the space goes, and the next attempt
//! at the same batch resumes after the records already on disk, so a backlog larger than the
//! space freed still drains, nothing is written twice, and nothing on disk is counted as lost.

use std::{os::unix::fs::OpenOptionsExt as _, path::PathBuf};

use serde::Deserialize;
use tokio::{fs::File, io::AsyncWriteExt as _};

use crate::output::sink::{Body, Record, Sink, WriteError};

/// `transport: {"type": "file", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to (Trapster's `logfile`).
    pub path: PathBuf,
    /// Permission bits of a newly created file, octal string (Trapster's `mode`); default 0600.
    #[serde(default)]
    pub mode: Option<String>,
    /// Empties the file when the sensor starts (Trapster's file modes `w`/`w+`); reopening after
    /// a rotation never empties it again. Default false: appends.
    #[serde(default)]
    pub truncate: bool,
}

impl FileConfig {
    fn mode_bits(&self) -> u32 {
        self.mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok())
            .unwrap_or(0o600)
    }
}

/// An open file output.
pub struct FileOutput {
    config: FileConfig,
    file: Option<File>,
    body: Body,
    /// The batch partly on disk after a failed attempt: its fingerprint and records written.
    resume: Option<(u64, usize)>,
    /// `truncate` is still to be done (at the first open only).
    pending_truncate: bool,
}

/// Tells batches apart: the driver retries a failed batch with the same records.
fn fingerprint(batch: &[Record<'_>]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    batch.len().hash(&mut h);
    for r in batch {
        r.bytes.hash(&mut h);
    }
    h.finish()
}

impl FileOutput {
    /// Prepares the output (default format); the file is opened on first write.
    #[must_use]
    pub fn new(config: FileConfig) -> Self {
        Self {
            file: None,
            body: Body::Format(crate::format::Format::Default),
            resume: None,
            pending_truncate: config.truncate,
            config,
        }
    }

    /// Encodes as `body` says.
    #[must_use]
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    async fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(self.config.mode_bits())
                .open(&self.config.path)?;
            if self.pending_truncate {
                file.set_len(0)?;
                self.pending_truncate = false;
            }
            self.file = Some(File::from_std(file));
        }
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("file not open"))
    }

    /// Closes the file; the next write reopens it by path (logrotate).
    pub async fn close(&mut self) {
        if let Some(mut file) = self.file.take() {
            let _ = file.flush().await;
        }
    }

    /// One attempt at appending `bytes`; on failure the file is reopened at the next one.
    ///
    /// # Errors
    /// Opening or writing the file failed.
    pub async fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let file = match self.open().await {
            Ok(file) => file,
            Err(err) => {
                self.file = None;
                return Err(err);
            }
        };
        let result = async {
            let before = file.metadata().await?.len();
            if let Err(err) = async {
                file.write_all(bytes).await?;
                file.flush().await
            }
            .await
            {
                // Never leave part of a record behind.
                let _ = file.set_len(before).await;
                return Err(err);
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            self.file = None;
        }
        result
    }
}

#[async_trait::async_trait]
impl Sink for FileOutput {
    fn body(&self) -> &Body {
        &self.body
    }

    fn describe(&self) -> String {
        self.config.path.display().to_string()
    }

    fn spools(&self) -> bool {
        false
    }

    async fn write(&mut self, batch: &[Record<'_>]) -> Result<u64, WriteError> {
        // Hashing the batch is only needed while one is partly on disk, never on the usual path.
        let done = match self.resume.take() {
            Some((fp, written)) if fp == fingerprint(batch) => written.min(batch.len()),
            _ => 0,
        };
        let rest = batch.get(done..).unwrap_or_default();
        let mut buf = Vec::new();
        for r in rest {
            buf.extend_from_slice(r.bytes);
            buf.push(b'\n');
        }
        let Err(whole) = self.try_write(&buf).await else {
            return Ok(0);
        };
        // As many whole records as the space allows; the next attempt resumes after them.
        let mut written = done;
        for r in rest {
            let mut line = Vec::with_capacity(r.bytes.len() + 1);
            line.extend_from_slice(r.bytes);
            line.push(b'\n');
            if self.try_write(&line).await.is_err() {
                break;
            }
            written += 1;
        }
        if written == batch.len() {
            return Ok(0);
        }
        self.resume = Some((fingerprint(batch), written));
        Err(WriteError::retry(whole))
    }

    async fn reopen(&mut self) {
        self.close().await;
        tracing::info!(path = %self.config.path.display(), "File reopened.");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::{FileConfig, FileOutput};

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sensor-file-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("events.ndjson")
    }

    #[tokio::test]
    async fn appends_and_reopens_after_rotation() {
        let path = temp("rotate");
        let mut out = FileOutput::new(FileConfig {
            path: path.clone(),
            mode: None,
            truncate: false,
        });
        out.try_write(b"one\n").await.unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let rotated = path.with_extension("1");
        std::fs::rename(&path, &rotated).unwrap();
        out.try_write(b"two\n").await.unwrap();
        out.close().await;
        out.try_write(b"three\n").await.unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[tokio::test]
    async fn truncate_empties_the_file_once_not_at_a_reopen() {
        let path = temp("truncate");
        std::fs::write(&path, "old\n").unwrap();
        let mut out = FileOutput::new(FileConfig {
            path: path.clone(),
            mode: None,
            truncate: true,
        });
        out.try_write(b"one\n").await.unwrap();
        out.close().await;
        out.try_write(b"two\n").await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[tokio::test]
    async fn an_unwritable_path_fails_each_attempt_without_panic() {
        let mut out = FileOutput::new(FileConfig {
            path: "/nonexistent-dir/x/events".into(),
            mode: None,
            truncate: false,
        });
        for _ in 0..2 {
            let err = out.try_write(b"x\n").await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        }
    }

    /// A 64 KiB tmpfs mounted for one test (root only), unmounted on drop.
    struct TinyDisk(std::path::PathBuf);

    impl TinyDisk {
        fn mount(name: &str) -> Option<Self> {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                return None;
            }
            let dir =
                std::env::temp_dir().join(format!("sensor-disk-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).ok()?;
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(Self(dir))
        }
    }

    impl Drop for TinyDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn a_full_disk_never_tears_a_record_and_the_batch_resumes_once_space_returns() {
        use crate::output::sink::{Record, Sink as _};
        let Some(disk) = TinyDisk::mount("full") else {
            eprintln!("skipped: needs root to mount a tiny tmpfs");
            return;
        };
        let path = disk.0.join("events.ndjson");
        // Leave two 4 KiB pages free.
        let filler = disk.0.join("filler");
        std::fs::write(&filler, vec![0u8; 56 * 1024]).unwrap();
        let lines: Vec<Vec<u8>> = (0..80)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(180)).into_bytes())
            .collect();
        let batch: Vec<Record<'_>> = lines
            .iter()
            .map(|l| Record {
                bytes: l,
                time: 0.0,
            })
            .collect();
        let mut out = FileOutput::new(FileConfig {
            path: path.clone(),
            mode: None,
            truncate: false,
        });
        assert!(
            out.write(&batch).await.is_err(),
            "15 KiB cannot fit in 8 KiB"
        );
        let partial = std::fs::read_to_string(&path).unwrap();
        assert!(partial.ends_with('\n') || partial.is_empty());
        let written: Vec<serde_json::Value> = partial
            .lines()
            .map(|l| serde_json::from_str(l).expect("only whole records on disk"))
            .collect();
        assert!(
            !written.is_empty() && written.len() < 80,
            "{}",
            written.len()
        );
        // Space returns: the same batch (the driver's retry) completes, nothing twice.
        std::fs::remove_file(&filler).unwrap();
        assert_eq!(out.write(&batch).await.unwrap(), 0);
        let all: Vec<u64> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(all, (0..80).collect::<Vec<u64>>());
    }
}
