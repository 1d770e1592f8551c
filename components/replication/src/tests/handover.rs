//! Hand-over on join and leave: the range and the writes made meanwhile reach the new owner,
//! nothing is served stale, the old holder drops the range only at the end, locks travel, and
//! stuck or broken transfers end.

use std::collections::BTreeMap;
use std::time::Duration;

use selfman_ports::{
    HostId, LockMode, Movement, Range, ReplicaOp, ReplicaOutcome, ReplicationIndication,
    ReplicationRequest, RingId, TxId, Version, Vote,
};

use super::world::{addr, Dest, World};
use crate::config::ReplicationConfig;
use crate::faults::Fault;
use crate::messages::ReplMessage;

/// A quarter of the circle.
pub(crate) const Q: u64 = 1 << 62;

/// The four sector anchors for f = 4: each node owns one sector.
pub(crate) fn anchors() -> Vec<u64> {
    vec![Q - 1, 2 * Q - 1, 3 * Q - 1, u64::MAX]
}

pub(crate) fn small_batches() -> ReplicationConfig {
    ReplicationConfig { batch_items: 4, window: 2, ..ReplicationConfig::default() }
}

pub(crate) fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key-{i}")).collect()
}

/// Writes version `v` of every key from node `via`, all acknowledged by all replicas.
pub(crate) fn write_all(w: &mut World, keys: &[String], v: u64, via: u64) {
    for k in keys {
        assert_eq!(w.write(via, k, v, &format!("{k}@{v}")), 4, "{k} v{v}");
    }
}

/// Every replica of every key is served with the version in `want`.
pub(crate) fn all_replicas_at(w: &World, want: &BTreeMap<String, u64>) {
    for (k, v) in want {
        for r in 0..w.config.f {
            assert_eq!(w.served(k, r), Some(Version(*v)), "{k} replica {r}");
        }
    }
}

fn received(w: &World, id: u64) -> bool {
    w.told(id, |i| matches!(i, ReplicationIndication::Movement(Movement::Received { .. })))
}

#[test]
fn a_join_moves_the_range_and_every_write_made_meanwhile() {
    for successor_first in [true, false] {
        let mut w = World::ring(small_batches(), &anchors());
        let keys = keys(400);
        write_all(&mut w, &keys, 1, Q - 1);
        let mut latest: BTreeMap<String, u64> = keys.iter().map(|k| (k.clone(), 1)).collect();
        let joiner = Q / 2;
        w.join(joiner, HostId(4), successor_first);
        // Deliver one message at a time; every few steps write a new version of a key and
        // read another one, from nodes around the ring.
        let mut steps = 0u64;
        let mut pending = Vec::new();
        let mut reads = Vec::new();
        while !received(&w, joiner) {
            if !w.step() {
                w.tick_for(w.config.tick);
            }
            steps += 1;
            assert!(steps < 200_000, "the transfer never ended");
            if steps % 20 == 0 {
                let k = keys[(steps / 20) as usize % keys.len()].clone();
                let v = latest[&k] + 1;
                let via = anchors()[(steps / 20) as usize % 4];
                pending.push((k.clone(), v, w.start_write(via, &k, v, &format!("{k}@{v}"))));
                latest.insert(k, v);
            }
            if steps % 25 == 0 {
                let k = keys[(steps / 25) as usize % keys.len()].clone();
                // The version acknowledged by a majority when the read starts.
                let acked = pending
                    .iter()
                    .filter(|(pk, _, tags)| *pk == k && w.acks(tags) >= 3)
                    .map(|(_, v, _)| *v)
                    .max()
                    .unwrap_or(1);
                let tag = 1_000_000 + steps;
                w.request(joiner, ReplicationRequest::Read { key: k.clone().into_bytes(), tag });
                reads.push((tag, k, acked));
            }
        }
        w.run();
        w.tick_for(Duration::from_secs(1));
        for (k, v, tags) in &pending {
            assert!(w.answered(tags), "{k} v{v} unanswered");
            assert_eq!(w.acks(tags), 4, "{k} v{v} not applied everywhere");
        }
        // No read returned a version older than one acknowledged before it started.
        let mut answered = 0;
        for (tag, k, acked) in &reads {
            if let Some(Ok(r)) = w.read_result(*tag) {
                assert!(
                    r.version.0 >= *acked,
                    "read of {k} returned {} after v{acked} was acknowledged",
                    r.version
                );
                answered += 1;
            }
        }
        assert!(
            answered * 10 >= reads.len() * 9,
            "reads stayed available: {answered} of {}",
            reads.len()
        );
        assert!(pending.len() >= 10 && reads.len() >= 5, "writes and reads overlapped the move");
        println!("join (successor first: {successor_first}): {steps} steps, {} writes and {} reads during the move", pending.len(), reads.len());
        // Every replica is served with the latest version; the joiner serves its range.
        all_replicas_at(&w, &latest);
        let mine = Range::new(RingId(u64::MAX), RingId(joiner));
        assert_eq!(w.m(joiner).serving(), vec![mine]);
        assert!(w.m(joiner).store().count_in(mine) > 0);
        // The old holder dropped the range.
        assert_eq!(w.m(Q - 1).store().count_in(mine), 0, "the old holder still holds it");
        // Both sides count what moved, in items and in key and value bytes (each key here is at
        // least a byte long, so the bytes are at least the items).
        assert!(w.told(Q - 1, |i| matches!(
            i,
            ReplicationIndication::Movement(Movement::HandedOver { items, bytes, .. })
                if *items > 0 && *bytes >= *items
        )));
        assert!(w.told(joiner, |i| matches!(
            i,
            ReplicationIndication::Movement(Movement::Received { items, bytes, .. })
                if *items > 0 && *bytes >= *items
        )));
        assert_eq!(w.m(joiner).faults().total(), 0, "{}", w.m(joiner).faults());
    }
}

#[test]
fn the_new_owner_forwards_to_the_old_holder_until_the_range_is_complete() {
    let mut w = World::ring(small_batches(), &anchors());
    let keys = keys(40);
    write_all(&mut w, &keys, 1, Q - 1);
    let joiner = Q / 2;
    // Hold the joiner's acknowledgements back: the transfer cannot complete.
    let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let h = held.clone();
    w.lose = Some(Box::new(move |_, _, m| {
        h.load(std::sync::atomic::Ordering::Relaxed) && matches!(m, ReplMessage::ItemsAck { .. })
    }));
    w.join(joiner, HostId(4), true);
    w.run();
    let mine = Range::new(RingId(u64::MAX), RingId(joiner));
    let k = keys
        .iter()
        .find(|k| (0..4).any(|r| mine.contains(RingId::of_key(k.as_bytes()).replica(r, 4))))
        .expect("a key with a replica in the joiner's range")
        .clone();
    let r = (0..4).find(|r| mine.contains(RingId::of_key(k.as_bytes()).replica(*r, 4))).unwrap();
    let read = w.read(2 * Q - 1, &k).expect("the read is answered");
    let by = read.replicas.iter().find(|a| a.replica == r).map(|a| a.node);
    assert!(by.is_none() || by == Some(addr(Q - 1)), "answered by the old holder, not {by:?}");
    // A write is applied by the old holder and so reaches the joiner with the rest.
    assert_eq!(w.write(3 * Q - 1, &k, 2, "two"), 4);
    assert!(w.m(joiner).serving().is_empty(), "not complete yet");
    held.store(false, std::sync::atomic::Ordering::Relaxed);
    w.tick_for(Duration::from_secs(1));
    assert!(received(&w, joiner));
    assert_eq!(w.served(&k, r), Some(Version(2)));
    let read = w.read(2 * Q - 1, &k).unwrap();
    assert_eq!(read.version, Version(2));
    if let Some(a) = read.replicas.iter().find(|a| a.replica == r) {
        assert_eq!(a.node, addr(joiner), "answered by the new owner now");
    }
}

#[test]
fn a_graceful_leave_hands_everything_to_the_successor() {
    let mut ids = anchors();
    ids.push(Q / 2);
    let mut w = World::ring(small_batches(), &ids);
    let keys = keys(100);
    write_all(&mut w, &keys, 1, Q - 1);
    let latest: BTreeMap<String, u64> = keys.iter().map(|k| (k.clone(), 1)).collect();
    let held = w.m(Q / 2).store().len();
    assert!(held > 0);
    w.request(Q / 2, ReplicationRequest::Leave);
    w.run();
    assert!(w.tick_until(Duration::from_secs(5), |w| w
        .told(Q / 2, |i| *i == ReplicationIndication::Left)));
    assert_eq!(w.m(Q / 2).store().len(), 0, "the leaver dropped what it handed over");
    w.crash(Q / 2);
    all_replicas_at(&w, &latest);
    assert_eq!(w.m(Q - 1).serving(), vec![Range::new(RingId(u64::MAX), RingId(Q - 1))]);
    assert!(
        w.told(Q - 1, |i| matches!(i, ReplicationIndication::Movement(Movement::Received { .. })))
    );
}

#[test]
fn locks_travel_with_the_items() {
    let mut w = World::ring(small_batches(), &anchors());
    let keys = keys(60);
    write_all(&mut w, &keys, 1, Q - 1);
    let joiner = Q / 2;
    let mine = Range::new(RingId(u64::MAX), RingId(joiner));
    let (k, r) = keys
        .iter()
        .find_map(|k| {
            (0..4)
                .find(|r| mine.contains(RingId::of_key(k.as_bytes()).replica(*r, 4)))
                .map(|r| (k.clone(), r))
        })
        .unwrap();
    let vote =
        |tx, mode| ReplicaOp::Vote { tx: TxId(tx), mode, read: Version(1), lease_ms: 60_000 };
    let at = |w: &mut World, op, tag| {
        w.request(
            2 * Q - 1,
            ReplicationRequest::AtReplica { key: k.clone().into_bytes(), replica: r, op, tag },
        );
        w.run();
        w.told.iter().rev().find_map(|(_, i)| match i {
            ReplicationIndication::ReplicaDone { tag: t, result: Ok((node, o)), .. }
                if *t == tag =>
            {
                Some((*node, o.clone()))
            }
            _ => None,
        })
    };
    assert_eq!(
        at(&mut w, vote(7, LockMode::Write), 1).unwrap().1,
        ReplicaOutcome::Voted(Vote::Prepared)
    );
    w.join(joiner, HostId(4), true);
    w.tick_for(Duration::from_secs(1));
    assert!(received(&w, joiner));
    // At the new owner: the vote is remembered and still locks.
    let (node, o) = at(&mut w, vote(7, LockMode::Write), 2).unwrap();
    assert_eq!((node, o), (addr(joiner), ReplicaOutcome::Voted(Vote::Prepared)));
    let (_, o) = at(&mut w, vote(8, LockMode::Read), 3).unwrap();
    assert_eq!(o, ReplicaOutcome::Voted(Vote::Refused(selfman_ports::Refusal::Locked)));
}

#[test]
fn a_joiner_that_crashes_before_the_end_gives_the_range_back_intact() {
    let mut w = World::ring(small_batches(), &anchors());
    let keys = keys(80);
    write_all(&mut w, &keys, 1, Q - 1);
    let joiner = Q / 2;
    w.join(joiner, HostId(4), true);
    for _ in 0..12 {
        w.step();
    }
    assert!(!received(&w, joiner));
    // A write now is applied at the old holder (forwarded or direct).
    let latest: BTreeMap<String, u64> = keys.iter().map(|k| (k.clone(), 1)).collect();
    w.crash(joiner);
    w.detect(joiner);
    w.run();
    all_replicas_at(&w, &latest);
    // Served again at once, no rebuild needed.
    assert!(!w.told(Q - 1, |i| matches!(
        i,
        ReplicationIndication::Movement(Movement::RebuildStarted { .. })
    )));
    assert!(w.told(Q - 1, |i| matches!(
        i,
        ReplicationIndication::Movement(Movement::TransferAborted { .. })
    )));
}

#[test]
fn a_joiner_that_crashes_after_done_is_rebuilt_with_its_writes() {
    let mut w = World::ring(small_batches(), &anchors());
    let keys = keys(80);
    write_all(&mut w, &keys, 1, Q - 1);
    let joiner = Q / 2;
    // The joiner's `DoneAck`s are lost: the old holder keeps the range as handed over.
    let j = addr(joiner);
    w.lose =
        Some(Box::new(move |from, _, m| *from == j && matches!(m, ReplMessage::DoneAck { .. })));
    w.join(joiner, HostId(4), true);
    w.tick_for(Duration::from_millis(500));
    assert!(received(&w, joiner));
    // New versions, applied at the joiner for its replicas.
    write_all(&mut w, &keys, 2, 2 * Q - 1);
    let latest: BTreeMap<String, u64> = keys.iter().map(|k| (k.clone(), 2)).collect();
    w.crash(joiner);
    w.lose = None;
    w.detect(joiner);
    assert!(w.tick_until(Duration::from_secs(5), |w| w
        .told(Q - 1, |i| matches!(i, ReplicationIndication::Movement(Movement::Rebuilt { .. })))));
    all_replicas_at(&w, &latest);
}

#[test]
fn an_old_holder_that_never_offers_is_replaced_by_a_rebuild() {
    let mut w = World::ring(small_batches(), &anchors());
    let keys = keys(60);
    write_all(&mut w, &keys, 1, Q - 1);
    let latest: BTreeMap<String, u64> = keys.iter().map(|k| (k.clone(), 1)).collect();
    // The old holder hears nothing and says nothing (it hangs; nobody suspects it yet).
    let r = addr(Q - 1);
    w.lose = Some(Box::new(move |from, dest, _| {
        *from == r || matches!(dest, Dest::Direct(to) if *to == r)
    }));
    let joiner = Q / 2;
    w.join(joiner, HostId(4), false);
    w.run();
    let wait = w.config.offer_wait;
    assert!(w.tick_until(wait * 3, |w| !w.m(joiner).serving().is_empty()));
    assert!(
        w.told(joiner, |i| matches!(i, ReplicationIndication::Movement(Movement::Rebuilt { .. })))
    );
    let mine = Range::new(RingId(u64::MAX), RingId(joiner));
    for k in &keys {
        for rep in 0..4 {
            if mine.contains(RingId::of_key(k.as_bytes()).replica(rep, 4)) {
                assert_eq!(w.served(k, rep), Some(Version(latest[k])), "{k}");
            }
        }
    }
}

#[test]
fn a_stuck_transfer_times_out_on_both_sides_and_is_retried() {
    let mut w = World::ring(small_batches(), &anchors());
    let keys = keys(60);
    write_all(&mut w, &keys, 1, Q - 1);
    let joiner = Q / 2;
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let l = lost.clone();
    w.lose = Some(Box::new(move |_, _, m| {
        l.load(std::sync::atomic::Ordering::Relaxed) && matches!(m, ReplMessage::Items { .. })
    }));
    w.join(joiner, HostId(4), true);
    w.tick_for(w.config.transfer_timeout + Duration::from_millis(200));
    assert!(w.m(Q - 1).faults().get(Fault::TransferTimeout) >= 1, "{}", w.m(Q - 1).faults());
    assert!(w.m(joiner).faults().get(Fault::TransferTimeout) >= 1, "{}", w.m(joiner).faults());
    assert!(w.m(joiner).serving().is_empty());
    lost.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(w.tick_until(Duration::from_secs(10), |w| !w.m(joiner).serving().is_empty()));
    let latest: BTreeMap<String, u64> = keys.iter().map(|k| (k.clone(), 1)).collect();
    all_replicas_at(&w, &latest);
}
