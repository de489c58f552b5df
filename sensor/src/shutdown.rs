//! Shutdown: one token everyone watches, triggered by SIGINT or SIGTERM.

pub use tokio_util::sync::CancellationToken;

/// Resolves on the first SIGINT or SIGTERM.
///
/// # Errors
/// The signal handlers could not be installed.
pub async fn signals() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "Shutting down."),
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "Shutting down."),
    }
    Ok(())
}
