//! Replication in the simulator: six nodes on six hosts, placed by the host rule, take writes;
//! a node joins while writes go on; a node crashes and its range is rebuilt; every node is
//! replaced live. Afterwards every acknowledged write is read back by a majority read, every
//! item has `f` replicas with one version on `f` distinct hosts, and no two live nodes served
//! one position at any checked instant.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use selfman_core::Time;
use selfman_ports::{
    ReplicaOp, ReplicaOutcome, ReplicationIndication, ReplicationRequest, RingId, Version,
};
use selfman_replication::{reconfigure, ReplicationConfig};
use selfman_sim::{seeds, Latency, LinkModel, Scenario, SimConfig, SimHost, SimNetConfig};

use support::{position, Board};

const NODES: usize = 6;
const HOSTS: u32 = 6;
const KEYS: u64 = 100;
const F: u32 = 4;

fn at(s: f64) -> Time {
    Time::ZERO + Duration::from_secs_f64(s)
}

fn key(k: u64) -> Vec<u8> {
    format!("item-{k}").into_bytes()
}

/// A replica: its position and its item's key.
type Replica = (RingId, Vec<u8>);

fn tag(k: u64, v: u64, replica: u32) -> u64 {
    v << 40 | k << 8 | u64::from(replica)
}

/// At `when`, writes version `v` of keys `keys` at every replica, from random live nodes.
fn writes(s: Scenario, board: &Board, when: f64, keys: std::ops::Range<u64>, v: u64) -> Scenario {
    let b = board.clone();
    s.at(at(when), format!("write v{v}"), move |run| {
        // From nodes in the ring (a node outside answers `NotInRing`).
        let members: Vec<_> = b
            .views
            .snapshot()
            .into_iter()
            .filter(|(_, (v, _))| v.owned.is_some())
            .map(|(n, _)| n)
            .collect();
        for k in keys.clone() {
            let from = members[run.rng.next_u64() as usize % members.len()];
            for replica in 0..F {
                let value = Some(format!("item-{k}@{v}").into_bytes());
                let op = ReplicaOp::Write { version: Version(v), value };
                b.request(
                    from.addr,
                    ReplicationRequest::AtReplica {
                        key: key(k),
                        replica,
                        op,
                        tag: tag(k, v, replica),
                    },
                )?;
            }
        }
        Ok(())
    })
}

/// Per key, the highest version a majority of replicas acknowledged, and the highest applied
/// at any replica (which repair spreads to all).
fn acknowledged(board: &Board) -> (BTreeMap<u64, u64>, BTreeMap<u64, u64>, usize) {
    let mut acks: BTreeMap<(u64, u64), u32> = BTreeMap::new();
    let mut written: BTreeMap<u64, u64> = BTreeMap::new();
    let mut answered = 0;
    for (_, i) in board.log.lock().unwrap().iter() {
        if let ReplicationIndication::ReplicaDone { tag, result, .. } = i {
            answered += 1;
            let (k, v) = ((tag >> 8) & 0xffff_ffff, tag >> 40);
            if matches!(result, Ok((_, ReplicaOutcome::Applied | ReplicaOutcome::Current))) {
                *acks.entry((k, v)).or_default() += 1;
                let w = written.entry(k).or_default();
                *w = (*w).max(v);
            }
        }
    }
    let mut best: BTreeMap<u64, u64> = BTreeMap::new();
    for ((k, v), n) in acks {
        if n > F / 2 {
            let b = best.entry(k).or_default();
            *b = (*b).max(v);
        }
    }
    (best, written, answered)
}

fn scenario(board: &Board) -> Scenario {
    let config =
        ReplicationConfig { repair_period: Duration::from_secs(3), ..ReplicationConfig::default() };
    let b = board.clone();
    let build = Arc::new(move |h: &SimHost| support::node(h, &b, HOSTS, config));
    let mut s = Scenario::new("replication-join-crash").replay_with(
        "SELFMAN_SEED={seed} cargo test -p selfman-replication --test sim_replication",
    );
    for (i, t) in [0.0, 0.2, 0.4, 0.6, 1.0, 4.0].into_iter().enumerate() {
        let f = Arc::clone(&build);
        s = s.start_nodes(at(t), 1, move |h| f(h));
        let _ = i;
    }
    s = writes(s, board, 2.0, 0..KEYS, 1);
    // While node 5 joins and takes part of node 1's range.
    for (n, t) in [4.0, 4.1, 4.2, 4.3, 4.4].into_iter().enumerate() {
        let n = n as u64;
        s = writes(s, board, t, n * 10..n * 10 + 10, 2);
    }
    // Node 4 (inside sector 0) crashes; the ring notices half a second later.
    let b = board.clone();
    s = s.at(at(7.0), "crash node 4", move |run| {
        let victim = *b
            .nodes
            .lock()
            .unwrap()
            .values()
            .find(|n| n.addr == selfman_sim::address_of(4))
            .ok_or("no node 4")?;
        run.sim.crash(victim).map_err(|e| e.to_string())
    });
    let b = board.clone();
    s = s.at(at(7.5), "the ring notices", move |_| {
        b.detect(selfman_sim::address_of(4));
        Ok(())
    });
    s = writes(s, board, 8.0, 50..80, 3);
    // Every node's replication is replaced live, with another timeout.
    let b = board.clone();
    s = s.at(at(9.0), "replace every node's replication", move |run| {
        let new = ReplicationConfig {
            op_timeout: Duration::from_secs(3),
            repair_period: Duration::from_secs(3),
            ..ReplicationConfig::default()
        };
        for (addr, c) in b.repls.lock().unwrap().iter() {
            let Some(node) = b.nodes.lock().unwrap().get(addr).copied() else { continue };
            if run.sim.is_alive(node) {
                reconfigure(run.sim.system(), c, node, new).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    });
    let b = board.clone();
    s = s.at(at(11.0), "read every key", move |run| {
        for k in 0..KEYS {
            let from = run.random_alive().ok_or("nobody alive")?;
            b.request(from.addr, ReplicationRequest::Read { key: key(k), tag: 1 << 60 | k })?;
        }
        Ok(())
    });
    // No position is served by two live nodes, checked every 100 ms.
    let mut t = 0.1;
    while t < 15.0 {
        let views = board.views.clone();
        s = s.check_at(at(t), "one server per position", move |_| {
            let v = views.snapshot();
            let mut served: Vec<(selfman_ports::Range, selfman_core::NodeAddr)> = v
                .iter()
                .flat_map(|(n, (view, _))| view.serving.iter().map(move |r| (*r, *n)))
                .collect();
            served.sort_by_key(|(r, _)| r.end);
            for i in 0..served.len() {
                for j in i + 1..served.len() {
                    let (a, b) = (served[i], served[j]);
                    if a.0.overlaps(&b.0) && a.1 != b.1 {
                        return Err(format!("{} serves {} and {} serves {}", a.1, a.0, b.1, b.0));
                    }
                }
            }
            Ok(())
        });
        t += 0.1;
    }
    let b = board.clone();
    s = s.check_at(at(14.5), "every acknowledged write is read back", move |_| {
        let (acked, _, answered) = acknowledged(&b);
        if answered != (KEYS as usize + 50 + 30) * F as usize {
            return Err(format!("{answered} replica writes answered"));
        }
        if acked.len() != KEYS as usize {
            return Err(format!("{} keys acknowledged", acked.len()));
        }
        let log = b.log.lock().unwrap();
        let reads: BTreeMap<u64, &ReplicationIndication> = log
            .iter()
            .filter_map(|(_, i)| match i {
                ReplicationIndication::ReadDone { tag, .. } if tag >> 60 == 1 => {
                    Some((tag & 0xffff, i))
                }
                _ => None,
            })
            .collect();
        for (k, v) in &acked {
            match reads.get(k) {
                Some(ReplicationIndication::ReadDone { result: Ok(r), .. })
                    if r.version.0 >= *v => {}
                other => return Err(format!("item-{k}: acknowledged v{v}, read {other:?}")),
            }
        }
        Ok(())
    });
    let b = board.clone();
    s = s.check_at(at(14.5), "f replicas of one version on f hosts", move |_| {
        let (_, written, _) = acknowledged(&b);
        let views = b.views.snapshot();
        // position → (host, version), over what live nodes serve.
        let mut at_pos: BTreeMap<Replica, Vec<(u32, Version)>> = BTreeMap::new();
        for (view, replicas) in views.values() {
            for r in replicas {
                at_pos
                    .entry((r.position, r.key.clone()))
                    .or_default()
                    .push((view.host.0, r.version));
            }
        }
        for (k, v) in &written {
            let kb = key(*k);
            let mut hosts = BTreeSet::new();
            for replica in 0..F {
                let pos = RingId::of_key(&kb).replica(replica, F);
                match at_pos.get(&(pos, kb.clone())).map(Vec::as_slice) {
                    Some([(host, version)]) if version.0 == *v => {
                        hosts.insert(*host);
                    }
                    other => {
                        return Err(format!("item-{k} replica {replica}: {other:?}, want v{v}"))
                    }
                }
            }
            if hosts.len() != F as usize {
                return Err(format!("item-{k} on hosts {hosts:?}"));
            }
        }
        Ok(())
    });
    s.until(at(15.0))
}

#[test]
fn writes_survive_a_join_a_crash_and_a_live_replacement() {
    for seed in seeds(0..3) {
        let board = Board::default();
        let out = scenario(&board).run(seed);
        out.assert_ok();
        assert_eq!(out.alive, NODES - 1);
        // The data did move: a hand-over to node 5 and a rebuild of node 4's range.
        let log = board.log.lock().unwrap();
        let moved = |p: &dyn Fn(&selfman_ports::Movement) -> bool| {
            log.iter().any(|(_, i)| matches!(i, ReplicationIndication::Movement(m) if p(m)))
        };
        assert!(moved(
            &|m| matches!(m, selfman_ports::Movement::Received { items, .. } if *items > 0)
        ));
        assert!(moved(
            &|m| matches!(m, selfman_ports::Movement::Rebuilt { items, .. } if *items > 0)
        ));
        assert!(moved(&|m| matches!(m, selfman_ports::Movement::Repaired { .. })));
    }
}

#[test]
fn over_lossy_slow_links_every_acknowledged_write_is_read_back_and_repaired() {
    for seed in seeds(0..3) {
        let board = Board::default();
        let link = LinkModel {
            latency: Latency::Exponential {
                base: Duration::from_millis(1),
                mean_extra: Duration::from_millis(4),
            },
            loss: 0.05,
        };
        let sim = SimConfig {
            network: SimNetConfig { default_link: link, ..SimNetConfig::default() },
            ..SimConfig::default()
        };
        let out = scenario(&board).config(sim).run(seed);
        out.assert_ok();
        assert!(out.net.lost > 40, "the links did lose messages: {out}");
    }
}

#[test]
fn positions_follow_the_host_rule() {
    // Nodes 0..3 anchor the four sectors; 4 and 5 are inside the sectors of hosts 4 and 5.
    let p = selfman_replication::Placement::new(F);
    for i in 0..NODES {
        let (host, id) = position(i, HOSTS, F);
        assert_eq!(p.sector_of(id), host.0 % F, "node {i}");
        assert_eq!(id == p.anchor(host.0 % F), i < F as usize, "node {i}");
    }
}
