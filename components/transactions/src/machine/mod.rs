//! [`TxMachine`]: one node's transaction layer without I/O — the roles of `tm`, `rtm` and
//! `participant` put together, inputs in, [`TxOutput`]s pushed into a `Vec`.
//!
//! This file holds the machine's state, its inputs and the dispatch of messages; each role's
//! handlers are in their own file: `as_tm.rs` (the transaction manager: commit, learning,
//! deciding, delivering), `as_acceptor.rs` (acceptor and leader of the higher rounds, and the
//! per-transaction timer), `as_participant.rs` (vote and apply at one replica); client
//! sessions are in `client.rs`, value-sets in `valueset.rs`, notifications in `notify.rs`.
//!
//! Invariants (besides each role's):
//! * a decision, once known at a node, never changes there (a contradicting one is counted as
//!   [`Fault::ConflictingDecision`] and dropped), nor in its tombstone after it forgot;
//! * state is bounded: at most `max_txs` transactions, participants and sessions; a
//!   transaction's state is dropped when every participant said `Applied` (`Forget`, with the
//!   decision, to the acceptors), and in any case once every lock it took has surely expired
//!   (`DROP_AFTER_LEASES` leases); the tombstones of forgotten transactions and finished
//!   participants hold at most `TOMBSTONES_PER_TX · max_txs` entries each, for
//!   `DROP_AFTER_LEASES` and `FINISHED_LEASES` leases ([`crate::tombstone`]);
//! * every message dropped is counted by kind ([`FaultCounts`]) with a trace event.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use selfman_core::{NodeAddr, Time};
use selfman_ports::{Range, ReplicationIndication, ReplicationRequest, RingId, TxId, TxIndication};

use crate::client::{Client, Session};
use crate::config::TxConfig;
use crate::faults::{Fault, FaultCounts};
use crate::messages::{Round, Slot, TxMessage, Value, Writes, MAX_ACCEPTORS, MAX_BATCH, MAX_ITEMS};
use crate::notify::Subscriptions;
use crate::owners::Owners;
use crate::participant::{Participant, Stage};
use crate::rtm::{Acceptor, MAX_ROUND};
use crate::tm::{Delivery, Leader, Learner};
use crate::tombstone::Tombstones;
use crate::valueset::SetOp;

mod as_acceptor;
mod as_participant;
mod as_tm;

/// A transaction's state is dropped at the latest this many leases after it was first seen
/// (every lock it took has ended by then; a participant forgets it after two).
pub(crate) const DROP_AFTER_LEASES: u32 = 4;

/// How long a finished participant is remembered, in leases: the TM delivers a decision for
/// two leases after deciding, and a participant finishes after the decision, so its
/// tombstone outlives the TM's re-sends. (A later re-send, of an rTM that took the delivery
/// over, finds no participant and is not answered: its deliverer stops at its own deadline;
/// nothing is applied twice.) Forgotten transactions keep `DROP_AFTER_LEASES`: their
/// decision answers late `Collect`s, which agreement depends on.
pub(crate) const FINISHED_LEASES: u32 = 2;

/// Forgotten transactions (with their decision) and finished participants a node remembers,
/// per configured in-flight transaction (`max_txs`): the tombstones hold at most
/// `TOMBSTONES_PER_TX · max_txs` entries each, kept `DROP_AFTER_LEASES` leases (see
/// [`crate::tombstone`]).
pub(crate) const TOMBSTONES_PER_TX: usize = 2;

/// Replica keys a TM remembers the responsible node of, to pack its prepares per node.
pub(crate) const MAX_OWNER_POINTS: usize = 4_096;

/// Nodes a machine remembers having asked the failure detector to watch, or as suspected.
pub(crate) const MAX_WATCHED: usize = 4_096;

/// The name of the `tracing` span around one transaction's handling at a node (see
/// [`tx_span`]).
pub const TX_SPAN: &str = "tx";

/// The `tracing` span (level `DEBUG`, name [`TX_SPAN`]) that one step of transaction `tx` at
/// this node runs in, whatever the node's role in it (TM, rTM, participant): fields `id`
/// (the transaction id's number) and `step` (the message kind handled, or `commit`,
/// `vote-done`, `apply-done`, `tick`). Events the step logs, and spans it opens, are inside
/// it; with no subscriber interested in `DEBUG`, making and entering it is one check of the
/// global maximum level.
pub fn tx_span(tx: TxId, step: &'static str) -> tracing::Span {
    tracing::debug_span!("tx", id = tx.0, step)
}

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
    /// A participant told to abort applies its transaction's write anyway, as if told to
    /// commit (an aborted value reaches replicas: caught by the atomicity check over the
    /// replica stores, `tx-faults-broken-aborted`).
    AppliesAbortedWrites,
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
    /// The ring range this node is responsible for (a batch of prepares routed here keeps
    /// those whose replica key is in it).
    range: Option<Range>,
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
    pub(crate) local: VecDeque<TxMessage>,
    /// Messages this node sent to itself (handled at once, never on the network), by
    /// [`TxMessage::kind_index`].
    pub(crate) local_sent: [u64; TxMessage::KINDS.len()],
    /// `Applied` answers (transaction, to, instance) held until the other participants of the
    /// transaction at this node applied too (or the next tick).
    pub(crate) held_applied: Vec<(TxId, NodeAddr, Slot)>,
    /// Transactions forgotten here, with their decision: a late message about one is
    /// answered from it and creates no state.
    pub(crate) gone: Tombstones<TxId, Gone>,
    /// Participants that applied their decision, with it (`true`: commit): a re-sent
    /// decision is answered `Applied`, a replayed prepare locks nothing.
    pub(crate) finished: Tombstones<(TxId, Slot), bool>,
    /// Which node was responsible for which replica key, learned from votes.
    pub(crate) owners: Owners,
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
            range: None,
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
            local_sent: [0; TxMessage::KINDS.len()],
            held_applied: Vec::new(),
            gone: Tombstones::new(
                config.max_txs * TOMBSTONES_PER_TX,
                config.lease * DROP_AFTER_LEASES,
            ),
            finished: Tombstones::new(
                config.max_txs * TOMBSTONES_PER_TX,
                config.lease * FINISHED_LEASES,
            ),
            owners: Owners::new(MAX_OWNER_POINTS),
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

    /// The room (in entries) of the buffers that do not shrink by themselves: the tombstones'
    /// order queues, the held `Applied` answers and the queue of messages to itself. It
    /// follows what they hold: a burst's room is given back within a window of the tombstones
    /// (see the tombstones' module).
    pub fn buffer_room(&self) -> usize {
        self.gone.room()
            + self.finished.room()
            + self.held_applied.capacity()
            + self.local.capacity()
    }

    /// Messages this node sent to itself (handled at once, not on the network), by
    /// [`TxMessage::kind_index`].
    pub fn local_sent(&self) -> [u64; TxMessage::KINDS.len()] {
        self.local_sent
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
            self.local_sent[msg.kind_index()] += 1;
            self.local.push_back(msg);
        } else {
            out.push(TxOutput::Send { to, msg });
        }
    }

    /// Routes `msg` to `key`: handled here at once if `key` is in this node's range (the
    /// ring would deliver it here), else through the ring.
    pub(crate) fn route(&mut self, key: RingId, msg: TxMessage, out: &mut Vec<TxOutput>) {
        if let TxMessage::Batch(msgs) = msg {
            if self.range.is_some_and(|r| r.contains(key)) {
                // Packed for another node by a wrong guess: each prepare on its own way.
                for m in msgs {
                    let at = match &m {
                        TxMessage::Prepare { key, slot, .. } => {
                            RingId::of_key(key).replica(slot.replica, self.config.f)
                        }
                        _ => key,
                    };
                    self.route(at, m, out);
                }
            } else {
                out.push(TxOutput::Route { key, msg: TxMessage::Batch(msgs) });
            }
            return;
        }
        if self.range.is_some_and(|r| r.contains(key)) {
            self.local_sent[msg.kind_index()] += 1;
            self.local.push_back(msg);
        } else {
            out.push(TxOutput::Route { key, msg });
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

    /// The ring range this node is responsible for now (`None`: none).
    pub fn on_range(&mut self, range: Option<Range>) {
        self.range = range;
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
        let start = out.len();
        self.handle(from, msg, now, out);
        self.drain(now, out);
        coalesce(out, start);
    }

    /// A message routed through the ring by `origin` to a key of this node's range. Of a
    /// batch of prepares, the first (whose replica key the batch was routed to) is this
    /// node's; each other is too if its replica key is in this node's range, and is routed
    /// on to its replica key otherwise.
    pub fn on_deliver(
        &mut self,
        origin: NodeAddr,
        msg: TxMessage,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let start = out.len();
        match msg {
            TxMessage::Batch(msgs) if msg_batch_ok(&msgs) => {
                for (i, m) in msgs.into_iter().enumerate() {
                    let elsewhere = match &m {
                        TxMessage::Prepare { key, slot, .. } if i > 0 => {
                            let at = RingId::of_key(key).replica(slot.replica, self.config.f);
                            (!self.range.is_some_and(|r| r.contains(at))).then_some(at)
                        }
                        _ => None,
                    };
                    match elsewhere {
                        Some(key) => out.push(TxOutput::Route { key, msg: m }),
                        None => self.handle(origin, m, now, out),
                    }
                }
            }
            msg => self.handle(origin, msg, now, out),
        }
        self.drain(now, out);
        coalesce(out, start);
    }

    /// An answer of the replication layer.
    pub fn on_replication(
        &mut self,
        ind: ReplicationIndication,
        now: Time,
        out: &mut Vec<TxOutput>,
    ) {
        let start = out.len();
        self.replicated(ind, now, out);
        coalesce(out, start);
    }

    fn replicated(&mut self, ind: ReplicationIndication, now: Time, out: &mut Vec<TxOutput>) {
        match ind {
            ReplicationIndication::ReplicaDone { tag, result, .. } => {
                match self.waits.remove(&tag) {
                    Some(Wait::Vote(tx, slot)) => {
                        let _span = tx_span(tx, "vote-done").entered();
                        self.voted(tx, slot, tag, result.map(|r| r.1), now, out)
                    }
                    Some(Wait::Apply(tx, slot)) => {
                        let _span = tx_span(tx, "apply-done").entered();
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
        let start = out.len();
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
        give_back(&mut self.held_applied);
        if self.local.capacity() > BUFFER_KEEP && self.local.capacity() > 4 * self.local.len() {
            self.local.shrink_to(BUFFER_KEEP.max(2 * self.local.len()));
        }
        coalesce(out, start);
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
        // A batch's messages each get their own span (below, one `handle` each).
        let _span = match msg.tx() {
            Some(tx) if !matches!(msg, TxMessage::Batch(_)) => {
                Some(tx_span(tx, msg.kind()).entered())
            }
            _ => None,
        };
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
                    announced: false,
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
            TxMessage::Batch(msgs) => {
                for m in msgs {
                    self.handle(from, m, now, out);
                }
            }
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
}

/// Whether a batch is within bounds (checked again by `handle` for each message).
fn msg_batch_ok(msgs: &[TxMessage]) -> bool {
    msgs.len() <= MAX_BATCH && msgs.iter().all(|m| !matches!(m, TxMessage::Batch(_)))
}

/// Packs the direct messages of `out[start..]` per destination: the messages to one node
/// become one [`TxMessage::Batch`] (in their order, at most [`MAX_BATCH`] each) placed where
/// the first of them was, round-0 acceptances of one transaction merged into one. Other
/// outputs keep their order. A batch is handled as its messages one after the other, so
/// this changes how many messages the network carries, not what they say.
///
/// In place: a destination with one message costs a scan and no allocation; one with several
/// costs the batch's own vector (the later messages are moved out and the rest compacted).
/// Room a buffer of this layer keeps whatever it holds (see [`give_back`]).
pub(crate) const BUFFER_KEEP: usize = 1024;

/// Cuts `v`'s buffer back to twice its length (at least [`BUFFER_KEEP`]) once it is more than
/// four times its length: a `Vec` keeps the room of its largest backlog otherwise.
pub(crate) fn give_back<T>(v: &mut Vec<T>) {
    if v.capacity() > BUFFER_KEEP && v.capacity() > 4 * v.len() {
        v.shrink_to(BUFFER_KEEP.max(2 * v.len()));
    }
}

pub(crate) fn coalesce(out: &mut Vec<TxOutput>, start: usize) {
    /// What a moved-out slot holds until it is compacted away (allocates nothing).
    const HOLE: TxOutput = TxOutput::Lookup { key: RingId(0), tag: 0 };
    let to_of = |o: &TxOutput| match o {
        TxOutput::Send { to, .. } => Some(*to),
        _ => None,
    };
    let mut i = start;
    while i < out.len() {
        let Some(to) = to_of(&out[i]) else {
            i += 1;
            continue;
        };
        let more = out[i + 1..].iter().filter(|o| to_of(o) == Some(to)).count();
        if more == 0 {
            i += 1;
            continue;
        }
        let mut msgs: Vec<TxMessage> = Vec::with_capacity(more + 1);
        let push = |msgs: &mut Vec<TxMessage>, o: TxOutput| {
            let TxOutput::Send { msg, .. } = o else { return };
            match (msgs.last_mut(), msg) {
                (
                    Some(TxMessage::Accepted { tx, round, values }),
                    TxMessage::Accepted { tx: t2, round: r2, values: v2 },
                ) if *tx == t2
                    && *round == r2
                    && *round == Round::ZERO
                    && values.len() + v2.len() <= MAX_ITEMS * MAX_ACCEPTORS =>
                {
                    values.extend(v2)
                }
                (_, msg) => msgs.push(msg),
            }
        };
        push(&mut msgs, std::mem::replace(&mut out[i], HOLE));
        // Moves this destination's later messages out, keeping the others in order.
        let mut w = i + 1;
        for r in i + 1..out.len() {
            if to_of(&out[r]) == Some(to) {
                push(&mut msgs, std::mem::replace(&mut out[r], HOLE));
            } else {
                out.swap(w, r);
                w += 1;
            }
        }
        out.truncate(w);
        if msgs.len() == 1 {
            let msg = msgs.pop().expect("one message");
            out[i] = TxOutput::Send { to, msg };
            i += 1;
        } else if msgs.len() <= MAX_BATCH {
            out[i] = TxOutput::Send { to, msg: TxMessage::Batch(msgs) };
            i += 1;
        } else {
            let mut rest = msgs.split_off(MAX_BATCH);
            out[i] = TxOutput::Send { to, msg: TxMessage::Batch(msgs) };
            let mut chunks = Vec::new();
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(MAX_BATCH));
                let chunk = std::mem::replace(&mut rest, tail);
                let msg = match <[TxMessage; 1]>::try_from(chunk) {
                    Ok([one]) => one,
                    Err(chunk) => TxMessage::Batch(chunk),
                };
                chunks.push(TxOutput::Send { to, msg });
            }
            let n = chunks.len();
            out.splice(i + 1..i + 1, chunks);
            i += 1 + n;
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
