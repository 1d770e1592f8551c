//! The transaction manager's logic: learning the participants' round-0 votes ([`Learner`]),
//! leading a higher round when votes are missing or the TM is gone ([`Leader`]), the decision
//! rule ([`outcome`]), and delivering the decision until every participant has it
//! ([`Delivery`]).
//!
//! Invariants (Paxos commit; unit tests below and in `tests/`):
//! * an instance is **chosen** with value `v` when a majority of the transaction's acceptors
//!   accepted `v` in one round;
//! * an item is **prepared** iff a majority of its `f` replicas' instances are chosen
//!   `Prepared`; it **fails** once more than `f − majority` are chosen `Aborted`;
//! * the transaction **commits iff every item is prepared**, and aborts iff some item fails;
//!   the decision is a function of chosen values, so every learner computes the same one;
//! * a leader of round `r` proposes, for each instance, the value of the highest round among
//!   a majority's promises, and `Aborted` where none accepted any (it never invents a
//!   `Prepared`).

use std::collections::{BTreeMap, BTreeSet};

use selfman_core::{NodeAddr, Time};

use crate::messages::{Round, Slot, TxInfo, Value, Writes};

/// The decision that the chosen values imply: `Some(true)` commit, `Some(false)` abort,
/// `None` not yet known. `item_quorum` is the majority of an item's replicas.
pub fn outcome(info: &TxInfo, chosen: &BTreeMap<Slot, Value>, item_quorum: usize) -> Option<bool> {
    let f = info.f as usize;
    let mut all_prepared = true;
    for item in 0..info.items.len() as u32 {
        let (mut prepared, mut aborted) = (0, 0);
        for replica in 0..info.f {
            match chosen.get(&Slot { item, replica }) {
                Some(Value::Prepared) => prepared += 1,
                Some(Value::Aborted) => aborted += 1,
                None => {}
            }
        }
        if aborted > f.saturating_sub(item_quorum) {
            return Some(false);
        }
        all_prepared &= prepared >= item_quorum;
    }
    if info.eager {
        // The client's instance decides among prepared items.
        return match chosen.get(&info.client_slot()) {
            Some(Value::Aborted) => Some(false),
            Some(Value::Prepared) if all_prepared => Some(true),
            _ => None,
        };
    }
    all_prepared.then_some(true)
}

/// Whether every item of `info` is prepared (eager locking: the locks are held).
pub fn items_prepared(info: &TxInfo, chosen: &BTreeMap<Slot, Value>, item_quorum: usize) -> bool {
    (0..info.items.len() as u32).all(|item| {
        (0..info.f)
            .filter(|&replica| chosen.get(&Slot { item, replica }) == Some(&Value::Prepared))
            .count()
            >= item_quorum
    })
}

/// The keys an `Abort` names: the items that failed (more than `f − majority` replicas
/// chosen `Aborted`), or, if none did (the decision came from another node), those not
/// known to be prepared.
pub fn failed_items(info: &TxInfo, chosen: &BTreeMap<Slot, Value>, item_quorum: usize) -> Vec<u32> {
    let count = |item: u32, v: Value| {
        (0..info.f).filter(|&replica| chosen.get(&Slot { item, replica }) == Some(&v)).count()
    };
    let items = 0..info.items.len() as u32;
    let failed: Vec<u32> = items
        .clone()
        .filter(|&i| count(i, Value::Aborted) > (info.f as usize).saturating_sub(item_quorum))
        .collect();
    if !failed.is_empty() {
        return failed;
    }
    items.filter(|&i| count(i, Value::Prepared) < item_quorum).collect()
}

/// The TM's learning of round 0: which acceptor accepted which vote.
#[derive(Clone, Debug, Default)]
pub struct Learner {
    /// Per instance, the acceptors that accepted each value in round 0.
    votes: BTreeMap<Slot, BTreeMap<NodeAddr, Value>>,
    /// The instances chosen so far.
    pub(crate) chosen: BTreeMap<Slot, Value>,
    /// Instances whose participant said it has no round-0 vote.
    pub(crate) no_vote: BTreeSet<Slot>,
}

impl Learner {
    /// `acceptor` accepted `value` for `slot` in round 0; returns whether the instance is
    /// chosen now (for the first time). `Err(())` if that acceptor's acceptance was known.
    pub(crate) fn accepted(
        &mut self,
        acceptor: NodeAddr,
        slot: Slot,
        value: Value,
        quorum: usize,
    ) -> Result<bool, ()> {
        let by = self.votes.entry(slot).or_default();
        if by.insert(acceptor, value).is_some() {
            return Err(());
        }
        let n = by.values().filter(|v| **v == value).count();
        if n >= quorum && !self.chosen.contains_key(&slot) {
            self.chosen.insert(slot, value);
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether `acceptor` sent any round-0 acceptance (so it knows the transaction).
    pub(crate) fn heard_from(&self, acceptor: NodeAddr) -> bool {
        self.votes.values().any(|by| by.contains_key(&acceptor))
    }

    /// Whether every instance is chosen or has no round-0 vote.
    pub(crate) fn all_heard(&self, info: &TxInfo) -> bool {
        info.slots().all(|s| self.chosen.contains_key(&s) || self.no_vote.contains(&s))
    }
}

/// Where a leader of a higher round is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for a majority of promises.
    Collecting,
    /// Proposed `values`, waiting for a majority of acceptances.
    Proposing,
}

/// A leader of one round `r > 0` of one transaction (the TM recovering missing votes, or an
/// rTM taking over).
#[derive(Clone, Debug)]
pub struct Leader {
    /// Its round.
    pub(crate) round: Round,
    pub(crate) phase: Phase,
    /// Promises received, by acceptor.
    promises: BTreeMap<NodeAddr, Vec<(Slot, Round, Value)>>,
    /// The values proposed (in phase `Proposing`).
    pub(crate) values: Vec<(Slot, Value)>,
    /// Acceptors that accepted them.
    accepted_by: BTreeSet<NodeAddr>,
    /// The client's values of an eager transaction, from a promise.
    pub(crate) writes: Option<Writes>,
    /// When it last sent its round's messages.
    pub(crate) last_sent: Time,
}

/// What a leader does after an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LeaderStep {
    /// Nothing yet.
    Wait,
    /// A majority promised: propose these values to every acceptor.
    Propose(Vec<(Slot, Value)>),
    /// A majority accepted: every instance is chosen with these values.
    Chosen(BTreeMap<Slot, Value>),
    /// An acceptor knows the decision already.
    Decided(bool),
}

impl Leader {
    /// A leader of `round`, starting at `now`.
    pub(crate) fn new(round: Round, now: Time) -> Leader {
        Leader {
            round,
            phase: Phase::Collecting,
            promises: BTreeMap::new(),
            values: Vec::new(),
            accepted_by: BTreeSet::new(),
            writes: None,
            last_sent: now,
        }
    }

    /// A promise of `from` for this round. `Err(())` if it was known already.
    pub(crate) fn promise(
        &mut self,
        info: &TxInfo,
        from: NodeAddr,
        accepted: Vec<(Slot, Round, Value)>,
        decided: Option<bool>,
        writes: Option<Writes>,
    ) -> Result<LeaderStep, ()> {
        if self.writes.is_none() {
            self.writes = writes;
        }
        if let Some(d) = decided {
            return Ok(LeaderStep::Decided(d));
        }
        if self.phase != Phase::Collecting {
            return Err(());
        }
        if self.promises.insert(from, accepted).is_some() {
            return Err(());
        }
        if self.promises.len() < info.acceptor_quorum() {
            return Ok(LeaderStep::Wait);
        }
        // Lock-in: per instance, the value of the highest round any promise reports.
        let mut best: BTreeMap<Slot, (Round, Value)> = BTreeMap::new();
        for (s, r, v) in self.promises.values().flatten() {
            if !info.has_slot(*s) {
                continue;
            }
            match best.get(s) {
                Some((br, _)) if br >= r => {}
                _ => {
                    best.insert(*s, (*r, *v));
                }
            }
        }
        let values: Vec<(Slot, Value)> =
            info.slots().map(|s| (s, best.get(&s).map_or(Value::Aborted, |(_, v)| *v))).collect();
        self.values = values.clone();
        self.phase = Phase::Proposing;
        Ok(LeaderStep::Propose(values))
    }

    /// An acceptance of `from` of this round's values. `Err(())` if it was known already or
    /// nothing was proposed.
    pub(crate) fn accepted(&mut self, info: &TxInfo, from: NodeAddr) -> Result<LeaderStep, ()> {
        if self.phase != Phase::Proposing || !self.accepted_by.insert(from) {
            return Err(());
        }
        if self.accepted_by.len() < info.acceptor_quorum() {
            return Ok(LeaderStep::Wait);
        }
        Ok(LeaderStep::Chosen(self.values.iter().copied().collect()))
    }
}

/// The decision on its way to the participants.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The decision.
    pub(crate) commit: bool,
    /// Instances whose participant has not said `Applied`, with its address if known.
    pub(crate) pending: BTreeMap<Slot, Option<NodeAddr>>,
    /// The client's values (eager transactions that commit).
    pub(crate) writes: Option<Writes>,
    /// When it was last sent.
    pub(crate) last_sent: Time,
    /// When delivery is given up (the participants' locks are gone by then).
    pub(crate) until: Time,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use selfman_core::{NodeAddr, NodeId, Time};
    use selfman_ports::{LockMode, TxId};

    use super::{outcome, Leader, LeaderStep, Learner};
    use crate::messages::{ItemInfo, Round, Slot, TxInfo, Value};

    fn n(i: u32) -> NodeAddr {
        NodeAddr::simulated(i, NodeId(u64::from(i)))
    }

    fn info(items: usize) -> TxInfo {
        TxInfo {
            tx: TxId(1),
            acceptors: (0..4).map(n).collect(),
            f: 4,
            items: (0..items)
                .map(|i| ItemInfo { key: vec![i as u8], mode: LockMode::Write })
                .collect(),
            lease_ms: 1000,
            eager: false,
        }
    }

    fn chosen(values: &[(u32, u32, Value)]) -> BTreeMap<Slot, Value> {
        values.iter().map(|&(item, replica, v)| (Slot { item, replica }, v)).collect()
    }

    #[test]
    fn commit_needs_a_majority_prepared_of_every_item() {
        use Value::{Aborted as A, Prepared as P};
        let i = info(2);
        let three = |item| vec![(item, 0, P), (item, 1, P), (item, 2, P)];
        let mut c = three(0);
        assert_eq!(outcome(&i, &chosen(&c), 3), None, "item 1 unknown");
        c.extend(three(1));
        assert_eq!(outcome(&i, &chosen(&c), 3), Some(true));
        // Two aborted replicas of one item: it can no longer reach 3 of 4.
        let c = vec![(0, 0, P), (0, 1, P), (0, 2, P), (1, 0, A), (1, 1, A)];
        assert_eq!(outcome(&i, &chosen(&c), 3), Some(false));
        // One aborted replica is not enough to abort.
        let c = vec![(1, 3, A)];
        assert_eq!(outcome(&i, &chosen(&c), 3), None);
    }

    #[test]
    fn round_zero_is_chosen_by_a_majority_of_acceptors() {
        let mut l = Learner::default();
        let s = Slot { item: 0, replica: 0 };
        assert_eq!(l.accepted(n(0), s, Value::Prepared, 3), Ok(false));
        assert_eq!(l.accepted(n(1), s, Value::Prepared, 3), Ok(false));
        assert_eq!(l.accepted(n(1), s, Value::Prepared, 3), Err(()), "duplicate");
        assert_eq!(l.accepted(n(2), s, Value::Prepared, 3), Ok(true));
        assert_eq!(l.accepted(n(3), s, Value::Prepared, 3), Ok(false), "chosen once");
    }

    #[test]
    fn a_leader_locks_in_the_highest_round_and_aborts_the_unknown() {
        let i = info(1);
        let mut l = Leader::new(Round { n: 2, rank: 1 }, Time::ZERO);
        let s0 = Slot { item: 0, replica: 0 };
        let s1 = Slot { item: 0, replica: 1 };
        let r1 = Round { n: 1, rank: 0 };
        assert_eq!(
            l.promise(&i, n(0), vec![(s0, Round::ZERO, Value::Prepared)], None, None),
            Ok(LeaderStep::Wait)
        );
        assert_eq!(l.promise(&i, n(0), vec![], None, None), Err(()));
        assert_eq!(
            l.promise(
                &i,
                n(1),
                vec![(s0, r1, Value::Aborted), (s1, Round::ZERO, Value::Prepared)],
                None,
                None
            ),
            Ok(LeaderStep::Wait)
        );
        let LeaderStep::Propose(values) = l.promise(&i, n(2), vec![], None, None).unwrap() else {
            panic!("a majority promised");
        };
        let v: BTreeMap<Slot, Value> = values.into_iter().collect();
        assert_eq!(v[&s0], Value::Aborted, "round 1 beats round 0");
        assert_eq!(v[&s1], Value::Prepared, "an accepted value is kept");
        assert_eq!(v[&Slot { item: 0, replica: 2 }], Value::Aborted, "nobody accepted: abort");
        assert_eq!(v.len(), 4);
        assert_eq!(l.accepted(&i, n(0)), Ok(LeaderStep::Wait));
        assert_eq!(l.accepted(&i, n(0)), Err(()));
        assert_eq!(l.accepted(&i, n(3)), Ok(LeaderStep::Wait));
        assert!(matches!(l.accepted(&i, n(1)), Ok(LeaderStep::Chosen(_))));
    }

    #[test]
    fn a_known_decision_ends_the_round() {
        let i = info(1);
        let mut l = Leader::new(Round { n: 1, rank: 3 }, Time::ZERO);
        assert_eq!(l.promise(&i, n(0), vec![], Some(true), None), Ok(LeaderStep::Decided(true)));
    }
}
