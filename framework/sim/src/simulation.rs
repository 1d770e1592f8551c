//! [`Simulation`]: a system driven step by step on the calling thread.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use selfman_core::{
    RuntimeParts, Scheduler, SeededRng, System, SystemConfig, Task, Time, TimerDriver,
};

use crate::clock::VirtualClock;
use crate::net::{SimNetConfig, World};
use crate::node::NodeBuilder;

/// Component turns waiting to run, in the order they were scheduled.
#[derive(Default)]
struct ReadyQueue {
    tasks: Mutex<VecDeque<Task>>,
    /// How many, mirrored out of the lock: the stepping loop finds the queue empty about once
    /// per turn, and need not lock to see it.
    len: AtomicUsize,
}

impl ReadyQueue {
    fn pop(&self) -> Option<Task> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut tasks = self.tasks.lock();
        let task = tasks.pop_front();
        self.len.store(tasks.len(), Ordering::Relaxed);
        task
    }

    fn clear(&self) {
        let mut tasks = self.tasks.lock();
        tasks.clear();
        self.len.store(0, Ordering::Relaxed);
    }
}

impl Scheduler for ReadyQueue {
    fn schedule(&self, task: Task) {
        let mut tasks = self.tasks.lock();
        tasks.push_back(task);
        self.len.store(tasks.len(), Ordering::Relaxed);
    }
}

/// The running trace: a word-wise multiplicative hash (stable across platforms and runs, no
/// dependency) and two counters.
#[derive(Default)]
struct Trace {
    hash: Cell<u64>,
    turns: Cell<u64>,
    firings: Cell<u64>,
}

impl Trace {
    #[inline]
    fn add(&self, word: u64) {
        let h = (self.hash.get().rotate_left(23) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.hash.set(h ^ (h >> 29));
    }
}

/// Everything configurable about a [`Simulation`].
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// System tunables (batch size, …).
    pub system: SystemConfig,
    /// The simulated network.
    pub network: SimNetConfig,
}

/// A deterministic, single-threaded, virtual-time run of a component [`System`].
pub struct Simulation {
    seed: u64,
    system: System,
    ready: Arc<ReadyQueue>,
    clock: Arc<VirtualClock>,
    pub(crate) world: Arc<World>,
    pub(crate) builders: Mutex<Vec<NodeBuilder>>,
    trace: Trace,
}

impl Simulation {
    /// A simulation whose components' RNGs derive from `seed`.
    pub fn new(seed: u64) -> Simulation {
        Self::with_config(seed, SystemConfig::default())
    }

    /// As [`Simulation::new`], with system tunables.
    pub fn with_config(seed: u64, config: SystemConfig) -> Simulation {
        Self::with(seed, SimConfig { system: config, ..SimConfig::default() })
    }

    /// As [`Simulation::new`], with every setting.
    pub fn with(seed: u64, config: SimConfig) -> Simulation {
        let ready = Arc::new(ReadyQueue::default());
        let clock = Arc::new(VirtualClock::default());
        let parts = RuntimeParts {
            scheduler: ready.clone(),
            timers: clock.clone(),
            rng: Arc::new(SeededRng(seed)),
        };
        let system = System::new(parts, config.system);
        let world = Arc::new(World::new(seed, config.network, Arc::clone(&clock)));
        let sim = Simulation {
            seed,
            system,
            ready,
            clock,
            world,
            builders: Mutex::new(Vec::new()),
            trace: Trace { hash: Cell::new(0xcbf2_9ce4_8422_2325), ..Trace::default() },
        };
        sim.run_until_idle(); // start the timer service
        sim
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The simulated system: create, connect and start components here.
    pub fn system(&self) -> &System {
        &self.system
    }

    /// Virtual time now.
    pub fn now(&self) -> Time {
        self.clock.now()
    }

    /// Runs one component turn if any is ready. Returns `false` if none was.
    pub fn run_one(&self) -> bool {
        let Some(task) = self.ready.pop() else { return false };
        let t = &self.trace;
        t.add(self.clock.now().0);
        t.add(task.component().0);
        t.turns.set(t.turns.get() + 1);
        task.run();
        true
    }

    /// Runs ready turns and due timers until nothing is left at the current instant. Returns
    /// the number of turns run.
    pub fn run_until_idle(&self) -> u64 {
        let mut n = 0;
        loop {
            while self.run_one() {
                n += 1;
            }
            if !self.fire_due() {
                return n;
            }
        }
    }

    fn fire_due(&self) -> bool {
        let mut fired = self.world.deliver_due(self.clock.now(), |words| {
            for &w in words {
                self.trace.add(w);
            }
        });
        while let Some((key, target)) = self.clock.pop_due() {
            let t = &self.trace;
            t.add(self.clock.now().0);
            t.add(key.channel);
            t.add(key.id);
            t.firings.set(t.firings.get() + 1);
            if !target.fire() {
                self.clock.forget(key);
            }
            fired = true;
        }
        fired
    }

    /// Runs until virtual time `until` (inclusive of everything due then), jumping from one
    /// timer deadline to the next when no component has work. Returns the number of turns run.
    pub fn run_until(&self, until: Time) -> u64 {
        let mut n = 0;
        loop {
            n += self.run_until_idle();
            match self.next_event() {
                Some(next) if next <= until => self.clock.advance_to(next),
                _ => break,
            }
        }
        self.clock.advance_to(until);
        n + self.run_until_idle()
    }

    /// The virtual time of the next timer or message delivery, if any.
    pub fn next_event(&self) -> Option<Time> {
        match (self.clock.next_deadline(), self.world.next_delivery()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances to the next instant at which something happens and runs everything due then.
    /// Returns that instant, or `None` if nothing is left to happen (time does not move).
    pub fn step(&self) -> Option<Time> {
        self.run_until_idle();
        let next = self.next_event()?;
        self.clock.advance_to(next);
        self.run_until_idle();
        Some(next)
    }

    /// Moves virtual time to `t` without running anything due before it (use
    /// [`Simulation::run_until`] to run up to `t`). Time never moves backwards.
    pub fn advance_to(&self, t: Time) {
        self.clock.advance_to(t);
    }

    /// Runs for `d` of virtual time from now.
    pub fn run_for(&self, d: Duration) -> u64 {
        self.run_until(self.now() + d)
    }

    /// Hash of everything that happened so far: each turn (time, component) and each timer
    /// firing (time, timer). Equal seeds and equal setups give equal hashes.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash.get()
    }

    /// Turns the run digest on: from now on every delivery — its time, sender, receiver and
    /// protocol, and the message's bincode encoding — is folded into
    /// [`Simulation::digest`]. Off by default (it encodes every message); it changes nothing
    /// about the run.
    pub fn record_digest(&self) {
        self.world.record_digest();
    }

    /// The run digest so far and the deliveries it covers, or `None` if
    /// [`Simulation::record_digest`] was not called. Equal digests mean the same messages,
    /// byte for byte, reached the same nodes at the same virtual times.
    pub fn digest(&self) -> Option<(u64, u64)> {
        self.world.digest()
    }

    /// Component turns run so far.
    pub fn turns(&self) -> u64 {
        self.trace.turns.get()
    }

    /// Timer firings so far.
    pub fn timer_firings(&self) -> u64 {
        self.trace.firings.get()
    }

    /// Timers waiting to fire.
    pub fn pending_timers(&self) -> usize {
        self.clock.pending()
    }

    /// Messages (and unreachable hints) travelling on the simulated network.
    pub fn in_flight(&self) -> usize {
        self.world.in_flight()
    }
}

impl Drop for Simulation {
    /// Destroys every component (driving the simulation until they are gone), which breaks the
    /// reference cycles between connected components; then shuts the system down and forgets
    /// the timers, turns and messages still pending, which reference components too. Nothing of
    /// a dropped simulation stays in memory (sweeps run thousands in one process).
    fn drop(&mut self) {
        if let Ok(root) = self.system.root_ref() {
            for child in root.children() {
                let _ = self.system.kill(&child);
            }
            self.run_until_idle();
        }
        // Everything is destroyed by now, so this does not wait; it drops the root.
        let _ = self.system.shutdown(Duration::ZERO);
        self.clock.clear();
        self.world.clear();
        self.ready.clear();
    }
}

impl fmt::Debug for Simulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulation")
            .field("seed", &self.seed)
            .field("now", &self.now())
            .field("turns", &self.turns())
            .finish()
    }
}
