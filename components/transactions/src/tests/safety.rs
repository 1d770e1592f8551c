//! The safety findings of the session-9 review, each reproduced first (these tests failed on
//! the code before the fix) and kept as regressions:
//!
//! 1. an eager commit takes its values from the TM's proposal, not from its local acceptor
//!    (which may have refused the client's vote after promising a higher round);
//! 2. `Forget` carries the decision, an undecided acceptor adopts it, and a forgotten
//!    transaction's decision answers a later `Collect` (agreement after `Forget`);
//! 3. `Applied` is said only for a decision really applied at the replica: a node without the
//!    participant says nothing, and a participant whose replica fails says `Failed`, so the
//!    deliverer keeps sending the decision.

use std::time::Duration;

use selfman_core::NodeAddr;
use selfman_ports::{TxHandle, TxId, TxIndication, TxRequest, TxResult, Version};

use super::world::{addr, Dest, World};
use crate::config::TxConfig;
use crate::faults::Fault;
use crate::messages::{Round, Slot, TxMessage};

/// The single transaction `tm` holds state of, and its acceptors.
fn only_tx(w: &World, tm: NodeAddr) -> (TxId, Vec<NodeAddr>) {
    let (tx, s) = w.m(tm).txs.iter().next().expect("a transaction at the TM");
    (*tx, s.acc.info.as_ref().expect("the TM knows its transaction").acceptors.clone())
}

fn write_x(w: &mut World, a: NodeAddr, h: u64) {
    let handle = TxHandle(h);
    w.script(
        a,
        vec![
            TxRequest::Begin { handle },
            TxRequest::Write { handle, key: b"x".to_vec(), value: Some(b"new".to_vec()) },
        ],
    );
    w.request(a, TxRequest::Commit { handle });
}

fn conflicts(w: &World) -> u64 {
    w.nodes.values().map(|n| n.m.faults().get(Fault::ConflictingDecision)).sum()
}

/// Finding 1: the TM's own acceptor promised a higher round (an rTM's `Collect` after a false
/// suspicion, its other messages lost) and so refuses the client's commit vote; the other
/// acceptors accept it and it is chosen. The commit must install the client's values.
#[test]
fn an_eager_commit_installs_the_proposed_values_when_the_tms_acceptor_refused_them() {
    let mut w = World::new(TxConfig::default(), 4);
    let a = addr(0);
    let h = TxHandle(1);
    w.seed(b"doc", 1, b"v1");
    w.script(
        a,
        vec![
            TxRequest::Begin { handle: h },
            TxRequest::Read { handle: h, key: b"doc".to_vec() },
            TxRequest::Lock { handle: h, lease_ms: 3_000 },
            TxRequest::Write { handle: h, key: b"doc".to_vec(), value: Some(b"v2".to_vec()) },
        ],
    );
    let (tx, acceptors) = only_tx(&w, a);
    // rTM 1's Collect reaches only the TM.
    w.with(a, 0, |m, now, out| {
        m.on_message(
            acceptors[1],
            TxMessage::Collect { tx, round: Round { n: 1, rank: 1 } },
            now,
            out,
        )
    });
    w.queue.clear();
    w.script(a, vec![TxRequest::Commit { handle: h }]);
    assert_eq!(w.commits(a)[&h].1, TxResult::Ok);
    w.tick_for(Duration::from_millis(100));
    for r in 0..4 {
        let (v, val, votes) = w.record(b"doc", r);
        assert_eq!((v, val.as_deref()), (Version(2), Some(&b"v2"[..])), "replica {r}");
        assert!(votes.is_empty(), "replica {r} unlocked");
    }
    assert_eq!(conflicts(&w), 0);
}

/// Finding 2: the decision to one rTM is lost; every participant applies and the TM says
/// `Forget`. The rTM must take the decision from the `Forget`, and an acceptor that forgot the
/// transaction must answer a later `Collect` with the decision (never an empty promise).
#[test]
fn forget_carries_the_decision_and_a_forgotten_transaction_answers_collect_with_it() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    let tm = addr(0);
    w.seed(b"x", 1, b"old");
    write_x(&mut w, tm, 1);
    let (tx, acceptors) = only_tx(&w, tm);
    let late = acceptors[3];
    w.lose = Some(Box::new(move |from, dest, msg| {
        *from == tm
            && matches!(dest, Dest::Direct(to) if *to == late)
            && matches!(msg, TxMessage::Decided { slot, .. } if *slot == Slot::ACCEPTORS)
    }));
    w.run();
    w.lose = None;
    assert_eq!(w.commits(tm)[&TxHandle(1)].1, TxResult::Ok);
    assert_eq!(w.m(tm).in_flight().0, 0, "the TM forgot the transaction");
    assert_eq!(w.m(late).decision(tx), Some(true), "the rTM took the decision from Forget");
    // A leader's Collect at an acceptor that forgot: answered with the decision.
    w.with(tm, 0, |m, now, out| {
        m.on_message(late, TxMessage::Collect { tx, round: Round { n: 7, rank: 3 } }, now, out)
    });
    let answered = w
        .queue
        .iter()
        .any(|(_, _, msg, _)| matches!(msg, TxMessage::Promise { decided: Some(true), .. }));
    assert!(answered, "no promise with the decision: {:?}", w.queue);
    w.run();
    w.tick_for(cfg.takeover_after * 4);
    assert_eq!(conflicts(&w), 0);
    for n in w.nodes.values() {
        assert_ne!(n.m.decision(tx), Some(false), "nobody decides abort");
    }
}

/// Finding 3a: the prepare of one replica is lost (its range moved, say); the decision routed
/// to that replica finds no participant. The node must not say `Applied` for it: the TM keeps
/// delivering until its deadline.
#[test]
fn a_node_without_the_participant_never_says_applied() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 8);
    // A TM and a replica of `x` on a node that is not one of its acceptors.
    let (tm, lost) = (0..8)
        .map(addr)
        .find_map(|tm| {
            let mut acceptors = w.m(tm).rtms();
            acceptors.push(tm);
            (0..4).find(|r| !acceptors.contains(&w.replica(b"x", *r).0)).map(|r| (tm, r))
        })
        .expect("8 nodes, 4 acceptors");
    w.seed(b"x", 1, b"old");
    w.lose = Some(Box::new(
        move |_, _, msg| matches!(msg, TxMessage::Prepare { slot, .. } if slot.replica == lost),
    ));
    write_x(&mut w, tm, 1);
    w.run();
    assert_eq!(w.commits(tm)[&TxHandle(1)].1, TxResult::Ok, "3 of 4 prepared");
    let (tx, _) = only_tx(&w, tm);
    let d = w.m(tm).txs[&tx].delivery.as_ref().expect("still delivering");
    assert_eq!(
        d.pending.keys().copied().collect::<Vec<_>>(),
        vec![Slot { item: 0, replica: lost }]
    );
    w.tick_for(Duration::from_secs(2));
    assert!(w.m(tm).txs.contains_key(&tx), "no Applied came for replica {lost}");
    w.tick_for(cfg.lease * 2);
    assert_eq!(w.state_left(), (0, 0), "given up at the deadline");
}

/// Finding 3b: one replica's apply fails again and again; its participant must say `Failed`,
/// not `Applied`, and apply once the replica answers again (the decision is re-sent).
#[test]
fn a_participant_whose_replica_fails_says_failed_and_applies_later() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    let tm = addr(0);
    w.seed(b"x", 1, b"old");
    w.failing.push((b"x".to_vec(), 1));
    write_x(&mut w, tm, 1);
    let (tx, _) = only_tx(&w, tm);
    w.run();
    assert_eq!(w.commits(tm)[&TxHandle(1)].1, TxResult::Ok);
    let d = w.m(tm).txs[&tx].delivery.as_ref().expect("still delivering");
    assert_eq!(d.pending.keys().copied().collect::<Vec<_>>(), vec![Slot { item: 0, replica: 1 }]);
    assert_eq!(w.record(b"x", 1).0, Version(1), "replica 1 not applied yet");
    w.tick_for(Duration::from_secs(1));
    assert!(w.m(tm).txs.contains_key(&tx), "still delivering");
    w.failing.clear();
    w.tick_for(Duration::from_millis(500));
    let (v, val, votes) = w.record(b"x", 1);
    assert_eq!((v, val.as_deref()), (Version(2), Some(&b"new"[..])));
    assert!(votes.is_empty());
    assert!(!w.m(tm).txs.contains_key(&tx), "every participant applied: forgotten");
    let told_twice =
        w.told.iter().filter(|(_, i, _)| matches!(i, TxIndication::Committed { .. })).count();
    assert_eq!(told_twice, 1);
}
