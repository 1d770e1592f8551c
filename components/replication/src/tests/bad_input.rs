//! Bad input from buggy or stale peers: each kind is counted once, under its kind, and never
//! changes a stored version.

use std::time::Duration;

use selfman_core::{NodeAddr, NodeId};
use selfman_ports::{
    HostId, Range, ReplicaOp, ReplicaOutcome, ReplicationRequest, RingId, Version,
};

use super::handover::{anchors, keys, small_batches, write_all, Q};
use super::world::{addr, World};
use crate::config::ReplicationConfig;
use crate::faults::Fault;
use crate::messages::{OpRequest, OpResult, ReplMessage, WireItem, MAX_BATCH_ITEMS};
use crate::store::ItemId;

const JOINER: u64 = Q / 2;

/// A ring with a joiner whose transfer from node `Q - 1` is open (accepted, session 0) and
/// receives nothing: the test sends the batches.
fn open_transfer() -> World {
    let mut w = World::ring(small_batches(), &anchors());
    write_all(&mut w, &keys(40), 1, Q - 1);
    let r = addr(Q - 1);
    w.lose = Some(Box::new(move |from, _, m| {
        *from == r && matches!(m, ReplMessage::Items { .. } | ReplMessage::Done { .. })
    }));
    w.join(JOINER, HostId(4), true);
    w.run();
    w
}

fn versions(w: &World, id: u64) -> Vec<(ItemId, Version)> {
    w.m(id).store().iter().map(|(i, r)| (i.to_id(), r.version)).collect()
}

/// Delivers `msg` to node `to` from `from`; checks one `kind` was counted and nothing else,
/// and that no stored version changed. Returns what the node sent.
fn expect_counted(
    w: &mut World,
    to: u64,
    from: NodeAddr,
    msg: ReplMessage,
    kind: Fault,
) -> Vec<ReplMessage> {
    w.run();
    let before = versions(w, to);
    let count = w.m(to).faults().get(kind);
    let total = w.m(to).faults().total();
    w.with(addr(to), |m, now, out| m.on_message(from, msg, now, out));
    assert_eq!(w.m(to).faults().get(kind), count + 1, "{kind:?} not counted: {}", w.m(to).faults());
    assert_eq!(
        w.m(to).faults().total(),
        total + 1,
        "counted as something else too: {}",
        w.m(to).faults()
    );
    assert_eq!(versions(w, to), before, "bad input changed a version");
    w.queue.drain(..).map(|(_, _, m)| m).collect()
}

fn item_in(range: Range, version: u64) -> WireItem {
    let (key, replica) = (0u32..)
        .map(|i| format!("bad-{i}"))
        .find_map(|k| {
            (0..4)
                .find(|r| range.contains(RingId::of_key(k.as_bytes()).replica(*r, 4)))
                .map(|r| (k, r))
        })
        .expect("some key lands in the range");
    WireItem {
        key: key.into_bytes(),
        replica,
        version: Version(version),
        value: Some(b"x".to_vec()),
        votes: vec![],
    }
}

fn mine() -> Range {
    Range::new(RingId(u64::MAX), RingId(JOINER))
}

fn stranger() -> NodeAddr {
    NodeAddr::simulated(999, NodeId(9999))
}

#[test]
fn an_oversized_batch_is_dropped_whole() {
    let mut w = open_transfer();
    let items = vec![item_in(mine(), 1); MAX_BATCH_ITEMS + 1];
    let sent = expect_counted(
        &mut w,
        JOINER,
        addr(Q - 1),
        ReplMessage::Items { session: 0, seq: 0, items },
        Fault::Oversized,
    );
    assert!(sent.is_empty());
}

#[test]
fn a_replica_number_beyond_f() {
    let mut w = open_transfer();
    let op = OpRequest {
        id: 1,
        reply_to: stranger(),
        key: b"k".to_vec(),
        replica: 9,
        op: ReplicaOp::Read,
        forwards: 0,
    };
    let sent = expect_counted(&mut w, Q - 1, stranger(), ReplMessage::Op(op), Fault::BadReplica);
    assert!(sent.is_empty());
}

#[test]
fn items_outside_the_offered_range_are_dropped_the_rest_kept() {
    let mut w = open_transfer();
    let outside = item_in(Range::new(RingId(Q), RingId(2 * Q)), 7);
    let inside = item_in(mine(), 7);
    let msg =
        ReplMessage::Items { session: 0, seq: 0, items: vec![outside.clone(), inside.clone()] };
    w.run();
    let count = w.m(JOINER).faults().get(Fault::OutsideRange);
    w.with(addr(JOINER), |m, now, out| m.on_message(addr(Q - 1), msg, now, out));
    assert_eq!(w.m(JOINER).faults().get(Fault::OutsideRange), count + 1);
    let pos = |i: &WireItem| RingId::of_key(&i.key).replica(i.replica, 4);
    let store = w.m(JOINER).store();
    assert!(store.get(&ItemId::new(pos(&outside), &outside.key)).is_none());
    assert_eq!(
        store.get(&ItemId::new(pos(&inside), &inside.key)).map(|r| r.version),
        Some(Version(7))
    );
}

#[test]
fn a_transfer_never_takes_a_version_back() {
    let mut w = open_transfer();
    let new = item_in(mine(), 5);
    w.with(addr(JOINER), |m, now, out| {
        m.on_message(
            addr(Q - 1),
            ReplMessage::Items { session: 0, seq: 0, items: vec![new.clone()] },
            now,
            out,
        )
    });
    let old = WireItem { version: Version(3), ..new.clone() };
    let sent = expect_counted(
        &mut w,
        JOINER,
        addr(Q - 1),
        ReplMessage::Items { session: 0, seq: 1, items: vec![old] },
        Fault::VersionBackwards,
    );
    assert!(matches!(&sent[..], [ReplMessage::ItemsAck { seq: 1, .. }]));
    let pos = RingId::of_key(&new.key).replica(new.replica, 4);
    assert_eq!(w.m(JOINER).store().get(&ItemId::new(pos, &new.key)).unwrap().version, Version(5));
}

#[test]
fn messages_of_unknown_or_foreign_sessions_and_gaps() {
    let mut w = open_transfer();
    let sent = expect_counted(
        &mut w,
        Q - 1,
        addr(JOINER),
        ReplMessage::ItemsAck { session: 77, seq: 0 },
        Fault::UnknownSession,
    );
    assert!(sent.is_empty());
    let batch = ReplMessage::Items { session: 0, seq: 0, items: vec![item_in(mine(), 9)] };
    let sent = expect_counted(&mut w, JOINER, stranger(), batch, Fault::StrangerSession);
    assert!(sent.is_empty());
    let gap = ReplMessage::Items { session: 0, seq: 9, items: vec![item_in(mine(), 9)] };
    let sent = expect_counted(&mut w, JOINER, addr(Q - 1), gap, Fault::SequenceGap);
    assert!(sent.is_empty(), "no ack for a batch out of sequence");
    let done = ReplMessage::DoneAck { session: 0 };
    expect_counted(&mut w, Q - 1, stranger(), done, Fault::StrangerSession);
}

#[test]
fn a_transfer_that_never_finishes_times_out_and_the_range_is_rebuilt() {
    let mut w = open_transfer();
    let t = w.config.transfer_timeout;
    w.tick_for(t + Duration::from_millis(100));
    assert!(w.m(JOINER).faults().get(Fault::TransferTimeout) >= 1);
    assert!(w.m(JOINER).serving().is_empty(), "nothing served from an incomplete transfer");
    // The old holder keeps re-offering, its batches keep being lost: after `offer_wait` the
    // joiner rebuilds from the other replicas.
    let wait = w.config.offer_wait;
    assert!(w.tick_until(t + wait * 3, |w| !w.m(JOINER).serving().is_empty()));
}

#[test]
fn an_offer_of_a_range_not_owned() {
    let mut w = open_transfer();
    let offer =
        ReplMessage::Offer { session: 5, range: Range::new(RingId(2 * Q), RingId(2 * Q + 10)) };
    let sent = expect_counted(&mut w, JOINER, stranger(), offer, Fault::StaleOffer);
    assert!(matches!(&sent[..], [ReplMessage::Decline { session: 5 }]));
    let pull = ReplMessage::Pull { range: Range::new(RingId(2 * Q), RingId(2 * Q + 10)) };
    expect_counted(&mut w, Q - 1, stranger(), pull, Fault::StaleOffer);
}

#[test]
fn an_answer_to_no_operation() {
    let mut w = open_transfer();
    let reply = ReplMessage::OpReply {
        id: u64::MAX / 2,
        replica: 0,
        result: OpResult::Done(ReplicaOutcome::Applied),
    };
    let sent = expect_counted(&mut w, Q - 1, stranger(), reply, Fault::UnknownReply);
    assert!(sent.is_empty());
}

#[test]
fn an_operation_for_a_position_neither_owned_nor_held() {
    let mut w = open_transfer();
    let (key, replica) = (0u32..)
        .map(|i| format!("x{i}"))
        .find_map(|k| {
            (0..4)
                .find(|r| {
                    Range::new(RingId(2 * Q - 1), RingId(3 * Q - 1))
                        .contains(RingId::of_key(k.as_bytes()).replica(*r, 4))
                })
                .map(|r| (k, r))
        })
        .unwrap();
    let op = OpRequest {
        id: 3,
        reply_to: stranger(),
        key: key.into_bytes(),
        replica,
        op: ReplicaOp::Read,
        forwards: 0,
    };
    let sent = expect_counted(&mut w, Q - 1, stranger(), ReplMessage::Op(op), Fault::Misrouted);
    assert!(matches!(&sent[..], [ReplMessage::OpReply { result: OpResult::NotResponsible, .. }]));
}

#[test]
fn a_divergent_push_is_resolved_and_counted() {
    let mut w = World::ring(ReplicationConfig::default(), &anchors());
    let k = keys(1).remove(0);
    write_all(&mut w, std::slice::from_ref(&k), 2, Q - 1);
    let (r, owner) = (0..4u32)
        .find_map(|r| {
            let pos = RingId::of_key(k.as_bytes()).replica(r, 4);
            anchors()
                .into_iter()
                .find(|a| w.m(*a).serving().iter().any(|s| s.contains(pos)))
                .map(|a| (r, a))
        })
        .unwrap();
    let pos = RingId::of_key(k.as_bytes()).replica(r, 4);
    let segment = Range::new(RingId(pos.0 - 1), pos);
    let item = WireItem {
        key: k.clone().into_bytes(),
        replica: r,
        version: Version(2),
        value: Some(b"other".to_vec()),
        votes: vec![],
    };
    let count = w.m(owner).faults().get(Fault::Divergent);
    w.with(addr(owner), |m, now, out| {
        m.on_message(
            stranger(),
            ReplMessage::SyncPush { session: 1, segment, items: vec![item] },
            now,
            out,
        )
    });
    assert_eq!(w.m(owner).faults().get(Fault::Divergent), count + 1);
    assert_eq!(
        w.m(owner).store().get(&ItemId::new(pos, k.as_bytes())).unwrap().version,
        Version(2)
    );
}

#[test]
fn too_many_operations_in_flight() {
    let config = ReplicationConfig { max_pending: 1, ..ReplicationConfig::default() };
    let mut w = World::ring(config, &anchors());
    w.request(Q - 1, ReplicationRequest::Read { key: b"a".to_vec(), tag: 1 });
    let count = w.m(Q - 1).faults().get(Fault::Overloaded);
    w.request(Q - 1, ReplicationRequest::Read { key: b"b".to_vec(), tag: 2 });
    assert_eq!(w.m(Q - 1).faults().get(Fault::Overloaded), count + 1);
    assert_eq!(w.read_result(2), Some(Err(selfman_ports::ReadFailure::Overloaded)));
}
