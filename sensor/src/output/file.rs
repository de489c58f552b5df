//! `file` output: appends one event per line to a file, creating it (mode 0600 by default), and
//! reopens it when asked (the agent asks on SIGHUP) so logrotate can move it away. A failed
//! write keeps the batch and retries once a second: nothing is lost while the queue has room.

use std::{os::unix::fs::OpenOptionsExt as _, path::PathBuf, time::Duration};

use bytes::BytesMut;
use serde::Deserialize;
use tokio::{fs::File, io::AsyncWriteExt as _};

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
#[derive(Debug)]
pub struct FileOutput {
    config: FileConfig,
    file: Option<File>,
}

impl FileOutput {
    /// Prepares the output; the file is opened on first write.
    #[must_use]
    pub const fn new(config: FileConfig) -> Self {
        Self { config, file: None }
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
    pub async fn reopen(&mut self) {
        if let Some(mut file) = self.file.take() {
            let _ = file.flush().await;
        }
    }

    /// Appends `batch`, retrying once a second until it is written or `give_up` resolves.
    /// Returns how many retries it took, or the last error if it gave up.
    pub async fn write(
        &mut self,
        batch: &BytesMut,
        name: &str,
        give_up: &tokio_util::sync::CancellationToken,
    ) -> Result<u64, std::io::Error> {
        let mut retries = 0u64;
        loop {
            let result = async {
                let file = self.open().await?;
                file.write_all(batch).await?;
                file.flush().await
            }
            .await;
            match result {
                Ok(()) => return Ok(retries),
                Err(err) => {
                    self.file = None;
                    if retries == 0 {
                        tracing::warn!(output = name, path = %self.config.path.display(), error = %err, "Writing events failed; retrying every second.");
                    }
                    retries += 1;
                    tokio::select! {
                        () = give_up.cancelled() => return Err(err),
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use bytes::BytesMut;
    use tokio_util::sync::CancellationToken;

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
        let never = CancellationToken::new();
        out.write(&BytesMut::from(&b"one\n"[..]), "t", &never)
            .await
            .unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let rotated = path.with_extension("1");
        std::fs::rename(&path, &rotated).unwrap();
        out.write(&BytesMut::from(&b"two\n"[..]), "t", &never)
            .await
            .unwrap();
        out.reopen().await;
        out.write(&BytesMut::from(&b"three\n"[..]), "t", &never)
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        std::fs::remove_dir_all(path.parent().unwrap()).ok();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unwritable_path_is_retried_then_given_up_without_panic() {
        let mut out = FileOutput::new(FileConfig {
            path: "/nonexistent-dir/x/events".into(),
            mode: None,
        });
        let give_up = CancellationToken::new();
        let trigger = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            trigger.cancel();
        });
        let err = out
            .write(&BytesMut::from(&b"x\n"[..]), "t", &give_up)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
