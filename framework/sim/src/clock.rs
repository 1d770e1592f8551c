//! The virtual clock: timers in a priority queue ordered by (deadline, insertion sequence).
//!
//! Ties are broken by insertion order, never by addresses or hashing, so firing order depends
//! only on what the components did.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use selfman_core::{Time, TimerDriver, TimerEntry, TimerKey, TimerTarget};

use crate::fast_map::FastMap;

/// A scheduled timer, in its slab slot.
struct Pending {
    key: TimerKey,
    /// The sequence number of its one live queue entry; other entries pointing at this slot are
    /// stale (the slot was reused, or the key rescheduled).
    seq: u64,
    period: Option<Duration>,
    target: Arc<TimerTarget>,
}

/// A queue entry (of the timers or of the network's messages): something (in slab slot `slot`)
/// due at `at`, ordered by (`at`, `seq`). Sequence numbers are unique among the entries of a
/// queue, so the slot never decides and the order is total: the entries come out in one order,
/// however they are stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Due {
    pub(crate) at: Time,
    pub(crate) seq: u64,
    pub(crate) slot: u32,
}

impl Due {
    /// (time, sequence) as one number: one branch-free comparison.
    #[inline]
    fn key(&self) -> u128 {
        (u128::from(self.at.0) << 64) | u128::from(self.seq)
    }
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
    #[inline]
    fn lt(&self, other: &Self) -> bool {
        self.key() < other.key()
    }
    #[inline]
    fn le(&self, other: &Self) -> bool {
        self.key() <= other.key()
    }
    #[inline]
    fn gt(&self, other: &Self) -> bool {
        self.key() > other.key()
    }
    #[inline]
    fn ge(&self, other: &Self) -> bool {
        self.key() >= other.key()
    }
}

impl Ord for Due {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// The timers' queue of [`Due`] entries, earliest first: a min-heap, plus a sorted run for
/// entries that come no earlier than everything already queued — typically a periodic timer
/// rescheduled after firing — which are queued and taken in O(1) instead of sifted through the
/// heap.
#[derive(Default)]
struct DueQueue {
    heap: BinaryHeap<Reverse<Due>>,
    /// Ascending.
    run: VecDeque<Due>,
}

impl DueQueue {
    fn clear(&mut self) {
        self.heap.clear();
        self.run.clear();
    }

    /// The earliest entry.
    #[inline]
    fn peek(&self) -> Option<&Due> {
        match (self.heap.peek(), self.run.front()) {
            (Some(Reverse(h)), Some(r)) => Some(if h < r { h } else { r }),
            (Some(Reverse(h)), None) => Some(h),
            (None, r) => r,
        }
    }

    #[inline]
    fn push(&mut self, due: Due) {
        if self.run.back().is_none_or(|last| *last <= due) {
            self.run.push_back(due);
        } else {
            self.heap.push(Reverse(due));
        }
    }

    /// Takes the earliest entry.
    #[inline]
    fn pop(&mut self) -> Option<Due> {
        match (self.heap.peek(), self.run.front()) {
            (Some(Reverse(h)), Some(r)) if h < r => self.heap.pop().map(|r| r.0),
            (_, Some(_)) => self.run.pop_front(),
            (_, None) => self.heap.pop().map(|r| r.0),
        }
    }
}

#[derive(Default)]
struct Timers {
    queue: DueQueue,
    /// The timers themselves, found from their queue entries without hashing.
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

    /// Pops stale entries (cancelled, replaced or forgotten timers) off the front, so the front is
    /// the next timer to fire; returns its deadline ([`EMPTY`] if there is none). Called after
    /// every change.
    fn settle(&mut self) -> u64 {
        while let Some(&due) = self.queue.peek() {
            if self.slab[due.slot as usize].as_ref().is_some_and(|p| p.seq == due.seq) {
                return due.at.0;
            }
            self.queue.pop();
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
            EMPTY => self.timers.lock().queue.peek().map(|top| top.at),
            next => Some(Time(next)),
        }
    }

    /// Moves time forward to `t` (never backwards).
    pub(crate) fn advance_to(&self, t: Time) {
        self.now.fetch_max(t.0, Ordering::SeqCst);
    }

    /// Pops one timer due at or before now, rescheduling it if periodic. Returns its key and
    /// target (fire it outside the lock).
    #[inline]
    pub(crate) fn pop_due(&self) -> Option<(TimerKey, Arc<TimerTarget>)> {
        let now = self.now();
        if self.next.load(Ordering::Relaxed) > now.0 {
            return None; // the usual answer: checked inline, without a call
        }
        self.pop_due_locked(now)
    }

    #[inline(never)]
    fn pop_due_locked(&self, now: Time) -> Option<(TimerKey, Arc<TimerTarget>)> {
        let mut guard = self.timers.lock();
        let t = &mut *guard;
        let fired = loop {
            let &due = t.queue.peek().filter(|due| due.at <= now)?;
            // Settled after every change, so the front is live; but should a stale entry be
            // there, skip it rather than stall.
            let Some(p) = t.slab[due.slot as usize].as_ref().filter(|p| p.seq == due.seq) else {
                t.queue.pop();
                continue;
            };
            let (key, target) = (p.key, Arc::clone(&p.target));
            t.queue.pop();
            match p.period {
                // Requeued with its sequence number: usually the latest entry, so it joins the
                // run.
                Some(period) => t.queue.push(Due { at: due.at + period, ..due }),
                None => t.remove(key),
            }
            break (key, target);
        };
        let next = t.settle();
        self.next.store(next, Ordering::Relaxed);
        Some(fired)
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
        t.queue.clear();
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
        // A rescheduled key keeps its slot; its old queue entry goes stale (new sequence).
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
        t.queue.push(Due { at: entry.deadline, seq, slot });
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{Due, DueQueue};
    use selfman_core::{Rng, Time};

    /// The queue gives the entries in (time, sequence) order, whichever of its heap and run
    /// they went to: checked against an ordered set, with pops interleaved, times that are
    /// often the latest (periodic timers) and sometimes not, and many ties on time.
    #[test]
    fn due_queue_pops_in_time_then_sequence_order() {
        for seed in 0..50 {
            let mut rng = Rng::seeded(seed);
            let (mut q, mut model) = (DueQueue::default(), BTreeSet::<(u64, u64)>::new());
            let (mut seq, mut now) = (0u64, 0u64);
            for _ in 0..2_000 {
                if rng.below(3) > 0 {
                    let at = match rng.below(3) {
                        0 => now + 1_000 + rng.below(10), // the latest, mostly
                        1 => now + rng.below(1_000),
                        _ => now + rng.below(4) * 100, // ties
                    };
                    seq += 1;
                    q.push(Due { at: Time(at), seq, slot: seq as u32 });
                    model.insert((at, seq));
                } else {
                    let got = q.pop().map(|d| (d.at.0, d.seq));
                    assert_eq!(got, model.pop_first(), "seed {seed}");
                    assert_eq!(q.peek().map(|d| (d.at.0, d.seq)), model.first().copied());
                    if let Some((at, _)) = got {
                        now = at;
                    }
                }
            }
            while let Some(want) = model.pop_first() {
                assert_eq!(q.pop().map(|d| (d.at.0, d.seq)), Some(want), "seed {seed}");
            }
            assert!(q.pop().is_none());
        }
    }
}
