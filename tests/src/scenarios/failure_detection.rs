//! Scenarios of the failure detector and leader election (see [`crate::SCENARIOS`]): every
//! node runs the heartbeat detector (`selfman-failure-detector`) and a recorder that monitors
//! every other node by address (`NodeId::UNKNOWN`) and logs each indication with its virtual
//! time; the `omega` scenarios add Ω (`selfman-leader-election`) and log each `Trust`
//! ([`build_detector_node`](super::nodes)). The checks
//! ([`checkers::failure_detection`](crate::checkers::failure_detection)) read that record after
//! the run:
//!
//! * `fd`: 12 nodes on jittery, lossy links, churn and a healed partition, then a stable
//!   network and two crashes: strong completeness, eventual strong accuracy, detection time;
//! * `fd-slow`: links that stall beyond the first timeout but stay bounded: completeness,
//!   bounded false suspicions, detection time;
//! * `omega`: 7 nodes, the leader crashed twice: eventual accuracy and agreement;
//! * `fd-broken`, `fd-slow-broken`, `omega-broken`: the same with a deliberate flaw; the checks
//!   must fail.

use std::time::Duration;

use selfman_core::testkit::Log;
use selfman_core::{NodeAddr, Time};
use selfman_failure_detector::{FdConfig, Flaw};
use selfman_leader_election::Flaw as OmegaFlaw;
use selfman_ports::FdIndication;
use selfman_sim::{Churn, Latency, LinkModel, Scenario, SimConfig, SimNetConfig};

use crate::checkers::failure_detection::{
    check_accuracy, check_completeness, check_detection_time, check_false_suspicions,
    check_leadership, completeness_bound, max_false_suspicions, DetectionRecord,
};
use crate::scenarios::member;
use crate::scenarios::nodes::{build_detector_node, Wiring};

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

/// Crashes a random running node if more than `min_alive` run; records it in `crashes`.
fn crash_random(
    run: &mut selfman_sim::Run<'_>,
    min_alive: usize,
    crashes: &Log<Vec<(Time, NodeAddr)>>,
) -> Result<(), String> {
    if run.sim.alive_nodes().len() <= min_alive {
        return Ok(());
    }
    if let Some(n) = run.random_alive() {
        run.sim.crash(n).map_err(|e| e.to_string())?;
        crashes.push((run.sim.now(), n));
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
    let settled = Time::from_secs_f64(FD_STABLE_AT) + bound;
    let s = Scenario::new(name)
        .config(net(JITTER, 0.05))
        .start_nodes(Time::ZERO, FD_NODES, move |h| build_detector_node(h, wiring, &l1))
        .churn(Churn {
            crash: 2,
            restart: 1,
            ..Churn::crash_restart(Time::from_secs_f64(1.0), Time::from_secs_f64(6.0), 1.0, 8)
        })
        .partition_halves(Time::from_secs_f64(3.0))
        .heal(Time::from_secs_f64(4.5))
        .at(Time::from_secs_f64(FD_STABLE_AT), "stabilize", |run| {
            run.sim.set_default_link(LinkModel { latency: STABLE, loss: 0.0 });
            Ok(())
        })
        .at(Time::from_secs_f64(7.03), "crash one", move |run| crash_random(run, 7, &c1))
        .at(Time::from_secs_f64(7.61), "crash another", move |run| crash_random(run, 7, &c2))
        .check_always("record lifetimes", move |sim| l2.lock().track(sim))
        .check_at_end("strong completeness, accuracy, detection time", move |sim| {
            let log = l3.lock();
            let checked = check_completeness(sim, &log, bound)?;
            check_accuracy(sim, &log, settled)?;
            let crashes = c3.snapshot();
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
        .until(Time::from_secs_f64(FD_END));
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
            .start_nodes(Time::ZERO, FD_NODES, move |h| build_detector_node(h, wiring, &l1));
    for t in STALLS {
        s = s
            .at(Time::from_secs_f64(t), "stall", |run| {
                run.sim.set_default_link(LinkModel { latency: STALL, loss: 0.0 });
                Ok(())
            })
            .at(Time::from_secs_f64(t + 0.3), "unstall", |run| {
                run.sim.set_default_link(LinkModel { latency: STABLE, loss: 0.0 });
                Ok(())
            });
    }
    let s = s
        .at(Time::from_secs_f64(6.53), "crash one", move |run| crash_random(run, 7, &c1))
        .at(Time::from_secs_f64(7.07), "crash another", move |run| crash_random(run, 7, &c2))
        .at(Time::from_secs_f64(7.71), "crash a third", move |run| crash_random(run, 7, &c3))
        .check_always("record lifetimes", move |sim| l2.lock().track(sim))
        .check_at_end("completeness, bounded false suspicions, detection time", move |sim| {
            let log = l3.lock();
            let checked = check_completeness(sim, &log, bound)?;
            check_false_suspicions(sim, &log, allowed, STALL_MAX)?;
            let crashes = c4.snapshot();
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
        .until(Time::from_secs_f64(SLOW_END));
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
    log: Log<DetectionRecord>,
    crashes: Log<Vec<(Time, NodeAddr)>>,
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
        let crashes = probe.crashes.snapshot();
        detections = check_detection_time(sim, &log, &crashes)
            .unwrap_or_default()
            .into_iter()
            .map(|(took, timeout)| Detection { took, timeout })
            .collect();
        for n in sim.alive_nodes() {
            if let Some(d) = log.detectors.get(&n) {
                let t = d.on_definition(|d| {
                    (0..FD_NODES).filter_map(|i| d.detector().timeout(member(i))).max()
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
    let log: Log<DetectionRecord> = Log::default();
    let (l1, l2) = (log.clone(), log.clone());
    let crashes: Log<Vec<(Time, NodeAddr)>> = Log::default();
    let settled = Time::from_secs_f64(OMEGA_STABLE_AT) + completeness_bound(&config, JITTER_MAX);
    Scenario::new(name)
        .config(net(JITTER, 0.05))
        .start_nodes(Time::ZERO, OMEGA_NODES, move |h| build_detector_node(h, wiring, &l1))
        .at(Time::from_secs_f64(1.5), "crash the leader", crash_leader)
        .at(Time::from_secs_f64(2.5), "crash a random node", move |run| {
            crash_random(run, 4, &crashes)
        })
        .partition_halves(Time::from_secs_f64(3.0))
        .heal(Time::from_secs_f64(4.5))
        .at(Time::from_secs_f64(5.0), "crash the leader again", crash_leader)
        .at(Time::from_secs_f64(OMEGA_STABLE_AT), "stabilize", |run| {
            run.sim.set_default_link(LinkModel { latency: STABLE, loss: 0.0 });
            Ok(())
        })
        .check_at_end("eventual accuracy and agreement", move |sim| {
            check_leadership(sim, &l2.lock(), settled)?;
            if sim.alive_nodes().len() != OMEGA_NODES - 3 {
                return Err("the run did not crash 3 nodes".into());
            }
            Ok(())
        })
        .until(Time::from_secs_f64(OMEGA_END))
}

/// See [`crate::SCENARIOS`].
pub fn omega() -> Scenario {
    omega_scenario("omega", None)
}

/// See [`crate::SCENARIOS`].
pub fn omega_broken() -> Scenario {
    omega_scenario("omega-broken", Some(OmegaFlaw::IgnoreSuspicions))
}
