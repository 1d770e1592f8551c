//! Unit tests of the machine, by role, over a hand-driven world: messages wait in a queue
//! until a test delivers them (one by one, a chosen one, or all), links can be cut one way,
//! and the failure detector is the test itself (`suspect`, `restore`).

mod bad_input;
#[cfg(feature = "flaws")]
mod flaws;
mod join;
mod leave;
mod merge;
mod recovery;
mod routing;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use selfman_core::{NodeAddr, NodeId, Time};
use selfman_ports::{
    LookupOutcome, Peer, Range, RangeChange, RingId, RingIndication, RingRequest, RingStatus,
    RingView,
};

use super::{RelaxedRingMachine, RingOutput};
use crate::config::RingConfig;
use crate::messages::RingMessage;

/// Payloads routed in tests.
pub(super) type Msg = u32;

/// A message in flight.
#[derive(Clone, Debug)]
pub(super) struct Flight {
    pub(super) from: NodeAddr,
    pub(super) to: NodeAddr,
    pub(super) msg: RingMessage<Msg>,
}

impl Flight {
    pub(super) fn name(&self) -> &'static str {
        self.msg.body.name()
    }
}

pub(super) struct Node {
    pub(super) m: RelaxedRingMachine,
    pub(super) ind: Vec<RingIndication<Msg>>,
    pub(super) watching: BTreeSet<NodeAddr>,
}

/// A set of machines and the messages between them.
pub(super) struct World {
    pub(super) now: Time,
    pub(super) config: RingConfig,
    pub(super) nodes: BTreeMap<NodeAddr, Node>,
    pub(super) queue: VecDeque<Flight>,
    /// Directed links that lose everything.
    pub(super) cut: BTreeSet<(NodeAddr, NodeAddr)>,
    /// Messages lost on cut links or to crashed nodes.
    pub(super) lost: Vec<Flight>,
    /// Crashed nodes, by ring position.
    pub(super) gone: BTreeMap<u64, Peer>,
    next: u32,
}

impl World {
    pub(super) fn new() -> World {
        World::with(RingConfig::default())
    }

    pub(super) fn with(config: RingConfig) -> World {
        World {
            now: Time::ZERO,
            config,
            nodes: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            lost: Vec::new(),
            gone: BTreeMap::new(),
            next: 1,
        }
    }

    /// A new peer at ring position `id`, outside any ring.
    pub(super) fn add(&mut self, id: u64) -> NodeAddr {
        let n = self.next;
        self.next += 1;
        let addr = NodeAddr::simulated(n, NodeId(u64::from(n) + 1000));
        let config = RingConfig { id: Some(RingId(id)), ..self.config };
        let node = Node {
            m: RelaxedRingMachine::new(addr, config),
            ind: Vec::new(),
            watching: BTreeSet::new(),
        };
        self.nodes.insert(addr, node);
        addr
    }

    /// The node at ring position `id`.
    /// The node at ring position `id` (also after it crashed).
    pub(super) fn at(&self, id: u64) -> NodeAddr {
        self.peer(id).addr
    }

    pub(super) fn peer(&self, id: u64) -> Peer {
        let live = self.nodes.values().map(|n| n.m.me()).find(|p| p.id == RingId(id));
        live.or_else(|| self.gone.get(&id).copied()).unwrap_or_else(|| panic!("no node at {id}"))
    }

    pub(super) fn m(&self, id: u64) -> &RelaxedRingMachine {
        &self.nodes[&self.at(id)].m
    }

    pub(super) fn view(&self, id: u64) -> RingView {
        self.m(id).view()
    }

    pub(super) fn apply(&mut self, at: NodeAddr, outs: Vec<RingOutput<Msg>>) {
        for o in outs {
            match o {
                RingOutput::Send { to, msg } => {
                    assert_ne!(to, at, "a peer never sends to itself");
                    self.queue.push_back(Flight { from: at, to, msg });
                }
                RingOutput::Monitor(n) => {
                    let w = &mut self.nodes.get_mut(&at).expect("exists").watching;
                    assert!(w.insert(n), "monitored twice: {n}");
                }
                RingOutput::Unmonitor(n) => {
                    let w = &mut self.nodes.get_mut(&at).expect("exists").watching;
                    assert!(w.remove(&n), "unmonitored without a monitor: {n}");
                }
                RingOutput::Indicate(i) => {
                    self.nodes.get_mut(&at).expect("exists").ind.push(i);
                }
            }
        }
    }

    pub(super) fn with_node(
        &mut self,
        at: NodeAddr,
        f: impl FnOnce(&mut RelaxedRingMachine, Time, &mut Vec<RingOutput<Msg>>),
    ) {
        let now = self.now;
        let mut out = Vec::new();
        if let Some(n) = self.nodes.get_mut(&at) {
            f(&mut n.m, now, &mut out);
        }
        self.apply(at, out);
    }

    pub(super) fn request(&mut self, id: u64, req: RingRequest<Msg>) {
        let a = self.at(id);
        self.with_node(a, |m, now, out| m.on_request(req, now, out));
    }

    pub(super) fn bootstrap(&mut self, id: u64) {
        self.request(id, RingRequest::Bootstrap);
    }

    pub(super) fn join(&mut self, id: u64, via: u64) {
        let access = self.at(via);
        self.request(id, RingRequest::Join { access });
    }

    pub(super) fn lookup(&mut self, id: u64, key: u64, tag: u64) {
        self.request(id, RingRequest::Lookup { key: RingId(key), tag });
    }

    pub(super) fn suspect(&mut self, id: u64, who: u64) {
        let (a, w) = (self.at(id), self.at(who));
        self.with_node(a, |m, now, out| m.on_suspect(w, now, out));
    }

    pub(super) fn suspect_addr(&mut self, at: NodeAddr, who: NodeAddr) {
        self.with_node(at, |m, now, out| m.on_suspect(who, now, out));
    }

    pub(super) fn restore(&mut self, id: u64, who: u64) {
        let (a, w) = (self.at(id), self.at(who));
        self.with_node(a, |m, now, out| m.on_restore(w, now, out));
    }

    /// Delivers the message at the front of the queue.
    pub(super) fn step(&mut self) -> bool {
        let Some(f) = self.queue.pop_front() else { return false };
        self.deliver(f);
        true
    }

    pub(super) fn deliver(&mut self, f: Flight) {
        if self.cut.contains(&(f.from, f.to)) || !self.nodes.contains_key(&f.to) {
            self.lost.push(f);
            return;
        }
        let Flight { from, to, msg } = f;
        self.with_node(to, |m, now, out| m.on_message(from, msg, now, out));
    }

    /// Removes (without delivering) the first message in flight matching `pred`.
    pub(super) fn take(&mut self, pred: impl Fn(&Flight) -> bool) -> Option<Flight> {
        let i = self.queue.iter().position(pred)?;
        self.queue.remove(i)
    }

    /// Delivers the first message in flight named `name` from `from` to `to`.
    pub(super) fn deliver_named(&mut self, name: &str, from: u64, to: u64) {
        let (f, t) = (self.at(from), self.at(to));
        let m = self
            .take(|x| x.name() == name && x.from == f && x.to == t)
            .unwrap_or_else(|| panic!("no {name} from {from} to {to} in {:?}", self.names()));
        self.deliver(m);
    }

    /// What is in flight, as `(name, from id, to id)`.
    pub(super) fn names(&self) -> Vec<(&'static str, u64, u64)> {
        let id = |a: &NodeAddr| self.nodes.get(a).map_or(u64::MAX, |n| n.m.me().id.0);
        self.queue.iter().map(|f| (f.name(), id(&f.from), id(&f.to))).collect()
    }

    /// Delivers everything until nothing is in flight, checking consistency after each step.
    pub(super) fn run(&mut self) {
        for _ in 0..1_000_000 {
            if !self.step() {
                return;
            }
            self.assert_consistent();
        }
        panic!("messages never stop: {:?}", &self.names()[..20.min(self.queue.len())]);
    }

    /// Delivers everything, without checking consistency (for windows a test expects).
    pub(super) fn run_unchecked(&mut self) {
        for _ in 0..1_000_000 {
            if !self.step() {
                return;
            }
        }
        panic!("messages never stop");
    }

    /// As [`World::tick_for`], without checking consistency.
    pub(super) fn tick_unchecked(&mut self, d: Duration) {
        let tick = self.config.tick;
        let end = self.now + d;
        while self.now < end {
            self.now = self.now + tick;
            let addrs: Vec<NodeAddr> = self.nodes.keys().copied().collect();
            for a in addrs {
                self.with_node(a, |m, now, out| m.on_tick(now, out));
            }
            self.run_unchecked();
        }
    }

    /// Lets `d` pass tick by tick, running every node's timers and delivering everything.
    pub(super) fn tick_for(&mut self, d: Duration) {
        let tick = self.config.tick;
        let end = self.now + d;
        while self.now < end {
            self.now = self.now + tick;
            let addrs: Vec<NodeAddr> = self.nodes.keys().copied().collect();
            for a in addrs {
                self.with_node(a, |m, now, out| m.on_tick(now, out));
            }
            self.run();
        }
    }

    /// Crashes the node at `id` (its messages in flight are lost); nobody is told.
    pub(super) fn crash(&mut self, id: u64) -> NodeAddr {
        let p = self.peer(id);
        self.nodes.remove(&p.addr);
        self.gone.insert(id, p);
        p.addr
    }

    /// Crashes the node at `id` and has every node watching it suspect it (a perfect failure
    /// detector).
    pub(super) fn crash_detected(&mut self, id: u64) {
        let a = self.crash(id);
        let watchers: Vec<NodeAddr> =
            self.nodes.iter().filter(|(_, n)| n.watching.contains(&a)).map(|(w, _)| *w).collect();
        for w in watchers {
            self.suspect_addr(w, a);
        }
    }

    /// Builds a converged ring of peers at `ids` (bootstrapped by the first, joined one by
    /// one through it).
    pub(super) fn ring(ids: &[u64]) -> World {
        let mut w = World::new();
        w.build(ids);
        w
    }

    pub(super) fn build(&mut self, ids: &[u64]) {
        for id in ids {
            self.add(*id);
        }
        self.bootstrap(ids[0]);
        for id in &ids[1..] {
            self.join(*id, ids[0]);
            self.run();
        }
        self.tick_for(Duration::from_secs(3));
        self.assert_ring();
    }

    /// Indications of the node at `id` since the last call.
    pub(super) fn drain(&mut self, id: u64) -> Vec<RingIndication<Msg>> {
        let a = self.at(id);
        std::mem::take(&mut self.nodes.get_mut(&a).expect("exists").ind)
    }

    /// The ranges of in-ring peers overlap nowhere.
    pub(super) fn assert_consistent(&self) {
        if let Err(e) = self.consistency() {
            panic!("{e}");
        }
    }

    pub(super) fn consistency(&self) -> Result<(), String> {
        let owned: Vec<(RingId, Range)> =
            self.nodes.values().filter_map(|n| n.m.range().map(|r| (n.m.me().id, r))).collect();
        for (i, (a, ra)) in owned.iter().enumerate() {
            for (b, rb) in &owned[i + 1..] {
                if ra.overlaps(rb) {
                    return Err(format!("{a} owns {ra} and {b} owns {rb}: they overlap"));
                }
            }
        }
        Ok(())
    }

    /// The live peers form one ring: pointers, lists and ranges agree with the sorted order.
    pub(super) fn assert_ring(&self) {
        if let Err(e) = self.ring_check() {
            panic!("{e}");
        }
    }

    /// The members (every peer but those that left, which may keep running) form one ring.
    pub(super) fn ring_check(&self) -> Result<(), String> {
        let mut peers: Vec<&RelaxedRingMachine> =
            self.nodes.values().map(|n| &n.m).filter(|m| m.status() != RingStatus::Left).collect();
        peers.sort_by_key(|m| m.me().id);
        let n = peers.len();
        for (i, m) in peers.iter().enumerate() {
            let me = m.me();
            if m.status() != RingStatus::InRing {
                return Err(format!("{me} is {:?}", m.status()));
            }
            let next = peers[(i + 1) % n].me();
            let prev = peers[(i + n - 1) % n].me();
            let v = m.view();
            if v.succ != Some(next) {
                return Err(format!("{me}: succ {:?}, expected {next}", v.succ.map(|p| p.id)));
            }
            if v.pred != Some(prev) {
                return Err(format!("{me}: pred {:?}, expected {prev}", v.pred.map(|p| p.id)));
            }
            let want: Vec<Peer> =
                (1..n).map(|k| peers[(i + k) % n].me()).take(m.config().succ_list_size).collect();
            if v.succ_list != want {
                let got: Vec<_> = v.succ_list.iter().map(|p| p.id.0).collect();
                return Err(format!("{me}: succ list {got:?}"));
            }
        }
        self.consistency()
    }

    /// The outcome of the lookup with `tag` at `id`, if answered.
    pub(super) fn outcome(&mut self, id: u64, tag: u64) -> Option<LookupOutcome> {
        let a = self.at(id);
        let ind = &self.nodes[&a].ind;
        ind.iter().find_map(|i| match i {
            RingIndication::LookupResult { tag: t, outcome, .. } if *t == tag => Some(*outcome),
            _ => None,
        })
    }

    /// The owner of `key` by the sorted order of live peers.
    pub(super) fn owner_of(&self, key: u64) -> Peer {
        let mut ids: Vec<Peer> = self.nodes.values().map(|n| n.m.me()).collect();
        ids.sort_by_key(|p| p.id);
        *ids.iter().find(|p| p.id.0 >= key).unwrap_or(&ids[0])
    }
}

/// The responsibility changes among `ind`.
pub(super) fn changes(ind: &[RingIndication<Msg>]) -> Vec<RangeChange> {
    ind.iter()
        .filter_map(|i| match i {
            RingIndication::Responsibility(rc) => Some(rc.change),
            _ => None,
        })
        .collect()
}

pub(super) fn range(a: u64, b: u64) -> Range {
    Range::new(RingId(a), RingId(b))
}

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_world_builds_a_converged_ring() {
    let w = World::ring(&[100, 200, 300, 400, 500]);
    assert_eq!(w.view(300).range, Some(range(200, 300)));
    assert_eq!(w.view(100).range, Some(range(500, 100)));
}

#[test]
fn state_carries_over_to_a_replacement_with_another_config() {
    let mut w = World::ring(&[100, 200, 300, 400, 500, 600, 700, 800, 900]);
    let before = w.view(300);
    let config = RingConfig { k: 2, succ_list_size: 3, pred_list_size: 2, ..w.config };
    let a = w.at(300);
    let mut fresh = RelaxedRingMachine::new(a, RingConfig { id: Some(RingId(999)), ..config });
    fresh.take_over(w.m(300).save());
    assert_eq!(fresh.me(), before.me, "a running peer keeps its identifier");
    assert_eq!(fresh.range(), before.range);
    assert_eq!(fresh.view().succ_list, before.succ_list[..3].to_vec());
    assert!(fresh.view().pred_list.len() <= 2);
    assert_eq!(fresh.view().pred, before.pred);
    // The saved state is plain serde data.
    let json = serde_json::to_string(&w.m(300).save()).expect("serialises");
    let back: super::RingState = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, w.m(300).save());
    // The replacement keeps working in the ring.
    w.nodes.get_mut(&a).expect("exists").m = fresh;
    w.tick_for(secs(3));
    w.assert_consistent();
    w.lookup(300, 750, 1);
    w.run();
    match w.outcome(300, 1) {
        Some(LookupOutcome::Found { peer, .. }) => assert_eq!(peer, w.peer(800)),
        other => panic!("lookup after the swap: {other:?}"),
    }
    // Its shorter successor list shortens its predecessors' (they copy it): a config
    // change is meant for every peer.
    assert_eq!(w.view(200).succ_list.len(), 4);
}
