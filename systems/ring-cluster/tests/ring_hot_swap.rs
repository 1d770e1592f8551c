//! Hot swap of a running ring, in the simulator: every node's failure detector and every
//! node's relaxed ring are replaced live — the detector by one with Beernet's timing, the ring
//! by the same implementation with another configuration, each taking over its predecessor's
//! state — while four nodes keep looking up random keys every 5 ms. Then a node is crashed,
//! to show that the swapped detectors still watch what the rings asked them to.
//!
//! Each run (one seed) wires 16 nodes with [`build_node`] (the real `HeartbeatFd` and
//! `RelaxedRing`, as the `ring-cluster` program does over TCP), on links with exponential
//! latencies (1 ms + 3 ms mean). Node 0 bootstraps, the others join through it one every
//! 100 ms. The seed draws, per node, the instant of its detector's swap (6.5–8 s) and of its
//! ring's (6.8–8.3 s): old and new configurations run side by side, and some rings are
//! replaced before their detector.
//!
//! | | before | after |
//! |---|---|---|
//! | detector | `FdConfig::default()` (100 ms, 400 ms – 2 s) | `FdConfig::beernet()` (250 ms, 500 ms – 2 s) |
//! | ring | `RingConfig::default()` (k = 4, check-in 1 s, lists of 7) | k = 2, check-in 500 ms, successor lists of 5 |
//!
//! Checks:
//!
//! * always (every 50 ms from 5 s): **lookup consistency** — no two live peers own one key
//!   (`selfman_ports::ring_check::overlap`); no swap failed;
//! * 5.5 s: one ring (the setup works);
//! * 11.5 s: **every lookup issued from 6 s to 9.5 s — before, during and after the swaps — was
//!   answered, by the peer that owns its key**; none failed. And every detector and every ring
//!   swapped exactly once, no event dropped, each running its new configuration; one ring
//!   under the new successor-list size (`ring_check::convergence`, fingers included);
//! * the crash of a node at 12 s is repaired by 15 s (pointers, ranges and successor lists agree
//!   with the sorted order of the live peers), and every lookup issued from 15 s to 17 s names
//!   the owner.
//!
//! Three broken swaps must be caught by these checks: a ring replaced **without its state**
//! (the new peer is outside the ring: lookups fail), a ring whose transfer **forgets the
//! lookups in flight** (they are never answered), and a detector replaced **without its state**
//! (it has forgotten the ring's watches: the crash is never repaired).
//!
//! More seeds: `SELFMAN_SEEDS=200 cargo test --release -p selfman-ring-cluster --test
//! ring_hot_swap`; one seed: `SELFMAN_SEED=S …`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use selfman_core::{
    Component, ComponentDefinition, Context, Handled, Host, NodeAddr, NodeId, Required, Rng, Setup,
    Swap, Time, Timeout, Timer, TimerId,
};
use selfman_failure_detector::{FdConfig, HeartbeatFd};
use selfman_ports::ring_check::{convergence, lookup_fault, overlap, ring_convergence};
use selfman_ports::{
    LookupOutcome, Peer, Ring, RingId, RingIndication, RingRequest, RingView, RingViews,
};
use selfman_relaxed_ring::{RelaxedRing, RelaxedRingMachine, RingConfig, RingState};
use selfman_ring_cluster::{build_node, NodeConfig};
use selfman_sim::{
    address_of, seeds, Latency, LinkModel, Outcome, Scenario, SimConfig, SimHost, SimNetConfig,
    Simulation,
};

const NODES: usize = 16;
/// The nodes that look keys up.
const CLIENTS: [usize; 4] = [2, 6, 10, 14];
/// Each client looks up a random key this often.
const EVERY: Duration = Duration::from_millis(5);
/// Lookups around the swaps: issued in `[LOOK_A.0, LOOK_A.1)`.
const LOOK_A: (u64, u64) = (6_000, 9_500);
/// Lookups after the repair.
const LOOK_B: (u64, u64) = (15_000, 17_000);
const CRASH_AT: u64 = 12_000;
/// The crash is repaired by then: the new detector suspects within 500 + 250 ms, the ring
/// repairs in a round trip or, at worst, one check-in (500 ms) later.
const REPAIRED_BY: u64 = 15_000;
const END: u64 = 20_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at_ms(n: u64) -> Time {
    Time::ZERO + ms(n)
}

fn new_fd() -> FdConfig {
    FdConfig::beernet()
}

fn new_ring() -> RingConfig {
    RingConfig { k: 2, stabilize: ms(500), succ_list_size: 5, ..RingConfig::default() }
}

fn link() -> LinkModel {
    LinkModel { latency: Latency::Exponential { base: ms(1), mean_extra: ms(3) }, loss: 0.0 }
}

/// How the components are replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Swapping {
    /// `reconfigure` for both: each new component takes over the old one's whole state.
    WithState,
    /// Deliberately broken: a fresh ring (outside any ring), the detector as in `WithState`.
    RingFresh,
    /// Deliberately broken: the ring's state is transferred without its lookups in flight.
    RingForgetsLookups,
    /// Deliberately broken: a fresh detector (no watches), the ring as in `WithState`.
    FdFresh,
}

/// What one seed does, and when.
#[derive(Clone, Debug)]
struct Plan {
    swapping: Swapping,
    fd_at: [Time; NODES],
    ring_at: [Time; NODES],
    victim: usize,
}

impl Plan {
    fn new(seed: u64, swapping: Swapping) -> Plan {
        let mut rng = Rng::seeded(seed ^ 0x7269_6e67_5f73_7770); // "ring_swp"
        let mut between = |lo: u64, hi: u64| at_ms(lo + rng.below(hi - lo + 1));
        let fd_at = std::array::from_fn(|_| between(6_500, 8_000));
        let ring_at = std::array::from_fn(|_| between(6_800, 8_300));
        let others: Vec<usize> = (0..NODES).filter(|i| !CLIENTS.contains(i)).collect();
        let victim = others[rng.below(others.len() as u64) as usize];
        Plan { swapping, fd_at, ring_at, victim }
    }
}

/// One lookup a client issued.
#[derive(Clone, Copy, Debug)]
struct Issued {
    key: RingId,
    at: Time,
    answer: Option<(LookupOutcome, Time)>,
}

/// Everything the run records; checks read it.
#[derive(Default)]
struct State {
    rings: BTreeMap<usize, Component<RelaxedRing<u64>>>,
    fds: BTreeMap<usize, Component<HeartbeatFd>>,
    /// (client, tag) → the lookup.
    lookups: BTreeMap<(usize, u64), Issued>,
    /// Answers to lookups nobody issued, or answered twice.
    strays: Vec<String>,
    /// Swaps requested and not yet reported: (node, "fd" | "ring", swap).
    pending: Vec<(usize, &'static str, Swap)>,
    /// When each swap was reported done.
    swapped: BTreeMap<(usize, &'static str), Time>,
    /// Lookups in flight at a ring when its swap was requested (the swap happens at the
    /// ring's next turn, before it handles anything else).
    carried: usize,
}

type World = Arc<Mutex<State>>;

fn lock(w: &World) -> MutexGuard<'_, State> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// Looks up a random key every [`EVERY`] while the time is in one of `windows`; records each
/// lookup and its answer.
struct Client {
    ctx: Context,
    ring: Required<Ring<u64>>,
    timer: Required<Timer>,
    me: usize,
    next_tag: u64,
    world: World,
}

impl Client {
    fn on_tick(&mut self, _: Timeout) -> Handled {
        let now = self.ctx.now();
        let active = [LOOK_A, LOOK_B].iter().any(|&(a, b)| (at_ms(a)..at_ms(b)).contains(&now));
        if active {
            let key = RingId(self.ctx.rng().next_u64());
            let tag = self.next_tag;
            self.next_tag += 1;
            lock(&self.world).lookups.insert((self.me, tag), Issued { key, at: now, answer: None });
            self.ring.trigger(RingRequest::Lookup { key, tag });
        }
        Ok(())
    }

    fn on_ring(&mut self, i: RingIndication<u64>) -> Handled {
        if let RingIndication::LookupResult { key, tag, outcome } = i {
            let now = self.ctx.now();
            let mut w = lock(&self.world);
            match w.lookups.get_mut(&(self.me, tag)) {
                Some(l) if l.key == key && l.answer.is_none() => l.answer = Some((outcome, now)),
                other => {
                    let why =
                        format!("n{}: answer {outcome:?} to lookup {tag} ({other:?})", self.me);
                    w.strays.push(why);
                }
            }
        }
        Ok(())
    }
}

impl ComponentDefinition for Client {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.ring, Self::on_ring);
        s.require(|c| &mut c.timer, Self::on_tick);
    }

    fn on_start(&mut self) -> Handled {
        self.timer.schedule_periodic(TimerId(1), EVERY, EVERY);
        Ok(())
    }
}

fn build(h: &SimHost, world: &World, views: &RingViews) -> selfman_core::Result<()> {
    let me = h.index();
    let node = build_node::<u64, _>(h, &NodeConfig::default())?;
    views.register(h.local(), &node.ring);
    if CLIENTS.contains(&me) {
        let w = world.clone();
        let client = h.create(move || Client {
            ctx: Context::new(),
            ring: Required::new(),
            timer: Required::new(),
            me,
            next_tag: 0,
            world: w.clone(),
        })?;
        h.system().connect(&node.ring_port()?, &client.required::<Ring<u64>>()?)?;
        h.system().connect(&h.timer()?, &client.required::<Timer>()?)?;
    }
    let req = if me == 0 {
        RingRequest::Bootstrap
    } else {
        RingRequest::Join { access: NodeAddr::new(address_of(0), NodeId::UNKNOWN) }
    };
    node.ring_port()?.request(req)?;
    let mut w = lock(world);
    w.rings.insert(me, node.ring.clone());
    w.fds.insert(me, node.fd.clone());
    Ok(())
}

/// The broken transfer of [`Swapping::RingForgetsLookups`]: the whole state but the lookups in
/// flight (removed from the serialised state), under the new configuration.
fn transfer_forgetting_lookups(old: &mut RelaxedRing<u64>, new: &mut RelaxedRing<u64>) {
    let mut saved = serde_json::to_value(old.machine().save()).expect("the state is plain data");
    saved["state"]["pending"] = serde_json::json!({});
    let saved: RingState = serde_json::from_value(saved).expect("the same state, fewer lookups");
    let mut machine = RelaxedRingMachine::new(old.machine().me().addr, *new.machine().config());
    machine.take_over(saved);
    *new = RelaxedRing::from_machine(machine);
}

/// Requests the replacement of node `i`'s detector.
fn swap_fd(sim: &Simulation, plan: &Plan, world: &World, i: usize) -> Result<(), String> {
    let fd = lock(world).fds.get(&i).cloned().ok_or(format!("n{i} has no detector"))?;
    let swap = match plan.swapping {
        Swapping::FdFresh => sim.system().replace(fd.untyped(), || HeartbeatFd::new(new_fd())),
        _ => selfman_failure_detector::reconfigure(sim.system(), &fd, new_fd()),
    }
    .map_err(|e| format!("n{i}: {e}"))?;
    lock(world).pending.push((i, "fd", swap));
    Ok(())
}

// ANCHOR: swap_ring
/// Requests the replacement of node `i`'s ring.
fn swap_ring(sim: &Simulation, plan: &Plan, world: &World, i: usize) -> Result<(), String> {
    let ring = lock(world).rings.get(&i).cloned().ok_or(format!("n{i} has no ring"))?;
    let (me, in_flight) = ring
        .on_definition(|d| (d.machine().me().addr, d.machine().pending_lookups()))
        .map_err(|e| e.to_string())?;
    lock(world).carried += in_flight;
    let factory = move || RelaxedRing::<u64>::new(me, new_ring());
    let swap = match plan.swapping {
        Swapping::RingFresh => sim.system().replace(ring.untyped(), factory),
        Swapping::RingForgetsLookups => {
            sim.system().replace_with_state(&ring, factory, transfer_forgetting_lookups)
        }
        _ => selfman_relaxed_ring::reconfigure(sim.system(), &ring, me, new_ring()),
    }
    .map_err(|e| format!("n{i}: {e}"))?;
    lock(world).pending.push((i, "ring", swap));
    Ok(())
}
// ANCHOR_END: swap_ring

/// After every step: swaps reported (polled: the simulator runs on this thread), none failed,
/// and lookup consistency.
fn check_always(sim: &Simulation, world: &World, views: &RingViews) -> Result<(), String> {
    let mut w = lock(world);
    let now = sim.now();
    let mut still = Vec::new();
    for (i, what, s) in std::mem::take(&mut w.pending) {
        match s.try_outcome() {
            None => still.push((i, what, s)),
            Some(Ok(())) => {
                w.swapped.insert((i, what), now);
            }
            Some(Err(e)) => return Err(format!("the swap of n{i}'s {what} failed: {e}")),
        }
    }
    w.pending = still;
    if let Some(s) = w.strays.first() {
        return Err(s.clone());
    }
    drop(w);
    if now >= at_ms(5_000) {
        if let Some(o) = overlap(&views.snapshot()) {
            return Err(format!("lookup consistency: {o}"));
        }
    }
    Ok(())
}

fn one_ring(views: &BTreeMap<NodeAddr, RingView>, n: usize, list: usize) -> Result<(), String> {
    if views.len() != n {
        return Err(format!("{} live peers, expected {n}", views.len()));
    }
    let faults = ring_convergence(views, list);
    match faults.first() {
        None => Ok(()),
        Some(f) => Err(format!("{f} (and {} more faults)", faults.len() - 1)),
    }
}

/// At 11.5 s: every component swapped once into its new configuration; one ring again.
fn check_swapped(world: &World, views: &RingViews) -> Result<(), String> {
    let w = lock(world);
    for i in 0..NODES {
        for what in ["fd", "ring"] {
            if !w.swapped.contains_key(&(i, what)) {
                return Err(format!("n{i}'s {what} was not replaced"));
            }
        }
        let (fd, ring) = (&w.fds[&i], &w.rings[&i]);
        for (what, c) in [("fd", fd.untyped()), ("ring", ring.untyped())] {
            if c.swaps() != 1 || c.dropped() != 0 {
                return Err(format!("n{i}'s {what}: {} swaps, {} dropped", c.swaps(), c.dropped()));
            }
        }
        let fd_config = fd.on_definition(|d| *d.detector().config()).map_err(|e| e.to_string())?;
        let ring_config =
            ring.on_definition(|d| *d.machine().config()).map_err(|e| e.to_string())?;
        if fd_config != new_fd() || ring_config != new_ring() {
            return Err(format!("n{i} runs {fd_config:?} and {ring_config:?} after the swaps"));
        }
    }
    drop(w);
    let faults = convergence(&views.snapshot(), new_ring().succ_list_size);
    match faults.first() {
        None => Ok(()),
        Some(f) => {
            Err(format!("not one ring after the swaps: {f} (and {} more)", faults.len() - 1))
        }
    }
}

/// Every lookup issued in `window` was answered by the owner of its key among `peers`.
fn check_lookups(world: &World, window: (u64, u64), peers: &[Peer]) -> Result<usize, String> {
    let w = lock(world);
    let issued = (at_ms(window.0)..at_ms(window.1), w.lookups.iter());
    let mut n = 0;
    for ((client, tag), l) in issued.1.filter(|(_, l)| issued.0.contains(&l.at)) {
        n += 1;
        let (outcome, answered) = l
            .answer
            .ok_or(format!("n{client}'s lookup {tag} of {} at {:?}: no answer", l.key, l.at))?;
        if let Some(why) = lookup_fault(peers, l.key, &outcome) {
            return Err(format!(
                "n{client}'s lookup {tag} at {:?}, answered at {answered:?}: {why}",
                l.at
            ));
        }
    }
    let expected = CLIENTS.len() as u128 * (ms(window.1 - window.0).as_nanos() / EVERY.as_nanos());
    if (n as u128) + 4 < expected {
        return Err(format!("{n} lookups issued in {window:?}, expected about {expected}"));
    }
    Ok(n)
}

fn scenario(seed: u64, swapping: Swapping) -> (Scenario, World) {
    let plan = Plan::new(seed, swapping);
    let world: World = Arc::new(Mutex::new(State::default()));
    let views = RingViews::new();
    let name = match swapping {
        Swapping::WithState => "ring-hot-swap",
        Swapping::RingFresh => "ring-hot-swap-fresh-ring",
        Swapping::RingForgetsLookups => "ring-hot-swap-forgets-lookups",
        Swapping::FdFresh => "ring-hot-swap-fresh-fd",
    };
    let config = SimConfig {
        network: SimNetConfig { default_link: link(), ..SimNetConfig::default() },
        ..SimConfig::default()
    };
    let mut s = Scenario::new(name)
        .config(config)
        .replay_with("SELFMAN_SEED={seed} cargo test -p selfman-ring-cluster --test ring_hot_swap");
    for i in 0..NODES {
        let (w, v) = (world.clone(), views.clone());
        s = s.start_nodes(at_ms(100 * i as u64), 1, move |h| build(h, &w, &v));
    }
    let v = views.clone();
    s = s.check_at(at_ms(5_500), "one ring before the swaps", move |_| {
        one_ring(&v.snapshot(), NODES, RingConfig::default().succ_list_size)
    });
    for i in 0..NODES {
        let (p, w) = (plan.clone(), world.clone());
        s = s.at(plan.fd_at[i], format!("swap n{i}'s detector"), move |run| {
            swap_fd(run.sim, &p, &w, i)
        });
        let (p, w) = (plan.clone(), world.clone());
        s = s.at(plan.ring_at[i], format!("swap n{i}'s ring"), move |run| {
            swap_ring(run.sim, &p, &w, i)
        });
    }
    let (w, v) = (world.clone(), views.clone());
    s = s.check_always("swaps and lookup consistency", move |sim| check_always(sim, &w, &v));
    let (w, v) = (world.clone(), views.clone());
    s = s.check_at(at_ms(11_500), "lookups during the swaps", move |_| {
        // Nobody has crashed yet: the owners are among all 16 peers.
        let peers: Vec<Peer> = v.snapshot().values().map(|v| v.me).collect();
        check_lookups(&w, LOOK_A, &peers)?;
        check_swapped(&w, &v)
    });
    let victim = plan.victim;
    s = s.at(at_ms(CRASH_AT), "crash a node", move |run| {
        let node = run.sim.alive_nodes().into_iter().find(|n| n.addr == address_of(victim));
        run.sim.crash(node.ok_or("the victim is not running")?).map_err(|e| e.to_string())
    });
    let v = views.clone();
    s = s.check_at(at_ms(REPAIRED_BY), "repair after the crash", move |_| {
        one_ring(&v.snapshot(), NODES - 1, new_ring().succ_list_size)
    });
    let (w, v) = (world.clone(), views.clone());
    s = s.check_at(at_ms(END - 500), "lookups after the repair", move |_| {
        let peers: Vec<Peer> = v.snapshot().values().map(|v| v.me).collect();
        check_lookups(&w, LOOK_B, &peers).map(|_| ())
    });
    (s.until(at_ms(END)), world)
}

fn run(seed: u64, swapping: Swapping) -> Outcome {
    scenario(seed, swapping).0.run_quiet(seed)
}

#[test]
fn detectors_and_rings_are_swapped_live_and_no_lookup_fails() {
    for seed in seeds(0..6) {
        let out = run(seed, Swapping::WithState);
        out.assert_ok();
        assert_eq!(out.alive, NODES - 1, "{out}");
    }
}

#[test]
fn runs_exercise_what_they_claim() {
    // Lookups are in flight at the rings being replaced (and carried over), lookups run
    // throughout the swaps, and both windows issue the lookups they should.
    let mut carried = 0;
    for seed in 0..3 {
        let (s, world) = scenario(seed, Swapping::WithState);
        s.run_quiet(seed).assert_ok();
        let plan = Plan::new(seed, Swapping::WithState);
        let w = lock(&world);
        carried += w.carried;
        let first = plan.fd_at.iter().chain(&plan.ring_at).min().copied().expect("16 nodes");
        let last = plan.fd_at.iter().chain(&plan.ring_at).max().copied().expect("16 nodes");
        let during = w.lookups.values().filter(|l| (first..=last).contains(&l.at)).count();
        assert!(during > 4 * 200, "seed {seed}: {during} lookups issued during the swaps");
        // Lookups that went out before a client's ring was replaced and came back after.
        let across = w
            .lookups
            .iter()
            .filter(|((c, _), l)| {
                let swapped = w.swapped[&(*c, "ring")];
                l.at < swapped && l.answer.is_some_and(|(_, t)| t >= swapped)
            })
            .count();
        assert!(across >= 1, "seed {seed}: no lookup crossed its client's ring swap");
    }
    assert!(carried >= 3, "only {carried} lookups were in flight at a ring being replaced");
}

#[test]
fn a_run_replays_bit_for_bit() {
    let (a, b) = (run(3, Swapping::WithState), run(3, Swapping::WithState));
    assert_eq!((a.trace_hash, a.turns, a.net), (b.trace_hash, b.turns, b.net));
    assert_ne!(a.trace_hash, run(4, Swapping::WithState).trace_hash);
}

#[test]
fn a_ring_replaced_without_its_state_is_caught() {
    for seed in seeds(0..2) {
        let out = run(seed, Swapping::RingFresh);
        let v = out.violations.first().unwrap_or_else(|| panic!("not caught: {out}"));
        // The fresh peers are outside the ring: lookups through them fail.
        assert_eq!(v.check, "lookups during the swaps", "{out}");
        assert!(v.message.contains("failed") || v.message.contains("answered by"), "{out}");
    }
}

#[test]
fn a_ring_swap_that_forgets_the_lookups_in_flight_is_caught() {
    for seed in seeds(0..2) {
        let out = run(seed, Swapping::RingForgetsLookups);
        let v = out.violations.first().unwrap_or_else(|| panic!("not caught: {out}"));
        assert_eq!(v.check, "lookups during the swaps", "{out}");
        assert!(v.message.contains("no answer"), "{out}");
    }
}

#[test]
fn a_detector_replaced_without_its_state_is_caught() {
    for seed in seeds(0..2) {
        let out = run(seed, Swapping::FdFresh);
        let v = out.violations.first().unwrap_or_else(|| panic!("not caught: {out}"));
        assert_eq!(v.check, "repair after the crash", "{out}");
    }
}
