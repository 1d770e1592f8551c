//! A group of node processes with one merged stream of lines, stopped together.
//!
//! Guarantees, on top of each [`Process`]'s:
//!
//! * **One stream, in order.** Every member's stdout lines go into one queue, tagged with the
//!   member's index; [`Cluster::next_line`] hands them out in the order they were read, and a
//!   member's own waits ([`Process::wait_for_line`] through `cluster[i]`) still see only its
//!   lines.
//! * **Stopped together, by PID.** [`Cluster::stop_all`] and dropping the cluster close every
//!   member's stdin first, wait for all of them against one deadline (so N nodes take one grace
//!   period, not N), then SIGKILL the ones still running and reap every one.
//! * **Indices are stable.** A member keeps its index after it exits or is killed; a node
//!   started again (a new incarnation, in a chaos test) is a new member with a new index.

use std::ops::{Index, IndexMut};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Printed};
use crate::output::{Output, Waited};
use crate::process::Process;
use crate::program::Program;

/// Several node processes sharing one queue of lines; all stopped when it is dropped.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use selfman_launch::{Cluster, Program};
///
/// # fn main() -> Result<(), selfman_launch::Error> {
/// let mut cluster = Cluster::new();
/// for port in [4001, 4002, 4003] {
///     let script = format!("echo ready 127.0.0.1:{port}; exec cat >/dev/null");
///     cluster.spawn(&Program::new("sh").args(["-c", &script]))?;
/// }
/// // Started all at once; now wait until each serves.
/// for i in 0..cluster.len() {
///     let addr = cluster[i].wait_ready(Duration::from_secs(10))?;
///     println!("node {i}: {addr} (pid {})", cluster[i].pid());
/// }
/// for status in cluster.stop_all(Duration::from_secs(3))? {
///     assert!(status.success());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Cluster {
    output: Arc<Output>,
    members: Vec<Process>,
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster::new()
    }
}

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Cluster {
        Cluster { output: Output::new(), members: Vec::new() }
    }

    /// Starts a process of `program` as a new member; returns its index. Does not wait for its
    /// readiness line (start every node first, then wait for each: they boot in parallel).
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the program cannot be started.
    pub fn spawn(&mut self, program: &Program) -> Result<usize, Error> {
        let index = self.output.join();
        debug_assert_eq!(index, self.members.len(), "members join the queue only here");
        self.members.push(Process::spawn(program, Arc::clone(&self.output), index)?);
        Ok(index)
    }

    /// How many members (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether it has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members, in index order.
    pub fn iter(&self) -> std::slice::Iter<'_, Process> {
        self.members.iter()
    }

    /// The members, in index order, mutably.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Process> {
        self.members.iter_mut()
    }

    /// The PIDs of the members, in index order.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(Process::pid).collect()
    }

    /// Takes the oldest queued line of any member, with the member's index, waiting up to
    /// `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if no line comes within `timeout`; [`Error::Exited`] if every member
    /// has closed its stdout and no line is left.
    pub fn next_line(&mut self, timeout: Duration) -> Result<(usize, String), Error> {
        self.wait_for_line(|_, _| true, timeout)
    }

    /// Waits for a line of any member for which `pred(member, line)` holds and takes it out of
    /// the queue; lines passed over stay queued, in order.
    ///
    /// # Errors
    ///
    /// As [`Cluster::next_line`].
    pub fn wait_for_line(
        &mut self,
        mut pred: impl FnMut(usize, &str) -> bool,
        timeout: Duration,
    ) -> Result<(usize, String), Error> {
        let deadline = Instant::now() + timeout;
        match self.output.wait_for(None, &mut pred, deadline) {
            Waited::Found(from, line) => Ok((from, line)),
            Waited::TimedOut => Err(Error::Timeout {
                who: self.who(),
                awaited: "line".into(),
                timeout,
                printed: self.printed(),
            }),
            Waited::Closed => Err(Error::Exited {
                who: self.who(),
                awaited: "line".into(),
                status: None,
                printed: self.printed(),
            }),
        }
    }

    fn who(&self) -> String {
        let pids: Vec<String> = self.members.iter().map(|p| p.pid().to_string()).collect();
        format!("the {} processes of the cluster (pids {})", self.len(), pids.join(", "))
    }

    /// The last lines of every member, one after the other.
    fn printed(&self) -> Printed {
        let mut all = Printed::default();
        for p in &self.members {
            let one = p.printed();
            let tag = |l: String| format!("{}: {l}", p.index());
            all.stdout.extend(one.stdout.into_iter().map(tag));
            all.stderr.extend(one.stderr.into_iter().map(tag));
            all.dropped += one.dropped;
        }
        all
    }

    /// Takes every queued line of every member, oldest first, without waiting.
    pub fn take_lines(&mut self) -> Vec<(usize, String)> {
        self.output.take_all(None)
    }

    /// Stops every member: closes all stdins, waits up to `grace` (one deadline for all) for
    /// them to exit, SIGKILLs those still running, and reaps every one. Returns their exit
    /// statuses in index order (members that had already exited included).
    ///
    /// # Errors
    ///
    /// The first [`Error::Io`] met (killing or reaping a member failed); the other members are
    /// still stopped, and a member not reaped is tried again when the cluster is dropped.
    pub fn stop_all(&mut self, grace: Duration) -> Result<Vec<ExitStatus>, Error> {
        for p in &mut self.members {
            p.close_stdin();
        }
        let deadline = Instant::now() + grace;
        let mut first_error = None;
        let mut statuses = Vec::with_capacity(self.members.len());
        for p in &mut self.members {
            let left = deadline.saturating_duration_since(Instant::now());
            let status = match p.wait_timeout(left) {
                Ok(Some(s)) => Ok(s),
                Ok(None) | Err(_) => p.kill_9(),
            };
            match status {
                Ok(s) => statuses.push(s),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(statuses),
        }
    }
}

impl Index<usize> for Cluster {
    type Output = Process;

    fn index(&self, i: usize) -> &Process {
        &self.members[i]
    }
}

impl IndexMut<usize> for Cluster {
    fn index_mut(&mut self, i: usize) -> &mut Process {
        &mut self.members[i]
    }
}

impl Drop for Cluster {
    /// [`Cluster::stop_all`] with the longest [`Program::grace`] of the members.
    fn drop(&mut self) {
        let grace = self.members.iter().map(Process::grace).max().unwrap_or_default();
        let _ = self.stop_all(grace);
    }
}
