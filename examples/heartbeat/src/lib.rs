//! # A heartbeat protocol, written once, run in two worlds
//!
//! Each node sends a `Beat` to the peers it watches every `period` and suspects a peer it has
//! not heard from within its timeout; a suspected peer that is heard again is restored and its
//! timeout grows by `timeout_step` (an eventually perfect failure detector on a partially
//! synchronous network).
//!
//! The protocol sees only the [`Network`] and [`Timer`] ports and its component's RNG-free
//! clock; [`build`] wires it on any [`Host`]. The `heartbeat-node` binary runs it over TCP as an
//! OS process; `tests/two_worlds.rs` runs three such processes on 127.0.0.1 and 1,000 nodes in
//! the simulator — the same code.
//!
//! The logic lives in [`Monitor`], a plain state machine (no I/O), so it can be unit-tested and
//! simulated cheaply; [`Heartbeat`] is the thin component around it.
#![deny(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selfman_core::{
    Component, ComponentDefinition, Context, Handled, Host, NetIndication, Network, NodeAddr,
    NodeId, Port, Provided, Required, Result, Setup, Time, Timeout, Timer, TimerId,
};
use serde::{Deserialize, Serialize};

/// The protocol's name on the network.
pub const PROTOCOL: &str = "heartbeat";

/// The protocol's only message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat;

/// Timing of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How often beats are sent.
    pub period: Duration,
    /// How long a peer may be silent before it is suspected, at first.
    pub initial_timeout: Duration,
    /// How much a peer's timeout grows each time it was suspected wrongly.
    pub timeout_step: Duration,
}

impl Default for Config {
    /// Beats every 100 ms, suspicion after 350 ms, +100 ms per false suspicion.
    fn default() -> Self {
        Config {
            period: Duration::from_millis(100),
            initial_timeout: Duration::from_millis(350),
            timeout_step: Duration::from_millis(100),
        }
    }
}

/// A change in what a node suspects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The peer is silent for longer than its timeout.
    Suspect(NodeAddr),
    /// A suspected peer was heard again.
    Restore(NodeAddr),
}

/// The port a [`Heartbeat`] provides: it indicates each [`Change`].
#[derive(Debug)]
pub struct Suspicions;

impl Port for Suspicions {
    type Request = ();
    type Indication = Change;
}

#[derive(Debug, Clone)]
struct Peer {
    addr: NodeAddr,
    last_heard: Time,
    timeout: Duration,
    suspected: bool,
}

/// The protocol logic: no I/O, only inputs (ticks, beats) and outputs (beats to send, changes).
#[derive(Debug, Clone)]
pub struct Monitor {
    config: Config,
    peers: Vec<Peer>,
}

impl Monitor {
    /// Watches `peers` (an id of [`NodeId::UNKNOWN`] matches any incarnation; the real one is
    /// learnt from its beats), starting at `now`.
    pub fn new(peers: &[NodeAddr], config: Config, now: Time) -> Monitor {
        let peers = peers
            .iter()
            .map(|&addr| Peer {
                addr,
                last_heard: now,
                timeout: config.initial_timeout,
                suspected: false,
            })
            .collect();
        Monitor { config, peers }
    }

    /// A period passed: returns where to send beats now, and pushes new suspicions to
    /// `changes`.
    pub fn on_tick<'a>(
        &'a mut self,
        now: Time,
        changes: &mut Vec<Change>,
    ) -> impl Iterator<Item = NodeAddr> + use<'a> {
        for p in &mut self.peers {
            if !p.suspected && now.duration_since(p.last_heard) > p.timeout {
                p.suspected = true;
                changes.push(Change::Suspect(p.addr));
            }
        }
        self.peers.iter().map(|p| p.addr)
    }

    /// A beat arrived from `from`; returns a restore if that peer was suspected. A beat from a
    /// new incarnation of a watched address replaces the old one.
    pub fn on_beat(&mut self, from: NodeAddr, now: Time) -> Option<Change> {
        let p = self.peers.iter_mut().find(|p| p.addr.addr == from.addr)?;
        if p.addr.id != from.id {
            p.addr.id = from.id;
        }
        p.last_heard = now;
        if p.suspected {
            p.suspected = false;
            p.timeout += self.config.timeout_step;
            return Some(Change::Restore(from));
        }
        None
    }

    /// The addresses currently suspected.
    pub fn suspected(&self) -> BTreeSet<SocketAddr> {
        self.peers.iter().filter(|p| p.suspected).map(|p| p.addr.addr).collect()
    }
}

/// What every node suspects, by node address (for tests and dashboards).
pub type Board = Arc<Mutex<BTreeMap<SocketAddr, BTreeSet<SocketAddr>>>>;

/// The heartbeat component: requires `Network<Beat>` and `Timer`, provides [`Suspicions`].
pub struct Heartbeat {
    ctx: Context,
    net: Required<Network<Beat>>,
    timer: Required<Timer>,
    out: Provided<Suspicions>,
    me: NodeAddr,
    peers: Vec<NodeAddr>,
    config: Config,
    monitor: Option<Monitor>,
    board: Option<Board>,
}

impl Heartbeat {
    /// A heartbeat for node `me` watching `peers`; it reports to `board` if given.
    pub fn new(me: NodeAddr, peers: Vec<NodeAddr>, config: Config, board: Option<Board>) -> Self {
        Heartbeat {
            ctx: Context::new(),
            net: Required::new(),
            timer: Required::new(),
            out: Provided::new(),
            me,
            peers,
            config,
            monitor: None,
            board,
        }
    }

    fn on_net(&mut self, ev: NetIndication<Beat>) -> Handled {
        if let (NetIndication::Deliver(d), Some(m)) = (ev, self.monitor.as_mut()) {
            if let Some(c) = m.on_beat(d.from, self.ctx.now()) {
                self.report(&[c]);
            }
        }
        // Connection status events are hints; this simple detector relies on silence alone.
        Ok(())
    }

    fn on_tick(&mut self, _: Timeout) -> Handled {
        let Some(m) = self.monitor.as_mut() else { return Ok(()) };
        let mut changes = Vec::new();
        for to in m.on_tick(self.ctx.now(), &mut changes) {
            self.net.send(to, Beat);
        }
        self.report(&changes);
        Ok(())
    }

    fn report(&mut self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        if let (Some(b), Some(m)) = (&self.board, &self.monitor) {
            if let Ok(mut b) = b.lock() {
                b.insert(self.me.addr, m.suspected());
            }
        }
        for &c in changes {
            self.out.trigger(c);
        }
    }
}

impl ComponentDefinition for Heartbeat {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.context(|c| &mut c.ctx);
        s.require(|c| &mut c.net, Self::on_net);
        s.require(|c| &mut c.timer, Self::on_tick);
        s.provide(|c| &mut c.out, |_, ()| Ok(()));
    }

    fn on_start(&mut self) -> Handled {
        self.monitor = Some(Monitor::new(&self.peers, self.config, self.ctx.now()));
        self.timer.schedule_periodic(TimerId(1), self.config.period, self.config.period);
        Ok(())
    }
}

// ANCHOR: build
/// Wires a heartbeat on `host`, watching `peers`: the one function both worlds call.
///
/// # Errors
///
/// Whatever creating and connecting the component on `host` returns.
pub fn build<H: Host>(
    host: &H,
    peers: Vec<NodeAddr>,
    config: Config,
    board: Option<Board>,
) -> Result<Component<Heartbeat>> {
    let me = host.local();
    let hb = host.create(move || Heartbeat::new(me, peers.clone(), config, board.clone()))?;
    host.system().connect(&host.network::<Beat>(PROTOCOL)?, &hb.required()?)?;
    host.system().connect(&host.timer()?, &hb.required()?)?;
    Ok(hb)
}
// ANCHOR_END: build

/// The ring neighbours (predecessor and successor) of node `i` of `n`, addressed by `addr`
/// with unknown incarnation ids.
pub fn ring_neighbours(i: usize, n: usize, addr: impl Fn(usize) -> SocketAddr) -> Vec<NodeAddr> {
    if n < 2 {
        return Vec::new();
    }
    let mut v = vec![(i + n - 1) % n, (i + 1) % n];
    v.dedup();
    v.into_iter().map(|j| NodeAddr::new(addr(j), NodeId::UNKNOWN)).collect()
}

/// Checks that every running node of a ring of `n` (node `i` at `addr(i)`) suspects exactly its
/// crashed [`ring_neighbours`], according to `board`.
///
/// # Errors
///
/// Describes the first node that suspects a running neighbour or misses a crashed one.
pub fn check_ring(
    n: usize,
    addr: impl Fn(usize) -> SocketAddr,
    alive: &BTreeSet<SocketAddr>,
    board: &Board,
) -> std::result::Result<(), String> {
    let board = board.lock().map_err(|_| "board poisoned")?;
    for i in (0..n).filter(|&i| alive.contains(&addr(i))) {
        let me = addr(i);
        let suspects = board.get(&me).cloned().unwrap_or_default();
        for nb in ring_neighbours(i, n, &addr) {
            let up = alive.contains(&nb.addr);
            if up == suspects.contains(&nb.addr) {
                let what = if up { "suspects its running" } else { "does not suspect its crashed" };
                return Err(format!("{me} {what} neighbour {}", nb.addr));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u32) -> NodeAddr {
        NodeAddr::simulated(n, NodeId(n.into()))
    }

    fn at(ms: u64) -> Time {
        Time(ms * 1_000_000)
    }

    #[test]
    fn monitor_suspects_silence_and_restores_with_a_longer_timeout() {
        let cfg = Config::default();
        let mut m = Monitor::new(&[addr(1), addr(2)], cfg, at(0));
        let mut ch = Vec::new();
        assert_eq!(m.on_tick(at(100), &mut ch).count(), 2);
        assert!(ch.is_empty());
        assert_eq!(m.on_beat(addr(1), at(300)), None);
        let _ = m.on_tick(at(400), &mut ch);
        assert_eq!(ch, vec![Change::Suspect(addr(2))]);
        assert_eq!(m.suspected().into_iter().collect::<Vec<_>>(), vec![addr(2).addr]);
        assert_eq!(m.on_beat(addr(2), at(450)), Some(Change::Restore(addr(2))));
        // Now 450 ms of silence are tolerated for peer 2, still 350 for peer 1.
        ch.clear();
        let _ = m.on_tick(at(850), &mut ch);
        assert_eq!(ch, vec![Change::Suspect(addr(1))]);
        ch.clear();
        let _ = m.on_tick(at(901), &mut ch);
        assert_eq!(ch, vec![Change::Suspect(addr(2))]);
    }

    #[test]
    fn monitor_learns_incarnations() {
        let unknown = NodeAddr::new(addr(1).addr, NodeId::UNKNOWN);
        let mut m = Monitor::new(&[unknown], Config::default(), at(0));
        let mut ch = Vec::new();
        assert_eq!(m.on_tick(at(1), &mut ch).collect::<Vec<_>>(), vec![unknown]);
        m.on_beat(addr(1), at(2));
        assert_eq!(m.on_tick(at(3), &mut ch).collect::<Vec<_>>(), vec![addr(1)]);
        assert_eq!(m.on_beat(addr(9), at(4)), None, "not a watched address");
    }

    #[test]
    fn ring_neighbours_wrap_around() {
        let a = |j: usize| NodeAddr::simulated(j as u32 + 1, NodeId::UNKNOWN).addr;
        let n = ring_neighbours(0, 5, a);
        assert_eq!(n.iter().map(|x| x.addr).collect::<Vec<_>>(), vec![a(4), a(1)]);
        assert_eq!(ring_neighbours(0, 2, a).len(), 1);
        assert!(ring_neighbours(0, 1, a).is_empty());
    }
}
