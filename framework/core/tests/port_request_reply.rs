//! Request/response: a provider answers only the channel a request came over, now or later.

mod common;

use std::sync::Arc;

use common::{eventually, runtime, Listener, Num, Numbers, WAIT};
use parking_lot::Mutex;
use selfman_core::{ComponentDefinition, Error, Handled, Origin, Provided, Setup};

/// Doubles each request back to its sender; every third one is answered later (deferred).
#[derive(Default)]
struct Doubler {
    port: Provided<Numbers>,
    deferred: Vec<(Origin, u64)>,
    injected_reply: Option<Error>,
}

impl Doubler {
    fn on_num(&mut self, n: Num) -> Handled {
        match self.port.origin() {
            None => {
                // Injected from outside: there is nobody to reply to.
                self.injected_reply = self.port.reply(Num(0)).err();
            }
            Some(origin) if n.0 % 3 == 0 => {
                self.deferred.push((origin, n.0));
                if self.deferred.len() == 2 {
                    for (o, v) in std::mem::take(&mut self.deferred) {
                        self.port.trigger_to(o, Num(v * 2))?;
                    }
                }
            }
            Some(_) => self.port.reply(Num(n.0 * 2))?,
        }
        Ok(())
    }
}

impl ComponentDefinition for Doubler {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num);
    }
}

#[test]
fn port_reply_goes_to_the_origin_only() {
    let rt = runtime(2);
    let doubler = rt.create(Doubler::default).unwrap();
    let a_seen = Arc::new(Mutex::new(Vec::new()));
    let b_seen = Arc::new(Mutex::new(Vec::new()));
    let (a2, b2) = (a_seen.clone(), b_seen.clone());
    let a = rt.create(move || Listener::new(a2.clone())).unwrap();
    let b = rt.create(move || Listener::new(b2.clone())).unwrap();
    rt.link::<Numbers>(&doubler, &a).unwrap();
    rt.link::<Numbers>(&doubler, &b).unwrap();
    for c in [doubler.untyped(), &a, &b] {
        rt.start_and_wait(c, WAIT).unwrap();
    }
    // Drive requests through the listeners' required ports from inside their handlers would
    // need another component; instead trigger via on_definition (the port is bound).
    a.on_definition(|l| {
        l.port.trigger(Num(1));
        l.port.trigger(Num(3));
    })
    .unwrap();
    b.on_definition(|l| {
        l.port.trigger(Num(2));
        l.port.trigger(Num(6));
    })
    .unwrap();
    eventually("all replies", || a_seen.lock().len() == 2 && b_seen.lock().len() == 2);
    let mut av = a_seen.lock().clone();
    let mut bv = b_seen.lock().clone();
    av.sort_unstable();
    bv.sort_unstable();
    assert_eq!(av, [2, 6]);
    assert_eq!(bv, [4, 12]);

    doubler.provided::<Numbers>().unwrap().request(Num(5)).unwrap();
    eventually("injected request handled", || doubler.handled() == 5);
    let err = doubler.on_definition(|d| d.injected_reply.clone()).unwrap();
    assert_eq!(err, Some(Error::Unbound));
    rt.shutdown().unwrap();
}
