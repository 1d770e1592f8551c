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

use crate::net::FastMap;

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
    pub(crate) fn key(&self) -> u128 {
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

/// Width of a [`Calendar`] bucket: 2^14 ns (16.4 µs; a burst of sends with latencies of a few
/// milliseconds puts a handful of messages in each).
const BUCKET_SHIFT: u32 = 14;
/// Buckets in a [`Calendar`]'s ring: a 16.8 ms window (later deliveries wait in its `far` heap).
const RING: usize = 1024;
const RING_WORDS: usize = RING / 64;

fn bucket(at: Time) -> u64 {
    at.0 >> BUCKET_SHIFT
}

/// The network's queue of [`Due`] entries, earliest first: a calendar queue. Entries go into
/// buckets by time (O(1)); a bucket is sorted once when its turn comes, and taken in order.
/// Entries that arrive for the open bucket or an earlier one wait in a small heap beside it;
/// entries beyond the ring's window wait in another heap until their bucket is next. Messages
/// sent in a burst with latencies of a few milliseconds thus cost a push, a share of a small
/// sort and a pop, instead of two sifts through a heap of the whole burst.
pub(crate) struct Calendar {
    /// The open bucket, sorted; taken from `pos` on.
    run: Vec<Due>,
    pos: usize,
    /// Entries for the open bucket or earlier, queued after it was opened.
    late: BinaryHeap<Reverse<Due>>,
    /// The open bucket's index. Everything in `run` and `late` is in it or earlier; the ring
    /// holds buckets `cur + 1 .. cur + RING`, at their index modulo `RING`; `far`, later ones
    /// (and it is never behind `cur`: the next bucket opened is the earliest of both).
    cur: u64,
    ring: Vec<Vec<Due>>,
    /// Which ring buckets are not empty.
    bits: [u64; RING_WORDS],
    far: BinaryHeap<Reverse<Due>>,
    len: usize,
    /// The earliest entry, when known without opening a bucket.
    first: Option<Due>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar {
            run: Vec::new(),
            pos: 0,
            late: BinaryHeap::new(),
            cur: 0,
            ring: (0..RING).map(|_| Vec::new()).collect(),
            bits: [0; RING_WORDS],
            far: BinaryHeap::new(),
            len: 0,
            first: None,
        }
    }
}

impl Calendar {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn clear(&mut self) {
        self.run.clear();
        self.pos = 0;
        self.late.clear();
        for (w, word) in self.bits.iter_mut().enumerate() {
            while *word != 0 {
                let i = w * 64 + word.trailing_zeros() as usize;
                self.ring[i].clear();
                *word &= *word - 1;
            }
        }
        self.far.clear();
        self.len = 0;
        self.first = None;
    }

    /// Queues `due`, which is not earlier than `now` (nor than anything taken already).
    pub(crate) fn push(&mut self, now: Time, due: Due) {
        if self.len == 0 {
            // Empty: restart the window at now, so a burst of sends lands in the ring.
            self.run.clear();
            self.pos = 0;
            self.cur = bucket(now).min(bucket(due.at));
        }
        self.len += 1;
        if self.len == 1 || self.first.is_some_and(|f| due < f) {
            self.first = Some(due);
        }
        let b = bucket(due.at);
        if b <= self.cur {
            self.late.push(Reverse(due));
        } else if b - self.cur < RING as u64 {
            let i = b as usize & (RING - 1);
            self.ring[i].push(due);
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.far.push(Reverse(due));
        }
    }

    /// The earliest entry.
    pub(crate) fn peek(&mut self) -> Option<Due> {
        if self.first.is_none() {
            self.first = self.front();
        }
        self.first
    }

    /// The earliest entry, from the open bucket or the late heap (opening the next bucket if
    /// both are empty).
    fn front(&mut self) -> Option<Due> {
        loop {
            return match (self.run.get(self.pos), self.late.peek()) {
                (Some(r), Some(Reverse(l))) => Some(if l < r { *l } else { *r }),
                (Some(r), None) => Some(*r),
                (None, Some(Reverse(l))) => Some(*l),
                (None, None) => {
                    if self.open_next() {
                        continue;
                    }
                    None
                }
            };
        }
    }

    /// Takes the earliest entry.
    pub(crate) fn pop(&mut self) -> Option<Due> {
        let first = self.front()?;
        match self.run.get(self.pos) {
            Some(r) if r.seq == first.seq => self.pos += 1,
            _ => {
                self.late.pop();
            }
        }
        self.len -= 1;
        self.first = None;
        Some(first)
    }

    /// Opens the next non-empty bucket (the run and the late heap are empty). Returns `false`
    /// if there is none.
    fn open_next(&mut self) -> bool {
        let ring_next = self.next_in_ring();
        let far_next = self.far.peek().map(|d| bucket(d.0.at));
        let next = match (ring_next, far_next) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return false,
        };
        self.cur = next;
        self.run.clear();
        self.pos = 0;
        if ring_next == Some(next) {
            let i = next as usize & (RING - 1);
            // The ring keeps the emptied run's buffer: no allocation in the steady state.
            std::mem::swap(&mut self.run, &mut self.ring[i]);
            self.bits[i / 64] &= !(1 << (i % 64));
        }
        while self.far.peek().is_some_and(|d| bucket(d.0.at) == next) {
            if let Some(Reverse(d)) = self.far.pop() {
                self.run.push(d);
            }
        }
        self.run.sort_unstable_by_key(Due::key);
        true
    }

    /// The first non-empty ring bucket after `cur`, if any.
    fn next_in_ring(&self) -> Option<u64> {
        let start = (self.cur.wrapping_add(1) as usize) & (RING - 1);
        let (w0, b0) = (start / 64, start % 64);
        let mut found = None;
        for k in 0..=RING_WORDS {
            let w = (w0 + k) % RING_WORDS;
            let word = match k {
                0 => self.bits[w] & (!0u64 << b0),
                RING_WORDS => self.bits[w] & !(!0u64 << b0),
                _ => self.bits[w],
            };
            if word != 0 {
                found = Some(w * 64 + word.trailing_zeros() as usize);
                break;
            }
        }
        let i = found?;
        Some(self.cur + 1 + ((i + RING - start) & (RING - 1)) as u64)
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

    use super::{Calendar, Due, DueQueue};
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

    /// The calendar gives the entries in (time, sequence) order, wherever they waited: in the
    /// open bucket, beside it (late), in the ring, or beyond it (far); through bursts, gaps
    /// longer than the ring, times at the end of time, emptying and clearing.
    #[test]
    fn calendar_pops_in_time_then_sequence_order() {
        const MS: u64 = 1_000_000;
        for seed in 0..50 {
            let mut rng = Rng::seeded(seed);
            let (mut q, mut model) = (Calendar::default(), BTreeSet::<(u64, u64)>::new());
            let (mut seq, mut now) = (0u64, 0u64);
            for step in 0..5_000 {
                match rng.below(10) {
                    0..=4 => {
                        let at = match rng.below(10) {
                            0 => now + rng.below(40_000),           // within a bucket or two: late
                            1 => now + 15 * MS + rng.below(4 * MS), // about the ring's end
                            2 => now + rng.below(10_000 * MS),      // far
                            3 if rng.below(20) == 0 => u64::MAX,
                            _ => now + MS + rng.below(4 * MS),
                        };
                        seq += 1;
                        q.push(Time(now), Due { at: Time(at), seq, slot: 0 });
                        model.insert((at, seq));
                    }
                    5..=8 => {
                        let got = q.pop().map(|d| (d.at.0, d.seq));
                        assert_eq!(got, model.pop_first(), "seed {seed} step {step}");
                        if let Some((at, _)) = got {
                            now = now.max(at.min(u64::MAX / 2));
                        }
                    }
                    _ if rng.below(50) == 0 => {
                        q.clear();
                        model.clear();
                    }
                    _ => now += rng.below(200 * MS),
                }
                if seed % 2 == 0 {
                    // (The network peeks after every change; a peek can open a bucket.)
                    assert_eq!(q.peek().map(|d| (d.at.0, d.seq)), model.first().copied());
                }
                assert_eq!(q.len(), model.len());
            }
            while let Some(want) = model.pop_first() {
                assert_eq!(q.pop().map(|d| (d.at.0, d.seq)), Some(want), "seed {seed}");
            }
            assert!(q.pop().is_none());
        }
    }
}
