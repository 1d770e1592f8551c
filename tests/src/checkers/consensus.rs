//! The checker of uniform consensus runs ([`ConsensusChecker`]), fed by the recorders of the
//! `consensus` scenarios as things happen:
//!
//! * at every step: **validity** (a decided value was proposed for its instance),
//!   **integrity** (no node incarnation decides an instance twice), **uniform agreement**
//!   (against every earlier decision of the instance, including those of nodes that crashed
//!   since), epoch **monotonicity** per node and **consistency** across nodes (one leader per
//!   timestamp);
//! * at the end: **termination** ([`ConsensusChecker::check_termination`]) and eventual
//!   leadership ([`ConsensusChecker::check_settled`]).
//!
//! Each violation is reported with the property's name first (`agreement: …`), which the
//! tests of the broken variants match.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use selfman_core::{NodeAddr, Time};
use selfman_ports::{InstanceId, StartEpoch};

/// The value type consensus runs on in the scenarios.
pub type Value = u64;

/// What happened in a consensus run, checked as it is recorded: proposals, decisions (kept
/// after their node crashes) and epoch starts, per node incarnation.
#[derive(Debug, Default)]
pub struct ConsensusChecker {
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

impl ConsensusChecker {
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
