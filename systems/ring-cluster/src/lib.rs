//! # selfman-ring-cluster
//!
//! A relaxed ring you can run: every node wires the heartbeat failure detector
//! (`selfman-failure-detector`) and Beernet's relaxed ring (`selfman-relaxed-ring`) on one
//! [`Host`]; the ring watches its neighbours through the detector.
//!
//! ```text
//!  HeartbeatFd ──FailureDetector──▶ RelaxedRing<M> ──Ring<M>──▶ user
//!      │ Network<FdMessage>              │ Network<RingMessage<M>>, Timer
//! ```
//!
//! [`build_node`] is the wiring, usable on any host (TCP or simulated). The `ring-cluster`
//! program ([`cli`]) runs a local ring of OS processes over TCP on 127.0.0.1, hot-swaps every
//! node's detector and ring while lookups run, kills a few nodes by PID, and checks that the
//! survivors repair the ring ([`selfman_ports::ring_check`]) and that lookups from every node
//! name the right owner:
//!
//! ```text
//! cargo run --release -p selfman-ring-cluster -- --nodes 10
//! ```
//!
//! Guarantees of this crate (the protocols' own are in their crates):
//!
//! * [`build_node`] creates and connects, never starts: a simulated host starts the node, a
//!   TCP host starts [`RingNode::components`] in that order (providers first);
//! * [`reconfigure_node`] replaces a running node's detector and ring live, each carrying its
//!   whole state over, so the peer keeps its place, its watches and its lookups in flight;
//! * the lines a node prints and the commands it takes ([`lines`]) are parsed strictly and
//!   bounded: a malformed line is an error naming it, never a panic.
#![deny(missing_docs)]

pub mod cli;
pub mod lines;

use selfman_core::{Component, ComponentRef, Host, Message, Result, Swap, System};
use selfman_failure_detector::{FdConfig, HeartbeatFd};
use selfman_ports::Ring;
use selfman_relaxed_ring::{RelaxedRing, RingConfig};

/// The settings of one ring node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NodeConfig {
    /// The failure detector's timing.
    pub fd: FdConfig,
    /// The ring's settings.
    pub ring: RingConfig,
}

/// Every component of one ring node.
#[derive(Debug)]
pub struct RingNode<M: Message> {
    /// The failure detector the ring watches its neighbours with.
    pub fd: Component<HeartbeatFd>,
    /// The relaxed ring.
    pub ring: Component<RelaxedRing<M>>,
}

impl<M: Message> RingNode<M> {
    /// Every component, in the order to start them (the detector before its user).
    pub fn components(&self) -> Vec<ComponentRef> {
        vec![self.fd.untyped().clone(), self.ring.untyped().clone()]
    }

    /// The `Ring<M>` port users bootstrap, join, look up and route through.
    ///
    /// # Errors
    ///
    /// [`selfman_core::Error::Destroyed`] once the node is gone.
    pub fn ring_port(&self) -> Result<selfman_core::ProvidedRef<Ring<M>>> {
        self.ring.provided()
    }
}

/// Wires a ring node on `host`: a [`HeartbeatFd`] with `config.fd` (network protocol
/// [`selfman_failure_detector::PROTOCOL`]) and a [`RelaxedRing`] with `config.ring` (protocol
/// [`selfman_relaxed_ring::PROTOCOL`]) that requires the detector's `FailureDetector` port.
///
/// The components are created and connected, not started; the caller connects the ring's
/// `Ring<M>` port to its user, which then bootstraps or joins.
///
/// # Errors
///
/// Whatever creating and connecting the components on `host` returns.
///
/// # Examples
///
/// A ring of one node in the simulator:
///
/// ```
/// use selfman_core::Host;
/// use selfman_ports::{RingRequest, RingStatus, RingViews};
/// use selfman_ring_cluster::{build_node, NodeConfig};
/// use selfman_sim::Simulation;
///
/// let sim = Simulation::new(1);
/// let views = RingViews::new();
/// let v = views.clone();
/// sim.add_node(move |h| {
///     let node = build_node::<u64, _>(h, &NodeConfig::default())?;
///     v.register(h.local(), &node.ring);
///     node.ring_port()?.request(RingRequest::Bootstrap)?;
///     Ok(())
/// })
/// .unwrap();
/// sim.run_for(std::time::Duration::from_millis(10));
/// assert_eq!(views.snapshot().into_values().next().unwrap().status, RingStatus::InRing);
/// ```
// ANCHOR: build_node
pub fn build_node<M: Message, H: Host>(host: &H, config: &NodeConfig) -> Result<RingNode<M>> {
    let fd = selfman_failure_detector::build(host, config.fd)?;
    let ring = selfman_relaxed_ring::build::<M, H>(host, config.ring, &fd.provided()?)?;
    Ok(RingNode { fd, ring })
}
// ANCHOR_END: build_node

/// As [`build_node`], with the ring's deliberate mistake `flaw` (feature `flaws`, for showing
/// that the process test's checks catch a ring that does not repair itself).
///
/// # Errors
///
/// As [`build_node`].
#[cfg(feature = "flaws")]
pub fn build_flawed_node<M: Message, H: Host>(
    host: &H,
    config: &NodeConfig,
    flaw: selfman_relaxed_ring::Flaw,
) -> Result<RingNode<M>> {
    let fd = selfman_failure_detector::build(host, config.fd)?;
    let (me, ring_config) = (host.local(), config.ring);
    let factory = move || {
        let machine = selfman_relaxed_ring::RelaxedRingMachine::new(me, ring_config);
        RelaxedRing::from_machine(machine.with_flaw(flaw))
    };
    let ring = selfman_relaxed_ring::build_with(
        host,
        selfman_relaxed_ring::PROTOCOL,
        &fd.provided::<selfman_ports::FailureDetector>()?,
        factory,
    )?;
    Ok(RingNode { fd, ring })
}

/// The swaps [`reconfigure_node`] requested: the detector's and the ring's.
#[derive(Debug)]
pub struct NodeSwaps {
    /// The detector's replacement, if asked for.
    pub fd: Option<Swap>,
    /// The ring's replacement, if asked for.
    pub ring: Option<Swap>,
}

/// Replaces the running node's detector by one with `config.fd` and its ring by one with
/// `config.ring`, live, each taking over the old one's whole state
/// ([`selfman_failure_detector::reconfigure`], [`selfman_relaxed_ring::reconfigure`]): the
/// ring keeps its identifier, place, lists, fingers and lookups in flight; the detector keeps
/// every watch and suspicion. Either may be left as it is by passing `None`.
///
/// Returns at once; each swap happens at its component's next turn (poll or wait the
/// returned [`Swap`]s; in the simulator, poll).
///
/// # Errors
///
/// As `System::replace_with_state` (e.g. a component is destroyed); the detector's swap may
/// then already have been requested.
pub fn reconfigure_node<M: Message>(
    system: &System,
    node: &RingNode<M>,
    fd: Option<FdConfig>,
    ring: Option<RingConfig>,
) -> Result<NodeSwaps> {
    let fd = fd.map(|c| selfman_failure_detector::reconfigure(system, &node.fd, c)).transpose()?;
    let ring = match ring {
        Some(c) => {
            let me = node.ring.on_definition(|d| d.machine().me().addr)?;
            Some(selfman_relaxed_ring::reconfigure(system, &node.ring, me, c)?)
        }
        None => None,
    };
    Ok(NodeSwaps { fd, ring })
}
