//! Shared by the launch tests: the test node program, and whether a PID still names the process
//! it named.

#![allow(dead_code)] // each test file uses part of it

use std::time::{Duration, Instant};

use selfman_launch::Program;

/// Generous bound on anything the test node does by itself (start, exit after stdin closes).
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// The crate's test node program with `args` (see `src/bin/launch-test-node.rs`).
pub(crate) fn test_node(args: &[&str]) -> Program {
    Program::new(env!("CARGO_BIN_EXE_launch-test-node")).args(args)
}

/// A process as it was seen once: its PID and its start time, so that a PID reused by another
/// process later is not mistaken for it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen {
    pub(crate) pid: u32,
    start: u64,
}

/// The state letter and start time (in clock ticks since boot) of `pid`, from `/proc`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, the last `)` ends it.
    let rest = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // After comm: state is field 3 of the line, starttime field 22.
    Some((fields[0].chars().next()?, fields[22 - 3].parse().ok()?))
}

impl Seen {
    /// `pid` as it is now.
    ///
    /// # Panics
    ///
    /// If `pid` names no process.
    pub(crate) fn now(pid: u32) -> Seen {
        let (_, start) = stat(pid).unwrap_or_else(|| panic!("no process {pid}"));
        Seen { pid, start }
    }

    /// Whether that process still exists, running or as an unreaped zombie.
    pub(crate) fn exists(&self) -> bool {
        stat(self.pid).is_some_and(|(_, start)| start == self.start)
    }

    /// Whether that process exists and is a zombie (exited, not reaped).
    pub(crate) fn is_zombie(&self) -> bool {
        stat(self.pid).is_some_and(|(state, start)| start == self.start && state == 'Z')
    }
}

/// Asserts that the process is gone for good: no `/proc` entry of it, and (unless the PID was
/// already reused) `kill(pid, 0)` fails with ESRCH.
pub(crate) fn assert_reaped(p: Seen) {
    assert!(!p.exists(), "process {} is still there (zombie: {})", p.pid, p.is_zombie());
    if stat(p.pid).is_none() {
        let pid = libc::pid_t::try_from(p.pid).unwrap();
        // SAFETY: kill(2) with signal 0 only checks that the PID exists; it sends nothing.
        let r = unsafe { libc::kill(pid, 0) };
        let err = std::io::Error::last_os_error();
        assert!(r == -1 && err.raw_os_error() == Some(libc::ESRCH), "kill({pid}, 0): {r} {err}");
    }
}

/// The PIDs of this test process's children (running or zombies), from `/proc`.
pub(crate) fn children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut kids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = s.rfind(')') else { continue };
        let ppid = s[close + 2..].split(' ').nth(1);
        if ppid == Some(me.as_str()) {
            kids.push(pid);
        }
    }
    kids
}

/// Runs `f` and asserts it took less than `bound`.
pub(crate) fn within<T>(bound: Duration, what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < bound, "{what} took {took:?}, more than {bound:?}");
    out
}
