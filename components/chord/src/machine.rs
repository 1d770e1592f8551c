//! [`ChordMachine`]: Chord's logic, I/O-free. Each input (a request, a message, a suspicion,
//! a tick) appends what to do to an output vector; the component carries it out.
//!
//! The rules, as in Stoica et al. (2001) with successor lists:
//!
//! * **Lookup** (`find_successor`, recursive): a peer that finds the key in `(me, succ]`
//!   answers `succ` to the origin; otherwise it forwards to the closest live peer of its
//!   fingers and successor list that precedes the key.
//! * **Join**: find the successor of the joiner's identifier through any member; ask it for
//!   its predecessor (the joiner's predecessor-to-be) and successor list; own `(pred, me]`;
//!   notify the successor.
//! * **Stabilise** (every period): ask the successor for its predecessor `x`; if `x` lies
//!   between this peer and its successor, `x` is the new successor; adopt the successor's list;
//!   notify the successor. **Notify**: a peer that hears from `n` in `(pred, me)` takes `n` as
//!   its predecessor (and gives it the part of the range below it).
//! * **Fix fingers**: finger `i` is the successor of `me + 2^i`, refreshed round robin.
//! * **Failures**: a suspected successor is dropped from the list (the next entry takes
//!   over); a suspected predecessor is replaced by the nearest known live peer before this one,
//!   until a notify says better. Chord has no lookup consistency: after a join, the joiner and
//!   its successor both claim the joiner's range until the successor is notified, and after a
//!   failure the guessed predecessor can be too far back. The simulation suites report these
//!   windows instead of failing on them.
//! * **Leave**: tell the successor (it takes the range, and the leaving peer's predecessor) and
//!   the predecessor (it takes the leaving peer's successor list).
//! * **Ring check** (the one addition, [`ChordConfig::check_ring`]): look up this peer's own
//!   identifier through a contact, finger or predecessor; an answer other than this peer is
//!   taken as successor if closer, and notified. Stabilisation cannot join separate cycles
//!   over one identifier space (a partition leaves them); this does. A rejected notify makes
//!   the peer ask its predecessor, which answers `Gone` if it left.

use std::collections::{BTreeMap, BTreeSet};

use selfman_core::{Message, NodeAddr, Time};
use selfman_ports::{
    JoinRefusal, LookupOutcome, Neighbours, Peer, Range, RangeChange, ResponsibilityChange, RingId,
    RingIndication, RingRequest, RingStatus, RingView, Unavailable,
};
use serde::{Deserialize, Serialize};

use crate::config::ChordConfig;
use crate::messages::{ChordMessage, Purpose};

/// Most lookups (user lookups and finger fixes) in flight at one peer.
pub const MAX_PENDING: usize = 4096;
/// Fingers: one per bit of the identifier space.
pub const FINGERS: usize = 64;
/// How many times an unanswered lookup is sent again before its timeout: a peer on the way
/// may have died or left (the peer before it drops it from its fingers when the network says
/// so, or when the departed peer answers `Gone`), so a later attempt takes another path.
pub const LOOKUP_RESENDS: u32 = 2;
/// Most suspected or departed nodes remembered.
pub const MAX_CRASHED: usize = 1024;
/// Suspected peers the failure detector keeps watching (the most recent ones), so that a
/// false suspicion is corrected when the peer answers again: without it, a peer suspected
/// once and dropped from the successor list and predecessor was never watched again, and
/// stayed shunned for good (the `chord-slow` scenario found it).
pub(crate) const WATCHED_SUSPECTS: usize = 16;
/// Peers this one heard from lately, remembered as contacts for the ring check
/// ([`ChordConfig::check_ring`]) and as further access peers for a join.
pub(crate) const CONTACTS: usize = 16;

/// What the machine asks its component to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChordOutput<M> {
    /// Send a message.
    Send {
        /// The destination.
        to: NodeAddr,
        /// The message.
        msg: ChordMessage<M>,
    },
    /// Start watching a node with the failure detector.
    Monitor(NodeAddr),
    /// Stop watching a node.
    Unmonitor(NodeAddr),
    /// Tell the user.
    Indicate(RingIndication<M>),
}

/// Bad or useless input, counted by kind (it is dropped, never trusted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// Answers to requests this peer does not have (late after a timeout, or forged).
    pub unknown_request: u64,
    /// Stabilisation answers from a peer that is not this peer's successor.
    pub stale_answer: u64,
    /// Lookups and payloads dropped at the hop limit.
    pub hop_limit: u64,
    /// Messages that make no sense in this peer's state (e.g. a notify while outside a ring).
    pub out_of_state: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    /// `resend_at`: when to send it again if unanswered ([`LOOKUP_RESENDS`] times, evenly
    /// spread over the timeout).
    Lookup {
        key: RingId,
        tag: u64,
        deadline: Time,
        resend_at: Option<Time>,
        resends: u32,
    },
    Finger {
        index: u8,
        deadline: Time,
    },
    /// The ring check: this peer's own identifier, looked up through a contact.
    Check {
        deadline: Time,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Joining {
    access: NodeAddr,
    req: u64,
    retry_at: Time,
    /// The successor found, waiting for its predecessor and list.
    found: Option<Peer>,
    /// Attempts so far: they go through `access` and the contacts heard from in turn, so
    /// that an access peer that crashed or left does not hold the join up for good.
    attempts: u32,
}

/// How often a leaving peer sends its `Leaving` notice again, one stabilisation period apart
/// (the receivers treat a repeat as a no-op).
const LEAVE_RESENDS: u8 = 3;

/// A `Leaving` notice to send again.
#[derive(Clone, Debug)]
struct LeaveAgain {
    to: Vec<NodeAddr>,
    pred: Option<Peer>,
    succ_list: Vec<Peer>,
    at: Time,
    left: u8,
}

/// One Chord peer's logic.
#[derive(Clone, Debug)]
pub struct ChordMachine {
    config: ChordConfig,
    me: Peer,
    status: RingStatus,
    pred: Option<Peer>,
    /// Nearest first; `succ_list[0]` is the successor (`me` when alone).
    succ_list: Vec<Peer>,
    fingers: Vec<Option<Peer>>,
    next_finger: usize,
    crashed: BTreeSet<NodeAddr>,
    /// The peers of `crashed` the failure detector suspected (not those that left), most
    /// recent last, at most [`WATCHED_SUSPECTS`]: watched until restored.
    suspects: std::collections::VecDeque<(NodeAddr, Option<Peer>)>,
    /// Peers that told this one they left (`Leaving`, `Gone`), most recent last, at most
    /// [`MAX_CRASHED`]: a `Leaving` they pass on is believed.
    departed: std::collections::VecDeque<NodeAddr>,
    pending: BTreeMap<u64, Pending>,
    next_req: u64,
    joining: Option<Joining>,
    monitored: BTreeSet<NodeAddr>,
    told: Neighbours,
    /// After leaving: the successor that took the range, where ring traffic still reaching
    /// this peer is forwarded.
    handoff: Option<Peer>,
    /// After leaving: the `Leaving` notice sent again (links lose messages; a successor that
    /// missed it would keep a departed predecessor that still runs, and so still answers the
    /// failure detector, for good): to whom, what it said, when next, how many times more.
    leave_again: Option<LeaveAgain>,
    next_stabilize: Time,
    next_fix: Time,
    /// Peers heard from lately (most recent last, at most [`CONTACTS`]).
    contacts: std::collections::VecDeque<NodeAddr>,
    next_check: Time,
    /// Ring checks so far (picks the contact, round robin).
    checks: u64,
    faults: FaultCounts,
}

impl ChordMachine {
    /// A peer on node `me`, outside any ring.
    #[must_use]
    pub fn new(me: NodeAddr, config: ChordConfig) -> ChordMachine {
        let id = config.id.unwrap_or_else(|| RingId::of_node(&me));
        ChordMachine {
            config,
            me: Peer::new(id, me),
            status: RingStatus::Outside,
            pred: None,
            succ_list: Vec::new(),
            fingers: vec![None; FINGERS],
            next_finger: 0,
            crashed: BTreeSet::new(),
            suspects: std::collections::VecDeque::new(),
            departed: std::collections::VecDeque::new(),
            pending: BTreeMap::new(),
            next_req: 1,
            joining: None,
            monitored: BTreeSet::new(),
            told: Neighbours::default(),
            handoff: None,
            leave_again: None,
            next_stabilize: Time::ZERO,
            next_fix: Time::ZERO,
            contacts: std::collections::VecDeque::new(),
            next_check: Time::ZERO,
            checks: 0,
            faults: FaultCounts::default(),
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ChordConfig {
        &self.config
    }

    /// This peer.
    #[must_use]
    pub fn me(&self) -> Peer {
        self.me
    }

    /// Where it stands.
    #[must_use]
    pub fn status(&self) -> RingStatus {
        self.status
    }

    /// The bad input counted so far.
    #[must_use]
    pub fn faults(&self) -> &FaultCounts {
        &self.faults
    }

    /// Lookups in flight.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn succ(&self) -> Peer {
        self.succ_list.first().copied().unwrap_or(self.me)
    }

    /// The range this peer considers its own, `(pred, me]`, while in a ring.
    #[must_use]
    pub fn range(&self) -> Option<Range> {
        if self.status != RingStatus::InRing {
            return None;
        }
        let pred = self.pred.unwrap_or(self.me);
        Some(if pred.id == self.me.id {
            Range::full(self.me.id)
        } else {
            Range::new(pred.id, self.me.id)
        })
    }

    fn owns(&self, key: RingId) -> bool {
        self.range().is_some_and(|r| r.contains(key))
    }

    /// The state as the ports' common view.
    #[must_use]
    pub fn view(&self) -> RingView {
        let in_ring = self.status == RingStatus::InRing;
        let mut fingers: Vec<Peer> = self.fingers.iter().flatten().copied().collect();
        fingers.sort_by_key(|p| p.id.distance_from(self.me.id));
        fingers.dedup();
        RingView {
            me: self.me,
            status: self.status,
            range: self.range(),
            succ: in_ring.then(|| self.succ()),
            pred: if in_ring { self.pred } else { None },
            succ_list: if in_ring { self.succ_list.clone() } else { Vec::new() },
            pred_list: if in_ring { self.pred.into_iter().collect() } else { Vec::new() },
            fingers,
            crashed: self.crashed.iter().copied().collect(),
        }
    }

    fn req(&mut self) -> u64 {
        let r = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(1);
        r
    }

    /// A user's request.
    pub fn on_request<M: Message>(
        &mut self,
        req: RingRequest<M>,
        now: Time,
        out: &mut Vec<ChordOutput<M>>,
    ) {
        match req {
            RingRequest::Bootstrap if self.status == RingStatus::Outside => {
                self.pred = Some(self.me);
                self.succ_list = vec![self.me];
                self.status = RingStatus::InRing;
                let range = Range::full(self.me.id);
                out.push(ChordOutput::Indicate(RingIndication::Joined {
                    me: self.me,
                    range,
                    pred: self.me,
                    succ: self.me,
                }));
                out.push(responsibility(Some(range), RangeChange::Gained { range, from: None }));
                self.next_stabilize = now + self.config.stabilize;
                self.next_fix = now + self.config.fix_fingers;
                self.next_check = now + self.config.check_ring;
            }
            RingRequest::Join { access } if self.status == RingStatus::Outside => {
                let req = self.req();
                self.status = RingStatus::Joining;
                self.joining = Some(Joining {
                    access,
                    req,
                    retry_at: now + self.config.join_timeout,
                    found: None,
                    attempts: 0,
                });
                out.push(self.find_to(access, req, self.me.id, 0, Purpose::Join));
            }
            RingRequest::Bootstrap | RingRequest::Join { .. } => {}
            RingRequest::Leave => self.leave(now, out),
            RingRequest::Lookup { key, tag } => self.lookup(key, tag, now, out),
            RingRequest::Route { key, tag, payload } => {
                if self.status != RingStatus::InRing {
                    out.push(ChordOutput::Indicate(RingIndication::Undeliverable {
                        key,
                        tag,
                        reason: Unavailable::NotInRing,
                    }));
                } else {
                    self.route(key, self.me, tag, 0, payload, out);
                }
            }
            _ => {}
        }
        self.settle(out);
    }

    fn find_to<M>(
        &self,
        to: NodeAddr,
        req: u64,
        key: RingId,
        hops: u32,
        purpose: Purpose,
    ) -> ChordOutput<M> {
        ChordOutput::Send {
            to,
            msg: ChordMessage::FindSucc { req, origin: self.me, key, hops, purpose },
        }
    }

    fn lookup<M: Message>(
        &mut self,
        key: RingId,
        tag: u64,
        now: Time,
        out: &mut Vec<ChordOutput<M>>,
    ) {
        let answer =
            |outcome| ChordOutput::Indicate(RingIndication::LookupResult { key, tag, outcome });
        if self.status != RingStatus::InRing {
            out.push(answer(LookupOutcome::Unavailable(Unavailable::NotInRing)));
        } else if self.owns(key) {
            out.push(answer(LookupOutcome::Found { peer: self.me, hops: 0 }));
        } else if self.pending.len() >= MAX_PENDING {
            out.push(answer(LookupOutcome::Unavailable(Unavailable::Overloaded)));
        } else {
            let req = self.req();
            let deadline = now + self.config.lookup_timeout;
            let step = self.config.lookup_timeout / (LOOKUP_RESENDS + 1);
            let resend_at = Some(now + step);
            self.pending.insert(req, Pending::Lookup { key, tag, deadline, resend_at, resends: 0 });
            self.find(req, self.me, key, 0, Purpose::Lookup, out);
        }
    }

    /// One step of `find_successor` at this peer.
    fn find<M: Message>(
        &mut self,
        req: u64,
        origin: Peer,
        key: RingId,
        hops: u32,
        purpose: Purpose,
        out: &mut Vec<ChordOutput<M>>,
    ) {
        if hops > self.config.max_hops {
            self.faults.hop_limit += 1;
            tracing::debug!(me = %self.me, %key, hops, "chord: lookup dropped at the hop limit");
            return;
        }
        let succ = self.succ();
        let owner = if self.owns(key) {
            Some(self.me)
        } else if succ.id == self.me.id || key.in_open(self.me.id, succ.id) || key == succ.id {
            Some(succ)
        } else {
            None
        };
        match owner {
            Some(owner) => {
                if origin.addr == self.me.addr {
                    self.on_found(req, owner, hops, out);
                } else {
                    out.push(ChordOutput::Send {
                        to: origin.addr,
                        msg: ChordMessage::Found { req, owner, hops },
                    });
                }
            }
            None => {
                let next = self.closest_preceding(key).unwrap_or(succ);
                out.push(ChordOutput::Send {
                    to: next.addr,
                    msg: ChordMessage::FindSucc { req, origin, key, hops: hops + 1, purpose },
                });
            }
        }
    }

    /// The live known peer that most closely precedes `key` (in `(me, key)`).
    fn closest_preceding(&self, key: RingId) -> Option<Peer> {
        self.live_known()
            .filter(|p| p.id.in_open(self.me.id, key))
            .max_by_key(|p| p.id.distance_from(self.me.id))
    }

    /// Every peer of the fingers and successor list that is not this one and not suspected.
    fn live_known(&self) -> impl Iterator<Item = Peer> + '_ {
        self.fingers
            .iter()
            .flatten()
            .chain(self.succ_list.iter())
            .filter(|p| p.addr != self.me.addr && !self.crashed.contains(&p.addr))
            .copied()
    }

    fn route<M: Message>(
        &mut self,
        key: RingId,
        origin: Peer,
        tag: u64,
        hops: u32,
        payload: M,
        out: &mut Vec<ChordOutput<M>>,
    ) {
        if self.owns(key) {
            out.push(ChordOutput::Indicate(RingIndication::Deliver {
                key,
                origin,
                tag,
                hops,
                payload,
            }));
            return;
        }
        if hops >= self.config.max_hops {
            self.faults.hop_limit += 1;
            if origin.addr == self.me.addr {
                out.push(ChordOutput::Indicate(RingIndication::Undeliverable {
                    key,
                    tag,
                    reason: Unavailable::RangeUnavailable,
                }));
            } else {
                out.push(ChordOutput::Send {
                    to: origin.addr,
                    msg: ChordMessage::RouteFailed { key, tag },
                });
            }
            return;
        }
        let succ = self.succ();
        let next = if key.in_open(self.me.id, succ.id) || key == succ.id {
            succ
        } else {
            self.closest_preceding(key).unwrap_or(succ)
        };
        if next.addr == self.me.addr {
            // alone but not owning it cannot happen; deliver rather than loop
            out.push(ChordOutput::Indicate(RingIndication::Deliver {
                key,
                origin,
                tag,
                hops,
                payload,
            }));
            return;
        }
        out.push(ChordOutput::Send {
            to: next.addr,
            msg: ChordMessage::Route { key, origin, tag, hops: hops + 1, payload },
        });
    }

    fn on_found<M: Message>(
        &mut self,
        req: u64,
        owner: Peer,
        hops: u32,
        out: &mut Vec<ChordOutput<M>>,
    ) {
        if let Some(j) = &self.joining {
            if j.req == req && j.found.is_none() {
                self.join_found(owner, out);
                return;
            }
        }
        match self.pending.remove(&req) {
            Some(Pending::Lookup { key, tag, .. }) => {
                out.push(ChordOutput::Indicate(RingIndication::LookupResult {
                    key,
                    tag,
                    outcome: LookupOutcome::Found { peer: owner, hops },
                }));
            }
            Some(Pending::Finger { index, .. }) => {
                if owner.addr != self.me.addr && !self.crashed.contains(&owner.addr) {
                    self.fingers[usize::from(index)] = Some(owner);
                }
            }
            Some(Pending::Check { .. }) => self.checked(owner, out),
            None => self.faults.unknown_request += 1,
        }
    }

    fn join_found<M: Message>(&mut self, owner: Peer, out: &mut Vec<ChordOutput<M>>) {
        if owner.id == self.me.id && owner.addr != self.me.addr {
            self.status = RingStatus::Outside;
            self.joining = None;
            out.push(ChordOutput::Indicate(RingIndication::JoinRefused(JoinRefusal::IdInUse)));
            return;
        }
        if let Some(j) = &mut self.joining {
            j.found = Some(owner);
        }
        out.push(ChordOutput::Send { to: owner.addr, msg: ChordMessage::GetPred });
    }

    /// A message from another peer.
    pub fn on_message<M: Message>(
        &mut self,
        from: NodeAddr,
        msg: ChordMessage<M>,
        now: Time,
        out: &mut Vec<ChordOutput<M>>,
    ) {
        match &msg {
            ChordMessage::Gone { .. } | ChordMessage::Leaving { .. } => {}
            // Only a peer in a ring (or joining one) stabilises, answers a stabilisation or
            // notifies; a departed peer never does. Heard first-hand, the peer is not gone:
            // whatever this one held against it (a suspicion, a `Gone` from when it was
            // outside) is forgotten.
            ChordMessage::GetPred | ChordMessage::Notify { .. } | ChordMessage::PredIs { .. }
                if from != self.me.addr
                    && (self.crashed.contains(&from) || self.departed.contains(&from)) =>
            {
                let first_hand = match &msg {
                    ChordMessage::Notify { me } | ChordMessage::PredIs { me, .. } => {
                        me.addr == from
                    }
                    _ => true,
                };
                if first_hand {
                    self.crashed.remove(&from);
                    self.suspects.retain(|s| s.0 != from);
                    self.departed.retain(|a| *a != from);
                    self.note_contact(from);
                }
            }
            ChordMessage::PredIs { pred, succ_list, .. } if self.status == RingStatus::Joining => {
                // a joiner remembers the peers it hears of, as further access peers
                let heard: Vec<NodeAddr> =
                    pred.iter().chain(succ_list.iter()).map(|p| p.addr).collect();
                for n in heard {
                    self.note_contact(n);
                }
                self.note_contact(from);
            }
            _ => self.note_contact(from),
        }
        match msg {
            ChordMessage::FindSucc { req, origin, key, hops, purpose } => {
                if self.status == RingStatus::InRing {
                    self.find(req, origin, key, hops, purpose, out);
                } else {
                    self.gone(from, out);
                    if let Some(h) = self.handoff.filter(|_| hops < self.config.max_hops) {
                        let msg =
                            ChordMessage::FindSucc { req, origin, key, hops: hops + 1, purpose };
                        out.push(ChordOutput::Send { to: h.addr, msg });
                    }
                }
            }
            ChordMessage::Found { req, owner, hops } => self.on_found(req, owner, hops, out),
            ChordMessage::Route { key, origin, tag, hops, payload } => {
                if self.status == RingStatus::InRing {
                    self.route(key, origin, tag, hops, payload, out);
                } else {
                    self.gone(from, out);
                    if let Some(h) = self.handoff.filter(|_| hops < self.config.max_hops) {
                        let msg = ChordMessage::Route { key, origin, tag, hops: hops + 1, payload };
                        out.push(ChordOutput::Send { to: h.addr, msg });
                    }
                }
            }
            ChordMessage::RouteFailed { key, tag } => {
                out.push(ChordOutput::Indicate(RingIndication::Undeliverable {
                    key,
                    tag,
                    reason: Unavailable::RangeUnavailable,
                }));
            }
            ChordMessage::GetPred => {
                if self.status == RingStatus::InRing {
                    out.push(ChordOutput::Send {
                        to: from,
                        msg: ChordMessage::PredIs {
                            me: self.me,
                            pred: self.pred,
                            succ_list: self.succ_list.clone(),
                        },
                    });
                } else {
                    self.gone(from, out);
                }
            }
            ChordMessage::PredIs { me, pred, succ_list } if me.addr == from => {
                self.on_pred_is(me, pred, succ_list, now, out);
            }
            ChordMessage::Notify { me } if me.addr == from => self.on_notify(me, out),
            // A departed peer passes on a `Leaving` that reached it after it left (two
            // neighbours leaving at once): otherwise its successor would take the other
            // departed peer as its predecessor, and keep it (it still runs, and so still
            // answers the failure detector).
            ChordMessage::Leaving { me, pred, succ_list } if self.status != RingStatus::InRing => {
                match self.handoff.filter(|h| h.addr != me.addr) {
                    Some(h) => {
                        let msg = ChordMessage::Leaving { me, pred, succ_list };
                        out.push(ChordOutput::Send { to: h.addr, msg });
                    }
                    None => self.faults.out_of_state += 1,
                }
            }
            // Accepted first-hand, or passed on by a peer known to have left.
            ChordMessage::Leaving { me, pred, succ_list }
                if me.addr == from || self.departed.contains(&from) =>
            {
                self.on_leaving(me, pred, succ_list, out);
            }
            ChordMessage::Gone { me } if me.addr == from => {
                if self.status == RingStatus::InRing {
                    self.drop_peer(from, false, out);
                } else if self.joining.is_some() {
                    // the successor found (or the access peer) is outside the ring: try again
                    // at the next tick, through the next peer
                    self.forget(from);
                    self.contacts.retain(|a| *a != from);
                    if let Some(j) = &mut self.joining {
                        if j.found.is_some_and(|f| f.addr == from) || j.access == from {
                            j.found = None;
                            j.retry_at = now;
                        }
                    }
                }
            }
            // a peer speaking for another node
            ChordMessage::PredIs { .. }
            | ChordMessage::Notify { .. }
            | ChordMessage::Leaving { .. }
            | ChordMessage::Gone { .. } => {
                self.faults.stale_answer += 1;
            }
        }
        self.settle(out);
    }

    /// Ring traffic reached this peer outside any ring: tell the sender to forget it. A
    /// joiner says nothing: it is not in the ring yet, but will be (a `Gone` would make the
    /// sender hold it for departed; the ring check, asking a contact that was a joiner when
    /// it was heard from, ran into that in `chord-partition`).
    fn gone<M>(&mut self, from: NodeAddr, out: &mut Vec<ChordOutput<M>>) {
        self.faults.out_of_state += 1;
        if from != self.me.addr && self.status != RingStatus::Joining {
            out.push(ChordOutput::Send { to: from, msg: ChordMessage::Gone { me: self.me } });
        }
    }

    /// Merges `list` (a successor's list, nearest first) behind `first`.
    fn adopt_list(&mut self, first: Peer, list: &[Peer]) {
        let mut l = vec![first];
        for p in list {
            if p.addr == self.me.addr
                || self.crashed.contains(&p.addr)
                || l.iter().any(|q| q.addr == p.addr)
            {
                continue;
            }
            l.push(*p);
        }
        l.truncate(self.config.succ_list_size);
        self.succ_list = l;
    }

    fn on_pred_is<M: Message>(
        &mut self,
        from: Peer,
        pred: Option<Peer>,
        list: Vec<Peer>,
        now: Time,
        out: &mut Vec<ChordOutput<M>>,
    ) {
        if self.status == RingStatus::Joining {
            let Some(j) = &mut self.joining else { return };
            if j.found.map(|f| f.addr) != Some(from.addr) {
                self.faults.stale_answer += 1;
                return;
            }
            match pred {
                // someone joined between: that is the successor
                Some(p) if p.id.in_open(self.me.id, from.id) && p.addr != self.me.addr => {
                    j.found = Some(p);
                    j.retry_at = now + self.config.join_timeout;
                    out.push(ChordOutput::Send { to: p.addr, msg: ChordMessage::GetPred });
                }
                Some(p) => {
                    // the successor's predecessor is ours: we sit between them
                    let pred = if p.addr == self.me.addr { from } else { p };
                    self.joining = None;
                    self.status = RingStatus::InRing;
                    self.pred = Some(pred);
                    self.adopt_list(from, &list);
                    let range = self.range().unwrap_or(Range::full(self.me.id));
                    out.push(ChordOutput::Indicate(RingIndication::Joined {
                        me: self.me,
                        range,
                        pred,
                        succ: from,
                    }));
                    out.push(responsibility(
                        Some(range),
                        RangeChange::Gained { range, from: Some(from) },
                    ));
                    out.push(ChordOutput::Send {
                        to: from.addr,
                        msg: ChordMessage::Notify { me: self.me },
                    });
                    self.next_stabilize = now + self.config.stabilize;
                    self.next_fix = now;
                }
                None => {} // its predecessor is unknown right now: ask again at the next retry
            }
            return;
        }
        if self.status == RingStatus::InRing
            && from.addr != self.succ().addr
            && self.pred.is_some_and(|p| p.addr == from.addr)
        {
            // the predecessor answering the check of a rejected notify: it is in a ring
            return;
        }
        if self.status != RingStatus::InRing || from.addr != self.succ().addr {
            self.faults.stale_answer += 1;
            return;
        }
        match pred {
            Some(x)
                if x.id.in_open(self.me.id, from.id)
                    && x.addr != self.me.addr
                    && !self.crashed.contains(&x.addr) =>
            {
                let mut l = vec![from];
                l.extend(list);
                self.adopt_list(x, &l);
            }
            _ => self.adopt_list(from, &list),
        }
        let succ = self.succ();
        if succ.addr != self.me.addr {
            out.push(ChordOutput::Send {
                to: succ.addr,
                msg: ChordMessage::Notify { me: self.me },
            });
        }
    }

    /// Chord's `notify`: `n` thinks it may be this peer's predecessor.
    fn on_notify<M: Message>(&mut self, n: Peer, out: &mut Vec<ChordOutput<M>>) {
        if self.status != RingStatus::InRing {
            self.faults.out_of_state += 1;
            return;
        }
        self.crashed.remove(&n.addr);
        self.suspects.retain(|s| s.0 != n.addr);
        let pred = self.pred.unwrap_or(self.me);
        if n.addr == pred.addr {
            return;
        }
        if pred.addr == self.me.addr || n.id.in_open(pred.id, self.me.id) {
            self.set_pred(n, out);
            if self.succ().addr == self.me.addr {
                // a ring of two: the newcomer is also the successor
                self.succ_list = vec![n];
            }
        } else {
            // A peer before the predecessor takes this one as its successor: the predecessor
            // may have left and still run (the detector trusts it, and a successor that missed
            // its `Leaving` would keep it for good — `chord-leave` found it). Ask it: a peer
            // outside the ring answers `Gone`, and is dropped.
            out.push(ChordOutput::Send { to: pred.addr, msg: ChordMessage::GetPred });
        }
    }

    /// Takes `new` as the predecessor, telling the user what part of the range moved.
    fn set_pred<M: Message>(&mut self, new: Peer, out: &mut Vec<ChordOutput<M>>) {
        let old = self.pred.unwrap_or(self.me);
        if old.addr == new.addr {
            return;
        }
        self.pred = Some(new);
        let now = self.range();
        if new.addr != self.me.addr
            && (old.addr == self.me.addr || new.id.in_open(old.id, self.me.id))
        {
            // shrinks: (old, new] goes to the new predecessor
            let range = Range::new(old.id, new.id);
            out.push(responsibility(now, RangeChange::Lost { range, to: Some(new) }));
        } else {
            // grows: (new, old] comes from the old predecessor (gone)
            let range = if new.addr == self.me.addr {
                Range::new(self.me.id, old.id)
            } else {
                Range::new(new.id, old.id)
            };
            out.push(responsibility(now, RangeChange::Gained { range, from: Some(old) }));
        }
    }

    fn on_leaving<M: Message>(
        &mut self,
        l: Peer,
        lpred: Option<Peer>,
        llist: Vec<Peer>,
        out: &mut Vec<ChordOutput<M>>,
    ) {
        if self.status != RingStatus::InRing {
            self.faults.out_of_state += 1;
            return;
        }
        let was_succ = self.succ().addr == l.addr;
        let was_pred = self.pred.is_some_and(|p| p.addr == l.addr);
        self.forget(l.addr);
        self.note_departed(l.addr);
        if was_succ {
            // its successor list follows it
            let first = llist
                .iter()
                .find(|p| p.addr != self.me.addr && !self.crashed.contains(&p.addr))
                .copied();
            if let Some(first) = first {
                self.adopt_list(first, &llist);
                out.push(ChordOutput::Send {
                    to: first.addr,
                    msg: ChordMessage::Notify { me: self.me },
                });
            }
        }
        if was_pred {
            // its range comes here, and its predecessor is ours
            let new = lpred
                .filter(|p| p.addr != l.addr && !self.crashed.contains(&p.addr))
                .unwrap_or_else(|| self.guess_pred());
            self.set_pred(new, out);
        }
        if self.succ_list.is_empty() {
            self.succ_list = vec![self.pred.unwrap_or(self.me)];
        }
    }

    /// Drops a node from the lists and fingers and remembers it as gone.
    fn forget(&mut self, n: NodeAddr) {
        if n == self.me.addr {
            return;
        }
        if self.crashed.len() >= MAX_CRASHED {
            if let Some(first) = self.crashed.iter().next().copied() {
                self.crashed.remove(&first);
                self.suspects.retain(|s| s.0 != first);
            }
        }
        self.crashed.insert(n);
        self.succ_list.retain(|p| p.addr != n);
        for f in &mut self.fingers {
            if f.is_some_and(|p| p.addr == n) {
                *f = None;
            }
        }
    }

    /// The nearest known live peer before this one (the farthest clockwise), or this peer.
    fn guess_pred(&self) -> Peer {
        self.live_known().max_by_key(|p| p.id.distance_from(self.me.id)).unwrap_or(self.me)
    }

    /// The failure detector suspects `n`.
    pub fn on_suspect<M: Message>(
        &mut self,
        n: NodeAddr,
        _now: Time,
        out: &mut Vec<ChordOutput<M>>,
    ) {
        if self.status != RingStatus::InRing {
            // a joiner simply retries (through its access peer) at its next retry
            if let Some(j) = &mut self.joining {
                if j.found.is_some_and(|f| f.addr == n) {
                    j.found = None;
                }
            }
            return;
        }
        self.drop_peer(n, true, out);
    }

    fn note_departed(&mut self, n: NodeAddr) {
        self.suspects.retain(|s| s.0 != n);
        if !self.departed.contains(&n) {
            if self.departed.len() >= MAX_CRASHED {
                self.departed.pop_front();
            }
            self.departed.push_back(n);
        }
    }

    /// Drops `n` (suspected by the failure detector, or gone from the ring) from the lists and
    /// fingers and repairs around it; a suspect is watched until the detector restores it
    /// (`watch`), a departed peer is not.
    fn drop_peer<M: Message>(&mut self, n: NodeAddr, watch: bool, out: &mut Vec<ChordOutput<M>>) {
        let pred_gone = self.pred.is_some_and(|p| p.addr == n);
        let known = self
            .succ_list
            .iter()
            .chain(self.pred.iter())
            .chain(self.fingers.iter().flatten())
            .find(|p| p.addr == n)
            .copied();
        self.forget(n);
        self.suspects.retain(|s| s.0 != n);
        if watch {
            if self.suspects.len() >= WATCHED_SUSPECTS {
                // No longer watched, it is no longer held for crashed either (unless it said it
                // left): the detector could never restore it, and lists would skip it for
                // good — a partition suspects more than 16 peers at once, and `chord-partition`
                // found a live peer left out of its predecessors' lists so. If it did crash,
                // it is suspected again when it next becomes a successor or predecessor.
                if let Some((old, _)) = self.suspects.pop_front() {
                    if !self.departed.contains(&old) {
                        self.crashed.remove(&old);
                    }
                }
            }
            self.suspects.push_back((n, known));
        } else {
            self.note_departed(n);
        }
        if self.succ_list.is_empty() {
            // every successor gone: the nearest live finger ahead, else alone
            let next = self
                .fingers
                .iter()
                .flatten()
                .filter(|p| !self.crashed.contains(&p.addr))
                .min_by_key(|p| p.id.distance_from(self.me.id))
                .copied()
                .unwrap_or_else(|| self.pred.filter(|p| p.addr != n).unwrap_or(self.me));
            self.succ_list = vec![next];
        }
        if pred_gone {
            let new = self.guess_pred();
            self.set_pred(new, out);
        }
        self.settle(out);
    }

    /// The network could not reach `n`: it is no finger any more (successor and predecessor
    /// are left to the failure detector).
    pub fn on_unreachable<M: Message>(&mut self, n: NodeAddr, out: &mut Vec<ChordOutput<M>>) {
        for f in &mut self.fingers {
            if f.is_some_and(|p| p.addr == n) {
                *f = None;
            }
        }
        self.settle(out);
    }

    /// The failure detector trusts `n` again.
    pub fn on_restore<M: Message>(
        &mut self,
        n: NodeAddr,
        _now: Time,
        out: &mut Vec<ChordOutput<M>>,
    ) {
        self.crashed.remove(&n);
        let restored = self.suspects.iter().find(|s| s.0 == n).and_then(|s| s.1);
        self.suspects.retain(|s| s.0 != n);
        // A false suspicion corrected: if the peer sits between this one and its successor,
        // it is the successor again (stabilisation alone would not bring it back once the
        // peers past it took this one as predecessor: a loop that never heals).
        if let Some(p) = restored {
            let succ = self.succ();
            if self.status == RingStatus::InRing
                && p.addr != self.me.addr
                && (succ.addr == self.me.addr || p.id.in_open(self.me.id, succ.id))
            {
                let list = self.succ_list.clone();
                self.adopt_list(p, &list);
                out.push(ChordOutput::Send {
                    to: p.addr,
                    msg: ChordMessage::Notify { me: self.me },
                });
            }
        }
        self.settle(out);
    }

    /// Periodic work: join retries, lookup timeouts, stabilisation, finger fixing.
    pub fn on_tick<M: Message>(&mut self, now: Time, out: &mut Vec<ChordOutput<M>>) {
        if let Some(mut l) = self.leave_again.take() {
            if now >= l.at {
                self.send_leaving(&l, out);
                l.left -= 1;
                l.at = now + self.config.stabilize;
            }
            if l.left > 0 {
                self.leave_again = Some(l);
            }
        }
        if let Some(j) = &mut self.joining {
            if now >= j.retry_at {
                // Not in within the timeout: start over through the access peer (the successor
                // found may have crashed; a joiner watches no one, so it would ask it forever —
                // the `chord-crash-10` scenario found a joiner stuck so).
                j.retry_at = now + self.config.join_timeout;
                j.found = None;
                j.attempts = j.attempts.wrapping_add(1);
                let (attempts, req) = (j.attempts, j.req);
                let access = self.join_access(attempts);
                out.push(self.find_to(access, req, self.me.id, 0, Purpose::Join));
            }
        }
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| match p {
                Pending::Lookup { deadline, .. }
                | Pending::Finger { deadline, .. }
                | Pending::Check { deadline } => now >= *deadline,
            })
            .map(|(r, _)| *r)
            .collect();
        // unanswered halfway: again (a peer on the way may have died; its finger is gone if
        // the network said it is unreachable)
        let mut again = Vec::new();
        let step = self.config.lookup_timeout / (LOOKUP_RESENDS + 1);
        for (r, p) in &mut self.pending {
            if let Pending::Lookup { key, resend_at, resends, .. } = p {
                if resend_at.is_some_and(|t| now >= t) {
                    *resends += 1;
                    *resend_at = (*resends < LOOKUP_RESENDS).then(|| now + step);
                    again.push((*r, *key));
                }
            }
        }
        for (r, key) in again {
            self.find(r, self.me, key, 0, Purpose::Lookup, out);
        }
        for r in expired {
            if let Some(Pending::Lookup { key, tag, .. }) = self.pending.remove(&r) {
                out.push(ChordOutput::Indicate(RingIndication::LookupResult {
                    key,
                    tag,
                    outcome: LookupOutcome::Unavailable(Unavailable::Timeout),
                }));
            }
        }
        if self.status == RingStatus::InRing {
            if now >= self.next_stabilize {
                self.next_stabilize = now + self.config.stabilize;
                let succ = self.succ();
                if succ.addr == self.me.addr {
                    // alone, or a ring of two forming: our predecessor is our successor
                    if let Some(p) = self.pred.filter(|p| p.addr != self.me.addr) {
                        self.succ_list = vec![p];
                        out.push(ChordOutput::Send {
                            to: p.addr,
                            msg: ChordMessage::Notify { me: self.me },
                        });
                    }
                } else {
                    out.push(ChordOutput::Send { to: succ.addr, msg: ChordMessage::GetPred });
                }
            }
            if now >= self.next_fix {
                self.next_fix = now + self.config.fix_fingers;
                for _ in 0..self.config.fingers_per_fix {
                    self.fix_finger(now, out);
                }
            }
            if now >= self.next_check {
                self.next_check = now + self.config.check_ring;
                self.check_ring(now, out);
            }
        }
        self.settle(out);
    }

    /// Where join attempt `attempts` goes: the access peer on even attempts, the contacts
    /// heard from (not suspected, not departed) in turn on odd ones.
    fn join_access(&self, attempts: u32) -> NodeAddr {
        let access = self.joining.as_ref().map_or(self.me.addr, |j| j.access);
        let gone = self.crashed.contains(&access);
        let others: Vec<NodeAddr> = self
            .contacts
            .iter()
            .filter(|a| **a != access && **a != self.me.addr && !self.crashed.contains(a))
            .copied()
            .collect();
        if (attempts % 2 == 0 && !gone) || others.is_empty() {
            access
        } else {
            others[(attempts as usize / 2) % others.len()]
        }
    }

    /// Remembers `n` as a peer heard from lately.
    fn note_contact(&mut self, n: NodeAddr) {
        if n == self.me.addr || self.crashed.contains(&n) {
            return;
        }
        self.contacts.retain(|a| *a != n);
        if self.contacts.len() >= CONTACTS {
            self.contacts.pop_front();
        }
        self.contacts.push_back(n);
    }

    /// The ring check: looks up this peer's own identifier through a known peer other than
    /// the successor (contacts, fingers, predecessor, successor list, round robin). On a
    /// sorted ring the answer is this peer; a different answer is a peer that claims this
    /// one's identifier, on another cycle or past a gap that stabilisation does not see
    /// (`checked`).
    fn check_ring<M: Message>(&mut self, now: Time, out: &mut Vec<ChordOutput<M>>) {
        let succ = self.succ().addr;
        let known: BTreeSet<NodeAddr> = self
            .contacts
            .iter()
            .copied()
            .chain(self.live_known().map(|p| p.addr))
            .chain(self.pred.map(|p| p.addr))
            .filter(|a| *a != self.me.addr && *a != succ && !self.crashed.contains(a))
            .collect();
        if known.is_empty() || self.pending.len() >= MAX_PENDING {
            return;
        }
        let to = known.iter().nth((self.checks % known.len() as u64) as usize).copied();
        self.checks = self.checks.wrapping_add(1);
        let Some(to) = to else { return };
        let req = self.req();
        self.pending.insert(req, Pending::Check { deadline: now + self.config.lookup_timeout });
        out.push(self.find_to(to, req, self.me.id, 0, Purpose::Check));
    }

    /// The answer to a ring check: `owner` is the successor of this peer's identifier as the
    /// ring seen from elsewhere has it. Another peer than this one is taken as the successor
    /// if it is closer than the present one (stabilisation's rule), and notified either way
    /// (it takes this peer as predecessor by notify's rule if this peer lies between).
    fn checked<M: Message>(&mut self, owner: Peer, out: &mut Vec<ChordOutput<M>>) {
        if owner.addr == self.me.addr
            || self.crashed.contains(&owner.addr)
            || self.status != RingStatus::InRing
        {
            return;
        }
        let succ = self.succ();
        if succ.addr == self.me.addr || owner.id.in_open(self.me.id, succ.id) {
            tracing::debug!(me = %self.me, %owner, %succ, "chord: the ring check found a closer successor");
            let list = self.succ_list.clone();
            self.adopt_list(owner, &list);
        }
        out.push(ChordOutput::Send { to: owner.addr, msg: ChordMessage::Notify { me: self.me } });
    }

    fn fix_finger<M: Message>(&mut self, now: Time, out: &mut Vec<ChordOutput<M>>) {
        let i = self.next_finger;
        self.next_finger = (i + 1) % FINGERS;
        let start = self.me.id.offset(1u64 << i);
        let succ = self.succ();
        if succ.addr == self.me.addr {
            self.fingers[i] = None;
            return;
        }
        if start.in_open(self.me.id, succ.id) || start == succ.id {
            self.fingers[i] = Some(succ);
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            return;
        }
        let req = self.req();
        let index = u8::try_from(i).unwrap_or(0);
        self.pending
            .insert(req, Pending::Finger { index, deadline: now + self.config.lookup_timeout });
        self.find(req, self.me, start, 0, Purpose::Finger(index), out);
    }

    fn leave<M: Message>(&mut self, now: Time, out: &mut Vec<ChordOutput<M>>) {
        match self.status {
            RingStatus::InRing => {
                let succ = self.succ();
                let range = self.range();
                let mut to = Vec::new();
                if succ.addr != self.me.addr {
                    to.push(succ.addr);
                }
                if let Some(p) = self.pred.filter(|p| p.addr != self.me.addr && p.addr != succ.addr)
                {
                    to.push(p.addr);
                }
                let again = LeaveAgain {
                    to,
                    pred: self.pred,
                    succ_list: self.succ_list.clone(),
                    at: now + self.config.stabilize,
                    left: LEAVE_RESENDS,
                };
                self.send_leaving(&again, out);
                self.leave_again = (!again.to.is_empty()).then_some(again);
                if let Some(range) = range {
                    let to = (succ.addr != self.me.addr).then_some(succ);
                    out.push(responsibility(None, RangeChange::Lost { range, to }));
                }
                self.handoff = (succ.addr != self.me.addr).then_some(succ);
            }
            RingStatus::Joining | RingStatus::Outside => {}
            RingStatus::Leaving | RingStatus::Left => return,
        }
        self.status = RingStatus::Left;
        self.joining = None;
        // lookups under way are answered, not dropped: every lookup gets one answer
        for (_, p) in std::mem::take(&mut self.pending) {
            if let Pending::Lookup { key, tag, .. } = p {
                out.push(ChordOutput::Indicate(RingIndication::LookupResult {
                    key,
                    tag,
                    outcome: LookupOutcome::Unavailable(Unavailable::NotInRing),
                }));
            }
        }
        self.pred = None;
        self.succ_list.clear();
        self.fingers = vec![None; FINGERS];
        out.push(ChordOutput::Indicate(RingIndication::Left));
    }

    fn send_leaving<M: Message>(&self, l: &LeaveAgain, out: &mut Vec<ChordOutput<M>>) {
        for &to in &l.to {
            let msg =
                ChordMessage::Leaving { me: self.me, pred: l.pred, succ_list: l.succ_list.clone() };
            out.push(ChordOutput::Send { to, msg });
        }
    }

    /// Watches the successor (the first [`ChordConfig::watched_succs`] list entries), the
    /// predecessor and the recent suspects; tells the user when its neighbours changed.
    fn settle<M: Message>(&mut self, out: &mut Vec<ChordOutput<M>>) {
        let in_ring = self.status == RingStatus::InRing;
        let mut want = BTreeSet::new();
        if in_ring {
            let succs = self.succ_list.iter().take(self.config.watched_succs.max(1)).copied();
            for p in std::iter::once(self.succ()).chain(succs).chain(self.pred) {
                if p.addr != self.me.addr {
                    want.insert(p.addr);
                }
            }
            want.extend(self.suspects.iter().map(|s| s.0));
        }
        for n in self.monitored.difference(&want) {
            out.push(ChordOutput::Unmonitor(*n));
        }
        for n in want.difference(&self.monitored) {
            out.push(ChordOutput::Monitor(*n));
        }
        self.monitored = want;
        let now = if in_ring {
            Neighbours {
                succ: Some(self.succ()),
                pred: self.pred,
                succ_list: self.succ_list.clone(),
                pred_list: self.pred.into_iter().collect(),
            }
        } else {
            Neighbours::default()
        };
        if now != self.told {
            self.told = now.clone();
            out.push(ChordOutput::Indicate(RingIndication::Neighbours(now)));
        }
    }
}

fn responsibility<M>(now: Option<Range>, change: RangeChange) -> ChordOutput<M> {
    ChordOutput::Indicate(RingIndication::Responsibility(ResponsibilityChange { now, change }))
}
