//! The multi-core pool's locality rules (`selfman_runtime::pool`) keep their promises of
//! fairness: a component woken into a worker's next slot runs next, but two components waking
//! each other through the slot cannot starve a third waiting on the same worker.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use common::{eventually, Num, Numbers, WAIT};
use selfman_core::{ComponentDefinition, Handled, Provided, ProvidedRef, Setup};
use selfman_runtime::Runtime;

/// Bounces a number to its peer until `stop`; on its first event it first wakes `third`.
struct Bouncer {
    port: Provided<Numbers>,
    peer: Arc<OnceLock<ProvidedRef<Numbers>>>,
    third: Option<ProvidedRef<Numbers>>,
    stop: Arc<AtomicBool>,
    bounces: Arc<AtomicU64>,
}

impl Bouncer {
    fn on_num(&mut self, n: Num) -> Handled {
        if let Some(t) = self.third.take() {
            // `third` takes this worker's next slot; the peer, woken right after, takes it
            // over and pushes `third` onto the deque behind the bouncing pair.
            t.request(Num(0))?;
        }
        self.bounces.fetch_add(1, Ordering::Relaxed);
        if !self.stop.load(Ordering::Relaxed) {
            if let Some(peer) = self.peer.get() {
                peer.request(Num(n.0 + 1))?;
            }
        }
        Ok(())
    }
}

impl ComponentDefinition for Bouncer {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num);
    }
}

/// Counts what it handles.
struct Counter {
    port: Provided<Numbers>,
}

impl ComponentDefinition for Counter {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, |_, _| Ok(()));
    }
}

#[test]
fn sched_pair_waking_each_other_does_not_starve_a_third() {
    // One worker: everything shares its slot and deque. Each bounce is a wake-up into the
    // slot, so without the slot's streak limit the pair would run forever and `third` never.
    let rt = Runtime::builder().workers(1).build();
    let stop = Arc::new(AtomicBool::new(false));
    let bounces = Arc::new(AtomicU64::new(0));
    let third = rt.create(|| Counter { port: Provided::new() }).unwrap();
    rt.start_and_wait(&third, WAIT).unwrap();
    let third_ref = third.provided::<Numbers>().unwrap();
    let (peer_a, peer_b) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
    let make = |peer: &Arc<OnceLock<ProvidedRef<Numbers>>>, t: Option<ProvidedRef<Numbers>>| {
        let (peer, stop, bounces) = (peer.clone(), stop.clone(), bounces.clone());
        rt.create(move || Bouncer {
            port: Provided::new(),
            peer: peer.clone(),
            third: t.clone(),
            stop: stop.clone(),
            bounces: bounces.clone(),
        })
        .unwrap()
    };
    let a = make(&peer_a, Some(third_ref));
    let b = make(&peer_b, None);
    peer_a.set(b.provided::<Numbers>().unwrap()).unwrap();
    peer_b.set(a.provided::<Numbers>().unwrap()).unwrap();
    rt.start_and_wait(&a, WAIT).unwrap();
    rt.start_and_wait(&b, WAIT).unwrap();
    a.provided::<Numbers>().unwrap().request(Num(0)).unwrap();
    eventually("the third component ran while the pair bounced", || third.handled() == 1);
    let bounced = bounces.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    assert!(bounced > 0, "the pair never bounced");
    rt.shutdown().unwrap();
}

#[test]
fn sched_woken_components_run_from_the_next_slot() {
    // A pair bouncing on one worker: every turn after the first comes from the next slot.
    let rt = Runtime::builder().workers(1).build();
    let stop = Arc::new(AtomicBool::new(false));
    let bounces = Arc::new(AtomicU64::new(0));
    let (peer_a, peer_b) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
    let make = |peer: &Arc<OnceLock<ProvidedRef<Numbers>>>| {
        let (peer, stop, bounces) = (peer.clone(), stop.clone(), bounces.clone());
        rt.create(move || Bouncer {
            port: Provided::new(),
            peer: peer.clone(),
            third: None,
            stop: stop.clone(),
            bounces: bounces.clone(),
        })
        .unwrap()
    };
    let (a, b) = (make(&peer_a), make(&peer_b));
    peer_a.set(b.provided::<Numbers>().unwrap()).unwrap();
    peer_b.set(a.provided::<Numbers>().unwrap()).unwrap();
    rt.start_and_wait(&a, WAIT).unwrap();
    rt.start_and_wait(&b, WAIT).unwrap();
    let before = rt.scheduler_stats();
    a.provided::<Numbers>().unwrap().request(Num(0)).unwrap();
    eventually("10,000 bounces", || bounces.load(Ordering::Relaxed) >= 10_000);
    stop.store(true, Ordering::Relaxed);
    let after = rt.scheduler_stats();
    let (turns, slot) = (after.turns - before.turns, after.slot_turns - before.slot_turns);
    assert!(turns >= 10_000, "{turns} turns for 10,000 bounces");
    // Only the first turn (from the injector) and a stray one while stopping may not.
    assert!(slot + 2 >= turns, "{slot} of {turns} turns came from the next slot");
    rt.shutdown().unwrap();
}
