//! Merging rings after a partition heals: the **passive list**, its probes (`mlookup`), and
//! the merge walk with its fanout.
//!
//! A partition leaves every side a ring of its own (each takes the whole circle). To become
//! one ring again when the network heals, a peer must first notice a peer of another ring,
//! then the rings must be walked into one order. The design (after Shafaat, Ghodsi and
//! Haridi's ring merge; Beernet 1.0's `Merger` does the single walk):
//!
//! 1. **Passive list.** A peer that suspects a peer it knew (successor, predecessor, a list
//!    member: whatever the failure detector watched), drops a finger that stayed silent, or
//!    sees an entry of its successor list left out of the list its successor sends (an
//!    unwatched entry the successor lost: see `passive_from_dropped`), puts it in a bounded
//!    list ([`RingConfig::passive_size`], oldest out first). While the
//!    peer is in the crashed set the failure detector watches it (a restore is the first
//!    probe); after that the list **probes** it: at most [`RingConfig::probe_batch`] entries
//!    per [`RingConfig::probe_every`], each entry waiting twice as long after every probe up
//!    to [`RingConfig::probe_backoff_max`]; an entry is dropped when it answers, or
//!    [`RingConfig::passive_ttl`] after it was added. A restored peer that the restore did not
//!    take back as successor or predecessor is probed at once.
//! 2. **Probe = `mlookup`.** The probe is a routed `MergeLookup` of the prober's own
//!    identifier, sent to the passive peer, which routes it in *its* ring. In one ring the
//!    owner of `x`'s identifier is `x` itself: the probe comes back to `x` — a **false
//!    alarm** (a falsely suspected peer, a peer of this very ring), over after `1 + hops`
//!    messages. A peer not in a ring (restarted, joining, left) answers `MergeNotInRing` (2
//!    messages); a dead one does not answer (1 message, then the backoff). Otherwise the
//!    owner `o ≠ x` of `x`'s identifier in the other ring answers `MergeFound`: the rings are
//!    two — a merge starts.
//! 3. **Walk.** `o` is `x`'s successor in the other ring, and `x` lies between `o`'s
//!    predecessor `o'` and `o`. So `x` takes `o` as successor if it is closer than its own
//!    (and sends it `fix`: `o` accepts a closer predecessor, its range shrinks), and `o` sends
//!    `o'` a `FixRedirect` to `x`. From there the ordinary rules of `recovery.rs` walk the
//!    two orders into one: a peer accepting a closer predecessor redirects its old one to it,
//!    which fixes it, and so on backwards round the circle, each step between two peers. Every
//!    change of a pointer brings a successor **closer** and every change of a range
//!    **shrinks** it, so within each former ring no key gets a second owner during the merge
//!    (two rings own every key once each until the walk reaches it).
//! 4. **Fanout.** One walk takes time linear in the ring's size. A peer that found another
//!    ring also sends `MergeSpread{foreign: o}` to up to [`RingConfig::merge_fanout`] peers of
//!    its ring, spread evenly over the circle (the first peer it knows in each of `fanout`
//!    equal shares), each given its share to pass the notice on in, [`RingConfig::merge_depth`]
//!    times. Each receiver probes through `o` in turn, starting a walk of its own: up to
//!    `f + … + f^d` walks run in parallel, each over about `n / f^d` peers. A peer handles at
//!    most one notice per [`RingConfig::merge_cooldown`] (the walks under way merge the rest),
//!    which bounds the messages when many peers notice at once.
//!
//! Invariants:
//! * the passive list holds at most `passive_size` entries, never this peer, and a peer
//!   probes at most `probe_batch` of them per `probe_every`;
//! * a merge changes pointers only by the rules of recovery (a closer successor, a closer
//!   predecessor), so it keeps lookup consistency within each former ring, and tells every
//!   range change to the user (`Responsibility`) like any other;
//! * merge input from the wire is validated like the rest (bad peers are counted and dropped).

use std::time::Duration;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{has_flaw, Peer, RingId};
use serde::{Deserialize, Serialize};

#[cfg(feature = "flaws")]
use super::Flaw;
use super::{Fixing, RelaxedRingMachine, RingOutput};
use crate::messages::{Body, Routable, Routed};

/// What merging did at one peer (see [`RelaxedRingMachine::merge_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeStats {
    /// Probes sent (`MergeLookup` to a passive peer).
    pub probes: u64,
    /// Probes that came back to this peer, or found its own successor: one ring, no merge.
    pub false_alarms: u64,
    /// Probes answered by a peer not in a ring.
    pub not_in_ring: u64,
    /// Probes (or notices) answered from another ring: merges this peer took part in.
    pub found: u64,
    /// Answers that gave this peer a closer successor.
    pub adopted: u64,
    /// Merge notices (`MergeSpread`) sent.
    pub spreads: u64,
    /// Merge notices dropped in the cooldown.
    pub cooled: u64,
}

/// A passive-list entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PassiveEntry {
    pub(super) peer: Peer,
    /// When it was added (it is dropped `passive_ttl` later).
    added: Time,
    /// When to probe it next.
    next_probe: Time,
    /// How long to wait after the next probe.
    backoff: Duration,
    /// The nonce of its latest probe (0: not probed yet).
    nonce: u64,
}

/// The merge part of a peer's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MergeState {
    pub(super) passive: Vec<PassiveEntry>,
    next_round: Time,
    next_nonce: u64,
    /// When this peer last started or passed on a merge notice.
    last_notice: Option<Time>,
    pub(super) stats: MergeStats,
}

impl RelaxedRingMachine {
    /// Puts `p` in the passive list (or refreshes its entry), first probed at `first`.
    pub(super) fn passive_add(&mut self, p: Peer, now: Time, first: Time) {
        if self.is_me(&p) || p.id == self.s.me.id {
            return;
        }
        let backoff = self.config.probe_every;
        let list = &mut self.s.merge.passive;
        if let Some(e) = list.iter_mut().find(|e| e.peer.addr == p.addr) {
            e.added = now;
            e.next_probe = e.next_probe.min(first);
            return;
        }
        list.push(PassiveEntry { peer: p, added: now, next_probe: first, backoff, nonce: 0 });
        if list.len() > self.config.passive_size {
            if let Some(i) = list.iter().enumerate().min_by_key(|(_, e)| e.added).map(|(i, _)| i) {
                list.remove(i);
            }
        }
    }

    /// Successor-list entries that a list from the successor no longer names go to the
    /// passive list: `old` is this peer's list before, the current one after. Only the
    /// failure detector's watches (the successor, and a few entries while repairing) are
    /// suspected; the other entries leave the list when the successor's list comes without
    /// them — crashed, left, or behind a partition that the successor sees and this peer's
    /// detector does not watch across. Probing them is what lets a merge after a partition
    /// into many small groups find the other sides without watching every entry. An entry
    /// pushed off the end (farther than the new last entry of a full list: a closer peer
    /// joined) is no such sign and is left out; a suspected one is in already (see
    /// `mark_crashed`).
    pub(super) fn passive_from_dropped(&mut self, old: &[Peer], now: Time) {
        if old.is_empty() || !self.in_ring() {
            return;
        }
        let me = self.s.me.id;
        let full = self.s.succ_list.len() >= self.config.succ_list_size;
        let last = self.s.succ_list.last().map(|p| p.id.distance_from(me));
        let first = now + self.config.probe_every;
        for p in old {
            let kept = self.s.succ_list.iter().any(|q| q.addr == p.addr);
            let off_the_end = full && last.is_some_and(|l| p.id.distance_from(me) > l);
            if kept || off_the_end || self.is_crashed(p.addr) || self.is_neighbour(p) {
                continue;
            }
            tracing::trace!(me = %me, dropped = %p.id, "successor list dropped a peer: passive");
            self.passive_add(*p, now, first);
        }
    }

    /// A finger dropped for silence goes to the passive list (it may be behind a partition).
    pub(super) fn passive_add_addr(&mut self, node: NodeAddr, now: Time) {
        if let Some(p) = self.fingers.peers().iter().find(|p| p.addr == node).copied() {
            let first = now + self.config.probe_every;
            self.passive_add(p, now, first);
        }
    }

    /// Whether `p` is one of the peers this peer uses as neighbours now (then it is no
    /// passive entry: it answers in this ring).
    pub(super) fn is_neighbour(&self, p: &Peer) -> bool {
        self.s.succ == Some(*p)
            || self.s.pred == Some(*p)
            || self.s.succ_list.contains(p)
            || self.s.pred_list.iter().any(|e| e.peer == *p)
    }

    /// Periodic work: drop old entries, probe those due (a few per round).
    pub(super) fn merge_tick<M>(&mut self, now: Time, out: &mut Vec<RingOutput<M>>) {
        if !self.in_ring() || has_flaw!(self, MergeOff) || now < self.s.merge.next_round {
            return;
        }
        self.s.merge.next_round = now + self.config.probe_every;
        let ttl = self.config.passive_ttl;
        let mut list = std::mem::take(&mut self.s.merge.passive);
        list.retain(|e| e.added + ttl > now && !self.is_neighbour(&e.peer));
        let mut due: Vec<usize> = (0..list.len())
            .filter(|i| list[*i].next_probe <= now && !self.is_crashed(list[*i].peer.addr))
            .collect();
        due.sort_by_key(|i| list[*i].next_probe);
        due.truncate(self.config.probe_batch);
        let mut probed = Vec::new();
        for i in due {
            self.s.merge.next_nonce = self.s.merge.next_nonce.wrapping_add(1).max(1);
            let nonce = self.s.merge.next_nonce;
            let e = &mut list[i];
            e.nonce = nonce;
            e.next_probe = now + e.backoff;
            e.backoff = (e.backoff * 2).min(self.config.probe_backoff_max);
            probed.push((e.peer, nonce));
        }
        if has_flaw!(self, ProbeNeverRetried) {
            // Broken on purpose: an entry is probed once, then forgotten.
            list.retain(|e| e.nonce == 0);
        }
        self.s.merge.passive = list;
        for (p, nonce) in probed {
            tracing::trace!(me = %self.s.me.id, to = %p.id, nonce, "merge probe");
            self.s.merge.stats.probes += 1;
            self.merge_lookup(p.addr, nonce, out);
        }
    }

    /// Sends an `mlookup` of this peer's identifier to `via`, to be routed in its ring.
    fn merge_lookup<M>(&self, via: NodeAddr, nonce: u64, out: &mut Vec<RingOutput<M>>) {
        let me = self.s.me;
        let what = Routable::MergeLookup { nonce };
        let r = Routed { key: me.id, origin: me, hops: 0, last: false, what };
        self.send(via, Body::Route(r), out);
    }

    /// Drops the passive entry probed with `nonce` (it answered).
    fn answered(&mut self, nonce: u64) {
        if nonce != 0 {
            self.s.merge.passive.retain(|e| e.nonce != nonce);
        }
    }

    /// A merge probe (routed) reached a peer that is not in a ring: say so (no `NotInRing`:
    /// the prober takes it for no successor).
    pub(super) fn merge_lookup_outside<M>(
        &self,
        origin: Peer,
        nonce: u64,
        out: &mut Vec<RingOutput<M>>,
    ) {
        self.send(origin.addr, Body::MergeNotInRing { nonce }, out);
    }

    /// At `o`, the owner of `origin`'s identifier: answer the probe.
    pub(super) fn on_merge_lookup<M>(
        &mut self,
        origin: Peer,
        nonce: u64,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if has_flaw!(self, MergeOff) {
            return;
        }
        if self.is_me(&origin) {
            // Routed in this peer's own ring and back: one ring.
            tracing::trace!(me = %self.s.me.id, nonce, "merge probe came back: one ring");
            self.s.merge.stats.false_alarms += 1;
            self.answered(nonce);
            return;
        }
        self.send(origin.addr, Body::MergeFound { nonce }, out);
        // The origin lies between the predecessor and this peer: the predecessor's successor
        // is the origin now (or a peer between them): the walk starts there.
        let me = self.s.me.id;
        if let Some(p) = self.s.pred.filter(|p| self.live(p) && *p != origin) {
            if origin.id.in_open(p.id, me) && !self.is_crashed(origin.addr) {
                let succ_list = self.s.succ_list.clone();
                self.send(p.addr, Body::FixRedirect { pred: origin, succ_list }, out);
            }
        }
        let _ = now;
    }

    /// At the prober: `o` owns this peer's identifier in the ring the probe was routed in.
    pub(super) fn on_merge_found<M>(
        &mut self,
        o: Peer,
        nonce: u64,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if !self.in_ring() || has_flaw!(self, MergeOff) {
            return;
        }
        self.answered(nonce);
        if self.s.succ == Some(o) {
            // This peer's successor: the same ring.
            self.s.merge.stats.false_alarms += 1;
            return;
        }
        if self.is_crashed(o.addr) {
            return; // the failure detector restores it, and the restore takes it
        }
        self.s.merge.stats.found += 1;
        tracing::trace!(me = %self.s.me.id, owner = %o.id, nonce, "merge: another ring");
        let me = self.s.me;
        let closer = match self.s.succ {
            None => true,
            Some(s) => self.is_me(&s) || o.id.in_open(me.id, s.id),
        };
        if closer {
            self.s.merge.stats.adopted += 1;
            let old = self.s.succ.filter(|s| self.live(s));
            let mut tail: Vec<Peer> = old.into_iter().collect();
            tail.extend(self.s.succ_list.iter().copied());
            self.s.succ = Some(o);
            self.s.succ_list = self.build_succ_list(o, &tail);
            let f = Fixing { target: o, sent: now, replaced: None, redirects: 0, repair: false };
            self.s.fixing = Some(f);
            self.learn(o);
            self.send(o.addr, Body::Fix, out);
        }
        if nonce != 0 {
            // Found by this peer's own probe: tell its ring.
            let until = me.id;
            self.notice(o, until, self.config.merge_depth, now, out);
        }
    }

    /// At the prober: the probed peer is not in a ring.
    pub(super) fn on_merge_not_in_ring(&mut self, _from: Peer, nonce: u64) {
        self.s.merge.stats.not_in_ring += 1;
        self.answered(nonce);
    }

    /// At a peer of the prober's ring: another ring is reachable through `foreign`.
    pub(super) fn on_merge_spread<M>(
        &mut self,
        _from: Peer,
        foreign: Peer,
        until: RingId,
        depth: u8,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if !self.in_ring() || has_flaw!(self, MergeOff) || !self.valid_peer(&foreign) {
            return;
        }
        if self.is_me(&foreign) {
            return;
        }
        if self.s.merge.last_notice.is_some_and(|t| now < t + self.config.merge_cooldown) {
            self.s.merge.stats.cooled += 1;
            return;
        }
        self.merge_lookup(foreign.addr, 0, out);
        self.notice(foreign, until, depth, now, out);
    }

    /// Passes a merge notice on over `(self, until)`: to the first live peer known in each of
    /// `fanout` equal shares, each with its share, `depth` more times.
    pub(super) fn notice<M>(
        &mut self,
        foreign: Peer,
        until: RingId,
        depth: u8,
        now: Time,
        out: &mut Vec<RingOutput<M>>,
    ) {
        if self.s.merge.last_notice.is_some_and(|t| now < t + self.config.merge_cooldown) {
            self.s.merge.stats.cooled += 1;
            return;
        }
        self.s.merge.last_notice = Some(now);
        if depth == 0 {
            return;
        }
        let me = self.s.me.id;
        // The share (self, until): the whole circle when until is this peer.
        let span = match until.distance_from(me) {
            0 => u64::MAX,
            d => d,
        };
        let f = u64::from(self.config.merge_fanout);
        let mut known: Vec<Peer> = self
            .fingers
            .peers()
            .iter()
            .chain(self.s.succ_list.iter())
            .chain(self.s.succ.iter())
            .filter(|p| self.live(p) && **p != foreign)
            .copied()
            .collect();
        known.sort_by_key(|p| p.id.distance_from(me));
        known.dedup();
        for i in 0..f {
            let lo = span / f * i;
            let hi = if i + 1 == f { span } else { span / f * (i + 1) };
            let target = known.iter().find(|p| {
                let d = p.id.distance_from(me);
                d > lo && d < hi
            });
            if let Some(t) = target {
                let end = me.offset(hi);
                self.s.merge.stats.spreads += 1;
                let body = Body::MergeSpread { foreign, until: end, depth: depth - 1 };
                self.send(t.addr, body, out);
            }
        }
    }
}
