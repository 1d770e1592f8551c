//! # selfman-consensus-cluster
//!
//! A consensus group you can run: every node wires the whole uniform-consensus stack —
//! heartbeat failure detector, Ω, two best-effort broadcasts, epoch change, epoch consensus and
//! uniform consensus — on one [`Host`], and a [`Sequencer`] on top agrees on a sequence of
//! values, slot after slot (slot `s` is consensus instance `s`).
//!
//! [`build_node`] is the wiring, usable on any host (TCP or simulated); the `consensus-cluster`
//! program ([`cli`]) runs a local cluster of OS processes over TCP on 127.0.0.1, kills the
//! leader and reports how long the survivors took to decide again:
//!
//! ```text
//! cargo run --release --example consensus-cluster -- --nodes 5
//! ```
#![deny(missing_docs)]

pub mod cli;

use std::time::Duration;

#[cfg(feature = "flaws")]
use selfman_consensus::{build_flawed_stack, Flaws};
use selfman_consensus::{build_stack, EcMessage, EpMessage, Stack, StackConfig};
use selfman_core::{
    Component, ComponentDefinition, ComponentRef, Handled, Host, Message, NodeAddr, Provided,
    ProvidedRef, Required, Result, Setup, Timeout, Timer, TimerId,
};
use selfman_failure_detector::{FdConfig, HeartbeatFd};
use selfman_leader_election::Omega;
use selfman_ports::{
    BestEffortBroadcast, Consensus, Decide, EpochChange, InstanceId, LeaderElection, Propose,
    StartEpoch,
};

/// Protocol name of the epoch change's best-effort broadcast.
pub const EC_BEB: &str = "consensus-ec-beb";
/// Protocol name of epoch consensus's best-effort broadcast.
pub const EP_BEB: &str = "consensus-ep-beb";

/// Settings of a consensus node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeConfig {
    /// The failure detector's timing.
    pub fd: FdConfig,
    /// The consensus stack's settings.
    pub stack: StackConfig,
}

/// Every component of one consensus node.
#[derive(Debug)]
pub struct ConsensusNode<V: Message> {
    /// The failure detector.
    pub fd: Component<HeartbeatFd>,
    /// The leader detector.
    pub omega: Component<Omega>,
    /// The epoch change's broadcast.
    pub ec_beb: Component<selfman_broadcast::Beb<EcMessage>>,
    /// Epoch consensus's broadcast.
    pub ep_beb: Component<selfman_broadcast::Beb<EpMessage<V>>>,
    /// Epoch change, epoch consensus and uniform consensus.
    pub stack: Stack<V>,
}

impl<V: Message + PartialEq> ConsensusNode<V> {
    /// The `Consensus<V>` port users propose to and learn decisions from.
    ///
    /// # Errors
    ///
    /// [`selfman_core::Error::Destroyed`] once the node is gone.
    pub fn consensus(&self) -> Result<selfman_core::ProvidedRef<Consensus<V>>> {
        self.stack.uc.provided()
    }

    /// Every component, in the order to start them (the providers first).
    pub fn components(&self) -> Vec<ComponentRef> {
        vec![
            self.fd.untyped().clone(),
            self.omega.untyped().clone(),
            self.ec_beb.untyped().clone(),
            self.ep_beb.untyped().clone(),
            self.stack.ec.untyped().clone(),
            self.stack.ep.untyped().clone(),
            self.stack.uc.untyped().clone(),
        ]
    }
}

/// Wires a consensus node for `group` (members in rank order, this node among them) on
/// `host`:
///
/// ```text
///  HeartbeatFd ──FailureDetector──▶ Omega ──LeaderElection──▶ EpochChanger ◀── Beb<EcMessage>
///                                                                 │ EpochChange
///  user ──Consensus<V>──▶ UniformConsensus ◀──────────────────────┘
///                              │ AbortableConsensus<V>
///                              ▼
///                        EpochConsensus ◀── Beb<EpMessage<V>>
/// ```
///
/// The components are created but not started: on a simulated host the simulator starts the
/// node; on a TCP host start each of [`ConsensusNode::components`].
///
/// # Errors
///
/// Whatever creating and connecting the components on `host` returns.
pub fn build_node<V: Message + PartialEq, H: Host>(
    host: &H,
    group: Vec<NodeAddr>,
    config: &NodeConfig,
) -> Result<ConsensusNode<V>> {
    let below = build_below_consensus(host, group.clone(), config)?;
    let (le, ec, ep) = below.ports()?;
    let stack = build_stack(host, &config.stack, group, &le, &ec, &ep)?;
    Ok(below.with(stack))
}

/// As [`build_node`], with deliberate `flaws` in the consensus stack (feature `flaws`, for
/// showing that the simulation checkers catch them): the same detector, Ω and broadcasts,
/// and [`build_flawed_stack`] for the stack.
///
/// # Errors
///
/// As [`build_node`].
#[cfg(feature = "flaws")]
pub fn build_flawed_node<V: Message + PartialEq, H: Host>(
    host: &H,
    group: Vec<NodeAddr>,
    config: &NodeConfig,
    flaws: Flaws,
) -> Result<ConsensusNode<V>> {
    let below = build_below_consensus(host, group.clone(), config)?;
    let (le, ec, ep) = below.ports()?;
    let stack = build_flawed_stack(host, &config.stack, group, &le, &ec, &ep, flaws)?;
    Ok(below.with(stack))
}

/// The components a node's consensus stack requires: detector, Ω and the two broadcasts.
struct Below<V: Message> {
    fd: Component<HeartbeatFd>,
    omega: Component<Omega>,
    ec_beb: Component<selfman_broadcast::Beb<EcMessage>>,
    ep_beb: Component<selfman_broadcast::Beb<EpMessage<V>>>,
}

/// The ports of [`Below`] the stack connects to.
type BelowPorts<V> = (
    ProvidedRef<LeaderElection>,
    ProvidedRef<BestEffortBroadcast<EcMessage>>,
    ProvidedRef<BestEffortBroadcast<EpMessage<V>>>,
);

impl<V: Message + PartialEq> Below<V> {
    fn ports(&self) -> Result<BelowPorts<V>> {
        Ok((self.omega.provided()?, self.ec_beb.provided()?, self.ep_beb.provided()?))
    }

    fn with(self, stack: Stack<V>) -> ConsensusNode<V> {
        let Below { fd, omega, ec_beb, ep_beb } = self;
        ConsensusNode { fd, omega, ec_beb, ep_beb, stack }
    }
}

fn build_below_consensus<V: Message + PartialEq, H: Host>(
    host: &H,
    group: Vec<NodeAddr>,
    config: &NodeConfig,
) -> Result<Below<V>> {
    let fd = selfman_failure_detector::build(host, config.fd)?;
    let omega = selfman_leader_election::build(host, &fd.provided()?, group.clone())?;
    let ec_beb = selfman_broadcast::build::<EcMessage, _>(host, EC_BEB, group.clone())?;
    let ep_beb = selfman_broadcast::build::<EpMessage<V>, _>(host, EP_BEB, group)?;
    Ok(Below { fd, omega, ec_beb, ep_beb })
}

/// What a [`Sequencer`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeqEvent {
    /// Slot `slot` holds `value`.
    Decided {
        /// The slot (consensus instance).
        slot: u64,
        /// The value decided for it.
        value: String,
    },
    /// This node entered epoch `ts`, led by `leader`.
    Epoch {
        /// The epoch's timestamp.
        ts: u64,
        /// Its leader.
        leader: NodeAddr,
    },
}

/// The port a [`Sequencer`] reports on.
#[derive(Debug)]
pub struct SeqEvents;

impl selfman_core::Port for SeqEvents {
    type Request = ();
    type Indication = SeqEvent;
}

/// Agrees on a sequence of values: proposes `<name>:<slot>` for slot 0, and for each next
/// slot once the previous one is decided and `interval` has passed; stops after `slots` slots
/// (if given). Each decision is reported on [`SeqEvents`] as it arrives (a lagging node may
/// learn a later slot first), together with the epochs this node enters.
pub struct Sequencer {
    consensus: Required<Consensus<String>>,
    epochs: Required<EpochChange>,
    timer: Required<Timer>,
    out: Provided<SeqEvents>,
    name: String,
    interval: Duration,
    slots: Option<u64>,
    /// The lowest slot not decided yet here.
    next: u64,
    /// Decided slots above `next`.
    ahead: std::collections::BTreeSet<u64>,
}

impl Sequencer {
    /// A sequencer that names its proposals after `name`.
    pub fn new(name: String, interval: Duration, slots: Option<u64>) -> Sequencer {
        Sequencer {
            consensus: Required::new(),
            epochs: Required::new(),
            timer: Required::new(),
            out: Provided::new(),
            name,
            interval,
            slots,
            next: 0,
            ahead: std::collections::BTreeSet::new(),
        }
    }

    fn propose_next(&mut self) {
        if self.slots.is_some_and(|n| self.next >= n) {
            return;
        }
        let value = format!("{}:{}", self.name, self.next);
        self.consensus.trigger(Propose { id: InstanceId(u128::from(self.next)), value });
    }

    fn on_decide(&mut self, d: Decide<String>) -> Handled {
        let slot = u64::try_from(d.id.0).unwrap_or(u64::MAX);
        self.out.trigger(SeqEvent::Decided { slot, value: d.value });
        if slot > self.next {
            self.ahead.insert(slot);
        } else if slot == self.next {
            self.next += 1;
            while self.ahead.remove(&self.next) {
                self.next += 1;
            }
            if self.interval.is_zero() {
                self.propose_next();
            } else {
                self.timer.schedule_once(TimerId(self.next), self.interval);
            }
        }
        Ok(())
    }

    fn on_epoch(&mut self, e: StartEpoch) -> Handled {
        self.out.trigger(SeqEvent::Epoch { ts: e.ts, leader: e.leader });
        Ok(())
    }

    fn on_timeout(&mut self, t: Timeout) -> Handled {
        if t.id == TimerId(self.next) {
            self.propose_next();
        }
        Ok(())
    }
}

impl ComponentDefinition for Sequencer {
    fn setup(&mut self, s: &mut Setup<Self>) {
        s.require(|c| &mut c.consensus, Self::on_decide);
        s.require(|c| &mut c.epochs, Self::on_epoch);
        s.require(|c| &mut c.timer, Self::on_timeout);
        s.provide(|c| &mut c.out, |_, ()| Ok(()));
    }

    fn on_start(&mut self) -> Handled {
        self.propose_next();
        Ok(())
    }
}

/// Creates a [`Sequencer`] on `host` and connects it to `node` and the timer.
///
/// # Errors
///
/// Whatever creating and connecting it returns.
pub fn build_sequencer<H: Host>(
    host: &H,
    node: &ConsensusNode<String>,
    name: String,
    interval: Duration,
    slots: Option<u64>,
) -> Result<Component<Sequencer>> {
    let seq = host.create(move || Sequencer::new(name.clone(), interval, slots))?;
    let sys = host.system();
    sys.connect(&node.consensus()?, &seq.required()?)?;
    sys.connect(&node.stack.ec.provided::<EpochChange>()?, &seq.required()?)?;
    sys.connect(&host.timer()?, &seq.required()?)?;
    Ok(seq)
}
