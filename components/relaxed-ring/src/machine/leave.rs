//! Graceful leave: the range goes to the successor first.
//!
//! Invariants:
//! * the leaving peer `n` stops owning `(p, n]` (indicating the loss, to its successor `s`)
//!   **before** it asks `s` to take it, so the range has at most one owner throughout;
//! * `s` takes `(p, n]` only from its own predecessor `n` — or from an `n` that handed over
//!   before and now names a predecessor before the one it named then (that one left too, and
//!   its range went to `n`); it answers `LeaveOk` to any leave (the leaver goes anyway) but
//!   counts one from a stranger;
//! * `p` replaces its successor `n` by `s` only on a `LeavingPred` from `n` itself, and then
//!   checks in with `s` (`fix`);
//! * the leaver re-sends its hand-over until `LeaveOk`, at most
//!   [`RingConfig::leave_attempts`](crate::RingConfig::leave_attempts) times, then leaves
//!   anyway (the successor then takes the range over by failure recovery);
//! * neighbours that leave at once pass the news on: a leaving peer told by its leaving
//!   predecessor takes that one's predecessor as its own and hands over again (its successor
//!   learns whom it now follows, that predecessor whom it now precedes); told by its leaving
//!   successor, it takes that one's successor and does the same;
//! * a peer that has left answers what still reaches it as a peer outside any ring does
//!   (`NotInRing` to a `fix` or a routed message): its process may keep running, and a
//!   neighbour that missed its leave must not wait on it for ever;
//! * lookups in flight when it leaves are answered `NotInRing`.

use selfman_core::Time;
use selfman_ports::{
    LookupOutcome, Peer, RangeChange, ResponsibilityChange, RingIndication, RingStatus, Unavailable,
};

use super::{Fault, Leaving, RelaxedRingMachine, RingOutput};
use crate::messages::Body;

impl RelaxedRingMachine {
    /// Starts leaving.
    pub(super) fn leave<M>(&mut self, now: Time, out: &mut Vec<RingOutput<M>>) {
        if !self.in_ring() {
            tracing::warn!(me = %self.s.me, status = ?self.s.status, "relaxed ring: leave ignored");
            if matches!(self.s.status, RingStatus::Outside | RingStatus::Joining) {
                self.s.joining = None;
                self.s.status = RingStatus::Left;
                self.indicate(RingIndication::Left, out);
            }
            return;
        }
        let range = self.range();
        let succ = self.live_succ();
        self.s.status = RingStatus::Leaving;
        if let Some(range) = range {
            let change = RangeChange::Lost { range, to: succ };
            let rc = ResponsibilityChange { now: None, change };
            self.indicate(RingIndication::Responsibility(rc), out);
        }
        if succ.is_none() {
            return self.finish_leave(out);
        }
        let attempts = 1;
        self.s.leaving = Some(Leaving { attempts, retry_at: now + self.config.stabilize });
        self.send_leaving(out);
        if let (Some(s), Some(p)) = (succ, self.s.pred.filter(|p| self.live(p))) {
            if p != s {
                let succ_list = self.s.succ_list.iter().copied().filter(|x| *x != s).collect();
                self.send(p.addr, Body::LeavingPred { succ: s, succ_list }, out);
            }
        }
    }

    /// Sends the hand-over to the current successor.
    pub(super) fn send_leaving<M>(&self, out: &mut Vec<RingOutput<M>>) {
        let (Some(s), Some(pred)) = (self.live_succ(), self.s.pred) else { return };
        self.send(s.addr, Body::Leaving { pred }, out);
    }

    /// Re-sends the hand-over, or gives up and leaves.
    pub(super) fn leave_tick<M>(&mut self, now: Time, out: &mut Vec<RingOutput<M>>) {
        let max = self.config.leave_attempts;
        let period = self.config.stabilize;
        if self.s.leaving.is_none() {
            return;
        }
        let no_succ = self.live_succ().is_none();
        let Some(l) = self.s.leaving.as_mut() else { return };
        if now < l.retry_at {
            return;
        }
        if l.attempts >= max || no_succ {
            return self.finish_leave(out);
        }
        l.attempts += 1;
        l.retry_at = now + period;
        self.send_leaving(out);
    }

    fn finish_leave<M>(&mut self, out: &mut Vec<RingOutput<M>>) {
        self.s.status = RingStatus::Left;
        self.s.leaving = None;
        // Every lookup is answered once: those still in flight are not going to be.
        for p in std::mem::take(&mut self.s.pending).into_values() {
            if let Some(tag) = p.tag {
                let outcome = LookupOutcome::Unavailable(Unavailable::NotInRing);
                self.indicate(RingIndication::LookupResult { key: p.key, tag, outcome }, out);
            }
        }
        self.s.fixing = None;
        self.s.succ_list.clear();
        self.s.pred_list.clear();
        self.s.crashed.clear();
        self.indicate(RingIndication::Left, out);
    }

    /// At `n`: the successor took the range.
    pub(super) fn on_leave_ok<M>(&mut self, s: Peer, out: &mut Vec<RingOutput<M>>) {
        if self.s.status == RingStatus::Leaving && self.s.succ == Some(s) {
            return self.finish_leave(out);
        }
        self.fault(Fault::StrangerLeave, "leave_ok that was not asked for");
    }

    /// At `s`: the predecessor `n` leaves; its predecessor is `p`.
    pub(super) fn on_leaving<M>(
        &mut self,
        n: Peer,
        p: Peer,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if self.s.status == RingStatus::Leaving && self.s.pred == Some(n) && self.valid_peer(&p) {
            // Both leave: follow `p` from now on, and hand over again with it.
            self.mark_crashed(n.addr, now, true);
            self.s.pred = Some(p);
            self.remove_pred_entry(n.addr);
            self.send(n.addr, Body::LeaveOk, out);
            self.send_leaving(out);
            if let Some(s) = self.live_succ().filter(|s| *s != p && !self.is_me(&p)) {
                let succ_list = self.s.succ_list.iter().copied().filter(|x| *x != s).collect();
                self.send(p.addr, Body::LeavingPred { succ: s, succ_list }, out);
            }
            return;
        }
        if !self.in_ring() {
            return self.fault(Fault::NotInRing, "leaving while not in a ring");
        }
        if !self.valid_peer(&p) {
            return;
        }
        let was_pred = self.s.pred == Some(n);
        let in_list = self.s.pred_list.iter().any(|e| e.peer == n);
        let already = self.s.pred == Some(p) && !in_list;
        // `n` handed its range over before and names another predecessor now: the one it
        // named first left too (neighbours leaving at once), and its range came to `n`.
        let departed = self.s.crashed.get(&n.addr).is_some_and(|s| s.departed);
        let relayed = self.s.pred.filter(|q| !was_pred && departed && q.id.in_open(p.id, n.id));
        self.mark_crashed(n.addr, now, true);
        if let Some(q) = relayed {
            self.mark_crashed(q.addr, now, true);
            self.set_pred(p, now, out);
            self.remove_pred_entry(q.addr);
        } else if was_pred {
            let me = self.s.me;
            if self.is_me(&p) {
                // A ring of two: alone now.
                self.s.succ = Some(me);
                self.s.succ_list.clear();
                self.s.fixing = None;
            }
            self.set_pred(p, now, out);
            self.remove_pred_entry(n.addr);
        } else if !in_list && !already {
            self.fault(Fault::StrangerLeave, "leaving from a peer that is not the pred");
        }
        self.send(n.addr, Body::LeaveOk, out);
        if self.s.succ == Some(n) {
            // Our successor left through another peer: repair as after a crash.
            self.replace_succ(now, out);
        }
    }

    /// At `p`: the successor `n` leaves; its successor `s` is ours now.
    pub(super) fn on_leaving_pred<M>(
        &mut self,
        n: Peer,
        s: Peer,
        succ_list: Vec<Peer>,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        let leaving = self.s.status == RingStatus::Leaving;
        if !self.in_ring() && !leaving {
            return self.fault(Fault::NotInRing, "leaving_pred while not in a ring");
        }
        if self.s.succ != Some(n) {
            return self.fault(Fault::StrangerLeave, "leaving_pred from a peer that is not succ");
        }
        if !self.valid_peer(&s) {
            return;
        }
        let Some(list) = self.valid_list(succ_list) else { return };
        if leaving {
            // Both leave: hand over to `s` from now on, and tell the predecessor about it.
            self.mark_crashed(n.addr, now, true);
            if self.is_me(&s) || self.is_crashed(s.addr) {
                return;
            }
            self.s.succ = Some(s);
            self.s.succ_list = self.build_succ_list(s, &list);
            self.send_leaving(out);
            if let Some(p) = self.s.pred.filter(|p| self.live(p) && *p != s) {
                let succ_list = self.s.succ_list.iter().copied().filter(|x| *x != s).collect();
                self.send(p.addr, Body::LeavingPred { succ: s, succ_list }, out);
            }
            return;
        }
        self.mark_crashed(n.addr, now, true);
        if self.is_me(&s) || self.is_crashed(s.addr) {
            return self.replace_succ(now, out);
        }
        self.s.succ = Some(s);
        self.s.succ_list = self.build_succ_list(s, &list);
        let f = super::Fixing { target: s, sent: now, replaced: None, redirects: 0, repair: true };
        self.s.fixing = Some(f);
        self.send(s.addr, Body::Fix, out);
    }
}
