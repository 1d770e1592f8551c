//! Node programs as child processes: start them, wait until they serve, read what they print,
//! stop them, and never leave one behind.
//!
//! Both sides of one small contract between a **launcher** (a test, a benchmark, a cluster
//! launcher) and a **node program** it runs:
//!
//! 1. The launcher starts the node with stdin and stdout as pipes ([`Program::spawn`],
//!    [`Cluster::spawn`]).
//! 2. The node prints one readiness line, `ready <address>` ([`node::announce_ready`]), once it
//!    serves; the launcher waits for it with a timeout ([`Process::wait_ready`]) and gets the
//!    address (a node may bind port 0).
//! 3. The launcher may send lines on stdin ([`Process::send_line`], read by
//!    [`node::Launcher::read_line`]) and reads the node's later lines
//!    ([`Process::wait_for_line`], [`Process::next_line`], [`Cluster::next_line`]).
//! 4. The node runs until its stdin closes ([`node::Launcher::wait_until_closed`]), then exits.
//!    The launcher stops it by closing stdin ([`Process::stop`]), by SIGTERM
//!    ([`Process::terminate`]), both with a grace period before SIGKILL, or at once with SIGKILL
//!    ([`Process::kill_9`], for chaos tests).
//!
//! # Guarantees
//!
//! * **Every process started is reaped by its PID.** Dropping a [`Process`] (or a [`Cluster`])
//!   closes its stdin, waits the program's grace period, SIGKILLs it if it still runs, and waits
//!   for it. Nothing is killed by name; a PID is signalled only while its child is unreaped, so
//!   it cannot name another process.
//! * **A node never outlives its launcher** if it follows step 4: a launcher that dies, even by
//!   SIGKILL, closes the node's stdin with it.
//! * **A child never blocks on a full pipe.** Its stdout (and its stderr if captured) is read
//!   by a thread as it comes; unread lines are kept up to a bound
//!   ([`KEPT_BYTES_PER_PROCESS`]), the oldest dropped past it.
//! * **Every wait is bounded** by the timeout it takes, and ends early, with
//!   [`Error::Exited`], when the process exits first. Errors name the program, its PID, what was
//!   awaited, the timeout, and its last lines ([`Printed`]).
//!
//! stderr is passed through by default ([`Stderr::Inherit`]): a node's log lines and error
//! messages appear where the person or test running the launcher looks. [`Stderr::Capture`]
//! keeps its last lines instead, for errors and [`Process::stderr_lines`].
//!
//! Unix only (signals, `kill(2)`). The launcher must not set SIGCHLD to `SIG_IGN`.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use selfman_launch::Program;
//!
//! # fn main() -> Result<(), selfman_launch::Error> {
//! // Any program that prints `ready …` and exits when stdin closes is a node.
//! let node = Program::new("sh")
//!     .args(["-c", "echo booting; echo ready 127.0.0.1:4000; exec cat >/dev/null"]);
//! let mut p = node.spawn()?;
//! let addr = p.wait_ready(Duration::from_secs(10))?;
//! assert_eq!(addr, "127.0.0.1:4000");
//! assert_eq!(p.take_lines(), ["booting"]); // passed over, still queued
//! let status = p.stop(Duration::from_secs(3))?;
//! assert!(status.success());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![cfg(unix)]

mod cluster;
mod error;
pub mod node;
mod output;
mod process;
mod program;

pub use cluster::Cluster;
pub use error::{Error, Printed};
pub use output::{KEPT_BYTES_PER_PROCESS, MAX_LINE_BYTES, RECENT_LINES};
pub use process::Process;
pub use program::{Program, Stderr, DEFAULT_GRACE};

/// The user's chapter, `docs/launch.md`, whose code blocks run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/launch.md")]
pub struct LaunchChapter;

/// The readiness line's first word and its space: a node prints `ready <address>`.
pub const READY_PREFIX: &str = "ready ";
