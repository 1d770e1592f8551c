//! Test support (feature `testkit`): waiting for a condition, and a log that components write
//! and the test reads.
//!
//! It lives in core behind a feature, not in a crate of its own, because it needs nothing but
//! core and the standard library, and the dependency rule lets every crate (framework crates
//! included) dev-depend on core, so one copy serves the framework's tests, the components'
//! and the simulation suites; builds that do not ask for it do not compile it.
//!
//! Guarantees:
//! * [`eventually`] returns as soon as its condition holds and panics, naming what it waited
//!   for, once [`WAIT`] has passed without it;
//! * a [`Log`] is one record shared by all its clones; every access locks it once (never
//!   poisoned: a recorder that panicked leaves what it wrote), and [`Log::take`] empties it.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

/// How long [`eventually`] waits: long enough for a loaded 2-core CI machine, short enough
/// that a hung test fails visibly.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often [`eventually`] asks again.
const POLL: Duration = Duration::from_millis(1);

/// Polls `cond` until it holds.
///
/// # Panics
///
/// With `what` in the message, if `cond` does not hold within [`WAIT`].
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use selfman_core::testkit::eventually;
///
/// let n = AtomicU32::new(0);
/// eventually("three calls", || n.fetch_add(1, Ordering::Relaxed) == 2);
/// ```
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        std::thread::sleep(POLL);
    }
}

/// What the components of a test recorded, shared with the test that reads it: a list of
/// entries (`Log<Vec<E>>`), or a record that checks entries as they arrive (a safety checker:
/// `Log<ConsensusChecker>` in the simulation suites).
///
/// Clones share the record. Components push into it from their handlers, on any thread; the
/// test reads it after (or while) the system runs. Do not hold [`Log::lock`]'s guard while
/// calling another method of the same log: the lock is not reentrant.
///
/// # Examples
///
/// ```
/// use selfman_core::testkit::Log;
///
/// let log: Log<Vec<String>> = Log::default();
/// let writer = log.clone(); // e.g. moved into a component's factory
/// writer.push("start a");
/// writer.push("stop a");
/// assert_eq!(log.len(), 2);
/// assert_eq!(log.take(), ["start a", "stop a"]);
/// assert!(log.is_empty());
/// ```
pub struct Log<T> {
    inner: Arc<Mutex<T>>,
}

impl<T> Log<T> {
    /// A log holding `record`.
    pub fn new(record: T) -> Log<T> {
        Log { inner: Arc::new(Mutex::new(record)) }
    }

    /// Locks the record; the guard reads and writes it.
    pub fn lock(&self) -> LogGuard<'_, T> {
        LogGuard(self.inner.lock())
    }

    /// Runs `f` on the record, locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.inner.lock())
    }

    /// Takes the record out, leaving an empty one (a scenario that runs many seeds resets its
    /// log this way, so no seed keeps another's entries alive).
    pub fn take(&self) -> T
    where
        T: Default,
    {
        std::mem::take(&mut *self.inner.lock())
    }
}

impl<E> Log<Vec<E>> {
    /// Appends `entry`.
    pub fn push(&self, entry: impl Into<E>) {
        self.inner.lock().push(entry.into());
    }

    /// A copy of the entries so far.
    pub fn snapshot(&self) -> Vec<E>
    where
        E: Clone,
    {
        self.inner.lock().clone()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether nothing was recorded (since the last [`Log::take`]).
    pub fn is_empty(&self) -> bool {
        self.inner.lock().is_empty()
    }
}

impl<T> Clone for Log<T> {
    /// Another handle on the same record.
    fn clone(&self) -> Self {
        Log { inner: Arc::clone(&self.inner) }
    }
}

impl<T: Default> Default for Log<T> {
    /// A log holding an empty record.
    fn default() -> Self {
        Log::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for Log<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Log").field(&*self.inner.lock()).finish()
    }
}

/// A [`Log`]'s record, locked (see [`Log::lock`]); unlocked when dropped.
pub struct LogGuard<'a, T>(MutexGuard<'a, T>);

impl<T> Deref for LogGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for LogGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for LogGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (*self.0).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_record_and_take_empties_it() {
        let log: Log<Vec<u32>> = Log::default();
        let other = log.clone();
        other.push(1u32);
        log.with(|v| v.push(2));
        log.lock().push(3);
        assert_eq!((log.len(), other.snapshot()), (3, vec![1, 2, 3]));
        assert_eq!(other.take(), vec![1, 2, 3]);
        assert!(log.is_empty());
        assert_eq!(format!("{log:?}"), "Log([])");
    }

    #[test]
    fn a_panicking_writer_leaves_what_it_wrote() {
        let log: Log<Vec<&str>> = Log::default();
        let w = log.clone();
        let r = std::thread::spawn(move || {
            let mut g = w.lock();
            g.push("before");
            panic!("a recorder panicked");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(log.snapshot(), ["before"]);
    }

    #[test]
    fn eventually_waits_for_the_condition() {
        let start = Instant::now();
        eventually("20 ms to pass", || start.elapsed() >= Duration::from_millis(20));
        assert!(start.elapsed() < WAIT);
    }
}
