//! Finger notices: a peer that suspects its successor (or a peer right after it, in a run of
//! crashes) tells the peers whose fingers may point at it. Without them a dead finger beyond
//! the successor waits for its slot's refresh, one slot per
//! [`RingConfig::finger_refresh`](crate::RingConfig::finger_refresh) round robin (≈ 20 s at
//! 10,000 peers), and every lookup routed through it meanwhile is lost.
//!
//! Which peers: `m` holds `g` as the finger of ideal distance `d` when `g` is the first peer
//! at or after `m + d`, that is when `m + d` lies in `(x, g]`, `x` the peer before `g` (the
//! one that suspects it). So for every ideal distance `d` beyond `g` (nearer ones lie in
//! `(x, g)`, where no peer is), the holders lie in `(x − d, g − d]`: the notice is routed to
//! the key `g − d`; the last peer at or before that key, and its predecessors back to
//! `x − d`, are the holders.
//!
//! Invariants:
//! * a notice only removes fingers, and only the exact peer it names: it never touches
//!   neighbours, lists or ranges, so a false suspicion (or a hostile notice) costs at most a
//!   finger re-learnt from traffic or at the next refresh;
//! * one notice per ideal distance beyond the suspected peer (`(k − 1)·log_k n` at `n`
//!   peers), routed like a lookup (hop-limited) and never answered; the backwards steps go
//!   to the predecessor only while it lies after `lower`, at most [`GONE_STEPS`] of them: a
//!   notice ends;
//! * it costs nothing in a steady ring: only a suspicion sends it.

use selfman_core::Time;
use selfman_ports::{Peer, Range, RingId, RingStatus};

use super::{RelaxedRingMachine, RingOutput};
use crate::messages::{Body, Routable, Routed};

/// Backwards steps of a finger notice at most. The stretch of the circle that may hold the
/// finger is as long as the crashed peer's range, which holds one peer on average; four
/// steps cover all but a rare crowd, which the refresh covers.
pub const GONE_STEPS: u8 = 4;

impl RelaxedRingMachine {
    /// This peer suspects `gone`, which was its successor or lay right after it: tell the
    /// peers whose fingers may point at it.
    pub(super) fn announce_gone<M>(&mut self, gone: Peer, now: Time, out: &mut Vec<RingOutput<M>>) {
        if self.s.status != RingStatus::InRing || self.is_me(&gone) {
            return;
        }
        let me = self.s.me;
        // Ideal distances up to the spacing of peers hold no other peer's finger to `gone`
        // (the stretch `(me − d, gone − d]` is this peer's neighbourhood): the spacing is at
        // least `gone`'s gap, and at least the mean gap over the successor list, so that a
        // ring whose identifiers are not spread evenly gets `(k − 1)·log_k n` notices, not
        // one per ideal distance.
        let gap = gone.id.distance_from(me.id);
        let spacing = match self.s.succ_list.last() {
            Some(last) => last.id.distance_from(me.id) / self.s.succ_list.len() as u64,
            None => 0,
        };
        for i in self.fingers.slots_beyond(gap.max(spacing)) {
            let d = self.fingers.ideal(i).distance_from(me.id);
            let key = gone.id.offset(d.wrapping_neg());
            let lower = me.id.offset(d.wrapping_neg());
            let r = Routed {
                key,
                origin: me,
                hops: 0,
                last: false,
                what: Routable::FingerGone { gone, lower },
            };
            self.route_gone(r, gone, lower, now, out);
        }
    }

    /// A finger notice on its way (at the origin or any hop): forget `gone`, then either
    /// start the backwards steps (this is the last peer at or before the key) or pass it on.
    pub(super) fn route_gone<M>(
        &mut self,
        r: Routed<M>,
        gone: Peer,
        lower: RingId,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if !self.is_me(&gone) {
            self.fingers.remove(gone.addr);
        }
        let Some(succ) = self.live_succ() else { return };
        let me = self.s.me.id;
        let here = r.key == me || (Range::new(me, succ.id).contains(r.key) && r.key != succ.id);
        if here {
            return self.step_gone_back(gone, lower, GONE_STEPS, out);
        }
        self.forward(r, now, out);
    }

    /// Passes a notice to the predecessor if it may hold the finger too (it lies after
    /// `lower`), `steps` more times at most.
    fn step_gone_back<M>(
        &mut self,
        gone: Peer,
        lower: RingId,
        steps: u8,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if steps == 0 {
            return;
        }
        let me = self.s.me.id;
        if let Some(p) = self.s.pred.filter(|p| self.live(p) && *p != gone) {
            if p.id.in_open(lower, me) {
                let body = Body::FingerGone { gone, lower, steps: steps - 1 };
                self.send(p.addr, body, out);
            }
        }
    }

    /// A backwards step of a finger notice arrived.
    pub(super) fn on_finger_gone<M>(
        &mut self,
        gone: Peer,
        lower: RingId,
        steps: u8,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if self.s.status != RingStatus::InRing || !self.valid_peer(&gone) {
            return;
        }
        if !self.is_me(&gone) {
            self.fingers.remove(gone.addr);
        }
        self.step_gone_back(gone, lower, steps.min(GONE_STEPS), out);
    }
}
