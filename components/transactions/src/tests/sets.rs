//! Value-set operations through the whole protocol, and key notifications.

use selfman_ports::{KeyEvent, TxHandle, TxIndication, TxRequest, TxResult, Version};

use super::world::{addr, World};
use crate::config::TxConfig;

fn set_done(w: &World, tag: u64) -> Option<(TxResult, Vec<Vec<u8>>)> {
    w.told.iter().find_map(|(_, i, _)| match i {
        TxIndication::SetDone { tag: t, result, elements, .. } if *t == tag => {
            Some((result.clone(), elements.clone()))
        }
        _ => None,
    })
}

#[test]
fn add_remove_and_read_a_value_set() {
    let mut w = World::new(TxConfig::default(), 4);
    let a = addr(2);
    let k = || b"set".to_vec();
    w.script(
        a,
        vec![
            TxRequest::SetAdd { key: k(), element: b"x".to_vec(), tag: 1 },
            TxRequest::SetAdd { key: k(), element: b"y".to_vec(), tag: 2 },
            TxRequest::SetRemove { key: k(), element: b"z".to_vec(), tag: 3 },
            TxRequest::SetRemove { key: k(), element: b"x".to_vec(), tag: 4 },
            TxRequest::ReadSet { key: k(), tag: 5 },
            TxRequest::ReadSet { key: b"empty".to_vec(), tag: 6 },
        ],
    );
    assert_eq!(set_done(&w, 1).unwrap().0, TxResult::Ok);
    assert_eq!(set_done(&w, 2).unwrap().0, TxResult::Ok);
    assert_eq!(set_done(&w, 3).unwrap().0, TxResult::NotFound, "remove of an absent element");
    assert_eq!(set_done(&w, 4).unwrap().0, TxResult::Ok);
    assert_eq!(set_done(&w, 5).unwrap(), (TxResult::Ok, vec![b"y".to_vec()]));
    assert_eq!(set_done(&w, 6).unwrap(), (TxResult::Ok, vec![]));
    assert_eq!(
        w.record(b"set", 0).0,
        Version(3),
        "two adds and one remove written; the not-found discarded"
    );
    assert_eq!(w.state_left(), (0, 0));
}

#[test]
fn a_set_operation_without_a_majority_aborts() {
    let mut w = World::new(TxConfig::default(), 4);
    w.crash(addr(0));
    w.crash(addr(1));
    w.script(
        addr(2),
        vec![TxRequest::SetAdd { key: b"s".to_vec(), element: b"x".to_vec(), tag: 1 }],
    );
    assert_eq!(set_done(&w, 1).unwrap().0, TxResult::Abort(vec![b"s".to_vec()]));
}

#[test]
fn subscribers_hear_of_locks_changes_and_unlocks() {
    let mut w = World::new(TxConfig::default(), 4);
    let (sub, client) = (addr(3), addr(0));
    w.seed(b"watched", 1, b"a");
    w.script(sub, vec![TxRequest::Subscribe { key: b"watched".to_vec() }]);
    assert_eq!(w.nodes.values().map(|n| n.m.subscribers()).sum::<usize>(), 4, "one per replica");
    let h = TxHandle(1);
    w.script(
        client,
        vec![
            TxRequest::Begin { handle: h },
            TxRequest::Write { handle: h, key: b"watched".to_vec(), value: Some(b"b".to_vec()) },
            TxRequest::Commit { handle: h },
        ],
    );
    let events: Vec<KeyEvent> = w
        .told
        .iter()
        .filter_map(|(n, i, _)| match i {
            TxIndication::Notify(e) if *n == sub => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 2, "one lock and one change, each told once: {events:?}");
    assert!(matches!(events[0], KeyEvent::Locked { .. }));
    assert_eq!(
        events[1],
        KeyEvent::Changed {
            key: b"watched".to_vec(),
            version: Version(2),
            value: Some(b"b".to_vec())
        }
    );
    // An abort unlocks: the transaction also read a key that changed before its commit, so
    // the watched key's replicas lock and then release.
    let h2 = TxHandle(2);
    w.seed(b"other", 1, b"o");
    w.script(
        client,
        vec![
            TxRequest::Begin { handle: h2 },
            TxRequest::Read { handle: h2, key: b"other".to_vec() },
            TxRequest::Write { handle: h2, key: b"watched".to_vec(), value: None },
        ],
    );
    w.seed(b"other", 5, b"z");
    w.script(client, vec![TxRequest::Commit { handle: h2 }]);
    assert_eq!(w.commits(client)[&h2].1, TxResult::Abort(vec![b"other".to_vec()]));
    let events: Vec<KeyEvent> = w
        .told
        .iter()
        .filter_map(|(n, i, _)| match i {
            TxIndication::Notify(e) if *n == sub => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(matches!(events[2], KeyEvent::Locked { .. }));
    assert!(matches!(events[3], KeyEvent::Unlocked { .. }));
    assert_eq!(w.record(b"watched", 0).1.as_deref(), Some(&b"b"[..]), "unchanged");
    // Unsubscribed: nothing more.
    w.script(sub, vec![TxRequest::Unsubscribe { key: b"watched".to_vec() }]);
    assert_eq!(w.nodes.values().map(|n| n.m.subscribers()).sum::<usize>(), 0);
}
