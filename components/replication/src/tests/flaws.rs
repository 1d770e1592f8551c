//! Each deliberate flaw breaks the property it is named after, while the clean machine keeps
//! it in the same steps (`IgnoresHosts` is shown in `placement`, `QuorumOfOne` also there in
//! `quorum`).

use std::collections::BTreeMap;

use selfman_ports::{HostId, Range, ReplicaOp, ReplicationRequest, RingId, Version};

use super::handover::{anchors, keys, small_batches, write_all, Q};
use super::repair::repair_rounds;
use super::world::{addr, Dest, World};
use crate::config::ReplicationConfig;
use crate::machine::Flaw;
use crate::messages::ReplMessage;
use crate::placement::Placement;
use crate::store::{ItemId, Record};

/// With f = 3: a key with replica `i` in the joiner's range gets version 2 at replicas `i` and
/// `j` (a majority) after its record went to the joiner; then a read that hears from the
/// joiner and the third replica. Returns (the joiner's version, the read's version).
fn meanwhile_write(flaw: Option<Flaw>) -> (Version, Version) {
    let p = Placement::new(3);
    let ids = [p.anchor(0).0, p.anchor(1).0, p.anchor(2).0];
    let config = ReplicationConfig { f: 3, window: 1, ..small_batches() };
    let mut w = World::ring(config, &ids);
    let keys = keys(60);
    for k in &keys {
        assert_eq!(w.write(ids[0], k, 1, "one"), 3);
    }
    if let Some(f) = flaw {
        w.flaw(ids[0], f);
    }
    let joiner = ids[0] / 2;
    let mine = Range::new(RingId(u64::MAX), RingId(joiner));
    // The key sent first (in the first batch), so that the transfer has far to go after it.
    let (k, i) = keys
        .iter()
        .flat_map(|k| (0..3).map(move |r| (k.clone(), r)))
        .filter(|(k, r)| mine.contains(RingId::of_key(k.as_bytes()).replica(*r, 3)))
        .min_by_key(|(k, r)| RingId::of_key(k.as_bytes()).replica(*r, 3).distance_from(mine.start))
        .unwrap();
    let (j, l) = ((i + 1) % 3, (i + 2) % 3);
    w.join(joiner, HostId(3), true);
    // Until the key's record has gone to the joiner.
    loop {
        let sent = matches!(w.queue.front(), Some((_, _, ReplMessage::Items { items, .. })) if items.iter().any(|it| it.key == k.as_bytes()));
        assert!(w.step(), "the key was never sent");
        if sent {
            break;
        }
    }
    for (tag, r) in [(1_000_010, i), (1_000_011, j)] {
        let op = ReplicaOp::Write { version: Version(2), value: Some(b"two".to_vec()) };
        w.request(
            ids[1],
            ReplicationRequest::AtReplica { key: k.clone().into_bytes(), replica: r, op, tag },
        );
    }
    w.tick_for(std::time::Duration::from_secs(1));
    assert_eq!(w.acks(&[1_000_010, 1_000_011]), 2, "version 2 is acknowledged by a majority");
    assert!(!w.m(joiner).serving().is_empty(), "the hand-over is complete");
    let at_joiner = w.served(&k, i).unwrap();
    // A read that hears from the joiner and replica `l` only.
    let pj = RingId::of_key(k.as_bytes()).replica(j, 3);
    w.lose = Some(Box::new(
        move |_, dest, m| matches!((dest, m), (Dest::Routed { key, .. }, ReplMessage::Op(_)) if *key == pj),
    ));
    let read = w.read(ids[2], &k).expect("two of three answer").version;
    let _ = l;
    (at_joiner, read)
}

#[test]
fn flaw_skipping_the_delta_loses_meanwhile_writes() {
    assert_eq!(meanwhile_write(None), (Version(2), Version(2)), "the clean hand-over keeps it");
    let (at_joiner, read) = meanwhile_write(Some(Flaw::SkipsDelta));
    assert_eq!(at_joiner, Version(1), "the joiner never got the meanwhile-write");
    assert_eq!(read, Version(1), "a stale read after an acknowledged write");
}

/// Version 2 applied at replicas 1..4 only (a majority), then a quorum read with `flaw` from
/// the node holding replica 0: its own (stale) replica answers first, served locally.
fn read_after_majority_write(flaw: Option<Flaw>) -> Version {
    let mut w = World::ring(ReplicationConfig::default(), &anchors());
    let k = "the-key";
    assert_eq!(w.write(Q - 1, k, 1, "one"), 4);
    for (tag, r) in [(1_000_020, 1), (1_000_021, 2), (1_000_022, 3)] {
        let op = ReplicaOp::Write { version: Version(2), value: Some(b"two".to_vec()) };
        w.request(
            Q - 1,
            ReplicationRequest::AtReplica { key: k.as_bytes().to_vec(), replica: r, op, tag },
        );
    }
    w.run();
    assert_eq!(w.acks(&[1_000_020, 1_000_021, 1_000_022]), 3);
    let first = RingId::of_key(k.as_bytes()).replica(0, 4);
    let reader = anchors().into_iter().find(|a| w.owner(first) == Some(addr(*a))).unwrap();
    if let Some(f) = flaw {
        w.flaw(reader, f);
    }
    w.read(reader, k).unwrap().version
}

#[test]
fn flaw_quorum_of_one_reads_a_stale_replica() {
    assert_eq!(read_after_majority_write(None), Version(2));
    assert_eq!(read_after_majority_write(Some(Flaw::QuorumOfOne)), Version(1));
}

/// One replica of some keys is back at version 1; node `Q - 1` runs its repair rounds.
/// Returns how many replicas are still stale.
fn stale_after_repair(flaw: Option<Flaw>) -> usize {
    let mut w = World::ring(ReplicationConfig::default(), &anchors());
    let keys = keys(300);
    write_all(&mut w, &keys, 2, Q - 1);
    let m = w.nodes.get_mut(&addr(Q - 1)).unwrap();
    let mut damaged = BTreeMap::new();
    for k in keys.iter().step_by(10) {
        for r in 0..4 {
            let pos = RingId::of_key(k.as_bytes()).replica(r, 4);
            if m.serving().iter().any(|s| s.contains(pos)) {
                m.store_mut()
                    .insert_raw(ItemId::new(pos, k.as_bytes()), Record::new(Version(1), None));
                damaged.insert(k.clone(), r);
            }
        }
    }
    if let Some(f) = flaw {
        w.flaw(Q - 1, f);
    }
    repair_rounds(&mut w, Q - 1);
    damaged.iter().filter(|(k, r)| w.served(k, **r) != Some(Version(2))).count()
}

#[test]
fn flaw_no_repair_leaves_a_stale_replica() {
    assert_eq!(stale_after_repair(None), 0);
    assert!(stale_after_repair(Some(Flaw::NoRepair)) > 0);
}
