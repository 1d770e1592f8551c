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
