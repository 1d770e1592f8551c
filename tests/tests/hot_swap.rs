//! Hot swap in practice: the failure detector of every node of a running five-node consensus
//! cluster is replaced — by one with another configuration — while a sequencer keeps deciding
//! slot after slot; then the leader is crashed.
//!
//! Each run (one seed) wires, per node, the whole stack of `selfman-consensus-cluster`
//! (heartbeat detector, Ω, epoch change, epoch and uniform consensus), a `Sequencer` proposing
//! a value per slot every 20 ms, a recorder of its decisions and epochs, and a second user of
//! the detector that monitors every other member and records what it is told. Links have
//! exponential latencies; the outgoing links of one random node other than the leader stall
//! (0.9–1.6 s latency) for a while around the swaps, so detectors suspect it and later restore
//! it — mostly across the swap. Each node's detector is replaced at its own random instant in a
//! 0.5 s window (so old and new configurations run side by side), under the configuration pair
//! chosen by the seed:
//!
//! | seed % 3 | before | after |
//! |---|---|---|
//! | 0 | default (100 ms period, 400 ms – 2 s) | Beernet (250 ms, 500 ms – 2 s): raised |
//! | 1 | default | fast (50 ms, 200 – 500 ms): grown timeouts clamped down |
//! | 2 | Beernet | default |
//!
//! Checks, after every step: **agreement** (no slot decided two ways, anywhere), **integrity**
//! (no node decides a slot twice; every value is a proposal for that slot); each detector user's
//! indications alternate per process (never `Suspect` twice, never `Restore` unsuspected);
//! no detector swapped more than once, none dropped an event, every swap succeeded. When the
//! leader is crashed: slots were decided after the last swap. At the end: a **new leader**
//! (every running node entered a later epoch led by another node) and slots decided after the
//! crash by every running node; no node lacks a slot below the lowest head (no lost decision);
//! every running detector swapped exactly once, runs the new config, still watches the four
//! other members, suspects exactly the crashed leader, and its second user's view agrees.
//!
//! Two broken swaps must be caught by the same checks. Without state transfer, the fresh
//! detectors know nothing of Ω's `Monitor` requests: the crash goes unnoticed and no new leader
//! is elected. With a transfer that forgets suspicions, a detector that took over a live
//! suspicion suspects the same node twice or never restores it.
//!
//! More seeds (release build, about 16 ms per seed):
//! `SELFMAN_SEEDS=10000 cargo test --release -p selfman-tests --test hot_swap detectors_are_swapped`;
//! one seed: `SELFMAN_SEED=S …`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use selfman_consensus_cluster::{build_node, build_sequencer, NodeConfig, SeqEvent, SeqEvents};
use selfman_core::{
    Component, ComponentDefinition, Context, Handled, Host, NodeAddr, NodeId, Required, Rng, Setup,
    Swap, Time,
};
use selfman_failure_detector::{reconfigure, FdConfig, Flaw, HeartbeatFd};
use selfman_ports::{FailureDetector, FdIndication, FdRequest};
use selfman_sim::{
    address_of, seeds, Latency, LinkModel, Outcome, Scenario, SimConfig, SimHost, SimNetConfig,
    Simulation,
};

const NODES: usize = 5;
/// The sequencer proposes the next slot this long after deciding one.
const INTERVAL: Duration = Duration::from_millis(20);
/// At least this many slots must be decided after the swaps (before the crash), and after the
/// crash.
const PROGRESS: usize = 5;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at_ms(n: u64) -> Time {
    Time::ZERO + ms(n)
}

/// Member `i` as the group names it: by address, whichever incarnation runs there.
fn any(i: usize) -> NodeAddr {
    NodeAddr::new(address_of(i), NodeId::UNKNOWN)
}

fn index_of(n: NodeAddr) -> usize {
    (0..NODES).find(|&i| address_of(i) == n.addr).expect("a member of the group")
}

/// Probing every 50 ms, timeouts 200–500 ms: a detector tuned for fast detection.
fn fast() -> FdConfig {
    FdConfig { period: ms(50), initial_timeout: ms(200), increment: ms(100), max_timeout: ms(500) }
}

fn link() -> LinkModel {
    LinkModel { latency: Latency::Exponential { base: ms(1), mean_extra: ms(3) }, loss: 0.0 }
}

/// How the detectors are replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Swapping {
    /// `reconfigure`: a new `HeartbeatFd` that takes over the old one's state.
    WithState,
    /// Deliberately broken: a fresh `HeartbeatFd`, no state transfer.
    Fresh,
    /// Deliberately broken: the state is transferred, but the new detector forgets which
    /// processes were suspected.
    Amnesic,
}

/// What one seed does, and when.
#[derive(Clone, Debug)]
struct Plan {
    from: FdConfig,
    to: FdConfig,
    swapping: Swapping,
    /// When each node's detector is replaced.
    swap_at: [Time; NODES],
    /// The node whose outgoing links stall, from `stall.0` to `stall.1`, with latency
    /// `stall.2`.
    stalled: usize,
    stall: (Time, Time, Duration),
    crash_at: Time,
    until: Time,
}

impl Plan {
    fn new(seed: u64, swapping: Swapping) -> Plan {
        let mut rng = Rng::seeded(seed ^ 0x686f_745f_7377_6170); // "hot_swap"
        let (from, to) = match seed % 3 {
            0 => (FdConfig::default(), FdConfig::beernet()),
            1 => (FdConfig::default(), fast()),
            _ => (FdConfig::beernet(), FdConfig::default()),
        };
        let mut between = |lo: u64, hi: u64| at_ms(lo + rng.below(hi - lo + 1));
        let swap_at = std::array::from_fn(|_| between(1_000, 1_500));
        // The stalled node is suspected from about `stall_from` + timeout + period until its
        // first delayed message arrives, at `stall_from` + latency: mostly across the swaps.
        let stall_from = between(500, 1_000);
        let stall_until = stall_from + ms(300 + rng.below(501));
        let stall = (stall_from, stall_until, ms(900 + rng.below(701)));
        // After the swaps, and after the stalled node's delayed messages have all arrived.
        let last_swap = *swap_at.iter().max().expect("five nodes");
        let settled = last_swap.max(stall.1 + stall.2);
        let crash_at = settled + ms(400 + rng.below(601));
        Plan {
            from,
            to,
            swapping,
            swap_at,
            // Not the first-ranked member: it leads until it crashes, and decisions keep
            // flowing through the swaps.
            stalled: 1 + rng.below(NODES as u64 - 1) as usize,
            stall,
            crash_at,
            until: crash_at + ms(3_500),
        }
    }

    fn last_swap(&self) -> Time {
        *self.swap_at.iter().max().expect("five nodes")
    }
}

/// The crash of the leader, as recorded when it happened.
#[derive(Clone, Copy, Debug)]
struct Crash {
    node: usize,
    at: Time,
    /// The highest epoch any node had entered.
    epoch: u64,
}

/// Everything the run records; checks read it.
#[derive(Default)]
struct State {
    /// Per node: slot → value.
    decided: Vec<BTreeMap<u64, String>>,
    /// Per slot: the value decided and when it was first decided anywhere.
    chosen: BTreeMap<u64, (String, Time)>,
    /// Per node: (epoch, leader, when entered).
    epochs: Vec<Vec<(u64, NodeAddr, Time)>>,
    /// Per node: the second user's view of each other member (suspected or not).
    views: Vec<BTreeMap<usize, bool>>,
    /// Per node: what its second user was told — (about, suspected).
    told: Vec<Vec<(usize, bool)>>,
    /// Safety violations found as events arrived.
    violations: Vec<String>,
    fds: Vec<Option<Component<HeartbeatFd>>>,
    /// Swaps requested and not yet reported: (node, swap).
    pending: Vec<(usize, Swap)>,
    /// When each node's swap was reported done.
    swapped: Vec<Option<Time>>,
    /// Per node: how many processes its detector suspected when the swap was requested (the
    /// swap happens at the detector's next turn, before it handles anything else).
    carried: Vec<usize>,
    crash: Option<Crash>,
}

type World = Arc<Mutex<State>>;

fn lock(w: &World) -> MutexGuard<'_, State> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn new() -> State {
        State {
            decided: vec![BTreeMap::new(); NODES],
            epochs: vec![Vec::new(); NODES],
            views: vec![BTreeMap::new(); NODES],
            told: vec![Vec::new(); NODES],
            fds: vec![None; NODES],
            swapped: vec![None; NODES],
            carried: vec![0; NODES],
            ..State::default()
        }
    }

    fn on_decided(&mut self, node: usize, slot: u64, value: String, now: Time) {
        let valid = (0..NODES).any(|i| value == format!("n{i}:{slot}"));
        if !valid {
            self.violations.push(format!("integrity: n{node} decided {value:?} for slot {slot}"));
        }
        if let Some(v) = self.decided[node].insert(slot, value.clone()) {
            self.violations.push(format!("integrity: n{node} decided slot {slot} twice ({v:?})"));
        }
        match self.chosen.get(&slot) {
            Some((v, _)) if *v != value => self.violations.push(format!(
                "agreement: slot {slot} is {v:?} elsewhere but n{node} decided {value:?}"
            )),
            Some(_) => {}
            None => {
                self.chosen.insert(slot, (value, now));
            }
        }
    }

    fn on_indication(&mut self, node: usize, ind: FdIndication) {
        let (about, suspect) = match ind {
            FdIndication::Suspect(n) => (index_of(n), true),
            FdIndication::Restore(n) => (index_of(n), false),
        };
        self.told[node].push((about, suspect));
        let was = self.views[node].insert(about, suspect).unwrap_or(false);
        if was == suspect {
            self.violations.push(format!("detector of n{node}: {ind:?} repeated or out of turn"));
        }
    }

    /// Swaps that took over a detector suspecting someone.
    fn carried_suspicions(&self) -> usize {
        self.carried.iter().filter(|&&n| n > 0).count()
    }

    /// Slots first decided between `from` and `to`.
    fn first_decided_between(&self, from: Time, to: Time) -> usize {
        self.chosen.values().filter(|(_, t)| (from..=to).contains(t)).count()
    }

    /// Slots first decided after `t` that `node` has decided.
    fn decided_after(&self, node: usize, t: Time) -> usize {
        self.decided[node].keys().filter(|s| self.chosen[s].1 > t).count()
    }
}

/// Records what the node's sequencer reports.
struct Recorder {
    ctx: Context,
    seq: Required<SeqEvents>,
    me: usize,
    world: World,
}

impl Recorder {
    fn on_event(&mut self, e: SeqEvent) -> Handled {
        let now = self.ctx.now();
        let mut w = lock(&self.world);
        match e {
            SeqEvent::Decided { slot, value } => w.on_decided(self.me, slot, value, now),
            SeqEvent::Epoch { ts, leader } => w.epochs[self.me].push((ts, leader, now)),
        }
        Ok(())
    }
}

impl ComponentDefinition for Recorder {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.seq, Self::on_event);
    }
}

/// A second user of the detector (beside Ω): monitors every other member on start and records
/// what it is told.
struct Watcher {
    fd: Required<FailureDetector>,
    me: usize,
    world: World,
}

impl Watcher {
    fn on_indication(&mut self, ind: FdIndication) -> Handled {
        lock(&self.world).on_indication(self.me, ind);
        Ok(())
    }
}

impl ComponentDefinition for Watcher {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.fd, Self::on_indication);
    }

    fn on_start(&mut self) -> Handled {
        for i in (0..NODES).filter(|&i| i != self.me) {
            self.fd.trigger(FdRequest::Monitor(any(i)));
        }
        Ok(())
    }
}

fn build(h: &SimHost, plan: &Plan, world: &World) -> selfman_core::Result<()> {
    let me = h.index();
    let group: Vec<NodeAddr> = (0..NODES).map(any).collect();
    let config = NodeConfig { fd: plan.from, ..NodeConfig::default() };
    let node = build_node::<String, _>(h, group, &config)?;
    let seq = build_sequencer(h, &node, format!("n{me}"), INTERVAL, None)?;
    let w = world.clone();
    let rec = h.create(move || Recorder {
        ctx: Context::new(),
        seq: Required::new(),
        me,
        world: w.clone(),
    })?;
    h.system().connect(&seq.provided::<SeqEvents>()?, &rec.required()?)?;
    let w = world.clone();
    let watcher = h.create(move || Watcher { fd: Required::new(), me, world: w.clone() })?;
    h.system().connect(&node.fd.provided::<FailureDetector>()?, &watcher.required()?)?;
    lock(world).fds[me] = Some(node.fd.clone());
    Ok(())
}

/// The running incarnation at member `i`'s address.
fn alive(sim: &Simulation, i: usize) -> Option<NodeAddr> {
    sim.alive_nodes().into_iter().find(|n| n.addr == address_of(i))
}

// ANCHOR: swap
/// Requests the replacement of node `i`'s detector.
fn swap(sim: &Simulation, plan: &Plan, world: &World, i: usize) -> Result<(), String> {
    let fd = lock(world).fds[i].clone().ok_or(format!("n{i} has no detector"))?;
    let suspects = fd.on_definition(|d| d.detector().suspected().count());
    lock(world).carried[i] = suspects.map_err(|e| e.to_string())?;
    let to = plan.to;
    let swap = match plan.swapping {
        Swapping::WithState => reconfigure(sim.system(), &fd, to),
        Swapping::Fresh => sim.system().replace(fd.untyped(), move || HeartbeatFd::new(to)),
        Swapping::Amnesic => {
            let new = move || HeartbeatFd::new(to).with_flaw(Flaw::ForgetSuspicions);
            sim.system().replace_with_state(&fd, new, HeartbeatFd::transfer)
        }
    }
    .map_err(|e| format!("n{i}: {e}"))?;
    lock(world).pending.push((i, swap));
    Ok(())
}
// ANCHOR_END: swap

/// After every step: swaps reported, safety, and the detectors' counters.
fn check_always(sim: &Simulation, world: &World) -> Result<(), String> {
    let mut w = lock(world);
    if let Some(v) = w.violations.first() {
        return Err(v.clone());
    }
    // ANCHOR: poll
    // The simulator runs on this thread: a swap is polled after each step, never waited for.
    let now = sim.now();
    let mut still = Vec::new();
    for (i, s) in std::mem::take(&mut w.pending) {
        match s.try_outcome() {
            None => still.push((i, s)),
            Some(Ok(())) => w.swapped[i] = Some(now),
            Some(Err(e)) => return Err(format!("the swap of n{i}'s detector failed: {e}")),
        }
    }
    w.pending = still;
    // ANCHOR_END: poll
    for (i, fd) in w.fds.iter().enumerate() {
        let Some(fd) = fd else { continue };
        if fd.swaps() > 1 || fd.dropped() > 0 {
            let (s, d) = (fd.swaps(), fd.dropped());
            return Err(format!("n{i}'s detector: {s} swaps, {d} events dropped"));
        }
    }
    Ok(())
}

/// Once every swap is due: all happened.
fn check_swapped(plan: &Plan, world: &World) -> Result<(), String> {
    let w = lock(world);
    for i in 0..NODES {
        let done = w.swapped[i].ok_or(format!("n{i}'s detector was not replaced"))?;
        if done < plan.swap_at[i] {
            return Err(format!("n{i}'s swap reported at {done:?}, before it was requested"));
        }
    }
    Ok(())
}

/// Crashes the leader of the latest epoch, after checking that slots were decided since the
/// last swap.
fn crash_leader(sim: &Simulation, plan: &Plan, world: &World) -> Result<(), String> {
    let now = sim.now();
    let mut w = lock(world);
    let last_swap = w.swapped.iter().flatten().max().copied().unwrap_or(plan.last_swap());
    for i in 0..NODES {
        let n = w.decided_after(i, last_swap);
        if n < PROGRESS {
            return Err(format!("n{i} decided {n} slots after the swaps (< {PROGRESS})"));
        }
    }
    let (epoch, leader) = w
        .epochs
        .iter()
        .flatten()
        .map(|&(ts, leader, _)| (ts, leader))
        .max()
        .ok_or("no epoch entered before the crash")?;
    let node = index_of(leader);
    let target = alive(sim, node).ok_or(format!("the leader n{node} is not running"))?;
    w.crash = Some(Crash { node, at: now, epoch });
    drop(w);
    sim.crash(target).map_err(|e| e.to_string())
}

/// At the end: a new leader, progress after the crash, no lost decision.
fn check_recovery(sim: &Simulation, world: &World) -> Result<(), String> {
    let w = lock(world);
    let c = w.crash.ok_or("the leader was never crashed")?;
    let running: Vec<usize> = (0..NODES).filter(|&i| alive(sim, i).is_some()).collect();
    for &i in &running {
        let led = w.epochs[i].iter().any(|&(ts, l, _)| ts > c.epoch && index_of(l) != c.node);
        if !led {
            let last = w.epochs[i].last();
            return Err(format!(
                "no new leader: n{i} is still in epoch {last:?} after n{} (leader of epoch {}) \
                 crashed at {:?}",
                c.node, c.epoch, c.at
            ));
        }
        let n = w.decided_after(i, c.at);
        if n < PROGRESS {
            return Err(format!("n{i} decided {n} slots after the crash (< {PROGRESS})"));
        }
    }
    let low = running.iter().filter_map(|&i| w.decided[i].keys().last()).min().copied();
    for &i in &running {
        if let Some(s) = (0..=low.unwrap_or(0)).find(|s| !w.decided[i].contains_key(s)) {
            return Err(format!("n{i} never decided slot {s} (decided elsewhere)"));
        }
    }
    Ok(())
}

/// At the end: every running detector swapped once into the new config, kept its watches,
/// suspects exactly the crashed leader, and its second user agrees.
fn check_detectors(sim: &Simulation, plan: &Plan, world: &World) -> Result<(), String> {
    let w = lock(world);
    let c = w.crash.ok_or("the leader was never crashed")?;
    for i in (0..NODES).filter(|&i| alive(sim, i).is_some()) {
        let fd = w.fds[i].as_ref().ok_or(format!("n{i} has no detector"))?;
        if fd.swaps() != 1 || fd.dropped() != 0 {
            let (s, d) = (fd.swaps(), fd.dropped());
            return Err(format!("n{i}'s detector: {s} swaps, {d} events dropped"));
        }
        let (config, monitored, suspected) = fd
            .on_definition(|d| {
                let d = d.detector();
                (*d.config(), d.monitored(), d.suspected().collect::<Vec<_>>())
            })
            .map_err(|e| e.to_string())?;
        if config != plan.to || monitored != NODES - 1 || suspected != vec![any(c.node)] {
            return Err(format!(
                "n{i}'s detector runs {config:?}, watches {monitored} members, suspects \
                 {suspected:?}; expected the new config, {} members, [{}]",
                NODES - 1,
                any(c.node)
            ));
        }
        let view: Vec<usize> = w.views[i].iter().filter(|(_, &s)| s).map(|(&n, _)| n).collect();
        if view != vec![c.node] {
            return Err(format!(
                "n{i}'s second user believes {view:?} suspected, not [{}]",
                c.node
            ));
        }
    }
    Ok(())
}

fn scenario(seed: u64, swapping: Swapping) -> (Scenario, World) {
    let plan = Plan::new(seed, swapping);
    let world: World = Arc::new(Mutex::new(State::new()));
    let (name, test) = match swapping {
        Swapping::WithState => ("hot-swap", "detectors_are_swapped"),
        Swapping::Fresh => ("hot-swap-fresh", "a_swap_without_state"),
        Swapping::Amnesic => ("hot-swap-amnesic", "a_swap_that_forgets"),
    };
    let config = SimConfig {
        network: SimNetConfig { default_link: link(), ..SimNetConfig::default() },
        ..SimConfig::default()
    };
    let (p, w) = (plan.clone(), world.clone());
    let mut s = Scenario::new(name)
        .config(config)
        .replay_with(format!(
            "SELFMAN_SEED={{seed}} cargo test -p selfman-tests --test hot_swap {test}"
        ))
        .start_nodes(Time::ZERO, NODES, move |h| build(h, &p, &w));
    let (from, until, latency) = plan.stall;
    let stalled = plan.stalled;
    s = s
        .at(from, "stall", move |run| {
            for j in (0..NODES).filter(|&j| j != stalled) {
                let slow = LinkModel { latency: Latency::Fixed(latency), loss: 0.0 };
                run.sim.set_link(any(stalled), any(j), slow).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .at(until, "unstall", move |run| {
            for j in (0..NODES).filter(|&j| j != stalled) {
                run.sim.set_link(any(stalled), any(j), link()).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
    for i in 0..NODES {
        let (p, w) = (plan.clone(), world.clone());
        s = s.at(plan.swap_at[i], format!("swap n{i}"), move |run| swap(run.sim, &p, &w, i));
    }
    let (p, w) = (plan.clone(), world.clone());
    s = s.check_at(plan.last_swap() + ms(1), "every detector swapped", move |_| {
        check_swapped(&p, &w)
    });
    let (p, w) = (plan.clone(), world.clone());
    s = s.at(plan.crash_at, "crash the leader", move |run| crash_leader(run.sim, &p, &w));
    let w = world.clone();
    s = s.check_always("safety and swaps", move |sim| check_always(sim, &w));
    let w = world.clone();
    s = s.check_at_end("recovery after the crash", move |sim| check_recovery(sim, &w));
    let (p, w) = (plan.clone(), world.clone());
    let s = s
        .check_at_end("detectors after the swap", move |sim| check_detectors(sim, &p, &w))
        .until(plan.until);
    (s, world)
}

fn run(seed: u64, swapping: Swapping) -> Outcome {
    scenario(seed, swapping).0.run_quiet(seed)
}

#[test]
fn detectors_are_swapped_under_a_running_cluster_without_harm() {
    // Seed 10 once failed here: the leader's stalled messages were still in flight when it was
    // crashed, so nothing could have been decided after the swaps (a flaw of the plan, now
    // crashing only once they have arrived).
    for seed in seeds(0..50) {
        let out = run(seed, Swapping::WithState);
        out.assert_ok();
        assert_eq!(out.alive, NODES - 1, "{out}");
    }
}

#[test]
fn runs_exercise_what_they_claim() {
    // Decisions flow while the detectors are being replaced, and some swaps take over a live
    // suspicion (which the new detector must later restore, once, to the right users).
    let (mut carried, mut decided_during) = (0, 0);
    for seed in 0..12 {
        let (s, world) = scenario(seed, Swapping::WithState);
        s.run_quiet(seed).assert_ok();
        let plan = Plan::new(seed, Swapping::WithState);
        let w = lock(&world);
        let first = *plan.swap_at.iter().min().expect("five nodes");
        let during = w.first_decided_between(first, plan.last_swap());
        assert!(during >= 1, "seed {seed}: no slot decided during the swaps");
        decided_during += during;
        carried += w.carried_suspicions();
        let restores: usize = w.told.iter().flatten().filter(|x| !x.1).count();
        assert!(restores > 0, "seed {seed}: the stalled node was never restored");
    }
    assert!(carried >= 5, "only {carried} swaps carried a suspicion over");
    assert!(decided_during >= 12 * 5, "{decided_during} slots decided during the swaps");
}

#[test]
fn a_run_replays_bit_for_bit() {
    let (a, b) = (run(3, Swapping::WithState), run(3, Swapping::WithState));
    assert_eq!((a.trace_hash, a.turns, a.net), (b.trace_hash, b.turns, b.net));
    assert_ne!(a.trace_hash, run(4, Swapping::WithState).trace_hash);
}

#[test]
fn a_swap_without_state_transfer_is_caught() {
    for seed in seeds(0..6) {
        let out = run(seed, Swapping::Fresh);
        let v = out.violations.first().unwrap_or_else(|| panic!("not caught: {out}"));
        assert_eq!(v.check, "recovery after the crash", "{out}");
        assert!(v.message.starts_with("no new leader"), "{out}");
    }
}

#[test]
fn a_swap_that_forgets_suspicions_is_caught() {
    // Wherever a correct run carried a suspicion across a swap, a detector that forgets it
    // either suspects the same process twice or never restores it.
    let mut caught = 0;
    for seed in seeds(0..12) {
        let (s, world) = scenario(seed, Swapping::WithState);
        s.run_quiet(seed).assert_ok();
        if lock(&world).carried_suspicions() == 0 {
            continue;
        }
        let out = run(seed, Swapping::Amnesic);
        let v = out.violations.first().unwrap_or_else(|| panic!("not caught: {out}"));
        let repeated = v.check == "safety and swaps" && v.message.contains("out of turn");
        let unrestored = v.check == "detectors after the swap";
        assert!(repeated || unrestored, "{out}");
        caught += 1;
    }
    eprintln!(
        "{caught} runs carried a suspicion across a swap; the amnesic swap was caught in each"
    );
    assert!(caught >= 3 || std::env::var("SELFMAN_SEED").is_ok(), "{caught} seeds");
}
