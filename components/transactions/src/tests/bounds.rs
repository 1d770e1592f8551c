//! Findings 4-9 of the session-9 review: duelling leaders back off until contention ends;
//! numbers from the network are checked (rounds, `f`, versions, leases); a replayed prepare
//! locks nothing; sessions, watched and suspected nodes are bounded; the `InitRtm` is not sent
//! again to rTMs that have it; transaction ids do not collide. Each bad input is counted by
//! kind, dropped (or clamped) and panics nothing.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use selfman_core::{NodeAddr, NodeId};
use selfman_ports::{
    LockMode, Rejection, TxHandle, TxId, TxIndication, TxRequest, TxResult, Version,
};

use super::world::{addr, Dest, World};
use crate::config::TxConfig;
use crate::faults::Fault;
use crate::machine::{TxMachine, MAX_WATCHED};
use crate::messages::{ItemInfo, Round, Slot, TxInfo, TxMessage};
use crate::rtm::{takeover_backoff, MAX_ROUND};

fn count(w: &World, kind: Fault) -> u64 {
    w.nodes.values().map(|n| n.m.faults().get(kind)).sum()
}

fn inject(w: &mut World, at: NodeAddr, from: NodeAddr, msg: TxMessage) {
    w.with(at, 0, |m, now, out| m.on_message(from, msg, now, out));
    w.run();
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

#[test]
fn the_backoff_is_staggered_by_rank_randomised_and_doubling() {
    let r = Duration::from_millis(250);
    assert_eq!(takeover_backoff(r, 1, 1, 0), r);
    assert_eq!(takeover_backoff(r, 3, 1, 0), r * 3, "rank r waits at least r retransmits");
    assert!(takeover_backoff(r, 1, 1, 1023) < r * 3, "window of 2 retransmits");
    assert!(takeover_backoff(r, 1, 4, 1023) > r * 16, "doubling: 16 retransmits at 4 refusals");
    assert_eq!(
        takeover_backoff(r, 1, 50, 1023),
        takeover_backoff(r, 1, 5, 1023),
        "capped at 2^5 retransmits"
    );
    let spread: BTreeSet<Duration> =
        (0..64u64).map(|x| takeover_backoff(r, 2, 3, x * 16)).collect();
    assert!(spread.len() > 32, "randomised");
}

/// The TM dies mid-commit; every rTM suspects it. While the higher rounds' acceptances are
/// lost no leader can finish, and each new leader's higher round refuses the others: without
/// a backoff they would lead again on every tick (rounds without end). With it the number of
/// rounds stays small, and once the network heals the transaction ends, the same everywhere.
#[test]
fn duelling_leaders_back_off_and_contention_ends() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    w.detect_crashes = true;
    let tm = addr(2);
    w.seed(b"x", 1, b"old");
    // The TM hears nothing and crashes having decided nothing. The acceptances of every
    // round above 0 are lost for 3 s.
    w.lose = Some(Box::new(move |_, dest, _| matches!(dest, Dest::Direct(to) if *to == tm)));
    write_x(&mut w, tm, 1);
    w.run();
    let tx = *w.m(tm).txs.keys().next().expect("a transaction");
    w.crash(tm);
    w.lose = Some(Box::new(
        |_, _, msg| matches!(msg, TxMessage::Accepted { round, .. } if *round != Round::ZERO),
    ));
    w.tick_for(Duration::from_secs(3));
    let rounds: u64 = w.nodes.values().map(|n| n.m.stats().takeovers).sum();
    assert!(rounds >= 3, "leaders competed ({rounds})");
    assert!(rounds <= 24, "{rounds} rounds in 3 s: the leaders did not back off");
    let highest = w.nodes.values().filter_map(|n| n.m.txs.get(&tx)).map(|s| s.acc.promised.n).max();
    assert!(highest.unwrap_or(0) <= 24, "round {highest:?}");
    w.lose = None;
    let healed = w.now;
    while w.nodes.values().filter(|n| n.up).any(|n| n.m.decision(tx).is_none()) {
        w.tick_for(Duration::from_millis(10));
        assert!(
            w.now < healed + cfg.retransmit * 40 + cfg.takeover_after * 4,
            "contention did not end"
        );
    }
    let decisions: BTreeSet<Option<bool>> =
        w.nodes.values().filter(|n| n.up).map(|n| n.m.decision(tx)).collect();
    assert_eq!(decisions.len(), 1, "one decision: {decisions:?}");
    assert_eq!(count(&w, Fault::ConflictingDecision), 0);
}

#[test]
fn numbers_out_of_range_are_counted_and_dropped() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    let (a, b) = (addr(0), addr(1));
    let stranger = NodeAddr::simulated(99, NodeId(99));
    // A round at the top of the numbers, for a transaction nobody knows: no state.
    inject(
        &mut w,
        b,
        stranger,
        TxMessage::Collect { tx: TxId(7), round: Round { n: u32::MAX, rank: 1 } },
    );
    inject(
        &mut w,
        b,
        stranger,
        TxMessage::Collect { tx: TxId(7), round: Round { n: 1, rank: 99 } },
    );
    inject(
        &mut w,
        b,
        stranger,
        TxMessage::Nack {
            tx: TxId(7),
            round: Round { n: 1, rank: 1 },
            promised: Round { n: u32::MAX, rank: 0 },
        },
    );
    assert_eq!(count(&w, Fault::OutOfRange), 3);
    assert_eq!(w.state_left(), (0, 0));
    // An InitRtm with another replication factor than this node's.
    let info = TxInfo {
        tx: TxId(8),
        acceptors: vec![a, b],
        f: 2,
        items: vec![ItemInfo { key: b"k".to_vec(), mode: LockMode::Write }],
        lease_ms: 1_000,
        eager: false,
    };
    inject(&mut w, b, a, TxMessage::InitRtm { info: info.into() });
    assert_eq!(count(&w, Fault::OutOfRange), 4);
    assert_eq!(w.state_left(), (0, 0));
    // A prepare whose version cannot be incremented: no vote, no lock.
    let (p, _) = w.replica(b"k", 0);
    let prepare = |read: Version, lease_ms: u64| TxMessage::Prepare {
        tx: TxId(9),
        acceptors: vec![a].into(),
        slot: Slot { item: 0, replica: 0 },
        key: b"k".to_vec(),
        mode: LockMode::Write,
        read,
        write: Some(Some(b"v".to_vec())),
        lease_ms,
    };
    inject(&mut w, p, a, prepare(Version(u64::MAX), 1_000));
    assert_eq!(count(&w, Fault::OutOfRange), 5);
    assert!(w.record(b"k", 0).2.is_empty(), "no lock");
    // A prepare with an endless lease: clamped to the longest this configuration gives.
    inject(&mut w, p, a, prepare(Version(0), u64::MAX));
    let part = w.m(p).parts.values().next().expect("a participant");
    assert_eq!(part.lease_ms, cfg.max_wire_lease_ms());
}

#[test]
fn a_forged_round_at_the_top_leaves_the_takeover_counted_not_panicking() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    let tm = addr(0);
    w.seed(b"x", 1, b"old");
    // The TM dies before its votes are counted; one rTM has promised the highest round.
    w.lose = Some(Box::new(move |_, dest, _| matches!(dest, Dest::Direct(to) if *to == tm)));
    write_x(&mut w, tm, 1);
    w.run();
    w.crash(tm);
    w.lose = None;
    let tx = *w.m(tm).txs.keys().next().expect("a transaction");
    let rtms = w.m(tm).txs[&tx].acc.info.as_ref().unwrap().acceptors.clone();
    inject(
        &mut w,
        rtms[1],
        rtms[3],
        TxMessage::Collect { tx, round: Round { n: MAX_ROUND, rank: 3 } },
    );
    w.tick_for(cfg.takeover_after * 4);
    assert!(count(&w, Fault::OutOfRange) >= 1, "rTM 1 found no round above the forged one");
}

#[test]
fn client_leases_are_clamped() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    let a = addr(0);
    let h = TxHandle(1);
    w.seed(b"doc", 1, b"v1");
    w.script(
        a,
        vec![
            TxRequest::Begin { handle: h },
            TxRequest::Read { handle: h, key: b"doc".to_vec() },
            TxRequest::Lock { handle: h, lease_ms: u64::MAX },
        ],
    );
    let s = w.m(a).txs.values().next().expect("the eager transaction");
    assert_eq!(s.acc.info.as_ref().unwrap().lease_ms, cfg.max_wire_lease_ms());
    // The client vanishes: its locks end with the clamped lease, not never.
    w.tick_for(cfg.max_client_lease + Duration::from_secs(1));
    assert!((0..4).all(|r| w.record(b"doc", r).2.is_empty()), "unlocked");
}

#[test]
fn a_replayed_prepare_after_the_finish_locks_nothing() {
    let mut w = World::new(TxConfig::default(), 4);
    let tm = addr(0);
    w.seed(b"x", 1, b"old");
    let seen = Rc::new(RefCell::new(Vec::new()));
    let keep = seen.clone();
    w.lose = Some(Box::new(move |from, dest, msg| {
        if let (TxMessage::Prepare { .. }, Dest::Routed(_)) = (msg, dest) {
            keep.borrow_mut().push((*from, dest.clone(), msg.clone()));
        }
        false
    }));
    write_x(&mut w, tm, 1);
    w.run();
    w.lose = None;
    assert_eq!(w.commits(tm)[&TxHandle(1)].1, TxResult::Ok);
    assert_eq!(w.state_left(), (0, 0));
    let before = count(&w, Fault::Duplicate);
    // The TM handles the prepare of its own replica at once: three were routed.
    assert_eq!(seen.borrow().len(), 3);
    for (from, dest, msg) in seen.borrow().iter().cloned() {
        let Dest::Routed(key) = dest else { continue };
        let at = w.owner(key);
        inject(&mut w, at, from, msg);
    }
    assert_eq!(count(&w, Fault::Duplicate), before + 3, "each replay counted");
    for r in 0..4 {
        let (v, _, votes) = w.record(b"x", r);
        assert_eq!(v, Version(2));
        assert!(votes.is_empty(), "replica {r} locked again by a replay");
    }
}

#[test]
fn idle_sessions_expire() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    let a = addr(0);
    for h in 0..100 {
        w.request(a, TxRequest::Begin { handle: TxHandle(h) });
    }
    w.request(a, TxRequest::Write { handle: TxHandle(0), key: b"k".to_vec(), value: None });
    assert_eq!(w.m(a).waiting().1, 100);
    w.tick_for(cfg.session_idle / 2);
    // Handle 1 stays busy.
    w.request(a, TxRequest::Write { handle: TxHandle(1), key: b"k".to_vec(), value: None });
    w.tick_for(cfg.session_idle / 2 + Duration::from_secs(1));
    assert_eq!(w.m(a).waiting().1, 1, "only the session used since is left");
    w.script(a, vec![TxRequest::Commit { handle: TxHandle(0) }]);
    assert_eq!(w.commits(a)[&TxHandle(0)].1, TxResult::Rejected(Rejection::UnknownHandle));
    w.script(a, vec![TxRequest::Commit { handle: TxHandle(1) }]);
    assert_eq!(w.commits(a)[&TxHandle(1)].1, TxResult::Ok);
}

#[test]
fn watched_and_suspected_nodes_are_bounded() {
    let cfg = TxConfig::default();
    let me = addr(0);
    let mut m = TxMachine::new(me, cfg);
    let mut out = Vec::new();
    let now = selfman_core::Time::from_secs(1);
    for i in 0..(MAX_WATCHED as u32 + 500) {
        let tm = NodeAddr::simulated(1_000 + i, NodeId(u64::from(i)));
        m.on_suspect(tm);
        let info = TxInfo {
            tx: TxId(u64::from(i) + 1),
            acceptors: vec![tm, me],
            f: cfg.f,
            items: vec![ItemInfo { key: b"k".to_vec(), mode: LockMode::Write }],
            lease_ms: 1_000,
            eager: false,
        };
        m.on_message(tm, TxMessage::InitRtm { info: info.into() }, now, &mut out);
    }
    assert!(m.watched.len() <= MAX_WATCHED);
    assert!(m.suspected.len() <= MAX_WATCHED);
}

#[test]
fn init_rtm_is_not_sent_again_to_rtms_that_have_it() {
    let mut w = World::new(TxConfig::default(), 4);
    let a = addr(0);
    let h = TxHandle(1);
    w.seed(b"doc", 1, b"v1");
    w.script(
        a,
        vec![
            TxRequest::Begin { handle: h },
            TxRequest::Read { handle: h, key: b"doc".to_vec() },
            TxRequest::Lock { handle: h, lease_ms: 5_000 },
        ],
    );
    assert!(w
        .told
        .iter()
        .any(|(_, i, _)| matches!(i, TxIndication::Locked { result: TxResult::Ok, .. })));
    let sent = Rc::new(RefCell::new(0u32));
    let n = sent.clone();
    w.lose = Some(Box::new(move |_, _, msg| {
        if matches!(msg, TxMessage::InitRtm { .. }) {
            *n.borrow_mut() += 1;
        }
        false
    }));
    // The client edits for 3 s: the TM re-sends nothing the rTMs have.
    w.tick_for(Duration::from_secs(3));
    assert_eq!(*sent.borrow(), 0, "InitRtm re-sent while the locks were held");
}

#[test]
fn transaction_ids_do_not_collide() {
    let mut ids = BTreeSet::new();
    for i in 0..8u32 {
        // Nodes on the same port and nearby addresses, and incarnations of one node.
        let mut m = TxMachine::new(
            NodeAddr::simulated(1 + i % 4, NodeId(u64::from(i / 4) + 1)),
            TxConfig::default(),
        );
        for _ in 0..20_000 {
            assert!(ids.insert(m.new_tx_id()), "a repeated id");
        }
    }
}
