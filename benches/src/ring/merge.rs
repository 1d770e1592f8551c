//! The ring-merge measure: the ring is partitioned into `groups` random groups (a shuffle
//! dealt round robin, so each group is spread over the circle) for `apart`, which makes each
//! group a ring of its own, then healed; from the heal on, every `every`, lookup consistency
//! is checked within each side (two rings own every key once each until the merge walks
//! over it) and convergence over all peers together, until the peers form one ring (pointers,
//! ranges, successor lists: fingers are counted apart) or `limit` passes. The messages are
//! those the ring and the failure detector sent from the heal until then.
//!
//! A side is a ring the partition made, not a network group: a group can fall into several
//! sub-rings (peers whose neighbours all lay across the partition end up in a ring of their
//! own, alone or with the few group mates they knew), and those are not required to agree
//! until they merge either. At the end of the partition each group is split into the
//! strongly connected components of "x has y as successor, predecessor or in one of its
//! lists" ([`sub_rings`], as `tests/src/scenarios/merge.rs` does), and each is checked on its
//! own: `split_ok` says whether each formed one converged ring, `sub_rings` counts the sides
//! beyond the groups.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use selfman::NodeAddr;
use selfman_ports::ring_check::{convergence, overlap};
use selfman_ports::{RingStatus, RingView};

use super::world::World;

/// How a partition healed.
pub(crate) struct Merge {
    pub(crate) groups: usize,
    /// Whether each side (sub-ring) was one converged ring of its own before the heal.
    pub(crate) split_ok: bool,
    /// Sides beyond the groups: the extra sub-rings the groups fell into.
    pub(crate) sub_rings: usize,
    /// Virtual time from the heal until one ring (structure); `None`: not within the limit.
    pub(crate) merged: Option<Duration>,
    /// Until, moreover, every finger was live.
    pub(crate) fingers: Option<Duration>,
    /// Ring and failure-detector messages from the heal until the merge (or the limit).
    pub(crate) ring_msgs: u64,
    pub(crate) fd_msgs: u64,
    pub(crate) checks: u64,
    /// Overlaps within one side seen during the merge (must be 0), and the first.
    pub(crate) violations: u64,
    pub(crate) first: Option<String>,
    /// Complaints left at the limit (how many, and the first).
    pub(crate) left: Option<(usize, String)>,
}

/// The groups split into their sub-rings: the strongly connected components, within each
/// group, of the graph "`x` has `y` as its successor, predecessor or a member of one of its
/// lists" over the peers in the ring (the peers `x` suspects left out). The largest component
/// of a group keeps the group's other peers (not in a ring); the others are sides of their
/// own, after the groups.
pub(crate) fn sub_rings(
    views: &BTreeMap<NodeAddr, RingView>,
    groups: &[BTreeSet<NodeAddr>],
) -> Vec<BTreeSet<NodeAddr>> {
    let mut sides = Vec::with_capacity(groups.len());
    let mut extra = Vec::new();
    for g in groups {
        let members: Vec<&RingView> = views
            .iter()
            .filter(|(a, v)| g.contains(a) && v.status == RingStatus::InRing)
            .map(|(_, v)| v)
            .collect();
        let index: BTreeMap<NodeAddr, usize> =
            members.iter().enumerate().map(|(i, v)| (v.me.addr, i)).collect();
        let edges: Vec<Vec<usize>> = members
            .iter()
            .map(|v| {
                let mut e: Vec<usize> = v
                    .succ
                    .iter()
                    .chain(v.pred.iter())
                    .chain(v.succ_list.iter())
                    .chain(v.pred_list.iter())
                    .filter(|x| !v.crashed.contains(&x.addr))
                    .filter_map(|x| index.get(&x.addr).copied())
                    .collect();
                e.sort_unstable();
                e.dedup();
                e
            })
            .collect();
        let mut comps: Vec<BTreeSet<NodeAddr>> = strongly_connected(&edges)
            .into_iter()
            .map(|c| c.into_iter().map(|i| members[i].me.addr).collect())
            .collect();
        comps.sort_by_key(|c| std::cmp::Reverse(c.len()));
        let mut rest = g.clone();
        for c in comps.iter().skip(1) {
            for a in c {
                rest.remove(a);
            }
        }
        sides.push(rest);
        extra.extend(comps.into_iter().skip(1));
    }
    sides.extend(extra);
    sides
}

/// The strongly connected components of a directed graph given by adjacency lists
/// (Kosaraju's two passes, iterative: groups of thousands of peers).
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    // Pass 1: vertices in order of finishing.
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for start in 0..n {
        if seen[start] {
            continue;
        }
        seen[start] = true;
        let mut stack = vec![(start, 0usize)];
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&u) = edges[v].get(*next) {
                *next += 1;
                if !seen[u] {
                    seen[u] = true;
                    stack.push((u, 0));
                }
            } else {
                order.push(v);
                stack.pop();
            }
        }
    }
    // Pass 2: over the reversed graph, in reverse finishing order.
    let mut reverse = vec![Vec::new(); n];
    for (v, out) in edges.iter().enumerate() {
        for &u in out {
            reverse[u].push(v);
        }
    }
    let mut comp = vec![usize::MAX; n];
    let mut comps = Vec::new();
    for &root in order.iter().rev() {
        if comp[root] != usize::MAX {
            continue;
        }
        let id = comps.len();
        let mut members = vec![root];
        comp[root] = id;
        let mut stack = vec![root];
        while let Some(v) = stack.pop() {
            for &u in &reverse[v] {
                if comp[u] == usize::MAX {
                    comp[u] = id;
                    members.push(u);
                    stack.push(u);
                }
            }
        }
        comps.push(members);
    }
    comps
}

/// The views split by side.
fn by_group(
    views: &BTreeMap<NodeAddr, RingView>,
    groups: &[BTreeSet<NodeAddr>],
) -> Vec<BTreeMap<NodeAddr, RingView>> {
    groups
        .iter()
        .map(|g| {
            views.iter().filter(|(a, _)| g.contains(a)).map(|(a, v)| (*a, v.clone())).collect()
        })
        .collect()
}

/// The views without fingers (structure only).
fn bare(views: &BTreeMap<NodeAddr, RingView>) -> BTreeMap<NodeAddr, RingView> {
    views.iter().map(|(a, v)| (*a, RingView { fingers: Vec::new(), ..v.clone() })).collect()
}

/// Partitions into `groups`, waits `apart`, heals and measures the merge (see the module
/// documentation).
pub(crate) fn merge(
    w: &mut World,
    groups: usize,
    apart: Duration,
    every: Duration,
    limit: Duration,
) -> Merge {
    let mut nodes = w.sim.alive_nodes();
    for i in (1..nodes.len()).rev() {
        let j = w.rng.below(i as u64 + 1) as usize;
        nodes.swap(i, j);
    }
    let groups = groups.clamp(2, nodes.len().max(2));
    let mut parts = vec![Vec::new(); groups];
    for (i, n) in nodes.into_iter().enumerate() {
        parts[i % groups].push(n);
    }
    w.sim.partition(&parts);
    w.sim.run_for(apart);
    let groups_sets: Vec<BTreeSet<NodeAddr>> =
        parts.iter().map(|p| p.iter().copied().collect()).collect();
    let l = w.imp.succ_list_size();
    let views = w.snapshot();
    let sets = sub_rings(&views, &groups_sets);
    let split_errors: Vec<String> =
        by_group(&views, &sets).iter().flat_map(|g| convergence(&bare(g), l)).collect();
    let split_ok = split_errors.is_empty();
    if let Some(first) = split_errors.first() {
        eprintln!(
            "merge: at the heal, {} complaints about the sides as rings of their own; first: \
             {first}",
            split_errors.len()
        );
    }
    w.shared.sent.take();
    w.sim.heal();
    let t0 = w.sim.now();
    let mut m = Merge {
        groups,
        split_ok,
        sub_rings: sets.len() - groups_sets.len(),
        merged: None,
        fingers: None,
        ring_msgs: 0,
        fd_msgs: 0,
        checks: 0,
        violations: 0,
        first: None,
        left: None,
    };
    loop {
        w.sim.run_for(every);
        let views = w.snapshot();
        let took = w.sim.now().duration_since(t0);
        if m.merged.is_none() {
            m.checks += 1;
            for g in by_group(&views, &sets) {
                if let Some(o) = overlap(&g) {
                    m.violations += 1;
                    m.first.get_or_insert(format!("+{}ms: {o}", took.as_millis()));
                }
            }
            if convergence(&bare(&views), l).is_empty() {
                m.merged = Some(took);
                let (r, f) = w.shared.sent.take();
                m.ring_msgs = r;
                m.fd_msgs = f;
            }
        } else if let Some(o) = overlap(&views) {
            // One ring: consistency over all peers from now on.
            m.violations += 1;
            m.first.get_or_insert(format!("+{}ms: {o}", took.as_millis()));
        }
        let all = convergence(&views, l);
        if m.merged.is_some() && all.is_empty() {
            m.fingers = Some(took);
            return m;
        }
        if took >= limit {
            if m.merged.is_none() {
                let (r, f) = w.shared.sent.take();
                m.ring_msgs = r;
                m.fd_msgs = f;
            }
            m.left = Some((all.len(), all.first().cloned().unwrap_or_default()));
            return m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfman::sim::address_of;
    use selfman::NodeId;
    use selfman_ports::{Peer, Range, RingId};

    fn peer(id: u64) -> Peer {
        Peer::new(RingId(id), NodeAddr::new(address_of(id as usize), NodeId(id)))
    }

    /// The views of `ids` forming one converged ring among themselves (lists of 7).
    fn ring(ids: &[u64]) -> BTreeMap<NodeAddr, RingView> {
        let n = ids.len();
        (0..n)
            .map(|i| {
                let me = peer(ids[i]);
                let next = |k: usize| peer(ids[(i + k) % n]);
                let prev = peer(ids[(i + n - 1) % n]);
                let v = RingView {
                    me,
                    status: RingStatus::InRing,
                    range: Some(Range::new(prev.id, me.id)),
                    succ: Some(next(1)),
                    pred: Some(prev),
                    succ_list: (1..n).take(7).map(next).collect(),
                    pred_list: Vec::new(),
                    fingers: Vec::new(),
                    crashed: Vec::new(),
                };
                (me.addr, v)
            })
            .collect()
    }

    fn set(ids: &[u64]) -> BTreeSet<NodeAddr> {
        ids.iter().map(|&i| peer(i).addr).collect()
    }

    #[test]
    fn a_group_in_two_interleaved_rings_is_two_sides_each_checked_alone() {
        let mut views = ring(&[10, 30, 50]);
        views.extend(ring(&[20, 40, 60]));
        views.extend(ring(&[15, 35]));
        let groups = vec![set(&[10, 20, 30, 40, 50, 60]), set(&[15, 35])];
        // By network group (the old checker): the first group is not one ring and its two
        // rings overlap everywhere.
        let by_net = by_group(&views, &groups);
        assert!(!convergence(&bare(&by_net[0]), 7).is_empty());
        assert!(overlap(&by_net[0]).is_some());
        // By sub-ring: three sides, each a converged ring without overlaps.
        let sides = sub_rings(&views, &groups);
        assert_eq!(sides.len(), 3, "{sides:?}");
        assert!(sides.contains(&set(&[10, 30, 50])) || sides.contains(&set(&[20, 40, 60])));
        assert_eq!(sides[1], set(&[15, 35]));
        for side in by_group(&views, &sides) {
            assert!(convergence(&bare(&side), 7).is_empty());
            assert!(overlap(&side).is_none());
        }
    }

    #[test]
    fn an_overlap_inside_a_sub_ring_is_still_caught() {
        let mut views = ring(&[10, 30, 50]);
        views.extend(ring(&[20, 40, 60]));
        // 50 claims back to 20: it holds 30, a peer of its own sub-ring.
        let fifty = peer(50).addr;
        if let Some(v) = views.get_mut(&fifty) {
            v.range = Some(Range::new(RingId(20), RingId(50)));
        }
        let sides = sub_rings(&views, &[set(&[10, 20, 30, 40, 50, 60])]);
        assert_eq!(sides.len(), 2);
        let found: Vec<_> = by_group(&views, &sides).iter().filter_map(overlap).collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].first, peer(50));
    }

    #[test]
    fn suspected_neighbours_do_not_join_sides_and_a_lone_peer_is_a_side() {
        let mut views = ring(&[10, 30, 50]);
        // 70 is alone in its ring, but still lists 10, which it suspects.
        let lone = peer(70);
        let mut v = ring(&[70]).remove(&lone.addr).unwrap_or_else(|| unreachable!());
        v.succ_list = vec![peer(10)];
        v.crashed = vec![peer(10).addr];
        views.insert(lone.addr, v);
        // A joiner not in a ring stays with its group's largest side.
        let mut joiner = ring(&[80]).remove(&peer(80).addr).unwrap_or_else(|| unreachable!());
        joiner.status = RingStatus::Joining;
        joiner.range = None;
        views.insert(peer(80).addr, joiner);
        let sides = sub_rings(&views, &[set(&[10, 30, 50, 70, 80])]);
        assert_eq!(sides, vec![set(&[10, 30, 50, 80]), set(&[70])]);
    }

    #[test]
    fn strongly_connected_components_of_a_chain_and_a_cycle() {
        // 0 -> 1 -> 2 -> 0 is one cycle; 3 -> 0 hangs off it; 4 alone.
        let edges = vec![vec![1], vec![2], vec![0], vec![0], vec![]];
        let mut comps: Vec<Vec<usize>> = strongly_connected(&edges)
            .into_iter()
            .map(|mut c| {
                c.sort_unstable();
                c
            })
            .collect();
        comps.sort();
        assert_eq!(comps, vec![vec![0, 1, 2], vec![3], vec![4]]);
    }
}
