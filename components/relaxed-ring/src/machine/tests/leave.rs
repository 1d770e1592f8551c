//! Graceful leave: the range goes to the successor first.

use selfman_ports::{Range, RangeChange, RingId, RingIndication, RingRequest, RingStatus};

use super::{changes, range, secs, World};

#[test]
fn a_leaving_peer_hands_its_range_to_its_successor_first() {
    let mut w = World::ring(&[100, 200, 300, 400, 500]);
    w.drain(300);
    w.drain(400);
    w.request(300, RingRequest::Leave);
    // 300 owns nothing from now on, and said to whom its range goes.
    assert_eq!(w.view(300).status, RingStatus::Leaving);
    assert_eq!(w.view(300).range, None);
    assert_eq!(
        changes(&w.drain(300)),
        vec![RangeChange::Lost { range: range(200, 300), to: Some(w.peer(400)) }]
    );
    w.assert_consistent();
    w.deliver_named("Leaving", 300, 400);
    assert_eq!(w.view(400).range, Some(range(200, 400)));
    assert_eq!(
        changes(&w.drain(400)),
        vec![RangeChange::Gained { range: range(200, 300), from: Some(w.peer(300)) }]
    );
    w.deliver_named("LeaveOk", 400, 300);
    assert_eq!(w.view(300).status, RingStatus::Left);
    assert_eq!(w.drain(300), vec![RingIndication::Left]);
    w.run();
    assert_eq!(w.view(200).succ, Some(w.peer(400)));
    w.crash(300);
    w.tick_for(secs(2));
    w.assert_ring();
}

#[test]
fn a_leave_whose_answer_is_lost_completes_anyway() {
    let mut w = World::ring(&[100, 200, 300, 400]);
    let (a, b) = (w.at(400), w.at(300));
    w.cut.insert((a, b));
    w.request(300, RingRequest::Leave);
    w.run();
    assert_eq!(w.view(300).status, RingStatus::Leaving);
    w.tick_for(secs(4));
    assert_eq!(w.view(300).status, RingStatus::Left);
    w.crash(300);
    w.tick_for(secs(2));
    w.assert_ring();
}

#[test]
fn a_ring_of_two_shrinks_to_one_by_a_leave() {
    let mut w = World::ring(&[100, 200]);
    w.request(200, RingRequest::Leave);
    w.run();
    assert_eq!(w.view(200).status, RingStatus::Left);
    let v = w.view(100);
    assert_eq!(v.range, Some(Range::full(RingId(100))));
    assert_eq!(v.succ, Some(v.me));
}

#[test]
fn the_last_peer_leaves_alone() {
    let mut w = World::new();
    w.add(100);
    w.bootstrap(100);
    w.drain(100);
    w.request(100, RingRequest::Leave);
    let ind = w.drain(100);
    assert_eq!(
        changes(&ind),
        vec![RangeChange::Lost { range: Range::full(RingId(100)), to: None }]
    );
    assert_eq!(ind.last(), Some(&RingIndication::Left));
    assert!(w.queue.is_empty());
}
