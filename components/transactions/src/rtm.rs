//! The acceptor of Paxos commit, [`Acceptor`]: what the TM and each replicated TM (rTM)
//! remember of one transaction, and when an rTM takes over.
//!
//! Invariants (in the words of Paxos; unit tests below):
//! * an acceptor never accepts in a round lower than the one it promised;
//! * round 0 belongs to the participants: the first round-0 value of an instance is the only
//!   one; a different round-0 value for it is dropped (a participant proposes once — its
//!   replica remembers the vote — so only a faulty one can send two);
//! * a promise for round `r` returns every value accepted so far with its round, so a leader
//!   of `r` finds any value that may have been chosen below `r`;
//! * a known decision never changes.
//!
//! An rTM of rank `r > 0` leads a higher round `(r − 1) · retransmit` after the TM is
//! suspected, or after `r · takeover_after` without a decision (ranks staggered so that one
//! leader is usually alone; two at once are safe, Paxos orders them by round). A leader
//! refused by a higher round steps back for a rank-staggered, randomised, doubling backoff
//! ([`takeover_backoff`]), so duelling leaders stop duelling.

use std::collections::BTreeMap;
use std::sync::Arc;

use selfman_core::{NodeAddr, Time};

use crate::messages::{Round, Slot, TxInfo, Value, Writes};

/// Round-0 votes kept per transaction before the acceptor knows it (its `InitRtm` is late).
pub(crate) const EARLY_VOTES_CAP: usize = 1024;

/// The highest round number a transaction may reach. Each lead raises it by one and leads are
/// at least a retransmit apart, so an honest transaction stays far below it within its few
/// leases; a message naming a higher round is dropped (counted `OutOfRange`), so that one
/// forged round cannot exhaust the numbers (`u32::MAX`) and block every later leader.
pub const MAX_ROUND: u32 = 1 << 20;

/// Doublings of the takeover backoff window at most (`2⁵` retransmits).
pub const BACKOFF_DOUBLINGS: u32 = 5;

/// How long an acceptor of rank `rank` waits before leading again after its round was refused
/// for the `attempts`-th time: `rank · retransmit` (ranks staggered), plus a random part of a
/// window of `2^min(attempts, BACKOFF_DOUBLINGS)` retransmits (`random` picks where in it).
pub fn takeover_backoff(
    retransmit: std::time::Duration,
    rank: u32,
    attempts: u32,
    random: u64,
) -> std::time::Duration {
    let window = retransmit * (1u32 << attempts.min(BACKOFF_DOUBLINGS));
    let jitter = window * (random % 1024) as u32 / 1024;
    retransmit * rank + jitter
}

/// What became of a round-0 vote at an acceptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteOutcome {
    /// Accepted now.
    Accepted,
    /// The same value was accepted before.
    Duplicate,
    /// Another round-0 value was accepted before (dropped).
    Conflicting,
    /// A higher round was promised (dropped).
    WrongRound,
    /// Not an instance of the transaction.
    NotMember,
    /// Kept until the transaction's `InitRtm` comes.
    Early,
}

/// One acceptor's state of one transaction.
#[derive(Clone, Debug)]
pub struct Acceptor {
    /// What the TM told of the transaction (`None` until `InitRtm`).
    pub(crate) info: Option<Arc<TxInfo>>,
    /// The highest round promised.
    pub(crate) promised: Round,
    /// The value accepted per instance, with its round.
    pub(crate) accepted: BTreeMap<Slot, (Round, Value)>,
    /// The decision, once known.
    pub(crate) decided: Option<bool>,
    /// The client's values of an eager transaction, kept with an accepted `Prepared` client
    /// instance.
    pub(crate) writes: Option<Writes>,
    /// Round-0 votes received before `info` (bounded by [`EARLY_VOTES_CAP`]).
    pub(crate) early: Vec<(Slot, Value)>,
    /// When this acceptor first heard of the transaction.
    pub(crate) since: Time,
    /// When this acceptor may lead a round next (rTMs; the TM after a `Nack`).
    pub(crate) next_takeover: Option<Time>,
    /// Rounds of this node refused (`Nack`) so far: the backoff window doubles with each.
    pub(crate) attempts: u32,
    /// The failure detector's suspicion of the TM was acted on (staggered by rank, once).
    pub(crate) tm_suspected: bool,
}

impl Acceptor {
    /// A fresh acceptor of a transaction (heard of at `now`).
    pub(crate) fn new(info: Option<Arc<TxInfo>>, now: Time) -> Acceptor {
        Acceptor {
            info,
            promised: Round::ZERO,
            accepted: BTreeMap::new(),
            decided: None,
            writes: None,
            early: Vec::new(),
            since: now,
            next_takeover: None,
            attempts: 0,
            tm_suspected: false,
        }
    }

    /// A participant's round-0 vote.
    pub(crate) fn vote(&mut self, slot: Slot, value: Value) -> VoteOutcome {
        let Some(info) = &self.info else {
            if self.early.len() >= EARLY_VOTES_CAP {
                return VoteOutcome::NotMember;
            }
            self.early.push((slot, value));
            return VoteOutcome::Early;
        };
        if !info.has_slot(slot) {
            return VoteOutcome::NotMember;
        }
        if self.promised > Round::ZERO {
            return VoteOutcome::WrongRound;
        }
        match self.accepted.get(&slot) {
            Some((_, v)) if *v == value => VoteOutcome::Duplicate,
            Some(_) => VoteOutcome::Conflicting,
            None => {
                self.accepted.insert(slot, (Round::ZERO, value));
                VoteOutcome::Accepted
            }
        }
    }

    /// Paxos phase 1a: promise `round` (or repeat the promise of it). `Err(promised)` if a
    /// higher round was promised.
    pub(crate) fn collect(&mut self, round: Round) -> Result<Vec<(Slot, Round, Value)>, Round> {
        if round < self.promised {
            return Err(self.promised);
        }
        self.promised = round;
        Ok(self.accepted.iter().map(|(s, (r, v))| (*s, *r, *v)).collect())
    }

    /// Paxos phase 2a: accept `values` in `round`. `Err(promised)` if a higher round was
    /// promised; `Ok(false)` if a value names an instance the transaction does not have
    /// (nothing accepted).
    pub(crate) fn propose(
        &mut self,
        round: Round,
        values: &[(Slot, Value)],
    ) -> Result<bool, Round> {
        if round < self.promised || round == Round::ZERO {
            return Err(self.promised);
        }
        if let Some(info) = &self.info {
            if values.iter().any(|(s, _)| !info.has_slot(*s)) {
                return Ok(false);
            }
        }
        self.promised = round;
        for (s, v) in values {
            self.accepted.insert(*s, (round, *v));
        }
        Ok(true)
    }

    /// Learns `info` (from `InitRtm`); the early votes are taken now, returning those
    /// accepted.
    pub(crate) fn learn_info(&mut self, info: Arc<TxInfo>) -> Vec<(Slot, Value, VoteOutcome)> {
        if self.info.is_some() {
            return Vec::new();
        }
        self.info = Some(info);
        let early = std::mem::take(&mut self.early);
        early.into_iter().map(|(s, v)| (s, v, self.vote(s, v))).collect()
    }

    /// Whether `node` is an acceptor of the transaction (unknown until `info`).
    pub(crate) fn is_acceptor(&self, node: NodeAddr) -> Option<bool> {
        self.info.as_ref().map(|i| i.rank_of(node).is_some())
    }
}

#[cfg(test)]
mod tests {
    use selfman_core::{NodeAddr, NodeId, Time};
    use selfman_ports::{LockMode, TxId};

    use super::{Acceptor, VoteOutcome};
    use crate::messages::{ItemInfo, Round, Slot, TxInfo, Value};

    fn info() -> TxInfo {
        TxInfo {
            tx: TxId(1),
            acceptors: (1..=4).map(|i| NodeAddr::simulated(i, NodeId(i as u64))).collect(),
            f: 4,
            items: vec![ItemInfo { key: b"k".to_vec(), mode: LockMode::Write }],
            lease_ms: 1000,
            eager: false,
        }
    }

    const S: Slot = Slot { item: 0, replica: 2 };

    #[test]
    fn round_zero_takes_the_first_value_only() {
        let mut a = Acceptor::new(Some(info().into()), Time::ZERO);
        assert_eq!(a.vote(S, Value::Prepared), VoteOutcome::Accepted);
        assert_eq!(a.vote(S, Value::Prepared), VoteOutcome::Duplicate);
        assert_eq!(a.vote(S, Value::Aborted), VoteOutcome::Conflicting);
        assert_eq!(a.accepted[&S], (Round::ZERO, Value::Prepared));
        assert_eq!(a.vote(Slot { item: 1, replica: 0 }, Value::Prepared), VoteOutcome::NotMember);
        assert_eq!(a.vote(Slot { item: 0, replica: 4 }, Value::Prepared), VoteOutcome::NotMember);
    }

    #[test]
    fn a_promise_reports_what_was_accepted_and_shuts_round_zero() {
        let mut a = Acceptor::new(Some(info().into()), Time::ZERO);
        a.vote(S, Value::Prepared);
        let r1 = Round { n: 1, rank: 2 };
        assert_eq!(a.collect(r1), Ok(vec![(S, Round::ZERO, Value::Prepared)]));
        let other = Slot { item: 0, replica: 1 };
        assert_eq!(a.vote(other, Value::Prepared), VoteOutcome::WrongRound);
        // A lower round is refused with the promise; the same round is repeated.
        assert_eq!(a.collect(Round { n: 1, rank: 1 }), Err(r1));
        assert!(a.collect(r1).is_ok());
        assert_eq!(a.propose(Round { n: 1, rank: 0 }, &[(other, Value::Aborted)]), Err(r1));
        assert_eq!(a.propose(r1, &[(other, Value::Aborted)]), Ok(true));
        assert_eq!(a.accepted[&other], (r1, Value::Aborted));
        // Round 0 can never be proposed by a leader.
        assert!(a.propose(Round::ZERO, &[]).is_err());
        // A value for an instance the transaction lacks: nothing accepted.
        assert_eq!(a.propose(r1, &[(Slot { item: 9, replica: 0 }, Value::Prepared)]), Ok(false));
    }

    #[test]
    fn early_votes_wait_for_the_info_and_are_bounded() {
        let mut a = Acceptor::new(None, Time::ZERO);
        assert_eq!(a.vote(S, Value::Prepared), VoteOutcome::Early);
        assert_eq!(a.vote(Slot { item: 7, replica: 0 }, Value::Prepared), VoteOutcome::Early);
        let taken = a.learn_info(info().into());
        assert_eq!(taken[0].2, VoteOutcome::Accepted);
        assert_eq!(taken[1].2, VoteOutcome::NotMember);
        let mut b = Acceptor::new(None, Time::ZERO);
        for _ in 0..super::EARLY_VOTES_CAP {
            b.vote(S, Value::Prepared);
        }
        assert_eq!(b.vote(S, Value::Prepared), VoteOutcome::NotMember);
    }
}
