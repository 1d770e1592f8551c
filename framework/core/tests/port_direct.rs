//! Direct provided ports (`Setup::provide_direct`): requests are served inside the requirer's
//! trigger by a per-channel service, with no turn of the provider.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{eventually, runtime, Listener, Num, Numbers, WAIT};
use parking_lot::Mutex;
use selfman_core::{ComponentDefinition, Handled, LifecycleState, Provided, Required, Setup};

/// Serves `Numbers` directly: each channel's service records (service number, request) and
/// answers with the doubled number on the port.
struct Doubler {
    port: Provided<Numbers>,
    made: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<(usize, u64)>>>,
}

impl ComponentDefinition for Doubler {
    fn setup(&mut self, s: &mut Setup<Self>) {
        let (made, log) = (self.made.clone(), self.log.clone());
        s.provide_direct(
            |c| &mut c.port,
            move |port| {
                let me = made.fetch_add(1, Ordering::SeqCst);
                let (log, mut out) = (log.clone(), port.indicator());
                move |Num(n)| {
                    log.lock().push((me, n));
                    out.trigger(Num(n * 2));
                }
            },
        );
    }
}

/// Requires `Numbers`; on a kick, triggers `count` numbers from `base` and checks after each
/// trigger that the service has already seen it.
struct Client {
    out: Required<Numbers>,
    kick: Provided<Numbers>,
    base: u64,
    log: Arc<Mutex<Vec<(usize, u64)>>>,
    late: Arc<AtomicUsize>,
}

impl Client {
    fn on_kick(&mut self, Num(count): Num) -> Handled {
        for n in self.base..self.base + count {
            self.out.trigger(Num(n));
            if !self.log.lock().iter().any(|&(_, m)| m == n) {
                self.late.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

impl ComponentDefinition for Client {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.out, |_, _| Ok(()));
        s.provide(|c| &mut c.kick, Self::on_kick);
    }
}

#[test]
fn direct_requests_are_served_inside_the_trigger_by_one_service_per_channel() {
    let rt = runtime(2);
    let (made, log) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let late = Arc::new(AtomicUsize::new(0));
    let (m, l) = (made.clone(), log.clone());
    // The provider is never started: direct ports serve regardless of its lifecycle.
    let doubler = rt
        .create(move || Doubler { port: Provided::new(), made: m.clone(), log: l.clone() })
        .unwrap();
    let mut clients = Vec::new();
    for base in [1_000, 2_000] {
        let (l, la) = (log.clone(), late.clone());
        let c = rt
            .create(move || Client {
                out: Required::new(),
                kick: Provided::new(),
                base,
                log: l.clone(),
                late: la.clone(),
            })
            .unwrap();
        rt.connect(&doubler.provided::<Numbers>().unwrap(), &c.required().unwrap()).unwrap();
        rt.start_and_wait(&c, WAIT).unwrap();
        clients.push(c);
    }
    assert_eq!(made.load(Ordering::SeqCst), 2, "one service per connected channel");
    for c in &clients {
        c.provided::<Numbers>().unwrap().request(Num(100)).unwrap();
    }
    eventually("both clients' requests served", || log.lock().len() == 200);
    assert_eq!(late.load(Ordering::SeqCst), 0, "a request was not served inside its trigger");
    let log = log.lock().clone();
    for base in [1_000u64, 2_000] {
        let mine: Vec<_> = log.iter().filter(|(_, n)| (base..base + 100).contains(n)).collect();
        assert!(mine.windows(2).all(|w| w[0].1 < w[1].1), "FIFO per channel");
        assert!(mine.iter().all(|(s, _)| *s == mine[0].0), "one service serves one channel");
    }
    assert_ne!(
        log.iter().find(|(_, n)| *n == 1_000).unwrap().0,
        log.iter().find(|(_, n)| *n == 2_000).unwrap().0
    );
    assert_eq!(doubler.state(), LifecycleState::Passive);
    rt.shutdown().unwrap();
}

#[test]
fn direct_services_answer_through_the_port_and_injected_requests_wait_for_a_turn() {
    let rt = runtime(2);
    let (made, log) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let (m, l) = (made.clone(), log.clone());
    let doubler = rt
        .create(move || Doubler { port: Provided::new(), made: m.clone(), log: l.clone() })
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let listener = rt.create(move || Listener::new(s2.clone())).unwrap();
    rt.connect(&doubler.provided::<Numbers>().unwrap(), &listener.required().unwrap()).unwrap();
    rt.start_and_wait(&listener, WAIT).unwrap();

    // Injected from outside: queued like any request, served in the provider's turns, which
    // only run once it is started.
    doubler.provided::<Numbers>().unwrap().request(Num(21)).unwrap();
    assert_eq!(doubler.queued(), 1);
    assert!(log.lock().is_empty(), "served before the provider was started");
    rt.start_and_wait(&doubler, WAIT).unwrap();
    eventually("the injected request served", || log.lock().len() == 1);
    eventually("the answer delivered", || *seen.lock() == vec![42]);
    assert_eq!(made.load(Ordering::SeqCst), 2, "the channel's service and the injected one");

    // Once the provider is destroyed its channels are gone: nothing is served.
    rt.kill_and_wait(&doubler, WAIT).unwrap();
    assert_eq!(log.lock().len(), 1);
    rt.shutdown().unwrap();
}
