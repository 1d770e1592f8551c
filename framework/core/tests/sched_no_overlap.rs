//! Handlers of one component never overlap, even with many senders on several workers; different
//! components do run in parallel; a flooded component does not starve others.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, Num, Numbers, WAIT};
use selfman_core::{ComponentDefinition, Handled, Provided, ProvidedRef, Required, Setup};
use selfman_runtime::Runtime;

/// Detects overlapping handler executions with an external counter.
struct Detector {
    port: Provided<Numbers>,
    inside: Arc<AtomicUsize>,
    max_seen: Arc<AtomicUsize>,
    total: Arc<AtomicU64>,
    state: u64,
}

impl Detector {
    fn on_num(&mut self, n: Num) -> Handled {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_seen.fetch_max(now, Ordering::SeqCst);
        // Widen the window: unsynchronised read-modify-write of plain state.
        let before = self.state;
        for _ in 0..50 {
            std::hint::spin_loop();
        }
        self.state = before + n.0;
        self.inside.fetch_sub(1, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl ComponentDefinition for Detector {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num);
    }
}

/// Sends `count` events of value 1 from its own thread of control (a kick loop).
struct Sender {
    out: Required<Numbers>,
    kick: Provided<Numbers>,
    left: u64,
}

impl Sender {
    fn on_kick(&mut self, _: Num) -> Handled {
        for _ in 0..self.left.min(100) {
            self.out.trigger(Num(1));
            self.left -= 1;
        }
        if self.left > 0 {
            self.kick.share()?.request(Num(0))?;
        }
        Ok(())
    }
}

impl ComponentDefinition for Sender {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.out, |_, _| Ok(()));
        s.provide(|c| &mut c.kick, Self::on_kick);
    }
}

fn no_overlap(workers: usize, senders: usize, per_sender: u64) {
    let rt = Runtime::builder().workers(workers).events_per_run(32).build();
    let inside = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let (i2, m2, t2) = (inside.clone(), max_seen.clone(), total.clone());
    let det = rt
        .create(move || Detector {
            port: Provided::new(),
            inside: i2.clone(),
            max_seen: m2.clone(),
            total: t2.clone(),
            state: 0,
        })
        .unwrap();
    rt.start_and_wait(&det, WAIT).unwrap();
    let mut ss = Vec::new();
    for _ in 0..senders {
        let s = rt
            .create(move || Sender {
                out: Required::new(),
                kick: Provided::new(),
                left: per_sender,
            })
            .unwrap();
        rt.link::<Numbers>(&det, &s).unwrap();
        rt.start_and_wait(&s, WAIT).unwrap();
        ss.push(s);
    }
    // Also inject from several OS threads at once.
    let port = det.provided::<Numbers>().unwrap();
    std::thread::scope(|scope| {
        for s in &ss {
            s.provided::<Numbers>().unwrap().request(Num(0)).unwrap();
        }
        for _ in 0..4 {
            let port = port.clone();
            scope.spawn(move || {
                for _ in 0..per_sender {
                    port.request(Num(1)).unwrap();
                }
            });
        }
    });
    let expected = per_sender * (senders as u64 + 4);
    eventually("all handled", || total.load(Ordering::SeqCst) == expected);
    assert_eq!(max_seen.load(Ordering::SeqCst), 1, "two handlers of one component overlapped");
    assert_eq!(det.on_definition(|d| d.state).unwrap(), expected, "lost updates to plain state");
    rt.shutdown().unwrap();
}

#[test]
fn sched_no_overlap_two_workers() {
    no_overlap(2, 8, 20_000);
}

#[test]
fn sched_no_overlap_four_workers() {
    no_overlap(4, 8, 10_000);
}

/// Spins (bounded) until its partner is also inside a handler.
struct Meeter {
    port: Provided<Numbers>,
    here: Arc<AtomicUsize>,
    met: Arc<AtomicBool>,
}

impl Meeter {
    fn on_num(&mut self, _: Num) -> Handled {
        self.here.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.here.load(Ordering::SeqCst) == 2 {
                self.met.store(true, Ordering::SeqCst);
                break;
            }
            std::hint::spin_loop();
        }
        Ok(())
    }
}

impl ComponentDefinition for Meeter {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num);
    }
}

#[test]
fn sched_components_run_in_parallel() {
    let rt = Runtime::builder().workers(2).build();
    let here = Arc::new(AtomicUsize::new(0));
    let met = Arc::new(AtomicBool::new(false));
    let mut ms = Vec::new();
    for _ in 0..2 {
        let (h, m) = (here.clone(), met.clone());
        let c = rt
            .create(move || Meeter { port: Provided::new(), here: h.clone(), met: m.clone() })
            .unwrap();
        rt.start_and_wait(&c, WAIT).unwrap();
        ms.push(c);
    }
    for c in &ms {
        c.provided::<Numbers>().unwrap().request(Num(0)).unwrap();
    }
    eventually("both handled", || ms.iter().all(|c| c.handled() == 1));
    assert!(met.load(Ordering::SeqCst), "two components never ran at the same time on 2 workers");
    rt.shutdown().unwrap();
}

/// Counts events; records the other counter's value when it handles its first one, and pokes
/// `poke` (if set) then.
struct Probe {
    port: Provided<Numbers>,
    count: Arc<AtomicU64>,
    other: Arc<AtomicU64>,
    other_at_first: Arc<AtomicU64>,
    poke: Option<ProvidedRef<Numbers>>,
}

impl Probe {
    fn on_num(&mut self, _: Num) -> Handled {
        if self.count.fetch_add(1, Ordering::SeqCst) == 0 {
            self.other_at_first.store(self.other.load(Ordering::SeqCst), Ordering::SeqCst);
            if let Some(p) = &self.poke {
                p.request(Num(0))?;
            }
        }
        Ok(())
    }
}

impl ComponentDefinition for Probe {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num);
    }
}

#[test]
fn sched_flooded_component_does_not_starve_others() {
    // One worker, so the two components must take turns. The flooded component `a` itself
    // wakes `b` when it handles its first event (not this thread, which could be descheduled
    // while the worker handles the whole flood): `b` must then run after one or a few of
    // `a`'s turns, not after all of them.
    let rt = Runtime::builder().workers(1).events_per_run(64).build();
    let a_count = Arc::new(AtomicU64::new(0));
    let b_count = Arc::new(AtomicU64::new(0));
    let unused = Arc::new(AtomicU64::new(0));
    let a_at_b = Arc::new(AtomicU64::new(u64::MAX));
    let (ac, bc, aab) = (a_count.clone(), b_count.clone(), a_at_b.clone());
    let b = rt
        .create(move || Probe {
            port: Provided::new(),
            count: bc.clone(),
            other: ac.clone(),
            other_at_first: aab.clone(),
            poke: None,
        })
        .unwrap();
    rt.start_and_wait(&b, WAIT).unwrap();
    let bp = b.provided::<Numbers>().unwrap();
    let (ac, un) = (a_count.clone(), unused.clone());
    let a = rt
        .create(move || Probe {
            port: Provided::new(),
            count: ac.clone(),
            other: Arc::new(AtomicU64::new(0)),
            other_at_first: un.clone(),
            poke: Some(bp.clone()),
        })
        .unwrap();
    let ap = a.provided::<Numbers>().unwrap();
    const FLOOD: u64 = 200_000;
    for _ in 0..FLOOD {
        ap.request(Num(0)).unwrap();
    }
    rt.start(&a).unwrap();
    eventually("flood done", || a_count.load(Ordering::SeqCst) == FLOOD);
    eventually("b done", || b_count.load(Ordering::SeqCst) == 1);
    let at = a_at_b.load(Ordering::SeqCst);
    // One turn of `a` is 64 events; allow a few turns' slack, far below the flood.
    assert!(at <= 64 * 4, "b waited for {at} of {FLOOD} events of the flood");
    rt.shutdown().unwrap();
}
