//! The machine as **participant** (the node a `Prepare` was routed to, for one replica of one
//! item): the replica's vote as a round-0 value, the decision applied at the replica, and
//! asking for a decision that does not come.
//!
//! Invariants (besides [`crate::participant`]'s): `Applied` only after the replica applied
//! the decision (then the finished `(tx, slot)` is kept in a tombstone); a replica that does
//! not answer makes it say `Failed`; a replayed prepare of a finished participant locks
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{
    has_flaw, ReplicaFailure, ReplicaOp, ReplicaOutcome, ReplicationRequest, TxId, Vote,
};

#[cfg(feature = "flaws")]
use super::Flaw;
use super::{TxMachine, TxOutput, Wait};
use crate::faults::Fault;
use crate::messages::{Slot, TxMessage, Value};
use crate::participant::{round_zero_value, Participant, Stage, REPLICA_TRIES};

impl TxMachine {
    pub(super) fn prepare(
        &mut self,
        tx: TxId,
        slot: Slot,
        mut p: Participant,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        if p.acceptors.is_empty() || slot.replica >= self.config.f {
            return self.faults.add(Fault::NotMember, &format_args!("prepare {slot:?} of {tx:?}"));
        }
        if self.finished.get(&(tx, slot)).is_some() {
            // A replayed prepare of a participant that finished: it must not lock again.
            return self
                .faults
                .add(Fault::Duplicate, &format_args!("prepare {slot:?} of finished {tx:?}"));
        }
        if let Some(old) = self.parts.get_mut(&(tx, slot)) {
            // A re-sent prepare: say the vote again.
            if let Stage::Voted(v) = old.stage {
                old.announced = true;
                let acceptors = old.acceptors.clone();
                self.propose_vote(tx, slot, v, &acceptors, out);
            }
            return;
        }
        if self.parts.len() >= self.config.max_txs {
            return self.faults.add(Fault::Overloaded, &format_args!("prepare of {tx:?}"));
        }
        let tag = self.tag(Wait::Vote(tx, slot));
        p.stage = Stage::Voting(tag);
        let op = ReplicaOp::Vote { tx, mode: p.mode, read: p.read, lease_ms: p.lease_ms };
        out.push(TxOutput::Replicate(ReplicationRequest::AtReplica {
            key: p.key.clone(),
            replica: slot.replica,
            op,
            tag,
        }));
        p.created = now;
        p.last_ask = now;
        self.parts.insert((tx, slot), p);
    }

    pub(super) fn propose_vote(
        &mut self,
        tx: TxId,
        slot: Slot,
        v: Option<Value>,
        acceptors: &[NodeAddr],
        out: &mut Vec<TxOutput>,
    ) {
        match v {
            Some(value) => {
                for a in acceptors {
                    self.send(*a, TxMessage::Vote { tx, slot, value, writes: None }, out);
                }
            }
            None => self.send(acceptors[0], TxMessage::NoVote { tx, slot }, out),
        }
    }

    pub(super) fn voted(
        &mut self,
        tx: TxId,
        slot: Slot,
        tag: u64,
        result: Result<ReplicaOutcome, ReplicaFailure>,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let skip_check = has_flaw!(self, SkipsVersionCheck);
        let Some(p) = self.parts.get_mut(&(tx, slot)) else { return };
        if p.stage != Stage::Voting(tag) {
            return;
        }
        let vote = match result {
            Ok(ReplicaOutcome::Voted(v)) => Some(v),
            Ok(_) => None,
            Err(_) => {
                p.failures += 1;
                if p.failures < REPLICA_TRIES {
                    let op =
                        ReplicaOp::Vote { tx, mode: p.mode, read: p.read, lease_ms: p.lease_ms };
                    let key = p.key.clone();
                    let tag = self.tag(Wait::Vote(tx, slot));
                    if let Some(p) = self.parts.get_mut(&(tx, slot)) {
                        p.stage = Stage::Voting(tag);
                    }
                    out.push(TxOutput::Replicate(ReplicationRequest::AtReplica {
                        key,
                        replica: slot.replica,
                        op,
                        tag,
                    }));
                    return;
                }
                None
            }
        };
        let mut value = vote.and_then(round_zero_value);
        if let (true, Some(Vote::Refused(selfman_ports::Refusal::Version(current)))) =
            (skip_check, vote)
        {
            // Deliberately wrong: the version is taken as it is, and the commit will install
            // the next one over it.
            p.read = current;
            value = Some(Value::Prepared);
        }
        p.stage = Stage::Voted(value);
        p.locked = vote == Some(Vote::Prepared);
        p.last_ask = now;
        let key = p.key.clone();
        if value == Some(Value::Prepared) {
            self.notify_local(selfman_ports::KeyEvent::Locked { key, tx }, out);
        }
        self.announce_votes(tx, out);
    }

    /// Sends the held votes of `tx`'s participants at this node, unless one of them still
    /// waits for its replica (then the last to vote sends them all, and `coalesce` packs
    /// them into one message per acceptor).
    pub(super) fn announce_votes(&mut self, tx: TxId, out: &mut Vec<TxOutput>) {
        let all =
            (tx, Slot { item: 0, replica: 0 })..=(tx, Slot { item: u32::MAX, replica: u32::MAX });
        let mut held = Vec::new();
        for ((_, slot), p) in self.parts.range_mut(all) {
            match p.stage {
                Stage::Voting(_) => return,
                Stage::Voted(v) if !p.announced => held.push((*slot, v, p)),
                _ => {}
            }
        }
        let held: Vec<(Slot, Option<Value>, Arc<[NodeAddr]>)> = held
            .into_iter()
            .map(|(slot, v, p)| {
                p.announced = true;
                (slot, v, p.acceptors.clone())
            })
            .collect();
        for (slot, v, acceptors) in held {
            self.propose_vote(tx, slot, v, &acceptors, out);
        }
    }

    pub(super) fn apply_decision(
        &mut self,
        tx: TxId,
        slot: Slot,
        commit: bool,
        write: Option<Option<Vec<u8>>>,
        from: NodeAddr,
        out: &mut Vec<TxOutput>,
    ) {
        let Some(p) = self.parts.get_mut(&(tx, slot)) else { return };
        if write.is_some() {
            // An eager transaction's values come with its decision.
            p.write = write;
        }
        let Some(p) = self.parts.get(&(tx, slot)) else { return };
        match p.stage {
            Stage::Applying { commit: c, .. } | Stage::ApplyFailed { commit: c } if c != commit => {
                return self
                    .faults
                    .add(Fault::ConflictingDecision, &format_args!("participant of {tx:?}"));
            }
            // Under way.
            Stage::Applying { .. } => return,
            // Tried and failed before: once more, now that the decision came again.
            Stage::ApplyFailed { .. } | Stage::Voting(_) | Stage::Voted(_) => {}
        }
        let apply = commit || has_flaw!(self, AppliesAbortedWrites);
        let op = match (apply, p.commit_write()) {
            (true, Some((version, value))) => ReplicaOp::Commit { tx, version, value },
            _ => ReplicaOp::Release { tx },
        };
        let key = p.key.clone();
        let tag = self.tag(Wait::Apply(tx, slot));
        if let Some(p) = self.parts.get_mut(&(tx, slot)) {
            p.stage = Stage::Applying { tag, commit, to: from };
        }
        out.push(TxOutput::Replicate(ReplicationRequest::AtReplica {
            key,
            replica: slot.replica,
            op,
            tag,
        }));
    }

    pub(super) fn applied_here(
        &mut self,
        tx: TxId,
        slot: Slot,
        tag: u64,
        result: Result<ReplicaOutcome, ReplicaFailure>,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let Some(p) = self.parts.get_mut(&(tx, slot)) else { return };
        let Stage::Applying { tag: t, commit, to } = p.stage else { return };
        if t != tag {
            return;
        }
        if result.is_err() {
            p.failures = p.failures.saturating_add(1);
            p.stage = Stage::ApplyFailed { commit };
            if p.failures < REPLICA_TRIES * 2 {
                return self.apply_decision(tx, slot, commit, None, to, out);
            }
            // Not applied: never `Applied`. The deliverer keeps sending the decision (each
            // copy is one more try) until its deadline; the lock's lease ends it otherwise.
            let tm = p.acceptors[0];
            self.send(to, TxMessage::Failed { tx, slot }, out);
            if tm != to {
                self.send(tm, TxMessage::Failed { tx, slot }, out);
            }
            return;
        }
        if let Ok(ReplicaOutcome::Stale { current }) = &result {
            // Only a commit after the lock's lease ended finds the item changed.
            self.faults.add(Fault::LateCommit, &format_args!("commit of {tx:?} found {current}"));
        }
        let Some(p) = self.parts.remove(&(tx, slot)) else { return };
        self.finished.insert((tx, slot), commit, now);
        let event = match (commit, p.commit_write()) {
            (true, Some((version, value))) => {
                Some(selfman_ports::KeyEvent::Changed { key: p.key.clone(), version, value })
            }
            (false, _) if p.locked => {
                Some(selfman_ports::KeyEvent::Unlocked { key: p.key.clone(), tx })
            }
            _ => None,
        };
        if let Some(e) = event {
            self.notify_local(e, out);
        }
        // To whoever told the decision, and to the TM, which delivers it (an acceptor
        // answering a late vote tells the decision too, but does not wait for `Applied`).
        // Held while another participant of `tx` here still applies, so they go together.
        self.held_applied.push((tx, to, slot));
        if p.acceptors[0] != to {
            self.held_applied.push((tx, p.acceptors[0], slot));
        }
        let all =
            (tx, Slot { item: 0, replica: 0 })..=(tx, Slot { item: u32::MAX, replica: u32::MAX });
        let applying =
            self.parts.range(all).any(|(_, p)| matches!(p.stage, Stage::Applying { .. }));
        if !applying || self.held_applied.len() >= self.config.max_txs {
            self.send_applied(Some(tx), out);
        }
    }

    /// Sends the held `Applied` of `tx` (`None`: of every transaction).
    pub(super) fn send_applied(&mut self, tx: Option<TxId>, out: &mut Vec<TxOutput>) {
        let mut held = std::mem::take(&mut self.held_applied);
        held.retain(|(t, to, slot)| {
            if tx.is_some_and(|tx| tx != *t) {
                return true;
            }
            let msg = TxMessage::Applied { tx: *t, slot: *slot };
            if *to == self.me {
                self.local_sent[msg.kind_index()] += 1;
                self.local.push_back(msg);
            } else {
                out.push(TxOutput::Send { to: *to, msg });
            }
            false
        });
        self.held_applied = held;
    }

    pub(super) fn tick_participants(&mut self, now: Time, out: &mut Vec<TxOutput>) {
        let cfg = self.config;
        let mut gone = Vec::new();
        let mut ask = Vec::new();
        let mut held = Vec::new();
        for ((tx, slot), p) in &mut self.parts {
            let lease = Duration::from_millis(p.lease_ms);
            if now >= p.created + lease * 2 {
                gone.push((*tx, *slot));
                continue;
            }
            if matches!(p.stage, Stage::Voted(_))
                && !p.announced
                && now >= p.last_ask + cfg.retransmit
            {
                // Held back for a sibling that still has no vote: sent now anyway.
                p.announced = true;
                p.last_ask = now;
                if let Stage::Voted(v) = p.stage {
                    held.push((*tx, *slot, v, p.acceptors.clone()));
                }
                continue;
            }
            if matches!(p.stage, Stage::Voted(_) | Stage::ApplyFailed { .. })
                && now >= p.created + cfg.ask_after
                && now >= p.last_ask + cfg.retransmit
            {
                p.last_ask = now;
                ask.push((*tx, *slot, p.acceptors.clone(), p.stage.clone()));
            }
        }
        for k in gone {
            self.parts.remove(&k);
        }
        for (tx, slot, v, acceptors) in held {
            self.propose_vote(tx, slot, v, &acceptors, out);
        }
        // `Applied` held for a sibling whose apply has not ended by the tick: sent now.
        self.send_applied(None, out);
        for (tx, slot, acceptors, stage) in ask {
            for a in acceptors.iter() {
                self.send(*a, TxMessage::AskDecision { tx, slot }, out);
            }
            // The vote may have been lost too: propose it again (acceptors ignore copies).
            if let Stage::Voted(v) = stage {
                self.propose_vote(tx, slot, v, &acceptors, out);
            }
        }
    }
}
