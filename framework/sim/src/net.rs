//! The simulated network: the [`Network`] port served in virtual time, with per-link latency,
//! loss, partitions, and nodes that crash and restart.
//!
//! Messages are handed over as values (nothing is serialised). Each send draws its fate from the
//! network's own seeded RNG — lost, partitioned away, or delivered after a latency drawn from the
//! link's distribution — and is queued in a min-heap ordered by (delivery time, send sequence),
//! so the same seed gives the same deliveries in the same order.

use std::any::{Any, TypeId};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use selfman_core::{
    CloseReason, ComponentDefinition, ComponentRef, Delivery, Indicator, LinkStatus, Message,
    NetIndication, NetRequest, Network, NodeAddr, NodeId, PeerStatus, ProtocolId, Provided,
    ProvidedRef, Rng, Setup, Time, TimerDriver,
};

use crate::clock::{Due, VirtualClock};
use crate::digest::Digest;
use crate::fast_map::FastMap;

/// A latency distribution for one direction of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Always this.
    Fixed(Duration),
    /// Uniform between `min` and `max` (inclusive, nanosecond resolution).
    Uniform {
        /// Shortest.
        min: Duration,
        /// Longest.
        max: Duration,
    },
    /// `base` plus an exponentially distributed extra delay with mean `mean_extra`, capped at
    /// 20 × the mean (a long tail, like a loaded network).
    Exponential {
        /// The minimum delay.
        base: Duration,
        /// The mean of the extra delay.
        mean_extra: Duration,
    },
}

/// A [`Latency`] in nanoseconds, ready to sample (converted once per link model, not per
/// message).
#[derive(Debug, Clone, Copy)]
enum Sampler {
    Fixed(u64),
    Uniform { lo: u64, hi: u64 },
    Exponential { base: u64, mean: f64 },
}

impl From<Latency> for Sampler {
    fn from(l: Latency) -> Sampler {
        match l {
            Latency::Fixed(d) => Sampler::Fixed(nanos(d)),
            Latency::Uniform { min, max } => Sampler::Uniform { lo: nanos(min), hi: nanos(max) },
            Latency::Exponential { base, mean_extra } => {
                Sampler::Exponential { base: nanos(base), mean: nanos(mean_extra) as f64 }
            }
        }
    }
}

impl Sampler {
    /// One delay, in nanoseconds (saturating).
    #[inline]
    fn sample(self, rng: &mut Rng) -> u64 {
        match self {
            Sampler::Fixed(d) => d,
            Sampler::Uniform { lo, hi } => {
                if hi <= lo {
                    return lo;
                }
                lo + rng.below(hi - lo + 1)
            }
            Sampler::Exponential { base, mean } => {
                let u = rng.unit_f64();
                let extra = (-(1.0 - u).ln() * mean).min(20.0 * mean);
                base.saturating_add(extra as u64)
            }
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// How one direction of a link behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkModel {
    /// The latency distribution.
    pub latency: Latency,
    /// The probability that a message is lost (0.0 – 1.0).
    pub loss: f64,
}

impl Default for LinkModel {
    /// 1–5 ms uniform latency, no loss.
    fn default() -> Self {
        LinkModel {
            latency: Latency::Uniform {
                min: Duration::from_millis(1),
                max: Duration::from_millis(5),
            },
            loss: 0.0,
        }
    }
}

/// Configuration of the simulated network.
#[derive(Debug, Clone)]
pub struct SimNetConfig {
    /// The model of every link without an override.
    pub default_link: LinkModel,
    /// Keep messages from one node to another in sending order, as a TCP connection does
    /// (default `true`): a message is never delivered before one sent earlier on the same link.
    /// `false` lets random latencies reorder them — a deliberately weaker network for testing
    /// checkers.
    pub fifo: bool,
    /// Tell a sender, as a [`LinkStatus::Unreachable`] status after a link latency, that it
    /// sent to a node that is not running (crashed, or a stale incarnation) — as a refused TCP
    /// connection would. Default `true`.
    pub unreachable_hints: bool,
}

impl Default for SimNetConfig {
    fn default() -> Self {
        SimNetConfig { default_link: LinkModel::default(), fifo: true, unreachable_hints: true }
    }
}

/// Counters of the simulated network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimNetStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages delivered to a node.
    pub delivered: u64,
    /// Messages lost to the links' loss probability.
    pub lost: u64,
    /// Messages dropped because sender and receiver were in different partitions (at sending or
    /// at delivery time).
    pub partitioned: u64,
    /// Messages dropped because their link (one direction) was blocked (at sending or at
    /// delivery time; see `Simulation::block_link`).
    pub blocked: u64,
    /// Messages addressed to a node that was not running, or to a stale incarnation, or sent by
    /// a crashed node.
    pub dead: u64,
    /// Messages for a protocol the destination node has no network port for.
    pub unknown_protocol: u64,
    /// Unreachable hints delivered.
    pub hints: u64,
}

/// Delivers type-erased messages through one adapter's typed port.
trait Port: Send {
    fn deliver(&mut self, from: NodeAddr, msg: Box<dyn Any + Send>) -> bool;
    /// Folds `msg`'s encoding into `digest` (a message of another type folds in nothing: its
    /// delivery is refused and counted).
    fn digest(&self, msg: &(dyn Any + Send), digest: &mut Digest);
    fn status(&mut self, status: PeerStatus);
    /// Starts fetching what delivering through this port reads first: its channel (a hint).
    fn prefetch(&self);
    /// Then, once the channel is in, the receiving queue and component (a hint).
    fn prefetch_receiver(&self);
}

struct TypedPort<M: Message> {
    indicator: Indicator<Network<M>>,
}

impl<M: Message> Port for TypedPort<M> {
    fn deliver(&mut self, from: NodeAddr, msg: Box<dyn Any + Send>) -> bool {
        match msg.downcast::<M>() {
            Ok(m) => {
                self.indicator.trigger(NetIndication::Deliver(Delivery::new(from, *m)));
                true
            }
            Err(_) => false,
        }
    }

    fn status(&mut self, status: PeerStatus) {
        self.indicator.trigger(NetIndication::Status(status));
    }

    fn digest(&self, msg: &(dyn Any + Send), digest: &mut Digest) {
        if let Some(m) = msg.downcast_ref::<M>() {
            digest.message(m);
        }
    }

    #[inline]
    fn prefetch(&self) {
        self.indicator.prefetch();
    }

    #[inline]
    fn prefetch_receiver(&self) {
        self.indicator.prefetch_receiver();
    }
}

struct Registered {
    name: String,
    id: ProtocolId,
    ty: TypeId,
    provided: Box<dyn Any + Send>,
    /// `None` for the first protocol registered: its port is in the node's [`Hot`] entry.
    port: Option<Box<dyn Port>>,
}

/// A running incarnation of a node.
pub(crate) struct Incarnation {
    pub(crate) id: NodeId,
    pub(crate) host: ComponentRef,
    protocols: Vec<Registered>,
}

/// One node address: its current incarnation, if running. Its address is
/// [`address_of`](crate::address_of)`(slot)`, and what sending and delivering look at is in
/// its [`Hot`] entry.
pub(crate) struct Slot {
    pub(crate) current: Option<Incarnation>,
}

/// The part of a node's slot that every send and delivery reads, in its own dense array
/// (32 bytes, two per cache line). A large simulation's node state does not fit in the cache,
/// and a message touches two nodes: reading their incarnation and partition group, and finding
/// the destination's port, from here costs a line of a 320 KB array (10,000 nodes) that stays
/// cached, instead of the cold `Slot`, its protocol list and a `Registered` entry.
struct Hot {
    /// The running incarnation, or [`NodeId::UNKNOWN`] (never an incarnation's id) if none.
    id: NodeId,
    /// The port of the incarnation's first registered protocol (the only one, or the busiest,
    /// in most nodes); the others are in its `Registered` entries.
    port: Option<Box<dyn Port>>,
    /// The partition group of the address (kept across incarnations).
    group: u32,
    /// The protocol of `port`.
    proto: ProtocolId,
}

const _: () = assert!(std::mem::size_of::<Hot>() == 32);

impl Hot {
    const STOPPED: Hot = Hot { id: NodeId::UNKNOWN, port: None, group: 0, proto: ProtocolId(0) };
}

enum Payload {
    Message {
        proto: ProtocolId,
        msg: Box<dyn Any + Send>,
    },
    /// To `to`: `peer` (which `to` sent to) is not running. Rare: boxed, to keep messages small.
    Unreachable {
        peer: Box<NodeAddr>,
    },
}

/// A message (or hint) on its way. Nodes are named by slot and incarnation, not by address
/// (the address is the slot's): 48 bytes. Its delivery time is in its heap entry.
struct InFlight {
    from: NodeId,
    to: NodeId,
    /// `u32::MAX` for a hint about an unknown address.
    from_slot: u32,
    to_slot: u32,
    payload: Payload,
}

pub(crate) struct NetState {
    rng: Rng,
    config: SimNetConfig,
    /// `config.default_link`'s latency and loss, converted.
    default_link: (Sampler, f64),
    links: FastMap<u64, LinkModel>,
    /// Blocked directed links (by [`link_key`]): what `from` sends to `to` is dropped, while
    /// both stay in the same partition group — non-transitive connectivity.
    blocked: FastMap<u64, ()>,
    /// With FIFO links, the delivery time of the latest message sent on each link (by
    /// [`link_key`]) that may still be in flight. An entry no later than now cannot delay a
    /// send (every send is due at now or later), so entries are pruned once the map doubles
    /// ([`NetState::prune_last`]): it holds the links of the last few milliseconds, not of the
    /// whole run, and stays in the cache (a 10,000-node churn run used some 10⁵ links; looking
    /// their times up missed the cache on most sends).
    last: FastMap<u64, Time>,
    /// `last`'s size at which it is pruned next.
    last_prune_at: usize,
    pub(crate) slots: Vec<Slot>,
    /// Parallel to `slots`.
    hot: Vec<Hot>,
    /// Deliveries by (time, send sequence), earliest first; the messages wait in the slab, so
    /// sifting moves 24 bytes, not 64. (Not a [`DueQueue`]: random latencies make few sends
    /// the latest, and its run costs more than it saves.)
    heap: BinaryHeap<Reverse<Due>>,
    slab: Vec<Option<InFlight>>,
    free: Vec<u32>,
    seq: u64,
    pub(crate) stats: SimNetStats,
    pub(crate) next_node_id: u64,
    /// The run digest, once [`World::record_digest`] turned it on.
    digest: Option<Digest>,
}

/// The simulated network shared by a simulation and its network adapters.
pub(crate) struct World {
    pub(crate) state: Mutex<NetState>,
    /// The time of the next delivery, mirrored out of the lock after every change (the
    /// stepping loop asks far more often than anything changes); [`NO_DELIVERY`] if none.
    next: AtomicU64,
    clock: Arc<VirtualClock>,
}

/// `NetState::last` is not pruned below this many entries.
const MIN_LAST_PRUNE: usize = 1024;

/// The mirrored next delivery time when nothing is in flight (or, rarely, when it is the end of
/// time).
const NO_DELIVERY: u64 = u64::MAX;

impl World {
    pub(crate) fn new(seed: u64, config: SimNetConfig, clock: Arc<VirtualClock>) -> World {
        World {
            state: Mutex::new(NetState {
                rng: Rng::seeded(seed ^ 0x6e65_7477_6f72_6b21), // "network!"
                default_link: (config.default_link.latency.into(), config.default_link.loss),
                config,
                links: FastMap::default(),
                blocked: FastMap::default(),
                last: FastMap::default(),
                last_prune_at: MIN_LAST_PRUNE,
                slots: Vec::new(),
                hot: Vec::new(),
                heap: BinaryHeap::new(),
                slab: Vec::new(),
                free: Vec::new(),
                seq: 0,
                stats: SimNetStats::default(),
                next_node_id: 1,
                digest: None,
            }),
            next: AtomicU64::new(NO_DELIVERY),
            clock,
        }
    }

    /// Registers the next address, [`address_of`](crate::address_of)`(slot)`; returns its
    /// slot, or `None` if every address is taken.
    pub(crate) fn add_slot(&self) -> Option<u32> {
        let mut s = self.state.lock();
        let idx = u32::try_from(s.slots.len()).ok().filter(|&i| i < MAX_SLOTS)?;
        s.slots.push(Slot { current: None });
        s.hot.push(Hot::STOPPED);
        Some(idx)
    }

    pub(crate) fn slot_of(&self, addr: &SocketAddr) -> Option<u32> {
        self.state.lock().slot_of(addr)
    }

    /// A fresh incarnation id (never reused).
    pub(crate) fn fresh_id(&self) -> NodeId {
        let mut s = self.state.lock();
        let id = NodeId(s.next_node_id);
        s.next_node_id += 1;
        id
    }

    pub(crate) fn set_incarnation(&self, slot: u32, id: NodeId, host: ComponentRef) {
        let mut s = self.state.lock();
        let old =
            s.slots[slot as usize].current.replace(Incarnation { id, host, protocols: Vec::new() });
        debug_assert!(old.is_none(), "an incarnation replaced without being taken");
        let hot = &mut s.hot[slot as usize];
        *hot = Hot { id, port: None, group: hot.group, proto: ProtocolId(0) };
    }

    /// Ends the slot's incarnation; returns its host component.
    pub(crate) fn take_incarnation(&self, slot: u32) -> Option<(NodeId, ComponentRef)> {
        let (inc, port) = {
            let mut s = self.state.lock();
            let hot = &mut s.hot[slot as usize];
            hot.id = NodeId::UNKNOWN;
            let port = hot.port.take();
            (s.slots[slot as usize].current.take(), port)
        };
        // Dropped outside the lock, as in `clear`.
        drop(port);
        inc.map(|i| (i.id, i.host))
    }

    pub(crate) fn set_link(&self, from: u32, to: u32, model: LinkModel) {
        self.state.lock().links.insert(link_key(from, to), model);
    }

    /// Blocks (`true`) or unblocks the directed link `from → to`.
    pub(crate) fn set_blocked(&self, from: u32, to: u32, blocked: bool) {
        let mut s = self.state.lock();
        if blocked {
            s.blocked.insert(link_key(from, to), ());
        } else {
            s.blocked.remove(&link_key(from, to));
        }
    }

    /// Unblocks every link.
    pub(crate) fn clear_blocked(&self) {
        self.state.lock().blocked.clear();
    }

    pub(crate) fn set_default_link(&self, model: LinkModel) {
        let mut s = self.state.lock();
        s.default_link = (model.latency.into(), model.loss);
        s.config.default_link = model;
    }

    pub(crate) fn set_groups(&self, groups: &[(u32, u32)]) {
        let mut s = self.state.lock();
        for hot in &mut s.hot {
            hot.group = 0;
        }
        for &(slot, g) in groups {
            s.hot[slot as usize].group = g;
        }
    }

    pub(crate) fn stats(&self) -> SimNetStats {
        self.state.lock().stats
    }

    /// Turns the run digest on (from the next delivery; a second call changes nothing).
    pub(crate) fn record_digest(&self) {
        self.state.lock().digest.get_or_insert_with(Digest::default);
    }

    /// The run digest and the deliveries it covers, if it is on.
    pub(crate) fn digest(&self) -> Option<(u64, u64)> {
        self.state.lock().digest.as_ref().map(|d| (d.value(), d.deliveries))
    }

    /// The network port for `name` on incarnation `me` of `slot`, created by `create` on first
    /// use.
    pub(crate) fn port<M: Message>(
        &self,
        slot: u32,
        me: NodeId,
        name: &str,
        create: impl FnOnce() -> selfman_core::Result<ProvidedRef<Network<M>>>,
    ) -> selfman_core::Result<ProvidedRef<Network<M>>> {
        let id = ProtocolId::of(name);
        let ty = TypeId::of::<M>();
        {
            let s = self.state.lock();
            let inc = current(&s.slots, slot, me)?;
            for r in &inc.protocols {
                if r.name == name {
                    if r.ty != ty {
                        return Err(selfman_core::Error::Network(format!(
                            "protocol `{name}` is already registered with another message type \
                             (not `{}`)",
                            std::any::type_name::<M>()
                        )));
                    }
                    let p = r.provided.downcast_ref::<ProvidedRef<Network<M>>>();
                    return p.cloned().ok_or_else(|| {
                        selfman_core::Error::Network(format!("protocol `{name}`: type confusion"))
                    });
                }
                if r.id == id {
                    return Err(selfman_core::Error::Network(format!(
                        "protocol names `{name}` and `{}` have the same id {:?}; rename one",
                        r.name, id
                    )));
                }
            }
        }
        let provided = create()?;
        let mut guard = self.state.lock();
        let s = &mut *guard;
        let inc = current_mut(&mut s.slots, slot, me)?;
        let mut port: Option<Box<dyn Port>> =
            Some(Box::new(TypedPort { indicator: provided.indicator() }));
        if inc.protocols.is_empty() {
            let hot = &mut s.hot[slot as usize];
            (hot.proto, hot.port) = (id, port.take());
        }
        inc.protocols.push(Registered {
            name: name.to_owned(),
            id,
            ty,
            provided: Box::new(provided.clone()),
            port,
        });
        Ok(provided)
    }

    /// Sends `msg` from incarnation `from` (at `from_slot`) to `to`.
    fn send(
        &self,
        from_slot: u32,
        from: NodeId,
        to: NodeAddr,
        proto: ProtocolId,
        msg: Box<dyn Any + Send>,
    ) {
        let now = self.clock.now();
        let mut guard = self.state.lock();
        let s = &mut *guard;
        s.stats.sent += 1;
        let sender = &s.hot[from_slot as usize];
        if sender.id != from {
            s.stats.dead += 1; // a crashed node's leftover turn: nothing leaves it
            return;
        }
        let from_group = sender.group;
        let to_slot = s.slot_of(&to.addr);
        let alive = to_slot.and_then(|t| {
            let id = s.hot[t as usize].id;
            (id != NodeId::UNKNOWN && (to.id == id || to.id == NodeId::UNKNOWN)).then_some((t, id))
        });
        let Some((to_slot, to_id)) = alive else {
            s.stats.dead += 1;
            if s.config.unreachable_hints {
                let d = s.default_link.0.sample(&mut s.rng);
                let at = Time(now.0.saturating_add(d));
                s.push(
                    at,
                    InFlight {
                        from: to.id,
                        to: from,
                        from_slot: to_slot.unwrap_or(u32::MAX),
                        to_slot: from_slot,
                        payload: Payload::Unreachable { peer: Box::new(to) },
                    },
                );
                self.next.store(s.next_at(), Ordering::Relaxed);
            }
            return;
        };
        if s.hot[to_slot as usize].group != from_group {
            s.stats.partitioned += 1;
            return;
        }
        let key = link_key(from_slot, to_slot);
        if !s.blocked.is_empty() && s.blocked.contains_key(&key) {
            s.stats.blocked += 1;
            return;
        }
        let link = if s.links.is_empty() { None } else { s.links.get(&key) };
        let (latency, loss) = link.map_or(s.default_link, |l| (l.latency.into(), l.loss));
        if loss > 0.0 && s.rng.chance(loss) {
            s.stats.lost += 1;
            return;
        }
        let mut at = Time(now.0.saturating_add(latency.sample(&mut s.rng)));
        if s.config.fifo {
            // Not `entry`: it reserves room on every call.
            match s.last.get_mut(&key) {
                Some(last) => {
                    at = at.max(*last);
                    *last = at;
                }
                None => {
                    s.last.insert(key, at);
                    if s.last.len() >= s.last_prune_at {
                        s.prune_last(now);
                    }
                }
            }
        }
        s.push(
            at,
            InFlight {
                from,
                to: to_id,
                from_slot,
                to_slot,
                payload: Payload::Message { proto, msg },
            },
        );
        self.next.store(s.next_at(), Ordering::Relaxed);
    }

    /// The time of the next delivery.
    pub(crate) fn next_delivery(&self) -> Option<Time> {
        match self.next.load(Ordering::Relaxed) {
            // The end of time is a possible delivery time: look.
            NO_DELIVERY => self.state.lock().heap.peek().map(|due| due.0.at),
            next => Some(Time(next)),
        }
    }

    /// Delivers everything due at or before `now`, calling `trace` with each delivery's words.
    /// Returns whether anything was due.
    #[inline]
    pub(crate) fn deliver_due(&self, now: Time, trace: impl FnMut(&[u64])) -> bool {
        if self.next.load(Ordering::Relaxed) > now.0 {
            return false; // the usual answer: checked inline, without a call
        }
        self.deliver_due_locked(now, trace)
    }

    #[inline(never)]
    fn deliver_due_locked(&self, now: Time, mut trace: impl FnMut(&[u64])) -> bool {
        let mut any = false;
        let mut guard = self.state.lock();
        let s = &mut *guard;
        while s.heap.peek().is_some_and(|due| due.0.at <= now) {
            if let Some(p) = s.next_port() {
                p.prefetch_receiver();
            }
            let Some(Reverse(due)) = s.heap.pop() else { break };
            let Some(f) = s.slab[due.slot as usize].take() else { continue };
            s.free.push(due.slot);
            any = true;
            // The next delivery's port is known now: its box is fetched while this one is
            // delivered, its channel while this one's turn runs, and its queue and component
            // while it is taken off the queue (see `next_port`). Delivering only queues events,
            // so the next delivery is still the same one after it.
            let next = s.next_slot();
            if let Some(p) = next.and_then(|n| s.port_at(n)) {
                selfman_core::prefetch((p as *const dyn Port).cast::<u8>());
            }
            s.deliver(due.at, f, &mut trace);
            if let Some(p) = next.and_then(|n| s.port_at(n)) {
                p.prefetch();
            }
        }
        self.next.store(s.next_at(), Ordering::Relaxed);
        any
    }

    /// In-flight messages and hints.
    pub(crate) fn in_flight(&self) -> usize {
        self.state.lock().heap.len()
    }

    /// Forgets every incarnation and everything in flight (they reference components).
    pub(crate) fn clear(&self) {
        let (incarnations, ports, in_flight) = {
            let mut s = self.state.lock();
            let inc: Vec<_> = s.slots.iter_mut().filter_map(|sl| sl.current.take()).collect();
            let ports: Vec<_> = s
                .hot
                .iter_mut()
                .filter_map(|h| {
                    h.id = NodeId::UNKNOWN;
                    h.port.take()
                })
                .collect();
            s.heap.clear();
            s.free.clear();
            self.next.store(NO_DELIVERY, Ordering::Relaxed);
            (inc, ports, std::mem::take(&mut s.slab))
        };
        // Dropped outside the lock: dropping a component reference may run arbitrary drops.
        drop(incarnations);
        drop(ports);
        drop(in_flight);
    }
}

fn link_key(from: u32, to: u32) -> u64 {
    (u64::from(from) << 32) | u64::from(to)
}

/// How many addresses [`address_of`](crate::address_of) tells apart: `10.0.0.1` to
/// `10.255.255.255`.
const MAX_SLOTS: u32 = (1 << 24) - 1;

/// The address of the node in `slot`.
pub(crate) fn slot_addr(slot: u32) -> SocketAddr {
    crate::address_of(slot as usize)
}

fn current(slots: &[Slot], slot: u32, me: NodeId) -> selfman_core::Result<&Incarnation> {
    match slots.get(slot as usize).and_then(|sl| sl.current.as_ref()) {
        Some(inc) if inc.id == me => Ok(inc),
        _ => Err(selfman_core::Error::Network(format!("node {me} is not running"))),
    }
}

fn current_mut(
    slots: &mut [Slot],
    slot: u32,
    me: NodeId,
) -> selfman_core::Result<&mut Incarnation> {
    match slots.get_mut(slot as usize).and_then(|sl| sl.current.as_mut()) {
        Some(inc) if inc.id == me => Ok(inc),
        _ => Err(selfman_core::Error::Network(format!("node {me} is not running"))),
    }
}

impl NetState {
    /// The slot of the node at `addr`, if any: slot `n` is at `address_of(n)` (10.x.y.z:4000
    /// with x.y.z = n + 1), computed, not looked up.
    fn slot_of(&self, addr: &SocketAddr) -> Option<u32> {
        let SocketAddr::V4(v4) = addr else { return None };
        let [_, b, c, d] = v4.ip().octets();
        let n = u32::from_be_bytes([0, b, c, d]).wrapping_sub(1);
        ((n as usize) < self.slots.len() && slot_addr(n) == *addr).then_some(n)
    }

    /// The port of the next message to deliver (by the queue as it is now), for prefetching:
    /// in a large simulation every delivery reaches a node whose memory is not in the cache, and
    /// the chain port box → channel → queue → component costs one miss after another unless
    /// the first links are fetched ahead.
    #[inline]
    fn next_port(&self) -> Option<&dyn Port> {
        self.port_at(self.next_slot()?)
    }

    /// The destination slot of the next message to deliver.
    #[inline]
    fn next_slot(&self) -> Option<u32> {
        let due = self.heap.peek()?.0;
        Some(self.slab.get(due.slot as usize)?.as_ref()?.to_slot)
    }

    /// The first protocol's port of the node in `slot`.
    #[inline]
    fn port_at(&self, slot: u32) -> Option<&dyn Port> {
        self.hot.get(slot as usize)?.port.as_deref()
    }

    /// The time of the next delivery, or [`NO_DELIVERY`].
    fn next_at(&self) -> u64 {
        self.heap.peek().map_or(NO_DELIVERY, |due| due.0.at.0)
    }

    /// Forgets the links whose latest message is due no later than `now`: a message sent now
    /// or later is due at `now` or later, so such an entry would not delay it — forgetting it
    /// changes no delivery time. The map is rebuilt at twice the size kept (its table would
    /// otherwise stay as large as it ever was, and as spread out).
    fn prune_last(&mut self, now: Time) {
        let kept = self.last.iter().filter(|(_, at)| **at > now).count();
        let mut last = FastMap::with_capacity_and_hasher(2 * kept, Default::default());
        last.extend(self.last.drain().filter(|(_, at)| *at > now));
        self.last = last;
        self.last_prune_at = (2 * kept).max(MIN_LAST_PRUNE);
    }

    fn push(&mut self, at: Time, f: InFlight) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(f);
                slot
            }
            None => {
                self.slab.push(Some(f));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(Reverse(Due { at, seq: self.seq, slot }));
    }

    fn deliver(&mut self, at: Time, f: InFlight, trace: &mut impl FnMut(&[u64])) {
        let from_group = self.hot.get(f.from_slot as usize).map(|h| h.group);
        // `f.to` is a running incarnation's id when sent, never `UNKNOWN`.
        let Some(dest) = self.hot.get_mut(f.to_slot as usize).filter(|h| h.id == f.to) else {
            self.stats.dead += 1;
            return;
        };
        match f.payload {
            Payload::Message { proto, msg } => {
                if from_group != Some(dest.group) {
                    self.stats.partitioned += 1;
                    return;
                }
                if !self.blocked.is_empty()
                    && self.blocked.contains_key(&link_key(f.from_slot, f.to_slot))
                {
                    self.stats.blocked += 1;
                    return;
                }
                let port = match &mut dest.port {
                    Some(p) if dest.proto == proto => Some(p),
                    _ => other_ports(&mut self.slots, f.to_slot)
                        .find(|(id, _)| *id == proto)
                        .map(|(_, p)| p),
                };
                match port {
                    Some(port) => {
                        let words = [at.0, f.from.0, f.to.0, u64::from(proto.0)];
                        trace(&words);
                        if let Some(d) = self.digest.as_mut() {
                            d.delivery(&words);
                            port.digest(&*msg, d);
                        }
                        let from = NodeAddr::new(slot_addr(f.from_slot), f.from);
                        if port.deliver(from, msg) {
                            self.stats.delivered += 1;
                        } else {
                            self.stats.unknown_protocol += 1;
                        }
                    }
                    None => self.stats.unknown_protocol += 1,
                }
            }
            Payload::Unreachable { peer } => {
                let words = [at.0, f.to.0, peer.id.0, u64::MAX];
                trace(&words);
                if let Some(d) = self.digest.as_mut() {
                    d.delivery(&words);
                }
                let status = PeerStatus {
                    peer: *peer,
                    status: LinkStatus::Unreachable(CloseReason::Other("node not running".into())),
                };
                for port in dest
                    .port
                    .iter_mut()
                    .chain(other_ports(&mut self.slots, f.to_slot).map(|(_, p)| p))
                {
                    port.status(status.clone());
                }
                self.stats.hints += 1;
            }
        }
    }
}

/// The ports of the protocols of `slot`'s incarnation other than the first (which is in its
/// [`Hot`] entry), in registration order.
fn other_ports(
    slots: &mut [Slot],
    slot: u32,
) -> impl Iterator<Item = (ProtocolId, &mut Box<dyn Port>)> {
    let inc = slots[slot as usize].current.as_mut();
    inc.into_iter().flat_map(|i| &mut i.protocols).filter_map(|r| Some((r.id, r.port.as_mut()?)))
}

/// The component providing `Network<M>` for one protocol on one simulated node. Its port is
/// direct: a send goes into the simulated network inside the sender's own turn, with no turn
/// of its own.
pub(crate) struct SimNetPort<M: Message> {
    port: Provided<Network<M>>,
    world: Arc<World>,
    slot: u32,
    me: NodeAddr,
    proto: ProtocolId,
}

impl<M: Message> SimNetPort<M> {
    pub(crate) fn new(world: Arc<World>, slot: u32, me: NodeAddr, proto: ProtocolId) -> Self {
        SimNetPort { port: Provided::new(), world, slot, me, proto }
    }
}

impl<M: Message> ComponentDefinition for SimNetPort<M> {
    fn setup(&mut self, setup: &mut Setup<Self>) {
        // Only the id of `me` is captured: each channel's service is a small box read on every
        // send, and a whole address would double it.
        let (world, slot, me, proto) = (Arc::clone(&self.world), self.slot, self.me.id, self.proto);
        setup.provide_direct(
            |c| &mut c.port,
            move |_| {
                let world = Arc::clone(&world);
                move |r: NetRequest<M>| match r {
                    NetRequest::Send { to, msg } => {
                        world.send(slot, me, to, proto, Box::new(msg));
                    }
                    other => tracing::warn!(
                        request = ?other,
                        "simulated network: unsupported request ignored"
                    ),
                }
            },
        );
    }
}
