//! Replication's checkers: a client history checked as it is recorded ([`ReplHistory`]: **no
//! stale read**, and the final reads' **durability**), and two checks of the global view at one
//! instant ([`convergence`], [`host_diversity`]).
//!
//! The history is what the scenarios' clients did: each write of a version `v` of a key at all
//! `f` replicas (acknowledged once a majority answered `Applied` or `Current`), and each quorum
//! read with its answer. Versions are unique per key (the writer's clock and node), and the
//! value of version `v` of key `k` is always [`value_of`]`(k, v)`, so a read's value is checked
//! against its version too.
//!
//! * **no stale read**: a quorum read that *started* after version `v` of its key was
//!   acknowledged returns `v` or a later version, with that version's value; a version never
//!   written is never read ([`ReplHistory::read_done`], as reads complete);
//! * **durability**: after churn stopped, a quorum read of every acknowledged key succeeds and
//!   returns at least the highest version acknowledged ([`ReplHistory::durability`]);
//! * **convergence** ([`convergence`]): every item has exactly `f` served replicas, one at each
//!   replica key, each on the peer the ring's sorted order says is responsible for it, all of
//!   one version, at least the highest acknowledged; and every member serves exactly the range
//!   it owns (nothing still moving);
//! * **host diversity** ([`host_diversity`]): no two replicas of one item are served on one
//!   host.
//!
//! Each property's violation message starts with its name, which the broken twins' tests
//! match.

use std::collections::{BTreeMap, BTreeSet};

use selfman_core::{NodeAddr, Time};
use selfman_ports::{QuorumRead, ReadFailure, ReplicaView, RingId, StoredReplica, Version};

/// The value the scenarios write as version `v` of `key`.
pub fn value_of(key: &[u8], v: Version) -> Vec<u8> {
    let mut out = key.to_vec();
    out.extend_from_slice(format!("@{}", v.0).as_bytes());
    out
}

/// A key, printable.
fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// When a read completed, and the version it returned (or why not).
type Completion = Option<(Time, Result<Version, String>)>;

/// Where each replica of an item is served, by replica number: the nodes and their versions.
type Placed = BTreeMap<u32, Vec<(NodeAddr, Version)>>;

/// One quorum read of the history.
#[derive(Clone, Debug)]
struct ReadRec {
    key: Vec<u8>,
    started: Time,
    final_read: bool,
    /// When it completed, and the version it returned (or why not).
    done: Completion,
}

/// What the clients of a run did, checked as it is recorded.
#[derive(Debug, Default)]
pub struct ReplHistory {
    /// Every version written, per key.
    issued: BTreeMap<Vec<u8>, BTreeSet<Version>>,
    /// Acknowledged versions per key, with the instant the writer learned of the majority.
    acks: BTreeMap<Vec<u8>, Vec<(Time, Version)>>,
    /// Reads by (node, tag).
    reads: BTreeMap<(NodeAddr, u64), ReadRec>,
    /// Violations found so far.
    violations: Vec<String>,
    /// Counts, for reports and sanity checks.
    pub stats: ReplStats,
}

/// What a run's clients did, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplStats {
    /// Writes issued (each at all `f` replicas).
    pub writes: u64,
    /// Writes a majority acknowledged.
    pub acked: u64,
    /// Quorum reads issued.
    pub reads: u64,
    /// Quorum reads answered with a value.
    pub reads_ok: u64,
    /// Quorum reads that failed (timeout, not in a ring, overloaded).
    pub reads_failed: u64,
    /// Reads checked against at least one earlier acknowledged write.
    pub reads_checked: u64,
}

impl ReplHistory {
    /// A write of `version` of `key` was issued at `at`.
    pub fn write_issued(&mut self, key: &[u8], version: Version, _at: Time) {
        self.stats.writes += 1;
        self.issued.entry(key.to_vec()).or_default().insert(version);
    }

    /// A majority acknowledged `version` of `key`; the writer learned it at `at`.
    pub fn write_acked(&mut self, key: &[u8], version: Version, at: Time) {
        self.stats.acked += 1;
        self.acks.entry(key.to_vec()).or_default().push((at, version));
    }

    /// `node` started a quorum read of `key` tagged `tag` at `at` (`final_read`: one of the
    /// reads after churn stopped that [`ReplHistory::durability`] checks).
    pub fn read_issued(
        &mut self,
        node: NodeAddr,
        tag: u64,
        key: &[u8],
        at: Time,
        final_read: bool,
    ) {
        self.stats.reads += 1;
        let r = ReadRec { key: key.to_vec(), started: at, final_read, done: None };
        self.reads.insert((node, tag), r);
    }

    /// `node`'s read `tag` completed at `at` with `result`: checks **no stale read**.
    pub fn read_done(
        &mut self,
        node: NodeAddr,
        tag: u64,
        result: &Result<QuorumRead, ReadFailure>,
        at: Time,
    ) {
        let Some(r) = self.reads.get_mut(&(node, tag)) else {
            self.violations.push(format!("history: {node} completed read {tag} it never issued"));
            return;
        };
        if r.done.is_some() {
            self.violations.push(format!("history: {node} read {tag} completed twice"));
            return;
        }
        let (key, started) = (r.key.clone(), r.started);
        let q = match result {
            Ok(q) => q,
            Err(e) => {
                r.done = Some((at, Err(format!("{e:?}"))));
                self.stats.reads_failed += 1;
                return;
            }
        };
        r.done = Some((at, Ok(q.version)));
        self.stats.reads_ok += 1;
        let want = if q.version == Version(0) { None } else { Some(value_of(&key, q.version)) };
        if q.value != want {
            self.violations.push(format!(
                "no stale read: {node} read {} {} with a value not written as it: {:?}",
                show(&key),
                q.version,
                q.value.as_deref().map(show)
            ));
        }
        if q.version != Version(0) && !self.issued.get(&key).is_some_and(|s| s.contains(&q.version))
        {
            self.violations.push(format!(
                "no stale read: {node} read {} {}, a version never written",
                show(&key),
                q.version
            ));
        }
        let before = self
            .acks
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|(t, _)| *t < started)
            .map(|(_, v)| *v)
            .max();
        if let Some(v) = before {
            self.stats.reads_checked += 1;
            if q.version < v {
                let who: Vec<String> = q
                    .replicas
                    .iter()
                    .map(|a| format!("{}@{}={}", a.replica, a.node, a.version))
                    .collect();
                self.violations.push(format!(
                    "no stale read: {node} read {} started at {started:?}, {v} acknowledged \
                     before it, answered {} (from {})",
                    show(&key),
                    q.version,
                    who.join(", ")
                ));
            }
        }
    }

    /// The violations found so far (each starts with its property's name).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// The highest acknowledged version of every key acknowledged at all.
    pub fn max_acked(&self) -> BTreeMap<Vec<u8>, Version> {
        self.acks
            .iter()
            .filter_map(|(k, a)| a.iter().map(|(_, v)| *v).max().map(|v| (k.clone(), v)))
            .collect()
    }

    /// **Durability**: every acknowledged key had a final read (issued after churn stopped),
    /// and one of them answered with at least the highest acknowledged version.
    ///
    /// # Errors
    ///
    /// A message starting `durability:` naming the first key that fails.
    pub fn durability(&self) -> Result<(), String> {
        let mut finals: BTreeMap<&[u8], Vec<&Completion>> = BTreeMap::new();
        for r in self.reads.values().filter(|r| r.final_read) {
            finals.entry(&r.key).or_default().push(&r.done);
        }
        for (key, v) in self.max_acked() {
            let Some(rs) = finals.get(key.as_slice()) else {
                return Err(format!(
                    "durability: {} ({v} acknowledged) never read at the end",
                    show(&key)
                ));
            };
            let best =
                rs.iter().filter_map(|d| d.as_ref()).filter_map(|(_, r)| r.as_ref().ok()).max();
            match best {
                Some(got) if *got >= v => {}
                Some(got) => {
                    return Err(format!(
                        "durability: {} {v} acknowledged, the final read answered {got}",
                        show(&key)
                    ))
                }
                None => {
                    return Err(format!(
                        "durability: {} {v} acknowledged, no final read answered: {:?}",
                        show(&key),
                        rs
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The member responsible for `p` among `ids` (sorted): the first at or after it, cyclically.
fn responsible(ids: &[(RingId, NodeAddr)], p: RingId) -> Option<NodeAddr> {
    let i = ids.partition_point(|(id, _)| *id < p);
    ids.get(i).or_else(|| ids.first()).map(|(_, n)| *n)
}

/// **Convergence** of the global view `views` (running nodes only) with factor `f`, given the
/// highest acknowledged version of each key (`acked`): see the module documentation.
///
/// # Errors
///
/// A message starting `convergence:` naming the first thing out of place.
pub fn convergence(
    views: &BTreeMap<NodeAddr, (ReplicaView, Vec<StoredReplica>)>,
    f: u32,
    acked: &BTreeMap<Vec<u8>, Version>,
) -> Result<(), String> {
    let mut ids: Vec<(RingId, NodeAddr)> = views
        .iter()
        .filter(|(_, (v, _))| v.owned.is_some())
        .filter_map(|(n, (v, _))| v.id.map(|id| (id, *n)))
        .collect();
    ids.sort();
    if ids.is_empty() {
        return Err("convergence: no member".into());
    }
    for (n, (v, _)) in views {
        let Some(owned) = v.owned else { continue };
        if v.serving != [owned] || !v.pending.is_empty() || !v.outgoing.is_empty() {
            return Err(format!(
                "convergence: {n} owns {owned} but serves {:?}, pending {:?}, outgoing {:?}",
                v.serving, v.pending, v.outgoing
            ));
        }
    }
    // key → replica → (node, version), over what members serve.
    let mut at: BTreeMap<&[u8], Placed> = BTreeMap::new();
    for (n, (v, stored)) in views {
        if v.owned.is_none() {
            continue;
        }
        for r in stored {
            if RingId::of_key(&r.key).replica(r.replica, f) != r.position {
                return Err(format!(
                    "convergence: {n} holds {} replica {} at {}, not its replica key",
                    show(&r.key),
                    r.replica,
                    r.position
                ));
            }
            let resp = responsible(&ids, r.position);
            if resp != Some(*n) {
                return Err(format!(
                    "convergence: {n} serves {} replica {} at {}, whose responsible peer is {:?}",
                    show(&r.key),
                    r.replica,
                    r.position,
                    resp
                ));
            }
            at.entry(&r.key).or_default().entry(r.replica).or_default().push((*n, r.version));
        }
    }
    for key in acked.keys() {
        if !at.contains_key(key.as_slice()) {
            return Err(format!("convergence: {} acknowledged, no replica served", show(key)));
        }
    }
    for (key, replicas) in &at {
        let mut versions = BTreeSet::new();
        for i in 0..f {
            match replicas.get(&i).map(Vec::as_slice) {
                Some([(_, v)]) => {
                    versions.insert(*v);
                }
                other => {
                    return Err(format!(
                        "convergence: {} replica {i} served by {:?} (want exactly one)",
                        show(key),
                        other
                    ))
                }
            }
        }
        if versions.len() != 1 {
            return Err(format!("convergence: {} replicas hold {replicas:?}", show(key)));
        }
        let v = versions.first().copied().unwrap_or_default();
        if let Some(a) = acked.get(*key) {
            if v < *a {
                return Err(format!(
                    "convergence: {} replicas hold {v}, {a} acknowledged",
                    show(key)
                ));
            }
        }
    }
    Ok(())
}

/// **Host diversity** of the global view `views`: no item has two of its replicas served on
/// one host (by the hosts the views report).
///
/// # Errors
///
/// A message starting `host diversity:` naming the item, its replicas and the host.
pub fn host_diversity(
    views: &BTreeMap<NodeAddr, (ReplicaView, Vec<StoredReplica>)>,
) -> Result<(), String> {
    let mut at: BTreeMap<&[u8], BTreeMap<u32, (u32, NodeAddr)>> = BTreeMap::new();
    for (n, (v, stored)) in views {
        for r in stored {
            let hosts = at.entry(&r.key).or_default();
            if let Some((other, (_, m))) =
                hosts.iter().find(|(i, (h, _))| **i != r.replica && *h == v.host.0)
            {
                return Err(format!(
                    "host diversity: {} replicas {other} (on {m}) and {} (on {n}) both on host {}",
                    show(&r.key),
                    r.replica,
                    v.host.0
                ));
            }
            hosts.insert(r.replica, (v.host.0, *n));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    use selfman_core::{NodeAddr, NodeId, Time};
    use selfman_ports::{HostId, QuorumRead, Range, ReplicaView, RingId, StoredReplica, Version};

    use super::{convergence, host_diversity, value_of, ReplHistory};

    fn node(i: u16) -> NodeAddr {
        NodeAddr::new(SocketAddr::from(([10, 0, 0, 1], i)), NodeId(1))
    }

    fn read(v: u64, key: &[u8]) -> QuorumRead {
        let value = (v > 0).then(|| value_of(key, Version(v)));
        QuorumRead { value, version: Version(v), replicas: Vec::new() }
    }

    #[test]
    fn a_read_older_than_an_earlier_acknowledged_write_is_stale() {
        let mut h = ReplHistory::default();
        let t = |s| Time::from_secs_f64(s);
        h.write_issued(b"k", Version(1), t(0.0));
        h.write_issued(b"k", Version(2), t(1.0));
        h.write_acked(b"k", Version(1), t(0.5));
        h.write_acked(b"k", Version(2), t(2.0));
        // Started before v2 was acknowledged: v1 is fine.
        h.read_issued(node(1), 1, b"k", t(1.5), false);
        h.read_done(node(1), 1, &Ok(read(1, b"k")), t(2.5));
        assert!(h.violations().is_empty(), "{:?}", h.violations());
        // Started after: v1 is stale.
        h.read_issued(node(1), 2, b"k", t(3.0), false);
        h.read_done(node(1), 2, &Ok(read(1, b"k")), t(3.1));
        assert_eq!(h.violations().len(), 1);
        assert!(h.violations()[0].starts_with("no stale read"));
        // A version never written, or a value not of its version.
        h.read_issued(node(1), 3, b"k", t(3.0), false);
        h.read_done(node(1), 3, &Ok(read(9, b"k")), t(3.1));
        assert_eq!(h.violations().len(), 2);
        // Durability: no final read yet, then a final read that answers v2.
        assert!(h.durability().unwrap_err().starts_with("durability"));
        h.read_issued(node(2), 4, b"k", t(4.0), true);
        h.read_done(node(2), 4, &Ok(read(1, b"k")), t(4.1));
        assert!(h.durability().is_err());
        h.read_issued(node(2), 5, b"k", t(4.0), true);
        h.read_done(node(2), 5, &Ok(read(2, b"k")), t(4.1));
        assert_eq!(h.durability(), Ok(()));
    }

    fn view(i: u16, host: u32, id: u64, owned: Range) -> ReplicaView {
        ReplicaView {
            node: node(i),
            host: HostId(host),
            id: Some(RingId(id)),
            f: 2,
            owned: Some(owned),
            serving: vec![owned],
            pending: Vec::new(),
            outgoing: Vec::new(),
            items: 0,
        }
    }

    #[test]
    fn convergence_and_host_diversity_see_a_missing_replica_and_a_shared_host() {
        let key = b"k".to_vec();
        let p0 = RingId::of_key(&key).replica(0, 2);
        let p1 = RingId::of_key(&key).replica(1, 2);
        // Two members: a at p0, b at p1, each owning up to its id.
        let (a, b) = (p0.0, p1.0);
        let stored = |i: u32, pos: RingId, v: u64| StoredReplica {
            position: pos,
            key: key.clone(),
            replica: i,
            version: Version(v),
        };
        let mut views = BTreeMap::new();
        views.insert(
            node(1),
            (view(1, 0, a, Range::new(RingId(b), RingId(a))), vec![stored(0, p0, 3)]),
        );
        views.insert(
            node(2),
            (view(2, 1, b, Range::new(RingId(a), RingId(b))), vec![stored(1, p1, 3)]),
        );
        let acked: BTreeMap<Vec<u8>, Version> = [(key.clone(), Version(3))].into();
        assert_eq!(convergence(&views, 2, &acked), Ok(()));
        assert_eq!(host_diversity(&views), Ok(()));
        // A stale replica, then a missing one.
        views.get_mut(&node(2)).unwrap().1[0].version = Version(2);
        assert!(convergence(&views, 2, &acked).unwrap_err().starts_with("convergence"));
        views.get_mut(&node(2)).unwrap().1.clear();
        assert!(convergence(&views, 2, &acked).is_err());
        // Both on host 0.
        views.get_mut(&node(2)).unwrap().1.push(stored(1, p1, 3));
        views.get_mut(&node(2)).unwrap().0.host = HostId(0);
        assert!(host_diversity(&views).unwrap_err().starts_with("host diversity"));
    }
}
