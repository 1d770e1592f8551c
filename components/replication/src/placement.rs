//! Where replicas live: symmetric replica keys, the quorum, and the join positions that keep
//! the `f` replicas of every key on `f` distinct hosts: [`Placement`].
//!
//! **Replica keys.** Replica `i` of key `k` is at `k + ⌊i·2^64/f⌋` ([`RingId::replica`]); the
//! quorum is `f/2 + 1`.
//!
//! **Host diversity by sectors.** The circle is cut into `f` *sectors*, sector `s` being the
//! arc `(⌊s·2^64/f⌋ − 1, ⌊(s+1)·2^64/f⌋ − 1]`. The replicas of a key fall one in each
//! sector, at the same offset (exactly so when `f` is a power of two; otherwise a key within
//! one identifier of a sector's edge may slip into the next sector — probability below
//! `f·2^-64` per key). Two rules make the replicas land on distinct hosts:
//!
//! 1. **A host lives in one sector**: host `h` joins its nodes only inside sector `h mod f`;
//! 2. **Every sector is closed by an anchor**: the first node of a sector takes the sector's
//!    last identifier (its *anchor*, [`Placement::anchor`]), so no key of the sector is owned
//!    by a node of the next one.
//!
//! Then the peer owning replica `i` of any key is a node of a different sector than the owner
//! of replica `j ≠ i`, hence on a different host — whenever the `f` sectors all have an anchor,
//! which holds as soon as hosts with every residue `0..f` have joined (number hosts `0, 1, 2, …`
//! and any `f` of them suffice). A joining node asks for [`Placement::join_position`] with
//! `attempt = 0` (the anchor); if the ring refuses it because the identifier is in use, it
//! retries with `attempt = 1, 2, …` (positions inside the sector, derived from a salt such as
//! the hash of its address).
//!
//! **Cost** (documented in `docs/replication.md`, measured in the tests below): a sector holds
//! exactly `1/f` of all replicas whatever its number of hosts, so storage balances only when
//! every residue class has the same number of hosts (with 5 hosts and `f = 4`, the two hosts
//! sharing a sector hold half as much as the others); a node cannot choose its position for
//! load balancing outside its sector; and when an anchor crashes, the keys between the
//! sector's last remaining node and its end are owned by the next sector's first node until a
//! node of the sector takes the anchor again (a restarted node does: its attempt 0) — during
//! that window those keys may have two replicas on one host.

use selfman_ports::{has_flaw, HostId, Range, RingId};

use crate::config::MAX_F;
#[cfg(feature = "flaws")]
use crate::machine::Flaw;
use crate::ranges::RangeSet;

/// The placement rules for replication factor `f`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    f: u32,
    #[cfg(feature = "flaws")]
    flaw: Option<Flaw>,
}

/// SplitMix64's finaliser: a fixed, well-spread mix of a 64-bit value.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Placement {
    /// The rules for `f` replicas.
    ///
    /// # Panics
    ///
    /// If `f` is 0 or above [`MAX_F`] (a validated [`ReplicationConfig`](crate::ReplicationConfig)
    /// never is).
    pub fn new(f: u32) -> Placement {
        assert!((1..=MAX_F).contains(&f), "the replication factor is between 1 and MAX_F");
        Placement {
            f,
            #[cfg(feature = "flaws")]
            flaw: None,
        }
    }

    /// These rules with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.flaw = Some(flaw);
        self
    }

    /// The replication factor.
    pub fn f(&self) -> u32 {
        self.f
    }

    /// The majority: `f/2 + 1`.
    pub fn quorum(&self) -> u32 {
        self.f / 2 + 1
    }

    /// The position of replica `replica` of `key`.
    pub fn position(&self, key: &[u8], replica: u32) -> RingId {
        RingId::of_key(key).replica(replica, self.f)
    }

    /// Which replica of `key` sits at `position`, if any.
    pub fn replica_at(&self, key: &[u8], position: RingId) -> Option<u32> {
        let k = RingId::of_key(key);
        (0..self.f).find(|i| k.replica(*i, self.f) == position)
    }

    /// How far replica `i + j` is from replica `i`: `⌊j·2^64/f⌋`.
    pub fn shift(&self, j: u32) -> u64 {
        RingId(0).replica(j, self.f).0
    }

    /// Sector `s` (taken modulo `f`): `(⌊s·2^64/f⌋ − 1, ⌊(s+1)·2^64/f⌋ − 1]`.
    pub fn sector(&self, s: u32) -> Range {
        let s = s % self.f;
        let start = RingId(self.shift(s).wrapping_sub(1));
        let end = RingId(RingId(0).replica(s + 1, self.f).0.wrapping_sub(1));
        Range::new(start, end)
    }

    /// The sector holding `position`.
    pub fn sector_of(&self, position: RingId) -> u32 {
        (0..self.f).find(|s| self.sector(*s).contains(position)).unwrap_or(0)
    }

    /// The sector of host `host`: `host mod f`.
    pub fn sector_of_host(&self, host: HostId) -> u32 {
        host.0 % self.f
    }

    /// The anchor of sector `s`: its last identifier.
    pub fn anchor(&self, s: u32) -> RingId {
        self.sector(s).end
    }

    /// Where a node of `host` should join: on `attempt` 0 its sector's anchor; on later
    /// attempts (the anchor is taken) a position strictly inside the sector, drawn from
    /// `salt` and the attempt number.
    pub fn join_position(&self, host: HostId, attempt: u32, salt: u64) -> RingId {
        if has_flaw!(self, IgnoresHosts) {
            // Deliberately wrong: anywhere on the circle, as a plain ring would.
            return RingId(mix64(salt ^ u64::from(attempt)));
        }
        let sector = self.sector(self.sector_of_host(host));
        if attempt == 0 {
            return sector.end;
        }
        // Inner positions: offsets 1 ..= size - 1 from the start (everything but the anchor).
        let inner = sector.size() - 1;
        let h = u128::from(mix64(salt ^ mix64(u64::from(attempt))));
        let off = (h % inner) as u64 + 1;
        sector.start.offset(off)
    }

    /// Where the `i`-th node of a deployment over `hosts` hosts (numbered from 0) joins, and
    /// on which host: host `i mod hosts`; the first `f` nodes take their sector's anchor, the
    /// others a position inside it ([`join_position`](Self::join_position) with attempt
    /// `1 + i`, salted by `i`). The numbering the simulation scenarios and the benchmarks use
    /// to place their nodes.
    pub fn numbered_node(&self, i: usize, hosts: u32) -> (HostId, RingId) {
        let host = HostId(i as u32 % hosts.max(1));
        let attempt = if (i as u32) < self.f { 0 } else { 1 + i as u32 };
        (host, self.join_position(host, attempt, i as u64 * 7919))
    }

    /// Whether `range` lies inside the sector of `host` (a node whose range does not is
    /// misplaced: the replicas it holds may share a host with others).
    pub fn is_placed(&self, host: HostId, range: Range) -> bool {
        RangeSet::of(self.sector(self.sector_of_host(host))).covers(range)
    }

    /// Whether `hosts` use every sector (the condition for host diversity).
    pub fn covers_all_sectors(&self, hosts: &[HostId]) -> bool {
        (0..self.f).all(|s| hosts.iter().any(|h| self.sector_of_host(*h) == s))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use selfman_ports::{HostId, RingId};

    use super::{mix64, Placement};
    use crate::machine::Flaw;

    /// The node (id → host) responsible for `x`: the first id at or after it.
    fn owner(ring: &BTreeMap<RingId, HostId>, x: RingId) -> (RingId, HostId) {
        ring.range(x..)
            .next()
            .or_else(|| ring.iter().next())
            .map(|(i, h)| (*i, *h))
            .expect("a ring with nodes")
    }

    /// Joins `nodes_per_host` nodes of each host in `hosts`, each taking the first join
    /// position that is free (attempt 0, 1, …), as a node refused with `IdInUse` would.
    fn build(p: &Placement, hosts: &[HostId], nodes_per_host: u32) -> BTreeMap<RingId, HostId> {
        let mut ring = BTreeMap::new();
        for n in 0..nodes_per_host {
            for h in hosts {
                let salt = mix64(u64::from(h.0) << 32 | u64::from(n));
                let id =
                    (0..).map(|a| p.join_position(*h, a, salt)).find(|i| !ring.contains_key(i));
                ring.insert(id.expect("a free position"), *h);
            }
        }
        ring
    }

    /// The first key (of `n` sampled) with two replicas on one host, if any.
    fn collision(p: &Placement, ring: &BTreeMap<RingId, HostId>, n: u64) -> Option<RingId> {
        (0..n).map(|i| RingId(mix64(i * 7919))).find(|k| {
            let hosts: BTreeSet<HostId> =
                (0..p.f()).map(|i| owner(ring, k.replica(i, p.f())).1).collect();
            hosts.len() < p.f() as usize
        })
    }

    #[test]
    fn replica_keys_and_the_quorum() {
        let p = Placement::new(4);
        assert_eq!(p.quorum(), 3);
        let k = RingId::of_key(b"user:42");
        assert_eq!(p.position(b"user:42", 2), k.offset(1 << 63));
        assert_eq!(p.replica_at(b"user:42", k.offset(3 << 62)), Some(3));
        assert_eq!(p.replica_at(b"user:42", k.offset(1)), None);
        assert_eq!(p.shift(1), 1 << 62);
        assert_eq!(Placement::new(3).quorum(), 2);
        assert_eq!(Placement::new(5).quorum(), 3);
    }

    #[test]
    fn sectors_tile_the_circle_and_hold_one_replica_of_each_key() {
        for f in [1, 2, 3, 4, 5, 8] {
            let p = Placement::new(f);
            let total: u128 = (0..f).map(|s| p.sector(s).size()).sum();
            assert_eq!(total, 1u128 << 64, "f = {f}");
            for s in 0..f {
                let next = p.sector((s + 1) % f);
                assert_eq!(p.sector(s).end, next.start, "sectors are adjacent");
                assert_eq!(p.anchor(s), p.sector(s).end);
            }
            for i in 0..2000u64 {
                let k = RingId(mix64(i));
                let sectors: BTreeSet<u32> = (0..f).map(|r| p.sector_of(k.replica(r, f))).collect();
                assert_eq!(sectors.len(), f as usize, "f = {f}, key {k}");
            }
        }
    }

    #[test]
    fn join_positions_stay_in_the_host_sector_and_start_at_the_anchor() {
        let p = Placement::new(4);
        for h in 0..8 {
            let host = HostId(h);
            let sector = p.sector(h % 4);
            assert_eq!(p.join_position(host, 0, 1), sector.end);
            for a in 1..50 {
                let x = p.join_position(host, a, u64::from(h) * 31 + 5);
                assert!(sector.contains(x) && x != sector.end, "{x} outside sector {}", h % 4);
            }
        }
    }

    #[test]
    fn one_node_per_host_on_f_hosts_is_perfectly_symmetric_and_diverse() {
        let p = Placement::new(4);
        let hosts: Vec<HostId> = (0..4).map(HostId).collect();
        let ring = build(&p, &hosts, 1);
        let ids: Vec<RingId> = ring.keys().copied().collect();
        for w in ids.windows(2) {
            assert_eq!(w[1].distance_from(w[0]), p.shift(1), "anchors are a quarter apart");
        }
        assert_eq!(collision(&p, &ring, 20_000), None);
    }

    #[test]
    fn many_nodes_per_host_keep_every_key_on_f_hosts() {
        for (f, hosts, per_host) in [(4, 4, 6), (4, 8, 3), (4, 6, 4), (3, 7, 3), (5, 5, 2)] {
            let p = Placement::new(f);
            let hosts: Vec<HostId> = (0..hosts).map(HostId).collect();
            assert!(p.covers_all_sectors(&hosts));
            let ring = build(&p, &hosts, per_host);
            assert_eq!(collision(&p, &ring, 20_000), None, "f = {f}, {} hosts", hosts.len());
            // Every node's range lies in its host's sector.
            let ids: Vec<(RingId, HostId)> = ring.iter().map(|(i, h)| (*i, *h)).collect();
            for (n, (id, host)) in ids.iter().enumerate() {
                let pred = ids[(n + ids.len() - 1) % ids.len()].0;
                assert!(p.is_placed(*host, selfman_ports::Range::new(pred, *id)), "{id}");
            }
        }
    }

    #[test]
    fn the_cost_storage_balances_only_with_equal_hosts_per_sector() {
        // 5 hosts, f = 4: hosts 0 and 4 share sector 0 and hold half of what the others hold.
        let p = Placement::new(4);
        let hosts: Vec<HostId> = (0..5).map(HostId).collect();
        let ring = build(&p, &hosts, 4);
        let mut share: BTreeMap<HostId, u128> = BTreeMap::new();
        let ids: Vec<(RingId, HostId)> = ring.iter().map(|(i, h)| (*i, *h)).collect();
        for (n, (id, host)) in ids.iter().enumerate() {
            let pred = ids[(n + ids.len() - 1) % ids.len()].0;
            *share.entry(*host).or_default() += selfman_ports::Range::new(pred, *id).size();
        }
        let quarter = 1u128 << 62;
        assert_eq!(share[&HostId(1)], quarter);
        assert_eq!(share[&HostId(0)] + share[&HostId(4)], quarter);
    }

    #[test]
    fn hosts_missing_a_residue_or_a_lost_anchor_break_diversity() {
        let p = Placement::new(4);
        // Hosts 0, 4, 8, 12 all map to sector 0: no guarantee (and none is claimed).
        let same: Vec<HostId> = [0, 4, 8, 12].into_iter().map(HostId).collect();
        assert!(!p.covers_all_sectors(&same));
        // An anchor that crashed: the keys after its sector's last node spill over.
        let hosts: Vec<HostId> = (0..4).map(HostId).collect();
        let mut ring = build(&p, &hosts, 3);
        assert_eq!(collision(&p, &ring, 20_000), None);
        ring.remove(&p.anchor(1));
        assert!(collision(&p, &ring, 200_000).is_some(), "a spill shows up");
        // A node of sector 1 re-taking the anchor closes it again.
        ring.insert(p.join_position(HostId(1), 0, 0), HostId(1));
        assert_eq!(collision(&p, &ring, 20_000), None);
    }

    #[test]
    fn flaw_ignoring_hosts_puts_two_replicas_on_one_host() {
        let p = Placement::new(4).with_flaw(Flaw::IgnoresHosts);
        let hosts: Vec<HostId> = (0..4).map(HostId).collect();
        let ring = build(&p, &hosts, 3);
        assert!(collision(&p, &ring, 20_000).is_some(), "random positions collide");
    }
}
