//! Handler failures: benign ones are skipped, recoverable ones and panics make the component
//! faulty (its events stay queued; the root's default policy then stops it), unrecoverable ones
//! destroy it; others are never disturbed.

mod common;

use std::sync::Arc;

use common::{eventually, runtime, Num, Numbers, Sink, WAIT};
use parking_lot::Mutex;
use selfman_core::{
    ComponentDefinition, Handled, HandlerError, LifecycleState, Provided, Setup, Severity,
};

#[derive(Debug, thiserror::Error)]
#[error("bad number {0}")]
struct Bad(u64);

/// Fails on specific numbers: 1 benign, 2 recoverable, 3 panic, 4 unrecoverable.
#[derive(Default)]
struct Fragile {
    port: Provided<Numbers>,
    handled: Vec<u64>,
}

impl Fragile {
    fn on_num(&mut self, n: Num) -> Handled {
        match n.0 {
            1 => return Err(HandlerError::benign(Bad(1))),
            2 => Err(Bad(2))?, // `?` makes any error recoverable
            3 => panic!("boom on 3"),
            4 => return Err(HandlerError::unrecoverable(Bad(4))),
            _ => {}
        }
        self.handled.push(n.0);
        Ok(())
    }
}

impl ComponentDefinition for Fragile {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num);
    }
}

fn started(rt: &selfman_runtime::Runtime) -> selfman_core::Component<Fragile> {
    let c = rt.create(Fragile::default).unwrap();
    rt.start_and_wait(&c, WAIT).unwrap();
    c
}

#[test]
fn lifecycle_fault_severities() {
    let rt = runtime(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let bystander = rt.create(move || Sink::new(s2.clone())).unwrap();
    rt.start_and_wait(&bystander, WAIT).unwrap();

    // Benign: logged and skipped.
    let c = started(&rt);
    let p = c.provided::<Numbers>().unwrap();
    for n in [0, 1, 5] {
        p.request(Num(n)).unwrap();
    }
    eventually("benign handled", || c.handled() == 3);
    assert_eq!(c.state(), LifecycleState::Active);
    assert_eq!(c.on_definition(|f| f.handled.clone()).unwrap(), [0, 5]);
    assert!(c.last_fault().is_none());

    // Recoverable and panic: faulty, later events stay queued, report describes the failure.
    for (bad, text) in [(2, "bad number 2"), (3, "panic: boom on 3")] {
        let c = started(&rt);
        let p = c.provided::<Numbers>().unwrap();
        for n in [0, bad, 7, 8] {
            p.request(Num(n)).unwrap();
        }
        // Faulty, then stopped by the root's default policy (log and stop).
        c.await_state(LifecycleState::Passive, WAIT).unwrap();
        let f = c.last_fault().expect("fault recorded");
        assert_eq!(f.severity, Severity::Recoverable);
        assert_eq!(f.error, text);
        assert!(f.place.contains("provided port") && f.place.contains("Numbers"), "{}", f.place);
        assert!(f.event.contains("Num"), "{}", f.event);
        assert_eq!(c.handled(), 2);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(c.queued(), 2, "events after the failure stay queued");
        assert_eq!(c.on_definition(|f| f.handled.clone()).unwrap(), [0]);
    }

    // Unrecoverable: destroyed.
    let c = started(&rt);
    c.provided::<Numbers>().unwrap().request(Num(4)).unwrap();
    c.await_state(LifecycleState::Destroyed, WAIT).unwrap();
    assert_eq!(c.last_fault().unwrap().severity, Severity::Unrecoverable);

    // The bystander kept working throughout.
    bystander.provided::<Numbers>().unwrap().request(Num(42)).unwrap();
    eventually("bystander works", || seen.lock().len() == 1);
    rt.shutdown().unwrap();
}

#[test]
fn lifecycle_panics_under_load_do_not_disturb_others() {
    let rt = runtime(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let bystander = rt.create(move || Sink::new(s2.clone())).unwrap();
    rt.start_and_wait(&bystander, WAIT).unwrap();
    let bp = bystander.provided::<Numbers>().unwrap();
    let mut fragile = Vec::new();
    for _ in 0..50 {
        let c = started(&rt);
        let p = c.provided::<Numbers>().unwrap();
        for n in [0, 3, 0] {
            p.request(Num(n)).unwrap();
        }
        bp.request(Num(0)).unwrap();
        fragile.push(c);
    }
    for c in &fragile {
        c.await_state(LifecycleState::Passive, WAIT).unwrap();
        assert!(c.last_fault().is_some());
    }
    eventually("bystander handled all", || seen.lock().len() == 50);
    assert_eq!(bystander.state(), LifecycleState::Active);
    // A failed (stopped) component can be started again — its queued event is then handled —
    // or killed.
    rt.start_and_wait(&fragile[0], WAIT).unwrap();
    eventually("queued event handled after restart", || fragile[0].handled() == 3);
    rt.kill_and_wait(&fragile[1], WAIT).unwrap();
    rt.shutdown().unwrap();
}
