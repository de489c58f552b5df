//! `file` output: appends one event per line to a file, creating it (mode 0600 by default), and
//! reopens it when asked (the agent asks on SIGHUP) so logrotate can move it away. A failed
//! write is retried by the driver (the file is reopened by path at the next attempt).

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
}

impl FileOutput {
    /// Prepares the output (default format); the file is opened on first write.
    #[must_use]
    pub const fn new(config: FileConfig) -> Self {
        Self {
            config,
            file: None,
            body: Body::Format(crate::format::Format::Default),
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
        let result = async {
            let file = self.open().await?;
            file.write_all(bytes).await?;
            file.flush().await
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
        let mut buf = Vec::new();
        for r in batch {
            buf.extend_from_slice(r.bytes);
            buf.push(b'\n');
        }
        self.try_write(&buf).await.map_err(WriteError::retry)?;
        Ok(0)
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
    async fn an_unwritable_path_fails_each_attempt_without_panic() {
        let mut out = FileOutput::new(FileConfig {
            path: "/nonexistent-dir/x/events".into(),
            mode: None,
        });
        for _ in 0..2 {
            let err = out.try_write(b"x\n").await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        }
    }
}
