//! Failures of the TM, of rTMs and of participants: takeover, recovery rounds, leases.

use std::time::Duration;

use selfman_core::NodeAddr;
use selfman_ports::{TxHandle, TxIndication, TxRequest, TxResult, Version};

use super::world::{addr, World};
use crate::config::TxConfig;
use crate::messages::TxMessage;

fn start(w: &mut World, a: NodeAddr, key: &[u8], handle: u64) {
    let handle = TxHandle(handle);
    w.script(
        a,
        vec![
            TxRequest::Begin { handle },
            TxRequest::Write { handle, key: key.to_vec(), value: Some(b"new".to_vec()) },
        ],
    );
    w.request(a, TxRequest::Commit { handle });
}

/// The decision every live node that knows one has of the (single) transaction, and how
/// many know it.
fn decisions(w: &World) -> Vec<bool> {
    w.nodes
        .values()
        .filter(|n| n.up)
        .flat_map(|n| n.m.txs.values().filter_map(|s| s.acc.decided))
        .collect()
}

#[test]
fn an_rtm_takes_over_from_a_crashed_tm_and_commits() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    let tm = addr(0);
    w.seed(b"x", 1, b"old");
    start(&mut w, tm, b"x", 1);
    // The TM dies with its prepares and InitRtms on the wire.
    w.crash(tm);
    w.run();
    assert!(decisions(&w).is_empty(), "nobody decided yet");
    let t0 = w.now;
    while decisions(&w).len() < 3 {
        w.tick_for(Duration::from_millis(10));
        assert!(w.now < t0 + cfg.takeover_after * 2, "no takeover");
    }
    let took = w.now.duration_since(t0);
    assert!(took <= cfg.takeover_after + Duration::from_millis(50), "took {took:?}");
    assert!(decisions(&w).iter().all(|d| *d), "3 of 4 replicas prepared: commit");
    w.tick_for(Duration::from_millis(100));
    let (tm_replica, _) = (0..4)
        .map(|r| w.replica(b"x", r))
        .map(|(n, _)| n)
        .enumerate()
        .find(|(_, n)| *n == tm)
        .unwrap();
    for r in 0..4u32 {
        let (v, val, votes) = w.record(b"x", r);
        if r as usize == tm_replica {
            continue;
        }
        assert_eq!((v, val.as_deref()), (Version(2), Some(&b"new"[..])), "replica {r}");
        assert!(votes.is_empty(), "replica {r} unlocked");
    }
    assert_eq!(w.nodes.values().map(|n| n.m.stats().takeovers).sum::<u64>(), 1, "one rTM led");
    // The decision for the crashed replica is given up after two leases; all state goes.
    w.tick_for(cfg.lease * 2 + Duration::from_secs(1));
    assert_eq!(w.state_left(), (0, 0));
}

#[test]
fn a_suspected_tm_is_taken_over_at_once_by_the_rtm_that_knows_the_decision() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    w.detect_crashes = true;
    let tm = addr(1);
    w.seed(b"y", 1, b"old");
    start(&mut w, tm, b"y", 1);
    // Deliver until the TM has decided and told exactly one participant, then crash it:
    // every rTM suspects it at once and leads a round of its own.
    let mut told = 0;
    w.lose = Some(Box::new(move |from, _, msg| {
        if *from == tm && matches!(msg, TxMessage::Decided { .. } | TxMessage::Forget { .. }) {
            told += 1;
            return told > 1;
        }
        false
    }));
    w.run();
    assert_eq!(w.m(tm).decision(w.m(tm).txs.keys().next().copied().unwrap()), Some(true));
    w.crash(tm);
    w.lose = None;
    w.tick_for(Duration::from_millis(200));
    let d = decisions(&w);
    assert_eq!(d.len(), 3, "every live rTM decided");
    assert!(d.iter().all(|x| *x), "the takeover keeps the TM's commit");
    let leaders: u64 = w.nodes.values().map(|n| n.m.stats().takeovers).sum();
    assert_eq!(leaders, 0, "no round needed: the rTM that knew the decision delivered it");
    assert!(w
        .nodes
        .values()
        .all(|n| n.m.faults().get(crate::faults::Fault::ConflictingDecision) == 0));
}

#[test]
fn a_crashed_participant_does_not_hold_up_a_majority() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    w.seed(b"z", 1, b"old");
    let (p, _) = w.replica(b"z", 2);
    let tm = (0..4).map(addr).find(|a| *a != p).unwrap();
    w.crash(p); // a participant and one acceptor: fewer than a majority of each
    start(&mut w, tm, b"z", 1);
    w.run();
    assert_eq!(w.commits(tm)[&TxHandle(1)].1, TxResult::Ok, "3 of 4 prepared: commit at once");
    assert_eq!(w.m(tm).stats().recoveries, 0);
}

#[test]
fn missing_votes_are_decided_by_the_tm_in_a_higher_round() {
    // One replica crashed, one locked by another transaction: two prepared, one aborted, one unknown — undecided
    // until the TM's recovery round gives the unknown instance `Aborted`.
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    w.seed(b"z", 1, b"old");
    let (p, _) = w.replica(b"z", 2);
    let (locked, id) = w.replica(b"z", 3);
    let now = w.now;
    let op = selfman_ports::ReplicaOp::Vote {
        tx: selfman_ports::TxId(9),
        mode: selfman_ports::LockMode::Write,
        read: Version(1),
        lease_ms: 60_000,
    };
    w.nodes.get_mut(&locked).unwrap().store.apply(id, &op, now);
    let tm = (0..4).map(addr).find(|a| *a != p).unwrap();
    w.crash(p);
    start(&mut w, tm, b"z", 1);
    w.run();
    assert!(w.commits(tm).is_empty(), "undecided");
    let t0 = w.now;
    while w.commits(tm).is_empty() {
        w.tick_for(Duration::from_millis(10));
        assert!(w.now < t0 + cfg.vote_timeout * 2);
    }
    assert_eq!(w.commits(tm)[&TxHandle(1)].1, TxResult::Abort(vec![b"z".to_vec()]));
    assert!(w.now.duration_since(t0) <= cfg.vote_timeout + Duration::from_millis(50));
    assert_eq!(w.m(tm).stats().recoveries, 1);
    w.tick_for(Duration::from_millis(100));
    for r in [0, 1, 3] {
        let votes = w.record(b"z", r).2;
        assert!(
            votes.iter().all(|v| v.tx == selfman_ports::TxId(9)),
            "replica {r}: our lock is gone"
        );
    }
}

#[test]
fn kill_one_then_two_of_four_nodes() {
    // Scalaris' kill test with f = 4 on 4 nodes. One killed: reads and writes work. Two
    // killed: no majority (3 of 4) of any key's replicas answers, so reads, and writes
    // (which read the version first), end with `Timeout`; nothing is written.
    let cfg = TxConfig::default();
    let tm = addr(0);
    let mut w = World::new(cfg, 4);
    w.seed(b"w", 1, b"old");
    w.crash(addr(3));
    start(&mut w, tm, b"w", 2);
    w.run();
    assert_eq!(w.commits(tm)[&TxHandle(2)].1, TxResult::Ok);
    w.crash(addr(2));
    let h = TxHandle(3);
    w.script(
        tm,
        vec![
            TxRequest::Begin { handle: h },
            TxRequest::Read { handle: h, key: b"w".to_vec() },
            TxRequest::Write { handle: h, key: b"v".to_vec(), value: Some(b"x".to_vec()) },
            TxRequest::Commit { handle: h },
        ],
    );
    let results: Vec<TxResult> = w
        .told
        .iter()
        .filter_map(|(_, i, _)| match i {
            TxIndication::ReadDone { handle, result, .. }
            | TxIndication::OpDone { handle, result, .. }
                if *handle == h =>
            {
                Some(result.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(results, vec![TxResult::Timeout, TxResult::Timeout]);
    assert_eq!(w.commits(tm)[&h].1, TxResult::Ok, "nothing left to commit");
    assert_eq!(w.record(b"v", 0).0, Version(0));
}

/// A key whose four replicas sit on the odd-numbered nodes of an 8-node world (node 0's
/// acceptors are the even ones).
fn odd_key(w: &World) -> Vec<u8> {
    (0..)
        .map(|i| format!("key{i}").into_bytes())
        .find(|k| {
            (0..4).all(|r| {
                let (n, _) = w.replica(k, r);
                (1..8).step_by(2).any(|i| addr(i) == n)
            })
        })
        .unwrap()
}

#[test]
fn locks_of_a_transaction_whose_every_acceptor_died_end_with_their_lease() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 8);
    let key = odd_key(&w);
    w.seed(&key, 1, b"old");
    let tm = addr(0);
    assert!(w.m(tm).rtms().iter().all(|r| [addr(2), addr(4), addr(6)].contains(r)));
    // The participants vote, then the TM and all its rTMs die: the locks stay, undecided.
    start(&mut w, tm, &key, 1);
    for a in [0, 2, 4, 6] {
        w.crash(addr(a));
    }
    w.run();
    let locked_at = w.now;
    for r in 0..4 {
        assert_eq!(w.record(&key, r).2.len(), 1, "replica {r} locked");
    }
    // Another transaction on the key finds it locked...
    let other = addr(1);
    start(&mut w, other, &key, 2);
    w.tick_for(Duration::from_secs(2));
    assert_eq!(w.commits(other)[&TxHandle(2)].1, TxResult::Abort(vec![key.clone()]));
    // ... until the lease ends.
    w.tick_for(cfg.lease - w.now.duration_since(locked_at) + Duration::from_millis(10));
    start(&mut w, other, &key, 3);
    w.tick_for(Duration::from_millis(100));
    assert_eq!(w.commits(other)[&TxHandle(3)].1, TxResult::Ok);
    assert_eq!(w.record(&key, 0).0, Version(2));
    // The participants stop asking and forget after two leases.
    w.tick_for(cfg.lease * 2);
    assert_eq!(w.state_left(), (0, 0));
}
