//! Bad input: votes, decisions and lock requests for unknown transactions, from non-members,
//! with wrong rounds, duplicated or contradicting — each counted by kind and dropped; none
//! panics, flips a decision or leaves a lock.

use std::time::Duration;

use selfman_core::NodeAddr;
use selfman_ports::{LockMode, TxHandle, TxId, TxRequest, TxResult, Version};

use super::world::{addr, World};
use crate::config::TxConfig;
use crate::faults::Fault;
use crate::messages::{ItemInfo, Round, Slot, TxInfo, TxMessage, Value, MAX_ACCEPTORS};

fn inject(w: &mut World, at: NodeAddr, from: NodeAddr, msg: TxMessage) {
    w.with(at, 0, |m, now, out| m.on_message(from, msg, now, out));
    w.run();
}

fn count(w: &World, kind: Fault) -> u64 {
    w.nodes.values().map(|n| n.m.faults().get(kind)).sum()
}

#[test]
fn every_kind_of_bad_input_is_counted_and_dropped() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    let (tm, b) = (addr(0), addr(1));
    let stranger = NodeAddr::simulated(99, selfman_core::NodeId(99));
    let ghost = TxId(0x5eed);
    let s0 = Slot { item: 0, replica: 0 };

    // For transactions nobody knows.
    inject(
        &mut w,
        b,
        stranger,
        TxMessage::Decided { tx: ghost, slot: s0, commit: true, write: None },
    );
    inject(
        &mut w,
        b,
        stranger,
        TxMessage::Accepted { tx: ghost, round: Round::ZERO, values: vec![(s0, Value::Prepared)] },
    );
    inject(
        &mut w,
        b,
        stranger,
        TxMessage::Promise {
            tx: ghost,
            round: Round { n: 1, rank: 1 },
            accepted: vec![],
            decided: None,
            writes: None,
        },
    );
    inject(
        &mut w,
        b,
        stranger,
        TxMessage::Nack { tx: ghost, round: Round { n: 1, rank: 1 }, promised: Round::ZERO },
    );
    inject(&mut w, b, stranger, TxMessage::Applied { tx: ghost, slot: s0 });
    inject(&mut w, b, stranger, TxMessage::AskDecision { tx: ghost, slot: s0 });
    inject(&mut w, b, stranger, TxMessage::Forget { tx: ghost, commit: true });
    inject(&mut w, b, stranger, TxMessage::NoVote { tx: ghost, slot: s0 });
    inject(&mut w, b, stranger, TxMessage::Failed { tx: ghost, slot: s0 });
    assert_eq!(count(&w, Fault::UnknownTx), 9);
    // A vote may overtake its InitRtm: kept, bounded, and counted when it never comes.
    inject(
        &mut w,
        b,
        stranger,
        TxMessage::Vote { tx: ghost, slot: s0, value: Value::Prepared, writes: None },
    );
    assert_eq!(w.m(b).in_flight().0, 1);
    // Lock requests that are not well formed.
    let prepare = |acceptors: Vec<NodeAddr>, replica| TxMessage::Prepare {
        tx: ghost,
        acceptors: acceptors.into(),
        slot: Slot { item: 0, replica },
        key: b"k".to_vec(),
        mode: LockMode::Write,
        read: Version(0),
        write: Some(None),
        lease_ms: 1000,
    };
    inject(&mut w, b, stranger, prepare(vec![], 0));
    inject(&mut w, b, stranger, prepare(vec![stranger; MAX_ACCEPTORS + 1], 0));
    assert_eq!(count(&w, Fault::Oversized), 2);
    inject(&mut w, b, stranger, prepare(vec![stranger], 4));
    assert_eq!(count(&w, Fault::NotMember), 1);
    let big =
        TxInfo { tx: ghost, acceptors: vec![], f: 4, items: vec![], lease_ms: 1, eager: false };
    inject(&mut w, b, stranger, TxMessage::InitRtm { info: big.into() });
    assert_eq!(count(&w, Fault::Oversized), 3);
    assert!((0..4).all(|r| w.record(b"k", r).2.is_empty()), "no lock taken");

    // A real transaction, held undecided: the TM hears no acceptance.
    w.seed(b"x", 1, b"old");
    let h = TxHandle(1);
    w.script(
        tm,
        vec![
            TxRequest::Begin { handle: h },
            TxRequest::Write { handle: h, key: b"x".to_vec(), value: Some(b"new".to_vec()) },
        ],
    );
    w.lose = Some(Box::new(move |_, dest, msg| {
        matches!(dest, super::world::Dest::Direct(to) if *to == tm)
            && matches!(msg, TxMessage::Vote { .. } | TxMessage::Accepted { .. })
    }));
    w.request(tm, TxRequest::Commit { handle: h });
    w.run();
    let tx = *w.m(tm).txs.keys().next().expect("the TM's transaction");
    assert_eq!(w.m(tm).decision(tx), None);
    let rtm = w.m(tm).rtms()[0];
    let (p, _) = w.replica(b"x", 1);
    let slot1 = Slot { item: 0, replica: 1 };
    let before = w.nodes.values().map(|n| n.m.faults().total()).sum::<u64>();

    inject(
        &mut w,
        rtm,
        p,
        TxMessage::Vote { tx, slot: slot1, value: Value::Prepared, writes: None },
    );
    assert_eq!(count(&w, Fault::Duplicate), 1);
    inject(
        &mut w,
        rtm,
        p,
        TxMessage::Vote { tx, slot: slot1, value: Value::Aborted, writes: None },
    );
    assert_eq!(count(&w, Fault::ConflictingVote), 1);
    inject(
        &mut w,
        rtm,
        p,
        TxMessage::Vote {
            tx,
            slot: Slot { item: 3, replica: 0 },
            value: Value::Aborted,
            writes: None,
        },
    );
    let nm = count(&w, Fault::NotMember);
    inject(&mut w, rtm, stranger, TxMessage::Collect { tx, round: Round { n: 5, rank: 0 } });
    inject(&mut w, rtm, tm, TxMessage::Collect { tx, round: Round { n: 5, rank: 3 } }); // forged rank
    inject(
        &mut w,
        rtm,
        stranger,
        TxMessage::Propose {
            tx,
            round: Round { n: 5, rank: 0 },
            values: vec![(slot1, Value::Aborted)],
            writes: None,
        },
    );
    inject(&mut w, rtm, stranger, TxMessage::Decided { tx, slot: s0, commit: false, write: None });
    inject(&mut w, p, stranger, TxMessage::Decided { tx, slot: slot1, commit: false, write: None });
    inject(&mut w, rtm, stranger, TxMessage::Forget { tx, commit: false });
    inject(
        &mut w,
        rtm,
        stranger,
        TxMessage::InitRtm {
            info: TxInfo {
                tx,
                acceptors: vec![stranger, rtm],
                f: 4,
                items: vec![ItemInfo { key: b"x".to_vec(), mode: LockMode::Write }],
                lease_ms: 1,
                eager: false,
            }
            .into(),
        },
    );
    inject(&mut w, rtm, tm, TxMessage::Accepted { tx, round: Round::ZERO, values: vec![] });
    assert_eq!(count(&w, Fault::NotMember), nm + 8);
    // A promise and an acceptance of a round nobody leads.
    inject(
        &mut w,
        rtm,
        tm,
        TxMessage::Promise {
            tx,
            round: Round { n: 9, rank: 1 },
            accepted: vec![],
            decided: Some(false),
            writes: None,
        },
    );
    inject(
        &mut w,
        rtm,
        tm,
        TxMessage::Accepted { tx, round: Round { n: 9, rank: 1 }, values: vec![] },
    );
    assert_eq!(count(&w, Fault::WrongRound), 2);
    let after = w.nodes.values().map(|n| n.m.faults().total()).sum::<u64>();
    assert_eq!(after - before, 1 + 1 + 1 + 8 + 2, "each injected message counted once");
    // Nothing above decided, forgot or unlocked anything.
    assert!(w.nodes.values().all(|n| n.m.decision(tx).is_none()));
    assert_eq!(w.record(b"x", 1).2.len(), 1, "the participant still holds its lock");

    // Let the transaction finish: it commits, and a forged flip later changes nothing.
    w.lose = None;
    w.tick_for(Duration::from_millis(300));
    assert_eq!(w.commits(tm)[&h].1, TxResult::Ok);
    let live: Vec<NodeAddr> = w.nodes.keys().copied().collect();
    let tx_kept = live
        .iter()
        .find(|a| w.m(**a).txs.get(&tx).is_some_and(|s| s.acc.decided.is_some()))
        .copied();
    if let Some(a) = tx_kept {
        let member = if a == tm { rtm } else { tm };
        inject(&mut w, a, member, TxMessage::Decided { tx, slot: s0, commit: false, write: None });
        assert_eq!(w.m(a).decision(tx), Some(true), "a decision never flips");
        assert_eq!(count(&w, Fault::ConflictingDecision), 1);
    }
    // Nor at a node that forgot it: its tombstone keeps the decision.
    for a in &live {
        if w.m(*a).decision(tx).is_some() && !w.m(*a).txs.contains_key(&tx) {
            inject(&mut w, *a, tm, TxMessage::Forget { tx, commit: false });
            inject(&mut w, *a, tm, TxMessage::Decided { tx, slot: s0, commit: false, write: None });
            assert_eq!(w.m(*a).decision(tx), Some(true), "a tombstone never flips");
        }
    }
    for r in 0..4 {
        let (v, _, votes) = w.record(b"x", r);
        assert_eq!(v, Version(2));
        assert!(votes.is_empty(), "no lock left at replica {r}");
    }
    // The early vote for the unknown transaction is dropped and counted with its state.
    let unknown = count(&w, Fault::UnknownTx);
    w.tick_for(cfg.lease * 4 + Duration::from_secs(1));
    assert_eq!(count(&w, Fault::UnknownTx), unknown + 1);
    assert_eq!(w.state_left(), (0, 0));
}
