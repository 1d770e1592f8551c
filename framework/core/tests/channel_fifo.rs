//! FIFO per channel under load: many producers, one consumer, several workers.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{eventually, Num, Numbers, WAIT};
use parking_lot::Mutex;
use selfman_core::{ComponentDefinition, Handled, Provided, Required, Setup};
use selfman_runtime::Runtime;

/// Checks that numbers from each origin channel arrive strictly in sequence.
#[derive(Default)]
struct Checker {
    port: Provided<Numbers>,
    next: std::collections::HashMap<u64, u64>,
    errors: Arc<Mutex<Vec<String>>>,
    total: Arc<AtomicU64>,
}

impl Checker {
    fn on_num(&mut self, n: Num) -> Handled {
        let origin = self.port.origin().expect("came over a channel").channel_id();
        let expect = self.next.entry(origin).or_insert(0);
        if n.0 != *expect {
            self.errors.lock().push(format!("channel {origin}: expected {expect}, got {}", n.0));
        }
        *expect = n.0 + 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl ComponentDefinition for Checker {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num);
    }
}

/// Sends `count` numbered events, in bursts, from its own handler runs.
struct Producer {
    port: Required<Numbers>,
    kick: Provided<Numbers>,
    sent: u64,
    count: u64,
}

impl Producer {
    fn on_kick(&mut self, _: Num) -> Handled {
        let burst = (self.count - self.sent).min(1_000);
        for _ in 0..burst {
            self.port.trigger(Num(self.sent));
            self.sent += 1;
        }
        if self.sent < self.count {
            self.kick.share()?.request(Num(0))?; // keep going in a later turn
        }
        Ok(())
    }
    fn on_ind(&mut self, _: Num) -> Handled {
        Ok(())
    }
}

impl ComponentDefinition for Producer {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.port, Self::on_ind);
        s.provide(|c| &mut c.kick, Self::on_kick);
    }
}

fn run(workers: usize, producers: usize, count: u64) {
    let rt = Runtime::builder().workers(workers).events_per_run(16).build();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let total = Arc::new(AtomicU64::new(0));
    let (e2, t2) = (errors.clone(), total.clone());
    let checker = rt
        .create(move || Checker { errors: e2.clone(), total: t2.clone(), ..Checker::default() })
        .unwrap();
    rt.start_and_wait(&checker, WAIT).unwrap();
    let mut ps = Vec::new();
    for _ in 0..producers {
        let p = rt
            .create(move || Producer {
                port: Required::new(),
                kick: Provided::new(),
                sent: 0,
                count,
            })
            .unwrap();
        rt.link::<Numbers>(&checker, &p).unwrap();
        rt.start_and_wait(&p, WAIT).unwrap();
        ps.push(p);
    }
    for p in &ps {
        p.provided::<Numbers>().unwrap().request(Num(0)).unwrap();
    }
    eventually("all events received", || total.load(Ordering::Relaxed) == count * producers as u64);
    let errs = errors.lock().clone();
    assert!(errs.is_empty(), "FIFO violated: {errs:?}");
    rt.shutdown().unwrap();
}

#[test]
fn channel_fifo_under_load_two_workers() {
    run(2, 8, 50_000);
}

#[test]
fn channel_fifo_under_load_four_workers() {
    run(4, 8, 20_000);
}
