//! Selectors let one provider serve many requirers, each getting only its events.

mod common;

use std::sync::Arc;

use common::{eventually, runtime, Listener, Num, Numbers, Sink, WAIT};
use parking_lot::Mutex;
use selfman_core::Selector;

#[test]
fn channel_selector_routes_indications_and_requests() {
    let rt = runtime(2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = rt.create(move || Sink::new(s2.clone())).unwrap();
    rt.start_and_wait(&sink, WAIT).unwrap();
    let provided = sink.provided::<Numbers>().unwrap();

    // Four listeners; listener k only receives numbers with n % 4 == k, and only requests
    // below 100 pass from listener 0 to the sink.
    let mut logs = Vec::new();
    let mut listeners = Vec::new();
    for k in 0..4u64 {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let l = rt.create(move || Listener::new(g.clone())).unwrap();
        let mut sel = Selector::indications(move |n: &common::Num| n.0 % 4 == k);
        if k == 0 {
            sel = sel.and_requests(|n: &common::Num| n.0 < 100);
        }
        rt.connect_with(&provided, &l.required::<Numbers>().unwrap(), sel).unwrap();
        rt.start_and_wait(&l, WAIT).unwrap();
        logs.push(got);
        listeners.push(l);
    }
    sink.on_definition(|s| {
        for n in 0..40 {
            s.port.trigger(Num(n));
        }
    })
    .unwrap();
    eventually("40 routed", || logs.iter().map(|l| l.lock().len()).sum::<usize>() == 40);
    for (k, log) in logs.iter().enumerate() {
        let v = log.lock().clone();
        assert_eq!(v.len(), 10);
        assert!(v.iter().all(|n| n % 4 == k as u64), "listener {k} got {v:?}");
    }

    listeners[0]
        .on_definition(|l| {
            l.port.trigger(Num(5));
            l.port.trigger(Num(500)); // filtered out by the request selector
            l.port.trigger(Num(6));
        })
        .unwrap();
    eventually("requests", || seen.lock().len() == 2);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let got: Vec<u64> = seen.lock().iter().map(|(_, n)| *n).collect();
    assert_eq!(got, [5, 6]);
    rt.shutdown().unwrap();
}
