//! Failure-free commits: the client API's results, four message delays, bounded state.

use std::time::Duration;

use selfman_ports::{decode_list, TxHandle, TxIndication, TxRequest, TxResult, Version};

use super::world::{addr, World};
use crate::config::TxConfig;

fn h(n: u64) -> TxHandle {
    TxHandle(n)
}

fn write(handle: TxHandle, key: &[u8], value: &[u8]) -> TxRequest {
    TxRequest::Write { handle, key: key.to_vec(), value: Some(value.to_vec()) }
}

#[test]
fn a_failure_free_commit_takes_four_message_delays() {
    let mut w = World::new(TxConfig::default(), 4);
    let a = addr(0);
    w.seed(b"x", 1, b"old");
    w.script(a, vec![TxRequest::Begin { handle: h(1) }, write(h(1), b"x", b"new")]);
    w.request(a, TxRequest::Commit { handle: h(1) });
    w.run();
    assert_eq!(w.commits(a)[&h(1)].1, TxResult::Ok);
    // Every participant learned the outcome after exactly four message delays:
    // prepare, vote (round-0 accept), accepted, decided.
    assert_eq!(w.decision_delays.len(), 4, "one decision per replica");
    assert!(w.decision_delays.iter().all(|d| *d == 4), "{:?}", w.decision_delays);
    let (_, told, depth) =
        w.told.iter().find(|(_, i, _)| matches!(i, TxIndication::Committed { .. })).unwrap();
    assert!(matches!(told, TxIndication::Committed { result: TxResult::Ok, .. }));
    assert_eq!(*depth, 3, "the client (at the TM) knows one delay before the participants");
    for r in 0..4 {
        let (v, val, votes) = w.record(b"x", r);
        assert_eq!((v, val.as_deref()), (Version(2), Some(&b"new"[..])), "replica {r}");
        assert!(votes.is_empty(), "no lock left at replica {r}");
    }
    assert_eq!(w.state_left(), (0, 0), "every role forgot the transaction");
}

#[test]
fn results_of_the_client_api() {
    let mut w = World::new(TxConfig::default(), 4);
    let a = addr(1);
    w.seed(b"n", 3, b"41");
    w.seed(b"s", 1, b"abc");
    w.script(
        a,
        vec![
            TxRequest::Begin { handle: h(1) },
            TxRequest::Read { handle: h(1), key: b"missing".to_vec() },
            TxRequest::Read { handle: h(1), key: b"s".to_vec() },
            TxRequest::AddToNumber { handle: h(1), key: b"n".to_vec(), delta: 1 },
            TxRequest::TestAndSet {
                handle: h(1),
                key: b"s".to_vec(),
                expected: Some(b"zzz".to_vec()),
                new: None,
            },
            TxRequest::TestAndSet {
                handle: h(1),
                key: b"s".to_vec(),
                expected: Some(b"abc".to_vec()),
                new: Some(b"def".to_vec()),
            },
            TxRequest::AddDelOnList {
                handle: h(1),
                key: b"l".to_vec(),
                add: vec![b"p".to_vec(), b"q".to_vec()],
                del: vec![],
            },
            TxRequest::AddDelOnList {
                handle: h(1),
                key: b"l".to_vec(),
                add: vec![],
                del: vec![b"p".to_vec()],
            },
            TxRequest::AddToNumber { handle: h(1), key: b"s".to_vec(), delta: 1 },
            TxRequest::Read { handle: h(1), key: b"n".to_vec() },
            TxRequest::Commit { handle: h(1) },
            TxRequest::Read { handle: h(1), key: b"n".to_vec() },
        ],
    );
    let results: Vec<TxResult> = w
        .told
        .iter()
        .filter_map(|(_, i, _)| match i {
            TxIndication::ReadDone { result, .. }
            | TxIndication::OpDone { result, .. }
            | TxIndication::Committed { result, .. }
            | TxIndication::Begun { result, .. } => Some(result.clone()),
            _ => None,
        })
        .collect();
    use selfman_ports::Rejection::{NotANumber, UnknownHandle};
    assert_eq!(
        results,
        vec![
            TxResult::Ok,
            TxResult::NotFound,
            TxResult::Ok,
            TxResult::Ok,
            TxResult::KeyChanged(Some(b"abc".to_vec())),
            TxResult::Ok,
            TxResult::Ok,
            TxResult::Ok,
            TxResult::Rejected(NotANumber),
            TxResult::Ok,
            TxResult::Ok,
            TxResult::Rejected(UnknownHandle),
        ]
    );
    let read_n = w.told.iter().find_map(|(_, i, _)| match i {
        TxIndication::ReadDone { key, value, .. } if key == b"n" => value.clone(),
        _ => None,
    });
    assert_eq!(read_n.as_deref(), Some(&b"42"[..]), "a read sees the transaction's own write");
    assert_eq!(w.record(b"n", 2).1.as_deref(), Some(&b"42"[..]));
    assert_eq!(w.record(b"s", 0).1.as_deref(), Some(&b"def"[..]));
    assert_eq!(decode_list(&w.record(b"l", 3).1.unwrap()), Some(vec![b"q".to_vec()]));
    assert_eq!(w.record(b"missing", 0).0, Version(0), "a read-only key is not written");
}

#[test]
fn a_conflicting_transaction_aborts_naming_the_key_and_a_retry_commits() {
    let mut w = World::new(TxConfig::default(), 4);
    let (a, b) = (addr(0), addr(2));
    w.seed(b"acct", 1, b"10");
    for (node, handle) in [(a, h(1)), (b, h(2))] {
        w.script(
            node,
            vec![
                TxRequest::Begin { handle },
                TxRequest::AddToNumber { handle, key: b"acct".to_vec(), delta: 5 },
            ],
        );
    }
    w.script(a, vec![TxRequest::Commit { handle: h(1) }]);
    w.script(b, vec![TxRequest::Commit { handle: h(2) }]);
    assert_eq!(w.commits(a)[&h(1)].1, TxResult::Ok);
    assert_eq!(w.commits(b)[&h(2)].1, TxResult::Abort(vec![b"acct".to_vec()]));
    w.script(
        b,
        vec![
            TxRequest::Begin { handle: h(3) },
            TxRequest::AddToNumber { handle: h(3), key: b"acct".to_vec(), delta: 5 },
            TxRequest::Commit { handle: h(3) },
        ],
    );
    assert_eq!(w.commits(b)[&h(3)].1, TxResult::Ok);
    assert_eq!(w.record(b"acct", 1).1.as_deref(), Some(&b"20"[..]));
    assert_eq!(w.state_left(), (0, 0));
}

#[test]
fn state_stays_bounded_over_many_transactions() {
    let mut w = World::new(TxConfig::default(), 4);
    let a = addr(3);
    for i in 0..2000u64 {
        let key = format!("k{}", i % 50).into_bytes();
        w.script(
            a,
            vec![
                TxRequest::Begin { handle: h(i) },
                TxRequest::AddToNumber { handle: h(i), key, delta: 1 },
                TxRequest::Commit { handle: h(i) },
            ],
        );
        assert_eq!(w.commits(a)[&h(i)].1, TxResult::Ok);
        assert_eq!(w.state_left(), (0, 0), "after transaction {i}");
    }
    w.tick_for(Duration::from_secs(1));
    assert_eq!(w.record(b"k7", 0).1.as_deref(), Some(&b"40"[..]));
    assert!(w.nodes.values().all(|n| n.m.waits.is_empty()), "no answer is waited for");
}

#[test]
fn transaction_ids_differ_between_nodes_and_transactions() {
    let w = World::new(TxConfig::default(), 8);
    let mut ids = std::collections::BTreeSet::new();
    for n in w.nodes.values() {
        let mut m = n.m.clone();
        for _ in 0..100 {
            assert!(ids.insert(m.new_tx_id()), "a repeated id");
        }
    }
}

#[test]
fn a_vote_that_crosses_the_forget_creates_no_state() {
    let mut w = World::new(TxConfig::default(), 4);
    let a = addr(0);
    w.seed(b"x", 1, b"old");
    w.script(a, vec![TxRequest::Begin { handle: h(1) }, write(h(1), b"x", b"new")]);
    // Hold back one participant's vote to one rTM until everything else is over.
    let rtm = w.m(a).rtms()[0];
    let held = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let keep = held.clone();
    w.lose = Some(Box::new(move |from, dest, msg| {
        let to_rtm = matches!(dest, super::world::Dest::Direct(t) if *t == rtm);
        if to_rtm
            && matches!(msg, crate::messages::TxMessage::Vote { .. })
            && keep.borrow().is_empty()
        {
            keep.borrow_mut().push((*from, msg.clone()));
            return true;
        }
        false
    }));
    w.script(a, vec![TxRequest::Commit { handle: h(1) }]);
    assert_eq!(w.commits(a)[&h(1)].1, TxResult::Ok);
    assert_eq!(w.state_left(), (0, 0));
    let (from, msg) = held.borrow_mut().pop().expect("a vote was held");
    w.with(rtm, 0, |m, now, out| m.on_message(from, msg, now, out));
    w.run();
    assert_eq!(w.state_left(), (0, 0), "the late vote left no state");
    // The late vote, and the participant's `Applied` to the decision the rTM told it from
    // its tombstone.
    assert_eq!(w.m(rtm).faults().get(crate::faults::Fault::UnknownTx), 2);
}
