//! The ring-merge measure: the ring is partitioned into `groups` random groups (a shuffle
//! dealt round robin, so each group is spread over the circle) for `apart`, which makes each
//! group a ring of its own, then healed; from the heal on, every `every`, lookup consistency
//! is checked within each group (two rings own every key once each until the merge walks
//! over it) and convergence over all peers together, until the peers form one ring (pointers,
//! ranges, successor lists: fingers are counted apart) or `limit` passes. The messages are
//! those the ring and the failure detector sent from the heal until then.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use selfman::NodeAddr;
use selfman_ports::ring_check::{convergence, overlap};
use selfman_ports::RingView;

use super::world::World;

/// How a partition healed.
pub(crate) struct Merge {
    pub(crate) groups: usize,
    /// Whether each group formed a ring of its own before the heal.
    pub(crate) split_ok: bool,
    /// Virtual time from the heal until one ring (structure); `None`: not within the limit.
    pub(crate) merged: Option<Duration>,
    /// Until, moreover, every finger was live.
    pub(crate) fingers: Option<Duration>,
    /// Ring and failure-detector messages from the heal until the merge (or the limit).
    pub(crate) ring_msgs: u64,
    pub(crate) fd_msgs: u64,
    pub(crate) checks: u64,
    /// Overlaps within one group seen during the merge (must be 0), and the first.
    pub(crate) violations: u64,
    pub(crate) first: Option<String>,
    /// Complaints left at the limit (how many, and the first).
    pub(crate) left: Option<(usize, String)>,
}

/// The views split by group.
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
    let sets: Vec<BTreeSet<NodeAddr>> = parts.iter().map(|p| p.iter().copied().collect()).collect();
    let l = w.ring_config.succ_list_size;
    let views = w.snapshot();
    let split_ok = by_group(&views, &sets).iter().all(|g| convergence(&bare(g), l).is_empty());
    w.shared.sent.take();
    w.sim.heal();
    let t0 = w.sim.now();
    let mut m = Merge {
        groups,
        split_ok,
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
