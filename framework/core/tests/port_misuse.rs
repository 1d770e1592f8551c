//! Misuse of ports and refs returns clear errors and never disturbs other components.

mod common;

use std::sync::Arc;

use common::{runtime, Listener, Num, Numbers, Sink, WAIT};
use parking_lot::Mutex;
use selfman_core::{Error, Provided, Required, Timer};

#[test]
fn port_misuse_returns_errors() {
    let rt = runtime(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = rt.create(move || Sink::new(s2.clone())).unwrap();
    let l = Arc::new(Mutex::new(Vec::new()));
    let listener = rt.create(move || Listener::new(l.clone())).unwrap();

    // Ports a component does not have.
    assert!(matches!(
        sink.required::<Numbers>(),
        Err(Error::NoSuchPort { direction: "required", .. })
    ));
    assert!(matches!(sink.provided::<Timer>(), Err(Error::NoSuchPort { .. })));
    let msg = sink.provided::<Timer>().unwrap_err().to_string();
    assert!(msg.contains("no provided port") && msg.contains("Timer"), "{msg}");

    // Unbound handles: triggering is a documented no-op, sharing an error.
    let mut p = Provided::<Numbers>::new();
    assert_eq!(p.trigger(Num(1)), 0);
    assert!(matches!(p.share(), Err(Error::Unbound)));
    let mut r = Required::<Numbers>::new();
    assert_eq!(r.trigger(Num(1)), 0);
    assert!(matches!(r.share(), Err(Error::Unbound)));

    // Destroyed components refuse events and channels.
    let pref = sink.provided::<Numbers>().unwrap();
    let rref = listener.required::<Numbers>().unwrap();
    rt.kill_and_wait(&sink, WAIT).unwrap();
    assert_eq!(pref.request(Num(7)), Err(Error::Destroyed(sink.id())));
    assert!(matches!(rt.connect(&pref, &rref), Err(Error::Destroyed(id)) if id == sink.id()));
    assert!(matches!(rt.kill(&sink), Err(Error::Destroyed(_))));
    assert!(matches!(rt.start(&sink), Err(Error::Destroyed(_))));
    assert!(matches!(sink.on_definition(|_| ()), Err(Error::Destroyed(_))));
    assert!(seen.lock().is_empty());

    // The other component is unaffected.
    rt.start_and_wait(&listener, WAIT).unwrap();
    rref.indicate(Num(3)).unwrap();
    common::eventually("listener still works", || listener.handled() == 1);
    rt.shutdown().unwrap();
}
