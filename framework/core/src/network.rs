//! The [`Network`] port: typed messages between nodes.
//!
//! Every protocol component requires `Network<M>` for **its own** message type `M`. A transport
//! (TCP in `selfman-net`, the simulated network in `selfman-sim`) provides one `Network<M>`
//! port per *protocol* it is asked for ([`Host::network`]) and multiplexes all of them over one
//! connection per pair of nodes: every frame on the wire carries its [`ProtocolId`]. Messages
//! between nodes in the same process are handed over as values, never serialised.
//!
//! * A node is named by a [`NodeAddr`]: the socket address it listens on plus a [`NodeId`] that
//!   is fresh for each incarnation. A node restarted on the same address has a new id, so
//!   messages meant for the crashed incarnation are not delivered to the new one.
//! * Requests: [`NetRequest::Send`] (fire and forget; the network may lose messages — protocols
//!   are written for fair-loss links).
//! * Indications: [`NetIndication::Deliver`] for each received message, and
//!   [`NetIndication::Status`] when a connection to a peer is established, lost or cannot be
//!   made. Status events are **hints** (a failure detector may use them to suspect faster);
//!   they are no proof of a crash.
//! * Wiring code gets ports from a [`Host`] — the same code runs over TCP and in the simulator.
//!
//! # Examples
//!
//! A component that answers every `Ping` with a `Pong`, over whatever network it is given:
//!
//! ```
//! use selfman_core::{ComponentDefinition, Handled, NetIndication, Network, Required, Setup};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! enum EchoMsg {
//!     Ping(u64),
//!     Pong(u64),
//! }
//!
//! #[derive(Default)]
//! struct Echo {
//!     net: Required<Network<EchoMsg>>,
//! }
//!
//! impl Echo {
//!     fn on_net(&mut self, ev: NetIndication<EchoMsg>) -> Handled {
//!         if let NetIndication::Deliver(d) = ev {
//!             if let EchoMsg::Ping(n) = d.msg {
//!                 self.net.send(d.from, EchoMsg::Pong(n));
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! impl ComponentDefinition for Echo {
//!     fn setup(&mut self, setup: &mut Setup<Self>) {
//!         setup.require(|c| &mut c.net, Self::on_net);
//!     }
//! }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::component::definition::ComponentDefinition;
use crate::component::handle::{Component, ComponentRef};
use crate::error::Result;
use crate::port::{Event, Port};
use crate::port_handle::{ProvidedRef, Required};
use crate::system::System;
use crate::timer::Timer;

/// The incarnation id of a node. A node gets a fresh one every time it (re)starts, so an id is
/// never reused for another incarnation, even on the same address.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct NodeId(pub u64);

impl NodeId {
    /// "Not known yet": used in status events about a peer that never completed a handshake.
    pub const UNKNOWN: NodeId = NodeId(0);
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A node: where it listens, and which incarnation it is.
///
/// Written (and parsed) as `ID@IP:PORT`, the id in hex, e.g. `00000000000000a1@127.0.0.1:4000`.
/// Ordered by address first, then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeAddr {
    /// The address the node accepts connections on.
    pub addr: SocketAddr,
    /// The node's incarnation id.
    pub id: NodeId,
}

impl NodeAddr {
    /// A node address from its parts.
    pub fn new(addr: SocketAddr, id: NodeId) -> NodeAddr {
        NodeAddr { addr, id }
    }

    /// A synthetic address for simulated node number `n`: `10.x.y.z:4000` with `n` spread over
    /// the last three bytes (distinct for `n < 2^24`).
    pub fn simulated(n: u32, id: NodeId) -> NodeAddr {
        let [_, b, c, d] = n.to_be_bytes();
        NodeAddr { addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, b, c, d)), 4000), id }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr)
    }
}

/// Why a [`NodeAddr`] did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node address `{input}`: {why} (expected ID@IP:PORT, ID in hex)")]
pub struct ParseNodeAddrError {
    input: String,
    why: &'static str,
}

impl FromStr for NodeAddr {
    type Err = ParseNodeAddrError;

    fn from_str(s: &str) -> std::result::Result<NodeAddr, ParseNodeAddrError> {
        let err = |why| ParseNodeAddrError { input: s.chars().take(80).collect(), why };
        let (id, addr) = s.split_once('@').ok_or_else(|| err("missing `@`"))?;
        let id = u64::from_str_radix(id, 16).map_err(|_| err("the id is not a hex u64"))?;
        let addr = addr.parse().map_err(|_| err("the address is not IP:PORT"))?;
        Ok(NodeAddr { addr, id: NodeId(id) })
    }
}

/// A protocol message: any event that can also cross the wire.
///
/// Implemented for every `Clone + Send + Debug + Serialize + DeserializeOwned + 'static` type.
pub trait Message: Event + Serialize + DeserializeOwned {}

impl<T: Event + Serialize + DeserializeOwned> Message for T {}

/// Names one protocol's traffic on a shared connection: a 32-bit FNV-1a hash of the protocol's
/// name, so both ends agree without coordination. Transports refuse to register two names with
/// the same id on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProtocolId(pub u32);

impl ProtocolId {
    /// The id of the protocol called `name`.
    pub const fn of(name: &str) -> ProtocolId {
        let bytes = name.as_bytes();
        let mut h: u32 = 0x811c_9dc5;
        let mut i = 0;
        while i < bytes.len() {
            h ^= bytes[i] as u32;
            h = h.wrapping_mul(0x0100_0193);
            i += 1;
        }
        ProtocolId(h)
    }
}

/// The network port for messages of type `M`: [`NetRequest`] in, [`NetIndication`] out.
pub struct Network<M>(PhantomData<fn() -> M>);

impl<M: Message> Port for Network<M> {
    type Request = NetRequest<M>;
    type Indication = NetIndication<M>;
}

impl<M> fmt::Debug for Network<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Network<{}>", std::any::type_name::<M>())
    }
}

/// Requests to a network.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NetRequest<M> {
    /// Send `msg` to the node `to`. Fire and forget: it may be lost (the peer is down, the link
    /// is partitioned, the peer's queue is full), never duplicated; messages from one node to
    /// another over one protocol arrive in the order sent while the connection lasts.
    Send {
        /// The destination node. Its incarnation id must match, or the message is dropped;
        /// [`NodeId::UNKNOWN`] matches whichever incarnation runs at the address (to contact a
        /// seed node known only by address — its reply's `from` carries its id).
        to: NodeAddr,
        /// The message.
        msg: M,
    },
}

/// Events from a network.
#[derive(Debug, Clone)]
pub enum NetIndication<M> {
    /// A message arrived.
    Deliver(Delivery<M>),
    /// A connection to a peer changed state.
    Status(PeerStatus),
}

/// A received message.
///
/// Destructure it with `let Delivery { from, msg, .. } = d;`. It may carry a share of the
/// transport's inbound budget (see [`Credit`]), returned when the event is dropped.
#[derive(Debug, Clone)]
pub struct Delivery<M> {
    /// The sender.
    pub from: NodeAddr,
    /// The message.
    pub msg: M,
    credit: Credit,
}

impl<M> Delivery<M> {
    /// A delivery with no budget attached (tests, same-process delivery).
    pub fn new(from: NodeAddr, msg: M) -> Delivery<M> {
        Delivery { from, msg, credit: Credit::none() }
    }

    /// A delivery holding `credit` until it (and every clone of it) is dropped.
    pub fn with_credit(from: NodeAddr, msg: M, credit: Credit) -> Delivery<M> {
        Delivery { from, msg, credit }
    }

    /// The inbound budget this delivery holds: its size on the wire for a message that came
    /// over a connection, 0 for one handed over in the same process.
    pub fn credit(&self) -> usize {
        self.credit.amount()
    }
}

/// A share of an inbound budget, held by a [`Delivery`] until the event is dropped.
///
/// A transport counts, per connection, the bytes of messages it has delivered that are not yet
/// handled (their events are still queued somewhere). Each delivery holds a `Credit` of its size;
/// cloning it (fan-out to several receivers) counts the bytes again, dropping it gives them back.
/// When the count exceeds the transport's limit the sender is flooding faster than its messages
/// are handled, and the transport closes that connection instead of letting memory grow.
#[derive(Default)]
pub struct Credit(Option<(Arc<AtomicUsize>, usize)>);

impl Credit {
    /// No accounting.
    pub const fn none() -> Credit {
        Credit(None)
    }

    /// The amount held (0 for [`Credit::none`]).
    pub fn amount(&self) -> usize {
        self.0.as_ref().map_or(0, |(_, n)| *n)
    }

    /// Adds `amount` to `counter` now and subtracts it again when dropped.
    pub fn take(counter: &Arc<AtomicUsize>, amount: usize) -> Credit {
        counter.fetch_add(amount, Ordering::Relaxed);
        Credit(Some((Arc::clone(counter), amount)))
    }
}

impl Clone for Credit {
    fn clone(&self) -> Credit {
        match &self.0 {
            Some((c, n)) => Credit::take(c, *n),
            None => Credit(None),
        }
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        if let Some((c, n)) = &self.0 {
            c.fetch_sub(*n, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for Credit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some((_, n)) => write!(f, "Credit({n})"),
            None => f.write_str("Credit(none)"),
        }
    }
}

/// A change in the connection to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer. Its id is [`NodeId::UNKNOWN`] when the connection failed before the peer said
    /// who it is (its address is then the connection's remote socket address).
    pub peer: NodeAddr,
    /// What happened.
    pub status: LinkStatus,
}

/// Connection states reported on the [`Network`] port.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkStatus {
    /// A connection to the peer is established (after the handshake).
    Connected,
    /// An established connection was closed; messages queued for the peer are dropped.
    Lost(CloseReason),
    /// No connection could be made (refused, timed out, wrong incarnation, rejected handshake);
    /// messages queued for the peer are dropped.
    Unreachable(CloseReason),
}

/// Why a connection closed or could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed it.
    PeerClosed,
    /// An I/O error (its description).
    Io(String),
    /// The peer sent bytes that are not a valid frame (truncated, oversized, undecodable).
    BadFrame(String),
    /// The handshake failed: wrong protocol version, wrong cluster, malformed, or a peer that
    /// is not the incarnation that was addressed.
    Handshake(String),
    /// The peer said nothing within the configured time.
    Idle,
    /// The peer sent more than its inbound budget allows before its messages were handled.
    Overloaded,
    /// The local transport is shutting down.
    Shutdown,
    /// Any other reason, described.
    Other(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("closed by the peer"),
            CloseReason::Io(e) => write!(f, "i/o error: {e}"),
            CloseReason::BadFrame(e) => write!(f, "bad frame: {e}"),
            CloseReason::Handshake(e) => write!(f, "handshake failed: {e}"),
            CloseReason::Idle => f.write_str("idle timeout"),
            CloseReason::Overloaded => f.write_str("inbound budget exceeded"),
            CloseReason::Shutdown => f.write_str("shutting down"),
            CloseReason::Other(e) => f.write_str(e),
        }
    }
}

impl<M: Message> Required<Network<M>> {
    /// Sends `msg` to `to` (a [`NetRequest::Send`]).
    #[inline]
    pub fn send(&mut self, to: NodeAddr, msg: M) {
        self.trigger(NetRequest::Send { to, msg });
    }
}

/// What a node's wiring code is given: its address, a parent component for its components, and
/// the ports of its runtime — a network per protocol and a timer.
///
/// `selfman-net` implements it for a node over TCP, `selfman-sim` for a simulated node; code
/// written against `Host` runs in both unchanged.
pub trait Host {
    /// The system the node lives in.
    fn system(&self) -> &System;

    /// The node's parent component: the node's components are created under it, so that
    /// crashing (killing) the node destroys all of them.
    fn node(&self) -> &ComponentRef;

    /// This node's address.
    fn local(&self) -> NodeAddr;

    /// The `Network<M>` port for protocol `protocol` on this node, created on first use.
    ///
    /// # Errors
    ///
    /// [`Error::Network`](crate::Error::Network) if the name is already used with another
    /// message type, or its [`ProtocolId`] clashes with another name's.
    fn network<M: Message>(&self, protocol: &str) -> Result<ProvidedRef<Network<M>>>;

    /// The timer port.
    ///
    /// # Errors
    ///
    /// As [`System::timer`].
    fn timer(&self) -> Result<ProvidedRef<Timer>> {
        self.system().timer()
    }

    /// Creates a component as a child of [`Host::node`].
    ///
    /// # Errors
    ///
    /// As [`System::create_child`].
    fn create<D, F>(&self, factory: F) -> Result<Component<D>>
    where
        D: ComponentDefinition,
        F: Fn() -> D + Send + Sync + 'static,
        Self: Sized,
    {
        self.system().create_child(self.node(), factory)
    }
}

/// The parent component of a node's components (see [`Host::node`]). It has no ports.
#[derive(Debug, Default)]
pub struct NodeComponent;

impl ComponentDefinition for NodeComponent {
    fn setup(&mut self, _setup: &mut crate::Setup<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addr_round_trips_through_text() {
        let a = NodeAddr::new("127.0.0.1:4000".parse().unwrap(), NodeId(0xa1));
        assert_eq!(a.to_string(), "00000000000000a1@127.0.0.1:4000");
        assert_eq!(a.to_string().parse::<NodeAddr>().unwrap(), a);
        assert!("127.0.0.1:4000".parse::<NodeAddr>().is_err());
        assert!("zz@127.0.0.1:4000".parse::<NodeAddr>().is_err());
        assert!("a1@nowhere".parse::<NodeAddr>().is_err());
    }

    #[test]
    fn protocol_ids_are_fnv1a() {
        assert_eq!(ProtocolId::of(""), ProtocolId(0x811c_9dc5));
        assert_eq!(ProtocolId::of("a"), ProtocolId(0xe40c_292c));
        assert_ne!(ProtocolId::of("fd"), ProtocolId::of("df"));
    }

    #[test]
    fn credit_is_returned_by_every_clone() {
        let c = Arc::new(AtomicUsize::new(0));
        let d = Delivery::with_credit(NodeAddr::simulated(1, NodeId(1)), 5u8, Credit::take(&c, 10));
        let e = d.clone();
        assert_eq!(c.load(Ordering::Relaxed), 20);
        let Delivery { msg, .. } = { d }; // the temporary's credit drops here
        assert_eq!(msg, 5);
        assert_eq!(c.load(Ordering::Relaxed), 10);
        drop(e);
        assert_eq!(c.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn simulated_addresses_are_distinct() {
        let a = NodeAddr::simulated(1, NodeId(1));
        let b = NodeAddr::simulated(256, NodeId(1));
        assert_ne!(a.addr, b.addr);
    }
}
