//! Moving a range between two peers when the ring gives it to another one (a joiner taking
//! part of its successor's range, a leaving peer handing its range to its successor):
//! [`Handover`], Scalaris' *slide* adapted to a ring that switches responsibility first.
//!
//! The relaxed ring makes the new owner `q` responsible as soon as the join (or leave) step
//! happens, before any data moved. So the data's **old holder** `r` keeps the range as
//! *outgoing* and stays its authority until the transfer is complete, and `q` holds it as
//! *incoming*: `q` forwards the operations it receives for it to `r`, which applies them.
//!
//! ```text
//!  r (outgoing)                                   q (incoming)
//!    Lost{R, to: q}                                 Gained{R, from: r}
//!    ──Offer{s, R}───────────────────────────────▶  (q ──Pull{R}──▶ r if none came)
//!    ◀──────────────────────────────Accept{s}──
//!    ──Items{s, 0, first batch}──────────────────▶  ops for R: q ──forward──▶ r, r applies
//!    ──Items{s, 1, …}────────────────────────────▶  and answers the coordinator
//!    ◀───────────────────────────ItemsAck{s, k}──
//!    a record changes after it was sent: it goes out again in the next batch (the delta)
//!    ──Done{s, n}────────────────────────────────▶  q serves R
//!    from here r bounces ops for R back to q       ◀──DoneAck{s}──  r drops R
//! ```
//!
//! Invariants (unit tests in `machine` tests `handover`):
//! * **no acknowledged write is lost**: until `Done`, every operation on the range is applied
//!   at `r` (directly or forwarded by `q`), and every record that changes after it was sent is
//!   sent again; `Done` goes only after every batch was acknowledged; `r` drops the range only
//!   after `DoneAck`;
//! * **no stale version is served**: `q` answers nothing for the range before `Done` (it
//!   forwards, or says "not ready"); after `Done` it has every record in its latest version;
//!   `r` applies nothing for the range after `Done` (it bounces);
//! * **no range is dropped with nobody holding it**: `r` drops the range only at `q`'s
//!   `DoneAck`, and `q` takes every part of the offer it knows an owner of — its own, and
//!   each part it lost to a later owner before its data came, which it owes to that owner
//!   and hands on at `Done` ([`Handover::lose`]), whatever became of its own part meanwhile
//!   (still awaited, rebuilt, served); a transfer hands on only the parts whose records it
//!   kept from its start;
//! * a record from `r` never takes `q`'s version back (counted as
//!   [`Fault::VersionBackwards`] and dropped); items outside the offered range are dropped;
//! * **a stuck transfer ends**: without progress for `transfer_timeout`, either side gives
//!   up; `q` then waits for a new offer for `offer_wait` (pulling), and rebuilds the range
//!   from the other replicas if none comes; if the ring gives the range back to `r` (the
//!   joiner crashed) before `Done`, `r` serves it again at once, after `Done` it rebuilds it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use selfman_core::{NodeAddr, Time};
use selfman_ports::{has_flaw, Movement, Range, ReplicationIndication, RingId};

use crate::faults::Fault;
#[cfg(feature = "flaws")]
use crate::machine::Flaw;
use crate::machine::{Ctx, ReplOutput, Transition};
use crate::messages::{ReplMessage, WireItem, WireVote};
use crate::ranges::{offset_in, RangeSet};
use crate::store::{ItemId, ItemRef, Record, RecordRef, VoteEntry};

/// How many times a new owner pulls before it rebuilds (within `offer_wait`).
const PULLS: u32 = 3;

/// Transfers from one old holder that may time out before the range is rebuilt instead.
const TRIES: u32 = 2;

/// Completed incoming transfers remembered, to answer a repeated `Done` (its `DoneAck` lost).
const RECENT: usize = 16;

/// Debts remembered ([`Handover::owe`]); the oldest is forgotten beyond (a debt whose range
/// was rebuilt by its new owner, or whose old holder has gone, is never paid).
const MAX_OWED: usize = 64;

/// Where an operation for a position not served here should go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// This node still holds the range being handed over: apply it here.
    Here,
    /// The range was handed over to this node: bounce it there.
    Bounce(NodeAddr),
    /// The range is being received from this node: forward it there.
    Forward(NodeAddr),
    /// The range is incoming and nobody can serve it yet.
    NotReady,
    /// No transfer holds the position.
    None,
}

#[derive(Clone, Debug)]
enum OutPhase {
    /// Offered, not accepted yet.
    Offered,
    /// Sending batches.
    Sending {
        cursor: Option<ItemId>,
        exhausted: bool,
        next_seq: u64,
        unacked: BTreeMap<u64, (Vec<WireItem>, Time)>,
        delta: BTreeSet<ItemId>,
    },
    /// `Done` sent; waiting for `DoneAck`.
    Draining { seq: u64 },
    /// Given up; waiting for a pull or for the range to come back, and offered again after
    /// each `transfer_timeout` (the new owner may have refused the first offer while it was
    /// rebuilding the range; once it serves it, it merges what this node holds).
    Stalled,
}

#[derive(Clone, Debug)]
struct Outgoing {
    range: Range,
    to: NodeAddr,
    phase: OutPhase,
    last_progress: Time,
    resend_at: Time,
    items: u64,
    /// Key and value bytes of the items sent ([`WireItem::data_bytes`]).
    bytes: u64,
}

#[derive(Clone, Debug)]
enum InPhase {
    Waiting {
        pulls: u32,
        next_pull: Time,
    },
    Receiving {
        session: u64,
        offered: Range,
        /// The positions whose records are kept as they come: what was wanted or owed when
        /// the transfer started (a debt added later is not paid by this transfer, which did
        /// not keep all of its records).
        kept: RangeSet,
        next_seq: u64,
        items: u64,
        /// Key and value bytes of the items received ([`WireItem::data_bytes`]).
        bytes: u64,
        last_progress: Time,
    },
}

#[derive(Clone, Debug)]
struct Incoming {
    /// The part of the range this node still owns and expects.
    want: RangeSet,
    /// The range as gained.
    range: Range,
    from: NodeAddr,
    since: Time,
    /// The range is served here already (a peer hands over what this node never lost, after
    /// a false suspicion): records are merged by version, nothing changes at `Done`.
    merge: bool,
    /// Transfers of it that timed out.
    failed: u32,
    phase: InPhase,
}

/// The transfers in progress at this node, both directions.
#[derive(Clone, Debug, Default)]
pub struct Handover {
    next: u64,
    out: BTreeMap<u64, Outgoing>,
    inc: Vec<Incoming>,
    /// Parts of ranges this node lost before it had their data (received or rebuilt), with
    /// the peer the ring gave each to: that peer was told to expect the data from here. An
    /// offer of such a part is accepted, its records are kept as they come, and handed on to
    /// the peer once the transfer is complete, whatever happened to this node's own part
    /// meanwhile (waited for, rebuilt, served, lost). The old holder drops what it sent at
    /// `DoneAck`, so without this its data of the part would be dropped with nobody holding
    /// it (`docs/replication.md`, "A rebuild that waited forever").
    owed: Vec<(Range, NodeAddr)>,
    recent: VecDeque<(NodeAddr, u64)>,
    #[cfg(feature = "flaws")]
    flaw: Option<Flaw>,
}

/// A record as sent: its replica number and lease left.
pub(crate) fn wire_item(
    cx: &Ctx<'_>,
    id: ItemRef<'_>,
    r: Option<RecordRef<'_>>,
    with_votes: bool,
) -> WireItem {
    let replica = cx.placement.replica_at(id.key, id.pos).unwrap_or(0);
    let votes = match (r, with_votes) {
        (Some(r), true) => r
            .votes()
            .iter()
            .map(|v| WireVote {
                tx: v.tx,
                mode: v.mode,
                vote: v.vote,
                lease_left_ms: v
                    .expires
                    .duration_since(cx.now)
                    .as_millis()
                    .min(u128::from(u64::MAX)) as u64,
            })
            .collect(),
        _ => Vec::new(),
    };
    WireItem {
        key: id.key.to_vec(),
        replica,
        version: r.map(|r| r.version).unwrap_or_default(),
        value: r.and_then(|r| r.value).map(<[u8]>::to_vec),
        votes,
    }
}

/// A record as received, with its leases turned back into local times.
pub(crate) fn record_of(cx: &Ctx<'_>, w: &WireItem) -> Record {
    let votes = w
        .votes
        .iter()
        .map(|v| VoteEntry {
            tx: v.tx,
            mode: v.mode,
            vote: v.vote,
            expires: cx.now + std::time::Duration::from_millis(v.lease_left_ms),
        })
        .collect();
    Record::new(w.version, w.value.as_deref().map(Box::from)).with_votes(votes)
}

/// Whether `i` is a transfer under way that keeps records of a debt in `owed`.
fn carries(owed: &[(Range, NodeAddr)], i: &Incoming) -> bool {
    match &i.phase {
        InPhase::Receiving { kept, .. } => {
            owed.iter().any(|(p, _)| !kept.intersection(&RangeSet::of(*p)).is_empty())
        }
        InPhase::Waiting { .. } => false,
    }
}

/// Whether `id` comes at or before `cursor` in the circular order of `range`.
fn sent_already(range: Range, cursor: &ItemId, id: &ItemId) -> bool {
    let (a, b) = (offset_in(range, id.pos), offset_in(range, cursor.pos));
    a < b || (a == b && id.key <= cursor.key)
}

impl Handover {
    /// No transfer.
    pub fn new() -> Handover {
        Handover::default()
    }

    /// This hand-over with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.flaw = Some(flaw);
        self
    }

    /// The ranges being sent away (still held here).
    pub fn outgoing(&self) -> Vec<Range> {
        self.out.values().map(|o| o.range).collect()
    }

    /// The ranges being received (owned, not served yet).
    pub fn incoming(&self) -> Vec<Range> {
        self.inc.iter().filter(|i| !i.merge).flat_map(|i| i.want.ranges()).collect()
    }

    /// Whether any range is still being sent away.
    pub fn sending(&self) -> bool {
        !self.out.is_empty()
    }

    /// Where an operation for `pos` goes, if a transfer holds it.
    pub(crate) fn locate(&self, pos: RingId) -> Holder {
        for o in self.out.values() {
            if o.range.contains(pos) {
                return match o.phase {
                    OutPhase::Draining { .. } => Holder::Bounce(o.to),
                    _ => Holder::Here,
                };
            }
        }
        for i in &self.inc {
            if i.want.contains(pos) && !i.merge {
                return match i.phase {
                    InPhase::Receiving { .. } => Holder::Forward(i.from),
                    InPhase::Waiting { .. } => Holder::NotReady,
                };
            }
        }
        Holder::None
    }

    // ---------------------------------------------------------------- the old holder's side

    /// The ring gave `range` (served here) to `to`: offer it.
    pub(crate) fn send(&mut self, cx: &mut Ctx<'_>, range: Range, to: NodeAddr) {
        let id = self.next;
        self.next += 1;
        let o = Outgoing {
            range,
            to,
            phase: OutPhase::Offered,
            last_progress: cx.now,
            resend_at: cx.now + cx.config.retransmit,
            items: 0,
            bytes: 0,
        };
        self.out.insert(id, o);
        cx.watch(to);
        cx.send(to, ReplMessage::Offer { session: id, range });
        tracing::debug!(%range, %to, session = id, "replication: offering a range");
    }

    /// A record in a range being sent changed: send it again if it went out already.
    pub(crate) fn changed(&mut self, id: &ItemId) {
        if has_flaw!(self, SkipsDelta) {
            return; // deliberately wrong: the meanwhile-writes are never sent
        }
        for o in self.out.values_mut() {
            if !o.range.contains(id.pos) {
                continue;
            }
            if let OutPhase::Sending { cursor, exhausted, delta, .. } = &mut o.phase {
                let sent =
                    *exhausted || cursor.as_ref().is_some_and(|c| sent_already(o.range, c, id));
                if sent {
                    delta.insert(id.clone());
                }
            }
        }
    }

    /// The new owner accepted the offer.
    pub(crate) fn on_accept(&mut self, cx: &mut Ctx<'_>, from: NodeAddr, session: u64) {
        let Some(o) = self.out.get_mut(&session) else {
            return cx
                .faults
                .add(Fault::UnknownSession, &format_args!("accept of transfer {session}"));
        };
        if o.to != from {
            return cx
                .faults
                .add(Fault::StrangerSession, &format_args!("accept of {session} from {from}"));
        }
        if matches!(o.phase, OutPhase::Offered) {
            o.phase = OutPhase::Sending {
                cursor: None,
                exhausted: false,
                next_seq: 0,
                unacked: BTreeMap::new(),
                delta: BTreeSet::new(),
            };
            o.last_progress = cx.now;
            self.pump(cx, session);
        }
    }

    /// The new owner declined (it does not own the range): wait for the ring.
    pub(crate) fn on_decline(&mut self, cx: &mut Ctx<'_>, from: NodeAddr, session: u64) {
        match self.out.get_mut(&session) {
            Some(o) if o.to == from => {
                o.phase = OutPhase::Stalled;
                o.last_progress = cx.now;
            }
            Some(_) => cx
                .faults
                .add(Fault::StrangerSession, &format_args!("decline of {session} from {from}")),
            None => {
                cx.faults.add(Fault::UnknownSession, &format_args!("decline of transfer {session}"))
            }
        }
    }

    /// Batches up to `seq` arrived.
    pub(crate) fn on_ack(&mut self, cx: &mut Ctx<'_>, from: NodeAddr, session: u64, seq: u64) {
        let Some(o) = self.out.get_mut(&session) else {
            return cx
                .faults
                .add(Fault::UnknownSession, &format_args!("ack of transfer {session}"));
        };
        if o.to != from {
            return cx
                .faults
                .add(Fault::StrangerSession, &format_args!("ack of {session} from {from}"));
        }
        if let OutPhase::Sending { unacked, .. } = &mut o.phase {
            let before = unacked.len();
            unacked.retain(|s, _| *s > seq);
            if unacked.len() < before {
                o.last_progress = cx.now;
            }
        }
        self.pump(cx, session);
    }

    /// The new owner has everything: drop the range.
    pub(crate) fn on_done_ack(&mut self, cx: &mut Ctx<'_>, from: NodeAddr, session: u64) {
        let Some(o) = self.out.get(&session) else {
            return cx
                .faults
                .add(Fault::UnknownSession, &format_args!("done-ack of transfer {session}"));
        };
        if o.to != from {
            return cx
                .faults
                .add(Fault::StrangerSession, &format_args!("done-ack of {session} from {from}"));
        }
        if !matches!(o.phase, OutPhase::Draining { .. }) {
            return cx
                .faults
                .add(Fault::UnknownSession, &format_args!("done-ack of {session} before done"));
        }
        let o = self.out.remove(&session).expect("just looked up");
        cx.store.remove_range(o.range);
        cx.unwatch(o.to);
        let m = Movement::HandedOver { range: o.range, to: o.to, items: o.items, bytes: o.bytes };
        cx.out.push(ReplOutput::Indicate(ReplicationIndication::Movement(m)));
        cx.moves.push(Transition::Released(o.range));
    }

    /// The new owner of `range` asks for an offer.
    pub(crate) fn on_pull(&mut self, cx: &mut Ctx<'_>, from: NodeAddr, range: Range) {
        let mut found = false;
        let mut restart = Vec::new();
        for (id, o) in &self.out {
            if o.to == from && o.range.overlaps(&range) {
                found = true;
                match o.phase {
                    OutPhase::Stalled => restart.push(*id),
                    OutPhase::Offered => {
                        cx.send(from, ReplMessage::Offer { session: *id, range: o.range });
                    }
                    _ => {}
                }
            }
        }
        for id in restart {
            let o = self.out.remove(&id).expect("just listed");
            cx.unwatch(o.to);
            self.send(cx, o.range, o.to);
        }
        if !found {
            cx.faults
                .add(Fault::StaleOffer, &format_args!("pull of {range} from {from}: not held"));
        }
    }

    /// Sends what the window allows: changed records first, then the next batch of the range;
    /// `Done` once all is sent and acknowledged.
    fn pump(&mut self, cx: &mut Ctx<'_>, session: u64) {
        let Some(o) = self.out.get_mut(&session) else { return };
        let OutPhase::Sending { cursor, exhausted, next_seq, unacked, delta } = &mut o.phase else {
            return;
        };
        while unacked.len() < cx.config.window {
            let mut items = Vec::new();
            if !delta.is_empty() {
                while items.len() < cx.config.batch_items {
                    let Some(id) = delta.pop_first() else { break };
                    items.push(wire_item(cx, id.view(), cx.store.get(&id), true));
                }
            } else if !*exhausted {
                let (batch, done) = cx.store.batch(
                    o.range,
                    cursor.as_ref(),
                    cx.config.batch_items,
                    cx.config.batch_bytes,
                );
                *exhausted = done;
                if let Some((last, _)) = batch.last() {
                    *cursor = Some(last.to_id());
                }
                items = batch.iter().map(|(id, r)| wire_item(cx, *id, Some(*r), true)).collect();
            } else {
                break;
            }
            if items.is_empty() {
                continue;
            }
            o.items += items.len() as u64;
            o.bytes += items.iter().map(WireItem::data_bytes).sum::<u64>();
            let seq = *next_seq;
            *next_seq += 1;
            unacked.insert(seq, (items.clone(), cx.now));
            cx.send(o.to, ReplMessage::Items { session, seq, items });
        }
        if *exhausted && delta.is_empty() && unacked.is_empty() {
            let seq = *next_seq;
            cx.send(o.to, ReplMessage::Done { session, seq, items: o.items });
            o.phase = OutPhase::Draining { seq };
            o.resend_at = cx.now + cx.config.retransmit;
            o.last_progress = cx.now;
        }
    }

    /// The ring gave `range` back to this node (the new owner crashed or left). Returns the
    /// parts a transfer held, each with what to do: serve it at once (nothing was handed over
    /// yet, so the data here is the latest) or rebuild it (the new owner may have applied
    /// writes after `Done`).
    pub(crate) fn regain(&mut self, cx: &mut Ctx<'_>, range: Range) -> Vec<(Range, Transition)> {
        self.forgive(range);
        let mut back = Vec::new();
        let ids: Vec<u64> =
            self.out.iter().filter(|(_, o)| o.range.overlaps(&range)).map(|(i, _)| *i).collect();
        for id in ids {
            let o = self.out.remove(&id).expect("just listed");
            cx.unwatch(o.to);
            let mut mine = RangeSet::of(o.range);
            let got = mine.intersection(&RangeSet::of(range));
            mine.subtract(&got);
            let draining = matches!(o.phase, OutPhase::Draining { .. });
            for part in got.ranges() {
                let t = if draining { Transition::Rebuild(part) } else { Transition::Serve(part) };
                back.push((part, t));
            }
            // What the new owner keeps is offered again.
            for rest in mine.ranges() {
                self.send(cx, rest, o.to);
            }
            let m = Movement::TransferAborted { range: o.range, peer: o.to };
            cx.out.push(ReplOutput::Indicate(ReplicationIndication::Movement(m)));
        }
        back
    }

    // ---------------------------------------------------------------- the new owner's side

    /// The ring gave `range` to this node from `from`, which holds its data: wait for its
    /// offer (and ask for it).
    pub(crate) fn receive(&mut self, cx: &mut Ctx<'_>, range: Range, from: NodeAddr) {
        let pull_at = cx.now + cx.config.offer_wait / (PULLS + 1);
        self.inc.push(Incoming {
            want: RangeSet::of(range),
            range,
            from,
            since: cx.now,
            merge: false,
            failed: 0,
            phase: InPhase::Waiting { pulls: 1, next_pull: pull_at },
        });
        cx.watch(from);
        cx.send(from, ReplMessage::Pull { range });
    }

    /// `range` is no longer owned here, but by `to` (if known): stop expecting it for this
    /// node. The parts `unserved` of it (still incoming or being rebuilt here) become debts
    /// to `to` ([`Handover::owe`]): the ring told `to` to expect them from this node, so
    /// whatever data of them reaches this node — the transfer under way, or an offer that
    /// comes after this node gave up waiting — is received anyway and handed on to `to`.
    pub(crate) fn lose(
        &mut self,
        cx: &mut Ctx<'_>,
        range: Range,
        to: Option<NodeAddr>,
        unserved: &RangeSet,
    ) {
        let lost = RangeSet::of(range);
        if let Some(t) = to.filter(|t| *t != cx.me) {
            for part in unserved.intersection(&lost).ranges() {
                self.owe(part, t);
            }
        }
        for i in &mut self.inc {
            i.want.subtract(&lost);
        }
        // A transfer under way goes on while it carries a debt (it is handed on at `Done`).
        let owed = &self.owed;
        let (gone, keep): (Vec<_>, Vec<_>) = self.inc.drain(..).partition(|i| {
            let carries = carries(owed, i);
            i.want.is_empty() && !i.merge && !carries
        });
        self.inc = keep;
        for i in gone {
            cx.unwatch(i.from);
        }
    }

    /// Records that `to` expects the data of `part` from this node.
    fn owe(&mut self, part: Range, to: NodeAddr) {
        if self.owed.len() >= MAX_OWED {
            let (old, _) = self.owed.remove(0);
            tracing::warn!(range = %old, "replication: too many debts; the oldest is forgotten");
        }
        self.owed.push((part, to));
    }

    /// The positions of `offered` a transfer starting now keeps: `want`, and the debts.
    fn kept(&self, want: &RangeSet, offered: Range) -> RangeSet {
        let mut kept = self.owed_in(offered);
        kept.union(&want.intersection(&RangeSet::of(offered)));
        kept
    }

    /// The parts of `range` owed to someone.
    fn owed_in(&self, range: Range) -> RangeSet {
        let mut set = RangeSet::new();
        for (p, _) in &self.owed {
            set.union(&RangeSet::of(*p).intersection(&RangeSet::of(range)));
        }
        set
    }

    /// `range` is owned here again (or its peer is gone): no debt of it is owed any more.
    fn forgive(&mut self, range: Range) {
        let gone = RangeSet::of(range);
        let mut kept = Vec::new();
        for (p, t) in self.owed.drain(..) {
            let mut rest = RangeSet::of(p);
            rest.subtract(&gone);
            kept.extend(rest.ranges().into_iter().map(|r| (r, t)));
        }
        self.owed = kept;
    }

    /// Whether an offer of `range` from `from` belongs to a transfer this node expects
    /// (waiting for it, or receiving it already).
    pub(crate) fn expects(&self, from: NodeAddr, range: Range) -> bool {
        self.inc
            .iter()
            .any(|i| i.from == from && i.want.ranges().iter().any(|w| w.overlaps(&range)))
    }

    /// Accepts the offer `session` of `range` from `from` for the parts `want` this node was
    /// rebuilding (the caller dropped their rebuild): they are received whole instead.
    pub(crate) fn take_offer(
        &mut self,
        cx: &mut Ctx<'_>,
        from: NodeAddr,
        session: u64,
        range: Range,
        want: RangeSet,
    ) {
        let now = cx.now;
        let kept = self.kept(&want, range);
        self.inc.push(Incoming {
            want,
            range,
            from,
            since: now,
            merge: false,
            failed: 0,
            phase: InPhase::Receiving {
                session,
                offered: range,
                kept,
                next_seq: 0,
                items: 0,
                bytes: 0,
                last_progress: now,
            },
        });
        cx.watch(from);
        cx.send(from, ReplMessage::Accept { session });
    }

    /// An offer from the old holder.
    pub(crate) fn on_offer(
        &mut self,
        cx: &mut Ctx<'_>,
        from: NodeAddr,
        session: u64,
        range: Range,
        owned: Option<Range>,
    ) {
        // A repeated offer of a transfer already accepted: accept again (the answer was lost).
        let again = self.inc.iter().any(|i| {
            i.from == from
                && matches!(i.phase, InPhase::Receiving { session: s, .. } if s == session)
        });
        if again {
            return cx.send(from, ReplMessage::Accept { session });
        }
        let now = cx.now;
        if let Some(at) = self.inc.iter().position(|i| {
            i.from == from
                && matches!(i.phase, InPhase::Waiting { .. })
                && i.want.ranges().iter().any(|w| w.overlaps(&range))
        }) {
            let kept = self.kept(&self.inc[at].want, range);
            self.inc[at].phase = InPhase::Receiving {
                session,
                offered: range,
                kept,
                next_seq: 0,
                items: 0,
                bytes: 0,
                last_progress: now,
            };
            return cx.send(from, ReplMessage::Accept { session });
        }
        let served = cx.serving.intersection(&RangeSet::of(range));
        let owed = !self.owed_in(range).is_empty();
        if !served.is_empty() || owed {
            // Handed over what this node serves already (it was falsely suspected meanwhile,
            // or rebuilt the range before the old holder heard it lost it): take the records
            // of what it serves, newest version wins. Or handed over what this node lost
            // before its data came, and owes to a later owner: take it to hand it on. The
            // parts owed are received and handed on in both cases; the rest of the offer
            // (lost to nobody known) the old holder drops at `Done`.
            let kept = self.kept(&served, range);
            self.inc.push(Incoming {
                merge: !served.is_empty(),
                want: served,
                range,
                from,
                since: now,
                failed: 0,
                phase: InPhase::Receiving {
                    session,
                    offered: range,
                    kept,
                    next_seq: 0,
                    items: 0,
                    bytes: 0,
                    last_progress: now,
                },
            });
            cx.watch(from);
            return cx.send(from, ReplMessage::Accept { session });
        }
        cx.faults.add(Fault::StaleOffer, &format_args!("offer of {range} from {from}"));
        if owned.is_some_and(|o| !o.overlaps(&range)) {
            // In a ring, and none of it is ours: stale for good.
            cx.send(from, ReplMessage::Decline { session });
        }
        // Otherwise the offer may have come before the ring told this node it owns the range
        // (a joiner): the holder offers again, and this node pulls once it knows.
    }

    fn receiving(&mut self, cx: &mut Ctx<'_>, from: NodeAddr, session: u64) -> Option<usize> {
        let at = self.inc.iter().position(|i| {
            i.from == from
                && matches!(i.phase, InPhase::Receiving { session: s, .. } if s == session)
        });
        if at.is_none() {
            let stranger = self
                .inc
                .iter()
                .any(|i| matches!(i.phase, InPhase::Receiving { session: s, .. } if s == session));
            if stranger {
                cx.faults.add(
                    Fault::StrangerSession,
                    &format_args!("batch of transfer {session} from {from}"),
                );
            } else {
                cx.faults.add(
                    Fault::UnknownSession,
                    &format_args!("batch of transfer {session} from {from}"),
                );
            }
        }
        at
    }

    /// A batch of the range.
    pub(crate) fn on_items(
        &mut self,
        cx: &mut Ctx<'_>,
        from: NodeAddr,
        session: u64,
        seq: u64,
        items: Vec<WireItem>,
    ) {
        let Some(at) = self.receiving(cx, from, session) else { return };
        let i = &mut self.inc[at];
        let InPhase::Receiving {
            offered,
            kept,
            next_seq,
            items: count,
            bytes: got_bytes,
            last_progress,
            ..
        } = &mut i.phase
        else {
            return;
        };
        if seq < *next_seq {
            return cx.send(from, ReplMessage::ItemsAck { session, seq: *next_seq - 1 });
        }
        if seq > *next_seq {
            return cx.faults.add(
                Fault::SequenceGap,
                &format_args!("batch {seq} of {session}, expected {next_seq}"),
            );
        }
        for w in &items {
            let pos = cx.placement.position(&w.key, w.replica);
            if !offered.contains(pos) {
                cx.faults
                    .add(Fault::OutsideRange, &format_args!("item at {pos} outside {offered}"));
                continue;
            }
            if !kept.contains(pos) {
                continue; // a part this node lost, to nobody known
            }
            let id = ItemId::new(pos, &w.key);
            if i.merge && i.want.contains(pos) {
                if let crate::store::Merge::Diverged(_) =
                    cx.store.merge_newer(id, w.version, w.value.as_deref())
                {
                    cx.faults.add(
                        Fault::Divergent,
                        &format_args!("{pos} holds {} with two values", w.version),
                    );
                }
            } else if let Err(held) = cx.store.merge_handover(id, record_of(cx, w)) {
                cx.faults.add(
                    Fault::VersionBackwards,
                    &format_args!("transfer {session} sent {} of {pos}, {held} held", w.version),
                );
            }
        }
        *next_seq += 1;
        *count += items.len() as u64;
        *got_bytes += items.iter().map(WireItem::data_bytes).sum::<u64>();
        *last_progress = cx.now;
        cx.send(from, ReplMessage::ItemsAck { session, seq });
    }

    /// The old holder sent everything.
    pub(crate) fn on_done(&mut self, cx: &mut Ctx<'_>, from: NodeAddr, session: u64, seq: u64) {
        if self.recent.contains(&(from, session)) {
            return cx.send(from, ReplMessage::DoneAck { session });
        }
        let Some(at) = self.receiving(cx, from, session) else { return };
        let InPhase::Receiving { next_seq, items, bytes, ref kept, .. } = self.inc[at].phase else {
            return;
        };
        let kept = kept.clone();
        if seq != next_seq {
            return cx.faults.add(
                Fault::SequenceGap,
                &format_args!("done {seq} of {session}, expected {next_seq}"),
            );
        }
        let i = self.inc.remove(at);
        cx.unwatch(i.from);
        if !i.merge && !i.want.is_empty() {
            for part in i.want.ranges() {
                cx.moves.push(Transition::Serve(part));
            }
            let m = Movement::Received { range: i.range, from, items, bytes };
            cx.out.push(ReplOutput::Indicate(ReplicationIndication::Movement(m)));
        }
        // The debts this transfer kept are paid: hand them on.
        let paid: Vec<(Range, NodeAddr)> = self
            .owed
            .iter()
            .flat_map(|(p, t)| {
                RangeSet::of(*p).intersection(&kept).ranges().into_iter().map(|r| (r, *t))
            })
            .collect();
        for (part, _) in &paid {
            self.forgive(*part);
        }
        for (part, to) in paid {
            tracing::debug!(range = %part, %to, "replication: handing on a range received for its new owner");
            self.send(cx, part, to);
        }
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((from, session));
        cx.send(from, ReplMessage::DoneAck { session });
    }

    // ---------------------------------------------------------------- both sides

    /// `node` is suspected: transfers from it are rebuilt from the replicas instead; transfers
    /// to it stall (the ring will give the range back).
    pub(crate) fn on_suspect(&mut self, cx: &mut Ctx<'_>, node: NodeAddr) {
        let (gone, keep): (Vec<_>, Vec<_>) =
            self.inc.drain(..).partition(|i| i.from.addr == node.addr);
        self.inc = keep;
        for i in gone {
            cx.unwatch(i.from);
            if !i.merge {
                for part in i.want.ranges() {
                    cx.moves.push(Transition::Rebuild(part));
                }
            }
        }
        // The ring gives a suspected owner's range to another peer, which rebuilds it.
        self.owed.retain(|(_, t)| t.addr != node.addr);
        for o in self.out.values_mut() {
            if o.to.addr == node.addr && !matches!(o.phase, OutPhase::Draining { .. }) {
                o.phase = OutPhase::Stalled;
                o.last_progress = cx.now;
            }
        }
    }

    /// Time passed: retransmit, pull, give up.
    pub(crate) fn on_tick(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now;
        let mut finished = Vec::new();
        let mut restart = Vec::new();
        for (id, o) in self.out.iter_mut() {
            let stuck = now >= o.last_progress + cx.config.transfer_timeout;
            match &mut o.phase {
                OutPhase::Offered => {
                    if stuck {
                        cx.faults.add(
                            Fault::TransferTimeout,
                            &format_args!("offer of {} to {} unanswered", o.range, o.to),
                        );
                        o.phase = OutPhase::Stalled;
                        o.last_progress = now;
                        let m = Movement::TransferAborted { range: o.range, peer: o.to };
                        cx.out.push(ReplOutput::Indicate(ReplicationIndication::Movement(m)));
                    } else if now >= o.resend_at {
                        o.resend_at = now + cx.config.retransmit;
                        cx.out.push(ReplOutput::Send {
                            to: o.to,
                            msg: ReplMessage::Offer { session: *id, range: o.range },
                        });
                    }
                }
                OutPhase::Sending { unacked, .. } => {
                    if stuck {
                        cx.faults.add(
                            Fault::TransferTimeout,
                            &format_args!("transfer of {} to {} stuck", o.range, o.to),
                        );
                        o.phase = OutPhase::Stalled;
                        o.last_progress = now;
                        let m = Movement::TransferAborted { range: o.range, peer: o.to };
                        cx.out.push(ReplOutput::Indicate(ReplicationIndication::Movement(m)));
                        continue;
                    }
                    for (seq, (items, sent)) in unacked.iter_mut() {
                        if now >= *sent + cx.config.retransmit {
                            *sent = now;
                            let msg = ReplMessage::Items {
                                session: *id,
                                seq: *seq,
                                items: items.clone(),
                            };
                            cx.out.push(ReplOutput::Send { to: o.to, msg });
                        }
                    }
                }
                OutPhase::Draining { seq } => {
                    if stuck {
                        // The new owner took the range (or crashed, and the ring will say so).
                        cx.faults.add(
                            Fault::TransferTimeout,
                            &format_args!("done of {} to {} unacknowledged", o.range, o.to),
                        );
                        finished.push(*id);
                    } else if now >= o.resend_at {
                        o.resend_at = now + cx.config.retransmit;
                        let msg = ReplMessage::Done { session: *id, seq: *seq, items: o.items };
                        cx.out.push(ReplOutput::Send { to: o.to, msg });
                    }
                }
                OutPhase::Stalled => {
                    if stuck {
                        restart.push(*id);
                    }
                }
            }
        }
        for id in restart {
            let o = self.out.remove(&id).expect("just listed");
            cx.unwatch(o.to);
            self.send(cx, o.range, o.to);
        }
        for id in finished {
            let o = self.out.remove(&id).expect("just listed");
            cx.store.remove_range(o.range);
            cx.unwatch(o.to);
            let m = Movement::TransferAborted { range: o.range, peer: o.to };
            cx.out.push(ReplOutput::Indicate(ReplicationIndication::Movement(m)));
            cx.moves.push(Transition::Released(o.range));
        }
        for i in self.inc.iter_mut() {
            match &mut i.phase {
                InPhase::Waiting { pulls, next_pull } => {
                    if now < i.since + cx.config.offer_wait && now >= *next_pull && *pulls < PULLS {
                        *pulls += 1;
                        *next_pull = now + cx.config.offer_wait / (PULLS + 1);
                        for r in i.want.ranges() {
                            cx.out.push(ReplOutput::Send {
                                to: i.from,
                                msg: ReplMessage::Pull { range: r },
                            });
                        }
                    }
                }
                InPhase::Receiving { last_progress, .. } => {
                    if now >= *last_progress + cx.config.transfer_timeout {
                        cx.faults.add(
                            Fault::TransferTimeout,
                            &format_args!("receiving {} from {} stuck", i.range, i.from),
                        );
                        let m = Movement::TransferAborted { range: i.range, peer: i.from };
                        cx.out.push(ReplOutput::Indicate(ReplicationIndication::Movement(m)));
                        if i.merge {
                            i.want = RangeSet::new(); // nothing to wait for
                        }
                        i.failed += 1;
                        // After too many failed transfers, rebuild at once (below); else wait
                        // for a new offer, pulling.
                        i.since = now;
                        i.phase = InPhase::Waiting { pulls: 0, next_pull: now };
                    }
                }
            }
        }
        let owed = &self.owed;
        self.inc.retain(|i| !(i.merge && i.want.is_empty()) || carries(owed, i));
        // Waited long enough for an offer: rebuild from the replicas.
        let (gone, keep): (Vec<_>, Vec<_>) = self.inc.drain(..).partition(|i| {
            matches!(i.phase, InPhase::Waiting { .. })
                && (i.failed >= TRIES || now >= i.since + cx.config.offer_wait)
        });
        self.inc = keep;
        for i in gone {
            cx.unwatch(i.from);
            for part in i.want.ranges() {
                cx.moves.push(Transition::Rebuild(part));
            }
        }
    }
}
