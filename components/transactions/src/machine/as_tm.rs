//! The machine as **transaction manager** (TM, acceptor 0 of its transactions): starting
//! Paxos commit (prepares to the participants, `InitRtm` to the rTMs), learning the round-0
//! votes, deciding, delivering the decision until every participant said `Applied` (never
//! counting a `Failed`), `Forget` with the decision, and an eager client's commit or abort.
//!
//! Invariants: the decision is a function of chosen values ([`crate::tm::outcome`]); an
//! eager commit is delivered with the client's values from the TM's proposal or a leader's
//! promises, never without them; a transaction is forgotten (with its decision kept in the
//! tombstone) only when every participant applied it or its delivery deadline passed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{has_flaw, RingId, TxId};

#[cfg(feature = "flaws")]
use super::Flaw;
use super::{Eager, Tm, TxMachine, TxOutput, TxState};
use crate::client::Client;
use crate::faults::Fault;
use crate::messages::{Slot, TxInfo, TxMessage, Value, Writes, MAX_BATCH};
use crate::rtm::Acceptor;
use crate::tm::{failed_items, items_prepared, outcome, Delivery, Learner};

impl TxMachine {
    /// Starts Paxos commit of `info` (this node is its TM, `info.acceptors[0]`), the
    /// participants told by `prepares`.
    pub(crate) fn start_commit(
        &mut self,
        info: TxInfo,
        prepares: Vec<(RingId, TxMessage)>,
        client: Client,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let info = Arc::new(info);
        let tx = info.tx;
        let eager = info.eager.then(|| Eager {
            told: false,
            proposal: None,
            lease_end: now
                + Duration::from_millis(info.lease_ms.saturating_sub(self.config.lease_ms())),
        });
        for a in info.acceptors.iter().skip(1) {
            let msg = TxMessage::InitRtm { info: Arc::clone(&info) };
            out.push(TxOutput::Send { to: *a, msg });
        }
        let all: Vec<(RingId, TxMessage)> = prepares.clone();
        self.route_prepares(all, out);
        let tm = Tm {
            learner: Learner::default(),
            prepares,
            participants: BTreeMap::new(),
            client,
            answered: false,
            started: now,
            last_sent: now,
            eager,
        };
        let state = TxState {
            acc: Acceptor::new(Some(info), now),
            tm: Some(tm),
            leader: None,
            delivery: None,
            decided_at: None,
        };
        self.txs.insert(tx, state);
    }

    /// Whether another transaction fits.
    pub(crate) fn has_room(&self) -> bool {
        self.txs.len() < self.config.max_txs && self.parts.len() < self.config.max_txs
    }

    pub(super) fn no_vote(&mut self, tx: TxId, slot: Slot, now: Time, out: &mut Vec<TxOutput>) {
        let Some(s) = self.txs.get_mut(&tx) else {
            return self.drop_unknown("no-vote", tx, self.me);
        };
        let (Some(tm), Some(info)) = (s.tm.as_mut(), s.acc.info.as_ref()) else {
            return self
                .faults
                .add(Fault::NotMember, &format_args!("no-vote for {tx:?} at an rTM"));
        };
        if !info.has_slot(slot) {
            return self.faults.add(Fault::NotMember, &format_args!("no-vote for {slot:?}"));
        }
        tm.learner.no_vote.insert(slot);
        if s.acc.decided.is_none() && s.leader.is_none() && tm.learner.all_heard(info) {
            self.lead(tx, now, out);
        }
    }

    pub(super) fn learn(
        &mut self,
        tx: TxId,
        acceptor: NodeAddr,
        slot: Slot,
        value: Value,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let Some(s) = self.txs.get_mut(&tx) else { return };
        let (Some(tm), Some(info)) = (s.tm.as_mut(), s.acc.info.as_ref()) else { return };
        if info.rank_of(acceptor).is_none() || !info.has_slot(slot) {
            return self.faults.add(Fault::NotMember, &format_args!("accepted from {acceptor:?}"));
        }
        match tm.learner.accepted(acceptor, slot, value, info.acceptor_quorum()) {
            Err(()) => self.faults.add(Fault::Duplicate, &format_args!("accepted {slot:?} twice")),
            Ok(false) => {}
            Ok(true) => {
                if s.acc.decided.is_some() {
                    return;
                }
                let quorum = if has_flaw!(self, CommitsWithoutMajority) {
                    1
                } else {
                    self.config.item_quorum()
                };
                let chosen = if has_flaw!(self, CommitsWithoutMajority) {
                    // Deliberately wrong: the TM's own acceptor's values count as chosen.
                    s.acc
                        .accepted
                        .iter()
                        .map(|(s, (_, v))| (*s, *v))
                        .chain(tm.learner.chosen.clone())
                        .collect()
                } else {
                    tm.learner.chosen.clone()
                };
                if let Some(commit) = outcome(info, &chosen, quorum) {
                    self.decide(tx, commit, &chosen, true, now, out);
                } else if let Some(e) = tm.eager.as_mut() {
                    if !e.told && items_prepared(info, &chosen, quorum) {
                        e.told = true;
                        let client = tm.client.clone();
                        self.locks_held(client, tx, out);
                    } else if e.proposal.is_some()
                        && s.leader.is_none()
                        && tm.learner.all_heard(info)
                    {
                        self.lead(tx, now, out);
                    }
                } else if s.leader.is_none() && tm.learner.all_heard(info) {
                    self.lead(tx, now, out);
                }
            }
        }
    }

    /// `tx` is decided `commit` here. `delivers`: this node computed it from chosen values
    /// and tells the participants.
    pub(super) fn decide(
        &mut self,
        tx: TxId,
        commit: bool,
        chosen: &BTreeMap<Slot, Value>,
        delivers: bool,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let f = self.config.f;
        let Some(s) = self.txs.get_mut(&tx) else { return };
        match s.acc.decided {
            Some(d) if d != commit => {
                return self
                    .faults
                    .add(Fault::ConflictingDecision, &format_args!("{tx:?}: {d} then {commit}"));
            }
            Some(_) => return,
            None => {}
        }
        s.acc.decided = Some(commit);
        s.decided_at = Some(now);
        // An eager commit's values: the client's proposal (at the TM) or what a leader
        // learned from the promises, never only what the local acceptor accepted (it may
        // have refused the client's vote after promising a higher round).
        let eager_writes = s.writes().cloned();
        s.leader = None;
        let Some(info) = s.acc.info.clone() else { return };
        if let Some(tm) = s.tm.as_mut() {
            if !tm.answered {
                tm.answered = true;
                let failed = if commit {
                    Vec::new()
                } else {
                    failed_items(&info, chosen, self.config.item_quorum())
                };
                let keys = failed.iter().map(|i| info.items[*i as usize].key.clone()).collect();
                let client = tm.client.clone();
                self.answer(client, tx, commit, keys, now, out);
            }
        }
        let Some(s) = self.txs.get_mut(&tx) else { return };
        if !delivers {
            return;
        }
        // Counted where the decision was computed from chosen values (not where it was
        // learned from an acceptor that knew it).
        if !chosen.is_empty() {
            let n = if commit { &mut self.stats.committed } else { &mut self.stats.aborted };
            *n += 1;
        }
        let participants = s.tm.as_ref().map(|t| t.participants.clone()).unwrap_or_default();
        if let Some(tm) = s.tm.as_ref() {
            // Who answered for which replica key: the next transactions' prepares are packed
            // per node by it.
            for (key, msg) in &tm.prepares {
                if let TxMessage::Prepare { slot, .. } = msg {
                    // Only a new or wrong guess is learned (most are right: no insert).
                    if let Some(n) =
                        participants.get(slot).filter(|n| self.owners.guess(*key) != Some(**n))
                    {
                        self.owners.learn(*key, *n);
                    }
                }
            }
        }
        let Some(s) = self.txs.get_mut(&tx) else { return };
        let pending: BTreeMap<Slot, Option<NodeAddr>> =
            info.item_slots().map(|slot| (slot, participants.get(&slot).copied())).collect();
        let lease = Duration::from_millis(info.lease_ms);
        let writes = if commit && info.eager { eager_writes } else { None };
        if commit && info.eager && writes.is_none() {
            // Chosen `Prepared` for the client's instance implies an acceptor holding the
            // values, which the TM or the leader has: not delivering beats releasing the
            // locks without the values (participants ask the acceptors).
            return self
                .faults
                .add(Fault::Internal, &format_args!("eager commit of {tx:?} without values"));
        }
        s.delivery = Some(Delivery {
            commit,
            pending: pending.clone(),
            writes: writes.clone(),
            last_sent: now,
            until: now + lease * 2,
        });
        for a in info.acceptors.iter().filter(|a| **a != self.me) {
            let msg = TxMessage::Decided { tx, slot: Slot::ACCEPTORS, commit, write: None };
            out.push(TxOutput::Send { to: *a, msg });
        }
        for (slot, to) in pending {
            send_decision(&info, f, tx, slot, commit, writes.as_ref(), to, out);
        }
    }

    pub(super) fn applied(&mut self, tx: TxId, slot: Slot, now: Time, out: &mut Vec<TxOutput>) {
        let Some(s) = self.txs.get_mut(&tx) else {
            return self.drop_unknown("applied", tx, self.me);
        };
        // Not delivering here: an acceptor that answered a late vote with the decision.
        let Some(d) = s.delivery.as_mut() else { return };
        if d.pending.remove(&slot).is_none() {
            return self.faults.add(Fault::Duplicate, &format_args!("applied {slot:?} of {tx:?}"));
        }
        if d.pending.is_empty() {
            // Every participant has the decision: the transaction is forgotten everywhere.
            let acceptors = s.acc.info.as_ref().map(|i| i.acceptors.clone()).unwrap_or_default();
            let commit = d.commit;
            for a in acceptors.into_iter().filter(|a| *a != self.me) {
                out.push(TxOutput::Send { to: a, msg: TxMessage::Forget { tx, commit } });
            }
            self.forget_tx(tx, now);
        }
    }

    /// A participant could not apply the decision at its replica: the slot stays pending and
    /// the decision is sent again (never counted as applied).
    pub(super) fn apply_failed(&mut self, from: NodeAddr, tx: TxId, slot: Slot) {
        let Some(s) = self.txs.get_mut(&tx) else {
            return self.drop_unknown("failed", tx, from);
        };
        let Some(d) = s.delivery.as_mut() else { return };
        match d.pending.get_mut(&slot) {
            Some(to) => {
                *to = Some(from);
                self.stats.apply_failures += 1;
                tracing::debug!(?tx, ?slot, "transactions: a replica could not apply the decision");
            }
            None => self.faults.add(Fault::Duplicate, &format_args!("failed {slot:?} of {tx:?}")),
        }
    }

    /// Re-sends the prepares whose instance is not chosen, the InitRtms, and an eager
    /// transaction's client vote, every `retransmit`.
    pub(super) fn resend_prepares(&mut self, tx: TxId, now: Time, out: &mut Vec<TxOutput>) {
        let retransmit = self.config.retransmit;
        let Some(s) = self.txs.get_mut(&tx) else { return };
        let (Some(tm), Some(info)) = (s.tm.as_mut(), s.acc.info.as_ref()) else { return };
        if s.leader.is_some() || now < tm.last_sent + retransmit {
            return;
        }
        tm.last_sent = now;
        let mut again = Vec::new();
        for (key, msg) in &tm.prepares {
            if let TxMessage::Prepare { slot, .. } = msg {
                if !tm.learner.chosen.contains_key(slot) && !tm.learner.no_vote.contains(slot) {
                    again.push((*key, msg.clone()));
                }
            }
        }
        // The InitRtm again only to rTMs not heard from (one that sent an acceptance has it).
        for a in info.acceptors.iter().skip(1).filter(|a| !tm.learner.heard_from(**a)) {
            out.push(TxOutput::Send { to: *a, msg: TxMessage::InitRtm { info: info.clone() } });
        }
        let client_slot = info.client_slot();
        if let Some((value, writes)) = tm.eager.as_ref().and_then(|e| e.proposal.clone()) {
            if !tm.learner.chosen.contains_key(&client_slot) {
                for a in info.acceptors.iter().skip(1) {
                    let msg =
                        TxMessage::Vote { tx, slot: client_slot, value, writes: writes.clone() };
                    out.push(TxOutput::Send { to: *a, msg });
                }
            }
        }
        self.route_prepares(again, out);
    }

    /// Routes prepares: those this node is responsible for are handled here; of the others,
    /// those [`Owners`](crate::owners::Owners) guesses one node holds go in one batch routed
    /// to the first one's replica key (the receiver re-routes any outside its range); the
    /// rest one by one.
    pub(super) fn route_prepares(
        &mut self,
        prepares: Vec<(RingId, TxMessage)>,
        out: &mut Vec<TxOutput>,
    ) {
        let mut groups: Vec<(NodeAddr, Vec<(RingId, TxMessage)>)> = Vec::new();
        for (key, msg) in prepares {
            match self.owners.guess(key).filter(|n| *n != self.me) {
                Some(n) => match groups.iter_mut().find(|(g, _)| *g == n) {
                    Some((_, g)) => g.push((key, msg)),
                    None => groups.push((n, vec![(key, msg)])),
                },
                None => self.route(key, msg, out),
            }
        }
        for (_, group) in groups {
            let mut group = group.into_iter().peekable();
            while let Some((key, first)) = group.next() {
                let mut msgs = vec![first];
                while msgs.len() < MAX_BATCH {
                    match group.next() {
                        Some((_, m)) => msgs.push(m),
                        None => break,
                    }
                }
                let msg = match <[TxMessage; 1]>::try_from(msgs) {
                    Ok([one]) => one,
                    Err(msgs) => TxMessage::Batch(msgs),
                };
                self.route(key, msg, out);
            }
        }
    }

    /// The client of eager transaction `tx` commits with `writes`, or aborts (`None`): the
    /// TM proposes it as the round-0 value of the client's instance.
    pub(crate) fn client_decides(
        &mut self,
        tx: TxId,
        writes: Option<Writes>,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let _span = super::tx_span(tx, if writes.is_some() { "commit" } else { "abort" }).entered();
        let Some(s) = self.txs.get_mut(&tx) else { return };
        let (Some(tm), Some(info)) = (s.tm.as_mut(), s.acc.info.as_ref()) else { return };
        let Some(e) = tm.eager.as_mut().filter(|e| e.proposal.is_none()) else { return };
        let value = if writes.is_some() { Value::Prepared } else { Value::Aborted };
        e.proposal = Some((value, writes.clone()));
        // The commit's own timeouts run from now.
        tm.started = now;
        let slot = info.client_slot();
        let acceptors = info.acceptors.clone();
        for a in acceptors {
            self.send(a, TxMessage::Vote { tx, slot, value, writes: writes.clone() }, out);
        }
    }
}

/// The decision to the participant of `slot`: direct if its address is known, else routed to
/// its replica key.
#[allow(clippy::too_many_arguments)]
pub(super) fn send_decision(
    info: &TxInfo,
    f: u32,
    tx: TxId,
    slot: Slot,
    commit: bool,
    writes: Option<&Writes>,
    to: Option<NodeAddr>,
    out: &mut Vec<TxOutput>,
) {
    let write = writes.map(|w| match w.iter().find(|(i, _)| *i == slot.item) {
        Some((_, v)) => WriteOf::Install(v.clone()),
        None => WriteOf::Release,
    });
    let msg = decision_for(tx, slot, commit, write);
    match to {
        Some(to) => out.push(TxOutput::Send { to, msg }),
        None => {
            let key = RingId::of_key(&info.items[slot.item as usize].key).replica(slot.replica, f);
            out.push(TxOutput::Route { key, msg });
        }
    }
}

/// What an eager transaction's decision tells one participant to do.
pub(super) enum WriteOf {
    /// Install this value (`None`: delete).
    Install(Option<Vec<u8>>),
    /// Only release the lock.
    Release,
}

/// The decision for the participant of `slot`: `write` is `Some(Some(v))` to install `v`,
/// `Some(None)` to delete, `None` to use the prepare's value (an eager participant has none
/// and releases).
pub(super) fn decision_for(
    tx: TxId,
    slot: Slot,
    commit: bool,
    write: Option<WriteOf>,
) -> TxMessage {
    let write = match write {
        Some(WriteOf::Install(v)) => Some(v),
        Some(WriteOf::Release) | None => None,
    };
    TxMessage::Decided { tx, slot, commit, write }
}
