//! Operations end to end in a world: quorum reads with missing and not-ready replicas,
//! requests refused outside a ring or out of bounds, the serving set told, and the live
//! replacement of a machine.

use std::time::Duration;

use selfman_core::Time;
use selfman_ports::{
    HostId, ReadFailure, ReplicaFailure, ReplicaOp, ReplicationIndication, ReplicationRequest,
    Version,
};

use super::handover::{anchors, keys, small_batches, write_all, Q};
use super::world::{addr, World};
use crate::config::ReplicationConfig;
use crate::machine::{ReplOutput, ReplicaMachine};
use crate::messages::MAX_KEY_BYTES;

#[test]
fn a_read_needs_a_majority_of_replicas() {
    let mut w = World::ring(ReplicationConfig::default(), &anchors());
    let keys = keys(20);
    write_all(&mut w, &keys, 1, Q - 1);
    assert_eq!(w.read(Q - 1, &keys[0]).unwrap().version, Version(1));
    w.crash(u64::MAX);
    let r = w.read(Q - 1, &keys[0]).expect("three of four answer");
    assert_eq!((r.version, r.replicas.len()), (Version(1), 3));
    w.crash(3 * Q - 1);
    match w.read(Q - 1, &keys[0]) {
        Err(ReadFailure::Timeout { answered }) => assert_eq!(answered.len(), 2),
        other => panic!("two of four are no majority: {other:?}"),
    }
}

#[test]
fn a_range_being_received_answers_not_ready_and_reads_wait_for_the_others() {
    let mut w = World::ring(small_batches(), &anchors());
    let keys = keys(30);
    write_all(&mut w, &keys, 1, Q - 1);
    // The old holder is gone and nobody noticed: the joiner waits for an offer.
    w.crash(Q - 1);
    w.join(Q / 2, HostId(4), false);
    w.run();
    for k in &keys {
        let r = w.read(2 * Q - 1, k).expect("the three other replicas answer");
        assert_eq!(r.version, Version(1));
        assert!(r
            .replicas
            .iter()
            .all(|a| a.node != addr(Q / 2) || !w.m(Q / 2).serving().is_empty()));
    }
}

#[test]
fn requests_outside_a_ring_or_out_of_bounds_are_refused_at_once() {
    let mut m = ReplicaMachine::new(addr(1), ReplicationConfig::default());
    let mut out = Vec::new();
    m.on_request(ReplicationRequest::Read { key: b"k".to_vec(), tag: 1 }, Time::ZERO, &mut out);
    assert!(matches!(
        &out[..],
        [ReplOutput::Indicate(ReplicationIndication::ReadDone {
            result: Err(ReadFailure::NotInRing),
            ..
        })]
    ));
    let mut w = World::ring(ReplicationConfig::default(), &anchors());
    w.request(Q - 1, ReplicationRequest::Read { key: vec![0; MAX_KEY_BYTES + 1], tag: 2 });
    w.request(
        Q - 1,
        ReplicationRequest::AtReplica {
            key: b"k".to_vec(),
            replica: 4,
            op: ReplicaOp::Read,
            tag: 3,
        },
    );
    let big = ReplicaOp::Write {
        version: Version(1),
        value: Some(vec![0; crate::messages::MAX_VALUE_BYTES + 1]),
    };
    w.request(
        Q - 1,
        ReplicationRequest::AtReplica { key: b"k".to_vec(), replica: 0, op: big, tag: 4 },
    );
    assert!(w.queue.is_empty(), "nothing was sent");
    assert_eq!(w.read_result(2), Some(Err(ReadFailure::KeyTooLong)));
    for tag in [3, 4] {
        assert!(w.told.iter().any(|(_, i)| matches!(
            i,
            ReplicationIndication::ReplicaDone { tag: t, result: Err(ReplicaFailure::Invalid), .. } if *t == tag
        )));
    }
}

#[test]
fn the_serving_set_is_told_when_it_changes() {
    let w = World::ring(small_batches(), &anchors());
    assert!(w.told(Q - 1, |i| matches!(i, ReplicationIndication::Serving(s) if s.len() == 1)));
    let mut w = w;
    w.join(Q / 2, HostId(4), true);
    w.tick_for(Duration::from_millis(300));
    assert!(w.told(Q / 2, |i| matches!(i, ReplicationIndication::Serving(s) if s.len() == 1)));
}

#[test]
fn a_live_replacement_keeps_every_replica_and_range() {
    let mut w = World::ring(small_batches(), &anchors());
    let keys = keys(50);
    write_all(&mut w, &keys, 1, Q - 1);
    let a = addr(2 * Q - 1);
    let before = (w.m(2 * Q - 1).served_replicas(), w.m(2 * Q - 1).view());
    let mut old = w.nodes.remove(&a).unwrap();
    let config = ReplicationConfig {
        op_timeout: Duration::from_secs(3),
        f: 5,
        ..ReplicationConfig::default()
    };
    let mut new = ReplicaMachine::new(a, config);
    new.take_over(&mut old);
    assert_eq!((new.served_replicas(), new.view()), before);
    assert_eq!(new.config().op_timeout, Duration::from_secs(3));
    assert_eq!(new.config().f, 4, "f cannot change live");
    assert_eq!(old.store().len(), 0);
    w.nodes.insert(a, new);
    for k in &keys {
        assert_eq!(w.read(2 * Q - 1, k).unwrap().version, Version(1));
    }
}

/// Lists `[from, to)` at node `via` and returns the page.
fn list(
    w: &mut World,
    via: u64,
    from: u64,
    to: Option<u64>,
    limit: u32,
) -> Result<selfman_ports::Listing, selfman_ports::ListFailure> {
    let tag = 7_000_000 + w.told.len() as u64;
    let req = ReplicationRequest::ListServed {
        from: selfman_ports::RingId(from),
        to: to.map(selfman_ports::RingId),
        limit,
        values: true,
        tag,
    };
    w.request(via, req);
    w.told
        .iter()
        .rev()
        .find_map(|(_, i)| match i {
            ReplicationIndication::Listed { tag: t, result } if *t == tag => Some(result.clone()),
            _ => None,
        })
        .expect("answered at once")
}

#[test]
fn a_walk_of_listings_over_the_ring_finds_every_replica_once_in_order() {
    let mut w = World::ring(ReplicationConfig::default(), &anchors());
    let keys = keys(50);
    write_all(&mut w, &keys, 1, Q - 1);
    let mut seen = Vec::new();
    let mut at = Some(0u64);
    let mut pages = 0;
    while let Some(from) = at {
        let owner = w.owner(selfman_ports::RingId(from)).expect("an owner");
        let id = anchors().into_iter().find(|a| addr(*a) == owner).expect("an anchor");
        // Asked elsewhere, a position is refused: only its server lists it.
        let other = anchors().into_iter().find(|a| *a != id).expect("another");
        assert_eq!(list(&mut w, other, from, None, 7), Err(selfman_ports::ListFailure::NotServing));
        let page = list(&mut w, id, from, None, 7).expect("served");
        assert!(
            page.replicas.len() <= 7
                || page.replicas.windows(2).any(|p| p[0].position == p[1].position)
        );
        assert!(page.replicas.iter().all(|r| r.position.0 >= from));
        seen.extend(page.replicas);
        at = page.next.map(|n| n.0);
        pages += 1;
        assert!(pages < 1000, "the walk ends");
    }
    assert!(seen.windows(2).all(|p| p[0].position <= p[1].position), "ring order");
    assert_eq!(seen.len(), 50 * 4, "every replica of every key, once");
    for k in &keys {
        let mine: Vec<_> = seen.iter().filter(|r| r.key == k.as_bytes()).collect();
        assert_eq!(mine.len(), 4);
        let value = format!("{k}@1").into_bytes();
        assert!(mine.iter().all(|r| r.version == Version(1) && r.value.as_ref() == Some(&value)));
    }
    // A bounded window stops at its end; an empty window answers nothing.
    let page = list(&mut w, Q - 1, 0, Some(Q / 2), 10_000).expect("served");
    assert!(page.next.is_none() && page.replicas.iter().all(|r| r.position.0 < Q / 2));
    let empty = list(&mut w, Q - 1, 5, Some(5), 10).expect("served");
    assert!(empty.replicas.is_empty() && empty.next.is_none());
}

#[test]
fn a_page_with_large_values_stops_at_a_few_megabytes() {
    let mut w = World::ring(ReplicationConfig::default(), &anchors());
    let big = "v".repeat(1024 * 1024);
    let keys = keys(40);
    for k in &keys {
        assert_eq!(w.write(Q - 1, k, 1, &big), 4);
    }
    let (mut at, mut listed, mut pages) = (Some(0u64), 0, 0);
    while let Some(from) = at {
        let owner = w.owner(selfman_ports::RingId(from)).expect("an owner");
        let id = anchors().into_iter().find(|a| addr(*a) == owner).expect("an anchor");
        let page = list(&mut w, id, from, None, 10_000).expect("served");
        let bytes: usize = page.replicas.iter().map(|r| r.value.as_ref().map_or(0, Vec::len)).sum();
        assert!(bytes <= 6 * 1024 * 1024, "a page of {bytes} bytes");
        listed += page.replicas.len();
        at = page.next.map(|n| n.0);
        pages += 1;
    }
    assert_eq!(listed, 160, "every replica, over {pages} pages");
    assert!(pages >= 160 / 6, "pages are cut by bytes, not only by node ({pages})");
}

/// Node `via`'s replica of `key` in the four-anchor world (each node holds one of the four).
fn local_replica(w: &World, via: u64, key: &str) -> u32 {
    (0..4)
        .find(|r| {
            w.owner(selfman_ports::RingId::of_key(key.as_bytes()).replica(*r, 4)) == Some(addr(via))
        })
        .expect("every node holds one replica of every key")
}

#[test]
fn an_operation_at_a_replica_this_node_serves_skips_the_ring_and_the_network() {
    use crate::messages::ReplMessage;
    let mut w = World::ring(ReplicationConfig::default(), &anchors());
    let k = "a-local-key";
    let mine = local_replica(&w, Q - 1, k);
    assert_eq!(w.write(Q - 1, k, 1, "one"), 4, "all four apply, the local one too");
    assert_eq!(w.m(Q - 1).served_locally(), (1, 1));
    assert_eq!(w.served(k, mine), Some(Version(1)));
    // A read: three operations leave the node, none for its own replica, and no answer to
    // itself goes through the network.
    let tag = 9_000;
    w.request(Q - 1, ReplicationRequest::Read { key: k.as_bytes().to_vec(), tag });
    let mut routed = 0;
    while let Some((from, _, msg)) = w.queue.front().cloned() {
        if from == addr(Q - 1) && matches!(msg, ReplMessage::Op(_)) {
            routed += 1;
        }
        let to_itself =
            matches!(&w.queue.front(), Some((f, super::world::Dest::Direct(t), _)) if f == t);
        assert!(!to_itself, "a message from a node to itself");
        w.step();
    }
    assert_eq!(routed, 3);
    assert_eq!(w.m(Q - 1).served_locally(), (2, 2));
    let r = w.read_result(tag).expect("answered").expect("a majority answered");
    assert_eq!(r.version, Version(1));
    assert!(r.replicas.iter().any(|a| a.replica == mine), "the local replica counts");
    // An operation at a replica of another node is not served here.
    let other = (mine + 1) % 4;
    let op = ReplicaOp::Write { version: Version(2), value: Some(b"two".to_vec()) };
    let req = ReplicationRequest::AtReplica {
        key: k.as_bytes().to_vec(),
        replica: other,
        op,
        tag: 9_001,
    };
    w.request(Q - 1, req);
    assert_eq!(w.queue.len(), 1);
    w.run();
    assert_eq!(w.m(Q - 1).served_locally(), (2, 2));
    assert_eq!(w.served(k, other), Some(Version(2)));
    assert_eq!(w.served(k, mine), Some(Version(1)));
}
