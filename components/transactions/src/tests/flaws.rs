//! Each deliberate mistake ([`Flaw`]) caught by the checker of the property it breaks, and
//! the same checker passing the correct machine on the same run.

use std::time::Duration;

use selfman_ports::{ReplicaOp, TxHandle, TxId, TxIndication, TxRequest, TxResult, Version};

use super::world::{addr, World};
use crate::client::Client;
use crate::config::TxConfig;
use crate::machine::Flaw;

/// Serializability of increments: the counter equals the number of committed increments (a
/// lost update makes it smaller).
fn check_counter(w: &World, key: &[u8], committed: usize) -> Result<(), String> {
    let value = w.record(key, 0).1.unwrap_or_default();
    let n: usize = String::from_utf8_lossy(&value).parse().unwrap_or(0);
    if n == committed {
        Ok(())
    } else {
        Err(format!("{committed} increments committed, the counter says {n}: a lost update"))
    }
}

/// Atomicity: a committed write is applied at a majority of the item's replicas, an aborted
/// one at none.
fn check_atomicity(w: &World, key: &[u8], value: &[u8], committed: bool) -> Result<(), String> {
    let holding = (0..w.config.f).filter(|r| w.record(key, *r).1.as_deref() == Some(value)).count();
    match (committed, holding) {
        (true, n) if n >= w.config.item_quorum() => Ok(()),
        (false, 0) => Ok(()),
        (c, n) => Err(format!("committed={c} but {n} of {} replicas hold the write", w.config.f)),
    }
}

/// Liveness: every live acceptor of the transaction decides within `bound` of `since`.
fn check_decided_within(
    w: &mut World,
    since: selfman_core::Time,
    bound: Duration,
) -> Result<(), String> {
    while w.now < since + bound {
        w.tick_for(Duration::from_millis(10));
    }
    let undecided = w
        .nodes
        .values()
        .filter(|n| n.up)
        .flat_map(|n| n.m.txs.values())
        .filter(|s| s.acc.decided.is_none())
        .count();
    if undecided == 0 {
        Ok(())
    } else {
        Err(format!("{undecided} acceptors still undecided {bound:?} after the TM died"))
    }
}

/// Value-sets: every add acknowledged `Ok` is in the set read afterwards.
fn check_adds(elements: &[Vec<u8>], acked: &[Vec<u8>]) -> Result<(), String> {
    match acked.iter().find(|e| !elements.contains(e)) {
        None => Ok(()),
        Some(e) => {
            Err(format!("add of {:?} acknowledged but not in the set", String::from_utf8_lossy(e)))
        }
    }
}

fn world(flaw: Option<Flaw>) -> World {
    match flaw {
        None => World::new(TxConfig::default(), 4),
        Some(f) => World::flawed(TxConfig::default(), 4, f),
    }
}

fn two_concurrent_increments(flaw: Option<Flaw>) -> Result<(), String> {
    let mut w = world(flaw);
    w.seed(b"c", 1, b"0");
    let (a, b) = (addr(0), addr(2));
    for (node, handle) in [(a, TxHandle(1)), (b, TxHandle(2))] {
        w.script(
            node,
            vec![
                TxRequest::Begin { handle },
                TxRequest::AddToNumber { handle, key: b"c".to_vec(), delta: 1 },
            ],
        );
    }
    w.script(a, vec![TxRequest::Commit { handle: TxHandle(1) }]);
    w.script(b, vec![TxRequest::Commit { handle: TxHandle(2) }]);
    let ok = [w.commits(a), w.commits(b)]
        .iter()
        .flat_map(|c| c.values().cloned())
        .filter(|(_, r)| *r == TxResult::Ok)
        .count();
    check_counter(&w, b"c", ok)
}

#[test]
fn lost_update_is_caught() {
    assert_eq!(two_concurrent_increments(None), Ok(()));
    let e = two_concurrent_increments(Some(Flaw::SkipsVersionCheck)).unwrap_err();
    assert!(e.contains("lost update"), "{e}");
}

fn commit_over_newer_replicas(flaw: Option<Flaw>) -> Result<(), String> {
    let mut w = world(flaw);
    w.seed(b"k", 1, b"old");
    // Three replicas moved on to version 2; the transaction read version 1.
    let now = w.now;
    for r in 1..4 {
        let (owner, id) = w.replica(b"k", r);
        let op = ReplicaOp::Write { version: Version(2), value: Some(b"other".to_vec()) };
        w.nodes.get_mut(&owner).unwrap().store.apply(id, &op, now);
    }
    let a = addr(1);
    w.with(a, 0, |m, now, out| {
        m.begin_commit(
            TxId(5),
            vec![(b"k".to_vec(), Version(1), Some(Some(b"mine".to_vec())))],
            Client::Session(TxHandle(1)),
            now,
            out,
        )
    });
    w.run();
    let committed = w.commits(a)[&TxHandle(1)].1 == TxResult::Ok;
    check_atomicity(&w, b"k", b"mine", committed)
}

#[test]
fn commit_without_majority_is_caught() {
    assert_eq!(commit_over_newer_replicas(None), Ok(()));
    let e = commit_over_newer_replicas(Some(Flaw::CommitsWithoutMajority)).unwrap_err();
    assert!(e.contains("committed=true but 1 of 4"), "{e}");
}

fn tm_dies(flaw: Option<Flaw>) -> Result<(), String> {
    let mut w = world(flaw);
    w.seed(b"t", 1, b"old");
    let tm = addr(3);
    let h = TxHandle(1);
    w.script(
        tm,
        vec![
            TxRequest::Begin { handle: h },
            TxRequest::Write { handle: h, key: b"t".to_vec(), value: None },
        ],
    );
    w.request(tm, TxRequest::Commit { handle: h });
    w.crash(tm);
    w.run();
    let since = w.now;
    let bound = w.config.takeover_after * 2;
    check_decided_within(&mut w, since, bound)
}

#[test]
fn no_takeover_is_caught() {
    assert_eq!(tm_dies(None), Ok(()));
    let e = tm_dies(Some(Flaw::NoTakeover)).unwrap_err();
    assert!(e.contains("undecided"), "{e}");
}

fn concurrent_adds(flaw: Option<Flaw>) -> Result<(), String> {
    let mut w = world(flaw);
    let (a, b) = (addr(0), addr(1));
    // Both read the set before either commits: they meet in their votes.
    w.request(a, TxRequest::SetAdd { key: b"s".to_vec(), element: b"x".to_vec(), tag: 1 });
    w.request(b, TxRequest::SetAdd { key: b"s".to_vec(), element: b"y".to_vec(), tag: 2 });
    w.tick_for(Duration::from_secs(5));
    let acked: Vec<Vec<u8>> = w
        .told
        .iter()
        .filter_map(|(_, i, _)| match i {
            TxIndication::SetDone { tag, result: TxResult::Ok, .. } => {
                Some(if *tag == 1 { b"x".to_vec() } else { b"y".to_vec() })
            }
            _ => None,
        })
        .collect();
    w.request(a, TxRequest::ReadSet { key: b"s".to_vec(), tag: 3 });
    w.run();
    let elements = w
        .told
        .iter()
        .find_map(|(_, i, _)| match i {
            TxIndication::SetDone { tag: 3, elements, .. } => Some(elements.clone()),
            _ => None,
        })
        .expect("the read answered");
    if flaw.is_none() {
        assert_eq!(acked.len(), 2, "both adds succeed after retries");
    }
    check_adds(&elements, &acked)
}

#[test]
fn no_set_retry_is_caught() {
    assert_eq!(concurrent_adds(None), Ok(()));
    let e = concurrent_adds(Some(Flaw::NoSetRetry)).unwrap_err();
    assert!(e.contains("acknowledged but not in the set"), "{e}");
}
