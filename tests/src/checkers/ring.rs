//! Checkers of a ring overlay's properties, over a global view: one [`RingView`] per live node
//! at one instant (what [`RingViews::snapshot`](selfman_ports::RingViews::snapshot) gives
//! between two simulation steps). They know nothing of the implementation: the relaxed ring and
//! Chord are checked by the same code.
//!
//! * [`overlap`]: **lookup consistency**, the safety property: the ranges that live peers
//!   consider themselves responsible for do not overlap (branches included). Reported with the
//!   key both peers claim.
//! * [`convergence`]: the ring has healed: the live peers form one ring in which successor and
//!   predecessor pointers agree with the sorted order of identifiers, each peer owns exactly
//!   `(pred, self]`, successor lists hold the next live peers, and fingers point at live peers.
//! * [`responsible`]: who must answer a lookup once the ring has converged: the live peer with
//!   the smallest identifier at or after the key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use selfman_core::NodeAddr;
use selfman_ports::{Peer, Range, RingId, RingStatus, RingView};

/// Two live peers responsible for one key at the same instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// A key both claim (the second peer's identifier, which the first one's range contains).
    pub key: RingId,
    /// The peer whose range reaches too far back.
    pub first: Peer,
    /// Its range.
    pub first_range: Range,
    /// The peer whose identifier it covers.
    pub second: Peer,
    /// Its range.
    pub second_range: Range,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {} is claimed by {} (range {}) and {} (range {})",
            self.key, self.first, self.first_range, self.second, self.second_range
        )
    }
}

/// The first pair of live peers whose ranges overlap, if any (lookup consistency is violated
/// exactly when this is `Some`).
///
/// Why one pass suffices: sort the peers that own a range by identifier. Each peer's range ends
/// at its own identifier, so if a peer's range contains any other owner's identifier it also
/// contains the identifier of the owner just before it on the circle; and two arcs overlap
/// exactly when one contains the other's end. So the ranges are disjoint iff no range contains
/// its preceding owner's identifier.
pub fn overlap(views: &BTreeMap<NodeAddr, RingView>) -> Option<Overlap> {
    let mut owners: Vec<(Peer, Range)> =
        views.values().filter_map(|v| v.range.map(|r| (v.me, r))).collect();
    owners.sort_by_key(|(p, _)| p.id);
    if owners.len() < 2 {
        return None;
    }
    for i in 0..owners.len() {
        let (me, range) = owners[i];
        let (prev, prev_range) = owners[(i + owners.len() - 1) % owners.len()];
        // Two peers with one identifier claim that identifier twice.
        if range.contains(prev.id) || prev.id == me.id {
            return Some(Overlap {
                key: prev.id,
                first: me,
                first_range: range,
                second: prev,
                second_range: prev_range,
            });
        }
    }
    None
}

/// The live peer responsible for `key` in a converged ring: the one with the smallest
/// identifier at or after `key`, wrapping around (`None` if no live peer is in a ring).
pub fn responsible(views: &BTreeMap<NodeAddr, RingView>, key: RingId) -> Option<Peer> {
    let ids: BTreeMap<RingId, Peer> = views
        .values()
        .filter(|v| v.status == RingStatus::InRing)
        .map(|v| (v.me.id, v.me))
        .collect();
    ids.range(key..).next().or_else(|| ids.iter().next()).map(|(_, p)| *p)
}

/// Every way in which the live peers do not (yet) form one converged ring; empty when they do.
///
/// `succ_list_len` is the implementation's successor-list size: each peer's list must hold the
/// next `min(succ_list_len, n - 1)` live peers in order. Every live peer must be in the ring.
pub fn convergence(views: &BTreeMap<NodeAddr, RingView>, succ_list_len: usize) -> Vec<String> {
    let mut errors = Vec::new();
    let mut sorted: Vec<&RingView> = views.values().collect();
    sorted.sort_by_key(|v| v.me.id);
    let n = sorted.len();
    let live: BTreeSet<Peer> = sorted.iter().map(|v| v.me).collect();
    for (i, v) in sorted.iter().enumerate() {
        let me = v.me;
        if v.status != RingStatus::InRing {
            errors.push(format!("{me} is {:?}, not in the ring", v.status));
            continue;
        }
        let next = sorted[(i + 1) % n].me;
        let prev = sorted[(i + n - 1) % n].me;
        if n > 1 && v.succ != Some(next) {
            errors
                .push(format!("{me} has successor {}, the next live peer is {next}", show(v.succ)));
        }
        if n > 1 && v.pred != Some(prev) {
            errors.push(format!(
                "{me} has predecessor {}, the previous live peer is {prev}",
                show(v.pred)
            ));
        }
        let want = if n == 1 { Range::full(me.id) } else { Range::new(prev.id, me.id) };
        if v.range != Some(want) {
            errors.push(format!(
                "{me} owns {}, should own {want}",
                v.range.map_or("nothing".into(), |r| r.to_string())
            ));
        }
        let expected: Vec<Peer> =
            (1..n).take(succ_list_len).map(|k| sorted[(i + k) % n].me).collect();
        if v.succ_list != expected {
            errors.push(format!(
                "{me} has successor list [{}], the next live peers are [{}]",
                list(&v.succ_list),
                list(&expected)
            ));
        }
        let dead: Vec<Peer> = v.fingers.iter().copied().filter(|f| !live.contains(f)).collect();
        if !dead.is_empty() {
            errors.push(format!("{me} has fingers to peers that are not live: [{}]", list(&dead)));
        }
    }
    errors
}

fn show(p: Option<Peer>) -> String {
    p.map_or("none".to_owned(), |p| p.to_string())
}

fn list(ps: &[Peer]) -> String {
    ps.iter().map(Peer::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use selfman_core::NodeId;

    use super::*;

    fn peer(i: u32, id: u64) -> Peer {
        Peer::new(RingId(id), NodeAddr::simulated(i, NodeId(u64::from(i) + 1)))
    }

    /// A converged ring of peers with these identifiers (succ lists of `l`, fingers = succ).
    fn ring(ids: &[u64], l: usize) -> BTreeMap<NodeAddr, RingView> {
        let peers: Vec<Peer> = ids.iter().enumerate().map(|(i, &id)| peer(i as u32, id)).collect();
        let mut sorted = peers.clone();
        sorted.sort_by_key(|p| p.id);
        let n = sorted.len();
        sorted
            .iter()
            .enumerate()
            .map(|(i, &me)| {
                let next = sorted[(i + 1) % n];
                let prev = sorted[(i + n - 1) % n];
                let range = if n == 1 { Range::full(me.id) } else { Range::new(prev.id, me.id) };
                let succ_list: Vec<Peer> = (1..n).take(l).map(|k| sorted[(i + k) % n]).collect();
                let v = RingView {
                    me,
                    status: RingStatus::InRing,
                    range: Some(range),
                    succ: (n > 1).then_some(next),
                    pred: (n > 1).then_some(prev),
                    succ_list: succ_list.clone(),
                    pred_list: Vec::new(),
                    fingers: succ_list,
                    crashed: Vec::new(),
                };
                (me.addr, v)
            })
            .collect()
    }

    fn view_of(views: &mut BTreeMap<NodeAddr, RingView>, id: u64) -> &mut RingView {
        views.values_mut().find(|v| v.me.id == RingId(id)).unwrap()
    }

    #[test]
    fn a_converged_ring_passes_both_checks() {
        for ids in [&[5u64][..], &[5, 10], &[u64::MAX, 0, 7, 1 << 40], &[3, 1, 2, 9, 8, 100, 50]] {
            let v = ring(ids, 3);
            assert_eq!(overlap(&v), None, "{ids:?}");
            assert_eq!(convergence(&v, 3), Vec::<String>::new(), "{ids:?}");
        }
    }

    #[test]
    fn overlapping_ranges_are_caught_with_the_key_and_both_peers() {
        let mut v = ring(&[10, 20, 30], 2);
        // 30 believes its predecessor is 10 (it never heard of 20's join): it claims (10, 30].
        view_of(&mut v, 30).range = Some(Range::new(RingId(10), RingId(30)));
        let o = overlap(&v).expect("the overlap is caught");
        assert_eq!((o.key, o.first.id, o.second.id), (RingId(20), RingId(30), RingId(20)));
        // Wrapping around zero.
        let mut v = ring(&[10, 20, u64::MAX - 1], 2);
        view_of(&mut v, 10).range = Some(Range::new(RingId(u64::MAX - 5), RingId(10)));
        assert_eq!(overlap(&v).map(|o| o.key), Some(RingId(u64::MAX - 1)));
        // A lone peer's whole circle overlaps anyone else's range.
        let mut v = ring(&[10, 20], 2);
        view_of(&mut v, 10).range = Some(Range::full(RingId(10)));
        assert!(overlap(&v).is_some());
        // Peers that own nothing (joining, leaving) claim nothing.
        let mut v = ring(&[10, 20, 30], 2);
        view_of(&mut v, 30).range = None;
        assert_eq!(overlap(&v), None);
    }

    #[test]
    fn a_branch_is_consistent_but_not_converged() {
        // q = 15 joined between 10 and 20 but 10 never learned of it (10 cannot reach 15): 20
        // gave (10, 15] to 15 and kept (15, 20]; 10 still points at 20. No overlap.
        let mut v = ring(&[10, 15, 20, 30], 2);
        view_of(&mut v, 10).succ = Some(peer(2, 20));
        assert_eq!(overlap(&v), None);
        let errors = convergence(&v, 2);
        assert!(
            errors.iter().any(|e| e.contains("has successor") && e.contains("the next live peer")),
            "{errors:?}"
        );
    }

    #[test]
    fn each_convergence_fault_is_named() {
        let mut v = ring(&[10, 20, 30, 40], 3);
        view_of(&mut v, 20).pred = None;
        view_of(&mut v, 30).succ_list.pop();
        view_of(&mut v, 40).fingers.push(peer(9, 99));
        view_of(&mut v, 10).status = RingStatus::Joining;
        let errors = convergence(&v, 3);
        for want in ["has predecessor none", "successor list", "not live", "Joining"] {
            assert!(errors.iter().any(|e| e.contains(want)), "{want} missing from {errors:?}");
        }
        let mut v = ring(&[10, 20], 3);
        view_of(&mut v, 20).range = Some(Range::new(RingId(5), RingId(20)));
        assert!(convergence(&v, 3).iter().any(|e| e.contains("should own")));
    }

    #[test]
    fn responsible_is_the_first_peer_at_or_after_the_key() {
        let v = ring(&[10, 20, 30], 2);
        assert_eq!(responsible(&v, RingId(10)).map(|p| p.id), Some(RingId(10)));
        assert_eq!(responsible(&v, RingId(11)).map(|p| p.id), Some(RingId(20)));
        assert_eq!(responsible(&v, RingId(31)).map(|p| p.id), Some(RingId(10)));
        assert_eq!(responsible(&v, RingId(0)).map(|p| p.id), Some(RingId(10)));
        assert_eq!(responsible(&BTreeMap::new(), RingId(0)), None);
    }
}
