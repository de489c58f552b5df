//! `terminal` output: one event per line on standard output, in the output's format.

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use super::OutputError;

/// Writes already-encoded lines to `writer`, flushing after each batch.
///
/// # Errors
/// [`OutputError::Io`] when the writer fails (e.g. the pipe closed).
pub async fn write<W: AsyncWrite + Unpin>(
    writer: &mut W,
    batch: &BytesMut,
) -> Result<(), OutputError> {
    writer.write_all(batch).await?;
    writer.flush().await?;
    Ok(())
}
