//! Supervision: restart strategies, directives, intensity escalation, backoff, root policy.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, runtime, Num, Numbers, WAIT};
use parking_lot::Mutex;
use selfman_core::{
    Component, ComponentDefinition, Directive, Handled, LifecycleState, Provided, Setup, Strategy,
    SupervisorPolicy, System,
};

/// Counts handled numbers (state a restart resets); panics on 13; logs each start with the time.
struct Worker {
    port: Provided<Numbers>,
    name: &'static str,
    count: u64,
    starts: Arc<Mutex<Vec<(&'static str, Instant)>>>,
}

impl Worker {
    fn on_num(&mut self, n: Num) -> Handled {
        if n.0 == 13 {
            panic!("unlucky");
        }
        self.count += 1;
        Ok(())
    }
}

impl ComponentDefinition for Worker {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.provide(|c| &mut c.port, Self::on_num);
    }
    fn on_start(&mut self) -> Handled {
        self.starts.lock().push((self.name, Instant::now()));
        Ok(())
    }
}

#[derive(Default)]
struct Boss;
impl ComponentDefinition for Boss {
    fn setup(&mut self, _: &mut Setup<Self>) {}
}

type Starts = Arc<Mutex<Vec<(&'static str, Instant)>>>;

/// A boss supervising three workers a, b, c (created in that order), all started.
fn team(
    sys: &System,
    policy: SupervisorPolicy,
) -> (Component<Boss>, Vec<Component<Worker>>, Starts) {
    let starts: Starts = Arc::new(Mutex::new(Vec::new()));
    let boss = sys.create(Boss::default).unwrap();
    sys.supervise(&boss, policy).unwrap();
    let workers: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            let st = starts.clone();
            sys.create_child(&boss, move || Worker {
                port: Provided::new(),
                name,
                count: 0,
                starts: st.clone(),
            })
            .unwrap()
        })
        .collect();
    sys.start_and_wait(&boss, WAIT).unwrap();
    starts.lock().clear();
    (boss, workers, starts)
}

fn send(w: &Component<Worker>, ns: &[u64]) {
    let p = w.provided::<Numbers>().unwrap();
    for &n in ns {
        p.request(Num(n)).unwrap();
    }
}

fn count(w: &Component<Worker>) -> u64 {
    w.on_definition(|d| d.count).unwrap()
}

fn restarted(starts: &Starts) -> Vec<&'static str> {
    let mut v: Vec<_> = starts.lock().iter().map(|(n, _)| *n).collect();
    v.sort_unstable();
    v
}

#[test]
fn sup_one_for_one_restarts_only_the_failed_child_keeping_its_queue() {
    let rt = runtime(2);
    let (_boss, w, starts) = team(&rt, SupervisorPolicy::restart(Strategy::OneForOne));
    send(&w[0], &[1, 2]);
    send(&w[1], &[1, 2, 3]);
    eventually("handled", || w[0].handled() == 2 && w[1].handled() == 3);
    send(&w[1], &[13, 4, 5]); // fails on 13; 4 and 5 stay queued for the fresh instance
    eventually("restarted", || w[1].restarts() == 1 && w[1].handled() == 6);
    assert_eq!(w[1].state(), LifecycleState::Active);
    assert_eq!(count(&w[1]), 2, "the fresh instance handled the two queued events");
    assert_eq!(count(&w[0]), 2, "the sibling kept its state");
    assert_eq!(w[0].restarts(), 0);
    assert_eq!(restarted(&starts), ["b"]);
    assert!(w[1].last_fault().unwrap().error.contains("unlucky"));
    rt.shutdown().unwrap();
}

#[test]
fn sup_one_for_all_restarts_every_sibling() {
    let rt = runtime(2);
    let (_boss, w, starts) = team(&rt, SupervisorPolicy::restart(Strategy::OneForAll));
    for x in &w {
        send(x, &[1, 2]);
    }
    eventually("handled", || w.iter().all(|x| x.handled() == 2));
    send(&w[1], &[13]);
    eventually("all restarted", || w.iter().all(|x| x.restarts() == 1));
    eventually("all active", || w.iter().all(|x| x.state() == LifecycleState::Active));
    assert!(w.iter().all(|x| count(x) == 0), "every sibling got a fresh instance");
    assert_eq!(restarted(&starts), ["a", "b", "c"]);
    rt.shutdown().unwrap();
}

#[test]
fn sup_rest_for_one_restarts_the_failed_child_and_later_siblings() {
    let rt = runtime(2);
    let (_boss, w, starts) = team(&rt, SupervisorPolicy::restart(Strategy::RestForOne));
    for x in &w {
        send(x, &[1]);
    }
    eventually("handled", || w.iter().all(|x| x.handled() == 1));
    send(&w[1], &[13]);
    eventually("b and c restarted", || w[1].restarts() == 1 && w[2].restarts() == 1);
    eventually("active", || w.iter().all(|x| x.state() == LifecycleState::Active));
    assert_eq!(w[0].restarts(), 0);
    assert_eq!(count(&w[0]), 1, "the earlier sibling kept its state");
    assert_eq!(restarted(&starts), ["b", "c"]);
    rt.shutdown().unwrap();
}

#[test]
fn sup_directives_resume_stop_destroy() {
    for (directive, expect) in [
        (Directive::Resume, LifecycleState::Active),
        (Directive::Stop, LifecycleState::Passive),
        (Directive::Destroy, LifecycleState::Destroyed),
    ] {
        let rt = runtime(2);
        let (_boss, w, _) = team(&rt, SupervisorPolicy::always(directive));
        send(&w[0], &[1, 13, 2]);
        eventually("fault seen", || w[0].last_fault().is_some());
        w[0].await_state(expect, WAIT).unwrap();
        match directive {
            // Same instance, continues with the next event.
            Directive::Resume => {
                eventually("resumed", || w[0].handled() == 3);
                assert_eq!(count(&w[0]), 2);
            }
            // Stopped: the remaining event waits.
            Directive::Stop => assert_eq!(w[0].queued(), 1),
            _ => {}
        }
        assert_eq!(w[0].restarts(), 0);
        assert_eq!(w[1].state(), LifecycleState::Active, "siblings unaffected");
        rt.shutdown().unwrap();
    }
}

#[test]
fn sup_intensity_exceeded_escalates_to_the_parent() {
    let rt = runtime(2);
    let (boss, w, _) = team(
        &rt,
        SupervisorPolicy::restart(Strategy::OneForOne).intensity(2, Duration::from_secs(60)),
    );
    for i in 1..=3 {
        send(&w[0], &[13]);
        if i <= 2 {
            eventually("restarted", || w[0].restarts() == i);
        }
    }
    // The third failure within the window exceeds 2 restarts: the boss fails, and the root's
    // default policy stops the boss's subtree.
    eventually("boss failed", || boss.last_fault().is_some());
    let f = boss.last_fault().unwrap();
    assert!(f.error.contains("restart intensity exceeded"), "{}", f.error);
    assert_eq!(f.place, "supervision");
    boss.await_state(LifecycleState::Passive, WAIT).unwrap();
    eventually("workers stopped", || w.iter().all(|x| x.state() == LifecycleState::Passive));
    assert_eq!(w[0].restarts(), 2);
    rt.shutdown().unwrap();
}

#[test]
fn sup_escalation_chain_reaches_a_grandparent_policy() {
    let rt = runtime(2);
    let grand = rt.create(Boss::default).unwrap();
    rt.supervise(&grand, SupervisorPolicy::restart(Strategy::OneForOne)).unwrap();
    // A parent without a policy: failures of its child pass on to the grandparent.
    let parent = rt.create_child(&grand, Boss::default).unwrap();
    let starts: Starts = Arc::new(Mutex::new(Vec::new()));
    let st = starts.clone();
    let child = rt
        .create_child(&parent, move || Worker {
            port: Provided::new(),
            name: "x",
            count: 0,
            starts: st.clone(),
        })
        .unwrap();
    rt.start_and_wait(&grand, WAIT).unwrap();
    send(&child, &[13, 1]);
    eventually("restarted by the grandparent", || child.restarts() == 1 && child.handled() == 2);
    assert_eq!(parent.state(), LifecycleState::Active);
    rt.shutdown().unwrap();
}

#[test]
fn sup_backoff_delays_grow_exponentially() {
    let rt = runtime(2);
    let initial = Duration::from_millis(40);
    let (_boss, w, starts) = team(
        &rt,
        SupervisorPolicy::restart(Strategy::OneForOne)
            .intensity(10, Duration::from_secs(60))
            .backoff(initial, Duration::from_secs(1)),
    );
    let mut delays = Vec::new();
    for i in 1..=3u64 {
        starts.lock().clear();
        let t0 = Instant::now();
        send(&w[0], &[13]);
        eventually("restarted", || w[0].restarts() == i);
        eventually("started", || !starts.lock().is_empty());
        delays.push(starts.lock()[0].1.duration_since(t0));
    }
    for (k, d) in delays.iter().enumerate() {
        let min = initial * (1 << k);
        assert!(*d >= min, "restart {k} after {d:?}, expected at least {min:?}");
    }
    rt.shutdown().unwrap();
}

#[test]
fn sup_root_policy_is_configurable() {
    let rt = runtime(2);
    rt.set_root_policy(SupervisorPolicy::restart(Strategy::OneForOne)).unwrap();
    let st: Starts = Arc::new(Mutex::new(Vec::new()));
    let s2 = st.clone();
    let w = rt
        .create(move || Worker { port: Provided::new(), name: "top", count: 0, starts: s2.clone() })
        .unwrap();
    rt.start_and_wait(&w, WAIT).unwrap();
    send(&w, &[13, 1]);
    eventually("restarted by the root", || w.restarts() == 1 && w.handled() == 2);
    assert_eq!(w.state(), LifecycleState::Active);
    rt.shutdown().unwrap();
}
