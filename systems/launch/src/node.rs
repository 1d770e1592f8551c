//! The node program's side of the contract: announce readiness on stdout, take instructions on
//! stdin, exit when stdin closes.
//!
//! Guarantees:
//!
//! * [`announce_ready`] prints exactly one line, `ready <what>`, and flushes it before it
//!   returns, so a launcher waiting for it ([`Process::wait_ready`]) sees it at once.
//! * [`Launcher::wait_until_closed`] returns when stdin reaches end of file or fails, that is
//!   when the launcher closed it, stopped the node, or died (a killed launcher's pipes close
//!   too). A node that returns from its `main` then cannot outlive its launcher.
//!
//! A node program's `main` reads:
//!
//! ```no_run
//! # fn start_serving() -> std::net::SocketAddr { "127.0.0.1:1".parse().unwrap() }
//! # fn main() -> std::io::Result<()> {
//! let addr = start_serving(); // bind (port 0 is fine), start the runtime …
//! let mut launcher = selfman_launch::node::announce_ready(addr)?;
//! // Optionally: instructions from the launcher, e.g. the group once every node is up.
//! let group = launcher.read_line()?;
//! launcher.say("started")?;
//! launcher.wait_until_closed(); // serve until the launcher closes stdin
//! // … shut down and return.
//! # Ok(())
//! # }
//! ```
//!
//! [`Process::wait_ready`]: crate::Process::wait_ready

use std::fmt::Display;
use std::io::{self, BufRead, Write};

use crate::READY_PREFIX;

/// Prints the readiness line `ready <what>` (usually the address the node bound) on stdout and
/// flushes it; returns the node's end of the launcher's pipes.
///
/// # Errors
///
/// If stdout cannot be written (the launcher is gone).
pub fn announce_ready(what: impl Display) -> io::Result<Launcher> {
    let mut launcher = Launcher { _private: () };
    launcher.say(format_args!("{READY_PREFIX}{what}"))?;
    Ok(launcher)
}

/// The node's end of the pipes to its launcher: stdin for instructions, stdout for lines.
#[derive(Debug)]
pub struct Launcher {
    _private: (),
}

impl Launcher {
    /// Reads one line of instructions from stdin, without its newline; `None` if stdin is
    /// closed.
    ///
    /// # Errors
    ///
    /// If reading stdin fails, or the line is not UTF-8.
    pub fn read_line(&mut self) -> io::Result<Option<String>> {
        let mut line = String::new();
        if io::stdin().read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line.ends_with('\n') {
            line.pop();
            if line.ends_with('\r') {
                line.pop();
            }
        }
        Ok(Some(line))
    }

    /// Prints one line on stdout and flushes it.
    ///
    /// # Errors
    ///
    /// If stdout cannot be written (the launcher is gone).
    pub fn say(&mut self, line: impl Display) -> io::Result<()> {
        let mut out = io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()
    }

    /// Blocks until stdin is closed (end of file, or a read error), discarding whatever else
    /// the launcher sends. The node then shuts down and exits.
    pub fn wait_until_closed(self) {
        let mut stdin = io::stdin().lock();
        loop {
            match stdin.fill_buf() {
                Ok([]) => return,
                Ok(buf) => {
                    let n = buf.len();
                    stdin.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}
