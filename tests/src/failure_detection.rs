//! Scenarios for the failure detector and leader election (see [`crate::SCENARIOS`]).
//!
//! Every node runs the heartbeat detector (`selfman-failure-detector`) and a recorder that
//! monitors every other node by address (`NodeId::UNKNOWN`) and logs each indication with its
//! virtual time; the `omega` scenarios add Ω (`selfman-leader-election`) and log each `Trust`.
//! The checks read those logs after the run, so they judge the whole trace, not one instant:
//!
//! * **strong completeness**: for every address that is down at the end (crashed at `t_c`) and
//!   every node running at the end (started at `t_o`), the node's last indication about it is a
//!   `Suspect` raised no later than `max(t_c, t_o) + B`, where `B` = cap + period + the longest
//!   link latency (no restore follows: the suspicion is permanent);
//! * **eventual strong accuracy**: after the network has been stable long enough for any silence
//!   begun before to end, no running node raises `Suspect` about a running one, and none is
//!   left suspected; on links that stall now and then (messages slower than the first
//!   timeout) but stay bounded, each ordered pair sees at most as many false suspicions as
//!   timeout increments are needed to cover the longest possible silence;
//! * **detection time**: a crash on a stable network is detected within twice the observer's
//!   timeout for the crashed node;
//! * **Ω eventual accuracy and agreement**: after the settling bound, every running node trusts
//!   the same running node (the highest-ranked one), and no `Trust` is raised any more.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use selfman_core::{
    Component, ComponentDefinition, Context, Handled, Host, NodeAddr, NodeId, Required, Setup, Time,
};
use selfman_failure_detector::{FdConfig, Flaw, HeartbeatFd};
use selfman_leader_election::Flaw as OmegaFlaw;
use selfman_ports::{FailureDetector, FdIndication, FdRequest, LeaderElection, Trust};
use selfman_sim::{
    address_of, Churn, Latency, LinkModel, Scenario, SimConfig, SimHost, SimNetConfig, Simulation,
};

fn secs(s: f64) -> Time {
    Time::ZERO + Duration::from_secs_f64(s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn any(i: usize) -> NodeAddr {
    NodeAddr::new(address_of(i), NodeId::UNKNOWN)
}

/// One incarnation's life.
#[derive(Debug, Clone)]
struct Life {
    node: NodeAddr,
    start: Time,
    end: Option<Time>,
}

/// What the nodes of a run recorded.
#[derive(Default)]
struct Log {
    /// (time, observer, indication), in the order raised.
    fd: Vec<(Time, NodeAddr, FdIndication)>,
    /// (time, observer, trusted).
    trust: Vec<(Time, NodeAddr, Trust)>,
    /// Every incarnation, in start order.
    lives: Vec<Life>,
    /// Each running incarnation's detector.
    detectors: BTreeMap<NodeAddr, Component<HeartbeatFd>>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Log>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Log> {
        // A poisoned log means a recorder panicked; the data is still usable for reporting.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the life of every incarnation that is no longer running (called after every step,
    /// so crash times are exact).
    fn track(&self, sim: &Simulation) -> Result<(), String> {
        let mut log = self.lock();
        if log.lives.iter().all(|l| l.end.is_some()) {
            return Ok(());
        }
        let alive = sim.alive_nodes();
        let now = sim.now();
        for l in log.lives.iter_mut().filter(|l| l.end.is_none()) {
            if !alive.contains(&l.node) {
                l.end = Some(now);
            }
        }
        Ok(())
    }
}

/// Monitors `watch` on start and logs every indication.
struct FdRecorder {
    ctx: Context,
    me: NodeAddr,
    fd: Required<FailureDetector>,
    watch: Vec<NodeAddr>,
    log: Shared,
}

impl FdRecorder {
    fn new(me: NodeAddr, watch: Vec<NodeAddr>, log: Shared) -> FdRecorder {
        FdRecorder { ctx: Context::new(), me, fd: Required::new(), watch, log }
    }

    fn on_fd(&mut self, ind: FdIndication) -> Handled {
        let now = self.ctx.now();
        self.log.lock().fd.push((now, self.me, ind));
        Ok(())
    }
}

impl ComponentDefinition for FdRecorder {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.fd, Self::on_fd);
    }

    fn on_start(&mut self) -> Handled {
        for &n in &self.watch {
            self.fd.trigger(FdRequest::Monitor(n));
        }
        Ok(())
    }
}

/// Logs every `Trust`.
struct TrustRecorder {
    ctx: Context,
    me: NodeAddr,
    le: Required<LeaderElection>,
    log: Shared,
}

impl TrustRecorder {
    fn new(me: NodeAddr, log: Shared) -> TrustRecorder {
        TrustRecorder { ctx: Context::new(), me, le: Required::new(), log }
    }

    fn on_trust(&mut self, t: Trust) -> Handled {
        let now = self.ctx.now();
        self.log.lock().trust.push((now, self.me, t));
        Ok(())
    }
}

impl ComponentDefinition for TrustRecorder {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.le, Self::on_trust);
    }
}

/// How a node is built in these scenarios.
#[derive(Clone, Copy)]
struct Wiring {
    nodes: usize,
    config: FdConfig,
    /// The detector's deliberate mistake (broken variants).
    flaw: Option<Flaw>,
    /// Add Ω over the detector (group: every node, by address, in index order).
    omega: bool,
    /// Ω's deliberate mistake (broken variant).
    omega_flaw: Option<OmegaFlaw>,
}

/// Builds one node: the detector, a recorder monitoring every other node, and (if asked) Ω
/// over the detector with a recorder of its `Trust`s.
fn build_node(h: &SimHost, w: Wiring, log: &Shared) -> selfman_core::Result<()> {
    let me = h.local();
    let (log1, log2) = (log.clone(), log.clone());
    let nodes = w.nodes;
    // ANCHOR: wiring
    // The detector, with its network and timer (deliberately flawed in broken variants).
    let fd = match w.flaw {
        None => selfman_failure_detector::build(h, w.config)?,
        Some(f) => selfman_failure_detector::build_flawed(h, w.config, f)?,
    };
    let fd_port = fd.provided::<FailureDetector>()?;
    // A user: monitors every other node (by address) on start.
    let watch: Vec<NodeAddr> = (0..nodes).filter(|&i| i != h.index()).map(any).collect();
    let rec = h.create(move || FdRecorder::new(me, watch.clone(), log1.clone()))?;
    h.system().connect(&fd_port, &rec.required()?)?;
    if w.omega {
        // Ω over the same detector; every node in index order is the group (index 0 ranks
        // highest), each member named by address only.
        let group: Vec<NodeAddr> = (0..nodes).map(any).collect();
        let omega = match w.omega_flaw {
            None => selfman_leader_election::build(h, &fd_port, group)?,
            Some(f) => selfman_leader_election::build_flawed(h, &fd_port, group, f)?,
        };
        let tr = h.create(move || TrustRecorder::new(me, log2.clone()))?;
        h.system().connect(&omega.provided::<LeaderElection>()?, &tr.required()?)?;
    }
    // ANCHOR_END: wiring
    let mut l = log.lock();
    l.lives.push(Life { node: me, start: h.system().now(), end: None });
    l.detectors.retain(|n, _| n.addr != me.addr);
    l.detectors.insert(me, fd);
    Ok(())
}

fn net(latency: Latency, loss: f64) -> SimConfig {
    SimConfig {
        network: SimNetConfig {
            default_link: LinkModel { latency, loss },
            ..SimNetConfig::default()
        },
        ..SimConfig::default()
    }
}

/// Jittery, lossy links: 1 ms plus an exponential extra of mean 10 ms (capped at 200 ms).
const JITTER: Latency = Latency::Exponential { base: ms_const(1), mean_extra: ms_const(10) };
const JITTER_MAX: Duration = ms_const(201);
/// Stable links: 1–50 ms, no loss.
const STABLE: Latency = Latency::Uniform { min: ms_const(1), max: ms_const(50) };
const STABLE_MAX: Duration = ms_const(50);

const fn ms_const(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The detection bound `B` of strong completeness: silence for the capped timeout, one period
/// for the next check, and the longest latency of a message sent just before the crash.
fn completeness_bound(c: &FdConfig, max_latency: Duration) -> Duration {
    c.max_timeout + c.period + max_latency + ms(1)
}

/// The indications about address `target` raised by `observer`.
fn about(log: &Log, observer: NodeAddr, target: SocketAddr) -> Vec<(Time, FdIndication)> {
    log.fd
        .iter()
        .filter(|(_, o, i)| *o == observer && i.node().addr == target)
        .map(|&(t, _, i)| (t, i))
        .collect()
}

/// Strong completeness (see the module docs). Returns how many (observer, crashed) pairs it
/// checked.
fn check_completeness(sim: &Simulation, log: &Log, bound: Duration) -> Result<usize, String> {
    let end = sim.now();
    let alive = sim.alive_nodes();
    let mut checked = 0;
    for (addr, cur) in sim.node_slots() {
        if cur.is_some() {
            continue;
        }
        let Some(crashed_at) =
            log.lives.iter().rev().find(|l| l.node.addr == addr).and_then(|l| l.end)
        else {
            return Err(format!("{addr} is down but no crash was recorded"));
        };
        for o in &alive {
            let started = log.lives.iter().find(|l| l.node == *o).map_or(Time::ZERO, |l| l.start);
            let deadline = crashed_at.max(started) + bound;
            if deadline > end {
                continue; // not enough time left to judge
            }
            checked += 1;
            match about(log, *o, addr).last() {
                Some(&(t, FdIndication::Suspect(_))) if t <= deadline => {}
                Some(&(t, i)) => {
                    return Err(format!(
                        "{o} about {addr}, down since {:?}: last indication {i:?} at {:?} \
                         (due by {:?})",
                        crashed_at.since_start(),
                        t.since_start(),
                        deadline.since_start()
                    ))
                }
                None => {
                    return Err(format!(
                        "{o} never suspected {addr}, down since {:?}",
                        crashed_at.since_start()
                    ))
                }
            }
        }
    }
    Ok(checked)
}

/// Eventual strong accuracy on a network stable since before `settled`: no `Suspect` about a
/// running node by a running node at or after `settled`, and none left suspected at the end.
fn check_accuracy(sim: &Simulation, log: &Log, settled: Time) -> Result<(), String> {
    let alive = sim.alive_nodes();
    for o in &alive {
        for p in alive.iter().filter(|p| p.addr != o.addr) {
            let ind = about(log, *o, p.addr);
            if let Some((t, _)) =
                ind.iter().find(|(t, i)| *t >= settled && matches!(i, FdIndication::Suspect(_)))
            {
                return Err(format!(
                    "{o} suspected running {} at {:?}, after the network settled at {:?}",
                    p.addr,
                    t.since_start(),
                    settled.since_start()
                ));
            }
            if let Some((t, FdIndication::Suspect(_))) = ind.last() {
                return Err(format!(
                    "{o} still suspects running {} at the end (since {:?})",
                    p.addr,
                    t.since_start()
                ));
            }
        }
    }
    Ok(())
}

/// Detection time of the crashes in `crashes` (time, victim) by every node that ran
/// throughout: within twice the observer's timeout for the victim. Returns the detection
/// times with those timeouts.
fn check_detection_time(
    sim: &Simulation,
    log: &Log,
    crashes: &[(Time, NodeAddr)],
) -> Result<Vec<(Duration, Duration)>, String> {
    let mut found = Vec::new();
    for &(tc, victim) in crashes {
        for o in sim.alive_nodes() {
            let started = log.lives.iter().find(|l| l.node == o).map_or(Time::ZERO, |l| l.start);
            if started >= tc {
                continue;
            }
            let ind = about(log, o, victim.addr);
            if matches!(
                ind.iter().rev().find(|(t, _)| *t <= tc),
                Some((_, FdIndication::Suspect(_)))
            ) {
                continue; // already suspected when it crashed
            }
            let Some(&(ts, _)) =
                ind.iter().find(|(t, i)| *t > tc && matches!(i, FdIndication::Suspect(_)))
            else {
                return Err(format!("{o} never detected the crash of {victim} at {tc:?}"));
            };
            let timeout = log
                .detectors
                .get(&o)
                .and_then(|d| d.on_definition(|d| d.detector().timeout(any_of(victim))).ok())
                .flatten()
                .ok_or_else(|| format!("no detector state for {o}"))?;
            let took = ts.duration_since(tc);
            if took > 2 * timeout {
                return Err(format!(
                    "{o} took {took:?} to detect the crash of {victim} at {:?}: more than twice \
                     its timeout {timeout:?}",
                    tc.since_start()
                ));
            }
            found.push((took, timeout));
        }
    }
    Ok(found)
}

fn any_of(n: NodeAddr) -> NodeAddr {
    NodeAddr::new(n.addr, NodeId::UNKNOWN)
}

/// Crashes a random running node if more than `min_alive` run; records it in `crashes`.
fn crash_random(
    run: &mut selfman_sim::Run<'_>,
    min_alive: usize,
    crashes: &Mutex<Vec<(Time, NodeAddr)>>,
) -> Result<(), String> {
    if run.sim.alive_nodes().len() <= min_alive {
        return Ok(());
    }
    if let Some(n) = run.random_alive() {
        run.sim.crash(n).map_err(|e| e.to_string())?;
        crashes.lock().unwrap_or_else(|e| e.into_inner()).push((run.sim.now(), n));
    }
    Ok(())
}

const FD_NODES: usize = 12;
/// When the `fd` network becomes stable.
const FD_STABLE_AT: f64 = 6.5;
const FD_END: f64 = 10.5;

/// `fd`: 12 nodes monitoring each other on jittery, lossy links, with crash/restart churn and a
/// partition that heals; then the network becomes stable and two more nodes crash.
fn fd_scenario(name: &str, flaw: Option<Flaw>) -> (Scenario, Probe) {
    let config = FdConfig::default();
    let wiring = Wiring { nodes: FD_NODES, config, flaw, omega: false, omega_flaw: None };
    let probe = Probe::default();
    let (log, crashes) = (probe.log.clone(), probe.crashes.clone());
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    let (c1, c2, c3) = (crashes.clone(), crashes.clone(), crashes.clone());
    let bound = completeness_bound(&config, JITTER_MAX.max(STABLE_MAX));
    let settled = secs(FD_STABLE_AT) + bound;
    let s = Scenario::new(name)
        .config(net(JITTER, 0.05))
        .start_nodes(Time::ZERO, FD_NODES, move |h| build_node(h, wiring, &l1))
        .churn(Churn { crash: 2, restart: 1, ..Churn::crash_restart(secs(1.0), secs(6.0), 1.0, 8) })
        .partition_halves(secs(3.0))
        .heal(secs(4.5))
        .at(secs(FD_STABLE_AT), "stabilize", |run| {
            run.sim.set_default_link(LinkModel { latency: STABLE, loss: 0.0 });
            Ok(())
        })
        .at(secs(7.03), "crash one", move |run| crash_random(run, 7, &c1))
        .at(secs(7.61), "crash another", move |run| crash_random(run, 7, &c2))
        .check_always("record lifetimes", move |sim| l2.track(sim))
        .check_at_end("strong completeness, accuracy, detection time", move |sim| {
            let log = l3.lock();
            let checked = check_completeness(sim, &log, bound)?;
            check_accuracy(sim, &log, settled)?;
            let crashes = c3.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let detected = check_detection_time(sim, &log, &crashes)?;
            let restores =
                log.fd.iter().filter(|(_, _, i)| matches!(i, FdIndication::Restore(_))).count();
            if checked == 0 || detected.is_empty() || restores == 0 {
                return Err(format!(
                    "the run exercised too little: {checked} completeness pairs, {} timed \
                     detections, {restores} restores",
                    detected.len()
                ));
            }
            Ok(())
        })
        .until(secs(FD_END));
    (s, probe)
}

/// See [`crate::SCENARIOS`].
pub fn fd() -> Scenario {
    fd_scenario("fd", None).0
}

/// See [`crate::SCENARIOS`].
pub fn fd_broken() -> Scenario {
    fd_scenario("fd-broken", Some(Flaw::NeverRestore)).0
}

/// Latency of the `fd-slow` links while they stall: longer than the first timeout (400 ms).
const STALL: Latency = Latency::Uniform { min: ms_const(350), max: ms_const(450) };
const STALL_MAX: Duration = ms_const(450);
/// When the `fd-slow` links stall, each time for 300 ms.
const STALLS: [f64; 4] = [1.0, 2.5, 4.0, 5.5];
const SLOW_END: f64 = 10.0;

/// The most false suspicions a correct detector can make per ordered pair of correct nodes
/// on links whose latency is at most `max_latency`, when the two monitor each other: each
/// hears the other's pings at least every period plus `max_latency` (its own probes' answers
/// only add to that), and each false suspicion grows the timeout by one increment.
fn max_false_suspicions(c: &FdConfig, max_latency: Duration) -> usize {
    let silence = c.period + max_latency;
    let missing = silence.saturating_sub(c.initial_timeout).as_nanos();
    missing.div_ceil(c.increment.as_nanos().max(1)) as usize
}

/// `fd-slow`: links that stall now and then (messages take longer than the first timeout)
/// but are bounded; no loss, no partition; crash-stop after the last stall.
fn fd_slow_scenario(name: &str, flaw: Option<Flaw>) -> (Scenario, Probe) {
    let config = FdConfig::default();
    let wiring = Wiring { nodes: FD_NODES, config, flaw, omega: false, omega_flaw: None };
    let probe = Probe::default();
    let (log, crashes) = (probe.log.clone(), probe.crashes.clone());
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    let (c1, c2, c3, c4) = (crashes.clone(), crashes.clone(), crashes.clone(), crashes.clone());
    let bound = completeness_bound(&config, STALL_MAX);
    let allowed = max_false_suspicions(&config, STALL_MAX);
    let mut s =
        Scenario::new(name)
            .config(net(STABLE, 0.0))
            .start_nodes(Time::ZERO, FD_NODES, move |h| build_node(h, wiring, &l1));
    for t in STALLS {
        s = s
            .at(secs(t), "stall", |run| {
                run.sim.set_default_link(LinkModel { latency: STALL, loss: 0.0 });
                Ok(())
            })
            .at(secs(t + 0.3), "unstall", |run| {
                run.sim.set_default_link(LinkModel { latency: STABLE, loss: 0.0 });
                Ok(())
            });
    }
    let s = s
        .at(secs(6.53), "crash one", move |run| crash_random(run, 7, &c1))
        .at(secs(7.07), "crash another", move |run| crash_random(run, 7, &c2))
        .at(secs(7.71), "crash a third", move |run| crash_random(run, 7, &c3))
        .check_always("record lifetimes", move |sim| l2.track(sim))
        .check_at_end("completeness, bounded false suspicions, detection time", move |sim| {
            let log = l3.lock();
            let checked = check_completeness(sim, &log, bound)?;
            let alive = sim.alive_nodes();
            for o in &alive {
                for p in alive.iter().filter(|p| p.addr != o.addr) {
                    let ind = about(&log, *o, p.addr);
                    let wrong =
                        ind.iter().filter(|(_, i)| matches!(i, FdIndication::Suspect(_))).count();
                    if wrong > allowed {
                        return Err(format!(
                            "{o} suspected running {} {wrong} times; with latency <= {STALL_MAX:?} \
                             at most {allowed} false suspicions fit before its timeout covers \
                             every silence",
                            p.addr
                        ));
                    }
                    if let Some((t, FdIndication::Suspect(_))) = ind.last() {
                        return Err(format!(
                            "{o} still suspects running {} (since {:?})",
                            p.addr,
                            t.since_start()
                        ));
                    }
                }
            }
            let crashes = c4.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let detected = check_detection_time(sim, &log, &crashes)?;
            let restores =
                log.fd.iter().filter(|(_, _, i)| matches!(i, FdIndication::Restore(_))).count();
            if checked == 0 || detected.is_empty() || restores == 0 {
                return Err(format!(
                    "the run exercised too little: {checked} completeness pairs, {} timed \
                     detections, {restores} restores after stalls",
                    detected.len()
                ));
            }
            Ok(())
        })
        .until(secs(SLOW_END));
    (s, probe)
}

/// See [`crate::SCENARIOS`].
pub fn fd_slow() -> Scenario {
    fd_slow_scenario("fd-slow", None).0
}

/// See [`crate::SCENARIOS`].
pub fn fd_slow_broken() -> Scenario {
    fd_slow_scenario("fd-slow-broken", Some(Flaw::FixedTimeout)).0
}

/// What the nodes of a run recorded, kept by the scenario builder for [`fd_report`].
#[derive(Clone, Default)]
struct Probe {
    log: Shared,
    crashes: Arc<Mutex<Vec<(Time, NodeAddr)>>>,
}

/// A crash detected on a stable network: how long it took, and the observer's timeout for the
/// crashed node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    /// From the crash to the observer's `Suspect`.
    pub took: Duration,
    /// The observer's timeout for the crashed node.
    pub timeout: Duration,
}

/// Figures from one run of a detector scenario (`fd`, `fd-slow` and their broken variants).
#[derive(Debug, Clone)]
pub struct FdReport {
    /// The run's outcome.
    pub outcome: selfman_sim::Outcome,
    /// `Suspect` indications raised.
    pub suspects: usize,
    /// `Restore` indications raised (each one a false suspicion corrected, or a restarted
    /// node).
    pub restores: usize,
    /// Detections of the crashes on a stable network, by every node that ran throughout.
    pub detections: Vec<Detection>,
    /// The largest timeout any running node had for any peer at the end.
    pub max_timeout: Duration,
}

/// Runs detector scenario `name` with `seed` and reports its figures; `None` for another
/// scenario name.
pub fn fd_report(name: &str, seed: u64) -> Option<FdReport> {
    let (s, probe) = match name {
        "fd" => fd_scenario(name, None),
        "fd-broken" => fd_scenario(name, Some(Flaw::NeverRestore)),
        "fd-slow" => fd_slow_scenario(name, None),
        "fd-slow-broken" => fd_slow_scenario(name, Some(Flaw::FixedTimeout)),
        _ => return None,
    };
    let mut detections = Vec::new();
    let mut max_timeout = Duration::ZERO;
    let outcome = s.run_inspect(seed, |sim| {
        let log = probe.log.lock();
        let crashes = probe.crashes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        detections = check_detection_time(sim, &log, &crashes)
            .unwrap_or_default()
            .into_iter()
            .map(|(took, timeout)| Detection { took, timeout })
            .collect();
        for n in sim.alive_nodes() {
            if let Some(d) = log.detectors.get(&n) {
                let t = d.on_definition(|d| {
                    (0..FD_NODES).filter_map(|i| d.detector().timeout(any(i))).max()
                });
                max_timeout = max_timeout.max(t.ok().flatten().unwrap_or_default());
            }
        }
    });
    let log = probe.log.lock();
    let count = |suspect: bool| {
        log.fd.iter().filter(|(_, _, i)| matches!(i, FdIndication::Suspect(_)) == suspect).count()
    };
    Some(FdReport {
        suspects: count(true),
        restores: count(false),
        outcome,
        detections,
        max_timeout,
    })
}

const OMEGA_NODES: usize = 7;
const OMEGA_STABLE_AT: f64 = 6.0;
const OMEGA_END: f64 = 10.0;

/// Crashes the highest-ranked running node (the leader, once things have settled).
fn crash_leader(run: &mut selfman_sim::Run<'_>) -> Result<(), String> {
    match run.sim.alive_nodes().first() {
        Some(&n) => run.sim.crash(n).map_err(|e| e.to_string()),
        None => Err("no node runs".into()),
    }
}

/// `omega`: 7 nodes electing a leader over the detector on jittery, lossy links; the leader
/// crashes twice (plus one random node: 3 of 7), a partition heals, then the network is stable.
fn omega_scenario(name: &str, flaw: Option<OmegaFlaw>) -> Scenario {
    let config = FdConfig::default();
    let wiring = Wiring { nodes: OMEGA_NODES, config, flaw: None, omega: true, omega_flaw: flaw };
    let log = Shared::default();
    let (l1, l2) = (log.clone(), log.clone());
    let crashes: Arc<Mutex<Vec<(Time, NodeAddr)>>> = Arc::default();
    let settled = secs(OMEGA_STABLE_AT) + completeness_bound(&config, JITTER_MAX);
    Scenario::new(name)
        .config(net(JITTER, 0.05))
        .start_nodes(Time::ZERO, OMEGA_NODES, move |h| build_node(h, wiring, &l1))
        .at(secs(1.5), "crash the leader", crash_leader)
        .at(secs(2.5), "crash a random node", move |run| crash_random(run, 4, &crashes))
        .partition_halves(secs(3.0))
        .heal(secs(4.5))
        .at(secs(5.0), "crash the leader again", crash_leader)
        .at(secs(OMEGA_STABLE_AT), "stabilize", |run| {
            run.sim.set_default_link(LinkModel { latency: STABLE, loss: 0.0 });
            Ok(())
        })
        .check_at_end("eventual accuracy and agreement", move |sim| {
            let log = l2.lock();
            let alive = sim.alive_nodes();
            let Some(highest) = alive.first() else { return Err("no node runs".into()) };
            let mut leaders = BTreeMap::new();
            for o in &alive {
                let mine: Vec<_> = log.trust.iter().filter(|(_, n, _)| n == o).collect();
                let Some(&&(t, _, Trust(leader))) = mine.last() else {
                    return Err(format!("{o} never trusted anyone"));
                };
                if !alive.iter().any(|a| a.addr == leader.addr) {
                    return Err(format!("{o} trusts {leader}, which has crashed"));
                }
                if t >= settled {
                    return Err(format!(
                        "{o} changed its leader at {:?}, after things settled at {:?}",
                        t.since_start(),
                        settled.since_start()
                    ));
                }
                leaders.insert(*o, leader);
            }
            let distinct: std::collections::BTreeSet<_> = leaders.values().collect();
            if distinct.len() > 1 {
                return Err(format!("correct nodes trust different leaders: {leaders:?}"));
            }
            if leaders.values().any(|l| l.addr != highest.addr) {
                return Err(format!(
                    "they trust {:?}, not the highest-ranked correct node {highest}",
                    distinct
                ));
            }
            if sim.alive_nodes().len() != OMEGA_NODES - 3 {
                return Err("the run did not crash 3 nodes".into());
            }
            Ok(())
        })
        .until(secs(OMEGA_END))
}

/// See [`crate::SCENARIOS`].
pub fn omega() -> Scenario {
    omega_scenario("omega", None)
}

/// See [`crate::SCENARIOS`].
pub fn omega_broken() -> Scenario {
    omega_scenario("omega-broken", Some(OmegaFlaw::IgnoreSuspicions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn false_suspicion_budget_follows_the_config() {
        let c = FdConfig::default(); // period 100, first 400, +200
        assert_eq!(max_false_suspicions(&c, ms(300)), 0); // silence <= 400
        assert_eq!(max_false_suspicions(&c, ms(450)), 1); // <= 550
        assert_eq!(max_false_suspicions(&c, ms(550)), 2); // <= 650
    }
}
