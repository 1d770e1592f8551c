//! The machine as **acceptor** (the TM and every rTM of a transaction) and as **leader** of
//! the rounds above 0 (recovery by the TM, takeover by an rTM): Paxos phases 1 and 2 over
//! every instance of a transaction, decisions told and adopted, `Forget`, and the
//! per-transaction timer (re-sends, timeouts, the rank-staggered backoff, expiry).
//!
//! Invariants (besides [`crate::rtm`]'s): a forgotten transaction's decision answers a late
//! `Collect` (never an empty promise); rounds stay below [`MAX_ROUND`]; an rTM leads only
//! after its staggered or backed-off time, so duelling leaders stop duelling.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{has_flaw, TxId};

use super::as_tm::{decision_for, send_decision, WriteOf};
#[cfg(feature = "flaws")]
use super::Flaw;
use super::DROP_AFTER_LEASES;
use super::{Gone, TxMachine, TxOutput, TxState, MAX_WATCHED};
use crate::faults::Fault;
use crate::messages::{Round, Slot, TxInfo, TxMessage, Value, Writes};
use crate::rtm::{takeover_backoff, Acceptor, VoteOutcome, MAX_ROUND};
use crate::tm::{outcome, Leader, LeaderStep, Phase};

impl TxMachine {
    pub(super) fn init_rtm(
        &mut self,
        from: NodeAddr,
        mut info: Arc<TxInfo>,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let tx = info.tx;
        // A lease longer than any this configuration gives is cut to the longest (it times
        // the takeover and the state's end here; a copy only then: the info is shared).
        if info.lease_ms > self.config.max_wire_lease_ms() {
            Arc::make_mut(&mut info).lease_ms = self.config.max_wire_lease_ms();
        }
        if info.acceptors.first() != Some(&from) || info.rank_of(self.me).is_none_or(|r| r == 0) {
            return self
                .faults
                .add(Fault::NotMember, &format_args!("init-rtm of {tx:?} from {from:?}"));
        }
        let rank = info.rank_of(self.me).unwrap_or(1);
        // An eager transaction waits for its client up to the client's lease first.
        let client_lease = if info.eager {
            Duration::from_millis(info.lease_ms.saturating_sub(self.config.lease_ms()))
        } else {
            Duration::ZERO
        };
        let takeover = now + client_lease + self.config.takeover_after * rank;
        if !self.txs.contains_key(&tx) {
            if self.is_forgotten(tx, "init-rtm") {
                return;
            }
            if !self.has_room() {
                return self.faults.add(Fault::Overloaded, &format_args!("init-rtm of {tx:?}"));
            }
            self.txs.insert(
                tx,
                TxState {
                    acc: Acceptor::new(None, now),
                    tm: None,
                    leader: None,
                    delivery: None,
                    decided_at: None,
                },
            );
        }
        let Some(s) = self.txs.get_mut(&tx) else { return };
        if let Some(known) = &s.acc.info {
            let kind = if *known == info { Fault::Duplicate } else { Fault::NotMember };
            return self.faults.add(kind, &format_args!("init-rtm of {tx:?} again, from {from:?}"));
        }
        s.acc.next_takeover = Some(takeover);
        let early = s.acc.learn_info(info);
        let values: Vec<(Slot, Value)> = early
            .iter()
            .filter(|(_, _, o)| *o == VoteOutcome::Accepted)
            .map(|(s, v, _)| (*s, *v))
            .collect();
        if !values.is_empty() {
            out.push(TxOutput::Send {
                to: from,
                msg: TxMessage::Accepted { tx, round: Round::ZERO, values },
            });
        }
        if self.watched.len() >= MAX_WATCHED {
            // Bounded: asking the failure detector again to watch a node is harmless.
            self.watched.clear();
        }
        if self.watched.insert(from) {
            out.push(TxOutput::Monitor(from));
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn vote(
        &mut self,
        from: NodeAddr,
        tx: TxId,
        slot: Slot,
        value: Value,
        writes: Option<Writes>,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        if !self.txs.contains_key(&tx) {
            if self.is_forgotten(tx, "vote") {
                return self.answer_from_tombstone(from, tx, slot, out);
            }
            if !self.has_room() {
                return self.faults.add(Fault::Overloaded, &format_args!("vote for {tx:?}"));
            }
            // The vote may have overtaken its InitRtm: kept (bounded) until it comes.
            self.txs.insert(
                tx,
                TxState {
                    acc: Acceptor::new(None, now),
                    tm: None,
                    leader: None,
                    delivery: None,
                    decided_at: None,
                },
            );
        }
        let Some(s) = self.txs.get_mut(&tx) else { return };
        if let Some(commit) = s.acc.decided {
            // Late vote: tell the participant what was decided (an eager commit's values
            // come from the node that delivers it).
            if !(commit && s.acc.info.as_ref().is_none_or(|i| i.eager)) {
                self.send(from, TxMessage::Decided { tx, slot, commit, write: None }, out);
            }
            return;
        }
        let client_slot =
            s.acc.info.as_ref().filter(|i| i.eager).map(|i| (i.client_slot(), i.acceptors[0]));
        if let Some((cs, tm)) = client_slot {
            if slot == cs && from != tm {
                return self
                    .faults
                    .add(Fault::NotMember, &format_args!("client vote of {tx:?} from {from:?}"));
            }
        }
        let result = s.acc.vote(slot, value);
        if result == VoteOutcome::Accepted
            && value == Value::Prepared
            && client_slot.is_some_and(|(cs, _)| cs == slot)
        {
            s.acc.writes = Some(writes.unwrap_or_default());
        }
        let is_tm = s.tm.is_some();
        if let Some(tm) = s.tm.as_mut() {
            if result == VoteOutcome::Accepted || result == VoteOutcome::Duplicate {
                tm.participants.insert(slot, from);
            }
        }
        let tm_addr = s.acc.info.as_ref().map(|i| i.acceptors[0]);
        match result {
            VoteOutcome::Accepted if is_tm => self.learn(tx, self.me, slot, value, now, out),
            VoteOutcome::Accepted | VoteOutcome::Duplicate => {
                if let (false, Some(tm)) = (is_tm, tm_addr) {
                    let msg =
                        TxMessage::Accepted { tx, round: Round::ZERO, values: vec![(slot, value)] };
                    self.send(tm, msg, out);
                }
                if result == VoteOutcome::Duplicate {
                    self.faults
                        .add(Fault::Duplicate, &format_args!("vote {slot:?} of {tx:?} again"));
                }
            }
            VoteOutcome::Early => {}
            VoteOutcome::Conflicting => self.faults.add(
                Fault::ConflictingVote,
                &format_args!("vote {slot:?} of {tx:?} from {from:?}"),
            ),
            VoteOutcome::WrongRound => self
                .faults
                .add(Fault::WrongRound, &format_args!("round-0 vote of {tx:?} after a promise")),
            VoteOutcome::NotMember => self
                .faults
                .add(Fault::NotMember, &format_args!("vote {slot:?} of {tx:?} from {from:?}")),
        }
    }

    pub(super) fn accepted(
        &mut self,
        from: NodeAddr,
        tx: TxId,
        round: Round,
        values: Vec<(Slot, Value)>,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let Some(s) = self.txs.get_mut(&tx) else { return self.drop_unknown("accepted", tx, from) };
        if round == Round::ZERO {
            if s.tm.is_none() {
                return self
                    .faults
                    .add(Fault::NotMember, &format_args!("round-0 accepted at an rTM"));
            }
            for (slot, v) in values {
                self.learn(tx, from, slot, v, now, out);
            }
            return;
        }
        let (Some(leader), Some(info)) = (s.leader.as_mut(), s.acc.info.as_ref()) else {
            return self.faults.add(
                Fault::WrongRound,
                &format_args!("accepted {round:?} of {tx:?}, not leading"),
            );
        };
        if leader.round != round {
            return self
                .faults
                .add(Fault::WrongRound, &format_args!("accepted {round:?} of {tx:?}"));
        }
        if info.rank_of(from).is_none() {
            return self.faults.add(Fault::NotMember, &format_args!("accepted from {from:?}"));
        }
        match leader.accepted(info, from) {
            Err(()) => self.faults.add(Fault::Duplicate, &format_args!("accepted {round:?} twice")),
            Ok(LeaderStep::Chosen(chosen)) => {
                let commit = outcome(info, &chosen, self.config.item_quorum()).unwrap_or(false);
                self.decide(tx, commit, &chosen, true, now, out);
            }
            Ok(_) => {}
        }
    }

    pub(super) fn collect(
        &mut self,
        from: NodeAddr,
        tx: TxId,
        round: Round,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        if !self.txs.contains_key(&tx) {
            if let Some(Gone { decided: Some(commit), .. }) = self.gone.get(&tx).copied() {
                // Forgotten after a decision: the leader learns it (never an empty promise,
                // which could let it choose against the decision).
                let msg = TxMessage::Promise {
                    tx,
                    round,
                    accepted: Vec::new(),
                    decided: Some(commit),
                    writes: None,
                };
                return self.send(from, msg, out);
            }
            if self.is_forgotten(tx, "collect") {
                return;
            }
            if !self.has_room() {
                return self.faults.add(Fault::Overloaded, &format_args!("collect for {tx:?}"));
            }
            // An acceptor whose InitRtm was lost still promises (it accepted nothing).
            self.txs.insert(
                tx,
                TxState {
                    acc: Acceptor::new(None, now),
                    tm: None,
                    leader: None,
                    delivery: None,
                    decided_at: None,
                },
            );
        }
        let Some(s) = self.txs.get_mut(&tx) else { return };
        if let Some(info) = &s.acc.info {
            if info.rank_of(from) != Some(round.rank) || round == Round::ZERO {
                return self
                    .faults
                    .add(Fault::NotMember, &format_args!("collect {round:?} from {from:?}"));
            }
        }
        let (decided, writes) = (s.acc.decided, s.acc.writes.clone());
        let msg = match s.acc.collect(round) {
            Ok(accepted) => TxMessage::Promise { tx, round, accepted, decided, writes },
            Err(promised) => TxMessage::Nack { tx, round, promised },
        };
        self.send(from, msg, out);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn promise(
        &mut self,
        from: NodeAddr,
        tx: TxId,
        round: Round,
        accepted: Vec<(Slot, Round, Value)>,
        (decided, writes): (Option<bool>, Option<Writes>),
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let Some(s) = self.txs.get_mut(&tx) else { return self.drop_unknown("promise", tx, from) };
        let (Some(leader), Some(info)) = (s.leader.as_mut(), s.acc.info.as_ref()) else {
            return self
                .faults
                .add(Fault::WrongRound, &format_args!("promise of {tx:?}, not leading"));
        };
        if leader.round != round {
            return self
                .faults
                .add(Fault::WrongRound, &format_args!("promise {round:?} of {tx:?}"));
        }
        if info.rank_of(from).is_none() {
            return self.faults.add(Fault::NotMember, &format_args!("promise from {from:?}"));
        }
        match leader.promise(info, from, accepted, decided, writes) {
            Err(()) => self.faults.add(Fault::Duplicate, &format_args!("promise {round:?} twice")),
            Ok(LeaderStep::Propose(values)) => {
                leader.last_sent = now;
                let acceptors = info.acceptors.clone();
                let writes = leader.writes.clone();
                for a in acceptors {
                    let msg = TxMessage::Propose {
                        tx,
                        round,
                        values: values.clone(),
                        writes: writes.clone(),
                    };
                    self.send(a, msg, out);
                }
            }
            Ok(LeaderStep::Decided(commit)) => {
                // An acceptor knew the decision: this leader delivers it (its TM may be gone),
                // unless it is an eager commit whose values it does not have.
                let eager = info.eager;
                let has_values = s.writes().is_some();
                self.decide(
                    tx,
                    commit,
                    &BTreeMap::new(),
                    !(commit && eager && !has_values),
                    now,
                    out,
                )
            }
            Ok(_) => {}
        }
    }

    pub(super) fn nack(&mut self, tx: TxId, round: Round, promised: Round, now: Time) {
        let random = self.random();
        let retransmit = self.config.retransmit;
        let Some(s) = self.txs.get_mut(&tx) else { return self.drop_unknown("nack", tx, self.me) };
        if s.leader.as_ref().is_some_and(|l| l.round == round) && promised > round {
            // Another leader runs a higher round: step back; lead again after a backoff (by
            // rank, randomised, doubling) if it does not finish.
            s.leader = None;
            s.acc.promised = s.acc.promised.max(promised);
            s.acc.attempts = s.acc.attempts.saturating_add(1);
            let wait = takeover_backoff(retransmit, round.rank, s.acc.attempts, random);
            s.acc.next_takeover = Some(now + wait);
        } else {
            self.faults.add(Fault::WrongRound, &format_args!("nack {round:?} of {tx:?}"));
        }
    }

    pub(super) fn propose(
        &mut self,
        from: NodeAddr,
        tx: TxId,
        round: Round,
        values: Vec<(Slot, Value)>,
        writes: Option<Writes>,
        out: &mut Vec<TxOutput>,
    ) {
        let Some(s) = self.txs.get_mut(&tx) else { return self.drop_unknown("propose", tx, from) };
        if let Some(info) = &s.acc.info {
            if info.rank_of(from) != Some(round.rank) {
                return self
                    .faults
                    .add(Fault::NotMember, &format_args!("propose {round:?} from {from:?}"));
            }
        }
        let msg = match s.acc.propose(round, &values) {
            Ok(true) => {
                if writes.is_some() {
                    s.acc.writes = writes;
                }
                TxMessage::Accepted { tx, round, values: Vec::new() }
            }
            Ok(false) => {
                return self
                    .faults
                    .add(Fault::NotMember, &format_args!("propose of unknown slots"));
            }
            Err(promised) => TxMessage::Nack { tx, round, promised },
        };
        self.send(from, msg, out);
    }

    /// Starts (or restarts higher) a round above 0 led by this node for `tx`.
    pub(super) fn lead(&mut self, tx: TxId, now: Time, out: &mut Vec<TxOutput>) {
        let Some(s) = self.txs.get_mut(&tx) else { return };
        let Some(info) = s.acc.info.as_ref() else { return };
        let Some(rank) = info.rank_of(self.me) else { return };
        let highest = s.acc.promised.n.max(s.leader.as_ref().map_or(0, |l| l.round.n));
        let Some(n) = highest.checked_add(1).filter(|n| *n <= MAX_ROUND) else {
            return self.faults.add(Fault::OutOfRange, &format_args!("no round left for {tx:?}"));
        };
        let round = Round { n, rank };
        s.leader = Some(Leader::new(round, now));
        if s.tm.is_some() {
            self.stats.recoveries += 1;
        } else {
            self.stats.takeovers += 1;
        }
        tracing::debug!(?tx, ?round, "transactions: leading a round");
        let acceptors = info.acceptors.clone();
        for a in acceptors {
            self.send(a, TxMessage::Collect { tx, round }, out);
        }
    }

    pub(super) fn decided(
        &mut self,
        from: NodeAddr,
        tx: TxId,
        slot: Slot,
        (commit, write): (bool, Option<Option<Vec<u8>>>),
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let participant = self.parts.get(&(tx, slot)).map(|p| p.acceptors.contains(&from));
        let acceptor = self.txs.get(&tx).map(|s| s.acc.is_acceptor(from));
        if participant.is_none() {
            match self.finished.get(&(tx, slot)).copied() {
                // A participant that finished (a re-sent decision, its `Applied` lost):
                // stop the re-sends.
                Some(c) if c == commit => {
                    return self.send(from, TxMessage::Applied { tx, slot }, out);
                }
                Some(_) => {
                    return self.faults.add(
                        Fault::ConflictingDecision,
                        &format_args!("decision {commit} of {tx:?}, applied the other"),
                    );
                }
                // No participant here (its range moved, its prepare was lost, it expired):
                // nothing was applied, so nothing is said; the deliverer keeps trying.
                None if acceptor.is_none() => return self.drop_unknown("decision", tx, from),
                None => {}
            }
        }
        if participant != Some(true) && acceptor != Some(Some(true)) {
            // `Some(None)`: an acceptor that does not know the transaction's members yet
            // takes the decision from a promise later; no fault unless nobody knows `from`.
            if acceptor != Some(None) {
                self.faults
                    .add(Fault::NotMember, &format_args!("decision of {tx:?} from {from:?}"));
            }
            return;
        }
        if participant == Some(true) {
            self.apply_decision(tx, slot, commit, write, from, out);
        }
        if acceptor == Some(Some(true)) {
            self.decide(tx, commit, &BTreeMap::new(), false, now, out);
        }
    }

    pub(super) fn ask_decision(
        &mut self,
        from: NodeAddr,
        tx: TxId,
        slot: Slot,
        out: &mut Vec<TxOutput>,
    ) {
        let Some(s) = self.txs.get(&tx) else {
            if self.gone.get(&tx).is_some() {
                return self.answer_from_tombstone(from, tx, slot, out);
            }
            return self.drop_unknown("ask-decision", tx, from);
        };
        let Some(commit) = s.acc.decided else { return };
        let eager = s.acc.info.as_ref().is_none_or(|i| i.eager);
        let write = match (s.writes(), commit && eager) {
            (_, false) => None,
            (Some(w), true) => {
                Some(w.iter().find(|(i, _)| *i == slot.item).map(|(_, v)| v.clone()))
            }
            // An eager commit's values are not known here: the deliverer sends them.
            (None, true) => return,
        };
        let write = write.map(|w| w.map_or(WriteOf::Release, WriteOf::Install));
        self.send(from, decision_for(tx, slot, commit, write), out);
    }

    /// The TM says every participant has the decision `commit`: an acceptor that missed the
    /// decision adopts it (the TM only says `Forget` after deciding), then forgets the
    /// transaction, keeping the decision in its tombstone.
    pub(super) fn forget(
        &mut self,
        from: NodeAddr,
        tx: TxId,
        commit: bool,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let Some(s) = self.txs.get(&tx) else {
            return self.drop_unknown("forget", tx, from);
        };
        // An acceptor that delivered the decision (the TM, or an rTM that took over).
        if s.acc.info.as_ref().and_then(|i| i.rank_of(from)).is_none() {
            return self
                .faults
                .add(Fault::NotMember, &format_args!("forget of {tx:?} from {from:?}"));
        }
        match s.acc.decided {
            Some(d) if d != commit => {
                return self.faults.add(
                    Fault::ConflictingDecision,
                    &format_args!("forget of {tx:?} says {commit}, decided {d}"),
                );
            }
            Some(_) => {}
            None => self.decide(tx, commit, &BTreeMap::new(), false, now, out),
        }
        self.forget_tx(tx, now);
    }

    pub(super) fn tick_tx(&mut self, tx: TxId, now: Time, out: &mut Vec<TxOutput>) {
        let _span = super::tx_span(tx, "tick").entered();
        let cfg = self.config;
        let no_takeover = has_flaw!(self, NoTakeover);
        let Some(s) = self.txs.get_mut(&tx) else { return };
        let lease = s.acc.info.as_ref().map_or(cfg.lease, |i| Duration::from_millis(i.lease_ms));
        // Bounded state: nothing outlives the locks it guards.
        let end = match s.decided_at {
            Some(t) => t + lease * 2,
            // Votes kept for an InitRtm that never came hold nothing accepted: dropped soon.
            None if s.acc.info.is_none() && s.acc.promised == Round::ZERO => {
                s.acc.since + cfg.takeover_after * 2
            }
            None => s.acc.since + lease * DROP_AFTER_LEASES,
        };
        if now >= end {
            if s.acc.info.is_none() && !s.acc.early.is_empty() {
                self.faults
                    .add(Fault::UnknownTx, &format_args!("votes for {tx:?}, never initiated"));
            }
            if let Some(tm) = s.tm.as_ref().filter(|t| !t.answered) {
                let client = tm.client.clone();
                self.txs.remove(&tx);
                self.answer_timeout(client, tx, out);
                return;
            }
            self.forget_tx(tx, now);
            return;
        }
        let Some(info) = s.acc.info.clone() else { return };
        if let Some(d) = s.delivery.as_mut() {
            if now >= d.until {
                // Participants that never answered: their locks have ended; anti-entropy
                // brings their replicas up to date.
                self.forget_tx(tx, now);
                return;
            }
            if now >= d.last_sent + cfg.retransmit {
                d.last_sent = now;
                let (commit, pending, writes) = (d.commit, d.pending.clone(), d.writes.clone());
                for (slot, to) in pending {
                    send_decision(&info, cfg.f, tx, slot, commit, writes.as_ref(), to, out);
                }
            }
            return;
        }
        let rank = info.rank_of(self.me).unwrap_or(1).max(1);
        if s.tm.is_none() && !s.acc.tm_suspected && self.suspected.contains(&info.acceptors[0]) {
            // The TM is suspected: rank 1 acts at once, rank r after r − 1 retransmits (one
            // at a time, usually), once per suspicion.
            s.acc.tm_suspected = true;
            let at = now + cfg.retransmit * (rank - 1);
            s.acc.next_takeover = Some(s.acc.next_takeover.map_or(at, |t| t.min(at)));
        }
        if let Some(commit) = s.acc.decided {
            // An rTM that knows the decision while its TM is suspected delivers it itself
            // (the TM may have died before telling every participant), unless it is an eager
            // commit whose values it lacks.
            let due = s.acc.tm_suspected && s.acc.next_takeover.is_some_and(|t| now >= t);
            if due && !no_takeover && !(commit && info.eager && s.writes().is_none()) {
                s.acc.next_takeover = None;
                // `decide` delivers a decision it does not know yet: cleared to re-enter it.
                s.acc.decided = None;
                return self.decide(tx, commit, &BTreeMap::new(), true, now, out);
            }
            return;
        }
        if let Some(tm) = s.tm.as_mut() {
            if let Some(e) = tm.eager.as_ref() {
                // Eager locking: no locks in time, or the client let their lease end.
                let abort = match e.proposal {
                    None => (!e.told && now >= tm.started + cfg.vote_timeout) || now >= e.lease_end,
                    Some(_) => false,
                };
                if abort {
                    return self.client_decides(tx, None, now, out);
                }
                if e.proposal.is_none() {
                    // Waiting for the client: nothing times out but the lease.
                    return self.resend_prepares(tx, now, out);
                }
            }
            let Some(s) = self.txs.get_mut(&tx) else { return };
            let Some(tm) = s.tm.as_mut() else { return };
            if !tm.answered && now >= tm.started + cfg.commit_timeout {
                tm.answered = true;
                let client = tm.client.clone();
                self.answer_timeout(client, tx, out);
                return;
            }
            self.resend_prepares(tx, now, out);
            let Some(s) = self.txs.get_mut(&tx) else { return };
            let Some(tm) = s.tm.as_ref() else { return };
            let backed_off = s.acc.next_takeover.is_none_or(|t| now >= t);
            if s.leader.is_none() && now >= tm.started + cfg.vote_timeout && backed_off {
                return self.lead(tx, now, out);
            }
        } else if s.leader.is_none()
            && !no_takeover
            && s.acc.next_takeover.is_some_and(|t| now >= t)
        {
            // If this round does not end, lead again later.
            s.acc.next_takeover = Some(now + cfg.takeover_after * info.acceptors.len() as u32);
            return self.lead(tx, now, out);
        }
        let Some(s) = self.txs.get_mut(&tx) else { return };
        if let Some(l) = s.leader.as_mut() {
            if now >= l.last_sent + cfg.retransmit {
                l.last_sent = now;
                let msg = match l.phase {
                    Phase::Collecting => TxMessage::Collect { tx, round: l.round },
                    Phase::Proposing => TxMessage::Propose {
                        tx,
                        round: l.round,
                        values: l.values.clone(),
                        writes: l.writes.clone(),
                    },
                };
                for &a in &info.acceptors {
                    self.send(a, msg.clone(), out);
                }
            }
        }
    }
}
