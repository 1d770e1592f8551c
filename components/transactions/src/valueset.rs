//! Key/value-sets: `add(k, v)`, `remove(k, v)`, `read_set(k)`, each operation with a unique
//! id; the set is derived from the operation logs a majority of the key's replicas hold.
//!
//! An operation reads every replica's log ([`SetLog`]), classifies each answer
//! ([`classify`]) and decides by majority with the vote table ([`decide_set`]):
//!
//! | majority of replicas say | decision | client told |
//! |---|---|---|
//! | `Ok` (the op is new, and all hold the same version) | commit the merged log + the op | `Ok` |
//! | `Duplicated` (the op id is in their log already) | discard (outcome commit) | `Ok` |
//! | `NotFound` (remove of an element not in their set) | discard (outcome commit) | `NotFound` |
//! | no class has a majority (`Concurrent`: versions differ, another op is in flight) | retry, at most `set_retries` times | `Abort` after them |
//! | fewer than a majority answered | abort | `Abort` |
//!
//! A commit that aborts (another operation changed the set between the read and the vote) is
//! `Concurrent` too, and retried. The log is written by a one-item Paxos commit, so the
//! replicas' short vote locks are held only for that commit, never across the client's
//! operations (see `docs/decisions/012-transactions.md` for why the log is not merged at the
//! replica).

use std::collections::{BTreeMap, BTreeSet};

use selfman_core::Time;
use selfman_ports::{
    has_flaw, ReplicaFailure, ReplicaOp, ReplicaOutcome, ReplicationRequest, TxIndication,
    TxRequest, TxResult, Version,
};

use crate::client::{Client, MAX_KEY};
use crate::machine::{TxMachine, TxOutput, Wait};

#[cfg(feature = "flaws")]
use crate::machine::Flaw;

/// A value-set's operation log, as one replica holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetLog {
    /// Adds by operation id.
    pub adds: BTreeMap<u64, Vec<u8>>,
    /// Removes by operation id, each with the add ids it removed.
    pub removes: BTreeMap<u64, BTreeSet<u64>>,
}

impl SetLog {
    /// The elements: those of adds no remove names.
    pub fn elements(&self) -> BTreeSet<Vec<u8>> {
        let removed: BTreeSet<u64> = self.removes.values().flatten().copied().collect();
        self.adds.iter().filter(|(id, _)| !removed.contains(id)).map(|(_, e)| e.clone()).collect()
    }

    /// Whether operation `id` is in the log.
    pub fn has(&self, id: u64) -> bool {
        self.adds.contains_key(&id) || self.removes.contains_key(&id)
    }

    /// Both logs' operations.
    pub fn merge(&mut self, other: &SetLog) {
        for (id, e) in &other.adds {
            self.adds.insert(*id, e.clone());
        }
        for (id, r) in &other.removes {
            self.removes.entry(*id).or_default().extend(r.iter().copied());
        }
    }

    /// Applies `op` with id `id` (a remove takes out every add of the element it sees).
    pub fn apply(&mut self, id: u64, op: &SetKind) {
        match op {
            SetKind::Add(e) => {
                self.adds.insert(id, e.clone());
            }
            SetKind::Remove(e) => {
                let removed: BTreeSet<u64> = self.removes.values().flatten().copied().collect();
                let ids = self
                    .adds
                    .iter()
                    .filter(|(a, v)| *v == e && !removed.contains(a))
                    .map(|(a, _)| *a)
                    .collect();
                self.removes.insert(id, ids);
            }
            SetKind::Read => {}
        }
    }

    /// The bytes stored at the replicas.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (id, e) in &self.adds {
            out.push(0);
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(e.len() as u32).to_le_bytes());
            out.extend_from_slice(e);
        }
        for (id, r) in &self.removes {
            out.push(1);
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(r.len() as u32).to_le_bytes());
            for a in r {
                out.extend_from_slice(&a.to_le_bytes());
            }
        }
        out
    }

    /// Decodes [`SetLog::encode`]'s bytes; `None` if they are not a log (never panics).
    pub fn decode(mut b: &[u8]) -> Option<SetLog> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (h, t) = (b.get(..n)?, b.get(n..)?);
            *b = t;
            Some(h)
        }
        let mut log = SetLog::default();
        while let Some((&kind, rest)) = b.split_first() {
            b = rest;
            let id = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
            let n = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
            match kind {
                0 => {
                    log.adds.insert(id, take(&mut b, n)?.to_vec());
                }
                1 => {
                    let mut r = BTreeSet::new();
                    for _ in 0..n {
                        r.insert(u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?));
                    }
                    log.removes.insert(id, r);
                }
                _ => return None,
            }
        }
        Some(log)
    }
}

/// What a value-set operation does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetKind {
    /// Add the element.
    Add(Vec<u8>),
    /// Remove the element.
    Remove(Vec<u8>),
    /// Read the set.
    Read,
}

/// One replica's vote on a value-set operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SetVote {
    /// The operation is new here and the replica is at the highest version seen.
    Ok,
    /// The operation is in this replica's log already.
    Duplicated,
    /// A remove of an element this replica's set does not hold.
    NotFound,
    /// This replica is at another version than the highest seen: something is in flight.
    Concurrent,
}

/// What the vote table decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetDecision {
    /// Write the log with the operation.
    Commit,
    /// Nothing to write; tell the client `Ok`.
    Duplicated,
    /// Nothing to write; tell the client `NotFound`.
    NotFound,
    /// Read again.
    Retry,
    /// Give up: `Abort`.
    Abort,
}

/// A replica's vote: `version` and `log` are what it holds, `highest` the highest version
/// among the answers.
pub fn classify(
    op: &SetKind,
    id: u64,
    version: Version,
    log: &SetLog,
    highest: Version,
) -> SetVote {
    if log.has(id) {
        return SetVote::Duplicated;
    }
    if let SetKind::Remove(e) = op {
        if !log.elements().contains(e) {
            return SetVote::NotFound;
        }
    }
    if version != highest {
        return SetVote::Concurrent;
    }
    SetVote::Ok
}

/// The vote table: `answered` replicas gave `votes` (of `f`; a majority is `quorum`).
pub fn decide_set(votes: &[SetVote], quorum: usize) -> SetDecision {
    if votes.len() < quorum {
        return SetDecision::Abort;
    }
    let count = |v: SetVote| votes.iter().filter(|x| **x == v).count();
    if count(SetVote::Duplicated) >= quorum {
        SetDecision::Duplicated
    } else if count(SetVote::NotFound) >= quorum {
        SetDecision::NotFound
    } else if count(SetVote::Ok) >= quorum {
        SetDecision::Commit
    } else {
        SetDecision::Retry
    }
}

/// Where a value-set operation is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SetPhase {
    /// Reading the replicas' logs.
    Reading,
    /// Committing the new log.
    Committing,
    /// Waiting to read again (after a concurrent change).
    Waiting(Time),
}

/// One value-set operation in progress.
#[derive(Clone, Debug)]
pub(crate) struct SetOp {
    key: Vec<u8>,
    kind: SetKind,
    id: u64,
    tag: u64,
    tries: u32,
    phase: SetPhase,
    answers: BTreeMap<u32, (Version, SetLog)>,
    failed: BTreeSet<u32>,
    started: Time,
}

impl TxMachine {
    pub(crate) fn start_set(&mut self, req: TxRequest, now: Time, out: &mut Vec<TxOutput>) {
        let (key, kind, tag) = match req {
            TxRequest::SetAdd { key, element, tag } => (key, SetKind::Add(element), tag),
            TxRequest::SetRemove { key, element, tag } => (key, SetKind::Remove(element), tag),
            TxRequest::ReadSet { key, tag } => (key, SetKind::Read, tag),
            _ => return,
        };
        if key.len() > MAX_KEY || self.sets.len() >= self.config.max_txs {
            let why = if key.len() > MAX_KEY {
                selfman_ports::Rejection::TooLarge
            } else {
                selfman_ports::Rejection::Overloaded
            };
            let ind = TxIndication::SetDone {
                key,
                tag,
                result: TxResult::Rejected(why),
                elements: vec![],
            };
            return out.push(TxOutput::Indicate(ind));
        }
        let id = self.new_tx_id().0;
        let op = SetOp {
            key,
            kind,
            id,
            tag,
            tries: 0,
            phase: SetPhase::Reading,
            answers: BTreeMap::new(),
            failed: BTreeSet::new(),
            started: now,
        };
        self.sets.insert(id, op);
        self.read_replicas(id, out);
    }

    fn read_replicas(&mut self, id: u64, out: &mut Vec<TxOutput>) {
        let f = self.config.f;
        let Some(op) = self.sets.get_mut(&id) else { return };
        op.phase = SetPhase::Reading;
        op.answers.clear();
        op.failed.clear();
        let key = op.key.clone();
        for replica in 0..f {
            let tag = self.tag(Wait::SetRead(id, replica));
            out.push(TxOutput::Replicate(ReplicationRequest::AtReplica {
                key: key.clone(),
                replica,
                op: ReplicaOp::Read,
                tag,
            }));
        }
    }

    pub(crate) fn set_read(
        &mut self,
        id: u64,
        replica: u32,
        result: Result<ReplicaOutcome, ReplicaFailure>,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let (f, q) = (self.config.f as usize, self.config.item_quorum());
        let Some(op) = self.sets.get_mut(&id) else { return };
        if op.phase != SetPhase::Reading {
            return;
        }
        match result {
            Ok(ReplicaOutcome::Record { version, value, .. }) => {
                // A value that is not a log counts as an empty one (it is overwritten).
                let log = value.as_deref().and_then(SetLog::decode).unwrap_or_default();
                op.answers.insert(replica, (version, log));
            }
            _ => {
                op.failed.insert(replica);
            }
        }
        if op.failed.len() > f - q {
            return self.set_finish(id, TxResult::Abort(vec![]), out);
        }
        if op.answers.len() < q {
            return;
        }
        let highest = op.answers.values().map(|(v, _)| *v).max().unwrap_or_default();
        if op.kind == SetKind::Read {
            let mut all = SetLog::default();
            for (_, l) in op.answers.values() {
                all.merge(l);
            }
            let elements = all.elements().into_iter().collect();
            let (key, tag) = (op.key.clone(), op.tag);
            self.sets.remove(&id);
            let ind = TxIndication::SetDone { key, tag, result: TxResult::Ok, elements };
            return out.push(TxOutput::Indicate(ind));
        }
        let votes: Vec<SetVote> =
            op.answers.values().map(|(v, l)| classify(&op.kind, op.id, *v, l, highest)).collect();
        match decide_set(&votes, q) {
            SetDecision::Duplicated => self.set_finish(id, TxResult::Ok, out),
            SetDecision::NotFound => self.set_finish(id, TxResult::NotFound, out),
            SetDecision::Abort => self.set_finish(id, TxResult::Abort(vec![]), out),
            SetDecision::Retry => self.set_retry(id, now, out),
            SetDecision::Commit => {
                let mut log = SetLog::default();
                for (_, l) in op.answers.values() {
                    log.merge(l);
                }
                log.apply(op.id, &op.kind);
                op.phase = SetPhase::Committing;
                let item = (op.key.clone(), highest, Some(Some(log.encode())));
                let tx = self.new_tx_id();
                self.begin_commit(tx, vec![item], Client::Set(id), now, out);
            }
        }
    }

    fn set_retry(&mut self, id: u64, now: Time, out: &mut Vec<TxOutput>) {
        if has_flaw!(self, NoSetRetry) {
            // Deliberately wrong: a concurrent operation is taken as done.
            return self.set_finish(id, TxResult::Ok, out);
        }
        let (limit, wait) = (self.config.set_retries, self.config.retransmit);
        let Some(op) = self.sets.get_mut(&id) else { return };
        op.tries += 1;
        if op.tries > limit {
            return self.set_finish(id, TxResult::Abort(vec![]), out);
        }
        // Back off by the number of tries, spread by the operation id, so that two
        // concurrent operations do not meet again at once.
        let spread = wait.mul_f64(f64::from(op.tries) * (1.0 + (op.id % 7) as f64 / 7.0));
        op.phase = SetPhase::Waiting(now + spread);
    }

    fn set_finish(&mut self, id: u64, result: TxResult, out: &mut Vec<TxOutput>) {
        let Some(op) = self.sets.remove(&id) else { return };
        let result = match result {
            TxResult::Abort(_) => TxResult::Abort(vec![op.key.clone()]),
            r => r,
        };
        out.push(TxOutput::Indicate(TxIndication::SetDone {
            key: op.key,
            tag: op.tag,
            result,
            elements: vec![],
        }));
    }

    pub(crate) fn set_committed(
        &mut self,
        id: u64,
        commit: bool,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        if commit {
            self.set_finish(id, TxResult::Ok, out);
        } else {
            self.set_retry(id, now, out);
        }
    }

    pub(crate) fn set_timeout(&mut self, id: u64, out: &mut Vec<TxOutput>) {
        self.set_finish(id, TxResult::Timeout, out);
    }

    pub(crate) fn tick_sets(&mut self, now: Time, out: &mut Vec<TxOutput>) {
        let timeout = self.config.commit_timeout * 2;
        let mut again = Vec::new();
        let mut late = Vec::new();
        for (id, op) in &self.sets {
            match op.phase {
                SetPhase::Waiting(t) if now >= t => again.push(*id),
                SetPhase::Reading if now >= op.started + timeout => late.push(*id),
                _ => {}
            }
        }
        for id in again {
            self.read_replicas(id, out);
        }
        for id in late {
            self.set_finish(id, TxResult::Timeout, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use selfman_ports::Version;

    use super::{classify, decide_set, SetDecision, SetKind, SetLog, SetVote};

    #[test]
    fn the_vote_table() {
        use SetVote::{Concurrent as C, Duplicated as D, NotFound as N, Ok as O};
        assert_eq!(decide_set(&[O, O, O, C], 3), SetDecision::Commit);
        assert_eq!(decide_set(&[O, O, O], 3), SetDecision::Commit);
        assert_eq!(decide_set(&[D, D, D, O], 3), SetDecision::Duplicated);
        assert_eq!(decide_set(&[N, N, N, O], 3), SetDecision::NotFound);
        assert_eq!(decide_set(&[O, O, C, C], 3), SetDecision::Retry);
        assert_eq!(decide_set(&[D, D, O, O], 3), SetDecision::Retry);
        assert_eq!(decide_set(&[O, O], 3), SetDecision::Abort, "no majority answered");
    }

    #[test]
    fn classification_of_one_replica() {
        let mut log = SetLog::default();
        log.apply(1, &SetKind::Add(b"x".to_vec()));
        let v = Version(3);
        assert_eq!(classify(&SetKind::Add(b"y".to_vec()), 1, v, &log, v), SetVote::Duplicated);
        assert_eq!(classify(&SetKind::Remove(b"y".to_vec()), 2, v, &log, v), SetVote::NotFound);
        assert_eq!(classify(&SetKind::Remove(b"x".to_vec()), 2, v, &log, v), SetVote::Ok);
        assert_eq!(
            classify(&SetKind::Add(b"y".to_vec()), 2, Version(2), &log, v),
            SetVote::Concurrent
        );
    }

    #[test]
    fn logs_merge_encode_and_reject_garbage() {
        let mut a = SetLog::default();
        a.apply(1, &SetKind::Add(b"x".to_vec()));
        a.apply(2, &SetKind::Add(b"y".to_vec()));
        let mut b = a.clone();
        b.apply(3, &SetKind::Remove(b"x".to_vec()));
        a.apply(4, &SetKind::Add(b"x".to_vec()));
        // The remove took out the add it saw; the concurrent add of the same element stays.
        a.merge(&b);
        assert_eq!(a.elements().len(), 2);
        assert_eq!(SetLog::decode(&a.encode()), Some(a.clone()));
        assert_eq!(SetLog::decode(&[0, 1, 2]), None);
        assert_eq!(SetLog::decode(&[7; 13]), None);
        let enc = a.encode();
        for cut in 0..enc.len() {
            let _ = SetLog::decode(&enc[..cut]); // never panics
        }
    }
}
