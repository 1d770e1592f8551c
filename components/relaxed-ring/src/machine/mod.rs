//! The relaxed-ring logic, without I/O: [`RelaxedRingMachine`]. Inputs go in (requests,
//! messages, failure-detector indications, ticks); outputs are pushed into a `Vec`
//! ([`RingOutput`]): messages to send, peers to watch, indications for the user.
//!
//! Split by role: `join.rs` (bootstrap, the three join steps, try-later), `recovery.rs`
//! (successor and predecessor lists, suspicion and restore, `fix`, periodic check-in),
//! `routing.rs` (lookups, routed payloads, the `last` flag, backwards into branches, finger
//! refresh) over `fingers.rs` (the k-ary table), `leave.rs` (graceful leave), `merge.rs`
//! (the passive list, its probes, and merging rings after a partition heals).
//!
//! Invariants, in the words of the relaxed-ring papers (Mejías and Van Roy):
//! * a peer is **in the ring** once a successor accepted it; it is **responsible for
//!   `(pred, self]`** and for nothing while joining, leaving or gone;
//! * **lookup consistency**: a peer *shrinks* its range (takes a predecessor closer to it) at
//!   any time, but *grows* it (a predecessor farther away) only when its predecessor is
//!   suspected or handed the range over by leaving; a joiner owns `(p, q]` only after its
//!   successor `r` gave it up (`r` sets `pred := q` before answering `join_ok`). So two peers
//!   own one key only if a suspicion was false — and then only until it is corrected;
//! * **only the owner answers**: `Found` and deliveries come from the peer whose range holds
//!   the key at that moment; everyone else forwards, goes backwards (`last`), or answers
//!   `Unroutable`;
//! * **join in three steps of two peers**: `join`/`join_ok` (q, r), `new_succ` (q, p),
//!   `join_ack` (p, r); no peer waits for a third one to answer;
//! * **failure recovery**: on suspecting its successor a peer takes the first live entry of its
//!   successor list and sends it `fix`; on suspecting its predecessor it waits (the
//!   predecessor's predecessor repairs); a restored peer leaves the crashed set and is taken
//!   back (as a closer successor or predecessor) without any range being owned twice;
//! * **branches**: a peer that its predecessor cannot reach stays behind its successor, which
//!   keeps it in its predecessor list; routing reaches it backwards from there;
//! * the successor list is nearest first, holds no suspected peer and not this peer, at most
//!   `succ_list_size` entries, and starts with the successor; its first [`WATCHED_SUCCS`]
//!   entries ([`REPAIR_WATCHED_SUCCS`] while the successor is being repaired) are watched by
//!   the failure detector, the rest are refreshed from the successor; the predecessor list is
//!   nearest first, at most `pred_list_size` entries, and holds the predecessor;
//! * every change of the owned range is indicated once (`Responsibility`), every change of
//!   the neighbours once (`Neighbours`);
//! * bad input (from a buggy or stale peer) is counted per [`Fault`] and dropped with a
//!   `tracing` event; no input panics or corrupts the state.
//!
//! Bounded buffers: lookups in flight ([`MAX_PENDING`]), suspected peers remembered
//! ([`MAX_CRASHED`]), lists from the wire ([`MAX_WIRE_LIST`]), hops ([`RingConfig::max_hops`]).

mod faults;
mod finger_notices;
mod fingers;
mod join;
mod leave;
mod merge;
mod recovery;
mod routing;
#[cfg(test)]
mod tests;

pub use faults::{Fault, FaultCounts};
pub use finger_notices::GONE_STEPS;
pub use fingers::Fingers;
pub use merge::MergeStats;

use std::collections::BTreeMap;

use selfman_core::{NodeAddr, NodeId, Time};
use selfman_ports::{
    Neighbours, Peer, Range, RangeChange, ResponsibilityChange, RingId, RingIndication,
    RingRequest, RingStatus, RingView,
};
use serde::{Deserialize, Serialize};

use crate::config::RingConfig;
use crate::messages::{Body, RingMessage, MAX_WIRE_LIST};

/// Lookups (and finger refreshes) in flight at one peer at most; more are answered
/// [`Unavailable::Overloaded`](selfman_ports::Unavailable::Overloaded) at once. Each costs
/// about 40 bytes; the bound keeps a peer that lost its way (every lookup timing out) from
/// growing without limit.
pub const MAX_PENDING: usize = 16_384;

/// Peers routing avoids as silent at most (see `State::silent`); the one that would expire
/// first is forgotten first.
pub const MAX_SILENT: usize = 32;

/// Suspected peers remembered at most (the oldest is forgotten first, never the predecessor).
/// A peer only suspects the peers it watches (its lists), so this is far above what churn
/// needs; it bounds a peer that is told of many crashes.
pub const MAX_CRASHED: usize = 256;

/// A predecessor-list entry other than the predecessor that was not heard from for this many
/// check-in periods is dropped (a branch peer checks in every period).
pub const PRED_LIST_EXPIRY: u32 = 5;

/// A joiner re-sends `new_succ` to its predecessor at most this many times, one per check-in
/// period, while the predecessor has not checked in (taken it as successor).
pub const NEW_SUCC_RESENDS: u8 = 5;

/// A deliberately broken variant of the protocol, for showing that the simulation checkers
/// catch real bugs. Compiled only with the `flaws` feature; never use it for anything else.
#[cfg(feature = "flaws")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Flaw {
    /// The join does not wait for the ack chain: the successor keeps its range `(p, r]` until
    /// the join ack (`PredNoMore` from `p`) arrives, while the joiner takes `(p, q]` as soon
    /// as `join_ok` arrives — two peers own `(p, q]` in between (forever if `p` cannot reach
    /// `q`). Breaks lookup consistency (`ring-broken-eager-join`).
    EagerJoin,
    /// Recovery skips the successor list: a peer that suspects its successor drops it and
    /// waits, as a Chord without successor lists would; it never finds a new one. Breaks
    /// convergence after crashes (`ring-broken-no-succ-list`).
    RecoverySkipsSuccList,
    /// Routing ignores the `last` flag: the peer a lookup (or payload) was sent to as "last
    /// hop" answers as if it owned the key (Chord's `find_successor`), instead of going
    /// backwards into its predecessor list. With branches, lookups name a peer that is not
    /// responsible (`ring-broken-ignore-last`). Joins still go backwards, so the ring itself
    /// stays consistent and only lookup correctness fails.
    IgnoreLastFlag,
    /// Merging is off: the passive list is never probed and merge messages are ignored, as in
    /// a ring without a merge algorithm (Scalaris). Two rings left by a partition longer than
    /// [`RingConfig::forget_suspected`] stay two rings (`merge-broken-off`).
    MergeOff,
    /// Each passive entry is probed once and then dropped: a probe that falls into the
    /// partition is never retried, so a partition that outlasts the first probes is never
    /// noticed healing (`merge-broken-probe-once`).
    ProbeNeverRetried,
}

/// What the machine asks its component to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingOutput<M> {
    /// Send a message.
    Send {
        /// The destination.
        to: NodeAddr,
        /// The message.
        msg: RingMessage<M>,
    },
    /// Start watching a node with the failure detector.
    Monitor(NodeAddr),
    /// Stop watching a node.
    Unmonitor(NodeAddr),
    /// Tell the user.
    Indicate(RingIndication<M>),
}

/// A joiner's attempt in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Joining {
    /// Where attempts go now: the access peer the user named, or a peer that answered.
    access: NodeAddr,
    attempt: u32,
    /// When to send the next attempt.
    retry_at: Time,
    /// The current attempt was answered (by anyone).
    answered: bool,
    /// Attempts in a row that nobody answered (the joiner gives up at [`JOIN_GIVE_UP`]).
    #[serde(default)]
    unanswered: u32,
    /// The access peer the user named, then ring peers that answered an attempt (at most
    /// [`JOIN_ACCESS`]): an attempt that goes unanswered is followed by one to the next of them.
    accesses: Vec<NodeAddr>,
}

/// Access peers a joiner remembers at most (the user's, and peers that answered it).
pub(crate) const JOIN_ACCESS: usize = 4;

/// How many successor-list entries (the successor first) the failure detector watches in a
/// steady ring: the successor only. The rest of the list is kept fresh by the successor (its
/// list comes with every answer to a check-in, and travels backwards as soon as it changes):
/// the peer just before a crashed one suspects it, repairs, and passes its new list back, and
/// the lists behind follow. Why 1: each watch costs 20 messages a second (a probe and its
/// answer every 100 ms), and watching the first three entries made 60 of a node's 88
/// messages per second heartbeats for entries whose crash the successor's list reports
/// anyway (`selfman-bench ring`, `ring-maintenance`; all 7 made it 160 of 168). A run of
/// crashed successors is covered by [`REPAIR_WATCHED_SUCCS`].
pub const WATCHED_SUCCS: usize = 1;

/// How many successor-list entries (the successor first) are watched while a repair is under
/// way (the successor was suspected and its replacement has not accepted the `fix` yet): the
/// entries after the one being tried are watched from the first suspicion on, so a run of
/// consecutive crashed peers up to this long plus one is cleared within two detector
/// timeouts, not one timeout per peer (the target of issue 14, one ring within 2 × timeout
/// plus a period after 10 % of the peers crash at once, at 10,000 peers where runs of three
/// or four occur).
pub const REPAIR_WATCHED_SUCCS: usize = 3;

/// A joiner gives up (outside again, [`JoinRefusal::NoAnswer`]) after this many attempts in a
/// row that nobody answered, one [`RingConfig::join_timeout`] apart, going round the access
/// peers it knows. Why 8: an attempt and its answer cross a few lossy hops (15 % lost at 3 %
/// per hop over five hops), so eight lost in a row through a live access peer happen about
/// once in 4·10⁶ joins; a crashed or unreachable access peer is given up on after 16 s with
/// the default timeout.
///
/// [`JoinRefusal::NoAnswer`]: selfman_ports::JoinRefusal::NoAnswer
pub const JOIN_GIVE_UP: u32 = 8;

/// How this peer's predecessor joined, kept while the predecessor has not checked in: its
/// `join_ok` may have been lost, and only this peer (its successor) can answer its next
/// attempt — no other joiner is let into the gap meanwhile, so there is one record at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct JoinRecord {
    /// The joiner (this peer's predecessor).
    joiner: Peer,
    /// The predecessor its `join_ok` named.
    pred: Peer,
    /// The joiner's attempt that `join_ok` answered.
    attempt: u32,
    /// When it was let in.
    accepted_at: Time,
    /// When to send the `join_ok` again if the joiner has not checked in by then.
    resend_at: Time,
    /// How many more times it is sent again.
    resends: u8,
}

/// A successor sends a `join_ok` again at most this many times, every two ticks, while the
/// joiner has not checked in (the gap stays closed to other joiners meanwhile).
pub const JOIN_OK_RESENDS: u8 = 5;

/// A `fix` in flight to `target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Fixing {
    target: Peer,
    sent: Time,
    /// The successor being replaced, told `PredNoMore` once `target` accepts.
    replaced: Option<Peer>,
    /// Redirects followed in this repair (bounded by [`MAX_REDIRECTS`]).
    redirects: u8,
    /// A repair after the successor was suspected (joins wait for it), not a check-in.
    repair: bool,
}

/// Redirects followed in one repair at most; each must bring the successor strictly closer, so
/// only a peer lying about its predecessor makes more than a few.
const MAX_REDIRECTS: u8 = 16;

/// A leave in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Leaving {
    attempts: u32,
    retry_at: Time,
}

/// A predecessor-list entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PredEntry {
    peer: Peer,
    /// When it was last heard from.
    heard: Time,
    /// It checked in since it became a predecessor-list member (a joiner has not: its
    /// `join_ok` may still be on the way, so nobody is redirected to it yet).
    confirmed: bool,
}

/// A suspected (or departed) peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Suspected {
    /// Its identifier, if it was known.
    id: Option<RingId>,
    since: Time,
    /// It left gracefully (not watched: it will not come back).
    departed: bool,
    /// It had checked in as a predecessor-list member (or was never a joiner there): taken
    /// back on restore as it was.
    confirmed: bool,
}

/// A lookup in flight, by request number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    key: RingId,
    deadline: Time,
    /// `Some(tag)` for a user's lookup, `None` for a finger refresh.
    tag: Option<u64>,
    /// Sent a second time already (a lookup is sent again once, halfway to its timeout).
    retried: bool,
    /// The first hop it was sent to (dropped from the fingers if it gets no answer: a silent
    /// finger, behind a partition or a link that does not work, gives no hint).
    via: Option<NodeAddr>,
}

/// Everything a peer knows, as plain data (see [`RingState`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    me: Peer,
    status: RingStatus,
    succ: Option<Peer>,
    pred: Option<Peer>,
    succ_list: Vec<Peer>,
    pred_list: Vec<PredEntry>,
    crashed: BTreeMap<NodeAddr, Suspected>,
    joining: Option<Joining>,
    /// How the predecessor joined, while it has not checked in (to answer its repeated join).
    join_record: Option<JoinRecord>,
    fixing: Option<Fixing>,
    leaving: Option<Leaving>,
    pending: BTreeMap<u64, Pending>,
    next_req: u64,
    next_stabilize: Time,
    next_finger: Time,
    finger_cursor: usize,
    monitored: Vec<NodeAddr>,
    told: Neighbours,
    faults: FaultCounts,
    /// [`Flaw::EagerJoin`]: the joiner whose ack the successor waits for.
    deferred_join: Option<Peer>,
    /// How many more times `new_succ` is re-sent to a predecessor that has not checked in
    /// (the first one may have been lost).
    new_succ_resends: u8,
    /// The passive list, the merge cooldown and the merge counters.
    #[serde(default)]
    merge: merge::MergeState,
    /// Peers a lookup went to first and got no answer through (a link that does not work, a
    /// partition), until when routing does not pick them as a next hop (at most
    /// [`MAX_SILENT`]). A successor-list entry the detector does not watch stays in the list
    /// (the successor's list names it), so dropping it from the fingers alone would send the
    /// lookup's second try the same way.
    #[serde(default)]
    silent: BTreeMap<NodeAddr, Time>,
}

/// A peer's whole protocol state, for a live replacement ([`RelaxedRingMachine::save`],
/// [`RelaxedRingMachine::take_over`]): plain serde data, independent of the payload type and
/// of the configuration (another version or configuration can take it over).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    state: State,
    fingers: Vec<Peer>,
}

/// One relaxed-ring peer's protocol logic (Mejías and Van Roy's relaxed ring, as Beernet
/// implements it, with the repairs Beernet left as stubs: restore of falsely suspected peers,
/// periodic check-in with the successor, redirects to a closer successor).
///
/// Its invariants, in the literature's words, head the source file `src/machine/mod.rs` and
/// each role's file; the crate documentation summarises them.
#[derive(Clone, Debug)]
pub struct RelaxedRingMachine {
    config: RingConfig,
    s: State,
    fingers: Fingers,
    /// The peers to watch, rebuilt by every `settle` (kept for its capacity: `settle` runs
    /// after every input, and a fresh vector each time was a tenth of a loaded node's
    /// allocations).
    want: Vec<NodeAddr>,
    #[cfg(feature = "flaws")]
    flaw: Option<Flaw>,
}

impl RelaxedRingMachine {
    /// The peer running on node `me` (its identifier is [`RingConfig::id`], or
    /// [`RingId::of_node`] of `me`), outside any ring. An invalid config is normalized
    /// ([`RingConfig::normalized`]).
    pub fn new(me: NodeAddr, config: RingConfig) -> RelaxedRingMachine {
        let config = config.normalized();
        let id = config.id.unwrap_or_else(|| RingId::of_node(&me));
        let me = Peer::new(id, me);
        RelaxedRingMachine {
            config,
            fingers: Fingers::new(id, config.k),
            want: Vec::new(),
            s: State {
                me,
                status: RingStatus::Outside,
                succ: None,
                pred: None,
                succ_list: Vec::new(),
                pred_list: Vec::new(),
                crashed: BTreeMap::new(),
                joining: None,
                join_record: None,
                fixing: None,
                leaving: None,
                pending: BTreeMap::new(),
                next_req: 1,
                next_stabilize: Time::ZERO,
                next_finger: Time::ZERO,
                finger_cursor: 0,
                monitored: Vec::new(),
                told: Neighbours::default(),
                faults: FaultCounts::default(),
                deferred_join: None,
                new_succ_resends: 0,
                merge: merge::MergeState::default(),
                silent: BTreeMap::new(),
            },
            #[cfg(feature = "flaws")]
            flaw: None,
        }
    }

    /// This machine with a deliberate flaw (see [`Flaw`]).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> RelaxedRingMachine {
        self.flaw = Some(flaw);
        self
    }

    /// The settings in force.
    pub fn config(&self) -> &RingConfig {
        &self.config
    }

    /// This peer.
    pub fn me(&self) -> Peer {
        self.s.me
    }

    /// Where this peer stands.
    pub fn status(&self) -> RingStatus {
        self.s.status
    }

    /// The range this peer is responsible for now (`None` unless in the ring).
    pub fn range(&self) -> Option<Range> {
        if self.s.status != RingStatus::InRing {
            return None;
        }
        self.s.pred.map(|p| Range::new(p.id, self.s.me.id))
    }

    /// The bad input dropped so far, by kind.
    pub fn faults(&self) -> &FaultCounts {
        &self.s.faults
    }

    /// What merging has done so far at this peer (probes, false alarms, merges started).
    pub fn merge_stats(&self) -> MergeStats {
        self.s.merge.stats
    }

    /// The peers in the passive list now (suspected or silent once, probed now and then).
    pub fn passive(&self) -> Vec<Peer> {
        self.s.merge.passive.iter().map(|e| e.peer).collect()
    }

    /// Lookups and finger refreshes in flight.
    pub fn pending_lookups(&self) -> usize {
        self.s.pending.len()
    }

    /// A read-only picture of the state (for checkers and operators).
    pub fn view(&self) -> RingView {
        RingView {
            me: self.s.me,
            status: self.s.status,
            range: self.range(),
            succ: self.s.succ,
            pred: self.s.pred,
            succ_list: self.s.succ_list.clone(),
            pred_list: self.s.pred_list.iter().map(|e| e.peer).collect(),
            fingers: self.fingers.peers().to_vec(),
            crashed: self.s.crashed.keys().copied().collect(),
        }
    }

    /// Everything this peer knows, for a replacement to [`take_over`](Self::take_over).
    pub fn save(&self) -> RingState {
        RingState { state: self.s.clone(), fingers: self.fingers.peers().to_vec() }
    }

    /// Takes over the state of another instance (a live replacement, possibly with another
    /// configuration): the identifier, the ring position, lists, fingers (re-sorted into
    /// this instance's arity), lookups in flight and watches all carry over; the lists are cut
    /// to this instance's sizes. The configured [`RingConfig::id`] of this instance is
    /// ignored: a running peer keeps its identifier.
    pub fn take_over(&mut self, saved: RingState) {
        let RingState { mut state, fingers } = saved;
        state.succ_list.truncate(self.config.succ_list_size);
        if state.pred_list.len() > self.config.pred_list_size {
            let pred = state.pred.map(|p| p.addr);
            let mut kept = 0;
            let cap = self.config.pred_list_size;
            state.pred_list.retain(|e| {
                let keep = Some(e.peer.addr) == pred || kept < cap.saturating_sub(1);
                if keep && Some(e.peer.addr) != pred {
                    kept += 1;
                }
                keep
            });
        }
        self.fingers = Fingers::new(state.me.id, self.config.k);
        for p in fingers {
            self.fingers.learn(p);
        }
        self.s = state;
    }

    /// A request of the user.
    pub fn on_request<M>(&mut self, req: RingRequest<M>, now: Time, out: &mut Vec<RingOutput<M>>) {
        match req {
            RingRequest::Bootstrap => self.bootstrap(out),
            RingRequest::Join { access } => self.join(access, now, out),
            RingRequest::Leave => self.leave(now, out),
            RingRequest::Lookup { key, tag } => self.lookup(key, Some(tag), now, out),
            RingRequest::Route { key, tag, payload } => {
                self.route_payload(key, tag, payload, now, out)
            }
            other => {
                // `RingRequest` is non-exhaustive: a newer user may ask for more.
                let _ = other;
                tracing::warn!("relaxed ring: unsupported request ignored");
            }
        }
        self.settle(out);
    }

    /// A message from node `from`.
    pub fn on_message<M>(
        &mut self,
        from: NodeAddr,
        msg: RingMessage<M>,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        tracing::trace!(t_ms = now.0 / 1_000_000, me = %self.s.me.id, %from, body = msg.body.name(), "message");
        if from.id == NodeId::UNKNOWN {
            self.fault(Fault::BadPeer, "a message from an unknown incarnation");
            return;
        }
        if from == self.s.me.addr {
            return; // never sent; a transport looping back is not a peer
        }
        let sender = Peer::new(msg.sender, from);
        let may_share_my_id = matches!(msg.body, Body::Route(_) | Body::IdInUse { .. });
        if sender.id == self.s.me.id && !may_share_my_id {
            self.fault(Fault::IdCollision, "a peer claims this peer's identifier");
            return;
        }
        let answered = matches!(msg.body, Body::Fix | Body::Route(_) | Body::UpdSuccList { .. });
        if self.s.status == RingStatus::Left && !answered {
            // Gone; but a `fix`, a routed message or a successor list is answered as a peer
            // outside any ring answers it (`NotInRing`), so that whoever still takes this
            // peer for a member — a neighbour that missed its leave — stops.
            return;
        }
        self.heard(sender, now);
        match msg.body {
            Body::Route(r) => self.on_route(sender, r, now, out),
            Body::Found { req, key, hops } => self.on_found(sender, req, key, hops, out),
            Body::Unroutable { key, what } => self.on_unroutable(sender, key, what, now, out),
            Body::JoinOk { attempt, pred, succ_list } => {
                self.on_join_ok(sender, attempt, pred, succ_list, now, out)
            }
            Body::TryLater { attempt } => self.on_try_later(sender, attempt, now),
            Body::IdInUse { attempt, holder } => self.on_id_in_use(sender, attempt, holder, out),
            Body::NewSucc { succ_list } => self.on_new_succ(sender, succ_list, now, out),
            Body::PredNoMore => self.on_pred_no_more(sender, now, out),
            Body::UpdSuccList { succ_list, ttl } => {
                self.on_upd_succ_list(sender, succ_list, ttl, now, out)
            }
            Body::Fix => self.on_fix(sender, now, out),
            Body::FixOk { succ_list } => self.on_fix_ok(sender, succ_list, now, out),
            Body::FixRedirect { pred, succ_list } => {
                self.on_fix_redirect(sender, pred, succ_list, now, out)
            }
            Body::NotInRing => self.on_not_in_ring(sender, now, out),
            Body::Leaving { pred } => self.on_leaving(sender, pred, now, out),
            Body::LeavingPred { succ, succ_list } => {
                self.on_leaving_pred(sender, succ, succ_list, now, out)
            }
            Body::LeaveOk => self.on_leave_ok(sender, out),
            Body::MergeFound { nonce } => self.on_merge_found(sender, nonce, now, out),
            Body::MergeNotInRing { nonce } => self.on_merge_not_in_ring(sender, nonce),
            Body::MergeSpread { foreign, until, depth } => {
                self.on_merge_spread(sender, foreign, until, depth, now, out)
            }
            Body::FingerGone { gone, lower, steps } => self.on_finger_gone(gone, lower, steps, out),
        }
        self.settle(out);
    }

    /// The failure detector suspects `node`.
    pub fn on_suspect<M>(&mut self, node: NodeAddr, now: Time, out: &mut Vec<RingOutput<M>>) {
        self.suspect(node, now, out);
        self.settle(out);
    }

    /// The failure detector no longer suspects `node`.
    pub fn on_restore<M>(&mut self, node: NodeAddr, now: Time, out: &mut Vec<RingOutput<M>>) {
        self.restore(node, now, out);
        self.settle(out);
    }

    /// The network could not reach `node` (a connection refused or lost): a hint, not a
    /// suspicion. It is dropped from the fingers (re-learnt if it comes back), so routing stops
    /// sending through a dead finger; neighbours are left to the failure detector.
    pub fn on_unreachable<M>(&mut self, node: NodeAddr, out: &mut Vec<RingOutput<M>>) {
        self.fingers.remove(node);
        self.settle(out);
    }

    /// Time passed (call every [`RingConfig::tick`]).
    pub fn on_tick<M>(&mut self, now: Time, out: &mut Vec<RingOutput<M>>) {
        self.join_tick(now, out);
        self.join_ok_tick(now, out);
        self.lookup_tick(now, out);
        self.recovery_tick(now, out);
        self.finger_tick(now, out);
        self.leave_tick(now, out);
        self.merge_tick(now, out);
        self.settle(out);
    }

    // ----- helpers shared by the roles -----

    fn fault(&mut self, kind: Fault, what: &'static str) {
        self.s.faults.add(kind);
        tracing::debug!(me = %self.s.me, ?kind, what, "relaxed ring: input dropped");
    }

    fn send<M>(&self, to: NodeAddr, body: Body<M>, out: &mut Vec<RingOutput<M>>) {
        if to == self.s.me.addr {
            return; // handled locally by the callers; never on the wire
        }
        out.push(RingOutput::Send { to, msg: RingMessage { sender: self.s.me.id, body } });
    }

    fn indicate<M>(&self, ind: RingIndication<M>, out: &mut Vec<RingOutput<M>>) {
        out.push(RingOutput::Indicate(ind));
    }

    fn is_me(&self, p: &Peer) -> bool {
        p.addr == self.s.me.addr
    }

    fn is_crashed(&self, node: NodeAddr) -> bool {
        self.s.crashed.contains_key(&node)
    }

    /// Another peer, not suspected.
    fn live(&self, p: &Peer) -> bool {
        !self.is_me(p) && !self.is_crashed(p.addr)
    }

    /// The successor, if it is another, live peer.
    fn live_succ(&self) -> Option<Peer> {
        self.s.succ.filter(|s| self.live(s))
    }

    fn in_ring(&self) -> bool {
        self.s.status == RingStatus::InRing
    }

    /// Whether this peer owns `key` now.
    fn owns(&self, key: RingId) -> bool {
        self.range().is_some_and(|r| r.contains(key))
    }

    /// A peer reference from the wire is usable: a concrete incarnation, and not another node
    /// with this peer's identifier.
    fn valid_peer(&mut self, p: &Peer) -> bool {
        if p.addr.id == NodeId::UNKNOWN {
            self.fault(Fault::BadPeer, "a peer reference with an unknown incarnation");
            return false;
        }
        if p.id == self.s.me.id && p.addr != self.s.me.addr {
            self.fault(Fault::IdCollision, "a peer reference with this peer's identifier");
            return false;
        }
        true
    }

    /// A list from the wire, or `None` (counted) if it is too long or holds a bad peer.
    fn valid_list(&mut self, list: Vec<Peer>) -> Option<Vec<Peer>> {
        if list.len() > MAX_WIRE_LIST {
            self.fault(Fault::OversizedList, "a list longer than MAX_WIRE_LIST");
            return None;
        }
        for p in &list {
            if !self.valid_peer(p) {
                return None;
            }
        }
        Some(list)
    }

    /// Something arrived from `p`: refresh its predecessor-list entry.
    fn heard(&mut self, p: Peer, now: Time) {
        if let Some(e) = self.s.pred_list.iter_mut().find(|e| e.peer == p) {
            e.heard = now;
        }
    }

    /// Learns a peer into the fingers (not suspected peers, not this one).
    fn learn(&mut self, p: Peer) {
        if self.live(&p) {
            self.fingers.learn(p);
        }
    }

    /// Sets the predecessor and tells the user how the range changed. Growing (a predecessor
    /// farther away) is the caller's decision to justify: the old one is suspected or left.
    fn set_pred<M>(&mut self, new: Peer, now: Time, out: &mut Vec<RingOutput<M>>) {
        if self.s.join_record.is_some_and(|r| r.joiner != new) {
            self.s.join_record = None;
        }
        let old = self.s.pred.replace(new);
        self.add_pred_entry(new, now);
        let Some(old) = old.filter(|o| *o != new) else { return };
        if !self.in_ring() {
            return;
        }
        let me = self.s.me.id;
        let change = if new.id.in_open(old.id, me) {
            RangeChange::Lost { range: Range::new(old.id, new.id), to: Some(new) }
        } else {
            RangeChange::Gained { range: Range::new(new.id, old.id), from: Some(old) }
        };
        let now = Some(Range::new(new.id, me));
        self.indicate(RingIndication::Responsibility(ResponsibilityChange { now, change }), out);
    }

    /// Inserts (or refreshes) `p` in the predecessor list, nearest first, bounded. A new entry
    /// counts as checked in; an existing one keeps its flag (see [`Self::confirm`]).
    fn add_pred_entry(&mut self, p: Peer, now: Time) {
        if self.is_me(&p) {
            return;
        }
        let me = self.s.me.id;
        let mut confirmed = true;
        if let Some(i) = self.s.pred_list.iter().position(|e| e.peer.addr == p.addr) {
            // A joiner stays unconfirmed until it checks in, whatever else happens to it.
            confirmed = self.s.pred_list.remove(i).confirmed;
        }
        let heard = now;
        let d = me.distance_from(p.id);
        let at = self.s.pred_list.partition_point(|e| me.distance_from(e.peer.id) < d);
        self.s.pred_list.insert(at, PredEntry { peer: p, heard, confirmed });
        let cap = self.config.pred_list_size;
        while self.s.pred_list.len() > cap {
            // Drop the farthest entry that is not the predecessor.
            let pred = self.s.pred.map(|p| p.addr);
            match self.s.pred_list.iter().rposition(|e| Some(e.peer.addr) != pred) {
                Some(i) => {
                    self.s.pred_list.remove(i);
                }
                None => break,
            }
        }
    }

    /// Marks an entry as checked in (its peer sent `fix`: it is in a ring), and forgets how it
    /// joined.
    fn confirm(&mut self, node: NodeAddr) {
        if self.s.join_record.is_some_and(|r| r.joiner.addr == node) {
            self.s.join_record = None;
        }
        if let Some(e) = self.s.pred_list.iter_mut().find(|e| e.peer.addr == node) {
            e.confirmed = true;
        }
    }

    /// Marks a joiner's entry as not checked in yet.
    fn unconfirm(&mut self, node: NodeAddr) {
        if let Some(e) = self.s.pred_list.iter_mut().find(|e| e.peer.addr == node) {
            e.confirmed = false;
        }
    }

    fn remove_pred_entry(&mut self, node: NodeAddr) -> bool {
        let before = self.s.pred_list.len();
        self.s.pred_list.retain(|e| e.peer.addr != node);
        before != self.s.pred_list.len()
    }

    /// Forgets the fingers that lie between this peer and its live successor. Routing never
    /// picks them (a key up to the successor goes to the successor, a key beyond it to a peer
    /// at least as far), and refreshes look beyond the successor only, so a peer that crashed
    /// or left there would stay for good; and the successor was set or confirmed as the first
    /// peer after this one (`join_ok`, `new_succ`, `fix_ok`, a redirect, a repair), so no
    /// member it should know lies there. Run after every input (`O(log)` when there is none),
    /// so no path that sets the successor can miss it.
    fn drop_fingers_before_succ(&mut self) {
        if !matches!(self.s.status, RingStatus::InRing | RingStatus::Leaving) {
            return;
        }
        if let Some(s) = self.live_succ() {
            self.fingers.forget_nearer_than(s.id.distance_from(self.s.me.id));
        }
    }

    /// After every input: watch exactly the peers recovery depends on — the successor (and the
    /// next [`REPAIR_WATCHED_SUCCS`] − 1 successor-list entries while repairing it), the
    /// predecessor and the
    /// predecessor list (branch peers: routing goes backwards to them), a peer being sent
    /// `fix`, and the suspected ones, to notice a false suspicion — and tell the user if the
    /// neighbours changed.
    fn settle<M>(&mut self, out: &mut Vec<RingOutput<M>>) {
        self.drop_fingers_before_succ();
        let mut want = std::mem::take(&mut self.want);
        want.clear();
        if matches!(self.s.status, RingStatus::InRing | RingStatus::Leaving) {
            want.extend(self.s.succ.iter().map(|p| p.addr));
            want.extend(self.s.pred.iter().map(|p| p.addr));
            let repairing = self.s.fixing.as_ref().is_some_and(|f| f.repair);
            let succs = if repairing { REPAIR_WATCHED_SUCCS } else { WATCHED_SUCCS };
            want.extend(self.s.succ_list.iter().take(succs).map(|p| p.addr));
            want.extend(self.s.pred_list.iter().map(|e| e.peer.addr));
            want.extend(self.s.fixing.iter().map(|f| f.target.addr));
            want.extend(self.s.crashed.iter().filter(|(_, s)| !s.departed).map(|(a, _)| *a));
        }
        let me = self.s.me.addr;
        want.retain(|a| *a != me);
        want.sort_unstable();
        want.dedup();
        if want == self.s.monitored {
            self.want = want;
        } else {
            let old = std::mem::take(&mut self.s.monitored);
            let (mut i, mut j) = (0, 0);
            while i < old.len() || j < want.len() {
                match (old.get(i), want.get(j)) {
                    (Some(a), Some(b)) if a == b => {
                        i += 1;
                        j += 1;
                    }
                    (Some(a), Some(b)) if a < b => {
                        out.push(RingOutput::Unmonitor(*a));
                        i += 1;
                    }
                    (Some(a), None) => {
                        out.push(RingOutput::Unmonitor(*a));
                        i += 1;
                    }
                    (_, Some(b)) => {
                        out.push(RingOutput::Monitor(*b));
                        j += 1;
                    }
                    (None, None) => break,
                }
            }
            self.s.monitored = want;
            self.want = old;
        }
        let t = &self.s.told;
        let same = t.succ == self.s.succ
            && t.pred == self.s.pred
            && t.succ_list == self.s.succ_list
            && t.pred_list.len() == self.s.pred_list.len()
            && t.pred_list.iter().zip(&self.s.pred_list).all(|(a, b)| *a == b.peer);
        if !same {
            let n = Neighbours {
                succ: self.s.succ,
                pred: self.s.pred,
                succ_list: self.s.succ_list.clone(),
                pred_list: self.s.pred_list.iter().map(|e| e.peer).collect(),
            };
            self.s.told = n.clone();
            if matches!(self.s.status, RingStatus::InRing | RingStatus::Leaving) {
                self.indicate(RingIndication::Neighbours(n), out);
            }
        }
    }
}
