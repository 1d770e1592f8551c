//! The local replica store: every replica this node holds, ordered by position on the ring so
//! that a range can be read in order, cut out and moved: [`Store`].
//!
//! One record per replica, identified by [`ItemId`] (the replica key, then the item's key
//! bytes, so two keys whose hashes collide are still two items). A record holds the value, the
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
//! Memory per item (measured by `tests/store_memory.rs`): the map is keyed by position alone
//! (8 bytes) and holds a 32-byte slot; key and value share one allocation behind a 1–3 byte
//! length header, so an item costs one heap block, not two. Items whose positions collide
//! share a slot, kept sorted by key. See `docs/replication.md` for the figure.
//!
//! The store lends its replicas as views ([`ItemRef`], [`RecordRef`]); [`Record`] is the
//! owned form a transfer carries.

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

    /// This id, borrowed.
    pub fn view(&self) -> ItemRef<'_> {
        ItemRef { pos: self.pos, key: &self.key }
    }
}

/// A replica's identity as the store lends it (see [`ItemId`]); ordered like [`ItemId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemRef<'a> {
    /// The replica key.
    pub pos: RingId,
    /// The item's key.
    pub key: &'a [u8],
}

impl ItemRef<'_> {
    /// The owned id.
    pub fn to_id(&self) -> ItemId {
        ItemId::new(self.pos, self.key)
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

/// The strongest live lock among `votes`.
fn lock_of(votes: &[VoteEntry], now: Time) -> Option<LockMode> {
    let live = votes.iter().filter(|v| v.locks(now));
    live.map(|v| v.mode).max_by_key(|m| matches!(m, LockMode::Write))
}

/// One replica of one item, owned (as a transfer carries it, or to insert one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The version (`Version(0)`: never written).
    pub version: Version,
    /// The value (`None`: never written, or deleted).
    pub value: Option<Box<[u8]>>,
    votes: Vec<VoteEntry>,
}

impl Record {
    /// A record with `version` and `value` and no votes.
    pub fn new(version: Version, value: Option<Box<[u8]>>) -> Record {
        Record { version, value, votes: Vec::new() }
    }

    /// The votes it remembers.
    pub fn votes(&self) -> &[VoteEntry] {
        &self.votes
    }

    /// This record with `votes` (as received in a transfer).
    pub fn with_votes(mut self, votes: Vec<VoteEntry>) -> Record {
        self.votes = votes;
        self
    }

    /// The strongest live lock.
    pub fn lock(&self, now: Time) -> Option<LockMode> {
        lock_of(&self.votes, now)
    }
}

/// One replica of one item as the store lends it (see [`Record`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The version (`Version(0)`: never written).
    pub version: Version,
    /// The value (`None`: never written, or deleted).
    pub value: Option<&'a [u8]>,
    votes: &'a [VoteEntry],
}

impl<'a> RecordRef<'a> {
    /// The votes it remembers.
    pub fn votes(&self) -> &'a [VoteEntry] {
        self.votes
    }

    /// The strongest live lock.
    pub fn lock(&self, now: Time) -> Option<LockMode> {
        lock_of(self.votes, now)
    }

    /// The owned record.
    pub fn to_record(&self) -> Record {
        Record {
            version: self.version,
            value: self.value.map(Box::from),
            votes: self.votes.to_vec(),
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

/// A replica as the store holds it: key and value share one allocation,
/// `[header][key][value]`, the header a LEB128 varint of `key length × 2 + (value present)`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stored {
    version: Version,
    data: Box<[u8]>,
    // Boxed so that the many records without votes pay 8 bytes, not a 24-byte `Vec`.
    #[allow(clippy::box_collection)]
    votes: Option<Box<Vec<VoteEntry>>>,
}

/// Encodes key and value into one buffer (see [`Stored`]).
fn pack(key: &[u8], value: Option<&[u8]>) -> Box<[u8]> {
    let mut head = ((key.len() as u64) << 1) | u64::from(value.is_some());
    let value = value.unwrap_or(&[]);
    let mut out = Vec::with_capacity(10 + key.len() + value.len());
    loop {
        let byte = (head & 0x7f) as u8;
        head >>= 7;
        if head == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out.into_boxed_slice()
}

/// Splits a buffer made by [`pack`] into key and value. A buffer `pack` did not make (it
/// cannot happen) reads as its whole length of key and no value rather than panicking.
fn unpack(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut head = 0u64;
    for (i, b) in data.iter().enumerate().take(10) {
        head |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let rest = &data[i + 1..];
            let key_len = usize::try_from(head >> 1).unwrap_or(usize::MAX);
            if key_len > rest.len() {
                break;
            }
            let (key, value) = rest.split_at(key_len);
            return (key, (head & 1 == 1).then_some(value));
        }
    }
    (data, None)
}

impl Stored {
    fn new(key: &[u8], version: Version, value: Option<&[u8]>, votes: Vec<VoteEntry>) -> Stored {
        let votes = (!votes.is_empty()).then(|| Box::new(votes));
        Stored { version, data: pack(key, value), votes }
    }

    fn key(&self) -> &[u8] {
        unpack(&self.data).0
    }

    fn value(&self) -> Option<&[u8]> {
        unpack(&self.data).1
    }

    fn votes(&self) -> &[VoteEntry] {
        self.votes.as_deref().map_or(&[], |v| v.as_slice())
    }

    /// Bytes of key and value.
    fn payload(&self) -> usize {
        let (k, v) = unpack(&self.data);
        k.len() + v.map_or(0, <[u8]>::len)
    }

    fn view(&self) -> RecordRef<'_> {
        RecordRef { version: self.version, value: self.value(), votes: self.votes() }
    }

    fn is_empty(&self) -> bool {
        self.version == Version(0) && self.votes.is_none()
    }
}

/// The replicas at one position: almost always one; items whose replica keys collide are kept
/// sorted by key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    One(Stored),
    // Boxed so that a slot is no larger than one record.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Stored>>),
}

impl Slot {
    fn all(&self) -> &[Stored] {
        match self {
            Slot::One(s) => std::slice::from_ref(s),
            Slot::Many(v) => v,
        }
    }

    fn find(&self, key: &[u8]) -> Option<&Stored> {
        self.all().iter().find(|s| s.key() == key)
    }

    fn find_mut(&mut self, key: &[u8]) -> Option<&mut Stored> {
        match self {
            Slot::One(s) => (s.key() == key).then_some(s),
            Slot::Many(v) => v.iter_mut().find(|s| s.key() == key),
        }
    }

    /// Inserts `s`, or replaces the record of its key; returns the replaced one.
    fn insert(&mut self, s: Stored) -> Option<Stored> {
        match self {
            Slot::One(old) if old.key() == s.key() => Some(std::mem::replace(old, s)),
            Slot::One(old) => {
                let old = old.clone();
                let mut v = vec![old, s];
                v.sort_by(|a, b| a.key().cmp(b.key()));
                *self = Slot::Many(Box::new(v));
                None
            }
            Slot::Many(v) => match v.binary_search_by(|x| x.key().cmp(s.key())) {
                Ok(i) => Some(std::mem::replace(&mut v[i], s)),
                Err(i) => {
                    v.insert(i, s);
                    None
                }
            },
        }
    }

    /// Removes the record of `key` from a slot of several (a slot of one is removed whole by
    /// the store); returns it.
    fn remove_from_many(&mut self, key: &[u8]) -> Option<Stored> {
        let Slot::Many(v) = self else { return None };
        let i = v.binary_search_by(|x| x.key().cmp(key)).ok()?;
        let gone = v.remove(i);
        if v.len() == 1 {
            let last = v.remove(0);
            *self = Slot::One(last);
        }
        Some(gone)
    }
}

/// The replicas this node holds, ordered by position.
#[derive(Clone, Debug, Default)]
pub struct Store {
    items: BTreeMap<u64, Slot>,
    len: usize,
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
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of keys and values held.
    pub fn payload_bytes(&self) -> usize {
        self.bytes
    }

    /// The record of `id`.
    pub fn get(&self, id: &ItemId) -> Option<RecordRef<'_>> {
        self.stored(id).map(Stored::view)
    }

    fn stored(&self, id: &ItemId) -> Option<&Stored> {
        self.items.get(&id.pos.0).and_then(|s| s.find(&id.key))
    }

    fn remove(&mut self, id: &ItemId) -> Option<Stored> {
        let slot = self.items.get_mut(&id.pos.0)?;
        let gone = match slot {
            Slot::One(s) if *s.key() == *id.key => match self.items.remove(&id.pos.0) {
                Some(Slot::One(s)) => Some(s),
                _ => None,
            },
            Slot::One(_) => None,
            Slot::Many(_) => slot.remove_from_many(&id.key),
        };
        if let Some(g) = &gone {
            self.len -= 1;
            self.bytes -= g.payload();
        }
        gone
    }

    /// Stores `s` at `pos` (or removes the record there if `s` is empty).
    fn put(&mut self, pos: RingId, s: Stored) {
        if s.is_empty() {
            self.remove(&ItemId::new(pos, s.key()));
            return;
        }
        self.bytes += s.payload();
        let old = match self.items.entry(pos.0) {
            Entry::Vacant(e) => {
                e.insert(Slot::One(s));
                None
            }
            Entry::Occupied(mut e) => e.get_mut().insert(s),
        };
        match old {
            Some(o) => self.bytes -= o.payload(),
            None => self.len += 1,
        }
    }

    /// Replaces the votes of `id`'s record (created with version 0 if missing, removed if it
    /// ends with version 0 and no votes).
    fn set_votes(&mut self, id: &ItemId, votes: Vec<VoteEntry>) {
        let votes = (!votes.is_empty()).then(|| Box::new(votes));
        let slot = self.items.get_mut(&id.pos.0).and_then(|s| s.find_mut(&id.key));
        match slot {
            Some(s) if votes.is_some() || s.version != Version(0) => s.votes = votes,
            Some(_) => {
                self.remove(id);
            }
            None if votes.is_some() => {
                let s = Stored { version: Version(0), data: pack(&id.key, None), votes };
                self.put(id.pos, s);
            }
            None => {}
        }
    }

    /// Applies a user operation at this replica; also says whether the record changed (a
    /// hand-over in progress must then send it again).
    pub fn apply(&mut self, id: ItemId, op: &ReplicaOp, now: Time) -> (ReplicaOutcome, bool) {
        match op {
            ReplicaOp::Read => {
                let r = self.get(&id);
                let outcome = ReplicaOutcome::Record {
                    version: r.map_or(Version(0), |r| r.version),
                    value: r.and_then(|r| r.value).map(<[u8]>::to_vec),
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
                let had_vote = self.drop_vote(&id, *tx);
                let (outcome, wrote) = self.write(id, *version, value.as_deref());
                (outcome, wrote || had_vote)
            }
            ReplicaOp::Release { tx } => {
                let changed = self.drop_vote(&id, *tx);
                (ReplicaOutcome::Released, changed)
            }
        }
    }

    /// Forgets `tx`'s vote at `id`; says whether there was one.
    fn drop_vote(&mut self, id: &ItemId, tx: TxId) -> bool {
        let Some(s) = self.stored(id) else { return false };
        if !s.votes().iter().any(|v| v.tx == tx) {
            return false;
        }
        let votes = s.votes().iter().filter(|v| v.tx != tx).copied().collect();
        self.set_votes(id, votes);
        true
    }

    /// Installs `(version, value)` if newer.
    pub fn write(
        &mut self,
        id: ItemId,
        version: Version,
        value: Option<&[u8]>,
    ) -> (ReplicaOutcome, bool) {
        match self.stored(&id) {
            Some(r) if r.version > version => (ReplicaOutcome::Stale { current: r.version }, false),
            Some(r) if r.version == version => {
                if r.value() == value {
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
                let s = Stored { version, data: pack(&id.key, value), votes };
                self.put(id.pos, s);
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
        let (version, mut votes) = match self.stored(&id) {
            Some(s) => (s.version, s.votes().to_vec()),
            None => (Version(0), Vec::new()),
        };
        // Votes whose lease ended more than `VOTE_MEMORY` ago are forgotten.
        votes.retain(|e| now < e.expires + VOTE_MEMORY);
        if let Some(e) = votes.iter().find(|e| e.tx == tx) {
            return (e.vote, false);
        }
        if self.abstains(id.pos, now) {
            return (Vote::Abstain, false);
        }
        let conflict = votes
            .iter()
            .any(|e| e.locks(now) && (mode == LockMode::Write || e.mode == LockMode::Write));
        let vote = if version != read {
            Vote::Refused(Refusal::Version(version))
        } else if conflict {
            Vote::Refused(Refusal::Locked)
        } else {
            Vote::Prepared
        };
        if votes.len() >= MAX_VOTES {
            return (Vote::Refused(Refusal::TooManyVotes), false);
        }
        // Most locked items hold one vote: room for exactly that many more.
        votes.reserve_exact(1);
        votes.push(VoteEntry { tx, mode, vote, expires: now + lease });
        self.set_votes(&id, votes);
        (vote, true)
    }

    /// Merges a replica copied from another replica (rebuild, repair): installed if its
    /// version is newer (votes stay this replica's own).
    pub fn merge_newer(&mut self, id: ItemId, version: Version, value: Option<&[u8]>) -> Merge {
        if version == Version(0) {
            return Merge::Kept;
        }
        let (install, result) = match self.stored(&id) {
            None => (true, Merge::Installed),
            Some(r) if version > r.version => (true, Merge::Installed),
            Some(r) if version < r.version => (false, Merge::Kept),
            Some(r) if r.value() == value => (false, Merge::Kept),
            Some(r) => {
                let mine = digest(&id.key, r.version, r.value());
                let theirs = digest(&id.key, version, value);
                (theirs > mine, Merge::Diverged(theirs > mine))
            }
        };
        if install {
            let votes = self.stored(&id).and_then(|r| r.votes.clone());
            self.put(id.pos, Stored { version, data: pack(&id.key, value), votes });
        }
        result
    }

    /// Installs a record sent by the range's previous holder (a hand-over: its copy is the
    /// authority for the range, votes included). Refused — `Err` with the version held — if
    /// it would take the version back.
    pub fn merge_handover(&mut self, id: ItemId, r: Record) -> Result<(), Version> {
        match self.stored(&id) {
            Some(old) if old.version > r.version => Err(old.version),
            _ => {
                self.insert_raw(id, r);
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
    ) -> (Vec<(ItemRef<'_>, RecordRef<'_>)>, bool) {
        let mut out = Vec::new();
        let mut bytes = 0;
        for (id, r) in self.iter_from(range, after) {
            let size = id.key.len() + r.value.map_or(0, <[u8]>::len);
            if out.len() >= max_items || (!out.is_empty() && bytes + size > max_bytes) {
                return (out, false);
            }
            bytes += size;
            out.push((id, r));
        }
        (out, true)
    }

    /// The replicas of `range` in circular order from its start, after `after` if given.
    pub fn iter_from<'a>(
        &'a self,
        range: Range,
        after: Option<&ItemId>,
    ) -> impl Iterator<Item = (ItemRef<'a>, RecordRef<'a>)> + 'a {
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
            // The cursor's own position: only the items after it (by key), taken now; then
            // the positions after it.
            let mut head = Vec::new();
            let low = match (&cursor, i == first) {
                (Some(c), true) => {
                    if let Some(slot) = self.items.get(&c.pos.0) {
                        let after = slot.all().iter().filter(|s| *s.key() > *c.key);
                        head.extend(
                            after.map(|s| (ItemRef { pos: c.pos, key: s.key() }, s.view())),
                        );
                    }
                    Bound::Excluded(c.pos.0)
                }
                _ => Bound::Included(lo),
            };
            let rest = self.items.range((low, Bound::Included(hi))).flat_map(|(pos, slot)| {
                slot.all().iter().map(|s| (ItemRef { pos: RingId(*pos), key: s.key() }, s.view()))
            });
            parts.push(head.into_iter().chain(rest));
        }
        parts.into_iter().flatten()
    }

    /// How many replicas `range` holds.
    pub fn count_in(&self, range: Range) -> usize {
        segments(range)
            .into_iter()
            .map(|(lo, hi)| self.items.range(lo..=hi).map(|(_, s)| s.all().len()).sum::<usize>())
            .sum()
    }

    /// Removes every replica of `range`; returns how many.
    pub fn remove_range(&mut self, range: Range) -> usize {
        let mut removed = 0;
        for (lo, hi) in segments(range) {
            let positions: Vec<u64> = self.items.range(lo..=hi).map(|(p, _)| *p).collect();
            for p in positions {
                if let Some(slot) = self.items.remove(&p) {
                    for s in slot.all() {
                        self.len -= 1;
                        self.bytes -= s.payload();
                        removed += 1;
                    }
                }
            }
        }
        removed
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
    pub fn iter(&self) -> impl Iterator<Item = (ItemRef<'_>, RecordRef<'_>)> {
        self.items.iter().flat_map(|(pos, slot)| {
            slot.all().iter().map(|s| (ItemRef { pos: RingId(*pos), key: s.key() }, s.view()))
        })
    }

    /// Every replica whose position is in `set`, in position order.
    pub fn iter_set<'a>(
        &'a self,
        set: &'a RangeSet,
    ) -> impl Iterator<Item = (ItemRef<'a>, RecordRef<'a>)> + 'a {
        set.ranges().into_iter().flat_map(move |r| self.iter_from(r, None))
    }

    /// Removes every replica and returns them (for a live replacement of the component).
    pub fn take(&mut self) -> Store {
        std::mem::take(self)
    }

    /// Inserts a replica, or replaces it, whatever its version (for tests and state transfer);
    /// a record with version 0 and no votes removes it.
    pub fn insert_raw(&mut self, id: ItemId, r: Record) {
        let s = Stored::new(&id.key, r.version, r.value.as_deref(), r.votes);
        self.put(id.pos, s);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use selfman_core::Time;
    use selfman_ports::{
        LockMode, Range, Refusal, ReplicaOp, ReplicaOutcome, RingId, TxId, Version, Vote,
    };

    use super::{digest, pack, unpack, ItemId, Merge, Record, Slot, Store, Stored};
    use crate::messages::{MAX_KEY_BYTES, MAX_VALUE_BYTES, MAX_VOTES};

    fn id(pos: u64, key: &str) -> ItemId {
        ItemId::new(RingId(pos), key.as_bytes())
    }

    fn write(s: &mut Store, pos: u64, key: &str, v: u64, value: &str) -> ReplicaOutcome {
        let op = ReplicaOp::Write { version: Version(v), value: Some(value.as_bytes().to_vec()) };
        s.apply(id(pos, key), &op, Time::ZERO).0
    }

    fn read(s: &Store, pos: u64, key: &str) -> (Version, Option<Vec<u8>>) {
        let r = s.get(&id(pos, key));
        (r.map_or(Version(0), |r| r.version), r.and_then(|r| r.value).map(|v| v.to_vec()))
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
        let (b2, _) = s.batch(wrap, Some(&b1[1].0.to_id()), 2, usize::MAX);
        let (b3, done3) = s.batch(wrap, Some(&b2[1].0.to_id()), 2, usize::MAX);
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

    #[test]
    fn key_and_value_share_one_buffer_and_come_back_unchanged() {
        let big_key = vec![1u8; MAX_KEY_BYTES];
        let big_value = vec![2u8; MAX_VALUE_BYTES];
        let cases: Vec<(&[u8], Option<&[u8]>)> = vec![
            (b"", None),
            (b"", Some(b"")),
            (b"k", None),
            (b"k", Some(b"")),
            (b"", Some(b"v")),
            (b"key", Some(b"value")),
            (&big_key[..63], Some(b"x")),
            (&big_key[..64], Some(b"x")),
            (&big_key[..8191], None),
            (&big_key[..8192], Some(b"")),
            (&big_key, Some(&big_value)),
        ];
        for (key, value) in cases {
            let data = pack(key, value);
            assert_eq!(unpack(&data), (key, value), "{} {:?}", key.len(), value.map(<[u8]>::len));
            // The header is the only cost: 1 byte up to 63-byte keys, 2 up to 8191.
            let head = data.len() - key.len() - value.map_or(0, <[u8]>::len);
            assert_eq!(
                head,
                if key.len() < 64 {
                    1
                } else if key.len() < 8192 {
                    2
                } else {
                    3
                }
            );
        }
        // A buffer that `pack` did not make reads as a key without a value, never panics.
        assert_eq!(unpack(&[]), (&[][..], None));
        assert_eq!(unpack(&[0x80, 0x80]), (&[0x80, 0x80][..], None));
        assert_eq!(unpack(&[20, 1]), (&[20, 1][..], None));
        assert_eq!(unpack(&[0xff; 12]), (&[0xff; 12][..], None));
    }

    #[test]
    fn a_slot_is_no_larger_than_one_record() {
        assert_eq!(std::mem::size_of::<Stored>(), 32);
        assert_eq!(std::mem::size_of::<Slot>(), 32);
    }

    #[test]
    fn empty_keys_empty_values_and_deletes_are_distinct_records() {
        let mut s = Store::new();
        let at = |k: &[u8]| ItemId::new(RingId(5), k);
        s.write(at(b""), Version(1), Some(b""));
        s.write(at(b"e"), Version(1), Some(b""));
        s.write(at(b"d"), Version(1), None);
        s.write(at(b"v"), Version(1), Some(b"x"));
        assert_eq!(s.len(), 4);
        assert_eq!(s.get(&at(b"")).unwrap().value, Some(&b""[..]));
        assert_eq!(s.get(&at(b"e")).unwrap().value, Some(&b""[..]));
        assert_eq!(s.get(&at(b"d")).unwrap().value, None);
        assert_eq!(s.get(&at(b"v")).unwrap().value, Some(&b"x"[..]));
        assert!(s.get(&at(b"x")).is_none());
        assert_eq!(s.payload_bytes(), 1 + 1 + 2);
        // An empty value and a delete are different contents at one version.
        assert_eq!(
            s.write(at(b"e"), Version(1), None).0,
            ReplicaOutcome::Stale { current: Version(1) }
        );
        assert_eq!(
            s.write(at(b"d"), Version(1), Some(b"")).0,
            ReplicaOutcome::Stale { current: Version(1) }
        );
        assert_eq!(s.write(at(b"e"), Version(1), Some(b"")).0, ReplicaOutcome::Current);
    }

    #[test]
    fn colliding_items_stay_sorted_and_leave_one_by_one() {
        let mut s = Store::new();
        for k in ["m", "c", "x", "a"] {
            write(&mut s, 7, k, 1, k);
        }
        write(&mut s, 6, "z", 1, "z");
        write(&mut s, 8, "a", 1, "a");
        let order: Vec<(u64, Vec<u8>)> = s.iter().map(|(i, _)| (i.pos.0, i.key.to_vec())).collect();
        let want: Vec<(u64, Vec<u8>)> =
            [(6, "z"), (7, "a"), (7, "c"), (7, "m"), (7, "x"), (8, "a")]
                .iter()
                .map(|(p, k)| (*p, k.as_bytes().to_vec()))
                .collect();
        assert_eq!(order, want);
        // A cursor inside the colliding ones resumes after it.
        let rest: Vec<Vec<u8>> = s
            .iter_from(Range::full(RingId(0)), Some(&id(7, "c")))
            .map(|(i, _)| i.key.to_vec())
            .collect();
        assert_eq!(rest, vec![b"m".to_vec(), b"x".to_vec(), b"a".to_vec()]);
        // Values, updates and votes of one colliding item leave the others alone.
        assert_eq!(write(&mut s, 7, "c", 2, "C"), ReplicaOutcome::Applied);
        let lease = Duration::from_secs(1);
        assert_eq!(
            s.vote(id(7, "m"), TxId(1), LockMode::Write, Version(1), lease, t(0)).0,
            Vote::Prepared
        );
        assert_eq!(read(&s, 7, "c"), (Version(2), Some(b"C".to_vec())));
        assert_eq!(read(&s, 7, "m"), (Version(1), Some(b"m".to_vec())));
        assert_eq!(s.get(&id(7, "m")).unwrap().votes().len(), 1);
        assert!(s.get(&id(7, "x")).unwrap().votes().is_empty());
        // Leaving one by one, down to none; the counts follow.
        for (k, left) in [("c", 5), ("x", 4), ("a", 3), ("m", 2)] {
            let op = ReplicaOp::Release { tx: TxId(1) };
            s.apply(id(7, k), &op, t(1));
            s.insert_raw(id(7, k), Record::default());
            assert_eq!(s.len(), left, "{k}");
            assert!(s.get(&id(7, k)).is_none());
        }
        assert_eq!(s.count_in(Range::full(RingId(0))), 2);
        assert_eq!(s.payload_bytes(), 4);
        assert_eq!(s.remove_range(Range::full(RingId(0))), 2);
        assert!(s.is_empty());
        assert_eq!(s.payload_bytes(), 0);
    }

    #[test]
    fn a_hand_over_record_keeps_its_votes_and_a_later_write_keeps_them_too() {
        let mut s = Store::new();
        let vote = super::VoteEntry {
            tx: TxId(3),
            mode: LockMode::Write,
            vote: Vote::Prepared,
            expires: t(1000),
        };
        let r = Record::new(Version(2), Some(b"v".to_vec().into())).with_votes(vec![vote]);
        assert_eq!(s.merge_handover(id(1, "k"), r.clone()), Ok(()));
        assert_eq!(s.get(&id(1, "k")).unwrap().to_record(), r);
        assert_eq!(write(&mut s, 1, "k", 3, "w"), ReplicaOutcome::Applied);
        assert_eq!(s.get(&id(1, "k")).unwrap().lock(t(10)), Some(LockMode::Write));
        assert_eq!(s.get(&id(1, "k")).unwrap().lock(t(1000)), None);
    }
}
