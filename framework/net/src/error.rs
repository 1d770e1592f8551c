//! [`NetError`]: what can go wrong starting or configuring the transport.

/// Errors of `selfman-net`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A configuration value is invalid (see [`NetConfig::validate`](crate::NetConfig::validate)).
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// Binding the listener, creating the poller or spawning the I/O thread failed.
    #[error("network i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The component system refused (e.g. it is shut down).
    #[error(transparent)]
    System(#[from] selfman_core::Error),
}
