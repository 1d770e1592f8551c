//! Test support for this crate's simulation suite. A component crate may not depend on another
//! component crate, even for tests (`.ci/check-deps.py`), so the ring and the failure detector
//! here are test doubles driven by one shared membership table: an **oracle ring** that
//! provides `Ring<ReplMessage>` with the relaxed ring's semantics as far as replication sees
//! them (a joiner owns its range at once, with `Gained { from: successor }`; the successor is
//! told `Lost { to: joiner }` at its next tick; a crashed peer's successor gains its range
//! `from` it once the table drops it; one hop to the owner, delivered only if the receiver
//! owns the key), and an **oracle detector** that suspects exactly the nodes the table marks
//! dead. The cross-crate suites in `tests/` run replication over the real relaxed ring.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfman_core::{
    Component, ComponentDefinition, Handled, Host, NetIndication, Network, NodeAddr, Provided,
    Required, Result, Setup, Timeout, Timer, TimerId,
};
use selfman_ports::{
    FailureDetector, FdIndication, FdRequest, HostId, Peer, Range, RangeChange, ReplicaViews,
    Replication, ReplicationIndication, ReplicationRequest, ResponsibilityChange, Ring, RingId,
    RingIndication, RingRequest, Unavailable,
};
use selfman_replication::{build, Placement, ReplMessage, ReplicationConfig, SymmetricReplication};
use selfman_sim::SimHost;
use serde::{Deserialize, Serialize};

/// Who is in the ring, and who is known dead.
#[derive(Default)]
pub struct Table {
    pub members: BTreeMap<RingId, NodeAddr>,
    pub dead: BTreeSet<SocketAddr>,
}

pub type SharedTable = Arc<Mutex<Table>>;

fn owner(t: &Table, key: RingId) -> Option<NodeAddr> {
    t.members.range(key..).next().or_else(|| t.members.iter().next()).map(|(_, a)| *a)
}

fn pred_of(t: &Table, me: RingId) -> Option<Peer> {
    let p = t.members.range(..me).next_back().or_else(|| t.members.iter().next_back());
    p.map(|(i, a)| Peer::new(*i, *a))
}

/// A routed payload on its one hop.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hop {
    key: RingId,
    origin: Peer,
    tag: u64,
    hops: u32,
    payload: ReplMessage,
}

const TICK: Duration = Duration::from_millis(20);

/// The oracle ring of one node.
pub struct OracleRing {
    net: Required<Network<Hop>>,
    timer: Required<Timer>,
    port: Provided<Ring<ReplMessage>>,
    table: SharedTable,
    me: Peer,
    wants_in: Option<bool>,
    pred: Option<Peer>,
    joined: bool,
}

impl OracleRing {
    pub fn new(me: Peer, table: SharedTable) -> OracleRing {
        OracleRing {
            net: Required::new(),
            timer: Required::new(),
            port: Provided::new(),
            table,
            me,
            wants_in: None,
            pred: None,
            joined: false,
        }
    }

    fn range(&self) -> Option<Range> {
        let p = self.pred?;
        Some(if p.id == self.me.id {
            Range::full(self.me.id)
        } else {
            Range::new(p.id, self.me.id)
        })
    }

    fn tell(&mut self, now: Option<Range>, change: RangeChange) {
        self.port.trigger(RingIndication::Responsibility(ResponsibilityChange { now, change }));
    }

    fn deliver_or_forward(&mut self, h: Hop) {
        if self.joined && self.range().is_some_and(|r| r.contains(h.key)) {
            let Hop { key, origin, tag, hops, payload } = h;
            self.port.trigger(RingIndication::Deliver { key, origin, tag, hops, payload });
            return;
        }
        let to = owner(&self.table.lock().unwrap(), h.key);
        match to {
            Some(to) if to != self.me.addr && h.hops < 4 => {
                self.net.send(to, Hop { hops: h.hops + 1, ..h });
            }
            _ if h.origin == self.me => {
                let reason = Unavailable::RangeUnavailable;
                self.port.trigger(RingIndication::Undeliverable { key: h.key, tag: h.tag, reason });
            }
            _ => {} // lost, as a routed message may be
        }
    }

    fn on_request(&mut self, r: RingRequest<ReplMessage>) -> Handled {
        match r {
            RingRequest::Bootstrap => self.wants_in = Some(true),
            RingRequest::Join { .. } => self.wants_in = Some(false),
            RingRequest::Route { key, tag, payload } => {
                if !self.joined {
                    let reason = Unavailable::NotInRing;
                    self.port.trigger(RingIndication::Undeliverable { key, tag, reason });
                } else {
                    self.deliver_or_forward(Hop { key, origin: self.me, tag, hops: 0, payload });
                }
            }
            RingRequest::Leave => {
                let (range, succ) = {
                    let mut t = self.table.lock().unwrap();
                    t.members.remove(&self.me.id);
                    let succ = owner(&t, self.me.id).map(|a| {
                        let id = *t.members.iter().find(|(_, x)| **x == a).unwrap().0;
                        Peer::new(id, a)
                    });
                    (self.range(), succ)
                };
                self.joined = false;
                if let Some(range) = range {
                    self.tell(None, RangeChange::Lost { range, to: succ });
                }
                self.port.trigger(RingIndication::Left);
            }
            _ => {}
        }
        Ok(())
    }

    fn on_net(&mut self, ev: NetIndication<Hop>) -> Handled {
        if let NetIndication::Deliver(d) = ev {
            self.deliver_or_forward(d.msg);
        }
        Ok(())
    }

    fn on_tick(&mut self, _: Timeout) -> Handled {
        if let Some(bootstrap) = self.wants_in.take() {
            let (pred, succ) = {
                let mut t = self.table.lock().unwrap();
                t.members.insert(self.me.id, self.me.addr);
                let succ = t
                    .members
                    .range(self.me.id.offset(1)..)
                    .next()
                    .or_else(|| t.members.iter().next());
                let succ = succ.map(|(i, a)| Peer::new(*i, *a)).unwrap_or(self.me);
                (pred_of(&t, self.me.id).unwrap_or(self.me), succ)
            };
            self.pred = Some(pred);
            self.joined = true;
            let range = self.range().expect("a predecessor");
            self.port.trigger(RingIndication::Joined { me: self.me, range, pred, succ });
            let from = (!bootstrap && succ != self.me).then_some(succ);
            self.tell(Some(range), RangeChange::Gained { range, from });
            return Ok(());
        }
        if !self.joined {
            return Ok(());
        }
        let new = pred_of(&self.table.lock().unwrap(), self.me.id).unwrap_or(self.me);
        let Some(old) = self.pred.replace(new) else { return Ok(()) };
        if old == new {
            return Ok(());
        }
        let now = self.range();
        let change = if new.id.in_open(old.id, self.me.id) || old.id == self.me.id {
            RangeChange::Lost { range: Range::new(old.id, new.id), to: Some(new) }
        } else {
            RangeChange::Gained { range: Range::new(new.id, old.id), from: Some(old) }
        };
        self.tell(now, change);
        Ok(())
    }
}

impl ComponentDefinition for OracleRing {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_tick);
        s.provide(|c| &mut c.port, Self::on_request);
    }

    fn on_start(&mut self) -> Handled {
        self.timer.schedule_periodic(TimerId(1), TICK, TICK);
        Ok(())
    }
}

/// Suspects the watched nodes the table marks dead.
pub struct OracleFd {
    timer: Required<Timer>,
    port: Provided<FailureDetector>,
    table: SharedTable,
    watched: BTreeSet<NodeAddr>,
    told: BTreeSet<NodeAddr>,
}

impl OracleFd {
    fn on_request(&mut self, r: FdRequest) -> Handled {
        match r {
            FdRequest::Monitor(n) => {
                self.watched.insert(n);
            }
            FdRequest::Unmonitor(n) => {
                self.watched.remove(&n);
            }
            _ => {}
        }
        Ok(())
    }

    fn on_tick(&mut self, _: Timeout) -> Handled {
        let dead: Vec<NodeAddr> = {
            let t = self.table.lock().unwrap();
            self.watched
                .iter()
                .filter(|n| t.dead.contains(&n.addr) && !self.told.contains(n))
                .copied()
                .collect()
        };
        for n in dead {
            self.told.insert(n);
            self.port.trigger(FdIndication::Suspect(n));
        }
        Ok(())
    }
}

impl ComponentDefinition for OracleFd {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.timer, Self::on_tick);
        s.provide(|c| &mut c.port, Self::on_request);
    }

    fn on_start(&mut self) -> Handled {
        self.timer.schedule_periodic(TimerId(1), TICK, TICK);
        Ok(())
    }
}

/// Records every replication indication of its node.
pub struct Client {
    port: Required<Replication>,
    me: SocketAddr,
    log: Log,
}

pub type Log = Arc<Mutex<Vec<(SocketAddr, ReplicationIndication)>>>;

impl Client {
    fn on_ind(&mut self, i: ReplicationIndication) -> Handled {
        self.log.lock().unwrap().push((self.me, i));
        Ok(())
    }
}

impl ComponentDefinition for Client {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.port, Self::on_ind);
    }
}

/// What the nodes of a run share with the test.
#[derive(Clone, Default)]
pub struct Board {
    pub table: SharedTable,
    pub views: ReplicaViews,
    pub repls: Arc<Mutex<BTreeMap<SocketAddr, Component<SymmetricReplication>>>>,
    pub nodes: Arc<Mutex<BTreeMap<SocketAddr, NodeAddr>>>,
    pub log: Log,
}

impl Board {
    /// Injects a request into the replication of the node at `addr`.
    pub fn request(
        &self,
        addr: SocketAddr,
        req: ReplicationRequest,
    ) -> std::result::Result<(), String> {
        let repls = self.repls.lock().unwrap();
        let c = repls.get(&addr).ok_or("no such node")?;
        c.provided::<Replication>().and_then(|p| p.request(req)).map_err(|e| e.to_string())
    }

    /// Marks the node at `addr` dead and drops it from the ring (the detectors and the ring
    /// notice at their next tick).
    pub fn detect(&self, addr: SocketAddr) {
        let mut t = self.table.lock().unwrap();
        t.dead.insert(addr);
        t.members.retain(|_, a| a.addr != addr);
    }
}

/// Node `i` runs on host `i mod hosts`; its ring position follows the placement rule: its
/// sector's anchor if it is the first node of its sector (`i < f`), else a position inside.
pub fn position(i: usize, hosts: u32, f: u32) -> (HostId, RingId) {
    // ANCHOR: position
    let host = HostId(i as u32 % hosts);
    // Attempt 0 is the sector's anchor; a node refused with `IdInUse` tries 1, 2, …
    let attempt = if (i as u32) < f { 0 } else { 1 + i as u32 };
    let id = Placement::new(f).join_position(host, attempt, i as u64 * 7919);
    // ANCHOR_END: position
    (host, id)
}

/// Builds a node: oracle detector, oracle ring at its placed position, replication, client.
/// Node 0 bootstraps, the others join.
pub fn node(h: &SimHost, board: &Board, hosts: u32, config: ReplicationConfig) -> Result<()> {
    let i = h.index();
    let (host, id) = position(i, hosts, config.f);
    let me = Peer::new(id, h.local());
    let table = board.table.clone();
    let fd = h.create(move || OracleFd {
        timer: Required::new(),
        port: Provided::new(),
        table: table.clone(),
        watched: BTreeSet::new(),
        told: BTreeSet::new(),
    })?;
    h.system().connect(&h.timer()?, &fd.required()?)?;
    let table = board.table.clone();
    let ring = h.create(move || OracleRing::new(me, table.clone()))?;
    h.system().connect(&h.network::<Hop>("oracle-ring")?, &ring.required()?)?;
    h.system().connect(&h.timer()?, &ring.required()?)?;
    // ANCHOR: build
    let repl = build(h, ReplicationConfig { host, ..config }, &ring.provided()?, &fd.provided()?)?;
    // ANCHOR_END: build
    let log = board.log.clone();
    let addr = h.local().addr;
    let client = h.create(move || Client { port: Required::new(), me: addr, log: log.clone() })?;
    h.system().connect(&repl.provided::<Replication>()?, &client.required::<Replication>()?)?;
    board.views.register(h.local(), &repl);
    board.repls.lock().unwrap().insert(addr, repl);
    board.nodes.lock().unwrap().insert(addr, h.local());
    let req = if i == 0 { RingRequest::Bootstrap } else { RingRequest::Join { access: h.local() } };
    ring.provided::<Ring<ReplMessage>>()?.request(req)?;
    Ok(())
}
