//! The k-ary finger table (DKS; Beernet's `FingerTable.oz`): [`Fingers`].
//!
//! Invariants:
//! * the ideal identifiers are `me + j·N/k^i` for `j = 1..k-1` and every `i >= 1` with
//!   `N/k^i >= 1` (`N = 2^64`); the finger of an ideal identifier is the **first known peer at
//!   or after it**;
//! * the table stores only peers that are the finger of at least one ideal identifier, sorted
//!   by distance from `me`, one per identifier: a peer learned that is no slot's best is
//!   forgotten at once, so the table holds at most one peer per slot and, on a ring of `n`
//!   peers, about `(k-1)·log_k n` distinct peers;
//! * it never holds `me`.
//!
//! Routing asks for the **closest preceding** peer of a key (the known peer farthest from `me`
//! that is still before the key), which roughly divides the remaining distance by `k` at every
//! hop: `O(log_k n)` hops.

use std::sync::OnceLock;

use selfman_core::NodeAddr;
use selfman_ports::{Peer, Range, RingId};

/// The ideal distances of each arity (index `k`, `2..=64`), computed once per process: they
/// depend on `k` only, so every peer of a simulation shares one table, which stays in the
/// cache (a table of its own per peer was 96 words at `k = 4` that `learn`'s binary search
/// fetched from memory at nearly every call in a large simulation).
static IDEALS: [OnceLock<Vec<u64>>; 65] = [const { OnceLock::new() }; 65];

/// The shared table of [`ideal_distances`]`(k)`, `k` in `2..=64`.
fn shared_ideals(k: u32) -> &'static [u64] {
    let k = k.clamp(2, 64);
    IDEALS[k as usize].get_or_init(|| ideal_distances(k))
}

/// A k-ary finger table for the peer at `me`.
#[derive(Clone, Debug)]
pub struct Fingers {
    me: RingId,
    /// Distances of the ideal identifiers from `me`, ascending, distinct (shared by every
    /// table of the same arity).
    ideals: &'static [u64],
    /// The fingers, by ascending distance from `me`.
    peers: Vec<Peer>,
    /// The distance from `me` of `peers[0]` (`u64::MAX` if there is none), kept beside the
    /// table so that [`Fingers::forget_nearer_than`]'s usual answer, after every input of
    /// the machine, reads no memory outside the machine (every mutation ends in
    /// [`Fingers::sync`]).
    nearest: u64,
}

impl Fingers {
    /// An empty table of arity `k` (clamped to `2..=64`) for the peer at `me`.
    pub fn new(me: RingId, k: u32) -> Fingers {
        Fingers { me, ideals: shared_ideals(k), peers: Vec::new(), nearest: u64::MAX }
    }

    /// The fingers, nearest first.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Number of ideal identifiers (slots).
    pub fn slots(&self) -> usize {
        self.ideals.len()
    }

    /// The ideal identifier of slot `i` (slots ordered by distance from `me`).
    pub fn ideal(&self, i: usize) -> RingId {
        self.me.offset(self.ideals[i % self.ideals.len()])
    }

    /// The slots whose ideal identifier lies beyond `distance` from `me` (the ones a
    /// successor at that distance does not already serve), as a range of slot numbers.
    pub fn slots_beyond(&self, distance: u64) -> std::ops::Range<usize> {
        let first = self.ideals.partition_point(|&d| d <= distance);
        first..self.ideals.len()
    }

    /// Recomputes `nearest` after a change of `peers`.
    fn sync(&mut self) {
        self.nearest = self.peers.first().map_or(u64::MAX, |q| q.id.distance_from(self.me));
    }

    /// Learns that `p` exists; returns whether the table changed.
    ///
    /// `O(log)`: `p` at distance `d` is some slot's first known peer iff an ideal distance
    /// lies in `(d', d]`, `d'` the distance of the known peer just before it; and inserting
    /// it can take slots only from the known peer just after it, which is kept iff an ideal
    /// still lies between the two. No other entry changes (the table was pruned before).
    pub fn learn(&mut self, p: Peer) -> bool {
        if p.id == self.me {
            return false;
        }
        let me = self.me;
        let d = p.id.distance_from(me);
        let at = self.peers.partition_point(|q| q.id.distance_from(me) < d);
        if self.peers.get(at).is_some_and(|q| q.id == p.id) {
            if self.peers[at] == p {
                return false;
            }
            // Same position, another node (a new incarnation): the newest word wins (at the
            // same distance: `nearest` stays).
            self.peers[at] = p;
            return true;
        }
        let before = at.checked_sub(1).map_or(0, |i| self.peers[i].id.distance_from(me));
        if !self.ideal_in(before, d) {
            return false; // no slot's first peer: forgotten at once
        }
        self.peers.insert(at, p);
        if let Some(next) = self.peers.get(at + 1) {
            if !self.ideal_in(d, next.id.distance_from(me)) {
                self.peers.remove(at + 1);
            }
        }
        self.sync();
        true
    }

    /// Whether an ideal distance lies in `(after, upto]`.
    fn ideal_in(&self, after: u64, upto: u64) -> bool {
        let first = self.ideals.partition_point(|&i| i <= after);
        self.ideals.get(first).is_some_and(|&i| i <= upto)
    }

    /// Learns `owner` as the answer of a lookup of `ideal`: no peer lies between them (the
    /// owner is the first peer at or after `ideal`), so fingers there are forgotten.
    pub fn learn_authoritative(&mut self, ideal: RingId, owner: Peer) -> bool {
        let me = self.me;
        let (lo, hi) = (ideal.distance_from(me), owner.id.distance_from(me));
        let before = self.peers.len();
        if lo <= hi {
            self.peers.retain(|q| {
                let d = q.id.distance_from(me);
                !(lo <= d && d < hi)
            });
        }
        let removed = before != self.peers.len();
        self.sync();
        self.learn(owner) || removed
    }

    /// Forgets the fingers nearer than `distance` from `me` (closer than a successor at that
    /// distance, which says nobody lies between); returns whether any was. `O(log)` when there
    /// is none (they are a prefix of the table).
    pub fn forget_nearer_than(&mut self, distance: u64) -> bool {
        let me = self.me;
        // The usual answer (it runs after every input), without reading the table.
        if self.nearest >= distance {
            return false;
        }
        let at = self.peers.partition_point(|q| q.id.distance_from(me) < distance);
        self.peers.drain(..at);
        self.sync();
        at > 0
    }

    /// Forgets the fingers inside `range`, the range this peer owns: no ring member lies
    /// there (it would be the predecessor), so they are peers that crashed, left or are
    /// still joining; returns whether any was. (A refresh would never drop them: the ideal
    /// identifiers in that range are this peer's own keys, which it does not look up.)
    pub fn forget_within(&mut self, range: Range) -> bool {
        let before = self.peers.len();
        self.peers.retain(|q| !range.contains(q.id));
        self.sync();
        before != self.peers.len()
    }

    /// Forgets the peer on `node`; returns whether it was a finger.
    pub fn remove(&mut self, node: NodeAddr) -> bool {
        let before = self.peers.len();
        self.peers.retain(|p| p.addr != node);
        self.sync();
        before != self.peers.len()
    }

    /// The finger farthest from `me` that lies strictly between `me` and `key`.
    pub fn closest_preceding(&self, key: RingId) -> Option<Peer> {
        let dk = key.distance_from(self.me);
        let at = self.peers.partition_point(|q| q.id.distance_from(self.me) < dk);
        at.checked_sub(1).map(|i| self.peers[i])
    }
}

/// `j·2^64/k^i` for `j = 1..k-1`, `i = 1..` while `2^64/k^i >= 1`, ascending and distinct.
fn ideal_distances(k: u32) -> Vec<u64> {
    let mut out = Vec::new();
    let mut step: u128 = 1u128 << 64;
    loop {
        step /= u128::from(k);
        if step == 0 {
            break;
        }
        for j in 1..u128::from(k) {
            // `j·step < k·step <= 2^64`: fits.
            out.push((j * step) as u64);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use selfman_core::{NodeAddr, NodeId};
    use selfman_ports::{Peer, Range, RingId};

    use super::{ideal_distances, shared_ideals, Fingers};

    fn peer(id: u64) -> Peer {
        Peer::new(RingId(id), NodeAddr::simulated((id % 1_000_000) as u32, NodeId(id | 1)))
    }

    #[test]
    fn ideal_identifiers_are_k_ary() {
        let d = ideal_distances(4);
        assert_eq!(d.len(), 3 * 32);
        assert_eq!(d[d.len() - 3..], [1 << 62, 2 << 62, 3 << 62]);
        assert_eq!(d[..3], [1, 2, 3]);
        let d = ideal_distances(2);
        assert_eq!(d.len(), 64);
        assert_eq!(*d.last().unwrap(), 1 << 63);
        // k = 3 does not divide 2^64: the steps round down but stay distinct and ascending.
        let d = ideal_distances(3);
        assert!(d.windows(2).all(|w| w[0] < w[1]));
    }

    /// The shared tables are the ones a table of its own would compute, arity clamped as
    /// `Fingers::new` clamps it.
    #[test]
    fn shared_ideal_tables_match_their_arity() {
        for k in 2..=64 {
            assert_eq!(shared_ideals(k), ideal_distances(k).as_slice(), "k = {k}");
        }
        assert_eq!(shared_ideals(0), shared_ideals(2));
        assert_eq!(shared_ideals(1000), shared_ideals(64));
        assert_eq!(Fingers::new(RingId(5), 1).slots(), ideal_distances(2).len());
    }

    #[test]
    fn a_finger_is_the_first_known_peer_at_or_after_its_ideal() {
        let me = RingId(0);
        let mut f = Fingers::new(me, 4);
        let q = 1u64 << 62;
        // Peers just after the quarter, the half and three quarters, and one in between.
        for id in [q + 5, 2 * q + 5, 3 * q + 5, q + 1000] {
            f.learn(peer(id));
        }
        let ids: Vec<u64> = f.peers().iter().map(|p| p.id.0).collect();
        // q + 1000 is no slot's first peer after its ideal (q + 5 comes first): forgotten.
        assert_eq!(ids, vec![q + 5, 2 * q + 5, 3 * q + 5]);
        // A peer closer to an ideal replaces the one it beats and frees its slot.
        assert!(f.learn(peer(2 * q)));
        let ids: Vec<u64> = f.peers().iter().map(|p| p.id.0).collect();
        assert_eq!(ids, vec![q + 5, 2 * q, 3 * q + 5]);
        assert!(!f.learn(peer(2 * q)), "learning a known finger changes nothing");
        assert!(!f.learn(peer(0)), "never me");
    }

    #[test]
    fn small_distances_keep_the_nearest_peers() {
        let mut f = Fingers::new(RingId(100), 4);
        for id in [101, 102, 103, 104, 120] {
            f.learn(peer(id));
        }
        let ids: Vec<u64> = f.peers().iter().map(|p| p.id.0).collect();
        // Ideals at distances 1, 2, 3, 4, 8, 12, 16, 32, …: the peer at distance 20 is the
        // first after 8, 12 and 16, so it stays too.
        assert_eq!(ids, vec![101, 102, 103, 104, 120]);
    }

    #[test]
    fn closest_preceding_wraps_around_zero() {
        let me = RingId(u64::MAX - 100);
        let mut f = Fingers::new(me, 4);
        for id in [u64::MAX - 50, 10, 1 << 62, 1 << 63] {
            f.learn(peer(id));
        }
        assert_eq!(f.closest_preceding(RingId(20)).map(|p| p.id.0), Some(10));
        assert_eq!(f.closest_preceding(RingId(10)).map(|p| p.id.0), Some(u64::MAX - 50));
        assert_eq!(f.closest_preceding(RingId(u64::MAX - 60)), None);
        assert_eq!(f.closest_preceding(RingId(u64::MAX - 101)).map(|p| p.id.0), Some(1 << 63));
    }

    #[test]
    fn removal_and_new_incarnations() {
        let mut f = Fingers::new(RingId(0), 4);
        let p = peer(1 << 62);
        f.learn(p);
        let p2 = Peer::new(p.id, NodeAddr::simulated(7, NodeId(99)));
        assert!(f.learn(p2));
        assert_eq!(f.peers(), &[p2]);
        assert!(!f.remove(p.addr));
        assert!(f.remove(p2.addr));
        assert!(f.peers().is_empty());
    }

    #[test]
    fn slots_beyond_the_successor() {
        let f = Fingers::new(RingId(0), 4);
        assert_eq!(f.slots_beyond(0).len(), 96);
        assert_eq!(f.slots_beyond(u64::MAX).len(), 0);
        let r = f.slots_beyond(1 << 62);
        assert_eq!(r.len(), 2);
        assert_eq!(f.ideal(r.start), RingId(2 << 62));
    }

    /// The table as the invariant defines it, computed from scratch: for every ideal, the
    /// first known peer at or after it.
    fn model(me: RingId, k: u32, known: &[Peer]) -> Vec<Peer> {
        let mut sorted: Vec<Peer> = known.iter().copied().filter(|p| p.id != me).collect();
        sorted.sort_by_key(|p| p.id.distance_from(me));
        sorted.dedup_by_key(|p| p.id);
        let mut keep: Vec<Peer> = ideal_distances(k)
            .iter()
            .filter_map(|&i| sorted.iter().find(|p| p.id.distance_from(me) >= i).copied())
            .collect();
        keep.sort_by_key(|p| p.id.distance_from(me));
        keep.dedup();
        keep
    }

    /// The cached distance of the nearest finger is the table's.
    fn assert_nearest(f: &Fingers) {
        let want = f.peers().first().map_or(u64::MAX, |q| q.id.distance_from(f.me));
        assert_eq!(f.nearest, want, "nearest out of date for {:?}", f.peers());
    }

    /// Every kind of change keeps the cached nearest distance right, and
    /// `forget_nearer_than` (which answers from it) forgets exactly the fingers nearer than
    /// the distance it is given.
    #[test]
    fn every_change_keeps_the_nearest_finger_distance() {
        let mut rng = selfman_core::Rng::seeded(11);
        for round in 0..300 {
            let me = RingId(rng.next_u64());
            let mut f = Fingers::new(me, [2, 4, 8][round % 3]);
            for _ in 0..60 {
                let p = peer(me.0.wrapping_add(rng.next_u64() >> rng.below(64)));
                match rng.below(6) {
                    0 | 1 => {
                        f.learn(p);
                    }
                    2 => {
                        let owner = f.peers().get(rng.below(4) as usize).copied().unwrap_or(p);
                        f.learn_authoritative(p.id, owner);
                    }
                    3 => {
                        let d = rng.next_u64() >> rng.below(64);
                        let kept: Vec<Peer> = f
                            .peers()
                            .iter()
                            .copied()
                            .filter(|q| q.id.distance_from(me) >= d)
                            .collect();
                        let some = kept.len() != f.peers().len();
                        assert_eq!(f.forget_nearer_than(d), some);
                        assert_eq!(f.peers(), kept.as_slice());
                    }
                    4 => {
                        let r = Range::new(me.offset(rng.next_u64() >> 1), me);
                        f.forget_within(r);
                    }
                    _ => {
                        if let Some(q) = f.peers().get(rng.below(8) as usize).copied() {
                            assert!(f.remove(q.addr));
                        }
                    }
                }
                assert_nearest(&f);
            }
        }
    }

    #[test]
    fn learning_in_any_order_keeps_exactly_each_slots_first_peer() {
        let mut rng = selfman_core::Rng::seeded(7);
        for round in 0..200 {
            let me = RingId(rng.next_u64());
            let k = [2, 3, 4, 8][round % 4];
            let mut f = Fingers::new(me, k);
            let mut known = Vec::new();
            for _ in 0..(round % 60 + 1) {
                // Spread over every scale: near peers and far ones.
                let d = rng.next_u64() >> rng.below(64);
                let p = peer(me.0.wrapping_add(d));
                known.push(p);
                f.learn(p);
                assert_eq!(f.peers(), model(me, k, &known).as_slice(), "round {round}");
                assert_nearest(&f);
            }
        }
    }
}
