//! The same seed gives the same run, bit for bit; virtual time is exact and costs no wall time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use selfman_core::{
    ComponentDefinition, Context, Handled, Port, Provided, Required, Setup, Time, Timeout, Timer,
    TimerId,
};
use selfman_sim::Simulation;

#[derive(Clone, Debug)]
struct Rumor(u64);

struct Gossip;
impl Port for Gossip {
    type Request = Rumor;
    type Indication = ();
}

/// A ring node: at random intervals it tells its neighbour a random rumour; a heard rumour is
/// passed on with probability 0.3.
struct Node {
    ctx: Context,
    timer: Required<Timer>,
    next: Required<Gossip>,
    inbox: Provided<Gossip>,
    heard: Arc<AtomicU64>,
}

impl Node {
    fn tick(&mut self) {
        let delay = 1 + self.ctx.rng().below(50);
        self.timer.schedule_once(TimerId(1), Duration::from_millis(delay));
    }
    fn on_timeout(&mut self, _: Timeout) -> Handled {
        let r = self.ctx.rng().next_u64();
        self.next.trigger(Rumor(r));
        self.tick();
        Ok(())
    }
    fn on_rumor(&mut self, r: Rumor) -> Handled {
        self.heard.fetch_add(1, Ordering::Relaxed);
        if self.ctx.rng().chance(0.3) {
            self.next.trigger(Rumor(r.0.rotate_left(7)));
        }
        Ok(())
    }
}

impl ComponentDefinition for Node {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.timer, Self::on_timeout);
        s.require(|c| &mut c.next, |_, _| Ok(()));
        s.provide(|c| &mut c.inbox, Self::on_rumor);
    }
    fn on_start(&mut self) -> Handled {
        self.tick();
        Ok(())
    }
}

/// Runs a ring of `n` nodes for `secs` virtual seconds; returns (trace hash, rumours heard,
/// turns).
fn ring(seed: u64, n: usize, secs: u64) -> (u64, u64, u64) {
    let sim = Simulation::new(seed);
    let sys = sim.system();
    let heard = Arc::new(AtomicU64::new(0));
    let nodes: Vec<_> = (0..n)
        .map(|_| {
            let h = heard.clone();
            sys.create(move || Node {
                ctx: Context::new(),
                timer: Required::new(),
                next: Required::new(),
                inbox: Provided::new(),
                heard: h.clone(),
            })
            .unwrap()
        })
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        sys.connect_timer(node).unwrap();
        sys.link::<Gossip>(&nodes[(i + 1) % n], node).unwrap();
        sys.start(node).unwrap();
    }
    sim.run_for(Duration::from_secs(secs));
    assert_eq!(sim.now(), Time(secs * 1_000_000_000));
    (sim.trace_hash(), heard.load(Ordering::Relaxed), sim.turns())
}

#[test]
fn sim_same_seed_same_trace() {
    let wall = Instant::now();
    let a = ring(42, 50, 10);
    let b = ring(42, 50, 10);
    assert_eq!(a, b, "same seed, same run");
    assert!(a.1 > 10_000, "a non-trivial run: {} rumours", a.1);
    let c = ring(43, 50, 10);
    assert_ne!(a.0, c.0, "another seed, another run");
    // 3 × 10 virtual seconds of 50 nodes: far less wall time than virtual time.
    assert!(wall.elapsed() < Duration::from_secs(30));
}

/// Records the virtual time of each timeout.
#[derive(Default)]
struct Alarm {
    ctx: Context,
    timer: Required<Timer>,
    at: Vec<Time>,
}

impl ComponentDefinition for Alarm {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(
            |c| &mut c.timer,
            |c, _| {
                c.at.push(c.ctx.now());
                Ok(())
            },
        );
    }
    fn on_start(&mut self) -> Handled {
        self.timer.schedule_once(TimerId(1), Duration::from_millis(50));
        self.timer.schedule_periodic(
            TimerId(2),
            Duration::from_millis(100),
            Duration::from_millis(250),
        );
        Ok(())
    }
}

#[test]
fn sim_virtual_time_is_exact() {
    let sim = Simulation::new(1);
    let sys = sim.system();
    let alarm = sys.create(Alarm::default).unwrap();
    sys.connect_timer(&alarm).unwrap();
    sys.start(&alarm).unwrap();
    sim.run_until(Time(600_000_000));
    let ms: Vec<u64> =
        alarm.on_definition(|a| a.at.iter().map(|t| t.0 / 1_000_000).collect()).unwrap();
    assert_eq!(ms, [50, 100, 350, 600]);
    // Cancel the periodic one: no more firings, no pending timer left.
    alarm.on_definition(|a| a.timer.cancel(TimerId(2))).unwrap();
    sim.run_for(Duration::from_secs(5));
    assert_eq!(alarm.on_definition(|a| a.at.len()).unwrap(), 4);
    assert_eq!(sim.pending_timers(), 0);
    assert_eq!(sim.timer_firings(), 4);
}

/// A deliberately broken node: draws its delays from an unseeded source (the OS's hasher
/// randomness), which a simulated component must never do.
struct Unseeded {
    timer: Required<Timer>,
}

impl Unseeded {
    fn tick(&mut self) {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        let delay = 1 + h.finish() % 50;
        self.timer.schedule_once(TimerId(1), Duration::from_millis(delay));
    }
}

impl ComponentDefinition for Unseeded {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(
            |c| &mut c.timer,
            |c, _| {
                c.tick();
                Ok(())
            },
        );
    }
    fn on_start(&mut self) -> Handled {
        self.tick();
        Ok(())
    }
}

fn unseeded_run() -> u64 {
    let sim = Simulation::new(7);
    let sys = sim.system();
    for _ in 0..5 {
        let c = sys.create(|| Unseeded { timer: Required::new() }).unwrap();
        sys.connect_timer(&c).unwrap();
        sys.start(&c).unwrap();
    }
    sim.run_for(Duration::from_secs(1));
    sim.trace_hash()
}

#[test]
fn sim_trace_hash_catches_a_nondeterministic_component() {
    // Two runs with the same seed diverge, and the trace hash shows it.
    let runs: Vec<u64> = (0..3).map(|_| unseeded_run()).collect();
    assert!(runs.windows(2).any(|w| w[0] != w[1]), "unseeded randomness went unnoticed: {runs:?}");
}
