//! The Timer port on the runtime's timer thread: once, periodic, cancel, per-requirer routing.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, runtime, WAIT};
use parking_lot::Mutex;
use selfman_core::{
    ComponentDefinition, Handled, Required, Setup, Timeout, Timer, TimerId, TimerRequest,
};

/// Records (timer id, time since creation) of each timeout.
struct Clocked {
    timer: Required<Timer>,
    created: Instant,
    fired: Arc<Mutex<Vec<(u64, Duration)>>>,
    /// Requests to make on start.
    plan: Vec<TimerRequest>,
}

impl Clocked {
    fn on_timeout(&mut self, t: Timeout) -> Handled {
        self.fired.lock().push((t.id.0, self.created.elapsed()));
        Ok(())
    }
}

impl ComponentDefinition for Clocked {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.timer, Self::on_timeout);
    }
    fn on_start(&mut self) -> Handled {
        for r in self.plan.clone() {
            self.timer.trigger(r);
        }
        Ok(())
    }
}

type Fired = Arc<Mutex<Vec<(u64, Duration)>>>;

fn clocked(
    rt: &selfman_runtime::Runtime,
    plan: Vec<TimerRequest>,
) -> (selfman_core::Component<Clocked>, Fired) {
    let fired: Fired = Arc::new(Mutex::new(Vec::new()));
    let f2 = fired.clone();
    let c = rt
        .create(move || Clocked {
            timer: Required::new(),
            created: Instant::now(),
            fired: f2.clone(),
            plan: plan.clone(),
        })
        .unwrap();
    rt.connect_timer(&c).unwrap();
    rt.start_and_wait(&c, WAIT).unwrap();
    (c, fired)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn timer_once_fires_once_not_early() {
    let rt = runtime(2);
    let (_c, fired) = clocked(&rt, vec![TimerRequest::Once { id: TimerId(1), delay: ms(50) }]);
    eventually("fired", || fired.lock().len() == 1);
    std::thread::sleep(ms(60));
    let f = fired.lock().clone();
    assert_eq!(f.len(), 1, "a one-shot timer fires once");
    assert_eq!(f[0].0, 1);
    assert!(f[0].1 >= ms(50), "fired early: {:?}", f[0].1);
    rt.shutdown().unwrap();
}

#[test]
fn timer_periodic_then_cancel() {
    let rt = runtime(2);
    let (c, fired) =
        clocked(&rt, vec![TimerRequest::Periodic { id: TimerId(9), delay: ms(5), period: ms(10) }]);
    eventually("five firings", || fired.lock().len() >= 5);
    c.on_definition(|d| d.timer.cancel(TimerId(9))).unwrap();
    // Let the cancel reach the service and anything already fired drain: wait until the count
    // stops moving, then make sure it stays put.
    let mut after = fired.lock().len();
    loop {
        std::thread::sleep(ms(50));
        let now = fired.lock().len();
        if now == after {
            break;
        }
        after = now;
    }
    std::thread::sleep(ms(100));
    assert_eq!(fired.lock().len(), after, "no timeouts after cancel");
    let f = fired.lock().clone();
    for w in f.windows(2) {
        assert!(w[1].1 > w[0].1);
    }
    assert!(f.iter().all(|(id, _)| *id == 9));
    rt.shutdown().unwrap();
}

#[test]
fn timer_cancel_before_firing_and_replace() {
    let rt = runtime(2);
    let (_c, fired) = clocked(
        &rt,
        vec![
            TimerRequest::Once { id: TimerId(1), delay: ms(40) },
            TimerRequest::Cancel { id: TimerId(1) },
            TimerRequest::Once { id: TimerId(2), delay: ms(500) },
            // Re-scheduling an id replaces the earlier timer.
            TimerRequest::Once { id: TimerId(2), delay: ms(20) },
            TimerRequest::Cancel { id: TimerId(77) }, // unknown: ignored
        ],
    );
    eventually("id 2 fired", || fired.lock().len() == 1);
    std::thread::sleep(ms(100));
    let f = fired.lock().clone();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, 2);
    assert!(f[0].1 < ms(400), "the replacement (20 ms) fired, not the original (500 ms)");
    rt.shutdown().unwrap();
}

#[test]
fn timer_timeouts_go_only_to_their_requester() {
    let rt = runtime(2);
    // Both use the same ids; each must see only its own timeouts.
    let (_a, fa) = clocked(&rt, vec![TimerRequest::Once { id: TimerId(1), delay: ms(10) }]);
    let (_b, fb) = clocked(
        &rt,
        vec![
            TimerRequest::Once { id: TimerId(1), delay: ms(30) },
            TimerRequest::Once { id: TimerId(2), delay: ms(20) },
        ],
    );
    eventually("all fired", || fa.lock().len() == 1 && fb.lock().len() == 2);
    std::thread::sleep(ms(50));
    assert_eq!(fa.lock().len(), 1);
    let ids: Vec<u64> = fb.lock().iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [2, 1], "fired in deadline order");
    rt.shutdown().unwrap();
}

#[test]
fn timer_bad_requests_and_gone_requesters() {
    let rt = runtime(2);
    // A zero period is refused (benign, logged); the service keeps serving.
    let (_c, fired) = clocked(
        &rt,
        vec![
            TimerRequest::Periodic { id: TimerId(1), delay: ms(1), period: Duration::ZERO },
            TimerRequest::Once { id: TimerId(2), delay: ms(5) },
        ],
    );
    eventually("the good one fired", || fired.lock().len() == 1);
    std::thread::sleep(ms(30));
    let ids: Vec<u64> = fired.lock().iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [2], "the zero-period timer was refused");

    // A request injected without a channel has nobody to answer: refused, service unharmed.
    rt.timer().unwrap().request(TimerRequest::Once { id: TimerId(3), delay: ms(1) }).unwrap();

    // A requester that disconnects (here: is destroyed) never gets its periodic timeouts
    // again, and the driver forgets the timer.
    let (gone, gfired) =
        clocked(&rt, vec![TimerRequest::Periodic { id: TimerId(5), delay: ms(1), period: ms(2) }]);
    eventually("periodic running", || gfired.lock().len() >= 2);
    rt.kill_and_wait(&gone, WAIT).unwrap();
    let n = gfired.lock().len();
    std::thread::sleep(ms(30));
    assert_eq!(gfired.lock().len(), n);

    // The timer service is still fine.
    let (_d, dfired) = clocked(&rt, vec![TimerRequest::Once { id: TimerId(1), delay: ms(1) }]);
    eventually("still serving", || dfired.lock().len() == 1);
    rt.shutdown().unwrap();
}
