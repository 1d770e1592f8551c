//! Scenarios: scripted simulation runs with faults and invariant checks.
//!
//! A [`Scenario`] is a recipe — start nodes at given times, a churn process, partitions set and
//! healed, invariant checks at given times or after every step — that [`Scenario::run`] plays
//! from a seed. The outcome records every violated invariant with the virtual time it was
//! found; a failing run prints its seed and a one-line command that replays it.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use selfman_core::{NodeAddr, Rng, Time};

use crate::net::SimNetStats;
use crate::node::{NodeBuilder, SimHost};
use crate::simulation::{SimConfig, Simulation};

/// An invariant: `Ok` while it holds, `Err(why)` when it is violated.
pub type Check = Arc<dyn Fn(&Simulation) -> Result<(), String> + Send + Sync>;

type Action = Arc<dyn Fn(&mut Run<'_>) -> Result<(), String> + Send + Sync>;

/// A random process of node crashes, restarts and joins (see [`Scenario::churn`]).
#[derive(Clone)]
pub struct Churn {
    /// When it begins.
    pub from: Time,
    /// When it ends.
    pub until: Time,
    /// Events per virtual second (exponentially distributed gaps).
    pub rate_per_s: f64,
    /// Relative weight of crashing a random running node.
    pub crash: u32,
    /// Relative weight of restarting a random crashed node (new incarnation).
    pub restart: u32,
    /// Relative weight of adding a new node (built by `builder`).
    pub join: u32,
    /// Crashes are skipped while this few nodes (or fewer) run.
    pub min_alive: usize,
    /// Builds joining nodes.
    pub builder: Option<NodeBuilder>,
}

impl Churn {
    /// Crashes and restarts (equal weights, no joins) at `rate_per_s` between `from` and
    /// `until`, keeping at least `min_alive` nodes running.
    pub fn crash_restart(from: Time, until: Time, rate_per_s: f64, min_alive: usize) -> Churn {
        Churn { from, until, rate_per_s, crash: 1, restart: 1, join: 0, min_alive, builder: None }
    }
}

impl fmt::Debug for Churn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Churn")
            .field("from", &self.from)
            .field("until", &self.until)
            .field("rate_per_s", &self.rate_per_s)
            .field("weights", &(self.crash, self.restart, self.join))
            .field("min_alive", &self.min_alive)
            .finish()
    }
}

/// What a scripted action can do: drive the simulation and draw from the scenario's RNG
/// (separate from the components' and the network's, so scripting does not shift them).
pub struct Run<'a> {
    /// The simulation.
    pub sim: &'a Simulation,
    /// The scenario's RNG.
    pub rng: &'a mut Rng,
}

impl Run<'_> {
    /// A running node chosen uniformly at random.
    pub fn random_alive(&mut self) -> Option<NodeAddr> {
        let alive = self.sim.alive_nodes();
        (!alive.is_empty()).then(|| alive[self.rng.below(alive.len() as u64) as usize])
    }

    /// A crashed node address chosen uniformly at random (its last incarnation unknown: the id
    /// is [`NodeId::UNKNOWN`](selfman_core::NodeId::UNKNOWN), which `restart` accepts).
    pub fn random_crashed(&mut self) -> Option<NodeAddr> {
        let down: Vec<_> = self
            .sim
            .node_slots()
            .into_iter()
            .filter(|(_, cur)| cur.is_none())
            .map(|(a, _)| NodeAddr::new(a, selfman_core::NodeId::UNKNOWN))
            .collect();
        (!down.is_empty()).then(|| down[self.rng.below(down.len() as u64) as usize])
    }
}

enum Item {
    Action(String, Action),
    Check(String, Check),
    Churn(usize),
}

/// A violated invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time it was found at.
    pub at: Time,
    /// The check (or action) that failed.
    pub check: String,
    /// Why.
    pub message: String,
}

/// The result of running a scenario with one seed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Virtual time at the end.
    pub end: Time,
    /// The trace hash at the end (equal seeds give equal hashes).
    pub trace_hash: u64,
    /// Component turns run.
    pub turns: u64,
    /// Network counters.
    pub net: SimNetStats,
    /// Churn events applied: (crashes, restarts, joins).
    pub churn: (u64, u64, u64),
    /// Nodes running at the end.
    pub alive: usize,
    /// Violated invariants (the run stops at the first one).
    pub violations: Vec<Violation>,
    /// The command that replays this run.
    pub replay: String,
    /// The run digest ([`Scenario::run_digest`]; `None` from the other runs): one value over
    /// the message digest ([`Simulation::digest`]), the trace hash, the counts of turns, timer
    /// firings, churn events and every network counter, the end time, the nodes alive and the
    /// violations (check names and messages) — equal for two builds only if they ran this seed
    /// the same way.
    pub digest: Option<u64>,
}

impl Outcome {
    /// No invariant was violated.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// Panics with the violation, the seed and the replay command if the run failed.
    #[track_caller]
    pub fn assert_ok(&self) {
        assert!(self.is_ok(), "{self}");
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.violations.first() {
            None => write!(
                f,
                "scenario={} seed={} ok end={:?} alive={} delivered={} trace_hash={:016x}",
                self.scenario,
                self.seed,
                self.end.since_start(),
                self.alive,
                self.net.delivered,
                self.trace_hash
            ),
            Some(v) => write!(
                f,
                "scenario={} seed={} VIOLATION at t={:?} check={}: {}\n  replay: {}",
                self.scenario,
                self.seed,
                v.at.since_start(),
                v.check,
                v.message,
                self.replay
            ),
        }
    }
}

/// A scripted simulation run: nodes started at given times, churn, partitions, invariant checks.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use selfman_core::Time;
/// use selfman_sim::Scenario;
///
/// let s = Scenario::new("empty-nodes")
///     .start_nodes(Time::ZERO, 10, |_host| Ok(()))
///     .check_at(Time::ZERO + Duration::from_secs(1), "all up", |sim| {
///         let n = sim.alive_nodes().len();
///         if n == 10 { Ok(()) } else { Err(format!("{n} nodes up")) }
///     })
///     .until(Time::ZERO + Duration::from_secs(2));
/// s.run(1).assert_ok();
/// ```
pub struct Scenario {
    name: String,
    config: SimConfig,
    items: Vec<(Time, Item)>,
    always: Vec<(String, Check)>,
    at_end: Vec<(String, Check)>,
    churn: Vec<Churn>,
    until: Time,
    stop_when: Option<Check>,
    replay: String,
}

impl Scenario {
    /// An empty scenario that runs for 10 virtual seconds.
    pub fn new(name: impl Into<String>) -> Scenario {
        Scenario {
            name: name.into(),
            config: SimConfig::default(),
            items: Vec::new(),
            always: Vec::new(),
            at_end: Vec::new(),
            churn: Vec::new(),
            until: Time::ZERO + Duration::from_secs(10),
            stop_when: None,
            replay: "cargo run --release -p selfman-tests --bin sweep -- {scenario} --seeds 1 \
                     --start {seed}"
                .to_owned(),
        }
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Simulation settings (network model, batch size).
    pub fn config(mut self, config: SimConfig) -> Scenario {
        self.config = config;
        self
    }

    /// The command that replays a run, with `{scenario}` and `{seed}` placeholders. The default
    /// runs the `sweep` binary of `selfman-tests`, which knows the scenarios registered there;
    /// scenarios defined elsewhere should say how to rerun them (e.g.
    /// `SELFMAN_SEED={seed} cargo test -p my-crate --test my_test`).
    pub fn replay_with(mut self, template: impl Into<String>) -> Scenario {
        self.replay = template.into();
        self
    }

    /// Runs `action` at virtual time `at`.
    pub fn at<F>(mut self, at: Time, name: impl Into<String>, action: F) -> Scenario
    where
        F: Fn(&mut Run<'_>) -> Result<(), String> + Send + Sync + 'static,
    {
        self.items.push((at, Item::Action(name.into(), Arc::new(action))));
        self
    }

    /// Adds `n` nodes at `at`, each built by `build`.
    pub fn start_nodes<F>(self, at: Time, n: usize, build: F) -> Scenario
    where
        F: Fn(&SimHost) -> selfman_core::Result<()> + Send + Sync + 'static,
    {
        let build: NodeBuilder = Arc::new(build);
        self.at(at, format!("start {n} nodes"), move |run| {
            for _ in 0..n {
                run.sim.add_node_with(Arc::clone(&build)).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }

    /// Adds a churn process.
    pub fn churn(mut self, churn: Churn) -> Scenario {
        self.churn.push(churn);
        self
    }

    /// At `at`, splits the running nodes into groups chosen by `split` (given the running nodes
    /// in order; see [`Simulation::partition`]).
    pub fn partition<F>(self, at: Time, split: F) -> Scenario
    where
        F: Fn(&[NodeAddr]) -> Vec<Vec<NodeAddr>> + Send + Sync + 'static,
    {
        self.at(at, "partition", move |run| {
            run.sim.partition(&split(&run.sim.alive_nodes()));
            Ok(())
        })
    }

    /// At `at`, splits the running nodes into two halves (first half, second half).
    pub fn partition_halves(self, at: Time) -> Scenario {
        self.partition(at, |nodes| {
            let (a, b) = nodes.split_at(nodes.len() / 2);
            vec![a.to_vec(), b.to_vec()]
        })
    }

    /// At `at`, removes every partition.
    pub fn heal(self, at: Time) -> Scenario {
        self.at(at, "heal", |run| {
            run.sim.heal();
            Ok(())
        })
    }

    /// Checks `check` at virtual time `at`.
    pub fn check_at<F>(mut self, at: Time, name: impl Into<String>, check: F) -> Scenario
    where
        F: Fn(&Simulation) -> Result<(), String> + Send + Sync + 'static,
    {
        self.items.push((at, Item::Check(name.into(), Arc::new(check))));
        self
    }

    /// Checks `check` after every step: each virtual instant at which something happened.
    pub fn check_always<F>(mut self, name: impl Into<String>, check: F) -> Scenario
    where
        F: Fn(&Simulation) -> Result<(), String> + Send + Sync + 'static,
    {
        self.always.push((name.into(), Arc::new(check)));
        self
    }

    /// Checks `check` once the run has ended.
    pub fn check_at_end<F>(mut self, name: impl Into<String>, check: F) -> Scenario
    where
        F: Fn(&Simulation) -> Result<(), String> + Send + Sync + 'static,
    {
        self.at_end.push((name.into(), Arc::new(check)));
        self
    }

    /// Runs until virtual time `until` (default 10 s).
    pub fn until(mut self, until: Time) -> Scenario {
        self.until = until;
        self
    }

    /// Also stops (successfully) as soon as `done` returns `Ok` after a step.
    pub fn stop_when<F>(mut self, done: F) -> Scenario
    where
        F: Fn(&Simulation) -> Result<(), String> + Send + Sync + 'static,
    {
        self.stop_when = Some(Arc::new(done));
        self
    }

    /// Plays the scenario from `seed`. A violation is printed to stderr with the replay
    /// command.
    ///
    /// State captured by the scenario's closures (a shared log, a board) is shared by every run
    /// of this `Scenario` value: to run several seeds, build a fresh scenario for each.
    pub fn run(&self, seed: u64) -> Outcome {
        self.run_inspect(seed, |_| ())
    }

    /// As [`Scenario::run`], without printing anything.
    pub fn run_quiet(&self, seed: u64) -> Outcome {
        self.play(&Simulation::with(seed, self.config.clone()), seed)
    }

    /// As [`Scenario::run_quiet`], with the run digest on ([`Simulation::record_digest`]):
    /// the outcome's [`Outcome::digest`] is set. The run is the same run (the digest only
    /// reads), just slower.
    pub fn run_digest(&self, seed: u64) -> Outcome {
        let sim = Simulation::with(seed, self.config.clone());
        sim.record_digest();
        let mut outcome = self.play(&sim, seed);
        let (messages, deliveries) = sim.digest().unwrap_or_default();
        let n = &outcome.net;
        let mut words = vec![
            messages,
            deliveries,
            outcome.trace_hash,
            outcome.turns,
            sim.timer_firings(),
            outcome.end.0,
            outcome.alive as u64,
            outcome.churn.0,
            outcome.churn.1,
            outcome.churn.2,
            n.sent,
            n.delivered,
            n.lost,
            n.partitioned,
            n.blocked,
            n.dead,
            n.unknown_protocol,
            n.hints,
            outcome.violations.len() as u64,
        ];
        for v in &outcome.violations {
            words.push(v.at.0);
            words.extend(v.check.bytes().chain(v.message.bytes()).map(u64::from));
        }
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for w in words {
            h = (h.rotate_left(23) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 29;
        }
        outcome.digest = Some(h);
        outcome
    }

    /// As [`Scenario::run`], and hands the simulation to `inspect` before it is dropped.
    pub fn run_inspect(&self, seed: u64, inspect: impl FnOnce(&Simulation)) -> Outcome {
        let sim = Simulation::with(seed, self.config.clone());
        let outcome = self.play(&sim, seed);
        if !outcome.is_ok() {
            eprintln!("simulation failed: {outcome}");
        }
        inspect(&sim);
        outcome
    }

    fn play(&self, sim: &Simulation, seed: u64) -> Outcome {
        let mut rng = Rng::seeded(seed ^ 0x7363_656e_6172_696f); // "scenario"
        let mut agenda: BTreeMap<(Time, u64), &Item> = BTreeMap::new();
        let mut seq = 0u64;
        for (t, item) in &self.items {
            agenda.insert((*t, seq), item);
            seq += 1;
        }
        let churn_items: Vec<Item> = (0..self.churn.len()).map(Item::Churn).collect();
        let mut churn_at: Vec<Time> = Vec::new();
        for (i, c) in self.churn.iter().enumerate() {
            let t = c.from + exp_gap(&mut rng, c.rate_per_s);
            churn_at.push(t);
            if t <= c.until {
                agenda.insert((t, seq), &churn_items[i]);
                seq += 1;
            }
        }
        let mut violations = Vec::new();
        let mut counts = (0, 0, 0);
        let fail = |v: &mut Vec<Violation>, at: Time, check: &str, message: String| {
            v.push(Violation { at, check: check.to_owned(), message });
        };
        'run: loop {
            let next_item = agenda.keys().next().map(|k| k.0);
            let next_sim = sim.next_event();
            let next = match (next_item, next_sim) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > self.until {
                break;
            }
            if next_item == Some(next) {
                sim.advance_to(next);
                while let Some(entry) = agenda.first_entry() {
                    if entry.key().0 != next {
                        break;
                    }
                    let item = entry.remove();
                    let res = match item {
                        Item::Action(name, a) => guarded(|| a(&mut Run { sim, rng: &mut rng }))
                            .map_err(|e| (name.clone(), e)),
                        Item::Check(name, c) => guarded(|| c(sim)).map_err(|e| (name.clone(), e)),
                        Item::Churn(i) => {
                            let c = &self.churn[*i];
                            let r = guarded(|| {
                                churn_step(c, &mut Run { sim, rng: &mut rng }, &mut counts)
                            });
                            let t = next + exp_gap(&mut rng, c.rate_per_s);
                            if t <= c.until {
                                agenda.insert((t, seq), &churn_items[*i]);
                                seq += 1;
                            }
                            r.map_err(|e| ("churn".to_owned(), e))
                        }
                    };
                    if let Err((name, e)) = res {
                        fail(&mut violations, next, &name, e);
                        break 'run;
                    }
                }
                sim.run_until_idle();
            } else {
                sim.step();
            }
            for (name, c) in &self.always {
                if let Err(e) = guarded(|| c(sim)) {
                    fail(&mut violations, sim.now(), name, e);
                    break 'run;
                }
            }
            if let Some(done) = &self.stop_when {
                if guarded(|| done(sim)).is_ok() {
                    break;
                }
            }
        }
        if violations.is_empty() {
            if sim.now() < self.until && self.stop_when.is_none() {
                sim.run_until(self.until);
            }
            for (name, c) in &self.at_end {
                if let Err(e) = guarded(|| c(sim)) {
                    fail(&mut violations, sim.now(), name, e);
                    break;
                }
            }
        }
        Outcome {
            scenario: self.name.clone(),
            seed,
            end: sim.now(),
            trace_hash: sim.trace_hash(),
            turns: sim.turns(),
            net: sim.net_stats(),
            churn: counts,
            alive: sim.alive_nodes().len(),
            violations,
            replay: self
                .replay
                .replace("{scenario}", &self.name)
                .replace("{seed}", &seed.to_string()),
            digest: None,
        }
    }
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("items", &self.items.len())
            .field("churn", &self.churn)
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

fn exp_gap(rng: &mut Rng, rate_per_s: f64) -> Duration {
    if rate_per_s <= 0.0 || rate_per_s.is_nan() {
        return Duration::MAX;
    }
    let u = rng.unit_f64();
    Duration::from_secs_f64((-(1.0 - u).ln() / rate_per_s).min(1e9))
}

fn churn_step(c: &Churn, run: &mut Run<'_>, counts: &mut (u64, u64, u64)) -> Result<(), String> {
    let total = u64::from(c.crash) + u64::from(c.restart) + u64::from(c.join);
    if total == 0 {
        return Ok(());
    }
    let pick = run.rng.below(total);
    if pick < u64::from(c.crash) {
        if run.sim.alive_nodes().len() > c.min_alive {
            if let Some(n) = run.random_alive() {
                run.sim.crash(n).map_err(|e| e.to_string())?;
                counts.0 += 1;
            }
        }
    } else if pick < u64::from(c.crash) + u64::from(c.restart) {
        if let Some(n) = run.random_crashed() {
            run.sim.restart(n).map_err(|e| e.to_string())?;
            counts.1 += 1;
        }
    } else if let Some(b) = &c.builder {
        run.sim.add_node_with(Arc::clone(b)).map_err(|e| e.to_string())?;
        counts.2 += 1;
    }
    Ok(())
}

/// Runs a check or action, turning a panic into a violation.
fn guarded(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(format!(
            "panicked: {}",
            p.downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic)".to_owned())
        )),
    }
}

/// Seeds for a test that sweeps a scenario: `SELFMAN_SEED=S` runs just seed `S` (to replay a
/// failure); `SELFMAN_SEEDS=N` runs seeds `0..N`; otherwise `default`.
pub fn seeds(default: std::ops::Range<u64>) -> Vec<u64> {
    if let Some(s) = std::env::var("SELFMAN_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    if let Some(n) = std::env::var("SELFMAN_SEEDS").ok().and_then(|s| s.parse::<u64>().ok()) {
        return (0..n).collect();
    }
    default.collect()
}
