//! A model of one node's replica records, with the semantics `ReplicaOp` documents in
//! `selfman_ports` (and `selfman_replication::Store` implements): versions only grow; a vote
//! is prepared iff the replica holds the version read and no other live lock conflicts (a
//! write lock excludes every other vote, a read lock excludes write locks), is remembered
//! (except `TooManyVotes`) until committed or released or a minute after its lease, and locks
//! while its lease lasts; a range marked as rebuilt abstains from votes it has no record of.
//!
//! A component crate may not depend on another (`.ci/check-deps.py`), so the unit world uses
//! this model; `tests/tests/transactions.rs` checks the real store against the same table of
//! votes, and runs the protocol over it.

use std::collections::BTreeMap;
use std::time::Duration;

use selfman_core::Time;
use selfman_ports::{
    LockMode, Range, Refusal, ReplicaOp, ReplicaOutcome, RingId, TxId, Version, Vote,
};

/// Votes one record remembers at most (as the real store).
const MAX_VOTES: usize = 64;

/// How long a vote is remembered after its lease.
const VOTE_MEMORY: Duration = Duration::from_secs(60);

/// A replica's place: its replica key and the item's key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ItemId {
    pub(crate) pos: RingId,
    pub(crate) key: Vec<u8>,
}

impl ItemId {
    pub(crate) fn new(pos: RingId, key: &[u8]) -> ItemId {
        ItemId { pos, key: key.to_vec() }
    }
}

/// A remembered vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VoteEntry {
    pub(crate) tx: TxId,
    pub(crate) mode: LockMode,
    pub(crate) vote: Vote,
    pub(crate) expires: Time,
}

impl VoteEntry {
    fn locks(&self, now: Time) -> bool {
        self.vote == Vote::Prepared && now < self.expires
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Record {
    pub(crate) version: Version,
    pub(crate) value: Option<Box<[u8]>>,
    votes: Vec<VoteEntry>,
}

impl Record {
    pub(crate) fn votes(&self) -> &[VoteEntry] {
        &self.votes
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Store {
    items: BTreeMap<ItemId, Record>,
    abstain: Vec<(Range, Time)>,
}

impl Store {
    pub(crate) fn new() -> Store {
        Store::default()
    }

    pub(crate) fn get(&self, id: &ItemId) -> Option<&Record> {
        self.items.get(id)
    }

    pub(crate) fn abstain(&mut self, range: Range, until: Time, _now: Time) {
        self.abstain.push((range, until));
    }

    fn write(r: &mut Record, version: Version, value: &Option<Vec<u8>>) -> ReplicaOutcome {
        let value: Option<Box<[u8]>> = value.as_deref().map(Box::from);
        if version > r.version {
            r.version = version;
            r.value = value;
            ReplicaOutcome::Applied
        } else if version == r.version && value == r.value {
            ReplicaOutcome::Current
        } else {
            ReplicaOutcome::Stale { current: r.version }
        }
    }

    pub(crate) fn apply(
        &mut self,
        id: ItemId,
        op: &ReplicaOp,
        now: Time,
    ) -> (ReplicaOutcome, bool) {
        let abstains = self.abstain.iter().any(|(r, t)| now < *t && r.contains(id.pos));
        let r = self.items.entry(id).or_default();
        r.votes.retain(|v| now < v.expires + VOTE_MEMORY);
        let outcome = match op {
            ReplicaOp::Read => {
                let live = r.votes.iter().filter(|v| v.locks(now));
                let lock = live.map(|v| v.mode).max_by_key(|m| matches!(m, LockMode::Write));
                ReplicaOutcome::Record {
                    version: r.version,
                    value: r.value.as_deref().map(<[u8]>::to_vec),
                    lock,
                }
            }
            ReplicaOp::Write { version, value } => Self::write(r, *version, value),
            ReplicaOp::Vote { tx, mode, read, lease_ms } => {
                if let Some(e) = r.votes.iter().find(|e| e.tx == *tx) {
                    return (ReplicaOutcome::Voted(e.vote), false);
                }
                if abstains {
                    return (ReplicaOutcome::Voted(Vote::Abstain), false);
                }
                let conflict = r.votes.iter().any(|e| {
                    e.locks(now) && (*mode == LockMode::Write || e.mode == LockMode::Write)
                });
                let vote = if r.version != *read {
                    Vote::Refused(Refusal::Version(r.version))
                } else if conflict {
                    Vote::Refused(Refusal::Locked)
                } else {
                    Vote::Prepared
                };
                if r.votes.len() >= MAX_VOTES {
                    return (ReplicaOutcome::Voted(Vote::Refused(Refusal::TooManyVotes)), false);
                }
                let expires = now + Duration::from_millis(*lease_ms);
                r.votes.push(VoteEntry { tx: *tx, mode: *mode, vote, expires });
                ReplicaOutcome::Voted(vote)
            }
            ReplicaOp::Commit { tx, version, value } => {
                r.votes.retain(|v| v.tx != *tx);
                Self::write(r, *version, value)
            }
            ReplicaOp::Release { tx } => {
                r.votes.retain(|v| v.tx != *tx);
                ReplicaOutcome::Released
            }
        };
        (outcome, true)
    }
}
