//! Re-replication after crashes: the successor rebuilds the crashed peer's replicas from the
//! others, serves only once complete, abstains from votes for a lease, and every acknowledged
//! write stays readable through consecutive crashes.

use std::collections::BTreeMap;
use std::time::Duration;

use selfman_ports::{
    LockMode, Movement, Range, ReplicaOp, ReplicaOutcome, ReplicationIndication,
    ReplicationRequest, RingId, TxId, Version, Vote,
};

use super::handover::{all_replicas_at, anchors, keys, small_batches, write_all, Q};
use super::world::World;
use crate::machine::tests_support::Harness;
use crate::machine::{ReplOutput, Transition};
use crate::messages::{ReplMessage, WireItem};
use crate::recovery::Recovery;

fn eight() -> Vec<u64> {
    let mut ids = anchors();
    ids.extend([Q / 2, Q + Q / 3, 2 * Q + Q / 2, 3 * Q + Q / 4]);
    ids
}

fn rebuilt(w: &World, id: u64) -> bool {
    w.told(id, |i| matches!(i, ReplicationIndication::Movement(Movement::Rebuilt { .. })))
}

#[test]
fn a_crashed_peer_is_rebuilt_from_the_other_replicas() {
    let mut w = World::ring(small_batches(), &eight());
    let keys = keys(200);
    write_all(&mut w, &keys, 1, Q - 1);
    for k in keys.iter().step_by(3) {
        assert_eq!(w.write(2 * Q - 1, k, 2, "two"), 4);
    }
    let latest: BTreeMap<String, u64> =
        keys.iter().enumerate().map(|(i, k)| (k.clone(), if i % 3 == 0 { 2 } else { 1 })).collect();
    let lost = w.m(Q / 2).store().len();
    assert!(lost > 10);
    w.crash(Q / 2);
    w.detect(Q / 2);
    assert!(w.tick_until(Duration::from_secs(5), |w| rebuilt(w, Q - 1)));
    all_replicas_at(&w, &latest);
    assert_eq!(w.m(Q - 1).serving(), vec![Range::new(RingId(u64::MAX), RingId(Q - 1))]);
    // Bulk reads moved about what was lost (each of the f - 1 sources sends it once).
    let moved = w.bytes_of(&["range-items"]);
    assert!(moved > 0 && moved < 3 * lost * 64, "{moved} bytes for {lost} replicas");
    // The movement counts what it installed, in items and in key and value bytes (every key
    // is at least a byte long, and a rebuild's data crossed the network).
    assert!(w.told(Q - 1, |i| matches!(
        i,
        ReplicationIndication::Movement(Movement::Rebuilt { items, bytes, .. })
            if *items > 0 && *bytes >= *items && *bytes <= moved as u64
    )));
}

#[test]
fn every_acknowledged_write_survives_crashes_one_after_another() {
    let mut w = World::ring(small_batches(), &eight());
    let keys = keys(150);
    write_all(&mut w, &keys, 1, Q - 1);
    let mut latest: BTreeMap<String, u64> = keys.iter().map(|k| (k.clone(), 1)).collect();
    for (round, victim) in [Q / 2, 2 * Q + Q / 2, Q - 1].into_iter().enumerate() {
        w.crash(victim);
        w.detect(victim);
        w.tick_for(Duration::from_secs(2));
        let v = round as u64 + 2;
        let via = *w.ring.keys().next().map(|i| &i.0).unwrap();
        for k in keys.iter().skip(round).step_by(4) {
            assert!(w.write(via, k, v, "again") >= 3, "{k} v{v} after crash {round}");
            latest.insert(k.clone(), v);
        }
        for k in &keys {
            let r = w.read(via, k).unwrap_or_else(|e| panic!("{k}: {e:?}"));
            assert_eq!(r.version, Version(latest[k]), "{k} after crash {round}");
        }
    }
    all_replicas_at(&w, &latest);
}

#[test]
fn a_rebuilt_range_abstains_from_votes_for_a_lease() {
    let mut w = World::ring(small_batches(), &eight());
    let keys = keys(60);
    write_all(&mut w, &keys, 1, Q - 1);
    w.crash(Q / 2);
    w.detect(Q / 2);
    assert!(w.tick_until(Duration::from_secs(5), |w| rebuilt(w, Q - 1)));
    let lost = Range::new(RingId(u64::MAX), RingId(Q / 2));
    let (k, r) = keys
        .iter()
        .find_map(|k| {
            (0..4)
                .find(|r| lost.contains(RingId::of_key(k.as_bytes()).replica(*r, 4)))
                .map(|r| (k.clone(), r))
        })
        .unwrap();
    let vote = |w: &mut World, tag| {
        let op = ReplicaOp::Vote {
            tx: TxId(tag),
            mode: LockMode::Read,
            read: Version(1),
            lease_ms: 1000,
        };
        w.request(
            2 * Q - 1,
            ReplicationRequest::AtReplica { key: k.clone().into_bytes(), replica: r, op, tag },
        );
        w.run();
        w.told.iter().find_map(|(_, i)| match i {
            ReplicationIndication::ReplicaDone { tag: t, result: Ok((_, o)), .. } if *t == tag => {
                Some(o.clone())
            }
            _ => None,
        })
    };
    assert_eq!(vote(&mut w, 1_000_001), Some(ReplicaOutcome::Voted(Vote::Abstain)));
    w.tick_for(w.config.max_lease);
    assert_eq!(vote(&mut w, 1_000_002), Some(ReplicaOutcome::Voted(Vote::Prepared)));
}

#[test]
fn a_rebuild_asks_again_when_a_source_is_not_ready_and_serves_once_enough_are_read() {
    let mut h = Harness::new(4);
    let mut rec = Recovery::new();
    let range = Range::new(RingId(100), RingId(200));
    h.run(|cx| rec.start(cx, range));
    let reads: Vec<(RingId, u32)> = h
        .out
        .iter()
        .filter_map(|o| match o {
            ReplOutput::Route { key, msg: ReplMessage::RangeRead { shift, .. }, .. } => {
                Some((*key, *shift))
            }
            _ => None,
        })
        .collect();
    assert_eq!(reads.len(), 3, "one read per other replica offset");
    assert_eq!(reads[0].0, RingId(101 + Q), "routed to the first position of the interval");
    h.out.clear();
    let after = RingId(100 + Q);
    h.run(|cx| rec.on_not_ready(cx, 0, 1, after));
    h.tick_to(Duration::from_millis(50), |cx| rec.on_tick(cx));
    assert!(h.out.is_empty(), "not before `retry`");
    h.tick_to(Duration::from_millis(100), |cx| rec.on_tick(cx));
    assert!(matches!(
        &h.out[..],
        [ReplOutput::Route { msg: ReplMessage::RangeRead { shift: 1, .. }, .. }]
    ));
    // Offset 2 answers in two parts, offset 3 at once: two of three are enough for f = 4.
    let d2 = 2 * Q;
    let item = |key: &[u8], v| WireItem {
        key: key.to_vec(),
        replica: 0,
        version: Version(v),
        value: None,
        votes: vec![],
    };
    h.run(|cx| rec.on_items(cx, cx.me, 0, 2, RingId(100 + d2), RingId(150 + d2), vec![]));
    assert!(h.moves.is_empty());
    h.run(|cx| rec.on_items(cx, cx.me, 0, 2, RingId(150 + d2), RingId(200 + d2), vec![]));
    assert!(h.moves.is_empty(), "one source is not enough");
    h.run(|cx| {
        rec.on_items(cx, cx.me, 0, 3, RingId(100 + 3 * Q), RingId(200 + 3 * Q), vec![item(b"x", 1)])
    });
    assert_eq!(h.moves, vec![Transition::Serve(range)]);
    assert_eq!(h.faults.get(crate::faults::Fault::OutsideRange), 1, "the stray item was dropped");
    assert!(!rec.holds(RingId(150)), "served now");
}

/// The shape of `repl-join` seed 5731 (`docs/replication.md`, "A rebuild that waited
/// forever"): in three sectors at once a joiner `y` takes part of its anchor's sector, and a
/// second joiner `z` takes part of `y`'s range before `y` had its data; the anchors' offers
/// come late (lost here), so `y` and `z` give up waiting and rebuild, and each rebuild finds
/// only one of its three sources served (the fourth sector's). When the anchors finally
/// offer, `y` takes the offer for the part it rebuilds — and must take `z`'s part too and
/// hand it on: the anchor drops everything it sent at `DoneAck`, and `z`'s rebuild, whose
/// other sources are the other `z`s, would wait forever.
#[test]
fn three_sectors_rebuilding_at_once_get_the_late_old_holders_data_handed_on() {
    use std::cell::Cell;
    use std::rc::Rc;

    use selfman_ports::HostId;

    use super::world::addr;

    let mut w = World::ring(small_batches(), &anchors());
    let keys = keys(300);
    write_all(&mut w, &keys, 1, Q - 1);
    let latest: BTreeMap<String, u64> = keys.iter().map(|k| (k.clone(), 1)).collect();
    // The anchors of sectors 1, 2 and 3 are slow to offer (their offers are lost for now).
    let late = [2 * Q - 1, 3 * Q - 1, u64::MAX].map(addr);
    let blocked = Rc::new(Cell::new(true));
    let b = blocked.clone();
    w.lose = Some(Box::new(move |from, _, m| {
        b.get() && late.contains(from) && matches!(m, ReplMessage::Offer { .. })
    }));
    let (ys, zs): (Vec<u64>, Vec<u64>) = (1..4).map(|s| (s * Q + Q / 2, s * Q + Q / 4)).unzip();
    for (s, (y, z)) in ys.iter().zip(&zs).enumerate() {
        let s = s as u32;
        w.join(*y, HostId(4 + s), true);
        w.join(*z, HostId(8 + s), true);
    }
    w.run();
    // Both joiners of every sector give up waiting and rebuild; none can finish.
    w.tick_for(w.config.offer_wait + Duration::from_secs(1));
    for id in ys.iter().chain(&zs) {
        let v = w.m(*id).view();
        assert!(v.serving.is_empty() && !v.pending.is_empty(), "{id:x}: {v:?}");
        assert!(!rebuilt(&w, *id), "{id:x} rebuilt from one source");
    }
    // The anchors offer again: every node ends up serving exactly its range, every replica
    // at its latest version, and the anchors hold nothing outgoing.
    blocked.set(false);
    let all: Vec<u64> = w.ring.keys().map(|i| i.0).collect();
    let settled = |w: &World| {
        all.iter().all(|id| {
            let v = w.m(*id).view();
            v.serving == vec![w.range_of(*id)] && v.pending.is_empty() && v.outgoing.is_empty()
        })
    };
    assert!(
        w.tick_until(Duration::from_secs(60), settled),
        "never settled: {:?}",
        zs.iter().map(|z| w.m(*z).view()).collect::<Vec<_>>()
    );
    all_replicas_at(&w, &latest);
    for z in &zs {
        assert!(
            w.told(*z, |i| matches!(i, ReplicationIndication::Movement(Movement::Received { .. }))),
            "{z:x} received its range from the joiner it was taken from"
        );
    }
}
