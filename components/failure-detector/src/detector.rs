//! The detector's logic, free of I/O: [`Detector`] takes requests, ticks, messages and
//! network hints, and pushes [`Output`]s (messages to send, indications to raise).
//!
//! Invariants:
//! * indications are raised only on a change, only to the subscribers that monitor the process,
//!   and name the process exactly as it was monitored;
//! * a watch is suspected after more than its peer's timeout of silence, checked once per tick;
//!   it is restored by the next message from a matching incarnation (unless it was replaced);
//! * a peer's timeout only grows (by `increment` per false suspicion, capped at `max_timeout`);
//! * a watch of a concrete incarnation that was *replaced* (another incarnation answered a probe
//!   sent after the watch began) stays suspected for good;
//! * work per tick is one pass over the monitored addresses and at most one probe per address;
//! * [`Detector::save`] / [`Detector::restore`] carry everything a detector knows to another
//!   detector (possibly with another config) without losing a watch, a subscriber or a
//!   suspicion; peer timeouts are clamped into the new config's range.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use selfman_core::{NodeAddr, NodeId, Time};
use selfman_ports::{has_flaw, FdIndication};
use serde::{Deserialize, Serialize};

use crate::config::FdConfig;
use crate::messages::FdMessage;

/// Who asked to monitor a process; indications about it go back to them.
///
/// The component uses the id of the channel a request came over; [`Subscriber::ALL`] stands
/// for "every user" (requests injected without a channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subscriber(pub u64);

impl Subscriber {
    /// Every user of the detector: indications for it go to every connected channel.
    pub const ALL: Subscriber = Subscriber(0);
}

/// Something the [`Detector`] wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `msg` to `to`.
    Send {
        /// The destination.
        to: NodeAddr,
        /// The message.
        msg: FdMessage,
    },
    /// Raise `indication` to subscriber `to`.
    Indicate {
        /// Who monitors the process.
        to: Subscriber,
        /// What to tell them.
        indication: FdIndication,
    },
}

/// A deliberate mistake of the [`Detector`], to show that the simulation checkers catch it
/// (feature `flaws`, for tests only; `docs/decisions/011-deliberate-bugs-are-test-only.md`).
#[cfg(feature = "flaws")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// Never restores a suspected process (breaks eventual strong accuracy: `fd-broken`).
    NeverRestore,
    /// Never grows a timeout (breaks eventual strong accuracy when delays exceed the timeout:
    /// `fd-slow-broken`).
    FixedTimeout,
    /// Forgets every suspicion when taking over another detector's state (a live replacement
    /// then raises a suspicion twice, or never restores it: the amnesic swap of
    /// `tests/tests/hot_swap.rs`).
    ForgetSuspicions,
}

/// One monitored process, as a user named it.
#[derive(Clone, Debug)]
struct Watch {
    /// As monitored: a concrete incarnation, or [`NodeId::UNKNOWN`] for "whoever runs there".
    node: NodeAddr,
    /// Probes numbered `since` or later were sent after the watch began.
    since: u64,
    /// When a matching incarnation was last heard (or when the watch began).
    last_heard: Time,
    /// The incarnation last heard (for an `UNKNOWN` watch, whichever answered).
    heard: NodeId,
    suspected: bool,
    /// Another incarnation answered at the address: the watched one is gone for good.
    replaced: bool,
    /// Sorted, without duplicates.
    subscribers: Vec<Subscriber>,
}

impl Watch {
    fn matches(&self, from: NodeId) -> bool {
        self.node.id == NodeId::UNKNOWN || self.node.id == from
    }
}

/// Everything known about one address.
#[derive(Clone, Debug)]
struct Peer {
    timeout: Duration,
    /// The tick in which the last hint-triggered probe was sent.
    hint_tick: u64,
    watches: Vec<Watch>,
}

impl Peer {
    fn probed(&self) -> bool {
        self.watches.iter().any(|w| !w.replaced)
    }
}

/// Everything a [`Detector`] knows, as plain data that survives serde: what
/// [`Detector::save`] returns and [`Detector::restore`] takes over.
///
/// It is the detector's interchange format for live replacement: a new version of the
/// detector, or the same detector with another [`FdConfig`], takes over the watches, their
/// subscribers and suspicions, the per-peer timeouts and the probe numbering, so nobody has to
/// ask to monitor again and no suspicion is raised twice or forgotten. The config is not part
/// of it: the taker brings its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectorState {
    /// The number of the last probe sent. A taker numbers its next probe after it, so that
    /// answers to earlier probes keep their meaning (see [`WatchState::since`]).
    pub seq: u64,
    /// Ticks so far.
    pub ticks: u64,
    /// Every monitored address, in address order.
    pub peers: Vec<PeerState>,
}

/// One monitored address in a [`DetectorState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    /// The address (every watch here is of a process at it).
    pub addr: SocketAddr,
    /// Its current timeout (grown by false suspicions).
    pub timeout: Duration,
    /// The processes at this address that someone monitors (never empty).
    pub watches: Vec<WatchState>,
}

/// One monitored process in a [`PeerState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchState {
    /// As monitored: a concrete incarnation, or [`NodeId::UNKNOWN`] for "whoever runs there".
    pub node: NodeAddr,
    /// Probes numbered `since` or later were sent after the watch began: only an answer to one
    /// of them from another incarnation proves that a concrete one has crashed.
    pub since: u64,
    /// When a matching incarnation was last heard (or when the watch began).
    pub last_heard: Time,
    /// The incarnation last heard.
    pub heard: NodeId,
    /// Suspected now.
    pub suspected: bool,
    /// Another incarnation answered at the address: suspected for good.
    pub replaced: bool,
    /// Who monitors it (sorted, without duplicates; never empty).
    pub subscribers: Vec<Subscriber>,
}

/// An eventually perfect failure detector's logic: heartbeat probes with a per-peer timeout
/// that grows on every false suspicion.
///
/// Feed it [`Detector::monitor`] / [`Detector::unmonitor`] requests, a [`Detector::tick`] every
/// [`FdConfig::period`], every received [`FdMessage`] ([`Detector::on_message`]) and connection
/// hints ([`Detector::on_hint`]); carry out the [`Output`]s it pushes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use selfman_core::{NodeAddr, NodeId, Time};
/// use selfman_failure_detector::{Detector, FdConfig, FdMessage, Output, Subscriber};
/// use selfman_ports::FdIndication;
///
/// let peer = NodeAddr::simulated(2, NodeId(7));
/// let mut d = Detector::new(FdConfig::default());
/// let mut out = Vec::new();
/// d.monitor(Subscriber::ALL, peer, Time::ZERO, &mut out);
/// let at = |ms| Time::ZERO + Duration::from_millis(ms);
/// d.tick(at(100), &mut out); // probes the peer
/// assert!(matches!(out[0], Output::Send { msg: FdMessage::Ping(_), .. }));
/// out.clear();
/// d.tick(at(500), &mut out); // 500 ms of silence > 400 ms
/// assert!(out.contains(&Output::Indicate {
///     to: Subscriber::ALL,
///     indication: FdIndication::Suspect(peer),
/// }));
/// ```
#[derive(Clone, Debug)]
pub struct Detector {
    config: FdConfig,
    #[cfg(feature = "flaws")]
    flaw: Option<Flaw>,
    /// The number of the last probe sent.
    seq: u64,
    /// Ticks so far.
    ticks: u64,
    /// Ordered, so that probes go out in the same order in every run.
    peers: BTreeMap<SocketAddr, Peer>,
}

impl Detector {
    /// A detector monitoring nobody. An invalid `config` is replaced by
    /// [`FdConfig::normalized`].
    pub fn new(config: FdConfig) -> Detector {
        if let Err(e) = config.validate() {
            tracing::warn!(error = %e, "failure detector: using the nearest valid config");
        }
        Detector {
            config: config.normalized(),
            #[cfg(feature = "flaws")]
            flaw: None,
            seq: 0,
            ticks: 0,
            peers: BTreeMap::new(),
        }
    }

    /// This detector with the deliberate mistake `flaw` (feature `flaws`, for tests only).
    #[cfg(feature = "flaws")]
    pub fn with_flaw(mut self, flaw: Flaw) -> Detector {
        self.flaw = Some(flaw);
        self
    }

    /// The config in use.
    pub fn config(&self) -> &FdConfig {
        &self.config
    }

    /// `sub` starts monitoring `node` at `now`. An id of [`NodeId::UNKNOWN`] watches whichever
    /// incarnation runs at the address; a concrete id watches that incarnation only, and
    /// suspects it for good once another incarnation answers a probe at its address.
    ///
    /// Monitoring a process the subscriber already monitors does nothing. A subscriber that
    /// starts monitoring a process already suspected (for another subscriber) is told
    /// [`FdIndication::Suspect`] at once.
    pub fn monitor(&mut self, sub: Subscriber, node: NodeAddr, now: Time, out: &mut Vec<Output>) {
        let timeout = self.config.initial_timeout;
        let peer = self.peers.entry(node.addr).or_insert_with(|| Peer {
            timeout,
            hint_tick: u64::MAX,
            watches: Vec::new(),
        });
        if let Some(w) = peer.watches.iter_mut().find(|w| w.node == node) {
            if let Err(i) = w.subscribers.binary_search(&sub) {
                w.subscribers.insert(i, sub);
                if w.suspected {
                    out.push(Output::Indicate { to: sub, indication: FdIndication::Suspect(node) });
                }
            }
            return;
        }
        peer.watches.push(Watch {
            node,
            since: self.seq + 1,
            last_heard: now,
            heard: node.id,
            suspected: false,
            replaced: false,
            subscribers: vec![sub],
        });
    }

    /// `sub` stops monitoring `node` (no effect if it did not). Once nobody monitors an
    /// address it is no longer probed and its timeout is forgotten.
    pub fn unmonitor(&mut self, sub: Subscriber, node: NodeAddr) {
        let Some(peer) = self.peers.get_mut(&node.addr) else { return };
        if let Some(i) = peer.watches.iter().position(|w| w.node == node) {
            let w = &mut peer.watches[i];
            if let Ok(j) = w.subscribers.binary_search(&sub) {
                w.subscribers.remove(j);
            }
            if w.subscribers.is_empty() {
                peer.watches.swap_remove(i);
            }
        }
        if peer.watches.is_empty() {
            self.peers.remove(&node.addr);
        }
    }

    /// Forgets everything `sub` monitors (its channel is gone).
    pub fn remove_subscriber(&mut self, sub: Subscriber) {
        let nodes: Vec<NodeAddr> = self
            .peers
            .values()
            .flat_map(|p| p.watches.iter())
            .filter(|w| w.subscribers.binary_search(&sub).is_ok())
            .map(|w| w.node)
            .collect();
        for n in nodes {
            self.unmonitor(sub, n);
        }
    }

    /// A period passed: suspects every watch silent for longer than its peer's timeout, and
    /// probes every monitored address once.
    pub fn tick(&mut self, now: Time, out: &mut Vec<Output>) {
        self.ticks += 1;
        self.seq += 1;
        let seq = self.seq;
        for (&addr, peer) in &mut self.peers {
            for w in &mut peer.watches {
                if !w.suspected && !w.replaced && now.duration_since(w.last_heard) > peer.timeout {
                    w.suspected = true;
                    raise(out, w, FdIndication::Suspect(w.node));
                }
            }
            if peer.probed() {
                out.push(Output::Send {
                    to: NodeAddr::new(addr, NodeId::UNKNOWN),
                    msg: FdMessage::Ping(seq),
                });
            }
        }
    }

    /// A message arrived from `from` at `now`. Answers a ping, and restores the watches `from`
    /// matches; a pong from another incarnation than a watched one replaces that watch.
    pub fn on_message(&mut self, from: NodeAddr, msg: FdMessage, now: Time, out: &mut Vec<Output>) {
        let (seq, pong) = match msg {
            FdMessage::Ping(s) => {
                out.push(Output::Send { to: from, msg: FdMessage::Pong(s) });
                (s, false)
            }
            FdMessage::Pong(s) => (s, true),
        };
        let Some(peer) = self.peers.get_mut(&from.addr) else { return };
        let mut grow = false;
        for w in &mut peer.watches {
            if w.replaced {
                continue;
            }
            if w.matches(from.id) {
                w.last_heard = now;
                if w.suspected && !has_flaw!(self, NeverRestore) {
                    w.suspected = false;
                    // The same incarnation was alive all along: a false suspicion. (A watch
                    // restored by a new incarnation was right: the old one had crashed.)
                    grow |= w.heard == from.id;
                    raise(out, w, FdIndication::Restore(w.node));
                }
                w.heard = from.id;
            } else if pong && seq >= w.since {
                // Another incarnation answered a probe sent after the watch began, when the
                // watched incarnation already existed: it has crashed (one incarnation runs at
                // an address at a time).
                w.replaced = true;
                if !w.suspected {
                    w.suspected = true;
                    raise(out, w, FdIndication::Suspect(w.node));
                }
            }
        }
        if grow && !has_flaw!(self, FixedTimeout) {
            peer.timeout = (peer.timeout + self.config.increment).min(self.config.max_timeout);
        }
    }

    /// The network reported the connection to `peer` lost or unreachable. A hint, not proof:
    /// nothing is suspected because of it, but the address is probed at once (at most once per
    /// tick, and only while some watch there is not suspected yet), so that a replacing
    /// incarnation or a quick reconnection is noticed sooner.
    pub fn on_hint(&mut self, peer: NodeAddr, out: &mut Vec<Output>) {
        let Some(p) = self.peers.get_mut(&peer.addr) else { return };
        if p.hint_tick == self.ticks || !p.watches.iter().any(|w| !w.suspected && !w.replaced) {
            return;
        }
        p.hint_tick = self.ticks;
        self.seq += 1;
        out.push(Output::Send {
            to: NodeAddr::new(peer.addr, NodeId::UNKNOWN),
            msg: FdMessage::Ping(self.seq),
        });
    }

    /// The detector was paused (its component stopped) and resumes at `now`: silence during
    /// the pause is not held against anyone — every watch not suspected counts as heard now.
    pub fn resume(&mut self, now: Time) {
        for w in self.peers.values_mut().flat_map(|p| p.watches.iter_mut()) {
            if !w.suspected {
                w.last_heard = w.last_heard.max(now);
            }
        }
    }

    /// Whether `node` (as monitored) is suspected now; `None` if nobody monitors it.
    pub fn is_suspected(&self, node: NodeAddr) -> Option<bool> {
        let peer = self.peers.get(&node.addr)?;
        peer.watches.iter().find(|w| w.node == node).map(|w| w.suspected)
    }

    /// Every monitored process (as monitored) that is suspected now, in address order.
    pub fn suspected(&self) -> impl Iterator<Item = NodeAddr> + '_ {
        self.peers.values().flat_map(|p| p.watches.iter()).filter(|w| w.suspected).map(|w| w.node)
    }

    /// The current timeout for the address of `node`; `None` if nobody monitors it.
    pub fn timeout(&self, node: NodeAddr) -> Option<Duration> {
        self.peers.get(&node.addr).map(|p| p.timeout)
    }

    /// How many distinct processes (as monitored) are watched.
    pub fn monitored(&self) -> usize {
        self.peers.values().map(|p| p.watches.len()).sum()
    }

    /// The ticks so far (one per [`FdConfig::period`] while running).
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Everything this detector knows, for another detector to take over
    /// ([`Detector::restore`]).
    pub fn save(&self) -> DetectorState {
        DetectorState {
            seq: self.seq,
            ticks: self.ticks,
            peers: self
                .peers
                .iter()
                .map(|(&addr, p)| PeerState {
                    addr,
                    timeout: p.timeout,
                    watches: p
                        .watches
                        .iter()
                        .map(|w| WatchState {
                            node: w.node,
                            since: w.since,
                            last_heard: w.last_heard,
                            heard: w.heard,
                            suspected: w.suspected,
                            replaced: w.replaced,
                            subscribers: w.subscribers.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// A detector with `config` (normalized, as in [`Detector::new`]) that takes over `state`
    /// — usually another detector's [`Detector::save`] — as if it had been running all along.
    ///
    /// What changes with the config: each peer's timeout is clamped into the new
    /// `[initial_timeout, max_timeout]` (a timeout grown by false suspicions keeps what it
    /// learnt, within the new bounds), and from now on probes go out every new `period` and
    /// timeouts grow by the new `increment`. What does not: the watches, their subscribers,
    /// suspicions (a suspected process is not suspected again, and is restored by its next
    /// message), last-heard times and the probe numbering. So the taker raises no indication
    /// of its own at the swap; at its first tick it suspects whoever has been silent longer
    /// than their (clamped) timeout.
    ///
    /// Malformed input is repaired rather than trusted: watches without subscribers and peers
    /// without watches are dropped, duplicate addresses and watches are merged, a watch filed
    /// under the wrong address is moved to its own, and subscriber lists are sorted and
    /// deduplicated.
    pub fn restore(config: FdConfig, state: DetectorState) -> Detector {
        let mut d = Detector::new(config);
        d.take_over(state);
        d
    }

    /// As [`Detector::restore`], keeping this detector's config (and test-only flaw): the
    /// state this detector had is replaced by `state`.
    pub fn take_over(&mut self, state: DetectorState) {
        let (lo, hi) = (self.config.initial_timeout, self.config.max_timeout);
        let keep_suspicions = !has_flaw!(self, ForgetSuspicions);
        self.seq = state.seq;
        self.ticks = state.ticks;
        self.peers.clear();
        for p in state.peers {
            for mut w in p.watches {
                w.subscribers.sort_unstable();
                w.subscribers.dedup();
                if w.subscribers.is_empty() {
                    continue;
                }
                let peer = self.peers.entry(w.node.addr).or_insert_with(|| Peer {
                    timeout: p.timeout.clamp(lo, hi),
                    hint_tick: u64::MAX,
                    watches: Vec::new(),
                });
                // A known watch (listed twice): merge the subscribers, keep the first state.
                if let Some(known) = peer.watches.iter_mut().find(|k| k.node == w.node) {
                    for sub in w.subscribers {
                        if let Err(i) = known.subscribers.binary_search(&sub) {
                            known.subscribers.insert(i, sub);
                        }
                    }
                    continue;
                }
                peer.watches.push(Watch {
                    node: w.node,
                    since: w.since,
                    last_heard: w.last_heard,
                    heard: w.heard,
                    suspected: (w.suspected && keep_suspicions) || w.replaced,
                    replaced: w.replaced,
                    subscribers: w.subscribers,
                });
            }
        }
    }
}

fn raise(out: &mut Vec<Output>, w: &Watch, indication: FdIndication) {
    out.extend(w.subscribers.iter().map(|&to| Output::Indicate { to, indication }));
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Subscriber = Subscriber(1);
    const B: Subscriber = Subscriber(2);

    fn node(n: u32, id: u64) -> NodeAddr {
        NodeAddr::simulated(n, NodeId(id))
    }

    fn at(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn cfg() -> FdConfig {
        FdConfig {
            period: ms(100),
            initial_timeout: ms(300),
            increment: ms(200),
            max_timeout: ms(700),
        }
    }

    /// The indications in `out`, as (subscriber, indication).
    fn indications(out: &[Output]) -> Vec<(Subscriber, FdIndication)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Indicate { to, indication } => Some((*to, *indication)),
                Output::Send { .. } => None,
            })
            .collect()
    }

    /// The pings in `out`, as (destination, seq).
    fn pings(out: &[Output]) -> Vec<(NodeAddr, u64)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { to, msg: FdMessage::Ping(s) } => Some((*to, *s)),
                _ => None,
            })
            .collect()
    }

    /// Ticks at `t` and returns the indications raised.
    fn tick(d: &mut Detector, t: u64) -> Vec<(Subscriber, FdIndication)> {
        let mut out = Vec::new();
        d.tick(at(t), &mut out);
        indications(&out)
    }

    fn pong(d: &mut Detector, from: NodeAddr, seq: u64, t: u64) -> Vec<(Subscriber, FdIndication)> {
        let mut out = Vec::new();
        d.on_message(from, FdMessage::Pong(seq), at(t), &mut out);
        indications(&out)
    }

    #[test]
    fn probes_each_address_once_per_tick_and_answers_pings() {
        let mut d = Detector::new(cfg());
        let mut out = Vec::new();
        let (p, q) = (node(2, 5), node(3, 6));
        d.monitor(A, p, at(0), &mut out);
        d.monitor(B, p, at(0), &mut out);
        d.monitor(A, NodeAddr::new(p.addr, NodeId::UNKNOWN), at(0), &mut out);
        d.monitor(A, q, at(0), &mut out);
        assert!(out.is_empty());
        d.tick(at(100), &mut out);
        let unknown = |n: NodeAddr| NodeAddr::new(n.addr, NodeId::UNKNOWN);
        assert_eq!(pings(&out), vec![(unknown(p), 1), (unknown(q), 1)]);
        out.clear();
        d.on_message(q, FdMessage::Ping(42), at(101), &mut out);
        assert_eq!(out, vec![Output::Send { to: q, msg: FdMessage::Pong(42) }]);
        // Pings are answered even from strangers.
        out.clear();
        let stranger = node(9, 9);
        d.on_message(stranger, FdMessage::Ping(1), at(102), &mut out);
        assert_eq!(out, vec![Output::Send { to: stranger, msg: FdMessage::Pong(1) }]);
        assert_eq!(d.monitored(), 3);
    }

    #[test]
    fn suspects_after_the_timeout_only_on_change() {
        let mut d = Detector::new(cfg());
        let p = node(2, 5);
        d.monitor(A, p, at(0), &mut Vec::new());
        assert!(tick(&mut d, 100).is_empty());
        assert!(pong(&mut d, p, 1, 150).is_empty());
        assert!(tick(&mut d, 400).is_empty(), "250 ms of silence < 300 ms");
        assert_eq!(tick(&mut d, 500), vec![(A, FdIndication::Suspect(p))]);
        assert!(tick(&mut d, 600).is_empty(), "no repeated suspicion");
        assert_eq!(d.is_suspected(p), Some(true));
        assert_eq!(d.suspected().collect::<Vec<_>>(), vec![p]);
    }

    #[test]
    fn a_false_suspicion_is_restored_and_lengthens_the_timeout_up_to_the_cap() {
        let mut d = Detector::new(cfg());
        let p = node(2, 5);
        d.monitor(A, p, at(0), &mut Vec::new());
        let mut t = 0;
        let mut timeouts = Vec::new();
        for _ in 0..5 {
            let timeout = d.timeout(p).unwrap();
            timeouts.push(timeout.as_millis());
            // Silent for exactly the timeout: not yet suspected; one tick later: suspected.
            let silent_until = t + timeout.as_millis() as u64;
            assert!(tick(&mut d, silent_until).is_empty());
            assert_eq!(tick(&mut d, silent_until + 1), vec![(A, FdIndication::Suspect(p))]);
            t = silent_until + 10;
            assert_eq!(pong(&mut d, p, 1, t), vec![(A, FdIndication::Restore(p))]);
        }
        assert_eq!(timeouts, vec![300, 500, 700, 700, 700], "grows by 200 ms, capped at 700");
    }

    #[test]
    fn restore_by_a_new_incarnation_does_not_lengthen_the_timeout() {
        let mut d = Detector::new(cfg());
        let any = NodeAddr::new(node(2, 0).addr, NodeId::UNKNOWN);
        d.monitor(A, any, at(0), &mut Vec::new());
        assert!(pong(&mut d, node(2, 5), 1, 10).is_empty());
        assert_eq!(tick(&mut d, 400), vec![(A, FdIndication::Suspect(any))]);
        // Incarnation 6 now runs at the address: the suspicion of incarnation 5 was right.
        assert_eq!(pong(&mut d, node(2, 6), 2, 410), vec![(A, FdIndication::Restore(any))]);
        assert_eq!(d.timeout(any), Some(ms(300)));
        // Incarnation 6 is then wrongly suspected: that one counts.
        assert_eq!(tick(&mut d, 800), vec![(A, FdIndication::Suspect(any))]);
        assert_eq!(pong(&mut d, node(2, 6), 3, 810), vec![(A, FdIndication::Restore(any))]);
        assert_eq!(d.timeout(any), Some(ms(500)));
    }

    #[test]
    fn an_unknown_id_follows_whichever_incarnation_runs() {
        let mut d = Detector::new(cfg());
        let any = NodeAddr::new(node(2, 0).addr, NodeId::UNKNOWN);
        d.monitor(A, any, at(0), &mut Vec::new());
        tick(&mut d, 100);
        assert!(pong(&mut d, node(2, 5), 1, 110).is_empty());
        tick(&mut d, 200);
        // A quick restart: the new incarnation answers before the timeout; nothing to report.
        assert!(pong(&mut d, node(2, 6), 2, 210).is_empty());
        assert!(tick(&mut d, 500).is_empty());
        assert_eq!(d.is_suspected(any), Some(false));
    }

    #[test]
    fn a_concrete_id_is_suspected_for_good_once_another_incarnation_answers() {
        let mut d = Detector::new(cfg());
        let (old, new) = (node(2, 5), node(2, 6));
        let mut out = Vec::new();
        d.monitor(A, old, at(0), &mut out);
        d.tick(at(100), &mut out);
        assert_eq!(pings(&out)[0].0.id, NodeId::UNKNOWN, "probes whoever runs there");
        assert!(pong(&mut d, old, 1, 110).is_empty());
        assert_eq!(pong(&mut d, new, 1, 120), vec![(A, FdIndication::Suspect(old))]);
        // Late messages from the old incarnation do not bring it back.
        assert!(pong(&mut d, old, 1, 130).is_empty());
        let mut out = Vec::new();
        d.on_message(old, FdMessage::Ping(9), at(131), &mut out);
        assert!(indications(&out).is_empty());
        assert_eq!(d.is_suspected(old), Some(true));
        // The address is no longer probed for that watch.
        let mut out = Vec::new();
        d.tick(at(200), &mut out);
        assert!(out.is_empty(), "{out:?}");
        // Monitoring the new incarnation works as usual, for another subscriber too.
        let mut out = Vec::new();
        d.monitor(B, new, at(200), &mut out);
        d.monitor(B, old, at(200), &mut out);
        assert_eq!(indications(&out), vec![(B, FdIndication::Suspect(old))]);
    }

    #[test]
    fn a_pong_to_a_probe_older_than_the_watch_proves_nothing_about_incarnations() {
        let mut d = Detector::new(cfg());
        let any = NodeAddr::new(node(2, 0).addr, NodeId::UNKNOWN);
        d.monitor(A, any, at(0), &mut Vec::new());
        tick(&mut d, 100); // probe 1, answered by incarnation 5, which then crashes
                           // Incarnation 6 has started; a user learns its id and monitors it before the
                           // answer of incarnation 5 to probe 1 arrives.
        let new = node(2, 6);
        d.monitor(A, new, at(105), &mut Vec::new());
        assert!(pong(&mut d, node(2, 5), 1, 110).is_empty(), "probe 1 predates the watch");
        assert_eq!(d.is_suspected(new), Some(false));
        tick(&mut d, 200); // probe 2
        assert!(pong(&mut d, new, 2, 210).is_empty());
        assert_eq!(d.is_suspected(new), Some(false));
    }

    #[test]
    fn unmonitor_stops_indications_and_probes() {
        let mut d = Detector::new(cfg());
        let (p, q) = (node(2, 5), node(3, 6));
        let mut out = Vec::new();
        d.monitor(A, p, at(0), &mut out);
        d.monitor(B, p, at(0), &mut out);
        d.monitor(A, q, at(0), &mut out);
        d.unmonitor(A, p);
        assert_eq!(
            tick(&mut d, 400),
            vec![(B, FdIndication::Suspect(p)), (A, FdIndication::Suspect(q))]
        );
        d.unmonitor(B, p);
        d.unmonitor(B, q); // B never monitored q: no effect
        assert_eq!(d.is_suspected(p), None);
        assert_eq!(d.is_suspected(q), Some(true));
        let mut out = Vec::new();
        d.tick(at(500), &mut out);
        assert_eq!(pings(&out).iter().map(|x| x.0.addr).collect::<Vec<_>>(), vec![q.addr]);
        d.remove_subscriber(A);
        assert_eq!(d.monitored(), 0);
        let mut out = Vec::new();
        d.tick(at(600), &mut out);
        assert!(out.is_empty());
        // Monitoring again starts afresh, with the initial timeout.
        d.monitor(A, p, at(600), &mut out);
        assert_eq!(d.is_suspected(p), Some(false));
        assert_eq!(d.timeout(p), Some(ms(300)));
    }

    #[test]
    fn monitoring_twice_does_nothing() {
        let mut d = Detector::new(cfg());
        let p = node(2, 5);
        let mut out = Vec::new();
        d.monitor(A, p, at(0), &mut out);
        tick(&mut d, 400);
        d.monitor(A, p, at(400), &mut out);
        assert!(out.is_empty());
        assert_eq!(d.monitored(), 1);
        assert_eq!(d.is_suspected(p), Some(true));
    }

    #[test]
    fn hints_probe_sooner_but_never_suspect() {
        let mut d = Detector::new(cfg());
        let p = node(2, 5);
        d.monitor(A, p, at(0), &mut Vec::new());
        tick(&mut d, 100);
        let mut out = Vec::new();
        d.on_hint(p, &mut out);
        assert_eq!(pings(&out), vec![(NodeAddr::new(p.addr, NodeId::UNKNOWN), 2)]);
        assert!(indications(&out).is_empty(), "a hint is no proof");
        // At most one extra probe per tick.
        out.clear();
        d.on_hint(p, &mut out);
        assert!(out.is_empty());
        // Not for strangers.
        d.on_hint(node(7, 1), &mut out);
        assert!(out.is_empty());
        assert_eq!(d.is_suspected(p), Some(false));
        // The extra probe is what reveals a new incarnation quickly.
        assert_eq!(pong(&mut d, node(2, 6), 2, 105), vec![(A, FdIndication::Suspect(p))]);
        tick(&mut d, 200);
        d.on_hint(p, &mut out);
        assert!(out.is_empty(), "no hurry for a process already suspected");
    }

    #[test]
    fn flaws_break_what_they_say() {
        let p = node(2, 5);
        let mut d = Detector::new(cfg()).with_flaw(Flaw::NeverRestore);
        d.monitor(A, p, at(0), &mut Vec::new());
        assert_eq!(tick(&mut d, 400), vec![(A, FdIndication::Suspect(p))]);
        assert!(pong(&mut d, p, 1, 410).is_empty());
        assert_eq!(d.is_suspected(p), Some(true));

        let mut d = Detector::new(cfg()).with_flaw(Flaw::FixedTimeout);
        d.monitor(A, p, at(0), &mut Vec::new());
        tick(&mut d, 400);
        assert_eq!(pong(&mut d, p, 1, 410), vec![(A, FdIndication::Restore(p))]);
        assert_eq!(d.timeout(p), Some(ms(300)));

        let (d, p, q, old) = busy();
        let mut r = Detector::new(cfg()).with_flaw(Flaw::ForgetSuspicions);
        r.take_over(d.save());
        assert_eq!((r.is_suspected(q), r.is_suspected(old)), (Some(false), Some(true)));
        assert!(pong(&mut r, node(3, 6), 9, 600).is_empty(), "q is never restored");
        assert_eq!(r.is_suspected(p), Some(false));
    }

    #[test]
    fn a_pause_is_not_held_against_anyone() {
        let mut d = Detector::new(cfg());
        let (p, q) = (node(2, 5), node(3, 6));
        d.monitor(A, p, at(0), &mut Vec::new());
        d.monitor(A, q, at(0), &mut Vec::new());
        assert_eq!(
            tick(&mut d, 400),
            vec![(A, FdIndication::Suspect(p)), (A, FdIndication::Suspect(q))]
        );
        assert_eq!(pong(&mut d, q, 1, 410), vec![(A, FdIndication::Restore(q))]);
        // Paused from 410 ms to 5 s: q is not suspected for the pause; p stays suspected.
        d.resume(at(5_000));
        assert!(tick(&mut d, 5_100).is_empty());
        assert_eq!(d.is_suspected(p), Some(true));
        assert_eq!(tick(&mut d, 5_600), vec![(A, FdIndication::Suspect(q))]);
    }

    /// A detector with a bit of everything: `p` (concrete; A and B) falsely suspected once and
    /// heard since, so its timeout grew; `any(q)` (A) suspected now; `old` (B) replaced by a
    /// newer incarnation.
    fn busy() -> (Detector, NodeAddr, NodeAddr, NodeAddr) {
        let mut d = Detector::new(cfg());
        let (p, old) = (node(2, 5), node(4, 8));
        let q = NodeAddr::new(node(3, 0).addr, NodeId::UNKNOWN);
        let mut out = Vec::new();
        d.monitor(A, p, at(0), &mut out);
        d.monitor(B, p, at(0), &mut out);
        d.monitor(A, q, at(0), &mut out);
        d.monitor(B, old, at(0), &mut out);
        tick(&mut d, 100);
        assert!(pong(&mut d, node(3, 6), 1, 110).is_empty());
        assert!(pong(&mut d, old, 1, 120).is_empty());
        assert_eq!(pong(&mut d, node(4, 9), 1, 130), vec![(B, FdIndication::Suspect(old))]);
        let s = tick(&mut d, 400);
        assert_eq!(s, vec![(A, FdIndication::Suspect(p)), (B, FdIndication::Suspect(p))]);
        assert_eq!(pong(&mut d, p, 2, 410).len(), 2, "p restored for A and B");
        assert_eq!(tick(&mut d, 500), vec![(A, FdIndication::Suspect(q))]);
        assert_eq!(d.timeout(p), Some(ms(500)));
        (d, p, q, old)
    }

    #[test]
    fn a_restored_detector_carries_on_where_the_saved_one_was() {
        let (d, p, q, old) = busy();
        let saved = d.save();
        let mut r = Detector::restore(cfg(), saved.clone());
        assert_eq!(r.save(), saved, "nothing lost, nothing added");
        assert_eq!(r.ticks(), d.ticks());
        for n in [p, q, old] {
            assert_eq!(r.is_suspected(n), d.is_suspected(n), "{n}");
            assert_eq!(r.timeout(n), d.timeout(n), "{n}");
        }
        // The probe numbering continues: an answer from another incarnation to the next probe
        // still proves that a concrete watch's incarnation is gone.
        let mut out = Vec::new();
        r.tick(at(600), &mut out);
        assert!(indications(&out).is_empty(), "no suspicion raised twice");
        assert!(pings(&out).iter().all(|&(_, seq)| seq == saved.seq + 1), "{out:?}");
        assert_eq!(pong(&mut r, node(2, 6), saved.seq + 1, 610).len(), 2, "p replaced");
        // A suspected watch is restored by its next message, to its subscribers only.
        assert_eq!(
            pong(&mut r, node(3, 6), saved.seq + 1, 620),
            vec![(A, FdIndication::Restore(q))]
        );
        // The replaced watch stays suspected.
        assert!(pong(&mut r, old, saved.seq + 1, 630).is_empty());
        assert_eq!(r.is_suspected(old), Some(true));
        // Unmonitoring works on carried-over watches and subscribers.
        r.unmonitor(B, old);
        assert_eq!(r.is_suspected(old), None);
    }

    #[test]
    fn a_new_config_clamps_the_timeouts_and_sets_the_pace() {
        let (d, p, q, _) = busy();
        assert_eq!((d.timeout(p), d.timeout(q)), (Some(ms(500)), Some(ms(300))));
        // Narrower: [400, 450] ms, +50 ms per false suspicion.
        let narrow = FdConfig {
            period: ms(50),
            initial_timeout: ms(400),
            increment: ms(50),
            max_timeout: ms(450),
        };
        let mut r = Detector::restore(narrow, d.save());
        assert_eq!(r.config(), &narrow);
        assert_eq!((r.timeout(p), r.timeout(q)), (Some(ms(450)), Some(ms(400))));
        // q is wrongly suspected: restored, its timeout grows by the new increment.
        assert_eq!(pong(&mut r, node(3, 6), 3, 600), vec![(A, FdIndication::Restore(q))]);
        assert_eq!(r.timeout(q), Some(ms(450)));
        // p was last heard at 410 ms: silent for more than the clamped 450 ms at 861 ms.
        assert!(tick(&mut r, 860).is_empty());
        assert_eq!(tick(&mut r, 861).len(), 2, "p suspected for A and B");
        // Wider: every timeout is raised to the new initial timeout.
        let wide = FdConfig::beernet();
        let r = Detector::restore(wide, d.save());
        assert_eq!((r.timeout(p), r.timeout(q)), (Some(ms(500)), Some(ms(500))));
    }

    #[test]
    fn the_state_survives_serde_and_tolerates_a_newer_version() {
        let (d, p, _, _) = busy();
        let saved = d.save();
        let json = serde_json::to_string(&saved).unwrap();
        let back: DetectorState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, saved);
        // A newer version that adds a field (here: to each watch) still hands over.
        let newer = json.replace("\"suspected\"", "\"jitter_ms\":3,\"suspected\"");
        assert_ne!(newer, json);
        let back: DetectorState = serde_json::from_str(&newer).unwrap();
        assert_eq!(Detector::restore(cfg(), back).is_suspected(p), Some(false));
    }

    #[test]
    fn a_malformed_state_is_repaired() {
        let (p, q) = (node(2, 5), node(3, 6));
        let watch = |node, subscribers: Vec<Subscriber>| WatchState {
            node,
            since: 1,
            last_heard: at(0),
            heard: node.id,
            suspected: false,
            replaced: true,
            subscribers,
        };
        let state = DetectorState {
            seq: 7,
            ticks: 7,
            peers: vec![
                PeerState {
                    addr: p.addr,
                    timeout: ms(5),
                    // Unsorted with a duplicate; the same watch twice; nobody monitors q.
                    watches: vec![watch(p, vec![B, A, B]), watch(p, vec![Subscriber(9)])],
                },
                // q's watch filed under p's address; a watch nobody monitors.
                PeerState {
                    addr: p.addr,
                    timeout: ms(9_000),
                    watches: vec![watch(q, vec![A]), watch(node(4, 1), vec![])],
                },
            ],
        };
        let r = Detector::restore(cfg(), state);
        let saved = r.save();
        assert_eq!(saved.peers.len(), 2, "{saved:?}");
        assert_eq!(saved.peers[0].addr, p.addr);
        assert_eq!(saved.peers[0].timeout, ms(300), "clamped up");
        assert_eq!(saved.peers[0].watches.len(), 1);
        assert_eq!(saved.peers[0].watches[0].subscribers, vec![A, B, Subscriber(9)]);
        assert_eq!(saved.peers[1].addr, q.addr, "moved to its own address");
        assert_eq!(saved.peers[1].timeout, ms(700), "clamped down");
        assert_eq!(r.is_suspected(p), Some(true), "a replaced watch is suspected");
        assert_eq!(r.is_suspected(node(4, 1)), None);
    }

    #[test]
    fn an_invalid_config_is_normalized() {
        let d = Detector::new(FdConfig { period: Duration::ZERO, ..cfg() });
        assert_eq!(d.config().validate(), Ok(()));
    }
}
