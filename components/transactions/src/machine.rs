//! [`TxMachine`]: one node's transaction layer without I/O — the roles of `tm`, `rtm` and
//! `participant` put together, inputs in, [`TxOutput`]s pushed into a `Vec`.
//!
//! Invariants (besides each role's):
//! * a decision, once known at a node, never changes there (a contradicting one is counted as
//!   [`Fault::ConflictingDecision`] and dropped);
//! * state is bounded: at most `max_txs` transactions and participants; a transaction's state
//!   is dropped when every participant said `Applied` (`Forget` to the acceptors), and in any
//!   case once every lock it took has surely expired (`DROP_AFTER_LEASES` leases);
//! * every message dropped is counted by kind ([`FaultCounts`]) with a trace event.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{
    has_flaw, ReplicaFailure, ReplicaOp, ReplicaOutcome, ReplicationIndication, ReplicationRequest,
    RingId, TxId, TxIndication, Vote,
};

use crate::client::{Client, Session};
use crate::config::TxConfig;
use crate::faults::{Fault, FaultCounts};
use crate::messages::{Round, Slot, TxInfo, TxMessage, Value, Writes};
use crate::notify::Subscriptions;
use crate::participant::{round_zero_value, Participant, Stage, REPLICA_TRIES};
use crate::rtm::{takeover_backoff, Acceptor, VoteOutcome, MAX_ROUND};
use crate::tm::{
    failed_items, items_prepared, outcome, Delivery, Leader, LeaderStep, Learner, Phase,
};
use crate::tombstone::Tombstones;
use crate::valueset::SetOp;

/// A transaction's state is dropped at the latest this many leases after it was first seen
/// (every lock it took has ended by then; a participant forgets it after two).
pub(crate) const DROP_AFTER_LEASES: u32 = 4;

/// Forgotten transactions (with their decision) and finished participants a node remembers,
/// per configured in-flight transaction (`max_txs`): the tombstones hold at most
/// `TOMBSTONES_PER_TX · max_txs` entries each, kept `DROP_AFTER_LEASES` leases (see
/// [`crate::tombstone`]).
pub(crate) const TOMBSTONES_PER_TX: usize = 2;

/// Nodes a machine remembers having asked the failure detector to watch, or as suspected.
pub(crate) const MAX_WATCHED: usize = 4_096;

/// What a node remembers of a transaction it forgot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gone {
    /// Its decision, if this node knew one.
    pub(crate) decided: Option<bool>,
    /// Whether it was an eager transaction (or not known to be a lazy one): a commit's
    /// values are not known here, so a late participant is not told "commit" from here.
    pub(crate) eager: bool,
}

/// A deliberate mistake of the [`TxMachine`], to show that the checkers catch it (feature
/// `flaws`, for tests only; `docs/decisions/011-deliberate-bugs-are-test-only.md`).
#[cfg(feature = "flaws")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// A participant refused for the version votes again with the replica's version (lost
    /// update: caught by the serializability check, `lost_update_is_caught`).
    SkipsVersionCheck,
    /// The TM takes an item as prepared when one replica is (breaks atomicity and
    /// serializability: `commit_without_majority_is_caught`).
    CommitsWithoutMajority,
    /// rTMs never take over (a transaction whose TM died never ends: caught by the liveness
    /// check, `no_takeover_is_caught`).
    NoTakeover,
    /// A value-set operation that met a concurrent one says `Ok` without retrying (an
    /// acknowledged add is lost: `no_set_retry_is_caught`).
    NoSetRetry,
}

/// What the machine asks its component to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOutput {
    /// Route `msg` through the ring to the peer responsible for `key`.
    Route {
        /// The key.
        key: RingId,
        /// The message.
        msg: TxMessage,
    },
    /// Send `msg` to `to` directly.
    Send {
        /// The destination.
        to: NodeAddr,
        /// The message.
        msg: TxMessage,
    },
    /// Ask the replication layer (answered by [`TxMachine::on_replication`]).
    Replicate(ReplicationRequest),
    /// Ask the ring who is responsible for `key` (answered by [`TxMachine::on_lookup`]).
    Lookup {
        /// The key.
        key: RingId,
        /// The tag to answer with.
        tag: u64,
    },
    /// Ask the failure detector to watch `node` (a TM this node is an rTM for).
    Monitor(NodeAddr),
    /// Tell the client.
    Indicate(TxIndication),
}

/// What waits for a replication answer.
#[derive(Clone, Debug)]
pub(crate) enum Wait {
    /// A participant's vote.
    Vote(TxId, Slot),
    /// A participant's apply.
    Apply(TxId, Slot),
    /// A client read.
    Read(selfman_ports::TxHandle, Vec<u8>),
    /// A value-set read of one replica.
    SetRead(u64, u32),
}

/// The roles of one node in one transaction.
#[derive(Clone, Debug)]
pub(crate) struct TxState {
    /// As acceptor (every node of `info.acceptors`).
    pub(crate) acc: Acceptor,
    /// As TM (the node that started it).
    pub(crate) tm: Option<Tm>,
    /// As leader of a round above 0.
    pub(crate) leader: Option<Leader>,
    /// As the node that decided: delivering the decision.
    pub(crate) delivery: Option<Delivery>,
    /// When the decision became known here.
    pub(crate) decided_at: Option<Time>,
}

impl TxState {
    /// The client's values of an eager transaction as known here: the TM's proposal, else
    /// what this node's leader learned from promises, else what its acceptor accepted.
    pub(crate) fn writes(&self) -> Option<&Writes> {
        let proposed = self.tm.as_ref().and_then(|t| t.eager.as_ref());
        proposed
            .and_then(|e| e.proposal.as_ref())
            .and_then(|(_, w)| w.as_ref())
            .or_else(|| self.leader.as_ref().and_then(|l| l.writes.as_ref()))
            .or(self.acc.writes.as_ref())
    }
}

/// The TM's own part of a transaction.
#[derive(Clone, Debug)]
pub(crate) struct Tm {
    pub(crate) learner: Learner,
    /// The prepares, re-sent while their instance is not chosen.
    pub(crate) prepares: Vec<(RingId, TxMessage)>,
    /// The participant of each instance, from its vote.
    pub(crate) participants: BTreeMap<Slot, NodeAddr>,
    pub(crate) client: Client,
    pub(crate) answered: bool,
    pub(crate) started: Time,
    pub(crate) last_sent: Time,
    /// Eager locking: the client's part.
    pub(crate) eager: Option<Eager>,
}

/// The TM's side of an eager transaction.
#[derive(Clone, Debug)]
pub(crate) struct Eager {
    /// The client was told it holds the locks.
    pub(crate) told: bool,
    /// The client's decision as proposed (commit with values, or abort).
    pub(crate) proposal: Option<(Value, Option<Writes>)>,
    /// When the locks end if the client does not commit.
    pub(crate) lease_end: Time,
}

/// Counts of what this node did, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Transactions this node decided commit (as TM or leader).
    pub committed: u64,
    /// Transactions this node decided abort (as TM or leader).
    pub aborted: u64,
    /// Rounds above 0 led by the TM for missing votes.
    pub recoveries: u64,
    /// Rounds above 0 led by an rTM (takeovers).
    pub takeovers: u64,
    /// `Failed` answers of participants whose replica could not apply a decision (the
    /// decision is sent again until the deadline).
    pub apply_failures: u64,
}

/// One node's transaction layer (see the crate documentation).
#[derive(Clone, Debug)]
pub struct TxMachine {
    pub(crate) me: NodeAddr,
    pub(crate) config: TxConfig,
    /// This node's ring position (the rTMs sit at its replica keys).
    pos: Option<RingId>,
    /// The rTMs: the peers at replica keys `1..f` of `pos`.
    rtms: Vec<Option<NodeAddr>>,
    next_lookup: Time,
    pub(crate) txs: BTreeMap<TxId, TxState>,
    pub(crate) parts: BTreeMap<(TxId, Slot), Participant>,
    pub(crate) sessions: BTreeMap<selfman_ports::TxHandle, Session>,
    pub(crate) sets: BTreeMap<u64, SetOp>,
    pub(crate) subs: Subscriptions,
    pub(crate) waits: BTreeMap<u64, Wait>,
    next_tag: u64,
    next_tx: u64,
    /// The state of this node's pseudo-random numbers (backoff jitter): deterministic per
    /// node, so simulations replay.
    rng: u64,
    pub(crate) suspected: BTreeSet<NodeAddr>,
    pub(crate) watched: BTreeSet<NodeAddr>,
    local: VecDeque<TxMessage>,
    /// Transactions forgotten here, with their decision: a late message about one is
    /// answered from it and creates no state.
    pub(crate) gone: Tombstones<TxId, Gone>,
    /// Participants that applied their decision, with it (`true`: commit): a re-sent
    /// decision is answered `Applied`, a replayed prepare locks nothing.
    pub(crate) finished: Tombstones<(TxId, Slot), bool>,
    pub(crate) faults: FaultCounts,
    pub(crate) stats: TxStats,
    #[cfg(feature = "flaws")]
    pub(crate) flaw: Option<Flaw>,
}

impl TxMachine {
    /// The transaction layer of node `me`.
    pub fn new(me: NodeAddr, config: TxConfig) -> TxMachine {
        TxMachine {
            me,
            config,
            pos: None,
            rtms: vec![None; config.f.saturating_sub(1) as usize],
            next_lookup: Time::ZERO,
            txs: BTreeMap::new(),
            parts: BTreeMap::new(),
            sessions: BTreeMap::new(),
            sets: BTreeMap::new(),
            subs: Subscriptions::default(),
            waits: BTreeMap::new(),
            next_tag: 1,
            next_tx: 0,
            rng: node_hash(me),
            suspected: BTreeSet::new(),
            watched: BTreeSet::new(),
            local: VecDeque::new(),
            gone: Tombstones::new(
                config.max_txs * TOMBSTONES_PER_TX,
                config.lease * DROP_AFTER_LEASES,
            ),
            finished: Tombstones::new(
                config.max_txs * TOMBSTONES_PER_TX,
                config.lease * DROP_AFTER_LEASES,
            ),
            faults: FaultCounts::default(),
            stats: TxStats::default(),
            #[cfg(feature = "flaws")]
            flaw: None,
        }
    }

    /// This machine with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.flaw = Some(flaw);
        self
    }

    /// The node.
    pub fn node(&self) -> NodeAddr {
        self.me
    }

    /// The configuration.
    pub fn config(&self) -> &TxConfig {
        &self.config
    }

    /// Dropped input by kind.
    pub fn faults(&self) -> FaultCounts {
        self.faults
    }

    /// What this node decided so far.
    pub fn stats(&self) -> TxStats {
        self.stats
    }

    /// Transactions this node holds state of (any role), and participants.
    pub fn in_flight(&self) -> (usize, usize) {
        (self.txs.len(), self.parts.len())
    }

    /// Replication answers this node waits for, and open client transactions.
    pub fn waiting(&self) -> (usize, usize) {
        (self.waits.len(), self.sessions.len())
    }

    /// The transactions this node holds state of, by role and stage (for operators and
    /// benchmarks): `(tm_undecided, tm_delivering, acceptor_undecided, acceptor_decided,
    /// acceptor_without_info)`.
    pub fn state_kinds(&self) -> (usize, usize, usize, usize, usize) {
        let mut k = (0, 0, 0, 0, 0);
        for s in self.txs.values() {
            match (&s.tm, s.acc.decided, &s.acc.info) {
                (_, _, None) => k.4 += 1,
                (Some(_), None, _) => k.0 += 1,
                (Some(_), Some(_), _) => k.1 += 1,
                (None, None, _) => k.2 += 1,
                (None, Some(_), _) => k.3 += 1,
            }
        }
        k
    }

    /// The decision this node knows of `tx` (in its state, or in its tombstone of forgotten
    /// transactions).
    pub fn decision(&self, tx: TxId) -> Option<bool> {
        match self.txs.get(&tx) {
            Some(s) => s.acc.decided,
            None => self.gone.get(&tx).and_then(|g| g.decided),
        }
    }

    /// Entries in the tombstones (forgotten transactions, finished participants), and how
    /// many were dropped early because a tombstone was full.
    pub fn tombstones(&self) -> (usize, usize, u64) {
        (self.gone.len(), self.finished.len(), self.gone.evicted() + self.finished.evicted())
    }

    /// Subscriptions held at this node (as a replica of the keys).
    pub fn subscribers(&self) -> usize {
        self.subs.len()
    }

    /// The rTMs this node's transactions use now.
    pub fn rtms(&self) -> Vec<NodeAddr> {
        self.rtms.iter().flatten().copied().collect()
    }

    pub(crate) fn tag(&mut self, wait: Wait) -> u64 {
        let t = self.next_tag;
        self.next_tag += 1;
        self.waits.insert(t, wait);
        t
    }

    /// A fresh transaction id: `mix64(node ^ mix64(counter))` with a 64-bit counter. For one
    /// node it is a bijection of the counter, so a node never repeats an id (before 2⁶⁴);
    /// across nodes (and incarnations: the incarnation id is part of the node's hash) ids are
    /// spread over all 64 bits, so two transactions alive at once share one with probability
    /// about `live² / 2⁶⁵` (the former `node hash << 32 | counter` collided whenever two
    /// nodes' 32-bit hashes met, then for every transaction).
    pub(crate) fn new_tx_id(&mut self) -> TxId {
        self.next_tx = self.next_tx.wrapping_add(1);
        TxId(mix64(node_hash(self.me) ^ mix64(self.next_tx)))
    }

    /// The next pseudo-random number of this node.
    pub(crate) fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.rng)
    }

    /// The acceptors of a transaction started now: this node, then its distinct rTMs.
    pub(crate) fn acceptors(&self) -> Vec<NodeAddr> {
        let mut a = vec![self.me];
        for r in self.rtms.iter().flatten() {
            if !a.contains(r) {
                a.push(*r);
            }
        }
        a
    }

    pub(crate) fn send(&mut self, to: NodeAddr, msg: TxMessage, out: &mut Vec<TxOutput>) {
        if to == self.me {
            self.local.push_back(msg);
        } else {
            out.push(TxOutput::Send { to, msg });
        }
    }

    pub(crate) fn drain(&mut self, now: Time, out: &mut Vec<TxOutput>) {
        let mut n = 0;
        while let Some(msg) = self.local.pop_front() {
            n += 1;
            debug_assert!(n < 1_000_000, "a local message storm");
            self.handle(self.me, msg, now, out);
        }
    }

    // ----- inputs ------------------------------------------------------------------------

    /// The ring placed this node at `pos`: its rTMs are looked up.
    pub fn on_joined(&mut self, pos: RingId, now: Time, out: &mut Vec<TxOutput>) {
        self.pos = Some(pos);
        self.next_lookup = now;
        self.lookup_rtms(now, out);
    }

    /// The answer to a [`TxOutput::Lookup`]: `who` is responsible for the key (`None`: no
    /// answer).
    pub fn on_lookup(&mut self, tag: u64, who: Option<NodeAddr>) {
        if let (Some(i), Some(w)) = (tag.checked_sub(1).map(|i| i as usize), who) {
            if let Some(slot) = self.rtms.get_mut(i) {
                *slot = Some(w);
            }
        }
    }

    fn lookup_rtms(&mut self, now: Time, out: &mut Vec<TxOutput>) {
        let Some(pos) = self.pos else { return };
        if now < self.next_lookup {
            return;
        }
        self.next_lookup = now + self.config.rtm_refresh;
        for i in 1..self.config.f {
            out.push(TxOutput::Lookup { key: pos.replica(i, self.config.f), tag: u64::from(i) });
        }
    }

    /// The failure detector suspects `node`: rTMs whose TM it is take over at once.
    pub fn on_suspect(&mut self, node: NodeAddr) {
        // Bounded: past [`MAX_WATCHED`] suspicions, takeovers wait for their timers instead.
        if self.suspected.len() < MAX_WATCHED {
            self.suspected.insert(node);
        }
    }

    /// The failure detector trusts `node` again.
    pub fn on_restore(&mut self, node: NodeAddr) {
        self.suspected.remove(&node);
    }

    /// A message sent directly by `from`.
    pub fn on_message(
        &mut self,
        from: NodeAddr,
        msg: TxMessage,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        self.handle(from, msg, now, out);
        self.drain(now, out);
    }

    /// A message routed through the ring by `origin` to a key of this node's range.
    pub fn on_deliver(
        &mut self,
        origin: NodeAddr,
        msg: TxMessage,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        self.handle(origin, msg, now, out);
        self.drain(now, out);
    }

    /// An answer of the replication layer.
    pub fn on_replication(
        &mut self,
        ind: ReplicationIndication,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        match ind {
            ReplicationIndication::ReplicaDone { tag, result, .. } => {
                match self.waits.remove(&tag) {
                    Some(Wait::Vote(tx, slot)) => {
                        self.voted(tx, slot, tag, result.map(|r| r.1), now, out)
                    }
                    Some(Wait::Apply(tx, slot)) => {
                        self.applied_here(tx, slot, tag, result.map(|r| r.1), now, out)
                    }
                    Some(Wait::SetRead(op, replica)) => {
                        self.set_read(op, replica, result.map(|r| r.1), now, out)
                    }
                    Some(Wait::Read(..)) | None => {
                        self.faults.add(Fault::UnknownReply, &format_args!("replica answer {tag}"))
                    }
                }
            }
            ReplicationIndication::ReadDone { tag, result, .. } => match self.waits.remove(&tag) {
                Some(Wait::Read(handle, key)) => self.read_done(handle, key, result, now, out),
                Some(w) => {
                    self.waits.insert(tag, w);
                    self.faults.add(Fault::UnknownReply, &format_args!("read answer {tag}"));
                }
                None => self.faults.add(Fault::UnknownReply, &format_args!("read answer {tag}")),
            },
            _ => {}
        }
        self.drain(now, out);
    }

    /// Time passed: re-sends, timeouts, takeovers, expiry.
    pub fn on_tick(&mut self, now: Time, out: &mut Vec<TxOutput>) {
        self.lookup_rtms(now, out);
        let txs: Vec<TxId> = self.txs.keys().copied().collect();
        for tx in txs {
            self.tick_tx(tx, now, out);
        }
        self.tick_participants(now, out);
        self.tick_sets(now, out);
        self.tick_subscriptions(now, out);
        self.tick_sessions(now);
        self.gone.expire(now);
        self.finished.expire(now);
        self.drain(now, out);
    }

    // ----- dispatch ----------------------------------------------------------------------

    fn handle(&mut self, from: NodeAddr, msg: TxMessage, now: Time, out: &mut Vec<TxOutput>) {
        if !msg.within_bounds() {
            self.faults.add(Fault::Oversized, &format_args!("{} from {from:?}", msg.kind()));
            return;
        }
        if !self.in_range(&msg) {
            self.faults.add(Fault::OutOfRange, &format_args!("{} from {from:?}", msg.kind()));
            return;
        }
        match msg {
            TxMessage::Prepare { tx, acceptors, slot, key, mode, read, write, lease_ms } => {
                // A lease longer than any this configuration gives is cut to the longest.
                let lease_ms = lease_ms.min(self.config.max_wire_lease_ms());
                let p = Participant {
                    key,
                    mode,
                    read,
                    write,
                    acceptors,
                    lease_ms,
                    stage: Stage::Voting(0),
                    locked: false,
                    failures: 0,
                    created: now,
                    last_ask: now,
                };
                self.prepare(tx, slot, p, now, out)
            }
            TxMessage::InitRtm { info } => self.init_rtm(from, info, now, out),
            TxMessage::Vote { tx, slot, value, writes } => {
                self.vote(from, tx, slot, value, writes, now, out)
            }
            TxMessage::NoVote { tx, slot } => self.no_vote(tx, slot, now, out),
            TxMessage::Accepted { tx, round, values } => {
                self.accepted(from, tx, round, values, now, out)
            }
            TxMessage::Collect { tx, round } => self.collect(from, tx, round, now, out),
            TxMessage::Promise { tx, round, accepted, decided, writes } => {
                self.promise(from, tx, round, accepted, (decided, writes), now, out)
            }
            TxMessage::Nack { tx, round, promised } => self.nack(tx, round, promised, now),
            TxMessage::Propose { tx, round, values, writes } => {
                self.propose(from, tx, round, values, writes, out)
            }
            TxMessage::Decided { tx, slot, commit, write } => {
                self.decided(from, tx, slot, (commit, write), now, out)
            }
            TxMessage::Applied { tx, slot } => self.applied(tx, slot, now, out),
            TxMessage::Failed { tx, slot } => self.apply_failed(from, tx, slot),
            TxMessage::AskDecision { tx, slot } => self.ask_decision(from, tx, slot, out),
            TxMessage::Forget { tx, commit } => self.forget(from, tx, commit, now, out),
            TxMessage::Subscribe { key, lease_ms } => self.subscribe_here(from, key, lease_ms, now),
            TxMessage::Unsubscribe { key } => self.subs.remove(&key, from),
            TxMessage::Notify(ev) => self.notified(ev, out),
        }
    }

    /// Whether the numbers of a message are ones this node can act on: rounds at most
    /// [`MAX_ROUND`] with a rank below [`MAX_ACCEPTORS`](crate::messages::MAX_ACCEPTORS),
    /// this node's replication factor, a read version that can be incremented.
    fn in_range(&self, msg: &TxMessage) -> bool {
        let round_ok =
            |r: &Round| r.n <= MAX_ROUND && (r.rank as usize) < crate::messages::MAX_ACCEPTORS;
        match msg {
            TxMessage::Collect { round, .. }
            | TxMessage::Accepted { round, .. }
            | TxMessage::Propose { round, .. } => round_ok(round),
            TxMessage::Promise { round, accepted, .. } => {
                round_ok(round) && accepted.iter().all(|(_, r, _)| round_ok(r))
            }
            TxMessage::Nack { round, promised, .. } => round_ok(round) && round_ok(promised),
            TxMessage::InitRtm { info } => info.f == self.config.f,
            TxMessage::Prepare { read, write, mode, .. } => {
                !(write.is_some() && *mode == selfman_ports::LockMode::Write && read.0 == u64::MAX)
            }
            _ => true,
        }
    }

    /// Drops `tx`'s state and remembers, in the tombstone, that it did and what was decided.
    pub(crate) fn forget_tx(&mut self, tx: TxId, now: Time) {
        if let Some(s) = self.txs.remove(&tx) {
            let eager = s.acc.info.as_ref().is_none_or(|i| i.eager);
            self.gone.insert(tx, Gone { decided: s.acc.decided, eager }, now);
        }
    }

    /// Whether a message about `tx`, which has no state here, is a late copy of one of a
    /// transaction forgotten here (counted, and dropped without creating state).
    fn is_forgotten(&mut self, tx: TxId, what: &str) -> bool {
        if self.gone.get(&tx).is_some() {
            self.faults.add(Fault::UnknownTx, &format_args!("late {what} for forgotten {tx:?}"));
            return true;
        }
        false
    }

    /// A participant of `tx` (forgotten here) asks for its decision, or votes late: told it
    /// from the tombstone if it is known and needs no values from here (an eager commit's
    /// values are sent by the deliverer only).
    fn answer_from_tombstone(
        &mut self,
        from: NodeAddr,
        tx: TxId,
        slot: Slot,
        out: &mut Vec<TxOutput>,
    ) {
        if let Some(Gone { decided: Some(commit), eager }) = self.gone.get(&tx).copied() {
            if !(commit && eager) {
                self.send(from, TxMessage::Decided { tx, slot, commit, write: None }, out);
            }
        }
    }

    fn drop_unknown(&mut self, what: &str, tx: TxId, from: NodeAddr) {
        self.faults.add(Fault::UnknownTx, &format_args!("{what} for unknown {tx:?} from {from:?}"));
    }

    // ----- TM ----------------------------------------------------------------------------

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
        let tx = info.tx;
        let eager = info.eager.then(|| Eager {
            told: false,
            proposal: None,
            lease_end: now
                + Duration::from_millis(info.lease_ms.saturating_sub(self.config.lease_ms())),
        });
        for a in info.acceptors.iter().skip(1) {
            out.push(TxOutput::Send { to: *a, msg: TxMessage::InitRtm { info: info.clone() } });
        }
        for (key, msg) in &prepares {
            out.push(TxOutput::Route { key: *key, msg: msg.clone() });
        }
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

    fn no_vote(&mut self, tx: TxId, slot: Slot, now: Time, out: &mut Vec<TxOutput>) {
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

    fn learn(
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

    // ----- acceptor ----------------------------------------------------------------------

    fn init_rtm(&mut self, from: NodeAddr, mut info: TxInfo, now: Time, out: &mut Vec<TxOutput>) {
        let tx = info.tx;
        // A lease longer than any this configuration gives is cut to the longest (it times
        // the takeover and the state's end here).
        info.lease_ms = info.lease_ms.min(self.config.max_wire_lease_ms());
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
    fn vote(
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

    fn accepted(
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

    fn collect(
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
    fn promise(
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

    fn nack(&mut self, tx: TxId, round: Round, promised: Round, now: Time) {
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

    fn propose(
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
    fn lead(&mut self, tx: TxId, now: Time, out: &mut Vec<TxOutput>) {
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

    /// `tx` is decided `commit` here. `delivers`: this node computed it from chosen values
    /// and tells the participants.
    fn decide(
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

    fn decided(
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

    fn applied(&mut self, tx: TxId, slot: Slot, now: Time, out: &mut Vec<TxOutput>) {
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

    fn ask_decision(&mut self, from: NodeAddr, tx: TxId, slot: Slot, out: &mut Vec<TxOutput>) {
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
    fn forget(
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

    /// A participant could not apply the decision at its replica: the slot stays pending and
    /// the decision is sent again (never counted as applied).
    fn apply_failed(&mut self, from: NodeAddr, tx: TxId, slot: Slot) {
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

    fn tick_tx(&mut self, tx: TxId, now: Time, out: &mut Vec<TxOutput>) {
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
                for a in info.acceptors {
                    self.send(a, msg.clone(), out);
                }
            }
        }
    }

    /// Re-sends the prepares whose instance is not chosen, the InitRtms, and an eager
    /// transaction's client vote, every `retransmit`.
    fn resend_prepares(&mut self, tx: TxId, now: Time, out: &mut Vec<TxOutput>) {
        let retransmit = self.config.retransmit;
        let Some(s) = self.txs.get_mut(&tx) else { return };
        let (Some(tm), Some(info)) = (s.tm.as_mut(), s.acc.info.as_ref()) else { return };
        if s.leader.is_some() || now < tm.last_sent + retransmit {
            return;
        }
        tm.last_sent = now;
        for (key, msg) in &tm.prepares {
            if let TxMessage::Prepare { slot, .. } = msg {
                if !tm.learner.chosen.contains_key(slot) && !tm.learner.no_vote.contains(slot) {
                    out.push(TxOutput::Route { key: *key, msg: msg.clone() });
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

    // ----- participant -------------------------------------------------------------------

    fn prepare(
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
        if let Some(old) = self.parts.get(&(tx, slot)) {
            // A re-sent prepare: say the vote again.
            if let Stage::Voted(v) = old.stage {
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

    fn propose_vote(
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

    fn voted(
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
        let (acceptors, key) = (p.acceptors.clone(), p.key.clone());
        if value == Some(Value::Prepared) {
            self.notify_local(selfman_ports::KeyEvent::Locked { key, tx }, out);
        }
        self.propose_vote(tx, slot, value, &acceptors, out);
    }

    fn apply_decision(
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
        let op = match (commit, p.commit_write()) {
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

    fn applied_here(
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
        self.send(to, TxMessage::Applied { tx, slot }, out);
        if p.acceptors[0] != to {
            self.send(p.acceptors[0], TxMessage::Applied { tx, slot }, out);
        }
    }

    fn tick_participants(&mut self, now: Time, out: &mut Vec<TxOutput>) {
        let cfg = self.config;
        let mut gone = Vec::new();
        let mut ask = Vec::new();
        for ((tx, slot), p) in &mut self.parts {
            let lease = Duration::from_millis(p.lease_ms);
            if now >= p.created + lease * 2 {
                gone.push((*tx, *slot));
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
        for (tx, slot, acceptors, stage) in ask {
            for a in &acceptors {
                self.send(*a, TxMessage::AskDecision { tx, slot }, out);
            }
            // The vote may have been lost too: propose it again (acceptors ignore copies).
            if let Stage::Voted(v) = stage {
                self.propose_vote(tx, slot, v, &acceptors, out);
            }
        }
    }
}

/// The decision to the participant of `slot`: direct if its address is known, else routed to
/// its replica key.
#[allow(clippy::too_many_arguments)]
fn send_decision(
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

/// The node's address and incarnation, mixed one after the other (an xor of them would let
/// 10.0.0.1/id 1 and 10.0.0.2/id 2 collide).
fn node_hash(a: NodeAddr) -> u64 {
    mix64(mix64(mix64(ip_bits(a)) ^ a.id.0) ^ u64::from(a.addr.port()))
}

fn ip_bits(a: NodeAddr) -> u64 {
    match a.addr.ip() {
        std::net::IpAddr::V4(v) => u64::from(u32::from(v)),
        std::net::IpAddr::V6(v) => (u128::from(v) as u64) ^ ((u128::from(v) >> 64) as u64),
    }
}

/// A bijective 64-bit mixer (SplitMix64's finaliser).
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What an eager transaction's decision tells one participant to do.
enum WriteOf {
    /// Install this value (`None`: delete).
    Install(Option<Vec<u8>>),
    /// Only release the lock.
    Release,
}

/// The decision for the participant of `slot`: `write` is `Some(Some(v))` to install `v`,
/// `Some(None)` to delete, `None` to use the prepare's value (an eager participant has none
/// and releases).
fn decision_for(tx: TxId, slot: Slot, commit: bool, write: Option<WriteOf>) -> TxMessage {
    let write = match write {
        Some(WriteOf::Install(v)) => Some(v),
        Some(WriteOf::Release) | None => None,
    };
    TxMessage::Decided { tx, slot, commit, write }
}
