//! The runtime plug-in traits, driven by hand on one thread: a component is scheduled only when
//! its pending work goes from zero to non-zero, and a turn handles at most `events_per_run`.
//! (This single-threaded scheduler is also the shape of the deterministic simulator.)

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Num, Numbers, Sink};
use parking_lot::Mutex;
use selfman_core::{
    LifecycleState, RuntimeParts, Scheduler, SeededRng, System, SystemConfig, Task, Time,
    TimerDriver, TimerEntry, TimerKey,
};

#[derive(Default)]
struct Manual {
    queue: Mutex<VecDeque<Task>>,
    scheduled: AtomicUsize,
}

impl Scheduler for Manual {
    fn schedule(&self, task: Task) {
        self.scheduled.fetch_add(1, Ordering::SeqCst);
        self.queue.lock().push_back(task);
    }
}

impl Manual {
    /// Runs queued tasks until none is left; returns how many ran.
    fn run_all(&self) -> usize {
        let mut n = 0;
        loop {
            let t = self.queue.lock().pop_front();
            match t {
                Some(t) => {
                    t.run();
                    n += 1;
                }
                None => return n,
            }
        }
    }
}

#[derive(Default)]
struct NoTimers(Mutex<Vec<TimerKey>>);
impl TimerDriver for NoTimers {
    fn now(&self) -> Time {
        Time::ZERO
    }
    fn schedule(&self, entry: TimerEntry) {
        self.0.lock().push(entry.key);
    }
    fn cancel(&self, _: TimerKey) {}
}

fn system_with_timers(events_per_run: usize) -> (System, Arc<Manual>, Arc<NoTimers>) {
    let sched = Arc::new(Manual::default());
    let timers = Arc::new(NoTimers::default());
    let parts = RuntimeParts {
        scheduler: sched.clone(),
        timers: timers.clone(),
        rng: Arc::new(SeededRng(1)),
    };
    (System::new(parts, SystemConfig { events_per_run }), sched, timers)
}

fn system(events_per_run: usize) -> (System, Arc<Manual>) {
    let (sys, sched, _) = system_with_timers(events_per_run);
    (sys, sched)
}

#[test]
fn sched_scheduled_once_per_burst() {
    let (sys, sched) = system(128);
    sched.run_all(); // start the timer service
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = sys.create(move || Sink::new(s2.clone())).unwrap();
    sys.start(&sink).unwrap();
    sched.run_all();
    assert_eq!(sink.state(), LifecycleState::Active);

    sched.scheduled.store(0, Ordering::SeqCst);
    let port = sink.provided::<Numbers>().unwrap();
    for n in 0..100 {
        port.request(Num(n)).unwrap();
    }
    assert_eq!(sched.scheduled.load(Ordering::SeqCst), 1, "one task for 100 events");
    assert_eq!(sched.run_all(), 1, "one turn handles all 100 (budget 128)");
    assert_eq!(seen.lock().len(), 100);

    // Idle again: the next event schedules again, exactly once.
    port.request(Num(100)).unwrap();
    assert_eq!(sched.scheduled.load(Ordering::SeqCst), 2);
    assert_eq!(sched.run_all(), 1);
    assert_eq!(seen.lock().len(), 101);
}

#[test]
fn sched_budget_bounds_a_turn() {
    let (sys, sched) = system(10);
    sched.run_all();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let sink = sys.create(move || Sink::new(s2.clone())).unwrap();
    sys.start(&sink).unwrap();
    sched.run_all();
    sched.scheduled.store(0, Ordering::SeqCst);
    let port = sink.provided::<Numbers>().unwrap();
    for n in 0..95 {
        port.request(Num(n)).unwrap();
    }
    assert_eq!(sched.scheduled.load(Ordering::SeqCst), 1);
    // Run one turn at a time and watch the budget.
    let mut turns = 0;
    loop {
        let t = sched.queue.lock().pop_front();
        let Some(t) = t else { break };
        t.run();
        turns += 1;
        assert_eq!(seen.lock().len(), (turns * 10).min(95));
        assert!(sched.queue.lock().len() <= 1, "never more than one task per component");
    }
    assert_eq!(turns, 10);
    let order: Vec<u64> = seen.lock().iter().map(|(_, n)| *n).collect();
    assert_eq!(order, (0..95).collect::<Vec<_>>());
}

#[test]
fn sched_timer_requests_reach_the_driver() {
    let (sys, sched, timers) = system_with_timers(16);
    sched.run_all();
    #[derive(Default)]
    struct T {
        timer: selfman_core::Required<selfman_core::Timer>,
    }
    impl selfman_core::ComponentDefinition for T {
        fn setup(&mut self, s: &mut selfman_core::Setup<Self>) {
            s.require(|c| &mut c.timer, |_, _| Ok(()));
        }
        fn on_start(&mut self) -> selfman_core::Handled {
            self.timer.schedule_once(selfman_core::TimerId(7), Duration::from_secs(1));
            Ok(())
        }
    }
    let t = sys.create(T::default).unwrap();
    sys.connect_timer(&t).unwrap();
    sys.start(&t).unwrap();
    sched.run_all();
    assert_eq!(t.state(), LifecycleState::Active);
    let keys = timers.0.lock().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, 7);
    assert_eq!(keys[0].channel, t.ports()[0].channels[0], "keyed by the requester's channel");
}
