//! Joining: bootstrap, the three join steps between two peers, `try_later` and retries.
//!
//! Invariants:
//! * the successor-to-be `r` accepts joiner `q` only when it owns `q`'s identifier (so
//!   `q ∈ (pred, r)`), has a working successor, is not repairing one, and its predecessor
//!   has checked in (is not a joiner `r` let in whose `join_ok` may have been lost — for at
//!   most two join timeouts, for a predecessor cut off from `r` never checks in); it sets
//!   `pred := q` **before** it answers `join_ok`, so `(p, q]` has one owner at every instant —
//!   `r` until then, nobody while `join_ok` travels, `q` after;
//! * `p`, the joiner's predecessor, is `r`'s — or, if `r`'s range grew over peers it suspects,
//!   the nearest of them before `q`: a falsely suspected peer still owns its range, and `r`
//!   hands no part of it on (if the suspicion was right, the part before that peer is
//!   unavailable until the repair reaches the joiner: its predecessor's `fix` is redirected
//!   there);
//! * the joiner owns nothing until `join_ok`; it accepts one only while joining, from a peer
//!   after it whose predecessor is before it, and then checks in with that peer at once
//!   (`fix`), so that the gap is open to the next joiner one round trip later;
//! * `r` answers a repeated join of its current predecessor with the same `join_ok` (the first
//!   answer may have been lost), from its record of how that predecessor joined — kept until
//!   the predecessor checks in, and nobody else is let into that gap meanwhile, so the record
//!   is never needed elsewhere; it sends that `join_ok` again, every two ticks, a few times
//!   ([`JOIN_OK_RESENDS`](super::JOIN_OK_RESENDS)) while the joiner has not checked in, and a
//!   joiner in the ring already answers a duplicate by checking in again. Without a record it
//!   answers `try_later` (naming a predecessor
//!   it is not sure of could hand the joiner a range another peer owns); a join of a suspected
//!   peer is answered `try_later` too;
//! * a predecessor-list member that has not checked in (a joiner; a predecessor named by a
//!   `join_ok`, which may be a joiner too) is never the target of a redirect;
//! * a `Join` request while joining points the joiner at the new access peer (tried at once
//!   and first from then on), the attempt counter going on, so answers to earlier attempts
//!   are still accepted (each is a whole answer of a peer that owned the joiner's identifier);
//! * a joiner retries until it is answered `join_ok` or `id_in_use`; an attempt that nobody
//!   answered is followed by one through the next access peer it knows — the user's, then
//!   ring peers that answered an earlier attempt (its access peer may have crashed); after
//!   [`JOIN_GIVE_UP`](super::JOIN_GIVE_UP) unanswered attempts in a row it gives up: outside
//!   again, and told so (`JoinRefused(NoAnswer)`), free to join through another peer;
//! * `p` takes `q` as successor only if `q` lies between `p` and its current successor; it
//!   then sends the join ack (`PredNoMore`) to the old successor and its new successor list
//!   backwards;
//! * `r` accepts a join ack only from a predecessor-list member that is not its predecessor.

use selfman_core::{NodeAddr, Time};
use selfman_ports::RingStatus;
use selfman_ports::{
    has_flaw, JoinRefusal, Peer, Range, RangeChange, ResponsibilityChange, RingIndication,
};

#[cfg(feature = "flaws")]
use super::Flaw;
use super::{Fault, Fixing, JoinRecord, Joining, RelaxedRingMachine, RingOutput};
use crate::messages::{Body, Routable, Routed};

impl RelaxedRingMachine {
    /// Starts a new ring alone: this peer owns the whole circle.
    pub(super) fn bootstrap<M>(&mut self, out: &mut Vec<RingOutput<M>>) {
        if self.s.status != RingStatus::Outside {
            tracing::warn!(me = %self.s.me, status = ?self.s.status, "relaxed ring: bootstrap ignored");
            return;
        }
        let me = self.s.me;
        self.s.status = RingStatus::InRing;
        self.s.succ = Some(me);
        self.s.pred = Some(me);
        self.s.succ_list.clear();
        self.s.pred_list.clear();
        self.s.joining = None;
        let range = Range::full(me.id);
        self.indicate(RingIndication::Joined { me, range, pred: me, succ: me }, out);
        let change = RangeChange::Gained { range, from: None };
        let rc = ResponsibilityChange { now: Some(range), change };
        self.indicate(RingIndication::Responsibility(rc), out);
    }

    /// Starts joining the ring `access` belongs to. While joining already, `access` replaces
    /// the access peer of the attempts to come (it is tried at once and first from then on;
    /// the peers known before stay as further ways in): a user whose access peer crashed can
    /// point the joiner elsewhere without waiting for it to give up.
    pub(super) fn join<M>(&mut self, access: NodeAddr, now: Time, out: &mut Vec<RingOutput<M>>) {
        if access.addr == self.s.me.addr.addr {
            tracing::warn!(me = %self.s.me, "relaxed ring: cannot join through itself");
            return;
        }
        if self.s.status == RingStatus::Joining {
            if let Some(j) = self.s.joining.as_mut() {
                j.accesses.retain(|a| *a != access);
                j.accesses.insert(0, access);
                j.accesses.truncate(super::JOIN_ACCESS);
                j.access = access;
                j.attempt = j.attempt.wrapping_add(1);
                j.retry_at = now + self.config.join_timeout;
                j.answered = false;
                j.unanswered = 0;
                tracing::debug!(me = %self.s.me, %access, "relaxed ring: join pointed elsewhere");
                self.send_join(out);
            }
            return;
        }
        if self.s.status != RingStatus::Outside {
            tracing::warn!(me = %self.s.me, status = ?self.s.status, "relaxed ring: join ignored");
            return;
        }
        self.s.status = RingStatus::Joining;
        self.s.joining = Some(Joining {
            access,
            attempt: 1,
            retry_at: now + self.config.join_timeout,
            answered: false,
            unanswered: 0,
            accesses: vec![access],
        });
        self.send_join(out);
    }

    fn send_join<M>(&self, out: &mut Vec<RingOutput<M>>) {
        let Some(j) = &self.s.joining else { return };
        let me = self.s.me;
        let what = Routable::Join { attempt: j.attempt };
        let r = Routed { key: me.id, origin: me, hops: 0, last: false, what };
        self.send(j.access, Body::Route(r), out);
    }

    /// Sends the `join_ok` again to a joiner that has not checked in (it may have been lost;
    /// the gap is closed to other joiners until it checks in), every two ticks, a few times.
    pub(super) fn join_ok_tick<M>(&mut self, now: Time, out: &mut Vec<RingOutput<M>>) {
        let Some(rec) = self.s.join_record else { return };
        let unconfirmed = self.s.pred_list.iter().any(|e| e.peer == rec.joiner && !e.confirmed);
        if !self.in_ring() || self.s.pred != Some(rec.joiner) || !unconfirmed {
            return;
        }
        if now < rec.resend_at || rec.resends == 0 {
            return;
        }
        if let Some(r) = self.s.join_record.as_mut() {
            r.resends -= 1;
            r.resend_at = now + self.config.tick * 2;
        }
        let succ_list = self.s.succ_list.clone();
        let body = Body::JoinOk { attempt: rec.attempt, pred: rec.pred, succ_list };
        self.send(rec.joiner.addr, body, out);
    }

    /// Re-sends the join when its answer is overdue (or the `try_later` wait is over). An
    /// attempt nobody answered is followed by one through the next access peer known (the
    /// access peer may have crashed; peers that answered before are ring members too); after
    /// [`JOIN_GIVE_UP`](super::JOIN_GIVE_UP) unanswered ones in a row the join is given up.
    pub(super) fn join_tick<M>(&mut self, now: Time, out: &mut Vec<RingOutput<M>>) {
        let timeout = self.config.join_timeout;
        if self.s.status != RingStatus::Joining {
            return;
        }
        let Some(j) = self.s.joining.as_mut() else { return };
        if now < j.retry_at {
            return;
        }
        j.unanswered = if j.answered { 0 } else { j.unanswered.saturating_add(1) };
        if j.unanswered >= super::JOIN_GIVE_UP {
            let attempts = j.unanswered;
            tracing::debug!(me = %self.s.me, attempts, "relaxed ring: join given up, no answer");
            self.s.status = RingStatus::Outside;
            self.s.joining = None;
            let refusal = JoinRefusal::NoAnswer { attempts };
            return self.indicate(RingIndication::JoinRefused(refusal), out);
        }
        if !j.answered && j.accesses.len() > 1 {
            let i = j.accesses.iter().position(|a| *a == j.access).unwrap_or(0);
            j.access = j.accesses[(i + 1) % j.accesses.len()];
        }
        j.answered = false;
        j.attempt = j.attempt.wrapping_add(1);
        j.retry_at = now + timeout;
        tracing::trace!(me = %self.s.me.id, attempt = j.attempt, "join sent again");
        self.send_join(out);
    }

    /// The predecessor to give a joiner `q` let in over `(pred, q]`: `pred`, or, if this
    /// peer's range grew over peers it suspects, the nearest of them before `q` — a false
    /// suspicion lets a suspected peer still own its range, and no part of it is handed on.
    pub(super) fn joiner_pred(&self, pred: Peer, q: Peer) -> Peer {
        self.s
            .crashed
            .iter()
            .filter(|(_, s)| !s.departed)
            .filter_map(|(a, s)| s.id.map(|id| Peer::new(id, *a)))
            .filter(|x| x.id.in_open(pred.id, q.id))
            .min_by_key(|x| q.id.distance_from(x.id))
            .unwrap_or(pred)
    }

    /// Step 1 at `r`: a join of `q` reached this peer, which owns `q`'s identifier.
    pub(super) fn on_join_request<M>(
        &mut self,
        q: Peer,
        attempt: u32,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        let me = self.s.me;
        if q.id == me.id {
            self.send(q.addr, Body::IdInUse { attempt, holder: me }, out);
            return;
        }
        let Some(pred) = self.s.pred else {
            self.send(q.addr, Body::TryLater { attempt }, out);
            return;
        };
        if q.id == pred.id && q.addr != pred.addr {
            self.send(q.addr, Body::IdInUse { attempt, holder: pred }, out);
            return;
        }
        if q == pred {
            tracing::trace!(me = %me.id, joiner = %q.id, attempt, "repeated join");
            // A repeated join: answer as the first time (that answer may have been lost), from
            // the record of how it joined. Without one, the predecessor `q` was given is
            // unknown here, and guessing could hand it a range another peer owns: try later.
            match self.s.join_record.filter(|r| r.joiner == q) {
                Some(r) => {
                    if let Some(rec) = self.s.join_record.as_mut() {
                        rec.attempt = attempt;
                    }
                    let succ_list = self.s.succ_list.clone();
                    self.send(q.addr, Body::JoinOk { attempt, pred: r.pred, succ_list }, out);
                }
                None => self.send(q.addr, Body::TryLater { attempt }, out),
            }
            return;
        }
        let repairing = self.s.fixing.as_ref().is_some_and(|f| f.repair);
        // The predecessor is a joiner that has not checked in: its `join_ok` may have been
        // lost, and only this peer can answer it again. A joiner let in now would take it as
        // predecessor without that record, and the first could never get in.
        // (Only for a joiner this peer let in, for a while: a predecessor that cannot reach
        // this peer — a branch — never checks in, and the gap must not stay closed for good.)
        let pred_joining = self.s.join_record.is_some_and(|r| {
            r.joiner == pred && now < r.accepted_at + self.config.join_timeout * 2
        }) && self.s.pred_list.iter().any(|e| e.peer == pred && !e.confirmed);
        if self.is_crashed(q.addr) || self.s.succ.is_none() || repairing || pred_joining {
            tracing::trace!(me = %me.id, joiner = %q.id, repairing, pred_joining, "join: try later");
            self.send(q.addr, Body::TryLater { attempt }, out);
            return;
        }
        let old = self.joiner_pred(pred, q);
        if has_flaw!(self, EagerJoin) {
            // Broken on purpose: keep (old, me] until the join ack arrives.
            self.s.deferred_join = Some(q);
            self.add_pred_entry(q, now);
        } else {
            self.set_pred(q, now, out);
        }
        self.unconfirm(q.addr);
        let resend_at = now + self.config.tick * 2;
        let resends = super::JOIN_OK_RESENDS;
        self.s.join_record = Some(JoinRecord {
            joiner: q,
            pred: old,
            attempt,
            accepted_at: now,
            resend_at,
            resends,
        });
        tracing::trace!(me = %me.id, joiner = %q.id, old = %old.id, attempt, "join accepted");
        let succ_list = self.s.succ_list.clone();
        self.send(q.addr, Body::JoinOk { attempt, pred: old, succ_list }, out);
    }

    /// Step 1 at the joiner `q`: `r` let it in between `pred` and `r`.
    // The fields of one `JoinOk` message, unpacked by the dispatcher like every other handler's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_join_ok<M>(
        &mut self,
        r: Peer,
        attempt: u32,
        pred: Peer,
        succ_list: Vec<Peer>,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        match (&self.s.status, &self.s.joining) {
            (RingStatus::Joining, Some(j)) if attempt <= j.attempt => {}
            (RingStatus::InRing, _) if self.s.succ == Some(r) => {
                // A duplicate: the successor has not heard this peer check in. Again.
                return self.send(r.addr, Body::Fix, out);
            }
            _ => return self.fault(Fault::UnexpectedJoinReply, "join_ok while not joining"),
        }
        if !self.valid_peer(&pred) {
            return;
        }
        let Some(list) = self.valid_list(succ_list) else { return };
        let me = self.s.me;
        if self.is_me(&pred) || self.is_me(&r) || !me.id.in_open(pred.id, r.id) {
            return self.fault(Fault::BadJoinOk, "join_ok with a predecessor not before me");
        }
        tracing::trace!(me = %me.id, pred = %pred.id, succ = %r.id, attempt, "joined");
        self.s.status = RingStatus::InRing;
        self.s.joining = None;
        self.s.succ = Some(r);
        self.s.succ_list = self.build_succ_list(r, &list);
        self.s.pred = Some(pred);
        self.s.join_record = None;
        self.s.pred_list.clear();
        self.add_pred_entry(pred, now);
        // It may be a joiner itself (concurrent joins): not one to redirect to until it
        // checks in.
        self.unconfirm(pred.addr);
        self.s.new_succ_resends = super::NEW_SUCC_RESENDS;
        self.s.next_stabilize = now + self.config.stabilize;
        self.s.next_finger = now + self.config.finger_refresh;
        for p in [r, pred].into_iter().chain(list) {
            self.learn(p);
        }
        let range = Range::new(pred.id, me.id);
        self.indicate(RingIndication::Joined { me, range, pred, succ: r }, out);
        let change = RangeChange::Gained { range, from: Some(r) };
        let rc = ResponsibilityChange { now: Some(range), change };
        self.indicate(RingIndication::Responsibility(rc), out);
        // Step 2: tell the predecessor.
        let succ_list = self.s.succ_list.clone();
        self.send(pred.addr, Body::NewSucc { succ_list }, out);
        // And check in with the successor at once: until then it lets nobody else into this
        // gap (this peer's `join_ok` might have been lost, as far as it knows).
        let f = Fixing { target: r, sent: now, replaced: None, redirects: 0, repair: false };
        self.s.fixing = Some(f);
        self.send(r.addr, Body::Fix, out);
    }

    /// The joiner is told to wait (by a ring peer, which it remembers as another way in).
    pub(super) fn on_try_later(&mut self, from: Peer, attempt: u32, now: Time) {
        let wait = self.config.try_later;
        let me = self.s.me.addr;
        match self.s.joining.as_mut() {
            Some(j) if self.s.status == RingStatus::Joining && attempt <= j.attempt => {
                j.retry_at = now + wait;
                j.answered = true;
                if from.addr != me
                    && !j.accesses.contains(&from.addr)
                    && j.accesses.len() < super::JOIN_ACCESS
                {
                    j.accesses.push(from.addr);
                }
            }
            _ => self.fault(Fault::UnexpectedJoinReply, "try_later while not joining"),
        }
    }

    /// The joiner's identifier is taken.
    pub(super) fn on_id_in_use<M>(
        &mut self,
        _from: Peer,
        attempt: u32,
        holder: Peer,
        out: &mut Vec<RingOutput<M>>,
    ) {
        let me = self.s.me;
        let asked = self.s.status == RingStatus::Joining
            && self.s.joining.as_ref().is_some_and(|j| attempt <= j.attempt);
        if !asked || holder.id != me.id || holder.addr == me.addr {
            return self.fault(Fault::UnexpectedJoinReply, "id_in_use that does not hold");
        }
        self.s.status = RingStatus::Outside;
        self.s.joining = None;
        self.indicate(RingIndication::JoinRefused(JoinRefusal::IdInUse), out);
    }

    /// Step 2 at `p`: `q` says it is `p`'s successor now.
    pub(super) fn on_new_succ<M>(
        &mut self,
        q: Peer,
        succ_list: Vec<Peer>,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if !self.in_ring() {
            return self.fault(Fault::NotInRing, "new_succ while not in a ring");
        }
        let Some(list) = self.valid_list(succ_list) else { return };
        if self.is_crashed(q.addr) {
            return; // until the failure detector restores it
        }
        let me = self.s.me;
        match self.s.succ {
            Some(s) if s == q => {
                self.s.succ_list = self.build_succ_list(q, &list);
            }
            Some(s) if !self.live(&s) || q.id.in_open(me.id, s.id) => {
                self.adopt_succ(q, &list, Some(s), now, out)
            }
            None => self.adopt_succ(q, &list, None, now, out),
            Some(_) => self.fault(Fault::StaleNewSucc, "new_succ from a peer farther than succ"),
        }
    }

    /// Takes the closer `q` as successor (step 2 of its join): the join ack to the old one,
    /// the new list backwards.
    fn adopt_succ<M>(
        &mut self,
        q: Peer,
        list: &[Peer],
        old: Option<Peer>,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        tracing::trace!(me = %self.s.me.id, succ = %q.id, "new successor (new_succ)");
        self.s.succ = Some(q);
        self.s.succ_list = self.build_succ_list(q, list);
        if self.s.fixing.as_ref().is_some_and(|f| Some(f.target) == old) {
            self.s.fixing = None;
        }
        self.learn(q);
        for p in list {
            self.learn(*p);
        }
        // Step 3: the join ack.
        if let Some(o) = old.filter(|o| self.live(o) && *o != q) {
            self.send(o.addr, Body::PredNoMore, out);
        }
        self.send_succ_list_back(self.config.succ_list_size, out);
        // Check in with the new successor at once: it lets no other joiner into its gap until
        // its predecessor has checked in.
        if self.s.fixing.is_none() {
            let f = Fixing { target: q, sent: now, replaced: None, redirects: 0, repair: false };
            self.s.fixing = Some(f);
            self.send(q.addr, Body::Fix, out);
        }
    }

    /// Step 3 at `r`: `p` no longer has this peer as successor.
    pub(super) fn on_pred_no_more<M>(&mut self, p: Peer, now: Time, out: &mut Vec<RingOutput<M>>) {
        if has_flaw!(self, EagerJoin) && self.s.pred == Some(p) {
            if let Some(q) = self.s.deferred_join.take() {
                self.set_pred(q, now, out);
                self.remove_pred_entry(p.addr);
                return;
            }
        }
        if self.s.pred != Some(p) && self.remove_pred_entry(p.addr) {
            return;
        }
        if self.s.pred == Some(p) {
            // The current predecessor took a joiner as its successor: a live peer now sits
            // between `p` and this peer. If this peer took `p` over a suspected peer there (a
            // joiner cut off from it, say), that peer is the joiner: give its range back rather
            // than own it over a live peer until the suspicion ends (`ring-branches` seed 1907).
            let x = self.joiner_pred(p, self.s.me);
            if x != p {
                self.set_pred(x, now, out);
                return;
            }
        }
        self.fault(Fault::StrangerJoinAck, "join ack from a peer that is not a former pred");
    }
}
