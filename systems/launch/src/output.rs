//! What the processes print, read off their pipes as it comes and kept for the caller.
//!
//! Guarantees:
//!
//! * **A child never blocks on its stdout.** One reader thread per pipe reads every byte as soon
//!   as the child writes it, whether or not the caller ever asks for a line.
//! * **Bounded memory.** A line is cut at [`MAX_LINE_BYTES`] (the rest up to its newline is
//!   skipped); the lines waiting for the caller hold at most [`KEPT_BYTES_PER_PROCESS`] per process
//!   of the queue, the oldest dropped first (and counted, so an error can say so). The recent lines
//!   kept for error messages are at most [`RECENT_LINES`] per process and stream.
//! * **Order.** Lines of one process are handed out in the order it printed them; a queue shared
//!   by several processes (a [`Cluster`](crate::Cluster)) hands out lines in the order they were
//!   read.
//! * **Waits are bounded.** Every wait takes a deadline; it also ends as soon as the awaited
//!   process closes its stdout (it exited), so an early exit is reported at once, not at the
//!   timeout.

use std::collections::VecDeque;
use std::io::{BufRead, ErrorKind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Longest line kept, in bytes; a longer line is cut there. Node programs print short
/// protocol lines; the bound keeps a runaway child (a line without a newline) from growing a
/// buffer without end.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Bytes of unread stdout lines kept per process before the oldest are dropped. A launcher
/// that never reads the lines of a chatty node (a long `cluster` run) must not grow without
/// end; 16 MiB is far more than any test or launcher leaves unread between two reads.
pub const KEPT_BYTES_PER_PROCESS: usize = 16 << 20;

/// Lines of stdout (and of captured stderr) remembered per process for error messages, read or
/// not.
pub const RECENT_LINES: usize = 20;

/// One line read from a process.
#[derive(Debug)]
struct Line {
    /// Position in the order of reading; strictly increasing along the queue.
    seq: u64,
    /// Which member of the queue printed it.
    from: usize,
    text: String,
}

/// What is known about one member's pipes.
#[derive(Debug, Default)]
struct Member {
    /// Its stdout reached end of file (or failed): no more lines will come.
    closed: bool,
    /// A thread is reading its stderr, which has not reached end of file yet.
    reading_stderr: bool,
    /// Unread lines dropped because the queue was full.
    dropped: u64,
    /// Its last stdout lines, read by the caller or not.
    recent: VecDeque<String>,
    /// Its last stderr lines, when stderr is captured.
    recent_stderr: VecDeque<String>,
}

#[derive(Debug, Default)]
struct State {
    lines: VecDeque<Line>,
    bytes: usize,
    next_seq: u64,
    members: Vec<Member>,
}

/// The outcome of a wait for a line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The first matching line, and which member printed it.
    Found(usize, String),
    /// The deadline passed first.
    TimedOut,
    /// The awaited member (or every member) closed its stdout first.
    Closed,
}

/// What a member printed lately, for an error message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recent {
    pub(crate) stdout: Vec<String>,
    pub(crate) stderr: Vec<String>,
    pub(crate) dropped: u64,
}

/// A queue of lines shared by the reader threads of one or more processes and their owner.
#[derive(Debug, Default)]
pub(crate) struct Output {
    state: Mutex<State>,
    changed: Condvar,
}

fn push_recent(recent: &mut VecDeque<String>, line: &str) {
    if recent.len() == RECENT_LINES {
        recent.pop_front();
    }
    recent.push_back(line.to_owned());
}

impl Output {
    pub(crate) fn new() -> Arc<Output> {
        Arc::new(Output::default())
    }

    // The state is only ever changed by short, panic-free sections, so a poisoned lock (a
    // panicking predicate of a caller) still guards a consistent state.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a member; returns its index.
    pub(crate) fn join(&self) -> usize {
        let mut st = self.lock();
        st.members.push(Member::default());
        st.members.len() - 1
    }

    fn push(&self, from: usize, text: String) {
        let mut st = self.lock();
        push_recent(&mut st.members[from].recent, &text);
        let seq = st.next_seq;
        st.next_seq += 1;
        st.bytes += text.len();
        st.lines.push_back(Line { seq, from, text });
        let cap = KEPT_BYTES_PER_PROCESS.saturating_mul(st.members.len());
        while st.bytes > cap {
            let Some(old) = st.lines.pop_front() else { break };
            st.bytes -= old.text.len();
            st.members[old.from].dropped += 1;
        }
        drop(st);
        self.changed.notify_all();
    }

    fn push_stderr(&self, from: usize, text: &str) {
        push_recent(&mut self.lock().members[from].recent_stderr, text);
    }

    pub(crate) fn close(&self, from: usize) {
        self.lock().members[from].closed = true;
        self.changed.notify_all();
    }

    /// Records that a thread starts reading `from`'s stderr.
    pub(crate) fn reading_stderr(&self, from: usize, reading: bool) {
        self.lock().members[from].reading_stderr = reading;
        self.changed.notify_all();
    }

    /// Waits until every pipe of `from` that is read has reached end of file, or `deadline`:
    /// after that, what it printed is all there.
    pub(crate) fn wait_all_read(&self, from: usize, deadline: Instant) {
        let mut st = self.lock();
        while !st.members[from].closed || st.members[from].reading_stderr {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return };
            st = self.changed.wait_timeout(st, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Waits until a line of `member` (of any member if `None`) for which `pred(from, line)`
    /// holds is queued, and takes it out of the queue; the lines it passes over stay queued, in
    /// order.
    pub(crate) fn wait_for(
        &self,
        member: Option<usize>,
        pred: &mut dyn FnMut(usize, &str) -> bool,
        deadline: Instant,
    ) -> Waited {
        let mut st = self.lock();
        // Lines before `after` were already offered to `pred`.
        let mut after = 0;
        loop {
            let start = st.lines.partition_point(|l| l.seq < after);
            let found = (start..st.lines.len()).find(|&i| {
                let l = &st.lines[i];
                member.is_none_or(|m| l.from == m) && pred(l.from, &l.text)
            });
            if let Some(line) = found.and_then(|i| st.lines.remove(i)) {
                st.bytes -= line.text.len();
                return Waited::Found(line.from, line.text);
            }
            after = st.next_seq;
            let closed = match member {
                Some(m) => st.members[m].closed,
                None => st.members.iter().all(|m| m.closed),
            };
            if closed {
                return Waited::Closed;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Waited::TimedOut;
            };
            st = self.changed.wait_timeout(st, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Takes every queued line of `member` (of every member if `None`), oldest first.
    pub(crate) fn take_all(&self, member: Option<usize>) -> Vec<(usize, String)> {
        let mut st = self.lock();
        let mut taken = Vec::new();
        let mut kept = VecDeque::new();
        for l in std::mem::take(&mut st.lines) {
            if member.is_none_or(|m| l.from == m) {
                taken.push((l.from, l.text));
            } else {
                kept.push_back(l);
            }
        }
        st.bytes = kept.iter().map(|l| l.text.len()).sum();
        st.lines = kept;
        taken
    }

    /// Whether `member`'s stdout is closed.
    pub(crate) fn is_closed(&self, member: usize) -> bool {
        self.lock().members[member].closed
    }

    /// What `member` printed lately.
    pub(crate) fn recent(&self, member: usize) -> Recent {
        let st = self.lock();
        let m = &st.members[member];
        Recent {
            stdout: m.recent.iter().cloned().collect(),
            stderr: m.recent_stderr.iter().cloned().collect(),
            dropped: m.dropped,
        }
    }
}

/// Which pipe a reader thread reads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pipe {
    Stdout,
    Stderr,
}

/// Reads `pipe` of member `from` line by line into `output` until end of file or an error.
/// Ending stdout marks the member closed.
pub(crate) fn read_lines(mut r: impl BufRead, output: Arc<Output>, from: usize, pipe: Pipe) {
    let mut buf = Vec::new();
    while let Ok(true) = read_bounded_line(&mut r, &mut buf, MAX_LINE_BYTES) {
        let text = String::from_utf8_lossy(&buf);
        match pipe {
            Pipe::Stdout => output.push(from, text.into_owned()),
            Pipe::Stderr => output.push_stderr(from, &text),
        }
    }
    match pipe {
        Pipe::Stdout => output.close(from),
        Pipe::Stderr => output.reading_stderr(from, false),
    }
}

/// Reads one line into `buf` (cleared first) without its `\n` (or `\r\n`), keeping at most
/// `max` bytes of it and skipping the rest. `Ok(false)` at end of file with nothing read; a last
/// line without a newline is returned as a line.
fn read_bounded_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<bool> {
    buf.clear();
    let mut any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, used, end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        r.consume(used);
        if end {
            break;
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::time::{Duration, Instant};

    use super::{read_bounded_line, Output, Waited, KEPT_BYTES_PER_PROCESS, RECENT_LINES};

    fn lines_of(input: &[u8], max: usize) -> Vec<String> {
        // A tiny buffer, so lines are split across reads.
        let mut r = std::io::BufReader::with_capacity(3, Cursor::new(input.to_vec()));
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while read_bounded_line(&mut r, &mut buf, max).unwrap() {
            out.push(String::from_utf8_lossy(&buf).into_owned());
        }
        out
    }

    #[test]
    fn lines_are_split_at_newlines_and_cut_at_the_bound() {
        assert_eq!(lines_of(b"ready 1\r\nab\n\nlast", 100), ["ready 1", "ab", "", "last"]);
        assert_eq!(lines_of(b"abcdefgh\nxy\n", 4), ["abcd", "xy"]);
        assert!(lines_of(b"", 4).is_empty());
        assert_eq!(lines_of(b"\xff\n", 4), ["\u{fffd}"]);
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[test]
    fn a_wait_takes_the_first_match_and_leaves_the_rest_in_order() {
        let out = Output::new();
        let (a, b) = (out.join(), out.join());
        out.push(a, "a1".into());
        out.push(b, "ready b".into());
        out.push(a, "ready a".into());
        out.push(a, "a3".into());
        let mut ready = |_: usize, l: &str| l.starts_with("ready");
        assert_eq!(out.wait_for(Some(a), &mut ready, soon()), Waited::Found(a, "ready a".into()));
        assert_eq!(out.wait_for(Some(a), &mut ready, soon()), Waited::TimedOut);
        assert_eq!(out.take_all(Some(a)), [(a, "a1".into()), (a, "a3".into())]);
        assert_eq!(
            out.wait_for(None, &mut |_, _| true, soon()),
            Waited::Found(b, "ready b".into())
        );
        out.close(a);
        assert_eq!(out.wait_for(Some(a), &mut |_, _| true, soon()), Waited::Closed);
        assert_eq!(out.wait_for(None, &mut |_, _| true, soon()), Waited::TimedOut);
        out.close(b);
        assert_eq!(out.wait_for(None, &mut |_, _| true, soon()), Waited::Closed);
        assert_eq!(out.recent(a).stdout, ["a1", "ready a", "a3"]);
    }

    #[test]
    fn a_full_queue_drops_its_oldest_lines_and_counts_them() {
        let out = Output::new();
        let a = out.join();
        let line = "x".repeat(1 << 20);
        let pushed = (KEPT_BYTES_PER_PROCESS >> 20) + 3;
        for _ in 0..pushed {
            out.push(a, line.clone());
        }
        assert_eq!(out.recent(a).dropped, 3);
        assert_eq!(out.recent(a).stdout.len(), pushed.min(RECENT_LINES));
        assert_eq!(out.take_all(None).len(), KEPT_BYTES_PER_PROCESS >> 20);
    }
}
