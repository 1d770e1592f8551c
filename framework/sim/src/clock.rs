//! The virtual clock: timers in a min-heap ordered by (deadline, insertion sequence).
//!
//! Ties are broken by insertion order, never by addresses or hashing, so firing order depends
//! only on what the components did.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use selfman_core::{Time, TimerDriver, TimerEntry, TimerKey, TimerTarget};

use crate::net::FastMap;

struct Pending {
    seq: u64,
    period: Option<Duration>,
    target: Arc<TimerTarget>,
}

#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Time, u64, TimerKey)>>,
    pending: FastMap<TimerKey, Pending>,
    next_seq: u64,
}

/// Virtual time and the timers waiting on it.
#[derive(Default)]
pub(crate) struct VirtualClock {
    now: AtomicU64,
    timers: Mutex<Timers>,
}

impl VirtualClock {
    /// The earliest pending deadline.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        let mut t = self.timers.lock();
        // Drop stale heap entries (cancelled or replaced timers) on the way.
        while let Some(&Reverse((deadline, seq, key))) = t.heap.peek() {
            if t.pending.get(&key).is_some_and(|p| p.seq == seq) {
                return Some(deadline);
            }
            t.heap.pop();
        }
        None
    }

    /// Moves time forward to `t` (never backwards).
    pub(crate) fn advance_to(&self, t: Time) {
        self.now.fetch_max(t.0, Ordering::SeqCst);
    }

    /// Pops one timer due at or before now, rescheduling it if periodic. Returns its key and
    /// target (fire it outside the lock).
    pub(crate) fn pop_due(&self) -> Option<(TimerKey, Arc<TimerTarget>)> {
        let now = self.now();
        let mut guard = self.timers.lock();
        let t = &mut *guard;
        while let Some(&Reverse((deadline, seq, key))) = t.heap.peek() {
            if deadline > now {
                return None;
            }
            t.heap.pop();
            let Some(p) = t.pending.get(&key) else { continue };
            if p.seq != seq {
                continue;
            }
            let target = Arc::clone(&p.target);
            match p.period {
                Some(period) => t.heap.push(Reverse((deadline + period, seq, key))),
                None => {
                    t.pending.remove(&key);
                }
            }
            return Some((key, target));
        }
        None
    }

    /// Forgets a timer whose target is gone.
    pub(crate) fn forget(&self, key: TimerKey) {
        self.timers.lock().pending.remove(&key);
    }

    pub(crate) fn pending(&self) -> usize {
        self.timers.lock().pending.len()
    }

    /// Forgets every timer (their targets reference components).
    pub(crate) fn clear(&self) {
        let mut t = self.timers.lock();
        t.heap.clear();
        t.pending.clear();
    }
}

impl TimerDriver for VirtualClock {
    fn now(&self) -> Time {
        Time(self.now.load(Ordering::SeqCst))
    }

    fn schedule(&self, entry: TimerEntry) {
        let mut t = self.timers.lock();
        let seq = t.next_seq;
        t.next_seq += 1;
        // A zero period would fire forever at one instant; the timer service refuses it, but
        // another driver user might not.
        let period = entry.period.filter(|p| !p.is_zero());
        t.heap.push(Reverse((entry.deadline, seq, entry.key)));
        t.pending.insert(entry.key, Pending { seq, period, target: Arc::new(entry.target) });
    }

    fn cancel(&self, key: TimerKey) {
        self.timers.lock().pending.remove(&key);
    }
}
