//! The uniform consensus scenarios (see [`crate::SCENARIOS`]): 3–7 nodes, each the whole
//! stack of the consensus cluster with a recorder
//! ([`build_recorded_consensus_node`](super::nodes)), run many instances proposed at 1–3 nodes
//! with different values, under crashes of a minority (the leader preferred), loss, delay,
//! partitions and heals, and a leader cut off mid-decision. [`ConsensusChecker`] checks
//! validity, integrity, uniform agreement (crashed nodes' decisions included), epoch
//! monotonicity and consistency at every step, and at the end termination and a common epoch
//! with a live leader. The `consensus-broken-*` twins run the same script with one deliberate
//! flaw each; their checker must catch it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfman_consensus::{EcFlaw, EpFlaw, Flaws, UcFlaw};
use selfman_core::testkit::Log;
use selfman_core::{Host, NodeAddr, NodeId, ProvidedRef, Time};
use selfman_ports::{Consensus, InstanceId, Propose};
use selfman_sim::{Latency, LinkModel, Run, Scenario, SimConfig, SimNetConfig};

use crate::checkers::consensus::{ConsensusChecker, Value};
use crate::scenarios::member;
use crate::scenarios::nodes::build_recorded_consensus_node;

/// Scripted activity happens in slots this far apart.
const SLOT_S: f64 = 0.05;
/// Proposals go on for a while after the faults, on lossy but otherwise stable links.
const PROPOSE_UNTIL_S: f64 = 10.0;
const CRASH_FROM_S: f64 = 4.0;
/// The leader is cut off once, between these times (before any crash), for 1.5-3 s.
const ISOLATE_FROM_S: f64 = 0.8;
const ISOLATE_UNTIL_S: f64 = 1.5;
const CRASH_UNTIL_S: f64 = 7.0;
const FAULTS_UNTIL_S: f64 = 8.5;
const CONSENSUS_END_S: f64 = 25.0;

/// How hard a consensus scenario pushes.
#[derive(Debug, Clone, Copy)]
struct Stress {
    /// Probability of a new instance per slot.
    new_instance: f64,
    /// Probability that a slot crashes a node (while the crash budget lasts).
    crash: f64,
    /// Probability that a crash takes the current leader.
    crash_leader: f64,
    /// Partition episodes (the first is forced by 3 s).
    partitions: u32,
    /// Link loss.
    loss: f64,
    /// Probability per slot of cutting the leader off for a while, after the first time
    /// (which is certain).
    isolate_leader: f64,
}

const STRESS: Stress = Stress {
    new_instance: 0.35,
    crash: 0.04,
    crash_leader: 0.6,
    partitions: 2,
    loss: 0.08,
    isolate_leader: 0.03,
};

/// The scenario's mutable state, shared by its actions and node builders.
#[derive(Default)]
struct Script {
    n: usize,
    crashes_left: usize,
    partitions_left: u32,
    heal_at: Option<Time>,
    slow_until: Option<Time>,
    slow_done: bool,
    isolated: bool,
    next_id: u128,
    ports: BTreeMap<SocketAddr, (NodeAddr, ProvidedRef<Consensus<Value>>)>,
}

fn link(loss: f64, mean_extra_ms: u64) -> LinkModel {
    LinkModel {
        latency: Latency::Exponential {
            base: Duration::from_millis(1),
            mean_extra: Duration::from_millis(mean_extra_ms),
        },
        loss,
    }
}

fn consensus_scenario(name: &str, flaws: Flaws, stress: Stress) -> Scenario {
    consensus_scenario_with_log(name, flaws, stress, Log::default(), false)
}

/// The `consensus` scenario with `flaws`, recording into `log` (to inspect a run afterwards).
pub fn consensus_recording(flaws: Flaws, log: Log<ConsensusChecker>) -> Scenario {
    consensus_scenario_with_log("consensus", flaws, STRESS, log, true)
}

fn consensus_scenario_with_log(
    name: &str,
    flaws: Flaws,
    stress: Stress,
    log: Log<ConsensusChecker>,
    keep_log: bool,
) -> Scenario {
    let script: Arc<Mutex<Script>> = Arc::default();
    let config = SimConfig {
        network: SimNetConfig { default_link: link(stress.loss, 3), ..SimNetConfig::default() },
        ..SimConfig::default()
    };
    let (log_b, script_b) = (log.clone(), script.clone());
    let builder = Arc::new(move |h: &selfman_sim::SimHost| -> selfman_core::Result<()> {
        let n = script_b.lock().map(|s| s.n).unwrap_or(0);
        let group: Vec<NodeAddr> = (0..n).map(member).collect();
        let port = build_recorded_consensus_node(h, group, flaws, &log_b)?;
        if let Ok(mut s) = script_b.lock() {
            let me = h.local();
            s.ports.insert(me.addr, (me, port));
        }
        Ok(())
    });
    let script_start = script.clone();
    let mut s = Scenario::new(name).config(config).at(Time::ZERO, "start 3-7 nodes", move |run| {
        let n = 3 + run.rng.below(5) as usize;
        if let Ok(mut s) = script_start.lock() {
            s.n = n;
            s.crashes_left = (n - 1) / 2;
            s.partitions_left = stress.partitions;
        }
        for _ in 0..n {
            let b: selfman_sim::NodeBuilder = builder.clone();
            run.sim.add_node_with(b).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    let slots = (PROPOSE_UNTIL_S / SLOT_S) as u64;
    let (log_a, script_a) = (log.clone(), script.clone());
    let act = Arc::new(move |run: &mut Run<'_>| slot(run, &script_a, &log_a, stress));
    for k in 1..=slots {
        let act = act.clone();
        s = s.at(Time::from_secs_f64(k as f64 * SLOT_S), "script", move |run| act(run));
    }
    let (log_c, log_d, log_e) = (log.clone(), log.clone(), log);
    s.at(Time::from_secs_f64(FAULTS_UNTIL_S), "final heal", move |run| {
        run.sim.heal();
        run.sim.set_default_link(link(stress.loss, 3));
        Ok(())
    })
    .check_always("validity, integrity, agreement, epoch monotonicity and consistency", move |_| {
        match log_c.lock().found.first() {
            None => Ok(()),
            Some(f) => Err(f.clone()),
        }
    })
    .stop_when(move |sim| {
        if sim.now() < Time::from_secs_f64(PROPOSE_UNTIL_S + 0.2) {
            return Err("still proposing".into());
        }
        let l = log_d.lock();
        let alive = sim.alive_nodes();
        l.check_termination(&alive)?;
        l.check_settled(&alive)
    })
    .check_at_end("termination and eventual leadership", move |sim| {
        let mut l = log_e.lock();
        let alive = sim.alive_nodes();
        let r = l.check_termination(&alive).and_then(|()| l.check_settled(&alive)).and_then(|()| {
            if l.instances() < 5 || l.decision_count() == 0 {
                return Err(format!("the run did too little: {} instances", l.instances()));
            }
            Ok(())
        });
        if !keep_log {
            // The simulator does not free destroyed components that have ports (their
            // recorders hold the log): empty it, or long sweeps grow by the log per seed.
            *l = ConsensusChecker::default();
        }
        r
    })
    .until(Time::from_secs_f64(CONSENSUS_END_S))
}

/// One scripted slot: heal or end a slow period when due, maybe propose, crash, partition or
/// slow the links down.
fn slot(
    run: &mut Run<'_>,
    script: &Mutex<Script>,
    log: &Log<ConsensusChecker>,
    stress: Stress,
) -> Result<(), String> {
    let now = run.sim.now();
    let t = now.since_start().as_secs_f64();
    let mut s = script.lock().map_err(|_| "script poisoned")?;
    let note = |what: String| log.with(|l| l.fault(now, what));
    if s.heal_at.is_some_and(|h| now >= h) {
        run.sim.heal();
        s.heal_at = None;
        note("heal".into());
    }
    if s.slow_until.is_some_and(|h| now >= h) {
        run.sim.set_default_link(link(stress.loss, 3));
        s.slow_until = None;
    }
    let alive = run.sim.alive_nodes();
    // Proposals: a new instance at 1-3 nodes with different values.
    if t <= PROPOSE_UNTIL_S && run.rng.chance(stress.new_instance) {
        s.next_id += 1;
        let id = InstanceId(s.next_id);
        let k = 1 + run.rng.below(3) as usize;
        let mut at = alive.clone();
        // Half the time the leader is one of the proposers (contention at the leader).
        let leader = log.lock().latest_leader(&alive);
        let first = leader.and_then(|l| at.iter().position(|n| n.addr == l));
        for j in 0..k.min(at.len()) {
            let i = match first {
                Some(i) if j == 0 && run.rng.chance(0.5) => i,
                _ => run.rng.below(at.len() as u64) as usize,
            };
            let pick = at.remove(i);
            let value = (s.next_id as u64) * 100 + j as u64;
            if let Some((node, port)) = s.ports.get(&pick.addr) {
                log.with(|l| l.propose(*node, id, value));
                let _ = port.request(Propose { id, value });
            }
        }
    }
    // Crashes of a minority, the leader preferred.
    if (CRASH_FROM_S..=CRASH_UNTIL_S).contains(&t)
        && s.crashes_left > 0
        && run.rng.chance(stress.crash)
    {
        let leader = log.lock().latest_leader(&alive);
        let victim = match leader {
            Some(l) if run.rng.chance(stress.crash_leader) => {
                alive.iter().find(|n| n.addr == l).copied()
            }
            _ => run.random_alive(),
        };
        if let Some(v) = victim {
            run.sim.crash(v).map_err(|e| e.to_string())?;
            s.crashes_left -= 1;
            note(format!("crash {} (leader {leader:?})", v.addr));
        }
    }
    // Partitions: every node address in one of 2 or 3 random groups, healed 0.3-2 s later.
    let forced = s.partitions_left == stress.partitions && t >= 3.0;
    if t < FAULTS_UNTIL_S - 2.0
        && s.partitions_left > 0
        && s.heal_at.is_none()
        && t >= 3.0
        && (forced || run.rng.chance(0.02))
    {
        let k = if s.n >= 4 { 2 + run.rng.below(2) as usize } else { 2 };
        let mut groups = vec![Vec::new(); k];
        for i in 0..s.n {
            // The first k nodes seed the groups, so none is empty.
            let g = if i < k { i } else { run.rng.below(k as u64) as usize };
            groups[g].push(member(i));
        }
        run.sim.partition(&groups);
        s.partitions_left -= 1;
        note(format!("partition {groups:?}"));
        s.heal_at = Some(now + Duration::from_secs_f64(0.3 + 1.7 * run.rng.unit_f64()));
    }
    // Cut the current leader off for a while (epoch changes mid-decision, and a leader holding
    // values nobody else accepted: what lock-in is for). Certain once, early, before crashes.
    let first = !s.isolated
        && t >= ISOLATE_FROM_S
        && (t + SLOT_S >= ISOLATE_UNTIL_S || run.rng.chance(0.15));
    let again = s.isolated
        && (ISOLATE_UNTIL_S..FAULTS_UNTIL_S - 1.0).contains(&t)
        && run.rng.chance(stress.isolate_leader);
    if s.heal_at.is_none() && (first || again) {
        let long = if first { 1.5 } else { 0.5 };
        s.isolated = true;
        let leader = log.lock().latest_leader(&alive);
        if let Some(l) = leader {
            let others: Vec<NodeAddr> = (0..s.n).map(member).filter(|m| m.addr != l).collect();
            run.sim.partition(&[vec![NodeAddr::new(l, NodeId::UNKNOWN)], others]);
            note(format!("isolate leader {l}"));
            s.heal_at = Some(now + Duration::from_secs_f64(long + 1.5 * run.rng.unit_f64()));
        }
    }
    // One period of slow, lossy links (long delays: false suspicions; retransmissions).
    if !s.slow_done && t >= 1.0 && (t >= 6.0 || run.rng.chance(0.01)) {
        s.slow_done = true;
        note("slow, lossy links".into());
        run.sim.set_default_link(link(0.2, 40));
        s.slow_until = Some(now + Duration::from_secs_f64(0.5 + run.rng.unit_f64()));
    }
    Ok(())
}

/// See [`crate::SCENARIOS`].
pub fn consensus() -> Scenario {
    consensus_scenario("consensus", Flaws::default(), STRESS)
}

/// See [`crate::SCENARIOS`].
pub fn consensus_broken() -> Scenario {
    let flaws = Flaws { ep: Some(EpFlaw::AdoptLowest), ..Flaws::default() };
    consensus_scenario("consensus-broken", flaws, STRESS)
}

/// `consensus` with members that accept messages of older epochs (agreement breaks in most
/// seeds, not all: not registered, see `tests/tests/agreement.rs`).
pub fn consensus_broken_stale() -> Scenario {
    let flaws = Flaws { ep: Some(EpFlaw::KeepStaleMessages), ..Flaws::default() };
    consensus_scenario("consensus-broken-stale", flaws, STRESS)
}

/// See [`crate::SCENARIOS`].
pub fn consensus_broken_epochs() -> Scenario {
    let flaws = Flaws { ec: Some(EcFlaw::SharedTimestamps), ..Flaws::default() };
    consensus_scenario("consensus-broken-epochs", flaws, STRESS)
}

/// See [`crate::SCENARIOS`].
pub fn consensus_broken_monotonic() -> Scenario {
    let flaws = Flaws { ec: Some(EcFlaw::NoMonotonicityCheck), ..Flaws::default() };
    consensus_scenario("consensus-broken-monotonic", flaws, STRESS)
}

/// See [`crate::SCENARIOS`].
pub fn consensus_broken_integrity() -> Scenario {
    let flaws = Flaws { uc: Some(UcFlaw::DecideEveryEpoch), ..Flaws::default() };
    consensus_scenario("consensus-broken-integrity", flaws, STRESS)
}

/// See [`crate::SCENARIOS`].
pub fn consensus_broken_termination() -> Scenario {
    let flaws = Flaws { ep: Some(EpFlaw::NoRetransmission), ..Flaws::default() };
    consensus_scenario("consensus-broken-termination", flaws, STRESS)
}
