//! Hot swap: replacing a running component's definition loses, duplicates and reorders nothing.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Num, Numbers, WAIT};
use parking_lot::Mutex;
use selfman_core::{
    ComponentDefinition, Error, Handled, LifecycleState, Provided, Required, Setup,
};
use selfman_runtime::Runtime;

/// Forwards every request on `input` to `output`, counting them. Two implementations with the
/// same ports: `RelayA` and `RelayB`.
#[derive(Default)]
struct RelayA {
    input: Provided<Numbers>,
    output: Required<Numbers>,
    forwarded: u64,
}

impl RelayA {
    fn on_in(&mut self, n: Num) -> Handled {
        self.output.trigger(n);
        self.forwarded += 1;
        Ok(())
    }
}

impl ComponentDefinition for RelayA {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.input, Self::on_in);
        s.require(|c| &mut c.output, |_, _| Ok(()));
    }
}

/// A different implementation of the same ports (keeps its count in another shape).
#[derive(Default)]
struct RelayB {
    output: Required<Numbers>,
    input: Provided<Numbers>,
    count: Vec<u64>,
}

impl RelayB {
    fn on_in(&mut self, n: Num) -> Handled {
        self.output.trigger(n);
        match self.count.first_mut() {
            Some(c) => *c += 1,
            None => self.count.push(1),
        }
        Ok(())
    }
}

impl ComponentDefinition for RelayB {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.output, |_, _| Ok(()));
        s.provide(|c| &mut c.input, Self::on_in);
    }
}

/// Checks, per producer, that sequence numbers arrive exactly once and in order.
#[derive(Default)]
struct Checker {
    port: Provided<Numbers>,
    next: HashMap<u64, u64>,
    errors: Arc<Mutex<Vec<String>>>,
    total: Arc<AtomicU64>,
}

impl Checker {
    fn on_num(&mut self, n: Num) -> Handled {
        let (producer, seq) = (n.0 >> 32, n.0 & 0xffff_ffff);
        let expected = self.next.entry(producer).or_insert(0);
        if seq != *expected {
            let kind = if seq < *expected { "duplicate/reordered" } else { "lost" };
            self.errors
                .lock()
                .push(format!("producer {producer}: got {seq}, expected {expected} ({kind})"));
        }
        *expected = seq + 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl ComponentDefinition for Checker {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num);
    }
}

/// Streams `count` numbered events, a burst per turn.
struct Producer {
    id: u64,
    out: Required<Numbers>,
    kick: Provided<Numbers>,
    sent: u64,
    count: u64,
}

impl Producer {
    fn on_kick(&mut self, _: Num) -> Handled {
        for _ in 0..(self.count - self.sent).min(64) {
            self.out.trigger(Num(self.id << 32 | self.sent));
            self.sent += 1;
        }
        if self.sent < self.count {
            self.kick.share()?.request(Num(0))?;
        }
        Ok(())
    }
}

impl ComponentDefinition for Producer {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.out, |_, _| Ok(()));
        s.provide(|c| &mut c.kick, Self::on_kick);
    }
}

fn stress(workers: usize, producers: u64, per_producer: u64, swaps: usize) {
    let rt = Runtime::builder().workers(workers).events_per_run(32).build();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let total = Arc::new(AtomicU64::new(0));
    let (e2, t2) = (errors.clone(), total.clone());
    let checker = rt
        .create(move || Checker { errors: e2.clone(), total: t2.clone(), ..Checker::default() })
        .unwrap();
    let relay = rt.create(RelayA::default).unwrap();
    rt.connect(&checker.provided::<Numbers>().unwrap(), &relay.required::<Numbers>().unwrap())
        .unwrap();
    rt.start_and_wait(&checker, WAIT).unwrap();
    rt.start_and_wait(&relay, WAIT).unwrap();
    let mut ps = Vec::new();
    for id in 0..producers {
        let p = rt
            .create(move || Producer {
                id,
                out: Required::new(),
                kick: Provided::new(),
                sent: 0,
                count: per_producer,
            })
            .unwrap();
        rt.connect(&relay.provided::<Numbers>().unwrap(), &p.required::<Numbers>().unwrap())
            .unwrap();
        rt.start_and_wait(&p, WAIT).unwrap();
        ps.push(p);
    }
    for p in &ps {
        p.provided::<Numbers>().unwrap().request(Num(0)).unwrap();
    }
    for i in 0..swaps {
        let r = if i % 2 == 0 {
            rt.replace_and_wait(&relay, RelayB::default, WAIT)
        } else {
            rt.replace_and_wait(&relay, RelayA::default, WAIT)
        };
        r.unwrap();
    }
    let expected = producers * per_producer;
    eventually("all events through", || total.load(Ordering::SeqCst) >= expected);
    std::thread::sleep(Duration::from_millis(20));
    // One guard at a time: holding two on one mutex in a failure message would deadlock.
    let errs = errors.lock().clone();
    assert!(errs.is_empty(), "{} violations, first: {:?}", errs.len(), errs.first());
    assert_eq!(total.load(Ordering::SeqCst), expected, "events duplicated");
    assert_eq!(relay.swaps(), swaps as u64);
    assert_eq!(relay.state(), LifecycleState::Active);
    rt.shutdown().unwrap();
}

#[test]
fn reconfig_swap_stress_1000_swaps_8_producers_two_workers() {
    stress(2, 8, 20_000, 1_000);
}

#[test]
fn reconfig_swap_stress_one_worker() {
    stress(1, 8, 5_000, 300);
}

#[test]
fn reconfig_swap_stress_four_workers() {
    stress(4, 8, 10_000, 500);
}

#[test]
fn reconfig_state_transfer_and_failed_swaps() {
    let rt = Runtime::builder().workers(2).build();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = rt.create(move || common::Sink::new(s2.clone())).unwrap();
    let relay = rt.create(RelayA::default).unwrap();
    rt.connect(&sink.provided::<Numbers>().unwrap(), &relay.required::<Numbers>().unwrap())
        .unwrap();
    rt.start_and_wait(&sink, WAIT).unwrap();
    rt.start_and_wait(&relay, WAIT).unwrap();
    let input = relay.provided::<Numbers>().unwrap();
    for n in 0..100 {
        input.request(Num(n)).unwrap();
    }
    eventually("forwarded", || seen.lock().len() == 100);

    // Typed state transfer: RelayA's count moves into RelayB.
    rt.replace_with_state(&relay, RelayB::default, |old: &mut RelayA, new: &mut RelayB| {
        new.count = vec![old.forwarded];
    })
    .unwrap()
    .wait(WAIT)
    .unwrap();
    for n in 100..150 {
        input.request(Num(n)).unwrap();
    }
    eventually("forwarded by B", || seen.lock().len() == 150);
    assert_eq!(relay.type_name(), std::any::type_name::<RelayB>());
    let as_b = relay.typed::<RelayB>();
    assert_eq!(as_b.on_definition(|b| b.count.clone()).unwrap(), [150]);
    assert!(matches!(relay.on_definition(|_| ()), Err(Error::WrongDefinition { .. })));

    // A factory that panics: the swap fails, the old instance keeps serving.
    let err = rt.replace_and_wait::<RelayA, _>(&relay, || panic!("bad build"), WAIT).unwrap_err();
    assert_eq!(err, Error::FactoryPanicked("bad build".into()));
    input.request(Num(150)).unwrap();
    eventually("still forwarding", || seen.lock().len() == 151);
    assert_eq!(relay.type_name(), std::any::type_name::<RelayB>());

    // A replacement that lacks one of the ports is refused.
    let err = rt
        .replace_and_wait(&relay, || common::Sink::new(Arc::new(Mutex::new(Vec::new()))), WAIT)
        .unwrap_err();
    assert!(matches!(err, Error::IncompatiblePorts { .. }), "{err:?}");
    assert!(err.to_string().contains("required"), "{err}");

    // State transfer from the wrong type is refused too.
    let err = rt
        .replace_with_state(&relay, RelayA::default, |_: &mut RelayA, _: &mut RelayA| {})
        .unwrap()
        .wait(WAIT)
        .unwrap_err();
    assert!(matches!(err, Error::WrongDefinition { .. }));
    assert_eq!(relay.swaps(), 1);
    rt.shutdown().unwrap();
}

/// A deliberately broken relay: loses one event and repeats another.
#[derive(Default)]
struct BrokenRelay {
    input: Provided<Numbers>,
    output: Required<Numbers>,
    seen: u64,
}

impl BrokenRelay {
    fn on_in(&mut self, n: Num) -> Handled {
        self.seen += 1;
        match self.seen {
            10 => {} // lost
            20 => {
                // duplicated
                self.output.trigger(n.clone());
                self.output.trigger(n);
            }
            _ => {
                self.output.trigger(n);
            }
        }
        Ok(())
    }
}

impl ComponentDefinition for BrokenRelay {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.input, Self::on_in);
        s.require(|c| &mut c.output, |_, _| Ok(()));
    }
}

#[test]
fn reconfig_checker_catches_a_broken_relay() {
    let rt = Runtime::builder().workers(2).build();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let total = Arc::new(AtomicU64::new(0));
    let (e2, t2) = (errors.clone(), total.clone());
    let checker = rt
        .create(move || Checker { errors: e2.clone(), total: t2.clone(), ..Checker::default() })
        .unwrap();
    let relay = rt.create(RelayA::default).unwrap();
    rt.connect(&checker.provided::<Numbers>().unwrap(), &relay.required::<Numbers>().unwrap())
        .unwrap();
    rt.start_and_wait(&checker, WAIT).unwrap();
    rt.start_and_wait(&relay, WAIT).unwrap();
    rt.replace_and_wait(&relay, BrokenRelay::default, WAIT).unwrap();
    let input = relay.provided::<Numbers>().unwrap();
    for seq in 0..100 {
        input.request(Num(seq)).unwrap();
    }
    eventually("all through", || total.load(Ordering::SeqCst) == 100);
    let errs = errors.lock().clone();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].contains("lost") && errs[1].contains("duplicate"), "{errs:?}");
    rt.shutdown().unwrap();
}

/// Fails on 13.
#[derive(Default)]
struct FragileRelay {
    input: Provided<Numbers>,
    output: Required<Numbers>,
}

impl FragileRelay {
    fn on_in(&mut self, n: Num) -> Handled {
        assert_ne!(n.0, 13, "fragile relay cannot take 13");
        self.output.trigger(n);
        Ok(())
    }
}

impl ComponentDefinition for FragileRelay {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.input, Self::on_in);
        s.require(|c| &mut c.output, |_, _| Ok(()));
    }
}

#[test]
fn reconfig_swap_and_rewire_a_faulty_component() {
    let rt = Runtime::builder().workers(2).build();
    // Faulty components are held (not stopped) so that an operator can act on them.
    rt.set_root_policy(selfman_core::SupervisorPolicy::always(selfman_core::Directive::Hold))
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = rt.create(move || common::Sink::new(s2.clone())).unwrap();
    let relay = rt.create(FragileRelay::default).unwrap();
    let first = rt.link::<Numbers>(&sink, &relay).unwrap();
    rt.start_and_wait(&sink, WAIT).unwrap();
    rt.start_and_wait(&relay, WAIT).unwrap();
    let input = relay.provided::<Numbers>().unwrap();
    for n in [1, 13, 2, 3] {
        input.request(Num(n)).unwrap();
    }
    relay.await_state(LifecycleState::Faulty, WAIT).unwrap();
    assert_eq!(relay.queued(), 2, "events after the failure wait");

    // Rewire the faulty component: disconnect its output and connect it to another sink.
    let seen2 = Arc::new(Mutex::new(Vec::new()));
    let s3 = seen2.clone();
    let other = rt.create(move || common::Sink::new(s3.clone())).unwrap();
    rt.start_and_wait(&other, WAIT).unwrap();
    first.disconnect().unwrap();
    rt.link::<Numbers>(&other, &relay).unwrap();

    // Replace it with a sturdier implementation: it resumes, the queued events go to the new sink.
    rt.replace_and_wait(&relay, RelayA::default, WAIT).unwrap();
    assert_eq!(relay.state(), LifecycleState::Active);
    eventually("queued events forwarded", || seen2.lock().len() == 2);
    let got: Vec<u64> = seen2.lock().iter().map(|(_, n)| *n).collect();
    assert_eq!(got, [2, 3]);
    let before: Vec<u64> = seen.lock().iter().map(|(_, n)| *n).collect();
    assert_eq!(before, [1]);
    rt.shutdown().unwrap();
}

mod versions {
    //! Two versions of a counter; v2 renames a field and adds one.
    use super::*;

    #[derive(Default)]
    pub(super) struct CounterV1 {
        pub(super) input: Provided<Numbers>,
        pub(super) output: Required<Numbers>,
        pub(super) count: u64,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    pub(super) struct StateV1 {
        pub(super) count: u64,
    }

    impl CounterV1 {
        fn on_in(&mut self, n: Num) -> Handled {
            self.count += 1;
            self.output.trigger(n);
            Ok(())
        }
    }

    impl ComponentDefinition for CounterV1 {
        fn setup(&mut self, s: &mut Setup<Self>) {
            s.provide(|c| &mut c.input, Self::on_in);
            s.require(|c| &mut c.output, |_, _| Ok(()));
        }
    }

    impl selfman_core::Migrate for CounterV1 {
        type State = StateV1;
        fn save(&self) -> StateV1 {
            StateV1 { count: self.count }
        }
        fn restore(&mut self, s: StateV1) {
            self.count = s.count;
        }
    }

    #[derive(Default)]
    pub(super) struct CounterV2 {
        pub(super) input: Provided<Numbers>,
        pub(super) output: Required<Numbers>,
        pub(super) handled: u64,
        pub(super) largest: u64,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    pub(super) struct StateV2 {
        #[serde(alias = "count")]
        pub(super) handled: u64,
        #[serde(default)]
        pub(super) largest: u64,
    }

    impl CounterV2 {
        fn on_in(&mut self, n: Num) -> Handled {
            self.handled += 1;
            self.largest = self.largest.max(n.0);
            self.output.trigger(n);
            Ok(())
        }
    }

    impl ComponentDefinition for CounterV2 {
        fn setup(&mut self, s: &mut Setup<Self>) {
            s.provide(|c| &mut c.input, Self::on_in);
            s.require(|c| &mut c.output, |_, _| Ok(()));
        }
    }

    impl selfman_core::Migrate for CounterV2 {
        type State = StateV2;
        fn save(&self) -> StateV2 {
            StateV2 { handled: self.handled, largest: self.largest }
        }
        fn restore(&mut self, s: StateV2) {
            self.handled = s.handled;
            self.largest = s.largest;
        }
    }

    /// A version whose state cannot be read from v1's.
    #[derive(Default)]
    pub(super) struct Incompatible {
        pub(super) input: Provided<Numbers>,
        pub(super) output: Required<Numbers>,
    }

    impl ComponentDefinition for Incompatible {
        fn setup(&mut self, s: &mut Setup<Self>) {
            s.provide(|c| &mut c.input, |_, _| Ok(()));
            s.require(|c| &mut c.output, |_, _| Ok(()));
        }
    }

    impl selfman_core::Migrate for Incompatible {
        type State = Vec<String>;
        fn save(&self) -> Vec<String> {
            Vec::new()
        }
        fn restore(&mut self, _: Vec<String>) {}
    }
}

#[test]
fn reconfig_serde_migration_between_versions() {
    use versions::{CounterV1, CounterV2, Incompatible};
    let rt = Runtime::builder().workers(2).build();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = rt.create(move || common::Sink::new(s2.clone())).unwrap();
    let counter = rt.create(CounterV1::default).unwrap();
    rt.link::<Numbers>(&sink, &counter).unwrap();
    rt.start_and_wait(&sink, WAIT).unwrap();
    rt.start_and_wait(&counter, WAIT).unwrap();
    let input = counter.provided::<Numbers>().unwrap();
    for n in [5, 9, 2] {
        input.request(Num(n)).unwrap();
    }
    eventually("v1 counted", || seen.lock().len() == 3);

    // v1 → incompatible state: refused, v1 keeps running with its state.
    let err =
        rt.replace_migrating(&counter, Incompatible::default).unwrap().wait(WAIT).unwrap_err();
    assert!(matches!(err, Error::Migration { .. }), "{err:?}");
    assert_eq!(counter.on_definition(|c| c.count).unwrap(), 3);

    // v1 → v2: `count` becomes `handled`, `largest` starts from its default.
    rt.replace_migrating(&counter, CounterV2::default).unwrap().wait(WAIT).unwrap();
    input.request(Num(7)).unwrap();
    eventually("v2 counted", || seen.lock().len() == 4);
    let v2 = counter.typed::<CounterV2>();
    assert_eq!(v2.on_definition(|c| (c.handled, c.largest)).unwrap(), (4, 7));
    rt.shutdown().unwrap();
}

/// Four ports, two of each direction, told apart by name: requests on `a` go out on `x`,
/// requests on `b` on `y`.
#[derive(Default)]
struct Hub {
    a: Provided<Numbers>,
    b: Provided<Numbers>,
    x: Required<Numbers>,
    y: Required<Numbers>,
}

impl Hub {
    fn on_a(&mut self, n: Num) -> Handled {
        self.x.trigger(n);
        Ok(())
    }
    fn on_b(&mut self, n: Num) -> Handled {
        self.y.trigger(n);
        Ok(())
    }
}

impl ComponentDefinition for Hub {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.a, Self::on_a).named("a");
        s.provide(|c| &mut c.b, Self::on_b).named("b");
        s.require(|c| &mut c.x, |_, _| Ok(())).named("x");
        s.require(|c| &mut c.y, |_, _| Ok(())).named("y");
    }
}

/// The same ports declared in another order, adding 1000 to what it forwards.
#[derive(Default)]
struct HubV2 {
    y: Required<Numbers>,
    b: Provided<Numbers>,
    x: Required<Numbers>,
    a: Provided<Numbers>,
}

impl HubV2 {
    fn on_a(&mut self, n: Num) -> Handled {
        self.x.trigger(Num(n.0 + 1000));
        Ok(())
    }
    fn on_b(&mut self, n: Num) -> Handled {
        self.y.trigger(Num(n.0 + 1000));
        Ok(())
    }
}

impl ComponentDefinition for HubV2 {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.y, |_, _| Ok(())).named("y");
        s.provide(|c| &mut c.b, Self::on_b).named("b");
        s.require(|c| &mut c.x, |_, _| Ok(())).named("x");
        s.provide(|c| &mut c.a, Self::on_a).named("a");
    }
}

#[test]
fn reconfig_swap_component_with_several_ports_of_one_type() {
    let rt = Runtime::builder().workers(2).build();
    let hub = rt.create(Hub::default).unwrap();
    let (xs, ys) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (x2, y2) = (xs.clone(), ys.clone());
    let sx = rt.create(move || common::Sink::new(x2.clone())).unwrap();
    let sy = rt.create(move || common::Sink::new(y2.clone())).unwrap();
    rt.connect(&sx.provided::<Numbers>().unwrap(), &hub.required_named::<Numbers>("x").unwrap())
        .unwrap();
    rt.connect(&sy.provided::<Numbers>().unwrap(), &hub.required_named::<Numbers>("y").unwrap())
        .unwrap();
    for c in [sx.untyped(), sy.untyped(), hub.untyped()] {
        rt.start_and_wait(c, WAIT).unwrap();
    }
    let a = hub.provided_named::<Numbers>("a").unwrap();
    let b = hub.provided_named::<Numbers>("b").unwrap();
    a.request(Num(1)).unwrap();
    b.request(Num(2)).unwrap();
    // Let v1 handle these first (a swap requested earlier would overtake queued events: they
    // are then handled by the new instance, in order).
    eventually("v1 forwarded", || xs.lock().len() == 1 && ys.lock().len() == 1);
    rt.replace_and_wait(&hub, HubV2::default, WAIT).unwrap();
    a.request(Num(3)).unwrap();
    b.request(Num(4)).unwrap();
    eventually("all forwarded", || xs.lock().len() == 2 && ys.lock().len() == 2);
    let x: Vec<u64> = xs.lock().iter().map(|(_, n)| *n).collect();
    let y: Vec<u64> = ys.lock().iter().map(|(_, n)| *n).collect();
    assert_eq!(x, [1, 1003], "port a still feeds x after the swap");
    assert_eq!(y, [2, 1004], "port b still feeds y after the swap");
    assert_eq!(hub.ports().len(), 4, "the new definition adopted the four ports, adding none");
    rt.shutdown().unwrap();
}
