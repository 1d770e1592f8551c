//! Bad input from buggy or stale peers: each kind is counted and dropped, and leaves the
//! state as it was.

use selfman_core::{NodeAddr, NodeId};
use selfman_ports::{Peer, RingId};

use super::{Msg, World};
use crate::machine::Fault;
use crate::messages::{Body, RingMessage, Routable, Routed, MAX_WIRE_LIST};

fn ring() -> World {
    World::ring(&[100, 200, 300, 400])
}

/// Sends `body` to the peer at `to` from node `from` claiming identifier `sender`, and checks
/// that exactly one fault of `kind` was counted, nothing was sent or told, and the view is
/// unchanged.
fn expect_dropped(
    w: &mut World,
    to: u64,
    from: NodeAddr,
    sender: RingId,
    body: Body<Msg>,
    kind: Fault,
) {
    w.drain(to);
    let before = w.view(to);
    let count = w.m(to).faults().get(kind);
    let total = w.m(to).faults().total();
    let a = w.at(to);
    let msg = RingMessage { sender, body };
    w.with_node(a, |m, now, out| m.on_message(from, msg, now, out));
    assert_eq!(w.m(to).faults().get(kind), count + 1, "{kind:?} not counted");
    assert_eq!(w.m(to).faults().total(), total + 1, "counted as something else too");
    assert!(w.queue.is_empty(), "answered bad input: {:?}", w.names());
    assert!(w.drain(to).is_empty(), "told the user about bad input");
    assert_eq!(w.view(to), before, "bad input changed the state");
}

fn stranger(n: u32) -> NodeAddr {
    NodeAddr::simulated(900 + n, NodeId(90_000 + u64::from(n)))
}

#[test]
fn a_message_from_an_unknown_incarnation() {
    let mut w = ring();
    let from = NodeAddr::new(stranger(1).addr, NodeId::UNKNOWN);
    expect_dropped(&mut w, 300, from, RingId(250), Body::Fix, Fault::BadPeer);
}

#[test]
fn a_list_holding_an_unknown_incarnation() {
    let mut w = ring();
    let from = w.at(400);
    let bad = Peer::new(RingId(450), NodeAddr::new(stranger(2).addr, NodeId::UNKNOWN));
    let body = Body::UpdSuccList { succ_list: vec![bad], ttl: 3 };
    expect_dropped(&mut w, 300, from, RingId(400), body, Fault::BadPeer);
}

#[test]
fn another_node_claiming_my_identifier() {
    let mut w = ring();
    expect_dropped(&mut w, 300, stranger(3), RingId(300), Body::Fix, Fault::IdCollision);
    // Also inside a list.
    let from = w.at(400);
    let twin = Peer::new(RingId(300), stranger(4));
    let body = Body::UpdSuccList { succ_list: vec![twin], ttl: 1 };
    expect_dropped(&mut w, 300, from, RingId(400), body, Fault::IdCollision);
}

#[test]
fn an_oversized_list() {
    let mut w = ring();
    let from = w.at(400);
    let list: Vec<Peer> = (0..=MAX_WIRE_LIST as u32)
        .map(|i| Peer::new(RingId(401 + u64::from(i)), stranger(i)))
        .collect();
    let body = Body::UpdSuccList { succ_list: list, ttl: 1 };
    expect_dropped(&mut w, 300, from, RingId(400), body, Fault::OversizedList);
}

#[test]
fn a_routed_message_at_its_hop_limit() {
    let mut w = ring();
    let from = w.at(100);
    let origin = w.peer(100);
    let max = w.config.max_hops;
    let r = Routed {
        key: RingId(150),
        origin,
        hops: max,
        last: false,
        what: Routable::Lookup { req: 1, answer_via_ring: false },
    };
    let before = w.view(300);
    let a = w.at(300);
    w.with_node(a, |m, now, out| {
        m.on_message(from, RingMessage { sender: RingId(100), body: Body::Route(r) }, now, out)
    });
    assert_eq!(w.m(300).faults().get(Fault::HopLimit), 1);
    // The origin is told, so that its lookup ends (a loop does not end silently).
    assert_eq!(w.names(), vec![("Unroutable", 300, 100)]);
    assert_eq!(w.view(300), before);
}

#[test]
fn a_join_ack_from_a_peer_that_is_not_a_former_predecessor() {
    let mut w = ring();
    let from = w.at(100);
    expect_dropped(&mut w, 300, from, RingId(100), Body::PredNoMore, Fault::StrangerJoinAck);
    // Nor from the current predecessor.
    let from = w.at(200);
    expect_dropped(&mut w, 300, from, RingId(200), Body::PredNoMore, Fault::StrangerJoinAck);
}

#[test]
fn join_answers_nobody_asked_for() {
    let mut w = ring();
    let from = w.at(100);
    let pred = w.peer(400);
    let body = Body::JoinOk { attempt: 1, pred, succ_list: vec![] };
    expect_dropped(&mut w, 300, from, RingId(100), body, Fault::UnexpectedJoinReply);
    let body = Body::TryLater { attempt: 1 };
    expect_dropped(&mut w, 300, from, RingId(100), body, Fault::UnexpectedJoinReply);
    let holder = Peer::new(RingId(300), stranger(5));
    let body = Body::IdInUse { attempt: 1, holder };
    expect_dropped(&mut w, 300, from, RingId(100), body, Fault::UnexpectedJoinReply);
}

#[test]
fn a_join_ok_of_a_later_attempt_or_with_a_predecessor_not_before_me() {
    let mut w = ring();
    w.add(250);
    w.join(250, 100);
    w.queue.clear();
    let from = w.at(300);
    // An attempt never made.
    let pred = w.peer(200);
    let body = Body::JoinOk { attempt: 7, pred, succ_list: vec![] };
    expect_dropped(&mut w, 250, from, RingId(300), body, Fault::UnexpectedJoinReply);
    // A predecessor between me and the sender.
    let pred = Peer::new(RingId(260), stranger(6));
    let body = Body::JoinOk { attempt: 1, pred, succ_list: vec![] };
    expect_dropped(&mut w, 250, from, RingId(300), body, Fault::BadJoinOk);
    // An id-in-use that does not hold my identifier.
    let holder = w.peer(200);
    let body = Body::IdInUse { attempt: 1, holder };
    expect_dropped(&mut w, 250, from, RingId(300), body, Fault::UnexpectedJoinReply);
}

#[test]
fn a_successor_list_from_a_peer_that_is_not_the_successor() {
    let mut w = ring();
    let from = w.at(100);
    let body = Body::UpdSuccList { succ_list: vec![], ttl: 2 };
    expect_dropped(&mut w, 300, from, RingId(100), body, Fault::StrangerSuccList);
    let body = Body::FixOk { succ_list: vec![] };
    expect_dropped(&mut w, 300, from, RingId(100), body, Fault::StrangerSuccList);
}

#[test]
fn a_new_succ_farther_than_the_successor() {
    let mut w = ring();
    let from = w.at(400);
    let body = Body::NewSucc { succ_list: vec![] };
    expect_dropped(&mut w, 200, from, RingId(400), body, Fault::StaleNewSucc);
}

#[test]
fn redirects_that_are_not_closer_or_not_from_the_successor() {
    let mut w = ring();
    let from = w.at(400);
    // 400 is 300's successor; a redirect to 100 (not between 300 and 400) would loop.
    let body = Body::FixRedirect { pred: w.peer(100), succ_list: vec![] };
    expect_dropped(&mut w, 300, from, RingId(400), body, Fault::BadRedirect);
    let from = w.at(200);
    let body = Body::FixRedirect { pred: w.peer(100), succ_list: vec![] };
    expect_dropped(&mut w, 300, from, RingId(200), body, Fault::BadRedirect);
}

#[test]
fn a_redirect_chain_is_bounded() {
    // A successor that lies: each redirect names a peer a little closer, forever.
    let mut w = ring();
    let a = w.at(300);
    let mut from = (w.at(400), RingId(400));
    let mut followed = 0;
    for i in 1..40u64 {
        let c = Peer::new(RingId(400 - i), stranger(i as u32));
        let msg =
            RingMessage { sender: from.1, body: Body::FixRedirect { pred: c, succ_list: vec![] } };
        let f = from.0;
        w.with_node(a, |m, now, out| m.on_message(f, msg, now, out));
        if w.take(|x| x.name() == "Fix").is_some() {
            followed += 1;
        }
        if w.m(300).faults().get(Fault::BadRedirect) > 0 {
            break;
        }
        from = (c.addr, c.id);
    }
    assert_eq!(followed, super::super::MAX_REDIRECTS as usize);
    assert_eq!(w.m(300).faults().get(Fault::BadRedirect), 1);
}

#[test]
fn leave_messages_from_strangers() {
    let mut w = ring();
    let from = w.at(100);
    let pred = w.peer(400);
    // 100 is not 300's predecessor: counted (and answered, since the leaver goes anyway).
    let a = w.at(300);
    let before = w.view(300);
    let msg = RingMessage { sender: RingId(100), body: Body::Leaving { pred } };
    w.with_node(a, |m, now, out| m.on_message(from, msg, now, out));
    assert_eq!(w.m(300).faults().get(Fault::StrangerLeave), 1);
    assert_eq!(w.view(300).range, before.range);
    assert_eq!(w.names(), vec![("LeaveOk", 300, 100)]);
    w.queue.clear();
    let from = w.at(400);
    expect_dropped(&mut w, 300, from, RingId(400), Body::LeaveOk, Fault::StrangerLeave);
    let body = Body::LeavingPred { succ: w.peer(100), succ_list: vec![] };
    let from = w.at(100);
    expect_dropped(&mut w, 300, from, RingId(100), body, Fault::StrangerLeave);
}

#[test]
fn answers_to_lookups_never_asked() {
    let mut w = ring();
    let from = w.at(100);
    let body = Body::Found { req: 999, key: RingId(50), hops: 1 };
    expect_dropped(&mut w, 300, from, RingId(100), body, Fault::UnknownRequest);
    let body =
        Body::Unroutable { key: RingId(50), what: crate::messages::Unrouted::Lookup { req: 5 } };
    expect_dropped(&mut w, 300, from, RingId(100), body, Fault::UnknownRequest);
}

#[test]
fn ring_messages_to_a_peer_outside_a_ring() {
    let mut w = ring();
    w.add(250);
    let from = w.at(300);
    let body = Body::FixOk { succ_list: vec![] };
    expect_dropped(&mut w, 250, from, RingId(300), body, Fault::NotInRing);
    let body = Body::NewSucc { succ_list: vec![] };
    expect_dropped(&mut w, 250, from, RingId(300), body, Fault::NotInRing);
}

#[test]
fn the_ring_still_works_after_all_that() {
    // A burst of stray messages from strangers, then business as usual.
    let mut w = ring();
    let a = w.at(300);
    for i in 0..50u32 {
        let bodies: [Body<Msg>; 4] = [
            Body::PredNoMore,
            Body::FixOk { succ_list: vec![] },
            Body::Found { req: u64::from(i), key: RingId(1), hops: 0 },
            Body::LeaveOk,
        ];
        for body in bodies {
            let msg = RingMessage { sender: RingId(1000 + u64::from(i)), body };
            w.with_node(a, |m, now, out| m.on_message(stranger(i), msg, now, out));
        }
    }
    assert_eq!(w.m(300).faults().total(), 200);
    w.tick_for(super::secs(2));
    w.assert_ring();
    w.lookup(100, 350, 1);
    w.run();
    assert!(w.outcome(100, 1).is_some());
}
