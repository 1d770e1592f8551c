//! One running node process, owned by the launcher.
//!
//! Guarantees:
//!
//! * **Reaped by PID, always.** A [`Process`] owns its child; when it is dropped (on every path,
//!   panics included) a child still running gets its stdin closed, [`Program::grace`] to exit,
//!   then SIGKILL, and is waited for. Nothing is ever looked up or killed by name.
//! * **No stray signals.** A signal goes to the child's PID only while the child is not yet
//!   reaped, so the PID cannot have been reused by another process. (This needs the launcher not
//!   to set SIGCHLD to `SIG_IGN`, which would let the kernel reap children behind its back.)
//! * **Bounded waits.** Every wait takes a timeout; a wait for a line also ends as soon as the
//!   process closes its stdout, with an [`Error::Exited`] that carries its exit status.
//!
//! [`Program::grace`]: crate::Program::grace

use std::io::{BufReader, Read, Write};
use std::os::raw::c_int;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Printed};
use crate::output::{read_lines, Output, Pipe, Waited};
use crate::program::{Program, Stderr};
use crate::READY_PREFIX;

/// How long a wait that saw a process close its stdout waits for its exit status and the end of
/// its captured stderr, to report them.
const EXIT_STATUS_WAIT: Duration = Duration::from_millis(500);

/// The longest sleep between two polls of a process's exit.
const MAX_POLL: Duration = Duration::from_millis(10);

/// A child process running a node program: its pipes, its output and its exit.
///
/// Lines the child prints on stdout are read as they come and queued; [`Process::wait_ready`],
/// [`Process::wait_for_line`] and [`Process::next_line`] take them out. See the
/// [crate docs](crate) for the whole contract.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Set once the child is reaped; from then on its PID is never signalled.
    status: Option<ExitStatus>,
    output: Arc<Output>,
    index: usize,
    grace: Duration,
}

impl Process {
    /// Starts `program` as member `index` of `output`.
    pub(crate) fn spawn(
        program: &Program,
        output: Arc<Output>,
        index: usize,
    ) -> Result<Process, Error> {
        let stderr = match program.stderr {
            Stderr::Inherit => Stdio::inherit(),
            Stderr::Capture => Stdio::piped(),
            Stderr::Null => Stdio::null(),
        };
        let spawned = Command::new(&program.program)
            .args(&program.args)
            .envs(program.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(source) => {
                output.close(index); // no line will ever come from it
                let program = program.program.to_string_lossy().into_owned();
                return Err(Error::Spawn { program, source });
            }
        };
        let stdin = child.stdin.take();
        let name = format!("`{}` (pid {})", program.name, child.id());
        let mut readers: Vec<(Box<dyn Read + Send>, Pipe)> = Vec::with_capacity(2);
        if let Some(out) = child.stdout.take() {
            readers.push((Box::new(out), Pipe::Stdout));
        }
        if let Some(err) = child.stderr.take() {
            readers.push((Box::new(err), Pipe::Stderr));
        }
        for (pipe, which) in readers {
            if let Pipe::Stderr = which {
                output.reading_stderr(index, true);
            }
            let out = Arc::clone(&output);
            // Detached: the thread ends when the pipe reaches end of file, that is when the
            // child (and any process it shared the pipe with) is gone.
            let started = std::thread::Builder::new()
                .name(format!("launch-{}", child.id()))
                .spawn(move || read_lines(BufReader::new(pipe), out, index, which));
            if let Err(source) = started {
                let _ = child.kill();
                let _ = child.wait();
                output.close(index);
                return Err(Error::Io {
                    who: name,
                    action: "start a thread to read its output",
                    source,
                });
            }
        }
        Ok(Process {
            name: program.name.clone(),
            child,
            stdin,
            status: None,
            output,
            index,
            grace: program.grace,
        })
    }

    /// The program's name (see [`Program::name`](crate::Program::name)).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }

    pub(crate) fn who(&self) -> String {
        format!("`{}` (pid {})", self.name, self.pid())
    }

    fn io(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io { who: self.who(), action, source }
    }

    /// Writes `line` and a newline to the child's stdin, and flushes it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if stdin was closed ([`Process::close_stdin`]) or the child is gone.
    pub fn send_line(&mut self, line: &str) -> Result<(), Error> {
        let Some(stdin) = self.stdin.as_mut() else {
            let closed = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin is closed");
            return Err(self.io("write to its stdin")(closed));
        };
        let written = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        written.map_err(self.io("write to its stdin"))
    }

    /// Closes the child's stdin: a node program of this project exits when it sees end of file
    /// there ([`node::Launcher::wait_until_closed`](crate::node::Launcher::wait_until_closed)).
    /// Does not wait; see [`Process::stop`].
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the readiness line (`ready …`, as printed by
    /// [`node::announce_ready`](crate::node::announce_ready)) and returns what follows
    /// `ready ` (usually the address the node bound).
    ///
    /// # Errors
    ///
    /// As [`Process::wait_for_prefix`].
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<String, Error> {
        self.wait_for_prefix(READY_PREFIX, timeout)
    }

    /// Waits for a line starting with `prefix`, takes it, and returns what follows the prefix.
    /// Lines passed over stay queued.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if no such line comes within `timeout`; [`Error::Exited`] if the child
    /// closes its stdout first. Both name the program, what was awaited and what it printed.
    pub fn wait_for_prefix(&mut self, prefix: &str, timeout: Duration) -> Result<String, Error> {
        let awaited = format!("line starting with `{prefix}`");
        let line = self.wait(&mut |_, l| l.starts_with(prefix), timeout, awaited)?;
        Ok(line[prefix.len()..].to_owned())
    }

    /// Waits for a line for which `pred` holds and takes it out of the queue; lines passed
    /// over stay queued, in order, for [`Process::next_line`] and [`Process::take_lines`].
    ///
    /// # Errors
    ///
    /// As [`Process::wait_for_prefix`].
    pub fn wait_for_line(
        &mut self,
        mut pred: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, Error> {
        self.wait(&mut |_, l| pred(l), timeout, "matching line".into())
    }

    /// Takes the oldest queued line, waiting up to `timeout` for one.
    ///
    /// # Errors
    ///
    /// As [`Process::wait_for_prefix`].
    pub fn next_line(&mut self, timeout: Duration) -> Result<String, Error> {
        self.wait(&mut |_, _| true, timeout, "line".into())
    }

    /// Takes every queued line, oldest first, without waiting.
    pub fn take_lines(&mut self) -> Vec<String> {
        self.output.take_all(Some(self.index)).into_iter().map(|(_, l)| l).collect()
    }

    /// The last lines the child printed, on stdout (read or not) and on stderr (if captured).
    pub fn printed(&self) -> Printed {
        self.output.recent(self.index).into()
    }

    /// The last lines of the child's stderr, if it is captured ([`Stderr::Capture`]); empty
    /// otherwise.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.output.recent(self.index).stderr
    }

    fn wait(
        &mut self,
        pred: &mut dyn FnMut(usize, &str) -> bool,
        timeout: Duration,
        awaited: String,
    ) -> Result<String, Error> {
        let deadline = Instant::now() + timeout;
        match self.output.wait_for(Some(self.index), pred, deadline) {
            Waited::Found(_, line) => Ok(line),
            Waited::TimedOut => {
                Err(Error::Timeout { who: self.who(), awaited, timeout, printed: self.printed() })
            }
            Waited::Closed => Err(self.exited(awaited)),
        }
    }

    /// The error for a wait that saw the child close its stdout; waits a little for its
    /// status and the rest of its captured stderr.
    pub(crate) fn exited(&mut self, awaited: String) -> Error {
        let deadline = Instant::now() + EXIT_STATUS_WAIT;
        let status = self.wait_timeout(EXIT_STATUS_WAIT).ok().flatten();
        self.output.wait_all_read(self.index, deadline);
        Error::Exited { who: self.who(), awaited, status, printed: self.printed() }
    }

    /// Whether the child's stdout is closed (it exited, or closed it).
    pub fn stdout_closed(&self) -> bool {
        self.output.is_closed(self.index)
    }

    /// The child's exit status if it has exited (and reaps it then), without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if waiting fails.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(self.io("wait for it"))?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the child to exit (and reaps it); `None` if it still runs.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if waiting fails.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, Error> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(None);
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// The exit status, once the child has been reaped (by a wait or a stop); `None` before.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Sends signal `sig` (e.g. `libc::SIGSTOP` to freeze a node, `libc::SIGCONT` to thaw it)
    /// to the child's PID. Does nothing once the child is reaped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `kill(2)` fails (an invalid signal).
    pub fn signal(&mut self, sig: c_int) -> Result<(), Error> {
        if self.status.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|e| {
            self.io("signal it")(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        })?;
        // SAFETY: kill(2) takes plain integers and touches no memory of ours. The PID is our
        // own child's, not yet reaped (`status` is None and only this type reaps it), so it
        // still names that child (maybe a zombie) and no other process.
        if unsafe { libc::kill(pid, sig) } == 0 {
            Ok(())
        } else {
            Err(self.io("signal it")(std::io::Error::last_os_error()))
        }
    }

    /// Stops the child gracefully: closes its stdin, waits up to `grace` for it to exit, then
    /// SIGKILLs it; returns its exit status (reaped).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if waiting or killing fails.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus, Error> {
        self.close_stdin();
        match self.wait_timeout(grace)? {
            Some(s) => Ok(s),
            None => self.kill_9(),
        }
    }

    /// Sends SIGTERM, waits up to `grace` for the child to exit, then SIGKILLs it; returns its
    /// exit status (reaped).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if signalling, waiting or killing fails.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus, Error> {
        self.signal(libc::SIGTERM)?;
        match self.wait_timeout(grace)? {
            Some(s) => Ok(s),
            None => self.kill_9(),
        }
    }

    /// Kills the child at once with SIGKILL (no goodbye on its sockets: what a crash looks
    /// like to its peers) and reaps it; returns its exit status.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if killing or waiting fails.
    pub fn kill_9(&mut self) -> Result<ExitStatus, Error> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        // `Child::kill` sends SIGKILL to the PID of this not yet reaped child.
        self.child.kill().map_err(self.io("kill it"))?;
        let status = self.child.wait().map_err(self.io("wait for it"))?;
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for Process {
    /// Closes stdin, gives the child [`Program::grace`](crate::Program::grace) to exit, then
    /// SIGKILLs and reaps it.
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        self.close_stdin();
        if let Ok(Some(_)) = self.wait_timeout(self.grace) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
