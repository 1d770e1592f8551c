//! Checks of a ring overlay's properties over a global view: one [`RingView`] per live peer
//! at one instant. They know nothing of the implementation (the relaxed ring and Chord are
//! checked by the same code) nor of how the views were collected: the simulator reads them
//! between two steps ([`RingViews::snapshot`](crate::RingViews::snapshot)), the process
//! launcher of `selfman-ring-cluster` from the nodes' `view` lines.
//!
//! * [`overlap`]: **lookup consistency**, the safety property: the ranges that live peers
//!   consider themselves responsible for do not overlap (branches included). Reported with the
//!   key both peers claim.
//! * [`convergence`]: the ring has healed: the live peers form one ring in which successor and
//!   predecessor pointers agree with the sorted order of identifiers, each peer owns exactly
//!   `(pred, self]`, successor lists hold the next live peers, and fingers point at live peers;
//!   [`ring_convergence`] and [`dead_fingers`] are its two halves (the ring's pointers and
//!   lists; the routing tables), which scenarios check against different bounds.
//! * [`responsible`] and [`owner_of`]: who must answer a lookup once the ring has converged:
//!   the live peer with the smallest identifier at or after the key; [`lookup_fault`] compares
//!   an answer with it.
//! * [`overreaches`]: every owner whose range holds other owners' identifiers, with all the
//!   owners it covers (what [`overlap`] reports the first of), so that a scenario can tell an
//!   overlap a false suspicion explains from one nothing does.
//! * [`members`]: the views of the peers that have not left (the ones convergence is about).
//! * [`branches`]: the peers their predecessor does not point at (a relaxed ring's branches);
//!   [`ranges_partition`]: the ranges are the sorted partition (a ring with settled branches).
//!
//! Each check is shown catching the faults it names by the unit tests below, and by the broken
//! variants of the simulation suites (`ring-broken-*` in `selfman-tests`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use selfman_core::NodeAddr;

use crate::{LookupOutcome, Peer, Range, RingId, RingStatus, RingView};

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

/// An owner whose range holds the identifiers of other owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overreach {
    /// The peer whose range reaches too far back.
    pub peer: Peer,
    /// Its range.
    pub range: Range,
    /// The owners whose identifiers it holds, nearest first (going backwards from `peer`).
    pub covered: Vec<(Peer, Range)>,
}

impl fmt::Display for Overreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} owns {}, which holds ", self.peer, self.range)?;
        for (i, (p, r)) in self.covered.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} (owner of {r})", p.id)?;
        }
        Ok(())
    }
}

/// Every owner whose range holds other owners' identifiers, each with all the owners it
/// covers; empty exactly when [`overlap`] is `None` on the same owners.
///
/// `owners` are the live peers that own a range, in any order. Sorted by identifier, a range
/// that holds any other owner's identifier holds the one just before it (see [`overlap`]), so
/// the walk backwards from each owner stops at the first identifier its range does not hold.
pub fn overreaches(owners: &[(Peer, Range)]) -> Vec<Overreach> {
    let mut sorted = owners.to_vec();
    sorted.sort_by_key(|(p, _)| p.id);
    let n = sorted.len();
    let mut out = Vec::new();
    if n < 2 {
        return out;
    }
    for i in 0..n {
        let (me, range) = sorted[i];
        let mut covered = Vec::new();
        for back in 1..n {
            let (o, r) = sorted[(i + n - back) % n];
            if range.contains(o.id) || o.id == me.id {
                covered.push((o, r));
            } else {
                break;
            }
        }
        if !covered.is_empty() {
            out.push(Overreach { peer: me, range, covered });
        }
    }
    out
}

/// The views of the peers that are members or on their way in: every peer but those that
/// have [`RingStatus::Left`] (a peer that left may keep running, but it is no longer part of
/// the ring, and a finger or list entry pointing at it is stale).
pub fn members(views: &BTreeMap<NodeAddr, RingView>) -> BTreeMap<NodeAddr, RingView> {
    views
        .iter()
        .filter(|(_, v)| v.status != RingStatus::Left)
        .map(|(a, v)| (*a, v.clone()))
        .collect()
}

/// The peers whose predecessor does not have them as successor, each with that predecessor:
/// the members of a relaxed ring's branches (a peer its predecessor cannot reach hangs behind
/// its successor). Empty on a converged ring.
pub fn branches(views: &BTreeMap<NodeAddr, RingView>) -> Vec<(Peer, Peer)> {
    let by_addr: BTreeMap<NodeAddr, &RingView> = views.iter().map(|(a, v)| (*a, v)).collect();
    let mut out = Vec::new();
    for v in views.values().filter(|v| v.status == RingStatus::InRing) {
        let Some(p) = v.pred.filter(|p| *p != v.me) else { continue };
        if let Some(pv) = by_addr.get(&p.addr) {
            if pv.status == RingStatus::InRing && pv.succ != Some(v.me) {
                out.push((v.me, p));
            }
        }
    }
    out
}

/// The live peer responsible for `key` in a converged ring: the one with the smallest
/// identifier at or after `key`, wrapping around (`None` if no live peer is in a ring).
pub fn responsible(views: &BTreeMap<NodeAddr, RingView>, key: RingId) -> Option<Peer> {
    let in_ring = views.values().filter(|v| v.status == RingStatus::InRing).map(|v| &v.me);
    owner_of(in_ring, key)
}

/// The peer that owns `key` in a ring of exactly `peers`: the one with the smallest
/// identifier at or after `key`, wrapping around (`None` for no peers).
pub fn owner_of<'a>(peers: impl IntoIterator<Item = &'a Peer>, key: RingId) -> Option<Peer> {
    let ids: BTreeMap<RingId, Peer> = peers.into_iter().map(|p| (p.id, *p)).collect();
    ids.range(key..).next().or_else(|| ids.iter().next()).map(|(_, p)| *p)
}

/// What is wrong with `outcome` as the answer to a lookup of `key` in a converged ring of
/// `peers` (`None`: it names the owner, [`owner_of`]).
pub fn lookup_fault<'a>(
    peers: impl IntoIterator<Item = &'a Peer>,
    key: RingId,
    outcome: &LookupOutcome,
) -> Option<String> {
    let want = owner_of(peers, key);
    match outcome {
        LookupOutcome::Found { peer, .. } if Some(*peer) == want => None,
        LookupOutcome::Found { peer, .. } => {
            Some(format!("lookup of {key} answered by {peer}, the owner is {}", show(want)))
        }
        LookupOutcome::Unavailable(why) => Some(format!("lookup of {key} failed: {why}")),
    }
}

/// Every way in which the live peers do not (yet) form one converged ring; empty when they do:
/// [`ring_convergence`] and [`dead_fingers`] together.
///
/// `succ_list_len` is the implementation's successor-list size: each peer's list must hold the
/// next `min(succ_list_len, n - 1)` live peers in order. Every live peer must be in the ring.
pub fn convergence(views: &BTreeMap<NodeAddr, RingView>, succ_list_len: usize) -> Vec<String> {
    let mut errors = ring_convergence(views, succ_list_len);
    errors.extend(dead_fingers(views));
    errors
}

/// The fingers that point at peers that are not live (not among `views`), one message per
/// peer that has any; empty when every routing table is clean.
pub fn dead_fingers(views: &BTreeMap<NodeAddr, RingView>) -> Vec<String> {
    let live: BTreeSet<Peer> = views.values().map(|v| v.me).collect();
    let mut sorted: Vec<&RingView> = views.values().collect();
    sorted.sort_by_key(|v| v.me.id);
    let mut errors = Vec::new();
    for v in sorted {
        let dead: Vec<Peer> = v.fingers.iter().copied().filter(|f| !live.contains(f)).collect();
        if !dead.is_empty() {
            errors.push(format!(
                "{} has fingers to peers that are not live: [{}]",
                v.me,
                list(&dead)
            ));
        }
    }
    errors
}

/// The ranges part of [`ring_convergence`]: every live peer is in the ring and owns exactly
/// `(previous live peer, self]` — what a relaxed ring with branches still satisfies once it
/// has settled (pointers may skip a branch; ranges may not).
pub fn ranges_partition(views: &BTreeMap<NodeAddr, RingView>) -> Vec<String> {
    let mut sorted: Vec<&RingView> = views.values().collect();
    sorted.sort_by_key(|v| v.me.id);
    let n = sorted.len();
    let mut errors = Vec::new();
    for (i, v) in sorted.iter().enumerate() {
        let me = v.me;
        if v.status != RingStatus::InRing {
            errors.push(format!("{me} is {:?}, not in the ring", v.status));
            continue;
        }
        let prev = sorted[(i + n - 1) % n].me;
        let want = if n == 1 { Range::full(me.id) } else { Range::new(prev.id, me.id) };
        if v.range != Some(want) {
            errors.push(format!(
                "{me} owns {}, should own {want}",
                v.range.map_or("nothing".into(), |r| r.to_string())
            ));
        }
    }
    errors
}

/// The ring half of [`convergence`]: every live peer is in the ring, its successor and
/// predecessor are the next and previous live peers, it owns exactly `(pred, self]`, and its
/// successor list holds the next live peers in order. Fingers are not looked at.
pub fn ring_convergence(views: &BTreeMap<NodeAddr, RingView>, succ_list_len: usize) -> Vec<String> {
    let mut errors = Vec::new();
    let mut sorted: Vec<&RingView> = views.values().collect();
    sorted.sort_by_key(|v| v.me.id);
    let n = sorted.len();
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

    use super::{
        branches, convergence, dead_fingers, lookup_fault, members, overlap, overreaches, owner_of,
        ranges_partition, responsible, ring_convergence, BTreeMap, NodeAddr, Peer, Range, RingId,
        RingStatus, RingView,
    };
    use crate::{LookupOutcome, Unavailable};

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

    fn owners(views: &BTreeMap<NodeAddr, RingView>) -> Vec<(Peer, Range)> {
        views.values().filter_map(|v| v.range.map(|r| (v.me, r))).collect()
    }

    #[test]
    fn overreaches_list_every_owner_covered_and_agree_with_overlap() {
        let v = ring(&[10, 20, 30, 40], 2);
        assert!(overreaches(&owners(&v)).is_empty());
        // 40 grew over 30 and 20 (it suspected both): one overreach covering two owners.
        let mut v = ring(&[10, 20, 30, 40], 2);
        view_of(&mut v, 40).range = Some(Range::new(RingId(15), RingId(40)));
        let o = overreaches(&owners(&v));
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!(o[0].peer.id, RingId(40));
        let covered: Vec<RingId> = o[0].covered.iter().map(|(p, _)| p.id).collect();
        assert_eq!(covered, vec![RingId(30), RingId(20)]);
        assert!(overlap(&v).is_some());
        assert!(o[0].to_string().contains("holds 000000000000001e"), "{}", o[0]);
        // A lone peer's whole circle covers everyone, wrapping around zero.
        let mut v = ring(&[10, 20, 30], 2);
        view_of(&mut v, 10).range = Some(Range::full(RingId(10)));
        let o = overreaches(&owners(&v));
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].covered.len(), 2);
        // Two overreaching peers are two entries.
        let mut v = ring(&[10, 20, 30, 40], 2);
        view_of(&mut v, 20).range = Some(Range::new(RingId(5), RingId(20)));
        view_of(&mut v, 40).range = Some(Range::new(RingId(25), RingId(40)));
        assert_eq!(overreaches(&owners(&v)).len(), 2);
    }

    #[test]
    fn members_drop_peers_that_left_and_their_fingers_become_dead() {
        let mut v = ring(&[10, 20, 30], 2);
        view_of(&mut v, 20).status = RingStatus::Left;
        view_of(&mut v, 20).range = None;
        let m = members(&v);
        assert_eq!(m.len(), 2);
        // 10 and 30 still point at 20: stale pointers, stale fingers.
        assert!(!ring_convergence(&m, 2).is_empty());
        assert_eq!(dead_fingers(&m).len(), 2, "{:?}", dead_fingers(&m));
        assert!(dead_fingers(&v).is_empty(), "20 still runs: its fingers are live");
    }

    #[test]
    fn branches_name_the_peers_their_predecessor_does_not_point_at() {
        let v = ring(&[10, 15, 20, 30], 2);
        assert!(branches(&v).is_empty());
        let mut v = ring(&[10, 15, 20, 30], 2);
        view_of(&mut v, 10).succ = Some(peer(2, 20));
        let b = branches(&v);
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].0.id, b[0].1.id), (RingId(15), RingId(10)));
        // The halves of convergence: a branch is a ring fault, not a finger fault, and its
        // ranges are still the sorted partition.
        assert!(!ring_convergence(&v, 2).is_empty());
        assert!(dead_fingers(&v).is_empty());
        assert!(ranges_partition(&v).is_empty());
        view_of(&mut v, 20).range = Some(Range::new(RingId(10), RingId(20)));
        assert!(ranges_partition(&v).iter().any(|e| e.contains("should own")));
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

    #[test]
    fn a_killed_peer_still_named_is_a_fault_of_each_kind() {
        // 30 was killed: its view is gone, but 20 still points at it and 40 still owns from it.
        let mut v = ring(&[10, 20, 30, 40], 2);
        let dead = view_of(&mut v, 30).me;
        v.remove(&dead.addr);
        let faults = ring_convergence(&v, 2);
        for want in [
            "has successor",   // 20 → 30
            "has predecessor", // 40 ← 30
            "should own",      // 40 owns (30, 40]
            "successor list",  // 10 and 20 list 30
        ] {
            assert!(faults.iter().any(|f| f.contains(want)), "{want} missing in {faults:?}");
        }
        let fingers = dead_fingers(&v);
        assert!(fingers.iter().any(|f| f.contains("not live")), "{fingers:?}");
    }

    #[test]
    fn the_owner_is_the_first_peer_at_or_after_the_key() {
        let peers = [peer(0, 10), peer(1, 20), peer(2, u64::MAX - 1)];
        assert_eq!(owner_of(&peers, RingId(10)), Some(peers[0]));
        assert_eq!(owner_of(&peers, RingId(11)), Some(peers[1]));
        assert_eq!(owner_of(&peers, RingId(21)), Some(peers[2]));
        assert_eq!(owner_of(&peers, RingId(u64::MAX)), Some(peers[0]), "wraps around zero");
        assert_eq!(owner_of(&peers, RingId(0)), Some(peers[0]));
        assert_eq!(owner_of(&[], RingId(0)), None);
    }

    #[test]
    fn a_lookup_is_wrong_when_it_names_another_peer_or_fails() {
        let peers = [peer(0, 10), peer(1, 20)];
        let found = |p| LookupOutcome::Found { peer: p, hops: 1 };
        assert_eq!(lookup_fault(&peers, RingId(15), &found(peers[1])), None);
        let wrong = lookup_fault(&peers, RingId(15), &found(peers[0])).unwrap();
        assert!(wrong.contains("the owner is"), "{wrong}");
        let failed = LookupOutcome::Unavailable(Unavailable::Timeout);
        assert!(lookup_fault(&peers, RingId(15), &failed).unwrap().contains("failed"));
    }
}
