//! What a handler returns, and how its failures are classified for supervision.
//!
//! Every event handler returns [`Handled`]. `Ok(())` means the event was handled. An error carries
//! a [`Severity`]:
//!
//! * [`Severity::Benign`] — logged; the component keeps handling events.
//! * [`Severity::Recoverable`] — the component becomes *faulty*: it stops handling events (they
//!   stay queued) and a fault is reported to its parent, whose policy decides what happens.
//! * [`Severity::Unrecoverable`] — as recoverable, but the supervisor must not restart or resume
//!   it: the subtree is destroyed.
//!
//! A panic inside a handler is caught by the runtime and treated as recoverable.
//!
//! Any `std::error::Error` converts into a recoverable [`HandlerError`], so `?` works in handlers.

use std::fmt;

/// The result type of every event handler.
pub type Handled = Result<(), HandlerError>;

/// How serious a handler failure is; supervision acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Severity {
    /// Logged and otherwise ignored: the component keeps running.
    Benign,
    /// The component is marked faulty and its parent's policy decides (restart, resume, …).
    Recoverable,
    /// The component's subtree is destroyed; it must not be restarted or resumed.
    Unrecoverable,
}

/// A failure returned by a handler, classified by [`Severity`].
///
/// `HandlerError` deliberately does not implement `std::error::Error`, so that every error type
/// can convert into it with `?` (as a [`Severity::Recoverable`] failure).
pub struct HandlerError {
    severity: Severity,
    error: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl HandlerError {
    /// A failure with the given severity.
    pub fn new(
        severity: Severity,
        error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self { severity, error: error.into() }
    }

    /// A benign failure: logged, and the component keeps running.
    pub fn benign(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::new(Severity::Benign, error)
    }

    /// A recoverable failure: the component becomes faulty and its supervisor decides.
    pub fn recoverable(
        error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::new(Severity::Recoverable, error)
    }

    /// An unrecoverable failure: the component's subtree is destroyed.
    pub fn unrecoverable(
        error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::new(Severity::Unrecoverable, error)
    }

    /// How serious the failure is.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::recoverable(error)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("severity", &self.severity)
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.severity, self.error)
    }
}
