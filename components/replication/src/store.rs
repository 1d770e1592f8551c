//! The local replica store: every replica this node holds, ordered by position on the ring so
//! that a range can be read in order, cut out and moved: [`Store`].
//!
//! One [`Record`] per replica, keyed by [`ItemId`] (the replica key, then the item's key bytes,
//! so two keys whose hashes collide are still two items). A record holds the value, the
//! version, and the transaction layer's votes (which are its locks) — one store for data,
//! versions and locks, so that locks travel with the items when a range moves.
//!
//! Invariants (unit tests below):
//! * **versions never go back**: no operation replaces a record's version by a smaller one;
//!   the same version with another value is refused too (except by the divergence rule of
//!   [`Store::merge_newer`], which both sides of a repair apply alike);
//! * **a vote is remembered**: asking again for a transaction's vote answers the same
//!   (except [`Refusal::TooManyVotes`], never recorded), until it is committed or released;
//! * a prepared vote locks: a write lock excludes every other prepared vote, a read lock
//!   excludes write locks, while its lease lasts;
//! * a record with version 0 and no vote is not kept.
//!
//! Memory per item (measured by `tests/store_memory.rs`): the map entry ([`ItemId`] 24 bytes,
//! [`Record`] 32 bytes) inside B-tree nodes, plus one allocation for the key and one for the
//! value; see `docs/replication.md` for the figure.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use selfman_core::Time;
use selfman_ports::{
    LockMode, Range, Refusal, ReplicaOp, ReplicaOutcome, RingId, TxId, Version, Vote,
};

use crate::messages::MAX_VOTES;
use crate::placement::mix64;
use crate::ranges::{segments, RangeSet};

/// Rebuilt ranges a store remembers abstention windows for; more collapse into one window
/// over the whole circle (abstaining more is safe, abstaining less is not).
const MAX_ABSTAIN: usize = 64;

/// A replica's identity: its position (replica key), then the item's key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemId {
    /// The replica key.
    pub pos: RingId,
    /// The item's key.
    pub key: Box<[u8]>,
}

impl ItemId {
    /// The replica of `key` at `pos`.
    pub fn new(pos: RingId, key: &[u8]) -> ItemId {
        ItemId { pos, key: key.into() }
    }

    /// The smallest id at `pos`.
    fn first_at(pos: u64) -> ItemId {
        ItemId { pos: RingId(pos), key: Box::default() }
    }
}

/// A transaction's vote as a record keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteEntry {
    /// The transaction.
    pub tx: TxId,
    /// The lock it asked for.
    pub mode: LockMode,
    /// Prepared (a lock while the lease lasts) or refused.
    pub vote: Vote,
    /// When the lease ends (a refused vote is remembered as long).
    pub expires: Time,
}

impl VoteEntry {
    fn locks(&self, now: Time) -> bool {
        self.vote == Vote::Prepared && now < self.expires
    }
}

/// One replica of one item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The version (`Version(0)`: never written).
    pub version: Version,
    /// The value (`None`: never written, or deleted).
    pub value: Option<Box<[u8]>>,
    // Boxed so that the many records without votes pay 8 bytes, not a 24-byte `Vec`.
    #[allow(clippy::box_collection)]
    votes: Option<Box<Vec<VoteEntry>>>,
}

impl Record {
    /// A record with `version` and `value` and no votes.
    pub fn new(version: Version, value: Option<Box<[u8]>>) -> Record {
        Record { version, value, votes: None }
    }

    /// The votes it remembers.
    pub fn votes(&self) -> &[VoteEntry] {
        self.votes.as_deref().map_or(&[], |v| v.as_slice())
    }

    /// This record with `votes` (as received in a transfer).
    pub fn with_votes(mut self, votes: Vec<VoteEntry>) -> Record {
        self.votes = (!votes.is_empty()).then(|| Box::new(votes));
        self
    }

    /// The strongest live lock.
    pub fn lock(&self, now: Time) -> Option<LockMode> {
        let live = self.votes().iter().filter(|v| v.locks(now));
        live.map(|v| v.mode).max_by_key(|m| matches!(m, LockMode::Write))
    }

    fn is_empty(&self) -> bool {
        self.version == Version(0) && self.votes().is_empty()
    }

    fn votes_mut(&mut self) -> &mut Vec<VoteEntry> {
        // Most locked items hold one vote: start with room for exactly one.
        self.votes.get_or_insert_with(|| Box::new(Vec::with_capacity(1)))
    }

    fn drop_vote(&mut self, tx: TxId) {
        if let Some(v) = self.votes.as_mut() {
            v.retain(|e| e.tx != tx);
            if v.is_empty() {
                self.votes = None;
            }
        }
    }

    /// Forgets votes whose lease ended more than [`VOTE_MEMORY`] ago.
    fn forget_old_votes(&mut self, now: Time) {
        if let Some(v) = self.votes.as_mut() {
            v.retain(|e| now < e.expires + VOTE_MEMORY);
            if v.is_empty() {
                self.votes = None;
            }
        }
    }
}

/// How long a vote is remembered after its lease ended: a transaction still undecided then
/// has been taken over by its replicated managers, which ask no participant again.
pub const VOTE_MEMORY: Duration = Duration::from_secs(60);

/// A stable 64-bit digest of a replica's content (key, version, value): FNV-1a, then mixed.
/// The same on every node, platform and version; it does not depend on the position, so the
/// replicas of one item agree.
pub fn digest(key: &[u8], version: Version, value: Option<&[u8]>) -> u64 {
    fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
    let mut h = fnv(0xcbf2_9ce4_8422_2325, &(key.len() as u64).to_le_bytes());
    h = fnv(h, key);
    h = fnv(h, &version.0.to_le_bytes());
    h = match value {
        None => fnv(h, &[0]),
        Some(v) => fnv(fnv(h, &[1]), v),
    };
    mix64(h)
}

/// What [`Store::merge_newer`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The incoming version was installed.
    Installed,
    /// The store kept its record: it is as new or newer.
    Kept,
    /// Same version, different value: the one with the larger digest was kept (both replicas
    /// of a repair pick the same); `true` if it was the incoming one.
    Diverged(bool),
}

/// The replicas this node holds, ordered by position.
#[derive(Clone, Debug, Default)]
pub struct Store {
    items: BTreeMap<ItemId, Record>,
    bytes: usize,
    abstain: Vec<(Range, Time)>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::default()
    }

    /// How many replicas it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn payload_bytes(&self) -> usize {
        self.bytes
    }

    /// The record of `id`.
    pub fn get(&self, id: &ItemId) -> Option<&Record> {
        self.items.get(id)
    }

    fn size_of(id: &ItemId, r: &Record) -> usize {
        id.key.len() + r.value.as_ref().map_or(0, |v| v.len())
    }

    fn put(&mut self, id: ItemId, r: Record) {
        if r.is_empty() {
            if let Some(old) = self.items.remove(&id) {
                self.bytes -= Self::size_of(&id, &old);
            }
            return;
        }
        self.bytes += Self::size_of(&id, &r);
        if let Some(old) = self.items.insert(id.clone(), r) {
            self.bytes -= Self::size_of(&id, &old);
        }
    }

    /// Applies a user operation at this replica; also says whether the record changed (a
    /// hand-over in progress must then send it again).
    pub fn apply(&mut self, id: ItemId, op: &ReplicaOp, now: Time) -> (ReplicaOutcome, bool) {
        match op {
            ReplicaOp::Read => {
                let r = self.items.get(&id);
                let outcome = ReplicaOutcome::Record {
                    version: r.map_or(Version(0), |r| r.version),
                    value: r.and_then(|r| r.value.as_ref()).map(|v| v.to_vec()),
                    lock: r.and_then(|r| r.lock(now)),
                };
                (outcome, false)
            }
            ReplicaOp::Write { version, value } => self.write(id, *version, value.as_deref()),
            ReplicaOp::Vote { tx, mode, read, lease_ms } => {
                let lease = Duration::from_millis(*lease_ms);
                let (vote, changed) = self.vote(id, *tx, *mode, *read, lease, now);
                (ReplicaOutcome::Voted(vote), changed)
            }
            ReplicaOp::Commit { tx, version, value } => {
                let had_vote =
                    self.items.get(&id).is_some_and(|r| r.votes().iter().any(|v| v.tx == *tx));
                if let Some(mut r) = self.items.get(&id).cloned() {
                    r.drop_vote(*tx);
                    self.put(id.clone(), r);
                }
                let (outcome, wrote) = self.write(id, *version, value.as_deref());
                (outcome, wrote || had_vote)
            }
            ReplicaOp::Release { tx } => {
                let Some(mut r) = self.items.get(&id).cloned() else {
                    return (ReplicaOutcome::Released, false);
                };
                let before = r.votes().len();
                r.drop_vote(*tx);
                let changed = r.votes().len() != before;
                self.put(id, r);
                (ReplicaOutcome::Released, changed)
            }
        }
    }

    /// Installs `(version, value)` if newer.
    pub fn write(
        &mut self,
        id: ItemId,
        version: Version,
        value: Option<&[u8]>,
    ) -> (ReplicaOutcome, bool) {
        match self.items.get(&id) {
            Some(r) if r.version > version => (ReplicaOutcome::Stale { current: r.version }, false),
            Some(r) if r.version == version => {
                if r.value.as_deref() == value {
                    (ReplicaOutcome::Current, false)
                } else {
                    (ReplicaOutcome::Stale { current: r.version }, false)
                }
            }
            _ if version == Version(0) => {
                // Version 0 is "never written": nothing to install.
                (ReplicaOutcome::Stale { current: Version(0) }, false)
            }
            existing => {
                let votes = existing.and_then(|r| r.votes.clone());
                let r = Record { version, value: value.map(Box::from), votes };
                self.put(id, r);
                (ReplicaOutcome::Applied, true)
            }
        }
    }

    /// A transaction's vote (see [`ReplicaOp::Vote`]); also says whether the record changed.
    pub fn vote(
        &mut self,
        id: ItemId,
        tx: TxId,
        mode: LockMode,
        read: Version,
        lease: Duration,
        now: Time,
    ) -> (Vote, bool) {
        let mut r = self.items.get(&id).cloned().unwrap_or_default();
        r.forget_old_votes(now);
        if let Some(e) = r.votes().iter().find(|e| e.tx == tx) {
            return (e.vote, false);
        }
        if self.abstains(id.pos, now) {
            return (Vote::Abstain, false);
        }
        let conflict = r
            .votes()
            .iter()
            .any(|e| e.locks(now) && (mode == LockMode::Write || e.mode == LockMode::Write));
        let vote = if r.version != read {
            Vote::Refused(Refusal::Version(r.version))
        } else if conflict {
            Vote::Refused(Refusal::Locked)
        } else {
            Vote::Prepared
        };
        if r.votes().len() >= MAX_VOTES {
            return (Vote::Refused(Refusal::TooManyVotes), false);
        }
        r.votes_mut().push(VoteEntry { tx, mode, vote, expires: now + lease });
        self.put(id, r);
        (vote, true)
    }

    /// Merges a replica copied from another replica (rebuild, repair): installed if its
    /// version is newer (votes stay this replica's own).
    pub fn merge_newer(&mut self, id: ItemId, version: Version, value: Option<&[u8]>) -> Merge {
        if version == Version(0) {
            return Merge::Kept;
        }
        let (install, result) = match self.items.get(&id) {
            None => (true, Merge::Installed),
            Some(r) if version > r.version => (true, Merge::Installed),
            Some(r) if version < r.version => (false, Merge::Kept),
            Some(r) if r.value.as_deref() == value => (false, Merge::Kept),
            Some(r) => {
                let mine = digest(&id.key, r.version, r.value.as_deref());
                let theirs = digest(&id.key, version, value);
                (theirs > mine, Merge::Diverged(theirs > mine))
            }
        };
        if install {
            let votes = self.items.get(&id).and_then(|r| r.votes.clone());
            self.put(id, Record { version, value: value.map(Box::from), votes });
        }
        result
    }

    /// Installs a record sent by the range's previous holder (a hand-over: its copy is the
    /// authority for the range, votes included). Refused — `Err` with the version held — if
    /// it would take the version back.
    pub fn merge_handover(&mut self, id: ItemId, r: Record) -> Result<(), Version> {
        match self.items.get(&id) {
            Some(old) if old.version > r.version => Err(old.version),
            _ => {
                self.put(id, r);
                Ok(())
            }
        }
    }

    /// Up to `max_items` replicas (and about `max_bytes` of keys and values, at least one) of
    /// `range`, in circular order from its start, after `after` if given. Returns them and
    /// whether the range is exhausted.
    pub fn batch(
        &self,
        range: Range,
        after: Option<&ItemId>,
        max_items: usize,
        max_bytes: usize,
    ) -> (Vec<(ItemId, Record)>, bool) {
        let mut out = Vec::new();
        let mut bytes = 0;
        for (id, r) in self.iter_from(range, after) {
            let size = Self::size_of(id, r);
            if out.len() >= max_items || (!out.is_empty() && bytes + size > max_bytes) {
                return (out, false);
            }
            bytes += size;
            out.push((id.clone(), r.clone()));
        }
        (out, true)
    }

    /// The replicas of `range` in circular order from its start, after `after` if given.
    pub fn iter_from<'a>(
        &'a self,
        range: Range,
        after: Option<&ItemId>,
    ) -> impl Iterator<Item = (&'a ItemId, &'a Record)> + 'a {
        let segs = segments(range);
        // The segment the cursor is in (later segments are read whole).
        let (first, cursor) = match after {
            Some(a) => match segs.iter().position(|(lo, hi)| *lo <= a.pos.0 && a.pos.0 <= *hi) {
                Some(i) => (i, Some(a.clone())),
                None => (segs.len(), None), // not in the range: nothing after it
            },
            None => (0, None),
        };
        let mut parts = Vec::new();
        for (i, (lo, hi)) in segs.into_iter().enumerate().skip(first) {
            let low = match (&cursor, i == first) {
                (Some(c), true) => Bound::Excluded(c.clone()),
                _ => Bound::Included(ItemId::first_at(lo)),
            };
            let high = if hi == u64::MAX {
                Bound::Unbounded
            } else {
                Bound::Excluded(ItemId::first_at(hi + 1))
            };
            parts.push(self.items.range((low, high)));
        }
        parts.into_iter().flatten()
    }

    /// How many replicas `range` holds.
    pub fn count_in(&self, range: Range) -> usize {
        self.iter_from(range, None).count()
    }

    /// Removes every replica of `range`; returns how many.
    pub fn remove_range(&mut self, range: Range) -> usize {
        let ids: Vec<ItemId> = self.iter_from(range, None).map(|(id, _)| id.clone()).collect();
        for id in &ids {
            if let Some(r) = self.items.remove(id) {
                self.bytes -= Self::size_of(id, &r);
            }
        }
        ids.len()
    }

    /// From now until `until`, replicas in `range` abstain from votes they have no record of
    /// (the range was rebuilt: its lost holder may have voted).
    pub fn abstain(&mut self, range: Range, until: Time, now: Time) {
        self.abstain.retain(|(_, t)| *t > now);
        if self.abstain.len() >= MAX_ABSTAIN {
            let latest = self.abstain.iter().map(|(_, t)| *t).max().unwrap_or(until).max(until);
            self.abstain = vec![(Range::full(RingId(0)), latest)];
            return;
        }
        self.abstain.push((range, until));
    }

    /// Whether a replica at `pos` abstains now.
    pub fn abstains(&self, pos: RingId, now: Time) -> bool {
        self.abstain.iter().any(|(r, t)| now < *t && r.contains(pos))
    }

    /// Every replica, in position order (for inspection).
    pub fn iter(&self) -> impl Iterator<Item = (&ItemId, &Record)> {
        self.items.iter()
    }

    /// Every replica whose position is in `set`, in position order.
    pub fn iter_set<'a>(
        &'a self,
        set: &'a RangeSet,
    ) -> impl Iterator<Item = (&'a ItemId, &'a Record)> + 'a {
        set.ranges().into_iter().flat_map(move |r| self.iter_from(r, None))
    }

    /// Removes every replica and returns them (for a live replacement of the component).
    pub fn take(&mut self) -> Store {
        std::mem::take(self)
    }

    /// Inserts a replica, or replaces it, whatever its version (for tests and state transfer).
    pub fn insert_raw(&mut self, id: ItemId, r: Record) {
        match self.items.entry(id) {
            Entry::Occupied(mut e) => {
                self.bytes -= Self::size_of(e.key(), e.get());
                self.bytes += Self::size_of(e.key(), &r);
                e.insert(r);
            }
            Entry::Vacant(e) => {
                self.bytes += Self::size_of(e.key(), &r);
                e.insert(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use selfman_core::Time;
    use selfman_ports::{
        LockMode, Range, Refusal, ReplicaOp, ReplicaOutcome, RingId, TxId, Version, Vote,
    };

    use super::{digest, ItemId, Merge, Record, Store};
    use crate::messages::MAX_VOTES;

    fn id(pos: u64, key: &str) -> ItemId {
        ItemId::new(RingId(pos), key.as_bytes())
    }

    fn write(s: &mut Store, pos: u64, key: &str, v: u64, value: &str) -> ReplicaOutcome {
        let op = ReplicaOp::Write { version: Version(v), value: Some(value.as_bytes().to_vec()) };
        s.apply(id(pos, key), &op, Time::ZERO).0
    }

    fn read(s: &Store, pos: u64, key: &str) -> (Version, Option<Vec<u8>>) {
        let r = s.get(&id(pos, key));
        (r.map_or(Version(0), |r| r.version), r.and_then(|r| r.value.clone()).map(|v| v.to_vec()))
    }

    fn t(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn writes_install_newer_versions_only() {
        let mut s = Store::new();
        assert_eq!(write(&mut s, 10, "a", 2, "x"), ReplicaOutcome::Applied);
        assert_eq!(write(&mut s, 10, "a", 1, "old"), ReplicaOutcome::Stale { current: Version(2) });
        assert_eq!(write(&mut s, 10, "a", 2, "x"), ReplicaOutcome::Current);
        assert_eq!(write(&mut s, 10, "a", 2, "y"), ReplicaOutcome::Stale { current: Version(2) });
        assert_eq!(read(&s, 10, "a"), (Version(2), Some(b"x".to_vec())));
        assert_eq!(write(&mut s, 10, "a", 3, "z"), ReplicaOutcome::Applied);
        // A delete is a versioned tombstone.
        let del = ReplicaOp::Write { version: Version(4), value: None };
        assert_eq!(s.apply(id(10, "a"), &del, Time::ZERO).0, ReplicaOutcome::Applied);
        assert_eq!(read(&s, 10, "a"), (Version(4), None));
        assert_eq!(write(&mut s, 10, "a", 3, "z"), ReplicaOutcome::Stale { current: Version(4) });
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn colliding_positions_are_distinct_items() {
        let mut s = Store::new();
        write(&mut s, 10, "a", 1, "x");
        write(&mut s, 10, "b", 5, "y");
        assert_eq!(read(&s, 10, "a").0, Version(1));
        assert_eq!(read(&s, 10, "b").0, Version(5));
        assert_eq!(s.count_in(Range::new(RingId(9), RingId(10))), 2);
    }

    #[test]
    fn a_range_is_read_in_circular_order_and_cut_out() {
        let mut s = Store::new();
        for p in [u64::MAX - 2, u64::MAX, 0, 3, 50, 100, 200] {
            write(&mut s, p, "k", 1, "v");
        }
        let wrap = Range::new(RingId(u64::MAX - 3), RingId(50));
        let order: Vec<u64> = s.iter_from(wrap, None).map(|(i, _)| i.pos.0).collect();
        assert_eq!(order, vec![u64::MAX - 2, u64::MAX, 0, 3, 50]);
        // In batches of two, resuming after the last one sent.
        let (b1, done1) = s.batch(wrap, None, 2, usize::MAX);
        assert!(!done1);
        let (b2, _) = s.batch(wrap, Some(&b1[1].0), 2, usize::MAX);
        let (b3, done3) = s.batch(wrap, Some(&b2[1].0), 2, usize::MAX);
        let got: Vec<u64> = b1.iter().chain(&b2).chain(&b3).map(|(i, _)| i.pos.0).collect();
        assert_eq!(got, order);
        assert!(done3);
        // A byte bound still sends one item.
        assert_eq!(s.batch(wrap, None, 10, 1).0.len(), 1);
        // The whole circle from a point in the middle.
        let full: Vec<u64> =
            s.iter_from(Range::full(RingId(50)), None).map(|(i, _)| i.pos.0).collect();
        assert_eq!(full, vec![100, 200, u64::MAX - 2, u64::MAX, 0, 3, 50]);
        // Cut out, and the rest stays.
        assert_eq!(s.remove_range(wrap), 5);
        assert_eq!(s.len(), 2);
        assert_eq!(s.count_in(Range::full(RingId(0))), 2);
        assert_eq!(s.payload_bytes(), 2 * 2);
    }

    #[test]
    fn merges_keep_the_newer_version_and_agree_on_divergence() {
        let mut a = Store::new();
        let mut b = Store::new();
        write(&mut a, 1, "k", 3, "new");
        assert_eq!(a.merge_newer(id(1, "k"), Version(2), Some(b"old")), Merge::Kept);
        assert_eq!(a.merge_newer(id(1, "k"), Version(4), Some(b"newer")), Merge::Installed);
        assert_eq!(a.merge_newer(id(2, "n"), Version(1), None), Merge::Installed);
        assert_eq!(a.merge_newer(id(3, "z"), Version(0), None), Merge::Kept);
        // Two replicas holding version 5 with different values end with the same one.
        write(&mut a, 7, "d", 5, "left");
        write(&mut b, 7, "d", 5, "right");
        let ra = a.merge_newer(id(7, "d"), Version(5), Some(b"right"));
        let rb = b.merge_newer(id(7, "d"), Version(5), Some(b"left"));
        assert!(matches!(ra, Merge::Diverged(_)) && matches!(rb, Merge::Diverged(_)));
        assert_eq!(read(&a, 7, "d"), read(&b, 7, "d"));
        // A hand-over never takes a version back.
        assert_eq!(a.merge_handover(id(1, "k"), Record::new(Version(1), None)), Err(Version(4)));
        assert_eq!(a.merge_handover(id(1, "k"), Record::new(Version(4), None)), Ok(()));
        assert_eq!(read(&a, 1, "k"), (Version(4), None));
    }

    #[test]
    fn votes_lock_by_mode_and_are_remembered() {
        let mut s = Store::new();
        write(&mut s, 1, "k", 2, "v");
        let lease = Duration::from_secs(5);
        let vote = |s: &mut Store, tx, mode, read, now| {
            s.vote(id(1, "k"), TxId(tx), mode, Version(read), lease, now).0
        };
        assert_eq!(vote(&mut s, 1, LockMode::Read, 2, t(0)), Vote::Prepared);
        assert_eq!(vote(&mut s, 2, LockMode::Read, 2, t(0)), Vote::Prepared, "read locks share");
        assert_eq!(vote(&mut s, 3, LockMode::Write, 2, t(0)), Vote::Refused(Refusal::Locked));
        assert_eq!(
            vote(&mut s, 4, LockMode::Read, 1, t(0)),
            Vote::Refused(Refusal::Version(Version(2)))
        );
        // Asked again, the same answers, even after the conflicting locks are gone.
        let release =
            |s: &mut Store, tx| s.apply(id(1, "k"), &ReplicaOp::Release { tx: TxId(tx) }, t(1)).0;
        assert_eq!(release(&mut s, 1), ReplicaOutcome::Released);
        assert_eq!(release(&mut s, 2), ReplicaOutcome::Released);
        assert_eq!(vote(&mut s, 3, LockMode::Write, 2, t(2)), Vote::Refused(Refusal::Locked));
        assert_eq!(vote(&mut s, 5, LockMode::Write, 2, t(2)), Vote::Prepared);
        let read_op = s.apply(id(1, "k"), &ReplicaOp::Read, t(3)).0;
        assert!(matches!(read_op, ReplicaOutcome::Record { lock: Some(LockMode::Write), .. }));
        assert_eq!(vote(&mut s, 6, LockMode::Read, 2, t(3)), Vote::Refused(Refusal::Locked));
        // The lease ends: the lock no longer blocks, the vote is still remembered.
        assert_eq!(vote(&mut s, 7, LockMode::Read, 2, t(5_001)), Vote::Refused(Refusal::Locked));
        assert_eq!(vote(&mut s, 8, LockMode::Read, 2, t(5_002)), Vote::Prepared);
        assert_eq!(vote(&mut s, 5, LockMode::Write, 2, t(5_003)), Vote::Prepared);
        // Commit installs the new version and drops the vote.
        let commit =
            ReplicaOp::Commit { tx: TxId(5), version: Version(3), value: Some(b"w".to_vec()) };
        assert_eq!(s.apply(id(1, "k"), &commit, t(5_003)).0, ReplicaOutcome::Applied);
        assert_eq!(read(&s, 1, "k"), (Version(3), Some(b"w".to_vec())));
        assert!(s.get(&id(1, "k")).unwrap().votes().iter().all(|v| v.tx != TxId(5)));
    }

    #[test]
    fn a_vote_on_a_missing_item_creates_a_record_that_goes_with_its_votes() {
        let mut s = Store::new();
        let lease = Duration::from_secs(1);
        assert_eq!(
            s.vote(id(9, "new"), TxId(1), LockMode::Write, Version(0), lease, t(0)).0,
            Vote::Prepared
        );
        assert_eq!(s.len(), 1);
        s.apply(id(9, "new"), &ReplicaOp::Release { tx: TxId(1) }, t(1));
        assert_eq!(s.len(), 0, "a version-0 record without votes is not kept");
    }

    #[test]
    fn a_full_vote_table_refuses_without_remembering() {
        let mut s = Store::new();
        let lease = Duration::from_secs(1);
        for tx in 0..MAX_VOTES as u64 {
            s.vote(id(1, "k"), TxId(tx), LockMode::Read, Version(0), lease, t(0));
        }
        let v = s.vote(id(1, "k"), TxId(999), LockMode::Read, Version(0), lease, t(0)).0;
        assert_eq!(v, Vote::Refused(Refusal::TooManyVotes));
        assert_eq!(s.get(&id(1, "k")).unwrap().votes().len(), MAX_VOTES);
    }

    #[test]
    fn a_rebuilt_range_abstains_from_votes_it_has_no_record_of() {
        let mut s = Store::new();
        let lease = Duration::from_secs(1);
        s.abstain(Range::new(RingId(0), RingId(100)), t(1000), t(0));
        assert_eq!(
            s.vote(id(50, "k"), TxId(1), LockMode::Read, Version(0), lease, t(10)).0,
            Vote::Abstain
        );
        assert_eq!(
            s.vote(id(150, "k"), TxId(1), LockMode::Read, Version(0), lease, t(10)).0,
            Vote::Prepared
        );
        assert_eq!(
            s.vote(id(50, "k"), TxId(1), LockMode::Read, Version(0), lease, t(1000)).0,
            Vote::Prepared
        );
        // Too many windows collapse into one over the whole circle.
        for i in 0..100u64 {
            s.abstain(Range::new(RingId(i * 10), RingId(i * 10 + 1)), t(5000), t(1001));
        }
        assert!(s.abstains(RingId(u64::MAX / 2), t(4000)));
    }

    #[test]
    fn digests_depend_on_content_not_position() {
        let a = digest(b"k", Version(1), Some(b"v"));
        assert_eq!(a, digest(b"k", Version(1), Some(b"v")));
        assert_ne!(a, digest(b"k", Version(2), Some(b"v")));
        assert_ne!(a, digest(b"k", Version(1), None));
        assert_ne!(digest(b"ab", Version(1), Some(b"")), digest(b"a", Version(1), Some(b"b")));
    }
}
