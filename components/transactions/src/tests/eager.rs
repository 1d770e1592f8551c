//! Eager locking: locks first, values at commit; leases end the locks of a client that never
//! commits; takeover finishes (or aborts) an eager transaction whose TM died.

use std::time::Duration;

use selfman_core::NodeAddr;
use selfman_ports::{Rejection, TxHandle, TxIndication, TxRequest, TxResult, Version};

use super::world::{addr, World};
use crate::config::TxConfig;

const LEASE_MS: u64 = 3_000;

fn locked(w: &World, a: NodeAddr, h: TxHandle) -> Option<TxResult> {
    w.told.iter().find_map(|(n, i, _)| match i {
        TxIndication::Locked { handle, result } if *n == a && *handle == h => Some(result.clone()),
        _ => None,
    })
}

/// Client at `a` reads `key` and locks it.
fn lock(w: &mut World, a: NodeAddr, h: TxHandle, key: &[u8]) {
    w.script(
        a,
        vec![
            TxRequest::Begin { handle: h },
            TxRequest::Read { handle: h, key: key.to_vec() },
            TxRequest::Lock { handle: h, lease_ms: LEASE_MS },
        ],
    );
}

fn optimistic_write(w: &mut World, a: NodeAddr, h: TxHandle, key: &[u8]) {
    w.script(
        a,
        vec![
            TxRequest::Begin { handle: h },
            TxRequest::Write { handle: h, key: key.to_vec(), value: Some(b"theirs".to_vec()) },
            TxRequest::Commit { handle: h },
        ],
    );
}

#[test]
fn locks_first_then_values() {
    let mut w = World::new(TxConfig::default(), 4);
    let (a, b) = (addr(0), addr(1));
    w.seed(b"doc", 1, b"v1");
    lock(&mut w, a, TxHandle(1), b"doc");
    assert_eq!(locked(&w, a, TxHandle(1)), Some(TxResult::Ok));
    for r in 0..4 {
        assert_eq!(w.record(b"doc", r).2.len(), 1, "replica {r} locked");
    }
    // Others are kept out while the client edits.
    optimistic_write(&mut w, b, TxHandle(9), b"doc");
    assert_eq!(w.commits(b)[&TxHandle(9)].1, TxResult::Abort(vec![b"doc".to_vec()]));
    w.script(
        a,
        vec![
            TxRequest::Write { handle: TxHandle(1), key: b"other".to_vec(), value: None },
            TxRequest::Write {
                handle: TxHandle(1),
                key: b"doc".to_vec(),
                value: Some(b"v2".to_vec()),
            },
            TxRequest::Commit { handle: TxHandle(1) },
        ],
    );
    let rejected = w.told.iter().any(|(_, i, _)| {
        matches!(i, TxIndication::OpDone { result: TxResult::Rejected(Rejection::NotLocked), .. })
    });
    assert!(rejected, "a key not locked cannot be written");
    assert_eq!(w.commits(a)[&TxHandle(1)].1, TxResult::Ok);
    for r in 0..4 {
        let (v, val, votes) = w.record(b"doc", r);
        assert_eq!((v, val.as_deref()), (Version(2), Some(&b"v2"[..])), "replica {r}");
        assert!(votes.is_empty());
    }
    assert_eq!(w.state_left(), (0, 0));
}

#[test]
fn a_client_that_never_commits_loses_its_locks_at_the_lease() {
    let mut w = World::new(TxConfig::default(), 4);
    let (a, b) = (addr(2), addr(3));
    w.seed(b"doc", 1, b"v1");
    lock(&mut w, a, TxHandle(1), b"doc");
    assert_eq!(locked(&w, a, TxHandle(1)), Some(TxResult::Ok));
    let t0 = w.now;
    while !w.commits(a).contains_key(&TxHandle(1)) {
        w.tick_for(Duration::from_millis(10));
        assert!(w.now < t0 + Duration::from_millis(LEASE_MS * 2));
    }
    let took = w.now.duration_since(t0);
    assert!(
        took >= Duration::from_millis(LEASE_MS) && took <= Duration::from_millis(LEASE_MS + 50),
        "{took:?}"
    );
    assert_eq!(w.commits(a)[&TxHandle(1)].1, TxResult::Abort(vec![]), "the client is told");
    assert!((0..4).all(|r| w.record(b"doc", r).2.is_empty()), "unlocked");
    optimistic_write(&mut w, b, TxHandle(2), b"doc");
    assert_eq!(w.commits(b)[&TxHandle(2)].1, TxResult::Ok);
    w.script(a, vec![TxRequest::Commit { handle: TxHandle(1) }]);
    assert_eq!(w.commits(a)[&TxHandle(1)].1, TxResult::Rejected(Rejection::UnknownHandle));
}

#[test]
fn takeover_aborts_an_eager_transaction_whose_tm_died_holding_locks() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    let a = addr(0);
    w.seed(b"doc", 1, b"v1");
    lock(&mut w, a, TxHandle(1), b"doc");
    w.crash(a);
    let t0 = w.now;
    let live = |w: &World| (0..4).filter(|r| w.replica(b"doc", *r).0 != a).collect::<Vec<u32>>();
    while live(&w).iter().any(|r| !w.record(b"doc", *r).2.is_empty()) {
        w.tick_for(Duration::from_millis(10));
        assert!(
            w.now < t0 + Duration::from_millis(LEASE_MS) + cfg.lease,
            "locks outlived the lease"
        );
    }
    let took = w.now.duration_since(t0);
    assert!(
        took <= Duration::from_millis(LEASE_MS) + cfg.takeover_after + Duration::from_millis(50),
        "{took:?}"
    );
    assert_eq!(w.record(b"doc", live(&w)[0]).0, Version(1), "aborted");
}

#[test]
fn takeover_commits_an_eager_transaction_whose_client_committed() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    w.detect_crashes = true;
    let a = addr(1);
    w.seed(b"doc", 1, b"v1");
    lock(&mut w, a, TxHandle(1), b"doc");
    w.script(
        a,
        vec![TxRequest::Write {
            handle: TxHandle(1),
            key: b"doc".to_vec(),
            value: Some(b"v2".to_vec()),
        }],
    );
    // The commit reaches the rTMs; the TM dies before it hears a single acceptance.
    w.lose = Some(Box::new(
        move |_, dest, _| matches!(dest, super::world::Dest::Direct(to) if *to == a),
    ));
    w.request(a, TxRequest::Commit { handle: TxHandle(1) });
    w.run();
    w.crash(a);
    w.lose = None;
    w.tick_for(Duration::from_millis(500));
    for r in 0..4 {
        if w.replica(b"doc", r).0 == a {
            continue;
        }
        let (v, val, votes) = w.record(b"doc", r);
        assert_eq!(
            (v, val.as_deref()),
            (Version(2), Some(&b"v2"[..])),
            "replica {r}: the rTM delivered the values"
        );
        assert!(votes.is_empty());
    }
}

#[test]
fn a_takeover_that_overtakes_the_clients_commit_aborts_everywhere() {
    let cfg = TxConfig::default();
    let mut w = World::new(cfg, 4);
    w.detect_crashes = true;
    let a = addr(1);
    w.seed(b"doc", 1, b"v1");
    lock(&mut w, a, TxHandle(1), b"doc");
    w.script(
        a,
        vec![TxRequest::Write {
            handle: TxHandle(1),
            key: b"doc".to_vec(),
            value: Some(b"v2".to_vec()),
        }],
    );
    // The rTMs start their rounds before the client's commit reaches them: they promised a
    // higher round, refuse it, and find no value for the client's instance.
    w.request(a, TxRequest::Commit { handle: TxHandle(1) });
    let held: Vec<_> = w.queue.drain(..).collect();
    assert!(held.iter().all(|(_, _, m, _)| m.kind() == "vote"), "the client's commit votes");
    w.crash(a);
    w.tick_for(Duration::from_millis(100));
    // The commit votes arrive after the rounds.
    w.queue.extend(held);
    w.run();
    w.tick_for(Duration::from_millis(400));
    for r in 0..4 {
        if w.replica(b"doc", r).0 == a {
            continue;
        }
        let (v, _, votes) = w.record(b"doc", r);
        assert_eq!(v, Version(1), "replica {r}: aborted");
        assert!(votes.is_empty());
    }
    let conflicts: u64 =
        w.nodes.values().map(|n| n.m.faults().get(crate::faults::Fault::ConflictingDecision)).sum();
    assert_eq!(conflicts, 0);
}
