//! The wiring of one store node: failure detector, relaxed ring, symmetric replication and
//! the transaction layer on one [`Host`] (a `TcpNetwork`, or a simulated host).
//!
//! ```text
//!  HeartbeatFd ─FailureDetector─▶ RelaxedRing<StorePayload> ─Ring─▶ SymmetricReplication
//!       │                                  │ Ring                        │ Replication
//!       └──────────FailureDetector─────────┴──────────────────────────▶ TxLayer ─Transactions─▶ user
//! ```
//!
//! One ring carries both layers' routed messages in one payload type, [`StorePayload`]; each
//! layer ignores the other's deliveries. The ring position follows the replication layer's
//! placement rule ([`Placement::join_position`]), so the replicas of a key sit on distinct
//! hosts once every sector has a node.

use selfman_core::{Component, ComponentRef, Host, ProvidedRef, Result, Selector};
use selfman_failure_detector::{FdConfig, HeartbeatFd};
use selfman_ports::{HostId, Replication, Ring, RingId, RingIndication, Transactions};
use selfman_relaxed_ring::{RelaxedRing, RingConfig};
use selfman_replication::{Placement, ReplMessage, ReplicationConfig, SymmetricReplication};
use selfman_ring_cluster::{build_node, NodeConfig};
use selfman_transactions::{TxConfig, TxLayer, TxMessage};
use serde::{Deserialize, Serialize};

use crate::backend::{is_fast_read_answer, Backend, BackendConfig};
use crate::walk::Walker;

/// What the ring routes for a store node: a replication or a transaction message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StorePayload {
    /// For the replication layer.
    Repl(ReplMessage),
    /// For the transaction layer.
    Tx(TxMessage),
    /// For the store's walks over the ring ([`crate::walk`]).
    Walk(crate::walk::WalkMessage),
}

impl selfman_replication::RingPayload for StorePayload {
    fn wrap(msg: ReplMessage) -> Self {
        StorePayload::Repl(msg)
    }

    fn unwrap(self) -> Option<ReplMessage> {
        match self {
            StorePayload::Repl(m) => Some(m),
            StorePayload::Tx(_) | StorePayload::Walk(_) => None,
        }
    }
}

impl selfman_transactions::TxPayload for StorePayload {
    fn wrap(msg: TxMessage) -> Self {
        StorePayload::Tx(msg)
    }

    fn unwrap(self) -> Option<TxMessage> {
        match self {
            StorePayload::Tx(m) => Some(m),
            StorePayload::Repl(_) | StorePayload::Walk(_) => None,
        }
    }
}

/// The settings of one store node's layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreNodeConfig {
    /// The host this node runs on: placement keeps a key's replicas on distinct hosts.
    pub host: HostId,
    /// Which position of the host's sector to take: 0 is the sector's anchor; a node refused
    /// because its position is taken uses 1, 2, …
    pub attempt: u32,
    /// Mixed into inner sector positions (attempt ≥ 1), so that nodes of one host differ.
    pub salt: u64,
    /// Replicas per key (`f`); every node of a ring must use the same.
    pub replicas: u32,
    /// The failure detector's timing.
    pub fd: FdConfig,
}

impl Default for StoreNodeConfig {
    /// Host 0, the anchor, `f = 4`, the detector's defaults.
    fn default() -> Self {
        StoreNodeConfig {
            host: HostId(0),
            attempt: 0,
            salt: 0,
            replicas: 4,
            fd: FdConfig::default(),
        }
    }
}

impl StoreNodeConfig {
    /// The ring position this node takes.
    pub fn position(&self) -> RingId {
        Placement::new(self.replicas).join_position(self.host, self.attempt, self.salt)
    }

    /// The replication layer's settings.
    pub fn replication(&self) -> ReplicationConfig {
        ReplicationConfig { f: self.replicas, host: self.host, ..ReplicationConfig::default() }
    }

    /// The transaction layer's settings.
    pub fn transactions(&self) -> TxConfig {
        TxConfig { f: self.replicas, ..TxConfig::default() }
    }

    /// The backend's settings for this node (its replica count).
    pub fn backend(&self) -> BackendConfig {
        BackendConfig { replicas: self.replicas, ..BackendConfig::default() }
    }
}

/// Every component of one store node.
#[derive(Debug)]
pub struct StoreNode {
    /// The failure detector.
    pub fd: Component<HeartbeatFd>,
    /// The relaxed ring.
    pub ring: Component<RelaxedRing<StorePayload>>,
    /// Symmetric replication.
    pub repl: Component<SymmetricReplication<StorePayload>>,
    /// The transaction layer.
    pub tx: Component<TxLayer<StorePayload>>,
}

impl StoreNode {
    /// Every component, in the order to start them (providers before their users).
    pub fn components(&self) -> Vec<ComponentRef> {
        vec![
            self.fd.untyped().clone(),
            self.ring.untyped().clone(),
            self.repl.untyped().clone(),
            self.tx.untyped().clone(),
        ]
    }

    /// The port clients run transactions through.
    ///
    /// # Errors
    ///
    /// [`selfman_core::Error::Destroyed`] once the node is gone.
    pub fn transactions(&self) -> Result<ProvidedRef<Transactions>> {
        self.tx.provided()
    }

    /// Connects a [`Backend`] to this node: transactions, the timer, and replication for its
    /// fast reads (only the answers tagged [`FAST_READ_TAG_MARK`](crate::backend::FAST_READ_TAG_MARK)
    /// reach it).
    ///
    /// # Errors
    ///
    /// As [`selfman_core::System::connect`].
    pub fn connect_backend<H: Host>(&self, host: &H, backend: &Component<Backend>) -> Result<()> {
        let sys = host.system();
        sys.connect(&self.tx.provided::<Transactions>()?, &backend.required()?)?;
        sys.connect(&host.timer()?, &backend.required()?)?;
        let only_fast = Selector::<Replication>::indications(is_fast_read_answer);
        sys.connect_with(&self.repl.provided::<Replication>()?, &backend.required()?, only_fast)?;
        Ok(())
    }

    /// Connects a [`Walker`] to this node: the ring (its messages), replication (only the
    /// listings reach it) and the timer.
    ///
    /// # Errors
    ///
    /// As [`selfman_core::System::connect`].
    pub fn connect_walker<H: Host>(&self, host: &H, walker: &Component<Walker>) -> Result<()> {
        let sys = host.system();
        // Only its own deliveries and the join reach it: the ring's other traffic (every
        // transaction and replication message) is not copied to it.
        let mine = Selector::<Ring<StorePayload>>::indications(|i| {
            matches!(
                i,
                RingIndication::Joined { .. }
                    | RingIndication::Deliver { payload: StorePayload::Walk(_), .. }
            )
        });
        sys.connect_with(&self.ring.provided::<Ring<StorePayload>>()?, &walker.required()?, mine)?;
        let listings = Selector::<Replication>::indications(|i| {
            matches!(i, selfman_ports::ReplicationIndication::Listed { .. })
        });
        sys.connect_with(&self.repl.provided::<Replication>()?, &walker.required()?, listings)?;
        sys.connect(&host.timer()?, &walker.required()?)?;
        Ok(())
    }
}

/// Wires a store node on `host`: detector and ring (as `selfman-ring-cluster` does, at the
/// position [`StoreNodeConfig::position`]), replication on the ring, and transactions on
/// ring and replication. Created and connected, not started: a simulated host starts the
/// node; on TCP start [`StoreNode::components`] in order. The caller then bootstraps or joins
/// through the ring's port.
///
/// # Errors
///
/// Whatever creating and connecting the components on `host` returns.
// ANCHOR: build_store_node
pub fn build_store_node<H: Host>(host: &H, config: &StoreNodeConfig) -> Result<StoreNode> {
    let ring_config = RingConfig { id: Some(config.position()), ..RingConfig::default() };
    let ring_node =
        build_node::<StorePayload, H>(host, &NodeConfig { fd: config.fd, ring: ring_config })?;
    let (ring_port, fd_port) = (ring_node.ring.provided()?, ring_node.fd.provided()?);
    let repl = selfman_replication::build(host, config.replication(), &ring_port, &fd_port)?;
    // As `selfman_transactions::build`, but the replication answers of the backend's fast
    // reads (which reach every user of the port) are kept away from the transaction layer.
    let (node, tx_config) = (host.local(), config.transactions());
    let tx = host.create(move || TxLayer::<StorePayload>::new(node, tx_config))?;
    let sys = host.system();
    sys.connect(&host.network::<TxMessage>(selfman_transactions::PROTOCOL)?, &tx.required()?)?;
    sys.connect(&host.timer()?, &tx.required()?)?;
    // The ring's deliveries of replication and walk messages are not copied to it.
    let tx_ring = Selector::<Ring<StorePayload>>::indications(|i| {
        !matches!(
            i,
            RingIndication::Deliver { payload: StorePayload::Repl(_) | StorePayload::Walk(_), .. }
        )
    });
    sys.connect_with(&ring_port, &tx.required()?, tx_ring)?;
    let not_fast = Selector::<Replication>::indications(|i| {
        !is_fast_read_answer(i) && !matches!(i, selfman_ports::ReplicationIndication::Listed { .. })
    });
    sys.connect_with(&repl.provided()?, &tx.required()?, not_fast)?;
    sys.connect(&fd_port, &tx.required()?)?;
    Ok(StoreNode { fd: ring_node.fd, ring: ring_node.ring, repl, tx })
}
// ANCHOR_END: build_store_node
