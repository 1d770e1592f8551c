//! The virtual clock: timers in a min-heap ordered by (deadline, insertion sequence).
//!
//! Ties are broken by insertion order, never by addresses or hashing, so firing order depends
//! only on what the components did.

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use selfman_core::{Time, TimerDriver, TimerEntry, TimerKey, TimerTarget};

use crate::net::FastMap;

/// A scheduled timer, in its slab slot.
struct Pending {
    key: TimerKey,
    /// The sequence number of its one live heap entry; other entries pointing at this slot are
    /// stale (the slot was reused, or the key rescheduled).
    seq: u64,
    period: Option<Duration>,
    target: Arc<TimerTarget>,
}

/// A heap entry: ordered by deadline, then sequence (unique among live entries, so the slab
/// index never decides).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    deadline: Time,
    seq: u64,
    slot: u32,
}

#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<Due>>,
    /// The timers themselves, found from the heap without hashing.
    slab: Vec<Option<Pending>>,
    free: Vec<u32>,
    /// Key → slab slot, for scheduling and cancelling only.
    by_key: FastMap<TimerKey, u32>,
    next_seq: u64,
}

impl Timers {
    fn remove(&mut self, key: TimerKey) {
        if let Some(slot) = self.by_key.remove(&key) {
            self.slab[slot as usize] = None;
            self.free.push(slot);
        }
    }

    /// Pops stale entries (cancelled, replaced or forgotten timers) off the top, so the top is
    /// the next timer to fire; returns its deadline ([`EMPTY`] if there is none). Called after
    /// every change.
    fn settle(&mut self) -> u64 {
        while let Some(top) = self.heap.peek_mut() {
            let due = top.0;
            if self.slab[due.slot as usize].as_ref().is_some_and(|p| p.seq == due.seq) {
                return due.deadline.0;
            }
            PeekMut::pop(top);
        }
        EMPTY
    }
}

/// The mirrored next deadline when there is no timer (or, rarely, when it is the end of time).
const EMPTY: u64 = u64::MAX;

/// Virtual time and the timers waiting on it.
pub(crate) struct VirtualClock {
    now: AtomicU64,
    /// The deadline of the next timer to fire, mirrored out of the lock after every change
    /// (the stepping loop asks far more often than anything changes); [`EMPTY`] if none.
    next: AtomicU64,
    timers: Mutex<Timers>,
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock {
            now: AtomicU64::new(0),
            next: AtomicU64::new(EMPTY),
            timers: Mutex::default(),
        }
    }
}

impl VirtualClock {
    /// The earliest pending deadline.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        match self.next.load(Ordering::Relaxed) {
            // The end of time is a possible deadline: look.
            EMPTY => self.timers.lock().heap.peek().map(|top| top.0.deadline),
            next => Some(Time(next)),
        }
    }

    /// Moves time forward to `t` (never backwards).
    pub(crate) fn advance_to(&self, t: Time) {
        self.now.fetch_max(t.0, Ordering::SeqCst);
    }

    /// Pops one timer due at or before now, rescheduling it if periodic. Returns its key and
    /// target (fire it outside the lock).
    pub(crate) fn pop_due(&self) -> Option<(TimerKey, Arc<TimerTarget>)> {
        let now = self.now();
        if self.next.load(Ordering::Relaxed) > now.0 {
            return None;
        }
        let mut guard = self.timers.lock();
        let t = &mut *guard;
        let mut top = t.heap.peek_mut()?;
        let due = top.0;
        if due.deadline > now {
            return None;
        }
        // Settled: the top is live.
        let p = t.slab[due.slot as usize].as_ref()?;
        let (key, target) = (p.key, Arc::clone(&p.target));
        match p.period {
            // Rewritten in place, keeping its sequence number: one sift instead of a pop and a
            // push.
            Some(period) => {
                top.0.deadline = due.deadline + period;
                drop(top);
            }
            None => {
                PeekMut::pop(top);
                t.remove(key);
            }
        }
        let next = t.settle();
        self.next.store(next, Ordering::Relaxed);
        Some((key, target))
    }

    /// Forgets a timer whose target is gone.
    pub(crate) fn forget(&self, key: TimerKey) {
        self.cancel(key);
    }

    pub(crate) fn pending(&self) -> usize {
        self.timers.lock().by_key.len()
    }

    /// Forgets every timer (their targets reference components).
    pub(crate) fn clear(&self) {
        let mut t = self.timers.lock();
        t.heap.clear();
        t.slab.clear();
        t.free.clear();
        t.by_key.clear();
        self.next.store(EMPTY, Ordering::Relaxed);
    }
}

impl TimerDriver for VirtualClock {
    fn now(&self) -> Time {
        Time(self.now.load(Ordering::SeqCst))
    }

    fn schedule(&self, entry: TimerEntry) {
        let mut guard = self.timers.lock();
        let t = &mut *guard;
        let seq = t.next_seq;
        t.next_seq += 1;
        // A zero period would fire forever at one instant; the timer service refuses it, but
        // another driver user might not.
        let period = entry.period.filter(|p| !p.is_zero());
        let pending = Some(Pending { key: entry.key, seq, period, target: Arc::new(entry.target) });
        // A rescheduled key keeps its slot; its old heap entry goes stale (new sequence).
        let slot = match t.by_key.get(&entry.key) {
            Some(&slot) => slot,
            None => {
                let slot = match t.free.pop() {
                    Some(slot) => slot,
                    None => {
                        t.slab.push(None);
                        (t.slab.len() - 1) as u32
                    }
                };
                t.by_key.insert(entry.key, slot);
                slot
            }
        };
        t.slab[slot as usize] = pending;
        t.heap.push(Reverse(Due { deadline: entry.deadline, seq, slot }));
        let next = t.settle();
        self.next.store(next, Ordering::Relaxed);
    }

    fn cancel(&self, key: TimerKey) {
        let mut t = self.timers.lock();
        t.remove(key);
        let next = t.settle();
        self.next.store(next, Ordering::Relaxed);
    }
}
