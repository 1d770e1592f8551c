//! The epoch-consensus logic, without I/O: [`EpochConsensusMachine`].
//!
//! Invariants (unit tests below; the `consensus` scenario checks their consequences):
//! * a process handles only messages tagged with the epoch it is in; messages of a later epoch
//!   wait (bounded buffer) until it starts that epoch, earlier ones are dropped;
//! * in an epoch, the leader writes at most one value per instance, chosen after a majority's
//!   states: the accepted value with the **highest** timestamp if any (lock-in), else the
//!   proposal;
//! * a member stores `(ets, v)` only for the leader's value of its current epoch `ets`;
//! * a decision needs a majority of accepts; a process decides an instance at most once per
//!   epoch; after `Abort` the epoch triggers nothing more.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use selfman_core::NodeAddr;
use selfman_ports::{has_flaw, EpIndication, EpochState, InstanceId, Membership};

use crate::messages::EpMessage;

/// Messages of later epochs kept at most (the oldest are dropped first; the leader re-sends).
const FUTURE_CAP: usize = 4096;

/// Instances re-sent to one member per message at most (the rest go in later periods).
const RESEND_BATCH: usize = 1024;

/// A member silent for this many periods is re-sent to only every this many periods.
const MAX_BACKOFF: u32 = 32;

/// Timing of epoch consensus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpConfig {
    /// How often the leader re-sends what members have not answered yet (`Read`, `Write`,
    /// `Decided`).
    pub retransmit: Duration,
}

impl Default for EpConfig {
    /// Re-send every 50 ms.
    fn default() -> Self {
        EpConfig { retransmit: Duration::from_millis(50) }
    }
}

/// A deliberate mistake of the [`EpochConsensusMachine`], to show that the simulation checkers
/// catch it (feature `flaws`, for tests only; `docs/decisions/011-deliberate-bugs-are-test-only.md`).
#[cfg(feature = "flaws")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// The leader adopts the accepted value with the **lowest** timestamp (breaks lock-in, and
    /// so agreement: `consensus-broken`).
    AdoptLowest,
    /// Members take messages of older epochs as messages of their current one (a stale `Write`
    /// is stored with the new timestamp; breaks lock-in, and so agreement, in some seeds:
    /// `consensus_broken_stale`, not registered).
    KeepStaleMessages,
    /// The leader never re-sends (over lossy links some members never decide: breaks
    /// termination: `consensus-broken-termination`).
    NoRetransmission,
}

/// What the machine asks its component to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EpOutput<V> {
    /// Best-effort broadcast this message (this process has already handled its own copy:
    /// ignore its local delivery).
    Broadcast(EpMessage<V>),
    /// Send this message to one process.
    Send(NodeAddr, EpMessage<V>),
    /// Tell the user.
    Indicate(EpIndication<V>),
}

/// One instance being written by the leader.
#[derive(Debug, Clone)]
struct Write<V> {
    val: V,
    accepted: BTreeSet<SocketAddr>,
    decided: bool,
    acked: BTreeSet<SocketAddr>,
}

/// The leader's side of an epoch.
#[derive(Debug, Clone)]
struct Leading<V> {
    read_from: BTreeSet<SocketAddr>,
    read_done: bool,
    /// Per instance, the best state reported so far.
    adopted: BTreeMap<InstanceId, EpochState<V>>,
    /// Proposals waiting for the read phase.
    proposals: BTreeMap<InstanceId, V>,
    /// Instances written in this epoch and not yet decided and acknowledged by every member.
    writes: BTreeMap<InstanceId, Write<V>>,
    /// Instances written, decided and acknowledged by every member (never written again).
    done: BTreeSet<InstanceId>,
    /// Per member, periods since it last answered (re-sending backs off while it is silent).
    silent: BTreeMap<SocketAddr, u32>,
}

impl<V> Leading<V> {
    fn written(&self, id: &InstanceId) -> bool {
        self.writes.contains_key(id) || self.done.contains(id)
    }
}

impl<V> Default for Leading<V> {
    fn default() -> Self {
        Leading {
            read_from: BTreeSet::new(),
            read_done: false,
            adopted: BTreeMap::new(),
            proposals: BTreeMap::new(),
            writes: BTreeMap::new(),
            done: BTreeSet::new(),
            silent: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone)]
struct Epoch<V> {
    ets: u64,
    leader: NodeAddr,
    aborted: bool,
    decided: BTreeSet<InstanceId>,
    lead: Option<Leading<V>>,
}

/// Read/write epoch consensus (CGR Algorithm 5.6) for one process, one epoch at a time, many
/// instances at once, with retransmission by the leader.
///
/// The read phase is per epoch, not per instance (as in Multi-Paxos): the leader asks every
/// member once for all its states; after a majority answered, it writes, for every instance it
/// learnt a value of, the value with the highest timestamp — also when nobody proposed it in
/// this epoch, so decisions of crashed processes and unfinished instances are completed — and
/// for every other instance, its proposal as it arrives. The leader re-sends each step to the
/// members that have not answered it every [`EpConfig::retransmit`], until each member has
/// acknowledged the decision: a member that lost messages still decides while the leader
/// lives.
#[derive(Debug, Clone)]
pub struct EpochConsensusMachine<V> {
    group: Membership,
    states: BTreeMap<InstanceId, EpochState<V>>,
    epoch: Option<Epoch<V>>,
    future: VecDeque<(NodeAddr, EpMessage<V>)>,
    #[cfg(feature = "flaws")]
    flaw: Option<Flaw>,
}

impl<V: Clone + Debug + PartialEq> EpochConsensusMachine<V> {
    /// Epoch consensus of process `me` in `group`.
    pub fn new(me: NodeAddr, group: Vec<NodeAddr>) -> Self {
        EpochConsensusMachine {
            group: Membership::new(me, group),
            states: BTreeMap::new(),
            epoch: None,
            future: VecDeque::new(),
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

    /// The current epoch's timestamp and whether it was aborted (`None` before the first).
    pub fn epoch(&self) -> Option<(u64, bool)> {
        self.epoch.as_ref().map(|e| (e.ets, e.aborted))
    }

    /// This process's state of instance `id`.
    pub fn state(&self, id: InstanceId) -> EpochState<V> {
        self.states.get(&id).cloned().unwrap_or_default()
    }

    fn state_list(&self) -> Vec<(InstanceId, EpochState<V>)> {
        self.states.iter().map(|(id, s)| (*id, s.clone())).collect()
    }

    /// Starts epoch `ets` led by `leader`, with the states carried over. Ignored unless `ets`
    /// is above the current epoch's.
    pub fn start(
        &mut self,
        ets: u64,
        leader: NodeAddr,
        states: Vec<(InstanceId, EpochState<V>)>,
        out: &mut Vec<EpOutput<V>>,
    ) {
        if self.epoch.as_ref().is_some_and(|e| ets <= e.ets) {
            tracing::warn!(ets, "epoch consensus: start of an old epoch ignored");
            return;
        }
        self.states = states.into_iter().filter(|(_, s)| s.val.is_some()).collect();
        let leader = self.group.name_of(leader);
        let lead = self.group.is_me(leader).then(Leading::default);
        self.epoch = Some(Epoch { ets, leader, aborted: false, decided: BTreeSet::new(), lead });
        if self.group.is_me(leader) {
            out.push(EpOutput::Broadcast(EpMessage::Read { ets }));
            let me = self.group.me();
            self.on_message(me, EpMessage::Read { ets }, out);
        }
        for (from, msg) in std::mem::take(&mut self.future) {
            if msg.ets() >= ets {
                self.on_message(from, msg, out);
            }
        }
    }

    /// The leader proposes `value` for instance `id` in epoch `ets`. Ignored if this process
    /// does not lead a running epoch `ets`, or already writes a value for `id`.
    pub fn propose(&mut self, ets: u64, id: InstanceId, value: V, out: &mut Vec<EpOutput<V>>) {
        let Some(e) = self.epoch.as_mut().filter(|e| e.ets == ets && !e.aborted) else { return };
        let Some(lead) = e.lead.as_mut() else { return };
        if lead.written(&id) {
            return;
        }
        if lead.read_done {
            self.start_writes(vec![(id, value)], out);
        } else {
            lead.proposals.entry(id).or_insert(value);
        }
    }

    /// Aborts epoch `ets`: indicates `Aborted` with every state, then stays silent until the
    /// next [`start`](Self::start). Ignored for any other epoch, and when already aborted.
    pub fn abort(&mut self, ets: u64, out: &mut Vec<EpOutput<V>>) {
        let Some(e) = self.epoch.as_mut().filter(|e| e.ets == ets && !e.aborted) else { return };
        e.aborted = true;
        e.lead = None;
        out.push(EpOutput::Indicate(EpIndication::Aborted { ets, states: self.state_list() }));
    }

    /// A message arrived from `from` (by broadcast or point to point). Copies of this
    /// process's own broadcasts must not be passed here.
    pub fn on_message(&mut self, from: NodeAddr, msg: EpMessage<V>, out: &mut Vec<EpOutput<V>>) {
        let from = self.group.name_of(from);
        let ets = msg.ets();
        let (cur, aborted) = match &self.epoch {
            None => return self.buffer(from, msg),
            Some(e) => (e.ets, e.aborted),
        };
        if ets > cur {
            return self.buffer(from, msg);
        }
        if aborted {
            return;
        }
        if ets < cur {
            if has_flaw!(self, KeepStaleMessages) {
                self.stale_as_current(from, msg, out);
            }
            return;
        }
        let from_leader = self.epoch.as_ref().is_some_and(|e| e.leader.addr == from.addr);
        match msg {
            EpMessage::Read { .. } if from_leader => {
                let reply = EpMessage::State { ets, states: self.state_list() };
                self.answer_leader(reply, out);
            }
            EpMessage::Write { values, .. } if from_leader => {
                let ids = self.accept(ets, values);
                self.answer_leader(EpMessage::Accept { ets, ids }, out);
            }
            EpMessage::Decided { values, .. } if from_leader => {
                let ids = self.learn(ets, values, out);
                self.answer_leader(EpMessage::DecidedAck { ets, ids }, out);
            }
            EpMessage::State { states, .. } => self.on_state(from, states, out),
            EpMessage::Accept { ids, .. } => self.on_accept(from, ids, out),
            EpMessage::DecidedAck { ids, .. } => {
                let n = self.group.len();
                if let Some(lead) = self.leading() {
                    lead.silent.insert(from.addr, 0);
                    for id in ids {
                        let Some(w) = lead.writes.get_mut(&id) else { continue };
                        w.acked.insert(from.addr);
                        if w.acked.len() >= n {
                            lead.writes.remove(&id);
                            lead.done.insert(id);
                        }
                    }
                }
            }
            _ => {} // a leader's message from a process that does not lead this epoch
        }
    }

    /// The retransmission period passed: the leader re-sends what members have not answered
    /// (to a member silent for `k` periods, only when `k` is a power of two or a multiple of
    /// 32, so crashed members cost little).
    pub fn on_tick(&mut self, out: &mut Vec<EpOutput<V>>) {
        if has_flaw!(self, NoRetransmission) {
            return;
        }
        let Some(e) = self.epoch.as_mut().filter(|e| !e.aborted) else { return };
        let ets = e.ets;
        let Some(lead) = e.lead.as_mut() else { return };
        for p in self.group.others() {
            let silent = lead.silent.entry(p.addr).or_insert(0);
            *silent = silent.saturating_add(1);
            let k = *silent;
            if !(k.is_power_of_two() || k % MAX_BACKOFF == 0) {
                continue;
            }
            if !lead.read_done && !lead.read_from.contains(&p.addr) {
                out.push(EpOutput::Send(p, EpMessage::Read { ets }));
            }
            let mut write = Vec::new();
            let mut decided = Vec::new();
            for (id, w) in &lead.writes {
                if !w.decided && !w.accepted.contains(&p.addr) && write.len() < RESEND_BATCH {
                    write.push((*id, w.val.clone()));
                } else if w.decided && !w.acked.contains(&p.addr) && decided.len() < RESEND_BATCH {
                    decided.push((*id, w.val.clone()));
                }
            }
            if !write.is_empty() {
                out.push(EpOutput::Send(p, EpMessage::Write { ets, values: write }));
            }
            if !decided.is_empty() {
                out.push(EpOutput::Send(p, EpMessage::Decided { ets, values: decided }));
            }
        }
    }

    fn buffer(&mut self, from: NodeAddr, msg: EpMessage<V>) {
        if self.future.len() >= FUTURE_CAP {
            self.future.pop_front();
        }
        self.future.push_back((from, msg));
    }

    fn leading(&mut self) -> Option<&mut Leading<V>> {
        self.epoch.as_mut().filter(|e| !e.aborted)?.lead.as_mut()
    }

    /// Sends a member's answer to the leader (handled at once if this process leads).
    fn answer_leader(&mut self, msg: EpMessage<V>, out: &mut Vec<EpOutput<V>>) {
        let Some(leader) = self.epoch.as_ref().map(|e| e.leader) else { return };
        if self.group.is_me(leader) {
            let me = self.group.me();
            self.on_message(me, msg, out);
        } else {
            out.push(EpOutput::Send(leader, msg));
        }
    }

    /// Member: stores the leader's values as accepted in epoch `ets`.
    fn accept(&mut self, ets: u64, values: Vec<(InstanceId, V)>) -> Vec<InstanceId> {
        let mut ids = Vec::with_capacity(values.len());
        for (id, v) in values {
            self.states.insert(id, EpochState { valts: ets, val: Some(v) });
            ids.push(id);
        }
        ids
    }

    /// Member: decides the leader's decided values (once per instance and epoch).
    fn learn(
        &mut self,
        ets: u64,
        values: Vec<(InstanceId, V)>,
        out: &mut Vec<EpOutput<V>>,
    ) -> Vec<InstanceId> {
        let mut ids = Vec::with_capacity(values.len());
        for (id, v) in values {
            // The leader writes one value per instance and epoch: holding the decided value
            // is the same as having accepted its write.
            self.states.insert(id, EpochState { valts: ets, val: Some(v.clone()) });
            let first = self.epoch.as_mut().is_some_and(|e| e.decided.insert(id));
            if first {
                out.push(EpOutput::Indicate(EpIndication::Decide { ets, id, value: v }));
            }
            ids.push(id);
        }
        ids
    }

    /// Leader: a member's states.
    fn on_state(
        &mut self,
        from: NodeAddr,
        states: Vec<(InstanceId, EpochState<V>)>,
        out: &mut Vec<EpOutput<V>>,
    ) {
        let majority = self.group.majority();
        let lowest = has_flaw!(self, AdoptLowest);
        let Some(lead) = self.leading() else { return };
        lead.silent.insert(from.addr, 0);
        if !lead.read_from.insert(from.addr) {
            return; // a duplicate answer (retransmitted Read)
        }
        let mut late = Vec::new();
        for (id, s) in states {
            if s.val.is_none() {
                continue;
            }
            let better = match lead.adopted.get(&id) {
                None => true,
                Some(cur) if lowest => s.valts < cur.valts,
                Some(cur) => s.valts > cur.valts,
            };
            if better {
                lead.adopted.insert(id, s);
            }
            if lead.read_done && !lead.written(&id) && !late.contains(&id) {
                late.push(id);
            }
        }
        let writes: Vec<(InstanceId, V)> = if !lead.read_done && lead.read_from.len() >= majority {
            lead.read_done = true;
            let mut w: Vec<_> =
                lead.adopted.iter().filter_map(|(id, s)| s.val.clone().map(|v| (*id, v))).collect();
            for (id, v) in std::mem::take(&mut lead.proposals) {
                if !lead.adopted.contains_key(&id) {
                    w.push((id, v));
                }
            }
            w
        } else {
            // Instances a late answer told of: no majority state had a value for them, so
            // any proposed value is safe; this one completes them.
            late.iter()
                .filter_map(|id| lead.adopted.get(id).and_then(|s| s.val.clone()).map(|v| (*id, v)))
                .collect()
        };
        if !writes.is_empty() {
            self.start_writes(writes, out);
        }
    }

    /// Leader: writes `values` (one per instance, never rewritten in this epoch).
    fn start_writes(&mut self, values: Vec<(InstanceId, V)>, out: &mut Vec<EpOutput<V>>) {
        let Some(e) = self.epoch.as_mut() else { return };
        let ets = e.ets;
        let Some(lead) = e.lead.as_mut() else { return };
        let mut sent = Vec::with_capacity(values.len());
        for (id, v) in values {
            if lead.written(&id) {
                continue;
            }
            let w = Write {
                val: v.clone(),
                accepted: BTreeSet::new(),
                decided: false,
                acked: BTreeSet::new(),
            };
            lead.writes.insert(id, w);
            sent.push((id, v));
        }
        if sent.is_empty() {
            return;
        }
        out.push(EpOutput::Broadcast(EpMessage::Write { ets, values: sent.clone() }));
        let me = self.group.me();
        self.on_message(me, EpMessage::Write { ets, values: sent }, out);
    }

    /// Leader: a member accepted; decide instances a majority accepted.
    fn on_accept(&mut self, from: NodeAddr, ids: Vec<InstanceId>, out: &mut Vec<EpOutput<V>>) {
        let majority = self.group.majority();
        let Some(e) = self.epoch.as_mut().filter(|e| !e.aborted) else { return };
        let ets = e.ets;
        let Some(lead) = e.lead.as_mut() else { return };
        lead.silent.insert(from.addr, 0);
        let mut decided = Vec::new();
        for id in ids {
            if let Some(w) = lead.writes.get_mut(&id) {
                w.accepted.insert(from.addr);
                if !w.decided && w.accepted.len() >= majority {
                    w.decided = true;
                    decided.push((id, w.val.clone()));
                }
            }
        }
        if decided.is_empty() {
            return;
        }
        out.push(EpOutput::Broadcast(EpMessage::Decided { ets, values: decided.clone() }));
        let me = self.group.me();
        self.on_message(me, EpMessage::Decided { ets, values: decided }, out);
    }

    /// The deliberately broken member of `Flaw::KeepStaleMessages`: takes a message of an
    /// older epoch as one of the current epoch, and answers its sender.
    fn stale_as_current(&mut self, from: NodeAddr, msg: EpMessage<V>, out: &mut Vec<EpOutput<V>>) {
        let Some(cur) = self.epoch.as_ref().map(|e| e.ets) else { return };
        match msg {
            EpMessage::Read { ets } => {
                let reply = EpMessage::State { ets, states: self.state_list() };
                out.push(EpOutput::Send(from, reply));
            }
            EpMessage::Write { ets, values } => {
                let ids = self.accept(cur, values);
                out.push(EpOutput::Send(from, EpMessage::Accept { ets, ids }));
            }
            EpMessage::Decided { ets, values } => {
                let ids = self.learn(cur, values, out);
                out.push(EpOutput::Send(from, EpMessage::DecidedAck { ets, ids }));
            }
            _ => {}
        }
    }
}
