//! Routing: fingers learnt and refreshed, hops, the `last` flag into branches, timeouts,
//! unavailable ranges, payloads.

use selfman_ports::{LookupOutcome, RingId, RingIndication, RingRequest, RingStatus, Unavailable};

use std::time::Duration;

use super::{secs, World};

/// The branch of `recovery::a_peer_its_predecessor_cannot_reach_stays_consistent_in_a_branch`:
/// 200 sits between 100 and 300, but 100 cannot reach it.
pub(super) fn branch() -> World {
    let mut w = World::ring(&[100, 300, 400]);
    let q = w.add(200);
    let p = w.at(100);
    w.cut.insert((p, q));
    w.cut.insert((q, p));
    w.join(200, 300);
    w.run();
    w.tick_for(secs(2));
    w.suspect(100, 200);
    w.tick_for(secs(2));
    w
}

#[test]
fn a_last_message_goes_backwards_into_the_branch() {
    let mut w = branch();
    // 400 → 100 (closest preceding) → 300 (marked last: 150 ∈ (100, 300]) → backwards → 200.
    w.lookup(400, 150, 1);
    w.run();
    assert_eq!(w.outcome(400, 1), Some(LookupOutcome::Found { peer: w.peer(200), hops: 3 }));
    // A payload takes the same way.
    w.request(400, RingRequest::Route { key: RingId(199), tag: 9, payload: 77 });
    w.run();
    let got = w.drain(200);
    assert!(
        got.iter().any(|i| matches!(i, RingIndication::Deliver { tag: 9, payload: 77, .. })),
        "{got:?}"
    );
}

#[test]
fn lookups_find_the_owner_in_log_k_hops_with_fingers_learnt_and_refreshed() {
    let n = 64u64;
    let step = u64::MAX / n;
    let ids: Vec<u64> = (0..n).map(|i| i * step + (i * 7919) % 1000).collect();
    let mut w = World::ring(&ids);
    // Refresh every finger slot beyond the successor at least once (about 90 slots).
    w.tick_for(secs(100));
    w.assert_ring();
    let mut hops = Vec::new();
    let mut tag = 0;
    for (i, from) in ids.iter().enumerate() {
        for j in 0..8u64 {
            tag += 1;
            let key = (i as u64)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(j.wrapping_mul(0x1234_5678_9abc_def1));
            w.lookup(*from, key, tag);
            w.run();
            match w.outcome(*from, tag) {
                Some(LookupOutcome::Found { peer, hops: h }) => {
                    assert_eq!(peer, w.owner_of(key), "lookup of {key} from {from}");
                    hops.push(h);
                }
                other => panic!("lookup of {key} from {from}: {other:?}"),
            }
        }
    }
    let mean = hops.iter().sum::<u32>() as f64 / hops.len() as f64;
    let max = *hops.iter().max().expect("some");
    // log_4(64) = 3.
    assert!(mean <= 4.0, "mean hops {mean}");
    assert!(max <= 6, "max hops {max}");
    let fingers = w.view(ids[5]).fingers.len();
    assert!((3..=12).contains(&fingers), "{fingers} distinct fingers at 64 peers, k = 4");
}

#[test]
fn fingers_are_learnt_from_traffic() {
    let ids: Vec<u64> = (1..=16).map(|i| i << 58).collect();
    let mut w = World::ring(&ids);
    let before = w.view(ids[0]).fingers.len();
    // Lookups from elsewhere that pass through ids[0] teach it their origins.
    for (t, from) in ids[8..].iter().enumerate() {
        w.lookup(*from, ids[3], t as u64);
        w.run();
    }
    assert!(w.view(ids[0]).fingers.len() >= before);
    assert!(
        w.view(ids[0]).fingers.iter().any(|p| p.id.0 >= ids[8]),
        "{:?}",
        w.view(ids[0]).fingers
    );
}

#[test]
fn a_lookup_whose_answer_is_lost_times_out() {
    // Nothing 200 sends gets anywhere: neither its direct answer nor, to the second try, the
    // one it routes through the ring.
    let mut w = World::ring(&[100, 200, 300]);
    let (a, b, c) = (w.at(100), w.at(200), w.at(300));
    w.cut.insert((b, a));
    w.cut.insert((b, c));
    w.lookup(100, 150, 1);
    w.run();
    assert_eq!(w.outcome(100, 1), None);
    w.tick_unchecked(secs(3));
    assert_eq!(w.outcome(100, 1), Some(LookupOutcome::Unavailable(Unavailable::Timeout)));
    assert_eq!(w.m(100).pending_lookups(), 0);
}

#[test]
fn a_peer_outside_a_ring_answers_not_in_ring() {
    let mut w = World::new();
    w.add(100);
    w.lookup(100, 5, 1);
    assert_eq!(w.outcome(100, 1), Some(LookupOutcome::Unavailable(Unavailable::NotInRing)));
    w.request(100, RingRequest::Route { key: RingId(5), tag: 2, payload: 1 });
    let ind = w.drain(100);
    assert!(ind.iter().any(|i| matches!(
        i,
        RingIndication::Undeliverable { tag: 2, reason: Unavailable::NotInRing, .. }
    )));
}

#[test]
fn own_keys_are_answered_locally() {
    let mut w = World::ring(&[100, 200, 300]);
    w.lookup(200, 150, 1);
    assert_eq!(w.outcome(200, 1), Some(LookupOutcome::Found { peer: w.peer(200), hops: 0 }));
    assert!(w.queue.is_empty());
}

#[test]
fn payloads_are_delivered_at_the_owner_with_origin_and_tag() {
    let mut w = World::ring(&[100, 200, 300, 400, 500]);
    w.request(100, RingRequest::Route { key: RingId(250), tag: 7, payload: 42 });
    w.run();
    let got = w.drain(300);
    let origin = w.peer(100);
    let want = RingIndication::Deliver { key: RingId(250), origin, tag: 7, hops: 2, payload: 42 };
    assert!(got.contains(&want), "{got:?}");
}

#[test]
fn an_unavailable_range_is_reported_not_guessed() {
    let mut w = World::ring(&[100, 200, 300, 400]);
    w.crash(300);
    w.suspect(400, 300);
    w.suspect(200, 300);
    let fix = w.take(|f| f.name() == "Fix").expect("200 repairs");
    // While 400 has not taken (200, 300] over, nobody owns 250: the lookup says so.
    w.lookup(100, 250, 1);
    w.run();
    assert_eq!(w.outcome(100, 1), Some(LookupOutcome::Unavailable(Unavailable::RangeUnavailable)));
    w.deliver(fix);
    w.run();
    w.lookup(100, 250, 2);
    w.run();
    assert_eq!(w.outcome(100, 2), Some(LookupOutcome::Found { peer: w.peer(400), hops: 2 }));
}

#[test]
fn too_many_lookups_in_flight_are_refused() {
    let mut w = World::ring(&[100, 200]);
    for t in 0..super::super::MAX_PENDING as u64 {
        w.lookup(100, 150, t);
    }
    w.queue.clear();
    w.lookup(100, 150, u64::MAX);
    assert_eq!(w.outcome(100, u64::MAX), Some(LookupOutcome::Unavailable(Unavailable::Overloaded)));
}

#[test]
fn a_finger_that_left_is_dropped_when_it_says_so() {
    // 1·2^60 routes a lookup straight to its finger at 9·2^60, which has left but still runs:
    // it answers "not in a ring", and the finger is dropped (a left peer's process may keep
    // running for good; nothing else would remove it). (Found by `ring-leave` seed 6.)
    let ids: Vec<u64> = (1..=12).map(|i| i << 60).collect();
    let mut w = World::ring(&ids);
    let (a, f) = (w.at(1 << 60), w.peer(9 << 60));
    w.nodes.get_mut(&a).expect("exists").m.fingers.learn(f);
    assert!(w.view(1 << 60).fingers.contains(&f));
    w.request(9 << 60, RingRequest::Leave);
    w.run();
    assert_eq!(w.view(9 << 60).status, RingStatus::Left);
    let key = (9 << 60) + (1 << 59);
    w.lookup(1 << 60, key, 1);
    w.run();
    assert!(!w.view(1 << 60).fingers.contains(&f), "{:?}", w.view(1 << 60).fingers);
    // The next lookup goes another way.
    w.lookup(1 << 60, key, 2);
    w.run();
    assert!(matches!(w.outcome(1 << 60, 2), Some(LookupOutcome::Found { .. })));
}

#[test]
fn the_branch_answers_its_predecessor_through_the_ring() {
    // 100 cannot reach 200 (nor 200 100) and looks up a key of 200's range: the lookup gets
    // there (through 300, backwards), and 200, which suspects 100, routes the answer back
    // through the ring instead of sending it on the cut link. Same for 200 looking up a key of
    // 100's range. (Found by `ring-branches`: every such lookup timed out.)
    let mut w = branch();
    w.suspect(200, 100);
    w.lookup(100, 150, 1);
    w.run();
    assert_eq!(w.outcome(100, 1), Some(LookupOutcome::Found { peer: w.peer(200), hops: 2 }));
    w.lookup(200, 50, 2);
    w.run();
    assert!(
        matches!(w.outcome(200, 2), Some(LookupOutcome::Found { peer, .. }) if peer == w.peer(100)),
        "{:?}",
        w.outcome(200, 2)
    );
}

#[test]
fn fingers_between_a_peer_and_its_confirmed_successor_are_dropped() {
    // 1·2^60 keeps a finger at 1.5·2^60, a peer that left; its successor 2·2^60 accepts its
    // check-in, so nobody lies between them any more: the finger goes. (Nothing else would
    // remove it: it is never used, and finger refreshes look beyond the successor only.
    // Found by `ring-leave` seed 1.)
    stale_finger_goes_within(3 << 59, secs(2));
}

#[test]
fn a_lookup_unanswered_halfway_is_sent_again_another_way() {
    // 1·2^60's finger at 9·2^60 is silent (a partition, say: no hint comes back). Its lookup
    // of a key beyond it goes there and gets no answer; sent again halfway to its timeout, it
    // goes another way (the silent first hop is dropped) and is answered. (Found by
    // `ring-partition` seed 44: fingers to the other side stayed, and refreshes through them
    // never came back.)
    let ids: Vec<u64> = (1..=12).map(|i| i << 60).collect();
    let mut w = World::ring(&ids);
    let (a, f) = (w.at(1 << 60), w.peer(9 << 60));
    w.nodes.get_mut(&a).expect("exists").m.fingers.learn(f);
    w.cut.insert((a, f.addr));
    let key = (9 << 60) + (1 << 59);
    w.lookup(1 << 60, key, 1);
    w.run();
    assert_eq!(w.outcome(1 << 60, 1), None);
    w.tick_for(Duration::from_millis(1200));
    assert!(
        matches!(w.outcome(1 << 60, 1), Some(LookupOutcome::Found { .. })),
        "{:?}",
        w.outcome(1 << 60, 1)
    );
}

#[test]
fn a_lookup_sent_again_asks_for_its_answer_through_the_ring() {
    // 5·2^60 and 9·2^60 cannot reach each other (both ways), and 9·2^60 does not know it (it
    // never tried). 5·2^60's lookup of a key of 9·2^60's range gets there through others, but
    // the answer, sent directly, is lost. Sent again halfway, the lookup asks for its answer
    // through the ring, and is answered. (Found by `ring-branches` seed 21: a joiner cut from
    // a predecessor that never heard of it never got its lookups of that predecessor's keys
    // answered.)
    let ids: Vec<u64> = (1..=12).map(|i| i << 60).collect();
    let mut w = World::ring(&ids);
    let (a, b) = (w.at(5 << 60), w.at(9 << 60));
    w.cut.insert((a, b));
    w.cut.insert((b, a));
    for n in w.nodes.values_mut() {
        n.m.fingers.remove(a);
        n.m.fingers.remove(b);
    }
    let key = (9 << 60) - 7;
    w.lookup(5 << 60, key, 1);
    w.run();
    assert_eq!(w.outcome(5 << 60, 1), None, "the direct answer is lost");
    w.tick_for(Duration::from_millis(1200));
    let owner = w.peer(9 << 60);
    assert!(
        matches!(w.outcome(5 << 60, 1), Some(LookupOutcome::Found { peer, .. }) if peer == owner),
        "{:?}",
        w.outcome(5 << 60, 1)
    );
}

#[test]
fn fingers_inside_the_owned_range_are_dropped() {
    // 1·2^60 owns (12·2^60, 1·2^60]; a finger at 14·2^60, a peer that crashed or left, is the
    // first known peer at or after the ideal 1·2^60 + 3·2^62 = 13·2^60 — a key 1·2^60 owns
    // itself, so no refresh ever looks it up. It must go anyway (found by `ring-partition`
    // seed 1093: a finger to the other side, inside the range, outlived the run).
    stale_finger_goes_within(14 << 60, secs(2));
}

/// On a converged ring of `i·2^60` (`i = 1..=12`), 1·2^60 is given a finger at `at` to a node
/// that does not exist (it crashed or left); it must be gone within `within`, the ring intact.
fn stale_finger_goes_within(at: u64, within: Duration) {
    let ids: Vec<u64> = (1..=12).map(|i| i << 60).collect();
    let mut w = World::ring(&ids);
    let a = w.at(1 << 60);
    let stale =
        selfman_ports::Peer::new(RingId(at), super::NodeAddr::simulated(99, super::NodeId(99)));
    w.nodes.get_mut(&a).expect("exists").m.fingers.learn(stale);
    assert!(w.view(1 << 60).fingers.contains(&stale), "{:?}", w.view(1 << 60).fingers);
    w.tick_for(within);
    assert!(!w.view(1 << 60).fingers.contains(&stale), "{:?}", w.view(1 << 60).fingers);
    w.assert_ring();
}

#[test]
fn fingers_before_a_successor_that_only_redirects_are_dropped() {
    // In the branch, 100's successor 300 never accepts its check-in: it redirects it to 200,
    // which 100 cannot reach (and suspects), so 100 stays behind 300 and never gets a
    // `fix_ok`. A finger of 100 at 150 (a peer that crashed or left) lies before that
    // successor: routing never uses it and refreshes never look there, so it must go when the
    // successor is set or confirmed, whatever the way. (`selfman-bench ring` churn runs ended
    // with such fingers: "1 nearer than their holder's successor".)
    let mut w = branch();
    let a = w.at(100);
    let stale =
        selfman_ports::Peer::new(RingId(150), super::NodeAddr::simulated(99, super::NodeId(99)));
    w.nodes.get_mut(&a).expect("exists").m.fingers.learn(stale);
    assert!(w.view(100).fingers.contains(&stale));
    w.tick_for(secs(3));
    assert_eq!(w.view(100).succ.map(|p| p.id.0), Some(300), "still in the branch");
    assert!(!w.view(100).fingers.contains(&stale), "{:?}", w.view(100).fingers);
}

#[test]
fn a_peer_learnt_before_the_successor_is_not_kept() {
    // 1·2^60 hears of a peer at 1.5·2^60 (from a stale list, say) while its successor is
    // 2·2^60: no member lies there, so it is forgotten with the input that brought it, not
    // kept until the next check-in.
    let ids: Vec<u64> = (1..=12).map(|i| i << 60).collect();
    let mut w = World::ring(&ids);
    let a = w.at(1 << 60);
    let stale = selfman_ports::Peer::new(
        RingId(3 << 59),
        super::NodeAddr::simulated(99, super::NodeId(99)),
    );
    let other = w.at(7 << 60);
    w.with_node(a, |m, _, out| {
        m.fingers.learn(stale);
        m.on_unreachable(other, out);
    });
    assert!(!w.view(1 << 60).fingers.contains(&stale), "{:?}", w.view(1 << 60).fingers);
}

#[test]
fn a_crash_is_told_to_the_peers_whose_fingers_point_at_it() {
    // On a ring of 40 with fingers refreshed, the peer at index 17 crashes. Its predecessor
    // suspects it and sends finger notices: before any refresh, no live peer keeps a finger
    // to it (they waited for their slot's refresh, one slot a second round robin).
    let n = 40u64;
    let step = u64::MAX / n;
    let ids: Vec<u64> = (0..n).map(|i| i * step + (i * 7919) % 1000).collect();
    let mut w = World::ring(&ids);
    w.tick_for(secs(40));
    w.assert_ring();
    let g = w.peer(ids[17]);
    let holders = |w: &World| {
        w.nodes.values().filter(|n| n.m.me() != g && n.m.view().fingers.contains(&g)).count()
    };
    let before = holders(&w);
    assert!(before >= 3, "{before} peers hold a finger to it");
    w.crash_detected(ids[17]);
    w.run();
    assert_eq!(holders(&w), 0, "of {before}");
    w.tick_for(secs(3));
    w.assert_ring();
}

#[test]
fn a_finger_notice_walks_back_over_the_peers_that_may_hold_it_and_stops() {
    // A hand-made backwards step: 6·2^60 is told 9·2^60 is gone, the stretch starting after
    // 4·2^60. It forgets the finger and passes the notice to 5·2^60, which does too; 4·2^60
    // is not after `lower`, so the notice stops there.
    let ids: Vec<u64> = (1..=12).map(|i| i << 60).collect();
    let mut w = World::ring(&ids);
    let g = w.peer(9 << 60);
    let w_peer8 = w.at(8 << 60);
    for id in [4u64, 5, 6] {
        // (4·2^60 keeps it as the first peer at or after its ideal 8·2^60 once 8·2^60 is
        // forgotten.)
        let a = w.at(id << 60);
        let f = &mut w.nodes.get_mut(&a).expect("exists").m.fingers;
        f.remove(w_peer8);
        f.learn(g);
        assert!(f.peers().contains(&g), "{id}");
    }
    let a = w.at(6 << 60);
    let body = crate::messages::Body::FingerGone { gone: g, lower: RingId(4 << 60), steps: 4 };
    let from = w.peer(7 << 60);
    let msg = crate::messages::RingMessage { sender: from.id, body };
    w.with_node(a, |m, now, out| m.on_message(from.addr, msg, now, out));
    assert!(!w.view(6 << 60).fingers.contains(&g));
    w.deliver_named("FingerGone", 6 << 60, 5 << 60);
    assert!(!w.view(5 << 60).fingers.contains(&g));
    let steps: Vec<_> = w.names().into_iter().filter(|n| n.0 == "FingerGone").collect();
    assert!(steps.is_empty(), "4·2^60 is not after `lower`: {steps:?}");
    w.run();
    assert!(w.view(4 << 60).fingers.contains(&g), "{:?}", w.view(4 << 60).fingers);
    assert!(w.view(9 << 60).status == RingStatus::InRing, "a notice touches fingers only");
    w.assert_ring();
}

#[test]
fn a_lookup_unanswered_through_a_successor_list_entry_goes_another_way() {
    // 1·2^60 cannot reach 3·2^60, its second successor, and does not know it: the detector
    // watches the successor only, so 3·2^60 stays in the list (2·2^60's list names it).
    // A lookup of a key just after 3·2^60 goes there first (the closest preceding peer
    // known) and is lost; sent again halfway, it must not take the same way (dropping the
    // finger alone does not keep a list entry out of routing; `ring-branches` seed 144).
    let ids: Vec<u64> = (1..=12).map(|i| i << 60).collect();
    let mut w = World::ring(&ids);
    let (a, c) = (w.at(1 << 60), w.at(3 << 60));
    w.cut.insert((a, c));
    assert!(w.view(1 << 60).succ_list.contains(&w.peer(3 << 60)));
    let key = (3 << 60) + 5;
    w.lookup(1 << 60, key, 1);
    w.run();
    assert_eq!(w.outcome(1 << 60, 1), None, "lost on the cut link");
    w.tick_for(Duration::from_millis(1200));
    let owner = w.peer(4 << 60);
    assert!(
        matches!(w.outcome(1 << 60, 1), Some(LookupOutcome::Found { peer, .. }) if peer == owner),
        "{:?}",
        w.outcome(1 << 60, 1)
    );
}
