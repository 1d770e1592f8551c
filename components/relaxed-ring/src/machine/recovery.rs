//! Failure recovery: successor and predecessor lists, suspicion and restore, `fix`, and the
//! periodic check-in with the successor.
//!
//! Invariants:
//! * the successor changes only to a **closer** peer (a joiner's `new_succ`, a redirect, a
//!   restored peer) or, when it is suspected, to the **first live entry of the successor
//!   list**, which is then sent `fix`;
//! * a `fix` from `p` is accepted — `p` becomes the predecessor — iff `p` is the predecessor,
//!   lies between the predecessor and this peer (the range shrinks), or no live peer this
//!   peer knows (predecessor, predecessor list, successor list) lies between `p` and it (the
//!   predecessor is suspected: the range grows over it). Otherwise `p` stays in the
//!   predecessor list, behind the live peer nearest after it (a branch), and is redirected to
//!   that peer;
//! * a suspected predecessor stays the predecessor (its predecessor repairs, by `fix`), and
//!   stays in the crashed set as long as it is the predecessor;
//! * a restored peer leaves the crashed set; if it lies between this peer and its successor
//!   it is sent `fix` (and becomes the successor), if it lies between the predecessor and
//!   this peer the range shrinks back to it at once and the old predecessor is redirected to
//!   it — so a falsely suspected peer comes back without any range owned twice for longer
//!   than the suspicion lasted;
//! * successor lists travel backwards (`UpdSuccList`) only while they change, at most
//!   `succ_list_size` hops;
//! * lost messages are repaired by the periodic check-in: every peer sends `fix` to its
//!   successor each period (answered with the successor's list, or a redirect to a closer
//!   one) and, to a predecessor silent for two periods, its successor list; a joiner
//!   re-sends `new_succ` to a
//!   predecessor that has not checked in yet (at most
//!   [`NEW_SUCC_RESENDS`](super::NEW_SUCC_RESENDS) times); a leaving peer stops checking in;
//! * a predecessor that had checked in and answers "not in a ring" has left (its hand-over
//!   was lost): it is taken as departed, and its predecessor's `fix` accepted;
//! * a peer alone (a ring of one because every peer it knew was suspected) that has heard of
//!   a live peer since sends it `fix` at its next check-in, and is walked to its place;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{has_flaw, Peer, RingStatus};

#[cfg(feature = "flaws")]
use super::Flaw;
use super::{
    Fault, Fixing, JoinRecord, RelaxedRingMachine, RingOutput, Suspected, JOIN_OK_RESENDS,
    MAX_CRASHED, MAX_REDIRECTS, PRED_LIST_EXPIRY,
};
use crate::messages::Body;

/// What to tell a peer whose `fix` is not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Redirect {
    /// Try this peer, nearer to you.
    To(Peer),
    /// Nobody known lies between: not a refusal (the `fix` is accepted).
    Nobody,
    /// Only joiners that have not checked in lie between: ask again later.
    Wait,
}

impl RelaxedRingMachine {
    /// A successor list for this peer: `head` followed by the live peers of `tail` that lie
    /// after `head` (and before this peer), nearest first, without duplicates, cut to size.
    pub(super) fn build_succ_list(&self, head: Peer, tail: &[Peer]) -> Vec<Peer> {
        let me = self.s.me;
        if self.is_me(&head) {
            return Vec::new();
        }
        let dh = head.id.distance_from(me.id);
        let mut v: Vec<Peer> = tail
            .iter()
            .copied()
            .filter(|p| {
                !self.is_me(p)
                    && p.id != me.id
                    && !self.is_crashed(p.addr)
                    && p.id.distance_from(me.id) > dh
            })
            .collect();
        v.sort_by_key(|p| p.id.distance_from(me.id));
        v.dedup_by_key(|p| p.id);
        v.insert(0, head);
        v.truncate(self.config.succ_list_size);
        v
    }

    /// Sends this peer's successor list to its predecessor, allowing `ttl` more hops back.
    pub(super) fn send_succ_list_back<M>(&self, ttl: usize, out: &mut Vec<RingOutput<M>>) {
        if let Some(p) = self.s.pred.filter(|p| self.live(p)) {
            let ttl = u8::try_from(ttl).unwrap_or(u8::MAX);
            let succ_list = self.s.succ_list.clone();
            self.send(p.addr, Body::UpdSuccList { succ_list, ttl }, out);
        }
    }

    /// The peer on `node`, if this peer knows its identifier.
    fn known_id(&self, node: NodeAddr) -> Option<Peer> {
        let lists = self.s.succ.iter().chain(self.s.pred.iter()).chain(self.s.succ_list.iter());
        let preds = self.s.pred_list.iter().map(|e| &e.peer);
        let fix = self.s.fixing.iter().map(|f| &f.target);
        lists.chain(preds).chain(fix).chain(self.fingers.peers()).find(|p| p.addr == node).copied()
    }

    /// Records `node` as suspected (or departed) and takes it out of every list but the
    /// predecessor's place.
    pub(super) fn mark_crashed(&mut self, node: NodeAddr, now: Time, departed: bool) {
        let id = self.known_id(node).map(|p| p.id);
        let confirmed = self.s.pred_list.iter().all(|e| e.peer.addr != node || e.confirmed);
        let fresh = Suspected { id, since: now, departed, confirmed };
        let e = self.s.crashed.entry(node).or_insert(fresh);
        e.departed |= departed;
        if let Some(id) = id.filter(|_| !departed) {
            // Probed once the failure detector stops watching it (see `merge.rs`).
            let first = now + self.config.probe_every;
            self.passive_add(Peer::new(id, node), now, first);
        }
        if self.s.crashed.len() > MAX_CRASHED {
            let pred = self.s.pred.map(|p| p.addr);
            let oldest = self
                .s
                .crashed
                .iter()
                .filter(|(a, _)| Some(**a) != pred && **a != node)
                .min_by_key(|(_, s)| s.since)
                .map(|(a, _)| *a);
            if let Some(a) = oldest {
                self.s.crashed.remove(&a);
            }
        }
        self.s.succ_list.retain(|p| p.addr != node);
        if self.s.pred.map(|p| p.addr) != Some(node) {
            self.remove_pred_entry(node);
        }
        self.fingers.remove(node);
    }

    /// The failure detector suspects `node`.
    pub(super) fn suspect<M>(&mut self, node: NodeAddr, now: Time, out: &mut Vec<RingOutput<M>>) {
        if node == self.s.me.addr || self.is_crashed(node) {
            return;
        }
        // The successor, or a peer right after it (a run of crashes): tell the peers whose
        // fingers may point at it (`finger_notices.rs`), once the successor is replaced.
        let near = self
            .s
            .succ
            .iter()
            .chain(self.s.fixing.iter().map(|f| &f.target))
            .chain(self.s.succ_list.iter())
            .find(|p| p.addr == node)
            .copied();
        self.mark_crashed(node, now, false);
        tracing::trace!(me = %self.s.me.id, %node, "suspected");
        if !matches!(self.s.status, RingStatus::InRing | RingStatus::Leaving) {
            return;
        }
        let succ_gone = self.s.succ.is_some_and(|s| s.addr == node);
        let fix_gone = self.s.fixing.as_ref().is_some_and(|f| f.target.addr == node);
        if fix_gone {
            self.s.fixing = None;
        }
        if succ_gone {
            if has_flaw!(self, RecoverySkipsSuccList) {
                // Broken on purpose: no fallback on the successor list.
                self.s.succ = None;
                return;
            }
            self.replace_succ(now, out);
            if self.s.status == RingStatus::Leaving {
                self.send_leaving(out);
            }
        }
        if let Some(g) = near {
            self.announce_gone(g, now, out);
        }
    }

    /// The successor is gone: take the first live entry of the successor list and send it
    /// `fix`. With none left (every successor-list member suspected: a partition, or more
    /// consecutive crashes than the list is long) take the nearest live peer known otherwise
    /// (a finger, a predecessor-list member) and send it `fix`: its redirects walk the
    /// successor back, strictly closer each time, to the first live peer after this one.
    /// A peer that knows no live peer at all, and whose predecessor is gone too, is alone: it
    /// owns the whole circle; otherwise it waits (without successor) for the next check-in.
    pub(super) fn replace_succ<M>(&mut self, now: Time, out: &mut Vec<RingOutput<M>>) {
        let listed = self.s.succ_list.iter().find(|p| self.live(p)).copied();
        let next = listed.or_else(|| self.nearest_known_live());
        tracing::trace!(
            me = %self.s.me.id,
            next = ?next.map(|p| p.id),
            from_list = listed.is_some(),
            "replacing the successor"
        );
        match next {
            Some(s) => {
                if listed.is_none() {
                    self.s.succ_list = vec![s];
                }
                self.s.succ = Some(s);
                let f = Fixing { target: s, sent: now, replaced: None, redirects: 0, repair: true };
                self.s.fixing = Some(f);
                self.send(s.addr, Body::Fix, out);
            }
            None => {
                self.s.fixing = None;
                let pred_gone = self.s.pred.is_none_or(|p| !self.live(&p));
                if pred_gone && self.in_ring() {
                    let me = self.s.me;
                    self.s.succ = Some(me);
                    self.s.succ_list.clear();
                    self.set_pred(me, now, out);
                } else {
                    self.s.succ = None;
                }
            }
        }
    }

    /// The live peer this peer knows (fingers, predecessor, predecessor list) nearest after
    /// it, the fallback successor when the successor list has no live entry left.
    fn nearest_known_live(&self) -> Option<Peer> {
        let me = self.s.me.id;
        let finger = self.fingers.peers().iter().find(|p| self.live(p));
        let preds = self.s.pred.iter().chain(self.s.pred_list.iter().map(|e| &e.peer));
        finger
            .into_iter()
            .chain(preds)
            .filter(|p| self.live(p) && p.id != me)
            .min_by_key(|p| p.id.distance_from(me))
            .copied()
    }

    /// At `s`: `p` asks to be the predecessor.
    pub(super) fn on_fix<M>(&mut self, p: Peer, now: Time, out: &mut Vec<RingOutput<M>>) {
        if !self.in_ring() {
            if self.s.status != RingStatus::Leaving {
                // Someone takes this joiner for its successor (a redirect or a restore while
                // its join_ok was lost): say so, or it would wait for an answer forever.
                self.send(p.addr, Body::NotInRing, out);
            }
            return;
        }
        if self.is_crashed(p.addr) {
            return; // until the failure detector restores it
        }
        let me = self.s.me;
        let Some(pred) = self.s.pred else { return };
        self.learn(p);
        let closer = p.id.in_open(pred.id, me.id);
        // Growing over the predecessor only if no live peer known lies between.
        let redirect = self.redirect_for(p);
        let accept = pred == p || closer || redirect == Redirect::Nobody;
        tracing::trace!(me = %me.id, from = %p.id, accept, ?redirect, "fix");
        if !accept {
            self.add_pred_entry(p, now);
            if let Redirect::To(c) = redirect {
                let succ_list = self.s.succ_list.clone();
                self.send(p.addr, Body::FixRedirect { pred: c, succ_list }, out);
            }
            // Redirect::Wait: the peer between is a joiner that has not checked in yet; `p`
            // asks again at its next check-in.
            return;
        }
        if pred != p {
            self.set_pred(p, now, out);
            if closer && self.live(&pred) {
                // The old predecessor may still point here: show it the closer peer.
                let succ_list = self.s.succ_list.clone();
                self.send(pred.addr, Body::FixRedirect { pred: p, succ_list }, out);
            }
        }
        self.add_pred_entry(p, now);
        self.confirm(p.addr);
        let succ_list = self.s.succ_list.clone();
        self.send(p.addr, Body::FixOk { succ_list }, out);
    }

    /// At `p`: a peer it routed through, or took as successor, is not in a ring. It is no
    /// finger any more; a successor is replaced by the next entry of the successor list (which
    /// holds the successor it replaced).
    pub(super) fn on_not_in_ring<M>(&mut self, q: Peer, now: Time, out: &mut Vec<RingOutput<M>>) {
        // Whoever says so is no finger (it left, or has not joined yet): routing must stop
        // going through it.
        let was_finger = self.fingers.remove(q.addr);
        // A predecessor that checked in once and says so now has left (its hand-over was
        // lost): gone, as if it had handed over — its predecessor's `fix` is taken.
        let confirmed = self.s.pred_list.iter().any(|e| e.peer == q && e.confirmed);
        if self.s.pred == Some(q) && confirmed && self.in_ring() {
            tracing::trace!(me = %self.s.me.id, pred = %q.id, "predecessor not in a ring");
            self.mark_crashed(q.addr, now, true);
            return;
        }
        // Nor is it a predecessor-list member to redirect a `fix` to: one that left and keeps
        // running is never suspected, and would stay the target of every redirect, which it
        // never takes (`repl-hosts` seed 362).
        if self.s.pred != Some(q) {
            self.s.pred_list.retain(|e| e.peer != q);
        }
        let target = self.s.fixing.as_ref().is_some_and(|f| f.target == q);
        if !matches!(self.s.status, RingStatus::InRing | RingStatus::Leaving)
            || (self.s.succ != Some(q) && !target)
        {
            if !was_finger {
                self.fault(Fault::StrangerSuccList, "not_in_ring from a peer that is not succ");
            }
            return;
        }
        tracing::trace!(me = %self.s.me.id, succ = %q.id, "successor not in a ring");
        self.s.fixing = None;
        self.s.succ_list.retain(|p| p.addr != q.addr);
        self.fingers.remove(q.addr);
        if self.s.succ == Some(q) {
            // Back to the next entry, but no `fix` before the next check-in: whoever
            // redirected here may do it again, and that must not become a message loop.
            match self.s.succ_list.iter().find(|p| self.live(p)).copied() {
                Some(s) => self.s.succ = Some(s),
                None => self.replace_succ(now, out),
            }
        }
    }

    /// Where to send `p`, whose `fix` this peer does not accept: the live peer it knows
    /// nearest after `p` and before itself (the predecessor, a predecessor-list member that
    /// checked in, or a successor-list member: a successor list wraps around a small ring, and
    /// it is what brings a successor pointer left far behind back in one step);
    /// [`Redirect::Wait`] if the only such peers are joiners that have not checked in.
    fn redirect_for(&self, p: Peer) -> Redirect {
        let me = self.s.me.id;
        let confirmed = |c: &Peer| self.s.pred_list.iter().all(|e| e.peer != *c || e.confirmed);
        let candidates: Vec<Peer> = self
            .s
            .pred
            .iter()
            .chain(self.s.pred_list.iter().map(|e| &e.peer))
            .chain(self.s.succ_list.iter())
            .filter(|c| self.live(c) && **c != p && c.id.in_open(p.id, me))
            .copied()
            .collect();
        let nearest =
            candidates.iter().filter(|c| confirmed(c)).min_by_key(|c| c.id.distance_from(p.id));
        match nearest {
            Some(c) => Redirect::To(*c),
            None if candidates.is_empty() => Redirect::Nobody,
            None => Redirect::Wait,
        }
    }

    /// At `p`: the successor accepted the `fix`.
    pub(super) fn on_fix_ok<M>(
        &mut self,
        s: Peer,
        succ_list: Vec<Peer>,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if !matches!(self.s.status, RingStatus::InRing | RingStatus::Leaving) {
            return self.fault(Fault::NotInRing, "fix_ok while not in a ring");
        }
        let Some(list) = self.valid_list(succ_list) else { return };
        let target = self.s.fixing.as_ref().is_some_and(|f| f.target == s);
        if self.s.succ != Some(s) && !target {
            return self.fault(Fault::StrangerSuccList, "fix_ok from a peer that is not succ");
        }
        let fixing = if target { self.s.fixing.take() } else { None };
        // `s` took this peer as its predecessor: nobody it knows lies between, so fingers
        // there are stale (dropped in `settle`, as after every change of the successor).
        self.s.succ = Some(s);
        let new = self.build_succ_list(s, &list);
        let changed = new != self.s.succ_list;
        let old = std::mem::replace(&mut self.s.succ_list, new);
        if changed {
            self.passive_from_dropped(&old, now);
        }
        self.learn(s);
        for p in list {
            self.learn(p);
        }
        if let Some(r) = fixing.and_then(|f| f.replaced).filter(|r| *r != s && self.live(r)) {
            self.send(r.addr, Body::PredNoMore, out);
        }
        if changed {
            self.send_succ_list_back(self.config.succ_list_size, out);
        }
    }

    /// At `p`: the successor did not accept the `fix`; `c`, between us, is a better successor.
    pub(super) fn on_fix_redirect<M>(
        &mut self,
        s: Peer,
        c: Peer,
        succ_list: Vec<Peer>,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if !matches!(self.s.status, RingStatus::InRing | RingStatus::Leaving) {
            return self.fault(Fault::NotInRing, "fix_redirect while not in a ring");
        }
        let target = self.s.fixing.as_ref().is_some_and(|f| f.target == s);
        if self.s.succ != Some(s) && !target {
            return self.fault(Fault::BadRedirect, "a redirect from a peer that is not succ");
        }
        if !self.valid_peer(&c) {
            return;
        }
        let Some(list) = self.valid_list(succ_list) else { return };
        let me = self.s.me;
        if !c.id.in_open(me.id, s.id) || self.is_me(&c) {
            return self.fault(Fault::BadRedirect, "a redirect that is not closer");
        }
        let fixing = self.s.fixing.take();
        tracing::trace!(me = %me.id, from = %s.id, to = %c.id, "redirected");
        if self.is_crashed(c.addr) {
            // Stay behind `s` (a branch) until `c` is restored.
            self.s.succ = Some(s);
            self.s.succ_list = self.build_succ_list(s, &list);
            return;
        }
        let redirects = fixing.as_ref().map_or(0, |f| f.redirects).saturating_add(1);
        if redirects > MAX_REDIRECTS {
            return self.fault(Fault::BadRedirect, "too many redirects in one repair");
        }
        let replaced = fixing.as_ref().and_then(|f| f.replaced).or(Some(s));
        let repair = fixing.as_ref().is_some_and(|f| f.repair);
        let mut tail = vec![s];
        tail.extend(list.iter().copied());
        self.s.succ = Some(c);
        let new = self.build_succ_list(c, &tail);
        let old = std::mem::replace(&mut self.s.succ_list, new);
        self.passive_from_dropped(&old, now);
        self.s.fixing = Some(Fixing { target: c, sent: now, replaced, redirects, repair });
        self.learn(c);
        self.send(c.addr, Body::Fix, out);
    }

    /// At `x`: the successor's list, passed backwards.
    pub(super) fn on_upd_succ_list<M>(
        &mut self,
        s: Peer,
        succ_list: Vec<Peer>,
        ttl: u8,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if self.s.status == RingStatus::Left {
            return self.send(s.addr, Body::NotInRing, out);
        }
        if !matches!(self.s.status, RingStatus::InRing | RingStatus::Leaving) {
            return self.fault(Fault::NotInRing, "upd_succ_list while not in a ring");
        }
        let Some(list) = self.valid_list(succ_list) else { return };
        if self.s.succ != Some(s) {
            return self.fault(Fault::StrangerSuccList, "a successor list not from succ");
        }
        let new = self.build_succ_list(s, &list);
        let changed = new != self.s.succ_list;
        let old = std::mem::replace(&mut self.s.succ_list, new);
        if changed {
            self.passive_from_dropped(&old, now);
        }
        for p in list {
            self.learn(p);
        }
        if changed && ttl > 0 {
            self.send_succ_list_back(usize::from(ttl - 1), out);
        }
    }

    /// The failure detector hears from `node` again.
    pub(super) fn restore<M>(&mut self, node: NodeAddr, now: Time, out: &mut Vec<RingOutput<M>>) {
        let Some(sus) = self.s.crashed.remove(&node) else { return };
        tracing::trace!(me = %self.s.me.id, %node, "restored");
        if !self.in_ring() {
            return;
        }
        let Some(id) = sus.id else { return };
        let x = Peer::new(id, node);
        let me = self.s.me;
        // A closer successor again?
        let closer_succ = match self.s.succ {
            None => true,
            Some(s) => self.is_me(&s) || x.id.in_open(me.id, s.id),
        };
        if closer_succ {
            let old = self.s.succ.filter(|s| self.live(s));
            let mut tail: Vec<Peer> = old.into_iter().collect();
            tail.extend(self.s.succ_list.iter().copied());
            self.s.succ = Some(x);
            self.s.succ_list = self.build_succ_list(x, &tail);
            let f = Fixing { target: x, sent: now, replaced: old, redirects: 0, repair: false };
            self.s.fixing = Some(f);
            self.send(x.addr, Body::Fix, out);
        }
        // The successor list lost it on suspicion: ask the successor for its list again now
        // rather than at the next check-in.
        if !closer_succ && self.s.fixing.is_none() {
            if let Some(s) = self.live_succ() {
                let f =
                    Fixing { target: s, sent: now, replaced: None, redirects: 0, repair: false };
                self.s.fixing = Some(f);
                self.send(s.addr, Body::Fix, out);
            }
        }
        // A closer predecessor again? Shrinking is always safe.
        let closer_pred = self.s.pred.is_some_and(|p| x.id.in_open(p.id, me.id));
        if !closer_succ && !closer_pred && !self.is_neighbour(&x) {
            // Back, but not where this peer would take it: perhaps in another ring now (a
            // partition healed). Probe it at once (`merge.rs`).
            self.passive_add(x, now, now);
        }
        if let Some(p) = self.s.pred {
            if x.id.in_open(p.id, me.id) {
                self.set_pred(x, now, out);
                if !sus.confirmed {
                    // A joiner suspected before it checked in: still not one to redirect to.
                    self.unconfirm(x.addr);
                    // Its `join_ok` may never have arrived (a partition fell right after it
                    // was let in), and its record went when the range grew over it: without
                    // one its next join is told "try later" for good, and its predecessor's
                    // `fix` "wait" (`merge-short` seed 48). Let it in again as a new joiner
                    // would be, between `p` and this peer.
                    let old = self.joiner_pred(p, x);
                    self.s.join_record = Some(JoinRecord {
                        joiner: x,
                        pred: old,
                        attempt: 0,
                        accepted_at: now,
                        resend_at: now,
                        resends: JOIN_OK_RESENDS,
                    });
                }
                if self.live(&p) {
                    let succ_list = self.s.succ_list.clone();
                    self.send(p.addr, Body::FixRedirect { pred: x, succ_list }, out);
                }
            }
        }
    }

    /// Periodic work: forget old suspects and silent branch peers, check in with the
    /// successor (re-sending a `fix` that got no answer), retry a lost successor.
    pub(super) fn recovery_tick<M>(&mut self, now: Time, out: &mut Vec<RingOutput<M>>) {
        let pred = self.s.pred.map(|p| p.addr);
        let forget = self.config.forget_suspected;
        self.s.crashed.retain(|a, s| Some(*a) == pred || s.since + forget > now);
        let expiry = self.config.stabilize * PRED_LIST_EXPIRY;
        self.s.pred_list.retain(|e| Some(e.peer.addr) == pred || e.heard + expiry > now);
        if !matches!(self.s.status, RingStatus::InRing | RingStatus::Leaving)
            || now < self.s.next_stabilize
        {
            return;
        }
        self.s.next_stabilize = now + self.config.stabilize;
        // A joiner whose predecessor has not checked in: its `new_succ` may have been lost.
        if let Some(p) = self.s.pred.filter(|p| self.live(p)) {
            let unconfirmed = self.s.pred_list.iter().any(|e| e.peer == p && !e.confirmed);
            if unconfirmed && self.s.new_succ_resends > 0 && self.in_ring() {
                self.s.new_succ_resends -= 1;
                let succ_list = self.s.succ_list.clone();
                self.send(p.addr, Body::NewSucc { succ_list }, out);
            }
            // A ring of one that let a joiner in, whose `new_succ` was lost: the joiner is
            // the successor too.
            if self.s.succ.is_some_and(|s| self.is_me(&s)) {
                self.s.succ = Some(p);
                self.s.succ_list = vec![p];
            }
        }
        // A predecessor silent for two periods (it checks in every period) is sent this
        // peer's successor list (no further): one that left without its hand-over reaching
        // this peer answers "not in a ring".
        let silent = self.s.pred.is_some_and(|p| {
            self.s
                .pred_list
                .iter()
                .any(|e| e.peer == p && e.heard + self.config.stabilize * 2 < now)
        });
        if self.s.status == RingStatus::InRing && silent {
            self.send_succ_list_back(0, out);
        }
        if self.s.succ.is_none() {
            if !has_flaw!(self, RecoverySkipsSuccList) {
                self.replace_succ(now, out);
            }
            return;
        }
        // Alone (a ring of one after every peer it knew was suspected: a partition into
        // small groups), but a live peer has been heard of since (its traffic came through
        // here): `fix` it, and its redirects walk this peer to its place. Nothing grows: the
        // peers it meets accept it only as a closer predecessor (or over a suspected one).
        if self.s.succ.is_some_and(|s| self.is_me(&s)) && self.in_ring() {
            if let Some(q) = self.nearest_known_live() {
                tracing::trace!(me = %self.s.me.id, to = %q.id, "alone: fixing into a known peer");
                self.s.succ = Some(q);
                self.s.succ_list = vec![q];
                let f = Fixing { target: q, sent: now, replaced: None, redirects: 0, repair: true };
                self.s.fixing = Some(f);
                self.send(q.addr, Body::Fix, out);
                return;
            }
        }
        if self.s.status == RingStatus::Leaving {
            // Handing over: no more check-ins (the successor would take it as a member still).
            return;
        }
        // A `fix` to a peer that is no longer the successor is stale: check in with the
        // successor instead.
        if self.s.fixing.as_ref().is_some_and(|f| Some(f.target) != self.s.succ) {
            self.s.fixing = None;
        }
        let target = match &self.s.fixing {
            Some(f) => Some(f.target),
            None => self.live_succ(),
        };
        let Some(t) = target else { return };
        match self.s.fixing.as_mut() {
            Some(f) => f.sent = now,
            None => {
                let f =
                    Fixing { target: t, sent: now, replaced: None, redirects: 0, repair: false };
                self.s.fixing = Some(f);
            }
        }
        self.send(t.addr, Body::Fix, out);
    }
}
