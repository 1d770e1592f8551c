//! A hand-driven world of transaction machines: a fixed ring (node `i` owns sector `i`'s
//! share), each node's replicas in a model of the replica record (`replica.rs`: votes,
//! locks, leases), messages delivered one at a time in FIFO order with the number of message delays
//! behind each counted, crashes, loss, and time advanced by hand.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::replica::{ItemId, Store, VoteEntry};
use selfman_core::{NodeAddr, NodeId, Time};
use selfman_ports::{
    QuorumRead, Range, ReadFailure, ReplicaFailure, ReplicaOp, ReplicaOutcome,
    ReplicationIndication, ReplicationRequest, RingId, TxHandle, TxId, TxIndication, TxRequest,
    Version,
};

use crate::config::TxConfig;
use crate::machine::{TxMachine, TxOutput};
use crate::messages::TxMessage;

#[cfg(feature = "flaws")]
use crate::machine::Flaw;

/// Where a message in flight goes.
#[derive(Clone, Debug)]
pub(crate) enum Dest {
    Direct(NodeAddr),
    Routed(RingId),
}

/// Which messages the world drops.
pub(crate) type Loss = Box<dyn FnMut(&NodeAddr, &Dest, &TxMessage) -> bool>;

pub(crate) struct Node {
    pub(crate) m: TxMachine,
    pub(crate) store: Store,
    pub(crate) up: bool,
}

pub(crate) struct World {
    pub(crate) config: TxConfig,
    pub(crate) now: Time,
    pub(crate) nodes: BTreeMap<NodeAddr, Node>,
    /// Ring position → node.
    pub(crate) ring: BTreeMap<RingId, NodeAddr>,
    pub(crate) pos: BTreeMap<NodeAddr, RingId>,
    /// In flight: sender, destination, message, message delays behind it.
    pub(crate) queue: VecDeque<(NodeAddr, Dest, TxMessage, u32)>,
    /// What clients were told, with the message delays behind it.
    pub(crate) told: Vec<(NodeAddr, TxIndication, u32)>,
    /// Message delays behind each decision a participant received.
    pub(crate) decision_delays: Vec<u32>,
    pub(crate) delivered: u64,
    pub(crate) lose: Option<Loss>,
    /// Tell every machine of a crash at once (the failure detector).
    pub(crate) detect_crashes: bool,
    pub(crate) tick: Duration,
    /// Replicas (key, replica number) whose `Commit` and `Release` operations fail with a
    /// timeout, as if the replica were unreachable.
    pub(crate) failing: Vec<(Vec<u8>, u32)>,
}

/// The address of node `i`.
pub(crate) fn addr(i: u32) -> NodeAddr {
    NodeAddr::simulated(i + 1, NodeId(u64::from(i) + 1))
}

impl World {
    /// `n` nodes (a multiple of `f`), spread evenly: node `i` at the end of the `i`-th of `n`
    /// equal arcs, so the `f` replicas of every key are on `f` distinct nodes.
    pub(crate) fn new(config: TxConfig, n: u32) -> World {
        Self::build(config, n, |m| m)
    }

    #[cfg(feature = "flaws")]
    pub(crate) fn flawed(config: TxConfig, n: u32, flaw: Flaw) -> World {
        Self::build(config, n, move |m| m.with_flaw(flaw))
    }

    fn build(config: TxConfig, n: u32, wrap: impl Fn(TxMachine) -> TxMachine) -> World {
        let mut w = World {
            config,
            now: Time::from_secs(1),
            nodes: BTreeMap::new(),
            ring: BTreeMap::new(),
            pos: BTreeMap::new(),
            queue: VecDeque::new(),
            told: Vec::new(),
            decision_delays: Vec::new(),
            delivered: 0,
            lose: None,
            detect_crashes: false,
            tick: Duration::from_millis(10),
            failing: Vec::new(),
        };
        let arc = (1u128 << 64) / u128::from(n);
        for i in 0..n {
            let pos = RingId(((u128::from(i) + 1) * arc - 1) as u64);
            let a = addr(i);
            w.ring.insert(pos, a);
            w.pos.insert(a, pos);
            w.nodes.insert(
                a,
                Node { m: wrap(TxMachine::new(a, config)), store: Store::new(), up: true },
            );
        }
        let all: Vec<NodeAddr> = w.nodes.keys().copied().collect();
        for a in all {
            let pos = w.pos[&a];
            let pred = w.ring.range(..pos).next_back().or_else(|| w.ring.iter().next_back());
            let range = pred.map(|(p, _)| Range::new(*p, pos));
            w.with(a, 0, |m, now, out| {
                m.on_range(range);
                m.on_joined(pos, now, out)
            });
        }
        w.run();
        w
    }

    pub(crate) fn owner(&self, key: RingId) -> NodeAddr {
        *self
            .ring
            .range(key..)
            .next()
            .or_else(|| self.ring.iter().next())
            .map(|(_, a)| a)
            .expect("a ring")
    }

    /// The node holding replica `r` of `key`, and the replica's store id.
    pub(crate) fn replica(&self, key: &[u8], r: u32) -> (NodeAddr, ItemId) {
        let pos = RingId::of_key(key).replica(r, self.config.f);
        (self.owner(pos), ItemId::new(pos, key))
    }

    pub(crate) fn m(&self, a: NodeAddr) -> &TxMachine {
        &self.nodes[&a].m
    }

    /// Runs `f` on node `a` and carries out its outputs (`depth`: message delays so far).
    pub(crate) fn with(
        &mut self,
        a: NodeAddr,
        depth: u32,
        f: impl FnOnce(&mut TxMachine, Time, &mut Vec<TxOutput>),
    ) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&a).filter(|n| n.up) else { return };
        let mut out = Vec::new();
        f(&mut node.m, now, &mut out);
        self.take(a, depth, out);
    }

    fn take(&mut self, from: NodeAddr, depth: u32, out: Vec<TxOutput>) {
        for o in out {
            match o {
                TxOutput::Route { key, msg } => {
                    self.queue.push_back((from, Dest::Routed(key), msg, depth))
                }
                // A batch is its messages on one link at once: each is queued (and may be
                // lost) on its own; the machines' handling of a batch is tested apart.
                TxOutput::Send { to, msg: TxMessage::Batch(msgs) } => {
                    for msg in msgs {
                        self.queue.push_back((from, Dest::Direct(to), msg, depth))
                    }
                }
                TxOutput::Send { to, msg } => {
                    self.queue.push_back((from, Dest::Direct(to), msg, depth))
                }
                TxOutput::Indicate(ind) => self.told.push((from, ind, depth)),
                TxOutput::Monitor(_) => {}
                TxOutput::Lookup { key, tag } => {
                    let who = self.owner(key);
                    self.with(from, depth, |m, _, _| m.on_lookup(tag, Some(who)));
                }
                TxOutput::Replicate(req) => {
                    let ind = self.replicate(req);
                    self.with(from, depth, |m, now, out| m.on_replication(ind, now, out));
                }
            }
        }
    }

    /// The replication layer, at once: the replicas of live nodes answer.
    fn replicate(&mut self, req: ReplicationRequest) -> ReplicationIndication {
        let now = self.now;
        match req {
            ReplicationRequest::AtReplica { key, replica, op, tag } => {
                let (owner, id) = self.replica(&key, replica);
                let fails = matches!(op, ReplicaOp::Commit { .. } | ReplicaOp::Release { .. })
                    && self.failing.iter().any(|(k, r)| *k == key && *r == replica);
                let node = self.nodes.get_mut(&owner).expect("a node");
                let result = if node.up && !fails {
                    Ok((owner, node.store.apply(id, &op, now).0))
                } else {
                    Err(ReplicaFailure::Timeout)
                };
                ReplicationIndication::ReplicaDone { key, replica, tag, result }
            }
            ReplicationRequest::Read { key, tag } => {
                let mut best: Option<(Version, Option<Vec<u8>>)> = None;
                let mut answered = 0;
                for r in 0..self.config.f {
                    let (owner, id) = self.replica(&key, r);
                    let node = self.nodes.get_mut(&owner).expect("a node");
                    if !node.up {
                        continue;
                    }
                    answered += 1;
                    if let ReplicaOutcome::Record { version, value, .. } =
                        node.store.apply(id, &ReplicaOp::Read, now).0
                    {
                        if best.as_ref().is_none_or(|(v, _)| version > *v) {
                            best = Some((version, value));
                        }
                    }
                }
                let result = match best {
                    Some((version, value)) if answered >= self.config.item_quorum() => {
                        Ok(QuorumRead { value, version, replicas: vec![] })
                    }
                    _ => Err(ReadFailure::Timeout { answered: vec![] }),
                };
                ReplicationIndication::ReadDone { key, tag, result }
            }
            _ => unreachable!("the transaction layer only reads and operates at replicas"),
        }
    }

    pub(crate) fn step(&mut self) -> bool {
        let Some((from, dest, mut msg, depth)) = self.queue.pop_front() else { return false };
        if let Some(lose) = self.lose.as_mut() {
            if let TxMessage::Batch(msgs) = &mut msg {
                // A routed batch (of prepares): each may be lost on its own.
                msgs.retain(|m| !lose(&from, &dest, m));
                if msgs.is_empty() {
                    return true;
                }
            } else if lose(&from, &dest, &msg) {
                return true;
            }
        }
        self.delivered += 1;
        let (to, routed) = match dest {
            Dest::Direct(to) => (to, false),
            Dest::Routed(key) => (self.owner(key), true),
        };
        if let TxMessage::Decided { tx, slot, .. } = &msg {
            if self.nodes.get(&to).is_some_and(|n| n.up && n.m.parts.contains_key(&(*tx, *slot))) {
                self.decision_delays.push(depth + 1);
            }
        }
        if routed {
            self.with(to, depth + 1, |m, now, out| m.on_deliver(from, msg, now, out));
        } else {
            self.with(to, depth + 1, |m, now, out| m.on_message(from, msg, now, out));
        }
        true
    }

    /// Delivers everything in flight, and what that sends.
    pub(crate) fn run(&mut self) {
        let mut n = 0u64;
        while self.step() {
            n += 1;
            assert!(n < 10_000_000, "a message storm");
        }
    }

    /// Advances time by `d` in ticks, delivering everything after each.
    pub(crate) fn tick_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = self.now + self.tick;
            let nodes: Vec<NodeAddr> = self.nodes.keys().copied().collect();
            for a in nodes {
                self.with(a, 0, |m, now, out| m.on_tick(now, out));
            }
            self.run();
        }
    }

    pub(crate) fn crash(&mut self, a: NodeAddr) {
        if let Some(n) = self.nodes.get_mut(&a) {
            n.up = false;
        }
        if self.detect_crashes {
            let nodes: Vec<NodeAddr> = self.nodes.keys().copied().collect();
            for n in nodes {
                self.with(n, 0, |m, _, _| m.on_suspect(a));
            }
        }
    }

    /// A client request at node `a` (message delays counted from 0).
    pub(crate) fn request(&mut self, a: NodeAddr, req: TxRequest) {
        self.with(a, 0, |m, now, out| m.on_request(req, now, out));
    }

    /// Requests at `a`, each run to its answer.
    pub(crate) fn script(&mut self, a: NodeAddr, reqs: Vec<TxRequest>) {
        for r in reqs {
            self.request(a, r);
            self.run();
        }
    }

    /// Writes `value` at version `v` at every replica of `key`.
    pub(crate) fn seed(&mut self, key: &[u8], v: u64, value: &[u8]) {
        for r in 0..self.config.f {
            let (owner, id) = self.replica(key, r);
            let op = ReplicaOp::Write { version: Version(v), value: Some(value.to_vec()) };
            let now = self.now;
            self.nodes.get_mut(&owner).expect("a node").store.apply(id, &op, now);
        }
    }

    /// The record of replica `r` of `key`: version, value, votes.
    pub(crate) fn record(&self, key: &[u8], r: u32) -> (Version, Option<Vec<u8>>, Vec<VoteEntry>) {
        let (owner, id) = self.replica(key, r);
        match self.nodes[&owner].store.get(&id) {
            Some(rec) => {
                (rec.version, rec.value.as_deref().map(<[u8]>::to_vec), rec.votes().to_vec())
            }
            None => (Version(0), None, Vec::new()),
        }
    }

    /// The commit answers told so far at `a`: handle → (tx, result).
    pub(crate) fn commits(
        &self,
        a: NodeAddr,
    ) -> BTreeMap<TxHandle, (Option<TxId>, selfman_ports::TxResult)> {
        self.told
            .iter()
            .filter(|(n, _, _)| *n == a)
            .filter_map(|(_, i, _)| match i {
                TxIndication::Committed { handle, tx, result } => {
                    Some((*handle, (*tx, result.clone())))
                }
                _ => None,
            })
            .collect()
    }

    /// Transactions and participants any live node still holds state of.
    pub(crate) fn state_left(&self) -> (usize, usize) {
        self.nodes
            .values()
            .filter(|n| n.up)
            .map(|n| n.m.in_flight())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}
