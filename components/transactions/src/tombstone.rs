//! [`Tombstones`]: a bounded memory of finished things (transactions forgotten with their
//! decision, participants that applied theirs), so that a late copy of a message about one is
//! answered from what was decided instead of creating fresh state.
//!
//! Invariants:
//! * an entry is kept at least `ttl` after it was written, unless more than `cap` entries were
//!   written within `ttl` (then the oldest go first; counted in [`Tombstones::evicted`]);
//! * memory is bounded by `cap` entries whatever the input, and follows the entries held: a
//!   burst grows the order queue's buffer, and once most of it has expired the buffer is given
//!   back (at most [`SPARE`] times the entries held, or [`KEEP`] entries, stay allocated);
//! * an entry is never changed once written (the first write wins): a decision never flips.
//!
//! Why a time bound is enough: every holder of live state about a transaction drops it within
//! `DROP_AFTER_LEASES` leases of first hearing of it, so a tombstone kept that long past the
//! moment its state was dropped outlives every node that could still ask about it (the lease
//! already assumes that messages older than a few leases are gone from the network).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use selfman_core::Time;

/// Entries' room the order queue keeps whatever it holds (a quiet node's buffer is small).
pub(crate) const KEEP: usize = 1024;
/// The order queue's buffer is cut back once it is more than this many times the entries held
/// (to twice them), so the room left by a burst is given back within one window.
pub(crate) const SPARE: usize = 4;

/// A bounded, time-limited map of finished keys to what became of them.
#[derive(Clone, Debug)]
pub(crate) struct Tombstones<K, V> {
    map: BTreeMap<K, V>,
    /// Keys in the order written, with the time.
    order: VecDeque<(Time, K)>,
    cap: usize,
    ttl: Duration,
    evicted: u64,
}

impl<K: Ord + Clone, V> Tombstones<K, V> {
    /// An empty memory of at most `cap` entries, each kept `ttl`.
    pub(crate) fn new(cap: usize, ttl: Duration) -> Self {
        Tombstones {
            map: BTreeMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            ttl,
            evicted: 0,
        }
    }

    /// Remembers `key` as `value` from `now` (a key known already keeps its first value).
    pub(crate) fn insert(&mut self, key: K, value: V, now: Time) {
        self.expire(now);
        if self.map.contains_key(&key) {
            return;
        }
        if self.map.len() >= self.cap {
            if let Some((_, old)) = self.order.pop_front() {
                self.map.remove(&old);
                self.evicted = self.evicted.saturating_add(1);
            }
        }
        self.map.insert(key.clone(), value);
        self.order.push_back((now, key));
    }

    /// What became of `key`, if it is remembered.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// Forgets entries older than `ttl`.
    pub(crate) fn expire(&mut self, now: Time) {
        while let Some((at, _)) = self.order.front() {
            if now < *at + self.ttl {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.map.remove(&k);
            }
        }
        // A `VecDeque` never shrinks by itself: without this, the largest window a burst ever
        // filled (up to `cap` entries) would stay allocated for good.
        let room = self.order.capacity();
        if room > KEEP && room > SPARE * self.order.len() {
            self.order.shrink_to((2 * self.order.len()).max(KEEP));
        }
    }

    /// Entries the order queue has room for (its buffer, in entries): what it holds allocated.
    pub(crate) fn room(&self) -> usize {
        self.order.capacity()
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Entries dropped before their time because the memory was full.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use selfman_core::Time;

    use super::Tombstones;

    #[test]
    fn entries_last_their_time_and_the_first_value_wins() {
        let mut t = Tombstones::new(10, Duration::from_secs(5));
        t.insert(1, true, Time::from_secs(1));
        t.insert(1, false, Time::from_secs(2));
        assert_eq!(t.get(&1), Some(&true));
        t.expire(Time::from_secs(5));
        assert_eq!(t.get(&1), Some(&true), "4 s old");
        t.expire(Time::from_secs(6));
        assert_eq!(t.get(&1), None, "5 s old");
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_burst_gives_its_buffer_back_once_it_expired() {
        let ttl = Duration::from_secs(10);
        let mut t = Tombstones::new(1 << 20, ttl);
        for k in 0..100_000u64 {
            t.insert(k, (), Time::from_secs(1));
        }
        assert!(t.room() >= 100_000);
        // A trickle afterwards: a few entries a second, far fewer than the burst.
        for s in 0..30u64 {
            for k in 0..10u64 {
                t.insert(1_000_000 + s * 10 + k, (), Time::from_secs(20 + s));
            }
        }
        assert!(t.len() <= 100, "only the trickle of the last 10 s is left: {}", t.len());
        assert!(t.room() <= super::KEEP.max(2 * t.len()) * 2, "room {} kept", t.room());
        t.expire(Time::from_secs(1000));
        assert_eq!(t.len(), 0);
        assert!(t.room() <= super::KEEP, "room {} kept when empty", t.room());
    }

    #[test]
    fn memory_is_bounded_and_evictions_are_counted() {
        let mut t = Tombstones::new(3, Duration::from_secs(60));
        for k in 0..5u32 {
            t.insert(k, (), Time::from_secs(1));
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.evicted(), 2);
        assert!(t.get(&0).is_none() && t.get(&1).is_none() && t.get(&4).is_some());
    }
}
