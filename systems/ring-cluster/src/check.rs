//! Checks of a ring over the views its live peers report: has it formed (or repaired itself)
//! into one ring, and does a lookup name the right owner?
//!
//! The input is one [`RingView`] per live peer, as the peers last reported them (the
//! launcher reads them from the nodes' `view` lines). The checks know nothing of how the
//! views were collected:
//!
//! * [`pointer_faults`] is empty exactly when the live peers form **one ring in the sorted
//!   order of their identifiers**: every one in the ring, each one's successor the next live
//!   peer and predecessor the previous one, each owning exactly `(pred, self]`, and each
//!   successor list holding the next live peers in order;
//! * [`finger_faults`] is empty when no routing table names a peer that is not live;
//! * [`owner`] is the peer that must answer a lookup of a key in such a ring: the live peer
//!   with the smallest identifier at or after the key, wrapping around; [`lookup_fault`]
//!   compares an answer with it.
//!
//! (The simulation suites in `tests/` have the same checks over the simulator's global view;
//! these work on views that arrived over pipes from other processes.)

use std::collections::{BTreeMap, BTreeSet};

use selfman_core::NodeAddr;
use selfman_ports::{LookupOutcome, Peer, Range, RingId, RingStatus, RingView};

/// Every way in which the live peers' views do not form one ring in sorted order (empty when
/// they do). `succ_list_len` is the ring's successor-list size: each list must hold the next
/// `min(succ_list_len, n - 1)` live peers.
pub fn pointer_faults(views: &BTreeMap<NodeAddr, RingView>, succ_list_len: usize) -> Vec<String> {
    let mut faults = Vec::new();
    let sorted = sorted_peers(views);
    let n = sorted.len();
    for (i, v) in sorted.iter().enumerate() {
        let me = v.me;
        if v.status != RingStatus::InRing {
            faults.push(format!("{me} is {:?}, not in the ring", v.status));
            continue;
        }
        let next = sorted[(i + 1) % n].me;
        let prev = sorted[(i + n - 1) % n].me;
        if n > 1 && v.succ != Some(next) {
            faults
                .push(format!("{me} has successor {}, the next live peer is {next}", show(v.succ)));
        }
        if n > 1 && v.pred != Some(prev) {
            faults.push(format!(
                "{me} has predecessor {}, the previous live peer is {prev}",
                show(v.pred)
            ));
        }
        let want = if n == 1 { Range::full(me.id) } else { Range::new(prev.id, me.id) };
        if v.range != Some(want) {
            let has = v.range.map_or("nothing".to_owned(), |r| r.to_string());
            faults.push(format!("{me} owns {has}, should own {want}"));
        }
        let expected: Vec<Peer> =
            (1..n).take(succ_list_len).map(|k| sorted[(i + k) % n].me).collect();
        if v.succ_list != expected {
            faults.push(format!(
                "{me} has successor list [{}], the next live peers are [{}]",
                list(&v.succ_list),
                list(&expected)
            ));
        }
    }
    faults
}

/// Every routing table entry that names a peer that is not live (empty when none does).
pub fn finger_faults(views: &BTreeMap<NodeAddr, RingView>) -> Vec<String> {
    let live: BTreeSet<Peer> = views.values().map(|v| v.me).collect();
    views
        .values()
        .filter_map(|v| {
            let dead: Vec<Peer> = v.fingers.iter().copied().filter(|f| !live.contains(f)).collect();
            (!dead.is_empty()).then(|| {
                format!("{} has fingers to peers that are not live: [{}]", v.me, list(&dead))
            })
        })
        .collect()
}

/// The live peer that owns `key` in a ring of the given peers: the one with the smallest
/// identifier at or after `key`, wrapping around (`None` for no peers).
pub fn owner<'a>(peers: impl IntoIterator<Item = &'a Peer>, key: RingId) -> Option<Peer> {
    let ids: BTreeMap<RingId, Peer> = peers.into_iter().map(|p| (p.id, *p)).collect();
    ids.range(key..).next().or_else(|| ids.iter().next()).map(|(_, p)| *p)
}

/// What is wrong with `outcome` as the answer to a lookup of `key` in a ring of `peers`
/// (`None`: it names the owner).
pub fn lookup_fault<'a>(
    peers: impl IntoIterator<Item = &'a Peer>,
    key: RingId,
    outcome: &LookupOutcome,
) -> Option<String> {
    let want = owner(peers, key);
    match outcome {
        LookupOutcome::Found { peer, .. } if Some(*peer) == want => None,
        LookupOutcome::Found { peer, .. } => {
            Some(format!("lookup of {key} answered by {peer}, the owner is {}", show(want)))
        }
        LookupOutcome::Unavailable(why) => Some(format!("lookup of {key} failed: {why}")),
    }
}

fn sorted_peers(views: &BTreeMap<NodeAddr, RingView>) -> Vec<&RingView> {
    let mut sorted: Vec<&RingView> = views.values().collect();
    sorted.sort_by_key(|v| v.me.id);
    sorted
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
    use selfman_ports::Unavailable;

    use super::{finger_faults, lookup_fault, owner, pointer_faults};
    use selfman_core::NodeAddr;
    use selfman_ports::{LookupOutcome, Peer, Range, RingId, RingStatus, RingView};
    use std::collections::BTreeMap;

    fn peer(i: u32, id: u64) -> Peer {
        Peer::new(RingId(id), NodeAddr::simulated(i, NodeId(u64::from(i) + 1)))
    }

    /// A formed ring of peers with these identifiers (successor lists of `l`, fingers =
    /// successor list).
    fn ring(ids: &[u64], l: usize) -> BTreeMap<NodeAddr, RingView> {
        let mut sorted: Vec<Peer> =
            ids.iter().enumerate().map(|(i, &id)| peer(i as u32, id)).collect();
        sorted.sort_by_key(|p| p.id);
        let n = sorted.len();
        (0..n)
            .map(|i| {
                let me = sorted[i];
                let (next, prev) = (sorted[(i + 1) % n], sorted[(i + n - 1) % n]);
                let succ_list: Vec<Peer> = (1..n).take(l).map(|k| sorted[(i + k) % n]).collect();
                let v = RingView {
                    me,
                    status: RingStatus::InRing,
                    range: Some(if n == 1 {
                        Range::full(me.id)
                    } else {
                        Range::new(prev.id, me.id)
                    }),
                    succ: (n > 1).then_some(next),
                    pred: (n > 1).then_some(prev),
                    succ_list: succ_list.clone(),
                    pred_list: vec![prev],
                    fingers: succ_list,
                    crashed: Vec::new(),
                };
                (me.addr, v)
            })
            .collect()
    }

    fn at(views: &mut BTreeMap<NodeAddr, RingView>, id: u64) -> &mut RingView {
        views.values_mut().find(|v| v.me.id == RingId(id)).expect("a peer with this id")
    }

    #[test]
    fn a_formed_ring_has_no_fault() {
        for ids in [&[7u64][..], &[5, 9], &[u64::MAX, 0, 3, 1 << 50, 77], &[9, 1, 4, 6, 2]] {
            let v = ring(ids, 3);
            assert_eq!(pointer_faults(&v, 3), Vec::<String>::new(), "{ids:?}");
            assert_eq!(finger_faults(&v), Vec::<String>::new(), "{ids:?}");
        }
    }

    #[test]
    fn a_killed_peer_still_named_is_a_fault_of_each_kind() {
        // 30 was killed: its view is gone, but 20 still points at it and 40 still owns from it.
        let mut v = ring(&[10, 20, 30, 40], 2);
        let dead = at(&mut v, 30).me;
        v.remove(&dead.addr);
        let faults = pointer_faults(&v, 2);
        for want in [
            "has successor",   // 20 → 30
            "has predecessor", // 40 ← 30
            "should own",      // 40 owns (30, 40]
            "successor list",  // 10 and 20 list 30
        ] {
            assert!(faults.iter().any(|f| f.contains(want)), "{want} missing in {faults:?}");
        }
        let fingers = finger_faults(&v);
        assert!(fingers.iter().any(|f| f.contains("not live")), "{fingers:?}");
    }

    #[test]
    fn a_peer_outside_the_ring_and_a_short_list_are_faults() {
        let mut v = ring(&[10, 20, 30, 40], 3);
        at(&mut v, 10).status = RingStatus::Joining;
        at(&mut v, 20).succ_list.pop();
        let faults = pointer_faults(&v, 3);
        assert!(faults.iter().any(|f| f.contains("Joining")), "{faults:?}");
        assert!(faults.iter().any(|f| f.contains("successor list")), "{faults:?}");
        // Lists of a ring smaller than the configured size hold every other peer.
        assert!(pointer_faults(&ring(&[1, 2, 3], 7), 7).is_empty());
    }

    #[test]
    fn the_owner_is_the_first_peer_at_or_after_the_key() {
        let peers = [peer(0, 10), peer(1, 20), peer(2, u64::MAX - 1)];
        assert_eq!(owner(&peers, RingId(10)), Some(peers[0]));
        assert_eq!(owner(&peers, RingId(11)), Some(peers[1]));
        assert_eq!(owner(&peers, RingId(21)), Some(peers[2]));
        assert_eq!(owner(&peers, RingId(u64::MAX)), Some(peers[0]), "wraps around zero");
        assert_eq!(owner(&peers, RingId(0)), Some(peers[0]));
        assert_eq!(owner(&[], RingId(0)), None);
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
