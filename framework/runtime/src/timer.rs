//! The timer thread: a [`TimerDriver`] on the system clock.
//!
//! Pending timers sit in a min-heap by deadline; the thread sleeps on a condition variable until
//! the earliest deadline (or until an earlier timer is scheduled), so pending timers cost no CPU
//! while they wait. Cancellation removes the timer from an index; the heap entry is skipped
//! lazily. Timeouts are delivered outside the lock.
//!
//! Periodic timers fire at `deadline + k·period`; if the thread falls behind by more than one
//! period (e.g. the machine was suspended), missed firings are skipped rather than bursted.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use selfman_core::{Time, TimerDriver, TimerEntry, TimerKey, TimerTarget};

struct Pending {
    seq: u64,
    deadline: Time,
    period: Option<Duration>,
    target: Arc<TimerTarget>,
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<(Time, u64, TimerKey)>>,
    pending: HashMap<TimerKey, Pending>,
    next_seq: u64,
    shutdown: bool,
}

/// The clock and timer service of a [`Runtime`](crate::Runtime).
pub struct TimerThread {
    epoch: Instant,
    state: Mutex<State>,
    wake: Condvar,
}

impl TimerThread {
    /// A timer service whose clock starts now. Call [`TimerThread::run`] on a dedicated thread.
    pub fn new() -> Arc<Self> {
        Arc::new(TimerThread {
            epoch: Instant::now(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        })
    }

    fn instant(&self, t: Time) -> Instant {
        self.epoch + t.since_start()
    }

    /// Number of timers waiting to fire.
    pub fn pending(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Makes [`TimerThread::run`] return; pending timers are dropped.
    pub fn shutdown(&self) {
        let mut s = self.state.lock();
        s.shutdown = true;
        s.pending.clear();
        s.heap.clear();
        drop(s);
        self.wake.notify_all();
    }

    /// The timer loop; returns after [`TimerThread::shutdown`].
    pub fn run(&self) {
        let mut due: Vec<(TimerKey, u64, Arc<TimerTarget>)> = Vec::new();
        let mut s = self.state.lock();
        loop {
            if s.shutdown {
                return;
            }
            let now = self.now();
            while let Some(&Reverse((deadline, seq, key))) = s.heap.peek() {
                if deadline > now {
                    break;
                }
                s.heap.pop();
                let State { pending, heap, .. } = &mut *s;
                let Some(p) = pending.get_mut(&key) else {
                    continue;
                };
                if p.seq != seq {
                    continue; // replaced or cancelled
                }
                due.push((key, seq, Arc::clone(&p.target)));
                match p.period {
                    Some(period) => {
                        let mut next = p.deadline + period;
                        if next <= now {
                            next = now + period;
                        }
                        p.deadline = next;
                        heap.push(Reverse((next, seq, key)));
                    }
                    None => {
                        pending.remove(&key);
                    }
                }
            }
            if !due.is_empty() {
                drop(s);
                let mut gone = Vec::new();
                for (key, seq, target) in due.drain(..) {
                    if !target.fire() {
                        gone.push((key, seq));
                    }
                }
                s = self.state.lock();
                for (key, seq) in gone {
                    if s.pending.get(&key).is_some_and(|p| p.seq == seq) {
                        s.pending.remove(&key);
                    }
                }
                continue;
            }
            match s.heap.peek() {
                Some(&Reverse((deadline, _, _))) => {
                    let at = self.instant(deadline);
                    self.wake.wait_until(&mut s, at);
                }
                None => self.wake.wait(&mut s),
            }
        }
    }
}

impl TimerDriver for TimerThread {
    fn now(&self) -> Time {
        Time(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn schedule(&self, entry: TimerEntry) {
        let mut s = self.state.lock();
        if s.shutdown {
            return;
        }
        let seq = s.next_seq;
        s.next_seq += 1;
        let earliest = s.heap.peek().is_none_or(|Reverse((d, _, _))| entry.deadline < *d);
        s.heap.push(Reverse((entry.deadline, seq, entry.key)));
        s.pending.insert(
            entry.key,
            Pending {
                seq,
                deadline: entry.deadline,
                period: entry.period,
                target: Arc::new(entry.target),
            },
        );
        drop(s);
        if earliest {
            self.wake.notify_one();
        }
    }

    fn cancel(&self, key: TimerKey) {
        self.state.lock().pending.remove(&key);
    }
}

impl std::fmt::Debug for TimerThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerThread").field("pending", &self.pending()).finish()
    }
}
