//! Introspection: the snapshot shows the tree, ports, channels, states and counters, as JSON.

mod common;

use std::sync::Arc;

use common::{eventually, runtime, Listener, Num, Numbers, Sink, WAIT};
use parking_lot::Mutex;
use selfman_core::{ComponentDefinition, Direction, Handled, LifecycleState, Provided, Setup};

#[derive(Default)]
struct Parent;
impl ComponentDefinition for Parent {
    fn setup(&mut self, _: &mut Setup<Self>) {}
}

#[derive(Default)]
struct Panicky {
    port: Provided<Numbers>,
}
impl Panicky {
    fn on_num(&mut self, _: Num) -> Handled {
        panic!("introspect me")
    }
}
impl ComponentDefinition for Panicky {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num).named("in");
    }
}

#[test]
fn reconfig_snapshot_describes_the_running_system() {
    let rt = runtime(2);
    let parent = rt.create(Parent::default).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = rt.create_child(&parent, move || Sink::new(s2.clone())).unwrap();
    let l = Arc::new(Mutex::new(Vec::new()));
    let listener = rt.create_child(&parent, move || Listener::new(l.clone())).unwrap();
    let ch = rt.link::<Numbers>(&sink, &listener).unwrap();
    let bad = rt.create(Panicky::default).unwrap();
    rt.start_and_wait(&parent, WAIT).unwrap();
    rt.start_and_wait(&bad, WAIT).unwrap();
    bad.provided::<Numbers>().unwrap().request(Num(1)).unwrap();
    // The root's default policy stops the failed component.
    bad.await_state(LifecycleState::Passive, WAIT).unwrap();
    sink.provided::<Numbers>().unwrap().request(Num(5)).unwrap();
    eventually("handled", || seen.lock().len() == 1);
    rt.replace_and_wait(&sink, || Sink::new(Arc::new(Mutex::new(Vec::new()))), WAIT).unwrap();

    let snap = rt.snapshot().unwrap();
    let root = &snap.components[0];
    assert_eq!(root.parent, None);
    assert_eq!(root.state, LifecycleState::Active);
    assert!(root.children.contains(&parent.id()) && root.children.contains(&bad.id()));

    let p = snap.component(parent.id()).unwrap();
    assert_eq!(p.children, vec![sink.id(), listener.id()]);
    assert!(p.type_name.ends_with("Parent"));

    let s = snap.component(sink.id()).unwrap();
    assert_eq!(s.parent, Some(parent.id()));
    assert_eq!(s.state, LifecycleState::Active);
    assert_eq!(s.handled, 1);
    assert_eq!(s.swaps, 1);
    assert_eq!(s.ports.len(), 1);
    assert_eq!(s.ports[0].direction, Direction::Provided);
    assert_eq!(s.ports[0].channels, vec![ch.id()]);

    let b = snap.component(bad.id()).unwrap();
    assert_eq!(b.state, LifecycleState::Passive);
    assert_eq!(b.faults, 1);
    assert_eq!(b.ports[0].name, Some("in"));
    assert!(b.last_fault.as_ref().unwrap().error.contains("introspect me"));

    assert!(snap.channels.iter().any(|c| c.id == ch.id()
        && c.provider == sink.id()
        && c.requirer == listener.id()
        && c.port.ends_with("Numbers")));

    // Plain data: it serialises to JSON.
    let json = serde_json::to_value(&snap).unwrap();
    let comps = json["components"].as_array().unwrap();
    assert_eq!(comps.len(), snap.components.len());
    let bj = comps.iter().find(|c| c["id"] == bad.id().0).unwrap();
    assert_eq!(bj["state"], "Passive");
    assert_eq!(bj["last_fault"]["severity"], "Recoverable");
    assert!(json["channels"].as_array().unwrap().iter().any(|c| c["id"] == ch.id()));
    rt.shutdown().unwrap();
}
