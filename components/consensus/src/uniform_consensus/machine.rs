//! The uniform-consensus logic, without I/O: [`UniformConsensusMachine`].
//!
//! Invariants:
//! * one epoch-consensus epoch runs at a time; on `StartEpoch` the running one is aborted and
//!   the next starts only with the states its `Aborted` returned (lock-in carries over);
//! * `Decide` is raised at most once per instance (decided instances are remembered forever);
//! * a proposal made anywhere reaches the leader: the leader proposes it itself, any other
//!   process forwards it to its epoch's leader and re-sends it every period until decided.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

use selfman_core::NodeAddr;
use selfman_ports::{has_flaw, Decide, EpRequest, EpochState, InstanceId, Membership, StartEpoch};

use crate::messages::UcMessage;

/// Timing of uniform consensus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UcConfig {
    /// How often a process re-sends its undecided proposals to its epoch's leader.
    pub forward_period: Duration,
}

impl Default for UcConfig {
    /// Re-send every 100 ms.
    fn default() -> Self {
        UcConfig { forward_period: Duration::from_millis(100) }
    }
}

/// A deliberate mistake of the [`UniformConsensusMachine`], to show that the simulation
/// checkers catch it (feature `flaws`, for tests only;
/// `docs/decisions/011-deliberate-bugs-are-test-only.md`).
#[cfg(feature = "flaws")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// Forgets what it decided at every new epoch, so an instance completed again by a later
    /// epoch is decided again (breaks integrity: `consensus-broken-integrity`).
    DecideEveryEpoch,
}

/// What the machine asks its component to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UcOutput<V> {
    /// A request to the epoch consensus.
    Ep(EpRequest<V>),
    /// Send this message to one process.
    Send(NodeAddr, UcMessage<V>),
    /// Tell the user.
    Decide(Decide<V>),
}

/// Where the epoch consensus is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No epoch yet.
    Idle,
    /// Epoch `ets` runs.
    Running,
    /// Epoch `ets` was asked to abort; `next` starts when it has.
    Aborting,
}

/// Leader-driven uniform consensus (CGR Algorithm 5.7) for one process, many instances at
/// once: a sequence of epoch-consensus epochs, one per epoch the epoch change starts.
#[derive(Debug, Clone)]
pub struct UniformConsensusMachine<V> {
    group: Membership,
    /// The current epoch (timestamp, leader), if any.
    ets: u64,
    leader: Option<NodeAddr>,
    phase: Phase,
    /// The latest epoch started by the epoch change while the current one aborts.
    next: Option<StartEpoch>,
    /// A value per undecided instance: proposed here or forwarded to this process.
    values: BTreeMap<InstanceId, V>,
    /// Undecided instances proposed here (forwarded to the leader until decided).
    own: BTreeSet<InstanceId>,
    /// Instances proposed to the running epoch.
    proposed: BTreeSet<InstanceId>,
    decided: BTreeMap<InstanceId, V>,
    #[cfg(feature = "flaws")]
    flaw: Option<Flaw>,
}

impl<V: Clone + Debug + PartialEq> UniformConsensusMachine<V> {
    /// Uniform consensus of process `me` in `group`.
    pub fn new(me: NodeAddr, group: Vec<NodeAddr>) -> Self {
        UniformConsensusMachine {
            group: Membership::new(me, group),
            ets: 0,
            leader: None,
            phase: Phase::Idle,
            next: None,
            values: BTreeMap::new(),
            own: BTreeSet::new(),
            proposed: BTreeSet::new(),
            decided: BTreeMap::new(),
            #[cfg(feature = "flaws")]
            flaw: None,
        }
    }

    /// This machine with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Self {
        self.flaw = Some(flaw);
        self
    }

    /// The running epoch (timestamp and leader), if any.
    pub fn epoch(&self) -> Option<(u64, NodeAddr)> {
        self.leader.map(|l| (self.ets, l))
    }

    /// The value decided for `id`, if decided here.
    pub fn decided(&self, id: InstanceId) -> Option<&V> {
        self.decided.get(&id)
    }

    /// How many instances were decided here.
    pub fn decided_count(&self) -> usize {
        self.decided.len()
    }

    fn leading(&self) -> bool {
        self.phase == Phase::Running && self.leader.is_some_and(|l| self.group.is_me(l))
    }

    /// The user proposes `value` for `id`. Ignored for an instance already decided here.
    pub fn propose(&mut self, id: InstanceId, value: V, out: &mut Vec<UcOutput<V>>) {
        if self.decided.contains_key(&id) {
            return;
        }
        self.own.insert(id);
        let v = self.values.entry(id).or_insert(value).clone();
        self.drive(vec![(id, v)], out);
    }

    /// Proposes `values` to the running epoch if leading, else forwards this process's own.
    fn drive(&mut self, values: Vec<(InstanceId, V)>, out: &mut Vec<UcOutput<V>>) {
        if self.leading() {
            for (id, value) in values {
                if self.proposed.insert(id) {
                    out.push(UcOutput::Ep(EpRequest::Propose { ets: self.ets, id, value }));
                }
            }
        } else if let Some(l) = self.leader.filter(|l| !self.group.is_me(*l)) {
            let values: Vec<_> =
                values.into_iter().filter(|(id, _)| self.own.contains(id)).collect();
            if !values.is_empty() {
                out.push(UcOutput::Send(l, UcMessage::Forward { values }));
            }
        }
    }

    /// The epoch change started epoch `s`: abort the running epoch first, if any.
    pub fn on_start_epoch(&mut self, s: StartEpoch, out: &mut Vec<UcOutput<V>>) {
        match self.phase {
            Phase::Idle => self.begin(s, Vec::new(), out),
            Phase::Running => {
                self.next = Some(s);
                self.phase = Phase::Aborting;
                out.push(UcOutput::Ep(EpRequest::Abort { ets: self.ets }));
            }
            Phase::Aborting => self.next = Some(s),
        }
    }

    /// The epoch consensus aborted epoch `ets`, with `states`: start the next epoch with them.
    pub fn on_aborted(
        &mut self,
        ets: u64,
        states: Vec<(InstanceId, EpochState<V>)>,
        out: &mut Vec<UcOutput<V>>,
    ) {
        if self.phase != Phase::Aborting || ets != self.ets {
            return;
        }
        if let Some(s) = self.next.take() {
            self.begin(s, states, out);
        }
    }

    fn begin(
        &mut self,
        s: StartEpoch,
        states: Vec<(InstanceId, EpochState<V>)>,
        out: &mut Vec<UcOutput<V>>,
    ) {
        self.ets = s.ts;
        let leader = self.group.name_of(s.leader);
        self.leader = Some(leader);
        self.phase = Phase::Running;
        self.proposed.clear();
        if has_flaw!(self, DecideEveryEpoch) {
            self.decided.clear();
        }
        out.push(UcOutput::Ep(EpRequest::Start { ets: s.ts, leader, states }));
        let values: Vec<_> = self.values.iter().map(|(id, v)| (*id, v.clone())).collect();
        if !values.is_empty() {
            self.drive(values, out);
        }
    }

    /// The epoch consensus decided `value` for `id` in epoch `ets`.
    pub fn on_decide(&mut self, ets: u64, id: InstanceId, value: V, out: &mut Vec<UcOutput<V>>) {
        if ets == self.ets && self.phase != Phase::Idle {
            self.decide(id, value, out);
        }
    }

    fn decide(&mut self, id: InstanceId, value: V, out: &mut Vec<UcOutput<V>>) {
        if self.decided.contains_key(&id) {
            return;
        }
        self.values.remove(&id);
        self.own.remove(&id);
        self.decided.insert(id, value.clone());
        out.push(UcOutput::Decide(Decide { id, value }));
    }

    /// A message arrived from another process.
    pub fn on_message(&mut self, from: NodeAddr, msg: UcMessage<V>, out: &mut Vec<UcOutput<V>>) {
        match msg {
            UcMessage::Forward { values } => {
                let mut known = Vec::new();
                let mut fresh = Vec::new();
                for (id, v) in values {
                    match self.decided.get(&id) {
                        Some(d) => known.push((id, d.clone())),
                        None => {
                            let v = self.values.entry(id).or_insert(v).clone();
                            fresh.push((id, v));
                        }
                    }
                }
                if !known.is_empty() {
                    out.push(UcOutput::Send(from, UcMessage::Decided { values: known }));
                }
                if self.leading() && !fresh.is_empty() {
                    self.drive(fresh, out);
                }
            }
            UcMessage::Decided { values } => {
                // Only ever sent for decided instances, by a member that decided them.
                for (id, v) in values {
                    self.decide(id, v, out);
                }
            }
        }
    }

    /// The forwarding period passed: re-send undecided own proposals to the leader.
    pub fn on_tick(&mut self, out: &mut Vec<UcOutput<V>>) {
        if self.leading() || self.own.is_empty() {
            return;
        }
        let values: Vec<_> = self
            .own
            .iter()
            .filter_map(|id| self.values.get(id).map(|v| (*id, v.clone())))
            .collect();
        self.drive(values, out);
    }
}

#[cfg(test)]
mod tests {
    use selfman_core::NodeId;

    use super::*;
    use crate::messages::UcMessage;

    fn p(i: u32) -> NodeAddr {
        NodeAddr::simulated(i + 1, NodeId::UNKNOWN)
    }

    fn uc(i: u32) -> UniformConsensusMachine<u64> {
        UniformConsensusMachine::new(p(i), (0..3).map(p).collect())
    }

    const I1: InstanceId = InstanceId(1);

    fn se(ts: u64, l: u32) -> StartEpoch {
        StartEpoch { ts, leader: p(l) }
    }

    #[test]
    fn the_next_epoch_starts_only_after_the_abort_with_its_states() {
        let mut m = uc(1);
        let mut out = Vec::new();
        m.on_start_epoch(se(3, 0), &mut out);
        assert_eq!(
            out,
            vec![UcOutput::Ep(EpRequest::Start { ets: 3, leader: p(0), states: vec![] })]
        );
        out.clear();
        m.on_start_epoch(se(4, 1), &mut out);
        m.on_start_epoch(se(7, 1), &mut out); // a later one while aborting: only it starts
        assert_eq!(out, vec![UcOutput::Ep(EpRequest::Abort { ets: 3 })]);
        out.clear();
        m.on_aborted(2, vec![], &mut out); // not ours
        assert!(out.is_empty());
        let st = vec![(I1, EpochState { valts: 3, val: Some(5) })];
        m.on_aborted(3, st.clone(), &mut out);
        assert_eq!(out, vec![UcOutput::Ep(EpRequest::Start { ets: 7, leader: p(1), states: st })]);
        assert_eq!(m.epoch(), Some((7, p(1))));
    }

    #[test]
    fn the_leader_proposes_and_members_forward_to_it() {
        let mut leader = uc(0);
        let mut member = uc(2);
        let mut out = Vec::new();
        // Proposals before any epoch wait.
        member.propose(I1, 9, &mut out);
        assert!(out.is_empty());
        member.on_start_epoch(se(3, 0), &mut out);
        assert_eq!(out[1], UcOutput::Send(p(0), UcMessage::Forward { values: vec![(I1, 9)] }));
        out.clear();
        member.on_tick(&mut out);
        assert_eq!(out, vec![UcOutput::Send(p(0), UcMessage::Forward { values: vec![(I1, 9)] })]);
        out.clear();
        leader.on_start_epoch(se(3, 0), &mut out);
        out.clear();
        leader.on_message(p(2), UcMessage::Forward { values: vec![(I1, 9)] }, &mut out);
        assert_eq!(out, vec![UcOutput::Ep(EpRequest::Propose { ets: 3, id: I1, value: 9 })]);
        out.clear();
        leader.on_message(p(2), UcMessage::Forward { values: vec![(I1, 9)] }, &mut out);
        assert!(out.is_empty(), "proposed once per epoch");
        leader.on_decide(3, I1, 9, &mut out);
        assert_eq!(out, vec![UcOutput::Decide(Decide { id: I1, value: 9 })]);
        out.clear();
        // A late forward of a decided instance is answered with the decision.
        leader.on_message(p(2), UcMessage::Forward { values: vec![(I1, 9)] }, &mut out);
        assert_eq!(out, vec![UcOutput::Send(p(2), UcMessage::Decided { values: vec![(I1, 9)] })]);
        out.clear();
        member.on_message(p(0), UcMessage::Decided { values: vec![(I1, 9)] }, &mut out);
        assert_eq!(out, vec![UcOutput::Decide(Decide { id: I1, value: 9 })]);
        out.clear();
        member.on_tick(&mut out);
        assert!(out.is_empty(), "nothing left to forward");
    }

    #[test]
    fn decide_is_raised_once_per_instance_across_epochs() {
        let mut m = uc(0);
        let mut out = Vec::new();
        m.on_start_epoch(se(3, 0), &mut out);
        m.propose(I1, 1, &mut out);
        m.on_decide(3, I1, 1, &mut out);
        m.on_start_epoch(se(6, 0), &mut out);
        m.on_aborted(3, vec![(I1, EpochState { valts: 3, val: Some(1) })], &mut out);
        m.on_decide(6, I1, 1, &mut out); // the next epoch completes it again
        m.on_message(p(1), UcMessage::Decided { values: vec![(I1, 1)] }, &mut out);
        m.propose(I1, 2, &mut out);
        let decides = out.iter().filter(|o| matches!(o, UcOutput::Decide(_))).count();
        assert_eq!(decides, 1);
        // The flawed variant forgets, and decides again.
        let mut f = uc(0).with_flaw(Flaw::DecideEveryEpoch);
        out.clear();
        f.on_start_epoch(se(3, 0), &mut out);
        f.on_decide(3, I1, 1, &mut out);
        f.on_start_epoch(se(6, 0), &mut out);
        f.on_aborted(3, vec![], &mut out);
        f.on_decide(6, I1, 1, &mut out);
        let decides = out.iter().filter(|o| matches!(o, UcOutput::Decide(_))).count();
        assert_eq!(decides, 2);
    }

    #[test]
    fn a_new_leader_proposes_what_was_forwarded_to_it_before() {
        let mut m = uc(1);
        let mut out = Vec::new();
        m.on_start_epoch(se(3, 0), &mut out);
        m.on_message(p(2), UcMessage::Forward { values: vec![(I1, 4)] }, &mut out);
        out.clear();
        m.on_start_epoch(se(4, 1), &mut out);
        m.on_aborted(3, vec![], &mut out);
        assert!(out.contains(&UcOutput::Ep(EpRequest::Propose { ets: 4, id: I1, value: 4 })));
        // Decisions of an epoch that is not the current one are ignored.
        out.clear();
        m.on_decide(3, I1, 4, &mut out);
        assert!(out.is_empty());
    }
}
