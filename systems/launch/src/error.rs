//! The crate's one error type.
//!
//! Every error names the process it is about (its program's name and its PID) and, when it is
//! about a wait, what was awaited, how long, and the last lines the process printed on stdout
//! (and on stderr, when captured), so a failed start explains itself.

use std::fmt;
use std::process::ExitStatus;
use std::time::Duration;

use crate::output::Recent;

/// What went wrong starting, talking to, waiting for or stopping a node process.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The program could not be started.
    Spawn {
        /// The program's name.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The awaited line did not come within the timeout.
    Timeout {
        /// The process (`name (pid N)`) or group waited on.
        who: String,
        /// What was awaited, as a noun: ``line starting with `ready ` ``, `matching line`.
        awaited: String,
        /// How long.
        timeout: Duration,
        /// What the process printed lately.
        printed: Printed,
    },
    /// The process closed its stdout (it exited) before printing the awaited line.
    Exited {
        /// The process (`name (pid N)`) or group waited on.
        who: String,
        /// What was awaited.
        awaited: String,
        /// Its exit status, if it was reaped by then.
        status: Option<ExitStatus>,
        /// What the process printed lately.
        printed: Printed,
    },
    /// Writing to, signalling or waiting for the process failed.
    Io {
        /// The process (`name (pid N)`).
        who: String,
        /// What was being done, e.g. `write to stdin`.
        action: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// The last lines a process printed, attached to a wait's error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Printed {
    /// Its last stdout lines (at most [`RECENT_LINES`](crate::RECENT_LINES)), oldest first.
    pub stdout: Vec<String>,
    /// Its last stderr lines, if stderr is captured ([`Stderr::Capture`](crate::Stderr)).
    pub stderr: Vec<String>,
    /// Unread lines dropped because nobody read them (see
    /// [`KEPT_BYTES_PER_PROCESS`](crate::KEPT_BYTES_PER_PROCESS)).
    pub dropped: u64,
}

impl From<Recent> for Printed {
    fn from(r: Recent) -> Printed {
        Printed { stdout: r.stdout, stderr: r.stderr, dropped: r.dropped }
    }
}

impl fmt::Display for Printed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.stdout.is_empty() {
            write!(f, "it printed nothing on stdout")?;
        } else {
            write!(f, "its last stdout lines: {:?}", self.stdout)?;
        }
        if !self.stderr.is_empty() {
            write!(f, "; its last stderr lines: {:?}", self.stderr)?;
        }
        if self.dropped > 0 {
            write!(f, " ({} unread lines dropped)", self.dropped)?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spawn { program, source } => write!(f, "cannot start `{program}`: {source}"),
            Error::Timeout { who, awaited, timeout, printed } => {
                write!(f, "{who} printed no {awaited} within {timeout:?}; {printed}")
            }
            Error::Exited { who, awaited, status, printed } => {
                write!(f, "{who} exited before printing any {awaited}")?;
                if let Some(s) = status {
                    write!(f, " ({s})")?;
                }
                write!(f, "; {printed}")
            }
            Error::Io { who, action, source } => write!(f, "{who}: cannot {action}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spawn { source, .. } | Error::Io { source, .. } => Some(source),
            Error::Timeout { .. } | Error::Exited { .. } => None,
        }
    }
}
