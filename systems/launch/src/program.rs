//! What to run: a node program, its arguments and environment, what becomes of its stderr, and
//! how long it gets to stop by itself.
//!
//! A [`Program`] is a description only; [`Program::spawn`] (or [`Cluster::spawn`]) starts a
//! process of it, as many times as wanted. The child's stdin and stdout are always pipes to
//! the launcher: stdout carries the node's lines (its readiness line first), stdin stays open
//! for as long as the launcher wants the node to run.
//!
//! [`Cluster::spawn`]: crate::Cluster::spawn

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::output::Output;
use crate::process::Process;

/// How long a dropped process is given to exit by itself (after its stdin is closed) before it
/// is killed with SIGKILL, unless [`Program::grace`] says otherwise. A node of this
/// project exits within milliseconds of its stdin closing; 3 s leaves room for a loaded machine.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);

/// What becomes of a child's stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stderr {
    /// Passed through to the launcher's own stderr (the default): a node's log and error
    /// messages show up where a person running the launcher, or a test, looks.
    #[default]
    Inherit,
    /// Read by a thread of the launcher (so the child never blocks on it); its last lines are
    /// kept, returned by [`Process::stderr_lines`] and quoted in wait errors.
    Capture,
    /// Discarded.
    Null,
}

/// A node program to start: program, arguments, environment.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use selfman_launch::Program;
///
/// # fn main() -> Result<(), selfman_launch::Error> {
/// // A stand-in node: announces an address, then runs until its stdin closes.
/// let node = Program::new("sh").args(["-c", "echo ready 127.0.0.1:4000; exec cat >/dev/null"]);
/// let mut p = node.spawn()?;
/// assert_eq!(p.wait_ready(Duration::from_secs(10))?, "127.0.0.1:4000");
/// let status = p.stop(Duration::from_secs(3))?; // closes its stdin; it exits by itself
/// assert!(status.success());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Program {
    pub(crate) program: OsString,
    pub(crate) name: String,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) stderr: Stderr,
    pub(crate) grace: Duration,
}

impl Program {
    /// A program to run, found like [`std::process::Command::new`] finds it. Its name in
    /// messages is its file name (see [`Program::name`]).
    pub fn new(program: impl AsRef<OsStr>) -> Program {
        let program = program.as_ref().to_owned();
        let name =
            Path::new(&program).file_name().unwrap_or(&program).to_string_lossy().into_owned();
        Program {
            program,
            name,
            args: Vec::new(),
            env: Vec::new(),
            stderr: Stderr::default(),
            grace: DEFAULT_GRACE,
        }
    }

    /// The name errors call its processes by, e.g. `node 3`.
    pub fn name(mut self, name: impl Into<String>) -> Program {
        self.name = name.into();
        self
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Program {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Program
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child (which otherwise inherits the launcher's).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Program {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// What becomes of the child's stderr (default [`Stderr::Inherit`]).
    pub fn stderr(mut self, stderr: Stderr) -> Program {
        self.stderr = stderr;
        self
    }

    /// How long a process gets to exit by itself, after its stdin is closed, when it is dropped
    /// before SIGKILL (default [`DEFAULT_GRACE`]). Explicit stops take their own grace period.
    pub fn grace(mut self, grace: Duration) -> Program {
        self.grace = grace;
        self
    }

    /// Starts a process of this program, with its own line queue.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the program cannot be started (not found, not executable, …).
    pub fn spawn(&self) -> Result<Process, Error> {
        let output = Output::new();
        let index = output.join();
        Process::spawn(self, output, index)
    }
}
