//! Routing: lookups, routed payloads, the `last` flag and backwards routing into branches,
//! finger refresh.
//!
//! A message for key `k` at peer `n` (Beernet's `route`):
//! 1. `k ∈ (pred, n]`: `n` owns it — deliver (answer the lookup, hand the payload over, or
//!    handle the join);
//! 2. marked `last` (the sender believed `n` the owner) but `n` does not own it: the owner is
//!    in a branch behind `n` — send it **backwards** to the predecessor-list member nearest at
//!    or after `k`; with none, answer `Unroutable`;
//! 3. `k ∈ (n, succ]`: send it to the successor, marked `last`;
//! 4. otherwise: send it to the **closest preceding** known peer of `k` (fingers and
//!    successor list).
//!
//! Invariants:
//! * only the owner delivers or answers `Found`; it answers directly, or through the ring
//!   (routed to the asker's identifier) when it suspects the asker — a branch's predecessor
//!   cannot be reached from the branch — or the asker asks so (its second try);
//! * forward steps strictly shrink the distance to `k`, backward steps strictly shrink the
//!   distance from `k`, and once `last` is set a message only goes backwards: routing
//!   terminates by itself; the hop limit ([`RingConfig::max_hops`]) only guards against
//!   corrupt state, and is counted as a fault when reached;
//! * a peer outside the ring routes nothing: it answers `Unroutable` (`try_later` to a join);
//! * every lookup is answered exactly once: `Found`, `Unavailable` when the ring says so, or
//!   `Timeout` after [`RingConfig::lookup_timeout`] (it is sent a second time halfway, asking
//!   for the answer through the ring, and a finger it went through first is dropped then: it
//!   may be silent for good, behind a partition or a link that does not work);
//! * fingers are learnt from every peer heard of, forgotten when suspected, when they say they
//!   are not in a ring, when a lookup through them goes unanswered, when they lie in the
//!   range this peer owns (checked every refresh period), and — those nearer than the
//!   successor — when the successor takes this peer as its predecessor; they are
//!   refreshed one slot per [`RingConfig::finger_refresh`]; a refresh's answer is
//!   authoritative for its slot.
//!
//! [`RingConfig::max_hops`]: crate::RingConfig::max_hops
//! [`RingConfig::lookup_timeout`]: crate::RingConfig::lookup_timeout
//! [`RingConfig::finger_refresh`]: crate::RingConfig::finger_refresh

use selfman_core::{NodeAddr, Time};
use selfman_ports::{
    has_flaw, LookupOutcome, Peer, Range, RingId, RingIndication, RingStatus, Unavailable,
};

#[cfg(feature = "flaws")]
use super::Flaw;
use super::{Fault, Pending, RelaxedRingMachine, RingOutput, MAX_PENDING};
use crate::messages::{Body, Routable, Routed, Unrouted};

impl RelaxedRingMachine {
    /// Looks up `key` for the user (`tag`) or for a finger refresh (`None`).
    pub(super) fn lookup<M>(
        &mut self,
        key: RingId,
        tag: Option<u64>,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        let answer = |outcome| RingIndication::LookupResult { key, tag: tag.unwrap_or(0), outcome };
        if !self.in_ring() {
            if tag.is_some() {
                self.indicate(answer(LookupOutcome::Unavailable(Unavailable::NotInRing)), out);
            }
            return;
        }
        if self.owns(key) {
            if tag.is_some() {
                let outcome = LookupOutcome::Found { peer: self.s.me, hops: 0 };
                self.indicate(answer(outcome), out);
            }
            return;
        }
        if self.s.pending.len() >= MAX_PENDING {
            if tag.is_some() {
                self.indicate(answer(LookupOutcome::Unavailable(Unavailable::Overloaded)), out);
            }
            return;
        }
        let req = self.s.next_req;
        self.s.next_req = req.wrapping_add(1);
        let deadline = now + self.config.lookup_timeout / 2;
        let me = self.s.me;
        let what = Routable::Lookup { req, answer_via_ring: false };
        let r = Routed { key, origin: me, hops: 0, last: false, what };
        let via = self.forward(r, now, out);
        self.s.pending.insert(req, Pending { key, deadline, tag, retried: false, via });
    }

    /// Routes a user payload.
    pub(super) fn route_payload<M>(
        &mut self,
        key: RingId,
        tag: u64,
        payload: M,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if !self.in_ring() {
            let reason = Unavailable::NotInRing;
            return self.indicate(RingIndication::Undeliverable { key, tag, reason }, out);
        }
        let me = self.s.me;
        if self.owns(key) {
            let d = RingIndication::Deliver { key, origin: me, tag, hops: 0, payload };
            return self.indicate(d, out);
        }
        let r = Routed {
            key,
            origin: me,
            hops: 0,
            last: false,
            what: Routable::Payload { tag, payload },
        };
        self.forward(r, now, out);
    }

    /// A routed message arrived from `sender`.
    pub(super) fn on_route<M>(
        &mut self,
        sender: Peer,
        r: Routed<M>,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if !self.valid_peer_or_joiner(&r) {
            return;
        }
        let me = self.s.me;
        let joining = matches!(r.what, Routable::Join { .. });
        tracing::trace!(me = %me.id, from = %sender.id, key = %r.key, hops = r.hops, last = r.last, "route");
        // A joiner sending its own join is not in a ring: never a finger.
        if !(joining && sender == r.origin) {
            self.learn(sender);
        }
        if r.origin.id == me.id && r.origin.addr != me.addr {
            if let Routable::Join { attempt } = r.what {
                self.send(r.origin.addr, Body::IdInUse { attempt, holder: me }, out);
            } else {
                self.fault(Fault::IdCollision, "a routed message from a peer with my identifier");
            }
            return;
        }
        if !joining {
            self.learn(r.origin);
        }
        if let Routable::MergeLookup { nonce } = r.what {
            if !self.in_ring() {
                return self.merge_lookup_outside(r.origin, nonce, out);
            }
        }
        if let (true, Routable::FingerGone { gone, lower }) = (self.in_ring(), &r.what) {
            let (gone, lower) = (*gone, *lower);
            return self.route_gone(r, gone, lower, now, out);
        }
        if !self.in_ring() {
            if sender != r.origin || !joining {
                // The sender routes through this peer as if it were in a ring (a finger learnt
                // too early or kept after this peer left, a redirect): tell it. (A joiner
                // sending its own join to a peer not in a ring is only told to try later.)
                self.send(sender.addr, Body::NotInRing, out);
            } else if self.s.status == RingStatus::Left && r.hops < self.config.max_hops {
                // A joiner's own join through a peer that has left (and keeps running): pass
                // it to the successor the range went to. Told "try later" here, the joiner
                // never tries another access peer — each attempt is answered — and waits for
                // good (`ring-leave` seed 108).
                if let Some(s) = self.s.succ.filter(|s| !self.is_me(s)) {
                    let mut r = r;
                    r.hops += 1;
                    return self.send(s.addr, Body::Route(r), out);
                }
            }
            return self.unroutable(r, now, out);
        }
        // A joiner that is already the predecessor asks again (its join_ok was lost): its
        // identifier is the start of this peer's range, so handle it here.
        if self.owns(r.key) || (joining && self.s.pred == Some(r.origin)) {
            return self.arrive(r, now, out);
        }
        self.forward(r, now, out);
    }

    /// The origin of a routed message is a usable peer (a joiner's too).
    fn valid_peer_or_joiner<M>(&mut self, r: &Routed<M>) -> bool {
        if r.origin.addr.id == selfman_core::NodeId::UNKNOWN {
            self.fault(Fault::BadPeer, "a routed message from an unknown incarnation");
            return false;
        }
        true
    }

    /// Sends `r` one hop on (this peer does not own its key); returns where to.
    pub(super) fn forward<M>(
        &mut self,
        mut r: Routed<M>,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) -> Option<NodeAddr> {
        if r.hops >= self.config.max_hops {
            self.fault(Fault::HopLimit, "a routed message reached its hop limit");
            self.unroutable(r, now, out);
            return None;
        }
        r.hops += 1;
        if r.last {
            let answers = matches!(r.what, Routable::Lookup { .. } | Routable::Payload { .. });
            if has_flaw!(self, IgnoreLastFlag) && answers {
                // Broken on purpose: the "last hop" answers a lookup (or takes a payload) as
                // if it owned the key.
                r.hops -= 1;
                self.arrive(r, now, out);
                return None;
            }
            return match self.backwards(r.key) {
                Some(m) => {
                    self.send(m.addr, Body::Route(r), out);
                    Some(m.addr)
                }
                None => {
                    self.unroutable(r, now, out);
                    None
                }
            };
        }
        let Some(succ) = self.live_succ() else {
            self.unroutable(r, now, out);
            return None;
        };
        let me = self.s.me;
        if Range::new(me.id, succ.id).contains(r.key) {
            r.last = true;
            self.send(succ.addr, Body::Route(r), out);
            return Some(succ.addr);
        }
        let next = self.closest_preceding(r.key).unwrap_or(succ);
        self.send(next.addr, Body::Route(r), out);
        Some(next.addr)
    }

    /// The live peer known farthest from this one that is still strictly before `key`
    /// (fingers, successor list, successor).
    fn closest_preceding(&self, key: RingId) -> Option<Peer> {
        let me = self.s.me.id;
        let dk = key.distance_from(me);
        let finger = self.fingers.closest_preceding(key).filter(|p| self.live(p));
        self.s
            .succ_list
            .iter()
            .chain(self.s.succ.iter())
            .copied()
            .chain(finger)
            .filter(|p| self.live(p) && p.id.distance_from(me) < dk && p.id != me)
            .filter(|p| !self.s.silent.contains_key(&p.addr))
            .max_by_key(|p| p.id.distance_from(me))
    }

    /// Routing stops picking `node` as a next hop for a while (`forget_suspected`): a lookup
    /// sent to it first got no answer. The successor is never avoided (it is the way of
    /// last resort, and the failure detector watches it).
    fn avoid_silent(&mut self, node: NodeAddr, now: Time) {
        let until = now + self.config.forget_suspected;
        self.s.silent.insert(node, until);
        if self.s.silent.len() > super::MAX_SILENT {
            let first = self.s.silent.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a);
            if let Some(a) = first {
                self.s.silent.remove(&a);
            }
        }
    }

    /// The predecessor-list member nearest at or after `key` and before this peer: where a
    /// `last` message goes backwards.
    fn backwards(&self, key: RingId) -> Option<Peer> {
        let me = self.s.me.id;
        let dme = me.distance_from(key);
        self.s
            .pred
            .iter()
            .chain(self.s.pred_list.iter().map(|e| &e.peer))
            .filter(|m| self.live(m) && m.id.distance_from(key) < dme)
            .min_by_key(|m| m.id.distance_from(key))
            .copied()
    }

    /// `r` reached the owner of its key (this peer).
    fn arrive<M>(&mut self, r: Routed<M>, now: Time, out: &mut Vec<RingOutput<M>>) {
        let Routed { key, origin, hops, what, .. } = r;
        match what {
            Routable::Join { attempt } => self.on_join_request(origin, attempt, now, out),
            Routable::Lookup { req, answer_via_ring } => {
                if self.is_me(&origin) {
                    let me = self.s.me;
                    self.on_found(me, req, key, hops, out);
                } else if answer_via_ring || self.is_crashed(origin.addr) {
                    // The asker may be unreachable from here (a branch's predecessor is, and a
                    // lookup asked again may have lost its first answer so): the ring takes
                    // the answer to it.
                    let me = self.s.me;
                    let what = Routable::Found { req, key, hops };
                    let back = Routed { key: origin.id, origin: me, hops: 0, last: false, what };
                    self.forward(back, now, out);
                } else {
                    self.send(origin.addr, Body::Found { req, key, hops }, out);
                }
            }
            Routable::Found { req, key: looked_up, hops } => {
                // An answer routed back to this peer, the asker.
                self.on_found(origin, req, looked_up, hops, out);
            }
            Routable::Payload { tag, payload } => {
                let d = RingIndication::Deliver { key, origin, tag, hops: hops.into(), payload };
                self.indicate(d, out);
            }
            Routable::MergeLookup { nonce } => self.on_merge_lookup(origin, nonce, now, out),
            // Handled on the way (`route_gone`); one that ends up here has nothing left to do.
            Routable::FingerGone { .. } => {}
        }
    }

    /// Tells the origin that `r` cannot reach an owner.
    fn unroutable<M>(&mut self, r: Routed<M>, now: Time, out: &mut Vec<RingOutput<M>>) {
        // An answer that cannot be routed is dropped: the asker's lookup times out.
        let Some(what) = r.what.unrouted() else { return };
        tracing::trace!(
            me = %self.s.me.id, key = %r.key, origin = %r.origin.id, hops = r.hops, last = r.last,
            status = ?self.s.status, pred = ?self.s.pred.map(|p| p.id), "unroutable"
        );
        if self.is_me(&r.origin) {
            let me = self.s.me;
            return self.on_unroutable(me, r.key, what, now, out);
        }
        if let Unrouted::Join { attempt } = what {
            return self.send(r.origin.addr, Body::TryLater { attempt }, out);
        }
        self.send(r.origin.addr, Body::Unroutable { key: r.key, what }, out);
    }

    /// The owner of `key` answered lookup `req`.
    pub(super) fn on_found<M>(
        &mut self,
        owner: Peer,
        req: u64,
        key: RingId,
        hops: u8,
        out: &mut Vec<RingOutput<M>>,
    ) {
        match self.s.pending.get(&req) {
            Some(p) if p.key == key => {}
            _ => return self.fault(Fault::UnknownRequest, "an answer to no lookup in flight"),
        }
        let Some(p) = self.s.pending.remove(&req) else { return };
        match p.tag {
            Some(tag) => {
                let outcome = LookupOutcome::Found { peer: owner, hops: hops.into() };
                self.indicate(RingIndication::LookupResult { key, tag, outcome }, out);
            }
            None => {
                // A finger refresh: the owner is authoritative for the slot.
                if self.live(&owner) {
                    self.fingers.learn_authoritative(key, owner);
                }
            }
        }
    }

    /// A routed message of this peer could not be delivered.
    pub(super) fn on_unroutable<M>(
        &mut self,
        from: Peer,
        key: RingId,
        what: Unrouted,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        let reason = Unavailable::RangeUnavailable;
        match what {
            Unrouted::Join { attempt } => self.on_try_later(from, attempt, now),
            Unrouted::Lookup { req } => {
                match self.s.pending.get(&req) {
                    Some(p) if p.key == key => {}
                    _ => return self.fault(Fault::UnknownRequest, "unroutable for no lookup"),
                }
                let Some(p) = self.s.pending.remove(&req) else { return };
                if let Some(tag) = p.tag {
                    let outcome = LookupOutcome::Unavailable(reason);
                    self.indicate(RingIndication::LookupResult { key, tag, outcome }, out);
                }
            }
            Unrouted::Payload { tag } => {
                self.indicate(RingIndication::Undeliverable { key, tag, reason }, out);
            }
        }
    }

    /// Sends again the lookups halfway to their timeout (once), and answers those whose time
    /// is up.
    pub(super) fn lookup_tick<M>(&mut self, now: Time, out: &mut Vec<RingOutput<M>>) {
        if !self.s.silent.is_empty() {
            self.s.silent.retain(|_, until| *until > now);
        }
        if self.s.pending.is_empty() {
            return;
        }
        if self.s.status == RingStatus::Left {
            self.s.pending.clear();
            return;
        }
        let half = self.config.lookup_timeout / 2;
        let mut again = Vec::new();
        let mut expired = Vec::new();
        self.s.pending.retain(|req, p| {
            if p.deadline > now {
                return true;
            }
            if !p.retried {
                p.retried = true;
                p.deadline = now + half;
                again.push((*req, p.key, p.via));
                return true;
            }
            expired.push(*p);
            false
        });
        for (req, key, via) in again {
            // No answer through that first hop: if it was a finger (not the successor), it is
            // silent — dropped, so the second try goes another way (re-learnt if it talks).
            let succ = self.live_succ().map(|s| s.addr);
            if let Some(v) = via.filter(|v| Some(*v) != succ) {
                self.passive_add_addr(v, now);
                self.fingers.remove(v);
                self.avoid_silent(v, now);
            }
            if self.in_ring() {
                let me = self.s.me;
                let r = Routed {
                    key,
                    origin: me,
                    hops: 0,
                    last: false,
                    what: Routable::Lookup { req, answer_via_ring: true },
                };
                let via = self.forward(r, now, out);
                if let Some(p) = self.s.pending.get_mut(&req) {
                    p.via = via;
                }
            }
        }
        for p in expired {
            if let Some(tag) = p.tag {
                let outcome = LookupOutcome::Unavailable(Unavailable::Timeout);
                self.indicate(RingIndication::LookupResult { key: p.key, tag, outcome }, out);
            }
        }
    }

    /// Refreshes one finger (round robin over the slots beyond the successor).
    pub(super) fn finger_tick<M>(&mut self, now: Time, out: &mut Vec<RingOutput<M>>) {
        if !self.in_ring() || now < self.s.next_finger {
            return;
        }
        self.s.next_finger = now + self.config.finger_refresh;
        if let Some(r) = self.range().filter(|r| !r.is_full()) {
            self.fingers.forget_within(r);
        }
        let Some(succ) = self.live_succ() else { return };
        let slots = self.fingers.slots_beyond(succ.id.distance_from(self.s.me.id));
        if slots.is_empty() {
            return;
        }
        let i = slots.start + self.s.finger_cursor % slots.len();
        self.s.finger_cursor = self.s.finger_cursor.wrapping_add(1);
        let key = self.fingers.ideal(i);
        if !self.owns(key) {
            self.lookup(key, None, now, out);
        }
    }
}
