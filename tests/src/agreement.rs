//! Scenarios for best-effort broadcast and consensus (see [`crate::SCENARIOS`]), the wiring of
//! a whole consensus node, and the checkers those scenarios use.
//!
//! * `beb`: chatty nodes broadcast over reliable links under crash/restart churn and a group
//!   change; checks no duplication, no creation, validity and the group change.
//! * `consensus`: 3–7 nodes run many consensus instances under crashes of a minority (the
//!   leader preferred), loss, delay, partitions and heals; checks validity, integrity, uniform
//!   agreement (crashed nodes' decisions included), epoch monotonicity and consistency at every
//!   step, and at the end termination and a common epoch with a live leader.
//! * broken variants (`must_pass: false`) show that each checker catches a real bug.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfman_consensus::{EcFlaw, EpFlaw, Flaws, Stack, StackConfig, UcFlaw};
use selfman_consensus_cluster::{build_flawed_node, NodeConfig};
use selfman_core::{
    ComponentDefinition, Context, Handled, Host, NodeAddr, NodeId, ProvidedRef, Required, Setup,
    Time, Timeout, Timer, TimerId,
};
use selfman_ports::{
    BebDeliver, BebRequest, BestEffortBroadcast, Consensus, Decide, EpochChange, InstanceId,
    Propose, StartEpoch,
};
use selfman_sim::{address_of, Churn, Latency, LinkModel, Run, Scenario, SimConfig, SimNetConfig};
use serde::{Deserialize, Serialize};

fn secs(s: f64) -> Time {
    Time::ZERO + Duration::from_secs_f64(s)
}

fn member(i: usize) -> NodeAddr {
    NodeAddr::new(address_of(i), NodeId::UNKNOWN)
}

// ------------------------------------------------------------------------------------------
// Best-effort broadcast
// ------------------------------------------------------------------------------------------

const BEB_NODES: usize = 8;
/// When every node drops the last node from its group.
const BEB_REGROUP_S: f64 = 5.0;
const BEB_END_S: f64 = 10.0;

/// A broadcast message that says who sent it (which incarnation) and for which group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Chat {
    origin: NodeAddr,
    seq: u64,
    sent_at: u64,
    /// 0: the whole group; 1: the group without the last node.
    group: u8,
}

/// Everything broadcast and delivered in a `beb` run, and what the receivers found wrong.
#[derive(Debug, Default)]
pub struct BebLog {
    /// Broadcasts by (sender incarnation, sequence number).
    sent: BTreeMap<(NodeAddr, u64), Chat>,
    /// Deliveries: receiver incarnation → (sender incarnation, seq) → times delivered.
    delivered: BTreeMap<NodeAddr, BTreeMap<(NodeAddr, u64), u32>>,
    /// When each incarnation started.
    started: BTreeMap<NodeAddr, Time>,
    /// Violations of no duplication and no creation, found at delivery.
    pub found: Vec<String>,
}

impl BebLog {
    fn broadcast(&mut self, c: &Chat) {
        self.sent.insert((c.origin, c.seq), c.clone());
    }

    /// Records a delivery at `me` and checks no duplication and no creation.
    fn deliver(&mut self, me: NodeAddr, d: &BebDeliver<Chat>) {
        let key = (d.msg.origin, d.msg.seq);
        match self.sent.get(&key) {
            None => self.found.push(format!("{me} delivered {:?}, never broadcast", d.msg)),
            Some(c) if *c != d.msg || d.from.addr != c.origin.addr => self.found.push(format!(
                "{me} delivered {:?} from {}, but {c:?} was broadcast",
                d.msg, d.from
            )),
            Some(c)
                if c.group == 1
                    && me.addr == member(BEB_NODES - 1).addr
                    && c.origin.addr != me.addr =>
            {
                self.found.push(format!("{me} delivered {c:?}, broadcast to a group without it"))
            }
            Some(_) => {}
        }
        let n = self.delivered.entry(me).or_default().entry(key).or_insert(0);
        *n += 1;
        if *n > 1 {
            self.found.push(format!("{me} delivered {:?} {n} times", d.msg));
        }
    }

    /// Validity: every message broadcast before `cutoff` by a sender still running, to a group
    /// containing a receiver that is running and started before the broadcast, was delivered
    /// there.
    pub fn check_validity(&self, alive: &[NodeAddr], cutoff: Time) -> Result<(), String> {
        let mut checked = 0u64;
        for ((origin, seq), c) in &self.sent {
            if !alive.contains(origin) || c.sent_at > cutoff.0 {
                continue;
            }
            for r in alive {
                let started = self.started.get(r).copied().unwrap_or(Time(u64::MAX));
                let in_group = c.group == 0 || r.addr != member(BEB_NODES - 1).addr;
                if !in_group || started.0 > c.sent_at {
                    continue;
                }
                checked += 1;
                let got = self.delivered.get(r).and_then(|m| m.get(&(*origin, *seq)));
                if got.is_none() {
                    return Err(format!("{r} never delivered {c:?}"));
                }
            }
        }
        if checked < 200 {
            return Err(format!("only {checked} deliveries were checked: the run did too little"));
        }
        Ok(())
    }
}

/// Broadcasts a numbered [`Chat`] every few ms, switches group at [`BEB_REGROUP_S`], and
/// records everything in the shared log.
struct Talker {
    ctx: Context,
    me: NodeAddr,
    beb: Required<BestEffortBroadcast<Chat>>,
    timer: Required<Timer>,
    seq: u64,
    group: u8,
    log: Arc<Mutex<BebLog>>,
}

impl Talker {
    fn on_tick(&mut self, _: Timeout) -> Handled {
        let now = self.ctx.now();
        if self.group == 0 && now >= secs(BEB_REGROUP_S) {
            self.group = 1;
            let g = (0..BEB_NODES - 1).map(member).collect();
            self.beb.trigger(BebRequest::SetGroup(g));
        }
        if self.ctx.rng().chance(0.5) {
            self.seq += 1;
            let c = Chat { origin: self.me, seq: self.seq, sent_at: now.0, group: self.group };
            if let Ok(mut l) = self.log.lock() {
                l.broadcast(&c);
            }
            self.beb.trigger(BebRequest::Broadcast(c));
        }
        Ok(())
    }

    fn on_deliver(&mut self, d: BebDeliver<Chat>) -> Handled {
        if let Ok(mut l) = self.log.lock() {
            l.deliver(self.me, &d);
        }
        Ok(())
    }
}

impl ComponentDefinition for Talker {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.beb, Self::on_deliver);
        s.require(|c| &mut c.timer, Self::on_tick);
    }

    fn on_start(&mut self) -> Handled {
        if let Ok(mut l) = self.log.lock() {
            l.started.insert(self.me, self.ctx.now());
        }
        let p = Duration::from_millis(20);
        self.timer.schedule_periodic(TimerId(1), p, p);
        Ok(())
    }
}

fn beb_scenario(name: &str, loss: f64) -> Scenario {
    let log: Arc<Mutex<BebLog>> = Arc::default();
    let (l1, l2, l3) = (log.clone(), log.clone(), log);
    let config = SimConfig {
        network: SimNetConfig {
            default_link: LinkModel {
                latency: Latency::Exponential {
                    base: Duration::from_millis(1),
                    mean_extra: Duration::from_millis(5),
                },
                loss,
            },
            ..SimNetConfig::default()
        },
        ..SimConfig::default()
    };
    Scenario::new(name)
        .config(config)
        .start_nodes(Time::ZERO, BEB_NODES, move |h| {
            let group = (0..BEB_NODES).map(member).collect();
            let beb = selfman_broadcast::build::<Chat, _>(h, "beb-chat", group)?;
            let (me, log) = (h.local(), l1.clone());
            let t = h.create(move || Talker {
                ctx: Context::new(),
                me,
                beb: Required::new(),
                timer: Required::new(),
                seq: 0,
                group: 0,
                log: log.clone(),
            })?;
            h.system().link::<BestEffortBroadcast<Chat>>(&beb, &t)?;
            h.system().connect(&h.timer()?, &t.required()?)?;
            Ok(())
        })
        .churn(Churn::crash_restart(secs(1.0), secs(8.0), 1.5, BEB_NODES / 2))
        .check_always("no duplication, no creation", move |_| match l2.lock() {
            Ok(l) if l.found.is_empty() => Ok(()),
            Ok(l) => Err(l.found[0].clone()),
            Err(_) => Err("the log is poisoned".into()),
        })
        .check_at_end("validity", move |sim| {
            let mut l = l3.lock().map_err(|_| "the log is poisoned")?;
            // Messages still in flight at the end are not held against anyone.
            let r = l.check_validity(&sim.alive_nodes(), secs(BEB_END_S - 0.5));
            // The simulator does not free destroyed components that have ports (they hold
            // the log): empty it, or a sweep of many seeds grows by megabytes per seed.
            *l = BebLog::default();
            r
        })
        .until(secs(BEB_END_S))
}

/// See [`crate::SCENARIOS`].
pub fn beb() -> Scenario {
    beb_scenario("beb", 0.0)
}

/// See [`crate::SCENARIOS`].
pub fn beb_broken() -> Scenario {
    beb_scenario("beb-broken", 0.1)
}

// ------------------------------------------------------------------------------------------
// Consensus: the checkers
// ------------------------------------------------------------------------------------------

/// The value type consensus runs on in these scenarios.
pub type Value = u64;

/// What happened in a consensus run, checked as it is recorded: proposals, decisions (kept
/// after their node crashes) and epoch starts, per node incarnation.
#[derive(Debug, Default)]
pub struct AgreementLog {
    proposals: BTreeMap<InstanceId, Vec<(NodeAddr, Value)>>,
    decisions: BTreeMap<InstanceId, Vec<(NodeAddr, Value, Time)>>,
    decided_by: BTreeMap<NodeAddr, BTreeSet<InstanceId>>,
    epochs: BTreeMap<NodeAddr, Vec<StartEpoch>>,
    leaders: BTreeMap<u64, SocketAddr>,
    /// Faults injected by the script, with their times.
    faults: Vec<(Time, String)>,
    /// Safety violations found so far (validity, integrity, uniform agreement, epoch
    /// monotonicity and consistency).
    pub found: Vec<String>,
}

impl AgreementLog {
    /// `node` proposes `value` for `id`.
    pub fn propose(&mut self, node: NodeAddr, id: InstanceId, value: Value) {
        self.proposals.entry(id).or_default().push((node, value));
    }

    /// `node` decided `value` for `id` at `at`: checks validity (the value was proposed for
    /// `id`), integrity (`node` had not decided `id`) and uniform agreement (every earlier
    /// decision of `id`, by any node, crashed or not, was `value`).
    pub fn decide(&mut self, node: NodeAddr, id: InstanceId, value: Value, at: Time) {
        let proposed = self.proposals.get(&id).is_some_and(|p| p.iter().any(|x| x.1 == value));
        if !proposed {
            self.found.push(format!("validity: {node} decided {value} for {id}, never proposed"));
        }
        if !self.decided_by.entry(node).or_default().insert(id) {
            self.found.push(format!("integrity: {node} decided {id} twice (now {value})"));
        }
        let ds = self.decisions.entry(id).or_default();
        if let Some(&(other, v, t)) = ds.iter().find(|d| d.1 != value) {
            self.found.push(format!(
                "agreement: {node} decided {value} for {id}, {other} decided {v} at {:?}",
                t.since_start()
            ));
        }
        ds.push((node, value, at));
    }

    /// `node` started epoch `s`: checks monotonicity (its timestamps grow) and consistency
    /// (every node that started `s.ts` named the same leader).
    pub fn start_epoch(&mut self, node: NodeAddr, s: StartEpoch) {
        let mine = self.epochs.entry(node).or_default();
        if let Some(last) = mine.last() {
            if s.ts <= last.ts {
                self.found.push(format!(
                    "monotonicity: {node} started epoch {} after epoch {}",
                    s.ts, last.ts
                ));
            }
        }
        mine.push(s);
        match self.leaders.get(&s.ts) {
            Some(l) if *l != s.leader.addr => self.found.push(format!(
                "consistency: {node} started epoch {} led by {}, others with leader {l}",
                s.ts, s.leader.addr
            )),
            Some(_) => {}
            None => {
                self.leaders.insert(s.ts, s.leader.addr);
            }
        }
    }

    /// Notes a fault injected at `at`.
    pub fn fault(&mut self, at: Time, what: String) {
        self.faults.push((at, what));
    }

    /// The faults injected, one per line.
    pub fn faults(&self) -> String {
        self.faults.iter().map(|(t, f)| format!("{:?} {f}\n", t.since_start())).collect()
    }

    /// The leader of the highest epoch started by any of `alive`.
    pub fn latest_leader(&self, alive: &[NodeAddr]) -> Option<SocketAddr> {
        alive
            .iter()
            .filter_map(|n| self.epochs.get(n).and_then(|e| e.last()))
            .max_by_key(|s| s.ts)
            .map(|s| s.leader.addr)
    }

    /// Instances ever proposed.
    pub fn instances(&self) -> usize {
        self.proposals.len()
    }

    /// Decisions recorded (all nodes).
    pub fn decision_count(&self) -> usize {
        self.decisions.values().map(Vec::len).sum()
    }

    /// Epochs started, summed over nodes.
    pub fn epoch_count(&self) -> usize {
        self.epochs.values().map(Vec::len).sum()
    }

    /// Decisions recorded by nodes not in `alive`.
    pub fn decisions_by_others(&self, alive: &[NodeAddr]) -> usize {
        self.decided_by.iter().filter(|(n, _)| !alive.contains(n)).map(|(_, d)| d.len()).sum()
    }

    /// What happened to instance `id`: proposals, then decisions with their times.
    pub fn history(&self, id: InstanceId) -> String {
        format!("proposed {:?}; decided {:?}", self.proposals.get(&id), self.decisions.get(&id))
    }

    /// Epochs started by each node, in order.
    pub fn epoch_history(&self) -> String {
        let mut s = String::new();
        for (n, e) in &self.epochs {
            s += &format!(
                "{}: {:?}\n",
                n.addr,
                e.iter().map(|x| (x.ts, x.leader.addr.ip().to_string())).collect::<Vec<_>>()
            );
        }
        s
    }

    /// Instances proposed with more than one value.
    pub fn contended(&self) -> usize {
        self.proposals.values().filter(|p| p.iter().any(|x| x.1 != p[0].1)).count()
    }

    /// Termination: every instance proposed by a node of `alive`, or decided by any node, is
    /// decided by every node of `alive`.
    ///
    /// # Errors
    ///
    /// Names the first node and instance that are missing, and how many are.
    pub fn check_termination(&self, alive: &[NodeAddr]) -> Result<(), String> {
        let mut missing = Vec::new();
        for (id, props) in &self.proposals {
            let required = props.iter().any(|(n, _)| alive.contains(n))
                || self.decisions.get(id).is_some_and(|d| !d.is_empty());
            if !required {
                continue;
            }
            for n in alive {
                if !self.decided_by.get(n).is_some_and(|d| d.contains(id)) {
                    missing.push((*n, *id));
                }
            }
        }
        match missing.first() {
            None => Ok(()),
            Some((n, id)) => Err(format!(
                "termination: {n} never decided {id} ({} undecided (node, instance) pairs)",
                missing.len()
            )),
        }
    }

    /// Eventual leadership: every node of `alive` is in the same epoch, led by one of `alive`.
    ///
    /// # Errors
    ///
    /// Describes the disagreement.
    pub fn check_settled(&self, alive: &[NodeAddr]) -> Result<(), String> {
        let last: BTreeSet<_> = alive
            .iter()
            .map(|n| self.epochs.get(n).and_then(|e| e.last()).map(|s| (s.ts, s.leader.addr)))
            .collect();
        match last.iter().next() {
            Some(Some((ts, l))) if last.len() == 1 => {
                if alive.iter().any(|n| n.addr == *l) {
                    Ok(())
                } else {
                    Err(format!("leadership: everyone is in epoch {ts} led by crashed {l}"))
                }
            }
            _ => Err(format!("leadership: running nodes end in different epochs: {last:?}")),
        }
    }
}

/// Records what its node decides and which epochs it starts (it is connected to the node's
/// `Consensus` and `EpochChange` ports next to their real users: channels fan out).
struct Recorder {
    ctx: Context,
    me: NodeAddr,
    uc: Required<Consensus<Value>>,
    ec: Required<EpochChange>,
    log: Arc<Mutex<AgreementLog>>,
}

impl Recorder {
    fn on_decide(&mut self, d: Decide<Value>) -> Handled {
        let now = self.ctx.now();
        if let Ok(mut l) = self.log.lock() {
            l.decide(self.me, d.id, d.value, now);
        }
        Ok(())
    }

    fn on_epoch(&mut self, s: StartEpoch) -> Handled {
        if let Ok(mut l) = self.log.lock() {
            l.start_epoch(self.me, s);
        }
        Ok(())
    }
}

impl ComponentDefinition for Recorder {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.uc, Self::on_decide);
        s.require(|c| &mut c.ec, Self::on_epoch);
    }
}

// ------------------------------------------------------------------------------------------
// Consensus: wiring a node
// ------------------------------------------------------------------------------------------

/// Wires a whole consensus node on `host` for `group` (members in rank order) with the
/// default settings and `flaws` (none for the real thing): the consensus cluster's
/// [`build_node`](selfman_consensus_cluster::build_node), which shows the wiring.
///
/// # Errors
///
/// Whatever creating and connecting the components returns.
pub fn build_consensus_node<H: Host>(
    host: &H,
    group: Vec<NodeAddr>,
    config: &StackConfig,
    flaws: Flaws,
) -> selfman_core::Result<Stack<Value>> {
    let config = NodeConfig { stack: config.clone(), ..NodeConfig::default() };
    Ok(build_flawed_node(host, group, &config, flaws)?.stack)
}

// ------------------------------------------------------------------------------------------
// Consensus: the scenario
// ------------------------------------------------------------------------------------------

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
    consensus_scenario_with_log(name, flaws, stress, Arc::default(), false)
}

/// The `consensus` scenario with `flaws`, recording into `log` (to inspect a run afterwards).
pub fn consensus_recording(flaws: Flaws, log: Arc<Mutex<AgreementLog>>) -> Scenario {
    consensus_scenario_with_log("consensus", flaws, STRESS, log, true)
}

fn consensus_scenario_with_log(
    name: &str,
    flaws: Flaws,
    stress: Stress,
    log: Arc<Mutex<AgreementLog>>,
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
        let stack = build_consensus_node(h, group, &StackConfig::default(), flaws)?;
        let (me, log) = (h.local(), log_b.clone());
        let rec = h.create(move || Recorder {
            ctx: Context::new(),
            me,
            uc: Required::new(),
            ec: Required::new(),
            log: log.clone(),
        })?;
        h.system().link::<Consensus<Value>>(&stack.uc, &rec)?;
        h.system().link::<EpochChange>(&stack.ec, &rec)?;
        if let Ok(mut s) = script_b.lock() {
            s.ports.insert(me.addr, (me, stack.uc.provided()?));
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
        s = s.at(secs(k as f64 * SLOT_S), "script", move |run| act(run));
    }
    let (log_c, log_d, log_e) = (log.clone(), log.clone(), log);
    s.at(secs(FAULTS_UNTIL_S), "final heal", move |run| {
        run.sim.heal();
        run.sim.set_default_link(link(stress.loss, 3));
        Ok(())
    })
    .check_always("validity, integrity, agreement, epoch monotonicity and consistency", move |_| {
        match log_c.lock() {
            Ok(l) if l.found.is_empty() => Ok(()),
            Ok(l) => Err(l.found[0].clone()),
            Err(_) => Err("the log is poisoned".into()),
        }
    })
    .stop_when(move |sim| {
        if sim.now() < secs(PROPOSE_UNTIL_S + 0.2) {
            return Err("still proposing".into());
        }
        let l = log_d.lock().map_err(|_| "poisoned")?;
        let alive = sim.alive_nodes();
        l.check_termination(&alive)?;
        l.check_settled(&alive)
    })
    .check_at_end("termination and eventual leadership", move |sim| {
        let mut l = log_e.lock().map_err(|_| "the log is poisoned")?;
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
            *l = AgreementLog::default();
        }
        r
    })
    .until(secs(CONSENSUS_END_S))
}

/// One scripted slot: heal or end a slow period when due, maybe propose, crash, partition or
/// slow the links down.
fn slot(
    run: &mut Run<'_>,
    script: &Mutex<Script>,
    log: &Mutex<AgreementLog>,
    stress: Stress,
) -> Result<(), String> {
    let now = run.sim.now();
    let t = now.since_start().as_secs_f64();
    let mut s = script.lock().map_err(|_| "script poisoned")?;
    let note = |what: String| {
        if let Ok(mut l) = log.lock() {
            l.fault(now, what);
        }
    };
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
        let leader = log.lock().ok().and_then(|l| l.latest_leader(&alive));
        let first = leader.and_then(|l| at.iter().position(|n| n.addr == l));
        for j in 0..k.min(at.len()) {
            let i = match first {
                Some(i) if j == 0 && run.rng.chance(0.5) => i,
                _ => run.rng.below(at.len() as u64) as usize,
            };
            let pick = at.remove(i);
            let value = (s.next_id as u64) * 100 + j as u64;
            if let Some((node, port)) = s.ports.get(&pick.addr) {
                if let Ok(mut l) = log.lock() {
                    l.propose(*node, id, value);
                }
                let _ = port.request(Propose { id, value });
            }
        }
    }
    // Crashes of a minority, the leader preferred.
    if (CRASH_FROM_S..=CRASH_UNTIL_S).contains(&t)
        && s.crashes_left > 0
        && run.rng.chance(stress.crash)
    {
        let leader = log.lock().ok().and_then(|l| l.latest_leader(&alive));
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
        let leader = log.lock().ok().and_then(|l| l.latest_leader(&alive));
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
