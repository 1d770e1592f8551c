//! The deliberately broken variants do break what they claim to (so that the simulation
//! checkers have something to catch).

use selfman_core::NodeAddr;
use selfman_ports::{LookupOutcome, RingId};

use super::{range, secs, World};
use crate::machine::{Flaw, RelaxedRingMachine};

fn flaw_everywhere(w: &mut World, flaw: Flaw) {
    let addrs: Vec<NodeAddr> = w.nodes.keys().copied().collect();
    for a in addrs {
        let n = w.nodes.get_mut(&a).expect("exists");
        let m = std::mem::replace(&mut n.m, RelaxedRingMachine::new(a, w.config));
        n.m = m.with_flaw(flaw);
    }
}

#[test]
fn eager_join_makes_two_peers_own_one_range() {
    let mut w = World::ring(&[100, 300]);
    w.add(200);
    flaw_everywhere(&mut w, Flaw::EagerJoin);
    w.join(200, 100);
    w.deliver_named("Route(Join)", 200, 100);
    w.deliver_named("Route(Join)", 100, 300);
    w.deliver_named("JoinOk", 300, 200);
    // 300 still owns (100, 300] until the join ack; 200 already owns (100, 200].
    assert_eq!(w.view(300).range, Some(range(100, 300)));
    assert_eq!(w.view(200).range, Some(range(100, 200)));
    assert!(w.consistency().is_err());
    w.run_unchecked();
    w.assert_consistent();
}

#[test]
fn recovery_that_skips_the_successor_list_never_repairs() {
    let mut w = World::ring(&[100, 200, 300, 400, 500]);
    flaw_everywhere(&mut w, Flaw::RecoverySkipsSuccList);
    w.crash_detected(300);
    w.tick_for(secs(5));
    assert_eq!(w.view(200).succ, None);
    assert!(w.ring_check().is_err());
}

#[test]
fn ignoring_the_last_flag_names_a_peer_that_is_not_responsible() {
    let mut w = super::routing::branch();
    flaw_everywhere(&mut w, Flaw::IgnoreLastFlag);
    w.lookup(400, 150, 1);
    w.run();
    match w.outcome(400, 1) {
        Some(LookupOutcome::Found { peer, .. }) => {
            assert_eq!(peer, w.peer(300));
            assert!(!w.view(300).range.expect("in ring").contains(RingId(150)));
        }
        other => panic!("{other:?}"),
    }
}
