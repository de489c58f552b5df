//! `terminal` output: one event per line on standard output, in the output's format.

use tokio::io::{AsyncWriteExt as _, Stdout};

use crate::output::sink::{Body, Record, Sink, WriteError};

/// Standard output as a sink.
pub struct Terminal {
    out: Stdout,
    body: Body,
}

impl Terminal {
    /// Writes to this process's standard output, encoding as `body` says.
    #[must_use]
    pub fn new(body: Body) -> Self {
        Self {
            out: tokio::io::stdout(),
            body,
        }
    }
}

#[async_trait::async_trait]
impl Sink for Terminal {
    fn body(&self) -> &Body {
        &self.body
    }

    fn describe(&self) -> String {
        "standard output".to_owned()
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
        // A closed pipe does not come back: not retried.
        self.out
            .write_all(&buf)
            .await
            .map_err(|e| WriteError::Fatal(e.to_string()))?;
        self.out
            .flush()
            .await
            .map_err(|e| WriteError::Fatal(e.to_string()))?;
        Ok(0)
    }
}
