//! `terminal` output: one event per line on standard output (or any writer, for tests), in the
//! configured format.

use bytes::BytesMut;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt as _},
    sync::mpsc,
};

use crate::{
    event::Event,
    format::{self, Format, FormatContext, FormatError},
};

/// The output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Writing failed (closed pipe, full disk).
    #[error("writing events failed: {0}")]
    Io(#[from] std::io::Error),
    /// An event could not be encoded.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// Writes every event received on `rx` to `writer`, one line each, until the channel closes;
/// flushes whenever the queue is momentarily empty. Returns the number of events written.
///
/// # Errors
/// [`OutputError`] when writing fails; the events not yet written are reported by the caller.
pub async fn run<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Event>,
    format: Format,
    ctx: FormatContext,
    mut writer: W,
) -> Result<u64, OutputError> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut written = 0u64;
    while let Some(event) = rx.recv().await {
        format::encode(format, &event, &ctx, &mut buf)?;
        written += 1;
        while let Ok(event) = rx.try_recv() {
            format::encode(format, &event, &ctx, &mut buf)?;
            written += 1;
            if buf.len() >= 256 * 1024 {
                break;
            }
        }
        writer.write_all(&buf).await?;
        buf.clear();
        writer.flush().await?;
    }
    writer.flush().await?;
    Ok(written)
}
