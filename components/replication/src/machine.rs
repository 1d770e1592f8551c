//! The replication logic of one node, without I/O: [`ReplicaMachine`]. It keeps the node's
//! replica [`Store`] and the state of each range it owns, and dispatches every input to the
//! role that handles it: [`Coordinator`] (operations this node coordinates),
//! [`Handover`] (ranges moving in or out), [`Recovery`] (ranges rebuilt after a crash),
//! [`Repair`] (anti-entropy), and the serving of operations at this node's replicas.
//!
//! Invariants (unit tests in `src/tests/`):
//! * every position this node owns is in exactly one state: **served** (complete data),
//!   **incoming** (being received from its old holder, or waiting for its offer), or
//!   **rebuilding** (from the other replicas); positions it no longer owns but still holds are
//!   **outgoing** until their new owner acknowledged them;
//! * an operation at a replica is applied only at the node that holds the replica's latest
//!   state — served here, or outgoing here and not yet handed over; a new owner forwards to
//!   the old holder, the old holder bounces back once it handed over; anything else is
//!   answered "not ready" or "not responsible", never from incomplete data;
//! * a range is served only when complete: received whole (`Done` after every batch),
//!   rebuilt from enough replicas, kept (nothing was handed over yet), or new (bootstrap);
//! * bad input is counted per [`Fault`] kind and dropped; nothing panics.

use std::collections::{BTreeMap, BTreeSet};

use selfman_core::{NodeAddr, Time};
use selfman_ports::{
    ListFailure, ListedReplica, Listing, Peer, Range, RangeChange, ReadFailure, ReplicaFailure,
    ReplicaView, ReplicationIndication, ReplicationRequest, ResponsibilityChange, RingId,
    StoredReplica,
};

use crate::config::ReplicationConfig;
use crate::faults::{Fault, FaultCounts};
use crate::handover::{Handover, Holder};
use crate::messages::{OpRequest, OpResult, ReplMessage, MAX_FORWARDS, MAX_KEY_BYTES};
use crate::placement::Placement;
use crate::quorum::Coordinator;
use crate::ranges::RangeSet;
use crate::recovery::{serve_range_read, Recovery};
use crate::repair::{serve, Repair};
use crate::store::{ItemId, Store};

/// The most replicas one [`ReplicationRequest::ListServed`] page lists.
pub(crate) const MAX_LIST: u32 = 10_000;
/// The keys and values one page carries before it stops at the next position (so that a page
/// with values fits a frame of the transport).
pub(crate) const MAX_LIST_BYTES: usize = 4 * 1024 * 1024;

/// The top byte of every tag this crate puts on routed messages (`Ring` route tags), so that a
/// user sharing the ring with replication can tell the ring's `Undeliverable`s apart.
pub const TAG_MARK: u64 = 0xA5 << 56;
pub(crate) const TAG_OP: u64 = 1;
pub(crate) const TAG_RANGE: u64 = 2;
pub(crate) const TAG_SYNC: u64 = 3;
const TAG_ID_BITS: u64 = (1 << 48) - 1;

/// The route tag of message `id` of `kind`.
pub(crate) fn tag(kind: u64, id: u64) -> u64 {
    TAG_MARK | (kind << 48) | (id & TAG_ID_BITS)
}

fn untag(t: u64) -> Option<(u64, u64)> {
    (t & (0xff << 56) == TAG_MARK).then_some(((t >> 48) & 0xff, t & TAG_ID_BITS))
}

/// A deliberate mistake of the replication machine, to show that the checkers catch it
/// (feature `flaws`, for tests only; `docs/decisions/011-deliberate-bugs-are-test-only.md`).
#[cfg(feature = "flaws")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// The hand-over never re-sends records that changed after they were sent (the
    /// meanwhile-writes): the new owner serves stale versions (breaks durability and no stale
    /// read; unit test `flaw_skipping_the_delta_loses_meanwhile_writes`).
    SkipsDelta,
    /// A quorum read answers after the first replica (breaks no stale read; unit test
    /// `flaw_quorum_of_one_answers_after_the_first_replica`).
    QuorumOfOne,
    /// Anti-entropy never runs (a stale replica stays stale: breaks convergence; unit test
    /// `flaw_no_repair_leaves_a_stale_replica`).
    NoRepair,
    /// Join positions ignore the host (two replicas of a key on one host: breaks host
    /// diversity; unit test `flaw_ignoring_hosts_puts_two_replicas_on_one_host`).
    IgnoresHosts,
}

/// What the machine asks its component to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplOutput {
    /// Route `msg` through the ring to the peer responsible for `key`.
    Route {
        /// The key.
        key: RingId,
        /// The ring's tag (this crate's tags start with [`TAG_MARK`]).
        tag: u64,
        /// The message.
        msg: ReplMessage,
    },
    /// Send `msg` to `to` directly.
    Send {
        /// The destination.
        to: NodeAddr,
        /// The message.
        msg: ReplMessage,
    },
    /// Tell the user.
    Indicate(ReplicationIndication),
    /// Ask the failure detector to watch `node`.
    Monitor(NodeAddr),
    /// Ask it to stop.
    Unmonitor(NodeAddr),
    /// Ask the ring to leave (the user asked to leave).
    LeaveRing,
}

/// A change of a range's state, decided by a role and carried out by the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The data of the range is complete here: serve it.
    Serve(Range),
    /// Rebuild the range from the other replicas.
    Rebuild(Range),
    /// An outgoing range was handed over (or given up) and dropped.
    Released(Range),
}

/// What a role sees of the machine while it handles one input.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Time,
    pub(crate) me: NodeAddr,
    pub(crate) config: &'a ReplicationConfig,
    pub(crate) placement: &'a Placement,
    pub(crate) store: &'a mut Store,
    pub(crate) serving: &'a RangeSet,
    pub(crate) faults: &'a mut FaultCounts,
    pub(crate) out: &'a mut Vec<ReplOutput>,
    pub(crate) moves: &'a mut Vec<Transition>,
    pub(crate) watches: &'a mut BTreeMap<NodeAddr, u32>,
}

impl Ctx<'_> {
    /// Sends `msg` to `to` directly.
    pub(crate) fn send(&mut self, to: NodeAddr, msg: ReplMessage) {
        self.out.push(ReplOutput::Send { to, msg });
    }

    /// Watches `node` (counted: several transfers may watch one node).
    pub(crate) fn watch(&mut self, node: NodeAddr) {
        let n = self.watches.entry(node).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.out.push(ReplOutput::Monitor(node));
        }
    }

    /// Stops one watch of `node`.
    pub(crate) fn unwatch(&mut self, node: NodeAddr) {
        if let Some(n) = self.watches.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                self.watches.remove(&node);
                self.out.push(ReplOutput::Unmonitor(node));
            }
        }
    }
}

macro_rules! ctx {
    ($s:ident, $now:expr, $out:expr) => {
        Ctx {
            now: $now,
            me: $s.node,
            config: &$s.config,
            placement: &$s.placement,
            store: &mut $s.store,
            serving: &$s.serving,
            faults: &mut $s.faults,
            out: $out,
            moves: &mut $s.moves,
            watches: &mut $s.watches,
        }
    };
}

/// Symmetric replication at one node: the replicas it holds and the ranges it owns, served,
/// moving or being rebuilt.
#[derive(Debug)]
pub struct ReplicaMachine {
    node: NodeAddr,
    config: ReplicationConfig,
    placement: Placement,
    me: Option<Peer>,
    owned: Option<Range>,
    store: Store,
    serving: RangeSet,
    announced: RangeSet,
    quorum: Coordinator,
    handover: Handover,
    rebuild: Recovery,
    repair: Repair,
    faults: FaultCounts,
    moves: Vec<Transition>,
    watches: BTreeMap<NodeAddr, u32>,
    suspected: BTreeSet<NodeAddr>,
    leaving: Option<Time>,
    left: bool,
    next_repair: Option<Time>,
    repair_turn: u32,
    /// Replica operations (and their answers) served here without the ring or the network.
    local: LocalOps,
}

/// What [`ReplicaMachine::serve_local`] counts, and its guard against re-entry.
#[derive(Clone, Copy, Debug, Default)]
struct LocalOps {
    served: u64,
    answers: u64,
    busy: bool,
}

impl ReplicaMachine {
    /// The replication of node `node`, outside any ring until the ring says it joined. An
    /// invalid `config` falls back to the default (check [`ReplicationConfig::validate`]
    /// first to reject it).
    pub fn new(node: NodeAddr, config: ReplicationConfig) -> ReplicaMachine {
        let config = if config.validate().is_ok() {
            config
        } else {
            tracing::warn!(?config, "replication: invalid config, using the default");
            ReplicationConfig { host: config.host, ..ReplicationConfig::default() }
        };
        ReplicaMachine {
            node,
            config,
            placement: Placement::new(config.f),
            me: None,
            owned: None,
            store: Store::new(),
            serving: RangeSet::new(),
            announced: RangeSet::new(),
            quorum: Coordinator::new(),
            handover: Handover::new(),
            rebuild: Recovery::new(),
            repair: Repair::new(),
            faults: FaultCounts::default(),
            moves: Vec::new(),
            watches: BTreeMap::new(),
            suspected: BTreeSet::new(),
            leaving: None,
            left: false,
            next_repair: None,
            repair_turn: 0,
            local: LocalOps::default(),
        }
    }

    /// This machine with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        match flaw {
            Flaw::SkipsDelta => self.handover = self.handover.with_flaw(flaw),
            Flaw::QuorumOfOne => self.quorum = self.quorum.with_flaw(flaw),
            Flaw::NoRepair => self.repair = self.repair.with_flaw(flaw),
            Flaw::IgnoresHosts => self.placement = self.placement.with_flaw(flaw),
        }
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicationConfig {
        &self.config
    }

    /// The placement rules (join positions for this node's host: [`Placement::join_position`]).
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Bad input counted so far.
    pub fn faults(&self) -> &FaultCounts {
        &self.faults
    }

    /// The replicas held here.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The replicas held here, to change by hand (tests only: to make a replica stale).
    #[cfg(test)]
    pub(crate) fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The replicas held here, to change by hand (feature `testkit`, for benchmarks and tests
    /// only: to load a million items without writing them, or to make replicas stale). What
    /// is put here bypasses every rule of the protocol.
    #[cfg(feature = "testkit")]
    pub fn store_testkit(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The ranges served.
    pub fn serving(&self) -> Vec<Range> {
        self.serving.ranges()
    }

    /// How many replica operations this node coordinated for a replica it serves itself were
    /// served here without the ring, and how many answers to itself were taken without the
    /// network (each such operation has one; `docs/replication.md`, "Local replica
    /// operations").
    pub fn served_locally(&self) -> (u64, u64) {
        (self.local.served, self.local.answers)
    }

    /// Operations in flight that this node coordinates.
    pub fn in_flight(&self) -> usize {
        self.quorum.in_flight()
    }

    /// Whether an anti-entropy round is running.
    pub fn repairing(&self) -> bool {
        self.repair.running()
    }

    /// The view for checkers.
    pub fn view(&self) -> ReplicaView {
        let mut pending = self.handover.incoming();
        pending.extend(self.rebuild.pending());
        ReplicaView {
            node: self.node,
            host: self.config.host,
            id: self.me.map(|p| p.id),
            f: self.config.f,
            owned: self.owned,
            serving: self.serving.ranges(),
            pending,
            outgoing: self.handover.outgoing(),
            items: self.store.len() as u64,
        }
    }

    /// The page of [`ReplicationRequest::ListServed`]: the served replicas of `[from, to)`
    /// from `from` to the end of the served run holding it, at most `limit` positions' worth
    /// (the last position whole).
    fn list_served(
        &self,
        from: RingId,
        to: Option<RingId>,
        limit: u32,
        values: bool,
    ) -> Result<Listing, ListFailure> {
        let (_, run_end) =
            self.serving.linear_run_containing(from).ok_or(ListFailure::NotServing)?;
        let end = match to {
            Some(t) if t.0 <= from.0 => {
                return Ok(Listing { replicas: Vec::new(), next: None });
            }
            Some(t) => run_end.min(t.0 - 1),
            None => run_end,
        };
        let window = Range::new(RingId(from.0.wrapping_sub(1)), RingId(end));
        let limit = limit.clamp(1, MAX_LIST) as usize;
        let mut replicas: Vec<ListedReplica> = Vec::new();
        let mut cut = None;
        let mut bytes = 0usize;
        for (id, r) in self.store.iter_from(window, None) {
            if r.version.0 == 0 {
                continue;
            }
            let full = replicas.len() >= limit || bytes >= MAX_LIST_BYTES;
            if full && replicas.last().is_some_and(|l| l.position != id.pos) {
                cut = Some(id.pos);
                break;
            }
            bytes += id.key.len() + if values { r.value.map_or(0, <[u8]>::len) } else { 0 };
            let value = match r.value {
                Some(v) if values => Some(v.to_vec()),
                Some(_) => Some(Vec::new()),
                None => None,
            };
            replicas.push(ListedReplica {
                position: id.pos,
                key: id.key.to_vec(),
                version: r.version,
                value,
            });
        }
        let next = match cut {
            Some(p) => Some(p),
            None if end == u64::MAX => None,
            None if to.is_some_and(|t| end + 1 >= t.0) => None,
            None => Some(RingId(end + 1)),
        };
        Ok(Listing { replicas, next })
    }

    /// Every replica in the ranges served, in ring order.
    pub fn served_replicas(&self) -> Vec<StoredReplica> {
        self.store
            .iter_set(&self.serving)
            .filter(|(_, r)| r.version.0 > 0)
            .map(|(id, r)| StoredReplica {
                position: id.pos,
                key: id.key.to_vec(),
                replica: self.placement.replica_at(id.key, id.pos).unwrap_or(0),
                version: r.version,
            })
            .collect()
    }

    /// Takes over the whole state of `old` (a live replacement): replicas, ranges, transfers,
    /// operations in flight, and its deliberate flaw if it has one; the new configuration's
    /// timing and bounds apply from now on. `old` is left empty, outside any ring. The
    /// replication factor and the host are the node's identity in the ring and do not change
    /// live: the replacement keeps the old ones.
    pub fn take_over(&mut self, old: &mut ReplicaMachine) {
        if (old.config.f, old.config.host) != (self.config.f, self.config.host) {
            tracing::warn!(f = old.config.f, host = ?old.config.host, "replication: f and host cannot change live; kept");
        }
        let config = ReplicationConfig { f: old.config.f, host: old.config.host, ..self.config };
        let fresh = ReplicaMachine::new(old.node, old.config);
        let mut taken = std::mem::replace(old, fresh);
        taken.config = config;
        *self = taken;
    }

    // ------------------------------------------------------------------ inputs

    /// A request of the user.
    pub fn on_request(&mut self, req: ReplicationRequest, now: Time, out: &mut Vec<ReplOutput>) {
        let in_ring = self.me.is_some() && !self.left && self.leaving.is_none();
        let f = self.config.f;
        match req {
            ReplicationRequest::Read { key, tag } => {
                let fail = if !in_ring {
                    Some(ReadFailure::NotInRing)
                } else if key.len() > MAX_KEY_BYTES {
                    Some(ReadFailure::KeyTooLong)
                } else {
                    None
                };
                match fail {
                    Some(why) => out.push(ReplOutput::Indicate(ReplicationIndication::ReadDone {
                        key,
                        tag,
                        result: Err(why),
                    })),
                    None => self.quorum.read(&mut ctx!(self, now, out), key, tag),
                }
            }
            ReplicationRequest::AtReplica { key, replica, op, tag } => {
                let probe = OpRequest {
                    id: 0,
                    reply_to: self.node,
                    key: Vec::new(),
                    replica: 0,
                    op: op.clone(),
                    forwards: 0,
                };
                let invalid = replica >= f
                    || key.len() > MAX_KEY_BYTES
                    || ReplMessage::Op(probe).check(f).is_err();
                let fail = if !in_ring {
                    Some(ReplicaFailure::NotInRing)
                } else if invalid {
                    Some(ReplicaFailure::Invalid)
                } else {
                    None
                };
                match fail {
                    Some(why) => {
                        let ind = ReplicationIndication::ReplicaDone {
                            key,
                            replica,
                            tag,
                            result: Err(why),
                        };
                        out.push(ReplOutput::Indicate(ind));
                    }
                    None => {
                        self.quorum.at_replica(&mut ctx!(self, now, out), key, replica, op, tag)
                    }
                }
            }
            ReplicationRequest::ListServed { from, to, limit, values, tag } => {
                let result = if in_ring {
                    self.list_served(from, to, limit, values)
                } else {
                    Err(ListFailure::NotInRing)
                };
                out.push(ReplOutput::Indicate(ReplicationIndication::Listed { tag, result }));
            }
            ReplicationRequest::Leave => {
                if self.left || self.leaving.is_some() {
                    return;
                }
                if self.me.is_none() || self.owned.is_none() {
                    self.left = true;
                    out.push(ReplOutput::Indicate(ReplicationIndication::Left));
                    return;
                }
                self.leaving = Some(now);
                out.push(ReplOutput::LeaveRing);
            }
            other => tracing::warn!(?other, "replication: request not understood"),
        }
        self.settle(now, out);
    }

    /// The ring says this node is in a ring now, as `me`.
    pub fn on_joined(&mut self, me: Peer, now: Time) {
        self.me = Some(me);
        if self.next_repair.is_none() {
            self.next_repair = Some(now + self.config.repair_period);
        }
    }

    /// The ring's responsibility changed.
    pub fn on_responsibility(
        &mut self,
        rc: ResponsibilityChange,
        now: Time,
        out: &mut Vec<ReplOutput>,
    ) {
        let old = self.owned.map(RangeSet::of).unwrap_or_default();
        let new = rc.now.map(RangeSet::of).unwrap_or_default();
        self.owned = rc.now;
        let mut lost = old.clone();
        lost.subtract(&new);
        let mut gained = new;
        gained.subtract(&old);
        let (to, from) = match rc.change {
            RangeChange::Lost { to, .. } => (to, None),
            RangeChange::Gained { from, .. } => (None, Some(from)),
        };
        for r in lost.ranges() {
            let held = self.serving.intersection(&RangeSet::of(r));
            self.serving.remove(r);
            let mut cx = ctx!(self, now, out);
            let mut unserved = RangeSet::of(r);
            unserved.subtract(&held);
            self.handover.lose(&mut cx, r, to.map(|t| t.addr), &unserved);
            self.rebuild.lose(r);
            self.repair.lose(&mut cx, r);
            match to {
                Some(t) if t.addr != self.node => {
                    for part in held.ranges() {
                        self.handover.send(&mut cx, part, t.addr);
                    }
                }
                _ => {
                    if !held.is_empty() {
                        tracing::warn!(range = %r, "replication: a range went to nobody; its replicas stay here unserved");
                    }
                }
            }
        }
        for r in gained.ranges() {
            let mut cx = ctx!(self, now, out);
            let back = self.handover.regain(&mut cx, r);
            let mut rest = RangeSet::of(r);
            for (part, t) in back {
                rest.remove(part);
                cx.moves.push(t);
            }
            for part in rest.ranges() {
                match from {
                    Some(None) => cx.moves.push(Transition::Serve(part)),
                    Some(Some(p)) if p.addr != self.node && !self.suspected.contains(&p.addr) => {
                        self.handover.receive(&mut cx, part, p.addr);
                    }
                    _ => cx.moves.push(Transition::Rebuild(part)),
                }
            }
        }
        self.settle(now, out);
    }

    /// A payload routed by the ring from `origin` to a key of this node's range.
    pub fn on_deliver(
        &mut self,
        origin: Peer,
        msg: ReplMessage,
        now: Time,
        out: &mut Vec<ReplOutput>,
    ) {
        self.on_message(origin.addr, msg, now, out);
    }

    /// The ring could not deliver a payload this node routed.
    pub fn on_undeliverable(
        &mut self,
        key: RingId,
        tag: u64,
        now: Time,
        out: &mut Vec<ReplOutput>,
    ) {
        let Some((kind, id)) = untag(tag) else { return };
        let mut cx = ctx!(self, now, out);
        match kind {
            TAG_OP => self.quorum.on_undeliverable(&mut cx, id, key),
            TAG_RANGE => self.rebuild.on_undeliverable(&mut cx, id, key),
            TAG_SYNC => self.repair.on_undeliverable(&mut cx, id),
            _ => {}
        }
        self.settle(now, out);
    }

    /// The ring left (after this node asked it to).
    pub fn on_ring_left(&mut self, now: Time, out: &mut Vec<ReplOutput>) {
        self.settle(now, out);
    }

    /// A message from `from` (directly, or routed by the ring).
    pub fn on_message(
        &mut self,
        from: NodeAddr,
        msg: ReplMessage,
        now: Time,
        out: &mut Vec<ReplOutput>,
    ) {
        if let Err(kind) = msg.check(self.config.f) {
            self.faults.add(kind, &format_args!("message from {from} refused"));
            return;
        }
        // Repair accounts for the bytes of the answers it receives.
        let bytes = match &msg {
            ReplMessage::SyncCovered { .. }
            | ReplMessage::SyncNodes { .. }
            | ReplMessage::SyncLeaves { .. }
            | ReplMessage::SyncItems { .. } => msg.wire_size(),
            _ => 0,
        };
        let owned = self.owned;
        let msg = match msg {
            ReplMessage::Op(req) => {
                self.serve_op(now, out, req);
                return self.settle(now, out);
            }
            m => m,
        };
        let mut cx = ctx!(self, now, out);
        match msg {
            ReplMessage::Op(_) => {}
            ReplMessage::OpReply { id, replica, result } => {
                self.quorum.on_reply(&mut cx, from, id, replica, result)
            }
            ReplMessage::Offer { session, range } => {
                // The old holder's offer came after this node gave up waiting and started
                // rebuilding (the ring told the old holder late): its data is the range's
                // authority, so take it instead of the rebuild, which may wait on replicas
                // that are themselves moving.
                let mut rebuilding = RangeSet::new();
                for r in self.rebuild.pending() {
                    rebuilding.insert(r);
                }
                let taken = rebuilding.intersection(&RangeSet::of(range));
                if !taken.is_empty() && !self.handover.expects(from, range) {
                    for part in taken.ranges() {
                        self.rebuild.lose(part);
                    }
                    self.handover.take_offer(&mut cx, from, session, range, taken);
                } else {
                    self.handover.on_offer(&mut cx, from, session, range, owned)
                }
            }
            ReplMessage::Accept { session } => self.handover.on_accept(&mut cx, from, session),
            ReplMessage::Decline { session } => self.handover.on_decline(&mut cx, from, session),
            ReplMessage::Items { session, seq, items } => {
                self.handover.on_items(&mut cx, from, session, seq, items)
            }
            ReplMessage::ItemsAck { session, seq } => {
                self.handover.on_ack(&mut cx, from, session, seq)
            }
            ReplMessage::Done { session, seq, .. } => {
                self.handover.on_done(&mut cx, from, session, seq)
            }
            ReplMessage::DoneAck { session } => self.handover.on_done_ack(&mut cx, from, session),
            ReplMessage::Pull { range } => self.handover.on_pull(&mut cx, from, range),
            ReplMessage::RangeRead { session, shift, interval, after } => {
                serve_range_read(&mut cx, from, session, shift, interval, after);
            }
            ReplMessage::RangeItems { session, shift, after, covered, items, .. } => {
                self.rebuild.on_items(&mut cx, from, session, shift, after, covered, items);
            }
            ReplMessage::RangeNotReady { session, shift, after } => {
                self.rebuild.on_not_ready(&mut cx, session, shift, after)
            }
            ReplMessage::SyncCovered { session, req, covered } => {
                self.repair.on_covered(&mut cx, from, session, req, covered, bytes);
            }
            ReplMessage::SyncNodes { session, req, hashes } => {
                self.repair.on_nodes(&mut cx, from, session, req, hashes, bytes)
            }
            ReplMessage::SyncLeaves { session, req, leaves } => {
                self.repair.on_leaves(&mut cx, from, session, req, leaves, bytes);
            }
            ReplMessage::SyncItems { session, req, items } => {
                self.repair.on_items(&mut cx, from, session, req, items, bytes)
            }
            m @ (ReplMessage::SyncStart { .. }
            | ReplMessage::SyncHashes { .. }
            | ReplMessage::SyncDigests { .. }
            | ReplMessage::SyncFetch { .. }
            | ReplMessage::SyncPush { .. }) => serve(&mut cx, from, m),
        }
        self.settle(now, out);
    }

    /// The failure detector suspects `node`.
    pub fn on_suspect(&mut self, node: NodeAddr, now: Time, out: &mut Vec<ReplOutput>) {
        self.suspected.insert(node);
        self.handover.on_suspect(&mut ctx!(self, now, out), node);
        self.settle(now, out);
    }

    /// The failure detector no longer suspects `node`.
    pub fn on_restore(&mut self, node: NodeAddr, now: Time, out: &mut Vec<ReplOutput>) {
        self.suspected.remove(&node);
        self.settle(now, out);
    }

    /// Time passed.
    pub fn on_tick(&mut self, now: Time, out: &mut Vec<ReplOutput>) {
        let mut cx = ctx!(self, now, out);
        self.quorum.on_tick(&mut cx);
        self.handover.on_tick(&mut cx);
        self.rebuild.on_tick(&mut cx);
        self.repair.on_tick(&mut cx);
        if self.next_repair.is_some_and(|t| now >= t) {
            self.next_repair = Some(now + self.config.repair_period);
            self.start_repair(now, out);
        }
        if let Some(since) = self.leaving {
            if !self.left && now >= since + self.config.leave_timeout {
                tracing::warn!(node = %self.node, "replication: leave timed out; leaving with transfers unfinished");
                self.left = true;
                out.push(ReplOutput::Indicate(ReplicationIndication::Left));
            }
        }
        self.settle(now, out);
    }

    /// Starts an anti-entropy round over one served range, with the next replica offset.
    pub fn start_repair(&mut self, now: Time, out: &mut Vec<ReplOutput>) {
        let f = self.config.f;
        let ranges = self.serving.ranges();
        if f < 2 || ranges.is_empty() || self.repair.running() || self.leaving.is_some() {
            return;
        }
        let turn = self.repair_turn;
        self.repair_turn = self.repair_turn.wrapping_add(1);
        let range = ranges[turn as usize % ranges.len()];
        let shift = 1 + turn % (f - 1);
        self.repair.start(&mut ctx!(self, now, out), range, shift);
        self.settle(now, out);
    }

    // ------------------------------------------------------------------ serving

    /// An operation at a replica this node may hold.
    fn serve_op(&mut self, now: Time, out: &mut Vec<ReplOutput>, mut req: OpRequest) {
        let pos = self.placement.position(&req.key, req.replica);
        let reply = |out: &mut Vec<ReplOutput>, req: &OpRequest, result| {
            let msg = ReplMessage::OpReply { id: req.id, replica: req.replica, result };
            out.push(ReplOutput::Send { to: req.reply_to, msg });
        };
        let holder =
            if self.serving.contains(pos) { Holder::Here } else { self.handover.locate(pos) };
        match holder {
            Holder::Here => {
                let id = ItemId::new(pos, &req.key);
                let (outcome, changed) = self.store.apply(id.clone(), &req.op, now);
                if changed && !self.serving.contains(pos) {
                    self.handover.changed(&id);
                }
                reply(out, &req, OpResult::Done(outcome));
            }
            Holder::Bounce(to) | Holder::Forward(to)
                if req.forwards < MAX_FORWARDS && to != self.node =>
            {
                let forward = matches!(holder, Holder::Forward(_));
                if forward && req.forwards > 0 {
                    return reply(out, &req, OpResult::NotReady);
                }
                req.forwards += 1;
                out.push(ReplOutput::Send { to, msg: ReplMessage::Op(req) });
            }
            Holder::Bounce(_) | Holder::Forward(_) | Holder::NotReady => {
                reply(out, &req, OpResult::NotReady)
            }
            Holder::None if self.rebuild.holds(pos) => reply(out, &req, OpResult::NotReady),
            Holder::None => {
                self.faults.add(
                    Fault::Misrouted,
                    &format_args!("operation at {pos}: neither owned nor held"),
                );
                reply(out, &req, OpResult::NotResponsible);
            }
        }
    }

    /// Carries out the roles' transitions, and tells the user what changed.
    fn settle(&mut self, now: Time, out: &mut Vec<ReplOutput>) {
        loop {
            let moves = std::mem::take(&mut self.moves);
            if moves.is_empty() {
                break;
            }
            let owned = self.owned.map(RangeSet::of).unwrap_or_default();
            for m in moves {
                match m {
                    Transition::Serve(r) => {
                        let part = owned.intersection(&RangeSet::of(r));
                        self.serving.union(&part);
                    }
                    Transition::Rebuild(r) => {
                        let mut part = owned.intersection(&RangeSet::of(r));
                        part.subtract(&self.serving);
                        for p in part.ranges() {
                            self.rebuild.start(&mut ctx!(self, now, out), p);
                        }
                    }
                    Transition::Released(_) => {}
                }
            }
        }
        if self.serving != self.announced {
            self.announced = self.serving.clone();
            out.push(ReplOutput::Indicate(ReplicationIndication::Serving(self.serving.ranges())));
        }
        if self.leaving.is_some() && !self.left && self.owned.is_none() && !self.handover.sending()
        {
            self.left = true;
            out.push(ReplOutput::Indicate(ReplicationIndication::Left));
        }
        self.serve_local(now, out);
    }

    /// Takes the replica operations among `out` that would come back to this node out of it
    /// and handles them here, as their arrival would: an operation routed to a position this
    /// node owns in the ring (so the ring would deliver it here) and serves (so it would be
    /// applied here, not forwarded), and an answer sent to this node itself. Each goes
    /// through [`ReplicaMachine::on_message`] like one received (checks, faults, versions,
    /// locks and the coordinator's bookkeeping are the same); only the ring hop and the
    /// network are skipped. What that handling outputs is scanned in turn.
    fn serve_local(&mut self, now: Time, out: &mut Vec<ReplOutput>) {
        if self.local.busy {
            return; // called again from the handling below: the loop sees its outputs
        }
        self.local.busy = true;
        let mut i = 0;
        while i < out.len() {
            let here = match &out[i] {
                ReplOutput::Route { key, msg: ReplMessage::Op(_), .. } => {
                    self.owned.is_some_and(|r| r.contains(*key)) && self.serving.contains(*key)
                }
                ReplOutput::Send { to, msg: ReplMessage::OpReply { .. } } => *to == self.node,
                _ => false,
            };
            if !here {
                i += 1;
                continue;
            }
            match out.remove(i) {
                ReplOutput::Route { msg, .. } => {
                    self.local.served += 1;
                    self.on_message(self.node, msg, now, out);
                }
                ReplOutput::Send { msg, .. } => {
                    self.local.answers += 1;
                    self.on_message(self.node, msg, now, out);
                }
                _ => {}
            }
        }
        self.local.busy = false;
    }
}

/// A bare context over loose parts, for the roles' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use selfman_core::{NodeAddr, NodeId, Time};

    use super::{Ctx, ReplOutput, Transition};
    use crate::config::ReplicationConfig;
    use crate::faults::FaultCounts;
    use crate::placement::Placement;
    use crate::ranges::RangeSet;
    use crate::store::Store;

    /// One node's parts, and a clock.
    pub(crate) struct Harness {
        pub(crate) config: ReplicationConfig,
        pub(crate) placement: Placement,
        pub(crate) store: Store,
        pub(crate) serving: RangeSet,
        pub(crate) faults: FaultCounts,
        pub(crate) out: Vec<ReplOutput>,
        pub(crate) moves: Vec<Transition>,
        pub(crate) watches: BTreeMap<NodeAddr, u32>,
        pub(crate) now: Time,
        pub(crate) me: NodeAddr,
    }

    impl Harness {
        pub(crate) fn new(f: u32) -> Harness {
            Harness {
                config: ReplicationConfig { f, ..ReplicationConfig::default() },
                placement: Placement::new(f),
                store: Store::new(),
                serving: RangeSet::new(),
                faults: FaultCounts::default(),
                out: Vec::new(),
                moves: Vec::new(),
                watches: BTreeMap::new(),
                now: Time::ZERO,
                me: NodeAddr::simulated(0, NodeId(1)),
            }
        }

        pub(crate) fn run<R>(&mut self, f: impl FnOnce(&mut Ctx<'_>) -> R) -> R {
            let mut cx = Ctx {
                now: self.now,
                me: self.me,
                config: &self.config,
                placement: &self.placement,
                store: &mut self.store,
                serving: &self.serving,
                faults: &mut self.faults,
                out: &mut self.out,
                moves: &mut self.moves,
                watches: &mut self.watches,
            };
            f(&mut cx)
        }

        pub(crate) fn tick_to<R>(&mut self, at: Duration, f: impl FnOnce(&mut Ctx<'_>) -> R) -> R {
            self.now = Time::ZERO + at;
            self.run(f)
        }
    }
}
