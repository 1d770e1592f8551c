//! A hand-driven world of replication machines: a ring the test controls (who owns what, when
//! responsibility moves, in which order peers hear of it), messages delivered one at a time in
//! FIFO order with zero latency, time advanced by hand, and every message's encoded size
//! counted by kind.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use selfman_core::{NodeAddr, NodeId, Time};
use selfman_ports::{
    HostId, Peer, QuorumRead, Range, RangeChange, ReadFailure, ReplicaOp, ReplicaOutcome,
    ReplicationIndication, ReplicationRequest, ResponsibilityChange, RingId, Version,
};

use crate::config::ReplicationConfig;
use crate::machine::{ReplOutput, ReplicaMachine};
use crate::messages::ReplMessage;

#[cfg(feature = "flaws")]
use crate::machine::Flaw;

/// Where a message in flight goes.
#[derive(Clone, Debug)]
pub(crate) enum Dest {
    Direct(NodeAddr),
    Routed { key: RingId, tag: u64 },
}

/// Which messages a world drops instead of delivering.
pub(crate) type Loss = Box<dyn FnMut(&NodeAddr, &Dest, &ReplMessage) -> bool>;

pub(crate) struct World {
    pub(crate) config: ReplicationConfig,
    pub(crate) now: Time,
    pub(crate) nodes: BTreeMap<NodeAddr, ReplicaMachine>,
    pub(crate) peers: BTreeMap<NodeAddr, Peer>,
    /// The ring as routing sees it: identifier → node.
    pub(crate) ring: BTreeMap<RingId, NodeAddr>,
    pub(crate) queue: VecDeque<(NodeAddr, Dest, ReplMessage)>,
    pub(crate) told: Vec<(NodeAddr, ReplicationIndication)>,
    /// Encoded bytes delivered, by message kind.
    pub(crate) bytes: BTreeMap<&'static str, usize>,
    /// Messages matching this are dropped instead of delivered.
    pub(crate) lose: Option<Loss>,
    next_tag: u64,
    leaves: Vec<NodeAddr>,
}

/// The node at ring identifier `id` (a distinct address and incarnation for each id).
pub(crate) fn addr(id: u64) -> NodeAddr {
    let h = crate::placement::mix64(id);
    NodeAddr::simulated((h % (1 << 24)) as u32, NodeId(h | 1))
}

/// The message's kind, for byte counts.
pub(crate) fn kind(m: &ReplMessage) -> &'static str {
    match m {
        ReplMessage::Op(_) => "op",
        ReplMessage::OpReply { .. } => "op-reply",
        ReplMessage::Offer { .. } | ReplMessage::Accept { .. } | ReplMessage::Decline { .. } => {
            "offer"
        }
        ReplMessage::Items { .. } => "items",
        ReplMessage::ItemsAck { .. } => "items-ack",
        ReplMessage::Done { .. } | ReplMessage::DoneAck { .. } | ReplMessage::Pull { .. } => "done",
        ReplMessage::RangeRead { .. } | ReplMessage::RangeNotReady { .. } => "range-read",
        ReplMessage::RangeItems { .. } => "range-items",
        ReplMessage::SyncItems { .. } => "sync-items",
        ReplMessage::SyncPush { .. } => "sync-push",
        _ => "sync",
    }
}

impl World {
    /// A converged ring of nodes at `ids` (hosts `0, 1, …` in order), each owning
    /// `(pred, self]` from the start, with no data.
    pub(crate) fn ring(config: ReplicationConfig, ids: &[u64]) -> World {
        let mut w = World {
            config,
            now: Time::ZERO,
            nodes: BTreeMap::new(),
            peers: BTreeMap::new(),
            ring: BTreeMap::new(),
            queue: VecDeque::new(),
            told: Vec::new(),
            bytes: BTreeMap::new(),
            lose: None,
            next_tag: 1,
            leaves: Vec::new(),
        };
        for (i, id) in ids.iter().enumerate() {
            w.add(*id, HostId(i as u32));
            w.ring.insert(RingId(*id), addr(*id));
        }
        for id in ids {
            let range = w.range_of(*id);
            let a = addr(*id);
            let peer = w.peers[&a];
            w.with(a, |m, now, out| {
                m.on_joined(peer, now);
                let rc = ResponsibilityChange {
                    now: Some(range),
                    change: RangeChange::Gained { range, from: None },
                };
                m.on_responsibility(rc, now, out);
            });
        }
        w.run();
        w
    }

    fn add(&mut self, id: u64, host: HostId) {
        let a = addr(id);
        let config = ReplicationConfig { host, ..self.config };
        self.nodes.insert(a, ReplicaMachine::new(a, config));
        self.peers.insert(a, Peer::new(RingId(id), a));
    }

    /// Replaces node `id`'s machine by one with `flaw`.
    #[cfg(feature = "flaws")]
    pub(crate) fn flaw(&mut self, id: u64, flaw: Flaw) {
        let a = addr(id);
        let m = self.nodes.remove(&a).expect("a node");
        self.nodes.insert(a, m.with_flaw(flaw));
    }

    /// The range node `id` owns in the world's ring.
    pub(crate) fn range_of(&self, id: u64) -> Range {
        let me = RingId(id);
        let pred = self
            .ring
            .range(..me)
            .next_back()
            .or_else(|| self.ring.iter().next_back())
            .map(|(i, _)| *i);
        match pred {
            Some(p) if p != me => Range::new(p, me),
            _ => Range::full(me),
        }
    }

    /// The node owning `key` in the world's ring.
    pub(crate) fn owner(&self, key: RingId) -> Option<NodeAddr> {
        self.ring.range(key..).next().or_else(|| self.ring.iter().next()).map(|(_, a)| *a)
    }

    pub(crate) fn m(&self, id: u64) -> &ReplicaMachine {
        &self.nodes[&addr(id)]
    }

    /// Runs `f` on node `a`'s machine and queues its outputs.
    pub(crate) fn with(
        &mut self,
        a: NodeAddr,
        f: impl FnOnce(&mut ReplicaMachine, Time, &mut Vec<ReplOutput>),
    ) {
        let Some(m) = self.nodes.get_mut(&a) else { return };
        let mut out = Vec::new();
        f(m, self.now, &mut out);
        self.take(a, out);
    }

    fn take(&mut self, from: NodeAddr, out: Vec<ReplOutput>) {
        for o in out {
            match o {
                ReplOutput::Route { key, tag, msg } => {
                    self.queue.push_back((from, Dest::Routed { key, tag }, msg))
                }
                ReplOutput::Send { to, msg } => self.queue.push_back((from, Dest::Direct(to), msg)),
                ReplOutput::Indicate(i) => self.told.push((from, i)),
                ReplOutput::Monitor(_) | ReplOutput::Unmonitor(_) => {}
                ReplOutput::LeaveRing => self.leaves.push(from),
            }
        }
    }

    /// Delivers the oldest message in flight. Returns false when none is.
    pub(crate) fn step(&mut self) -> bool {
        let Some((from, dest, msg)) = self.queue.pop_front() else { return false };
        if let Some(lose) = self.lose.as_mut() {
            if lose(&from, &dest, &msg) {
                return true;
            }
        }
        let size =
            bincode::serde::encode_to_vec(&msg, bincode::config::standard()).map_or(0, |v| v.len());
        *self.bytes.entry(kind(&msg)).or_default() += size;
        match dest {
            Dest::Direct(to) => self.with(to, |m, now, out| m.on_message(from, msg, now, out)),
            Dest::Routed { key, tag } => match self.owner(key) {
                Some(to) if self.nodes.contains_key(&to) => {
                    let origin = self.peers[&from];
                    self.with(to, |m, now, out| m.on_deliver(origin, msg, now, out));
                }
                Some(_) => {} // to a crashed node: lost
                None => self.with(from, |m, now, out| m.on_undeliverable(key, tag, now, out)),
            },
        }
        true
    }

    /// Delivers everything in flight (and what that sends), and the leaves asked for.
    pub(crate) fn run(&mut self) {
        let mut n = 0;
        loop {
            while self.step() {
                n += 1;
                assert!(n < 10_000_000, "a message storm");
            }
            if self.leaves.is_empty() {
                break;
            }
            for a in std::mem::take(&mut self.leaves) {
                self.ring_leave(a);
            }
        }
    }

    /// Advances time by `d` in ticks, delivering everything after each.
    pub(crate) fn tick_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = self.now + self.config.tick;
            let nodes: Vec<NodeAddr> = self.nodes.keys().copied().collect();
            for a in nodes {
                self.with(a, |m, now, out| m.on_tick(now, out));
            }
            self.run();
        }
    }

    /// Ticks until `done` holds, at most `limit`. Returns whether it held.
    pub(crate) fn tick_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&World) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while !done(self) {
            if self.now >= end {
                return false;
            }
            self.tick_for(self.config.tick);
        }
        true
    }

    pub(crate) fn request(&mut self, via: u64, req: ReplicationRequest) {
        self.with(addr(via), |m, now, out| m.on_request(req, now, out));
    }

    fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Starts writing `(version, value)` of `key` at all replicas from `via`; returns the tags.
    pub(crate) fn start_write(
        &mut self,
        via: u64,
        key: &str,
        version: u64,
        value: &str,
    ) -> Vec<u64> {
        let mut tags = Vec::new();
        for replica in 0..self.config.f {
            let tag = self.tag();
            tags.push(tag);
            let op = ReplicaOp::Write {
                version: Version(version),
                value: Some(value.as_bytes().to_vec()),
            };
            self.request(
                via,
                ReplicationRequest::AtReplica { key: key.as_bytes().to_vec(), replica, op, tag },
            );
        }
        tags
    }

    /// How many of the operations `tags` were answered `Applied` or `Current`.
    pub(crate) fn acks(&self, tags: &[u64]) -> usize {
        self.told
            .iter()
            .filter(|(_, i)| match i {
                ReplicationIndication::ReplicaDone { tag, result: Ok((_, o)), .. } => {
                    tags.contains(tag)
                        && matches!(o, ReplicaOutcome::Applied | ReplicaOutcome::Current)
                }
                _ => false,
            })
            .count()
    }

    /// Whether every operation of `tags` was answered.
    pub(crate) fn answered(&self, tags: &[u64]) -> bool {
        let done = self
            .told
            .iter()
            .filter(|(_, i)| matches!(i, ReplicationIndication::ReplicaDone { tag, .. } if tags.contains(tag)))
            .count();
        done == tags.len()
    }

    /// Writes and waits for every replica to answer; returns how many applied it.
    pub(crate) fn write(&mut self, via: u64, key: &str, version: u64, value: &str) -> usize {
        let tags = self.start_write(via, key, version, value);
        self.run();
        let timeout = self.config.op_timeout * 2;
        self.tick_until(timeout, |w| w.answered(&tags));
        self.acks(&tags)
    }

    /// A quorum read from `via`, waiting for its answer.
    pub(crate) fn read(&mut self, via: u64, key: &str) -> Result<QuorumRead, ReadFailure> {
        let tag = self.tag();
        self.request(via, ReplicationRequest::Read { key: key.as_bytes().to_vec(), tag });
        self.run();
        let timeout = self.config.op_timeout * 2;
        self.tick_until(timeout, |w| w.read_result(tag).is_some());
        self.read_result(tag).expect("every read is answered")
    }

    pub(crate) fn read_result(&self, tag: u64) -> Option<Result<QuorumRead, ReadFailure>> {
        self.told.iter().find_map(|(_, i)| match i {
            ReplicationIndication::ReadDone { tag: t, result, .. } if *t == tag => {
                Some(result.clone())
            }
            _ => None,
        })
    }

    /// The version of replica `replica` of `key` as the node serving it holds it (`None`: no
    /// live node serves it).
    pub(crate) fn served(&self, key: &str, replica: u32) -> Option<Version> {
        let pos = RingId::of_key(key.as_bytes()).replica(replica, self.config.f);
        let id = crate::store::ItemId::new(pos, key.as_bytes());
        self.nodes
            .values()
            .find(|m| m.serving().iter().any(|r| r.contains(pos)))
            .map(|m| m.store().get(&id).map_or(Version(0), |r| r.version))
    }

    /// Node `id` joins at its identifier: its successor gives up `(pred, id]` and the joiner
    /// takes it, in the order `successor_first` says (the relaxed ring: the successor first).
    pub(crate) fn join(&mut self, id: u64, host: HostId, successor_first: bool) {
        self.add(id, host);
        let q = addr(id);
        let qp = self.peers[&q];
        let succ = self.owner(RingId(id)).expect("a ring");
        let sp = self.peers[&succ];
        self.ring.insert(RingId(id), q);
        let mine = self.range_of(id);
        let theirs = self.range_of(sp.id.0);
        let lose = move |w: &mut World| {
            w.with(succ, |m, now, out| {
                let rc = ResponsibilityChange {
                    now: Some(theirs),
                    change: RangeChange::Lost { range: mine, to: Some(qp) },
                };
                m.on_responsibility(rc, now, out);
            });
        };
        let gain = move |w: &mut World| {
            w.with(q, |m, now, out| {
                m.on_joined(qp, now);
                let rc = ResponsibilityChange {
                    now: Some(mine),
                    change: RangeChange::Gained { range: mine, from: Some(sp) },
                };
                m.on_responsibility(rc, now, out);
            });
        };
        if successor_first {
            lose(self);
            gain(self);
        } else {
            gain(self);
            lose(self);
        }
    }

    /// Node `id` crashes (its messages in flight and to it are lost); the ring has not
    /// noticed yet.
    pub(crate) fn crash(&mut self, id: u64) {
        let a = addr(id);
        self.nodes.remove(&a);
        self.queue.retain(|(from, _, _)| *from != a);
    }

    /// The failure detectors suspect crashed node `id`, and the ring gives its range to its
    /// successor.
    pub(crate) fn detect(&mut self, id: u64) {
        let a = addr(id);
        let np = self.peers[&a];
        let range = self.range_of(id);
        self.ring.remove(&RingId(id));
        let nodes: Vec<NodeAddr> = self.nodes.keys().copied().collect();
        for n in nodes {
            self.with(n, |m, now, out| m.on_suspect(a, now, out));
        }
        let Some(succ) = self.owner(RingId(id)) else { return };
        let sid = self.peers[&succ].id.0;
        let now_range = self.range_of(sid);
        self.with(succ, |m, now, out| {
            let rc = ResponsibilityChange {
                now: Some(now_range),
                change: RangeChange::Gained { range, from: Some(np) },
            };
            m.on_responsibility(rc, now, out);
        });
        self.run();
    }

    /// The ring part of a graceful leave of node `a`: it loses its range to its successor,
    /// which gains it from `a`; then the ring says `a` left.
    fn ring_leave(&mut self, a: NodeAddr) {
        let np = self.peers[&a];
        let range = self.range_of(np.id.0);
        self.ring.remove(&np.id);
        let succ = self.owner(np.id);
        let sp = succ.map(|s| self.peers[&s]);
        self.with(a, |m, now, out| {
            let rc =
                ResponsibilityChange { now: None, change: RangeChange::Lost { range, to: sp } };
            m.on_responsibility(rc, now, out);
        });
        if let Some(s) = succ {
            let now_range = self.range_of(self.peers[&s].id.0);
            self.with(s, |m, now, out| {
                let rc = ResponsibilityChange {
                    now: Some(now_range),
                    change: RangeChange::Gained { range, from: Some(np) },
                };
                m.on_responsibility(rc, now, out);
            });
        }
        self.with(a, |m, now, out| m.on_ring_left(now, out));
    }

    /// Whether `node` told `what`.
    pub(crate) fn told(&self, id: u64, what: impl Fn(&ReplicationIndication) -> bool) -> bool {
        self.told.iter().any(|(a, i)| *a == addr(id) && what(i))
    }

    /// The total encoded bytes of message kinds matching `which`.
    pub(crate) fn bytes_of(&self, which: &[&str]) -> usize {
        self.bytes.iter().filter(|(k, _)| which.contains(k)).map(|(_, b)| *b).sum()
    }
}
