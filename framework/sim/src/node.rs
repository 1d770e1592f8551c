//! Simulated nodes: a [`Host`] per node, and crashing and restarting them.

use std::net::SocketAddr;
use std::sync::Arc;

use selfman_core::{
    ComponentRef, Error, Host, LifecycleState, Message, Network, NodeAddr, NodeComponent,
    ProtocolId, ProvidedRef, Result, System,
};

use crate::net::{LinkModel, SimNetPort, SimNetStats, World};
use crate::Simulation;

/// Builds a node's components on a [`SimHost`]; called when the node starts and again on every
/// restart (with a new incarnation).
pub type NodeBuilder = Arc<dyn Fn(&SimHost) -> Result<()> + Send + Sync>;

/// The address of the `index`-th node added to a simulation (counting from 0): the same in
/// every run, and kept by every incarnation of that node. Wiring code uses it to address
/// other nodes by position (with [`NodeId::UNKNOWN`](selfman_core::NodeId::UNKNOWN) until their
/// ids are learnt).
pub fn address_of(index: usize) -> SocketAddr {
    NodeAddr::simulated(index as u32 + 1, selfman_core::NodeId::UNKNOWN).addr
}

/// A simulated node as its wiring code sees it: the same [`Host`] interface a node has over
/// TCP, served by the simulated network and the virtual clock.
#[derive(Clone)]
pub struct SimHost {
    system: System,
    node: ComponentRef,
    local: NodeAddr,
    slot: u32,
    world: Arc<World>,
}

impl SimHost {
    /// The node's position: it was the `index()`-th node added (its address is
    /// [`address_of`]`(index)`).
    pub fn index(&self) -> usize {
        self.slot as usize
    }
}

impl Host for SimHost {
    fn system(&self) -> &System {
        &self.system
    }

    fn node(&self) -> &ComponentRef {
        &self.node
    }

    fn local(&self) -> NodeAddr {
        self.local
    }

    fn network<M: Message>(&self, protocol: &str) -> Result<ProvidedRef<Network<M>>> {
        let proto = ProtocolId::of(protocol);
        self.world.port::<M>(self.slot, self.local.id, protocol, || {
            let (world, slot, local) = (Arc::clone(&self.world), self.slot, self.local);
            let c = self.system.create_child(&self.node, move || {
                SimNetPort::<M>::new(Arc::clone(&world), slot, local, proto)
            })?;
            if self.node.state() == LifecycleState::Active {
                self.system.start(&c)?;
            }
            c.provided::<Network<M>>()
        })
    }
}

impl std::fmt::Debug for SimHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHost").field("local", &self.local).finish_non_exhaustive()
    }
}

/// Nodes and the network.
impl Simulation {
    /// Adds a node at a fresh address: creates its parent component, runs `build` on its
    /// [`SimHost`] and starts it. `build` runs again on every [`Simulation::restart`].
    ///
    /// # Errors
    ///
    /// Whatever `build` returns (the half-built node is then crashed), or a system error.
    pub fn add_node<F>(&self, build: F) -> Result<NodeAddr>
    where
        F: Fn(&SimHost) -> Result<()> + Send + Sync + 'static,
    {
        self.add_node_with(Arc::new(build))
    }

    /// As [`Simulation::add_node`], with a shared builder.
    ///
    /// # Errors
    ///
    /// As [`Simulation::add_node`].
    pub fn add_node_with(&self, build: NodeBuilder) -> Result<NodeAddr> {
        let n = self.builders.lock().len();
        let addr = address_of(n);
        let slot = self.world.add_slot().ok_or_else(|| {
            Error::Network(format!("no more node addresses ({n} nodes are the most)"))
        })?;
        debug_assert_eq!(slot as usize, n);
        self.builders.lock().push(Arc::clone(&build));
        self.spawn(slot, addr, &build)
    }

    fn spawn(&self, slot: u32, addr: SocketAddr, build: &NodeBuilder) -> Result<NodeAddr> {
        let id = self.world.fresh_id();
        let local = NodeAddr::new(addr, id);
        let system = self.system().clone();
        let node = system.create(NodeComponent::default)?.untyped().clone();
        self.world.set_incarnation(slot, id, node.clone());
        let host =
            SimHost { system, node: node.clone(), local, slot, world: Arc::clone(&self.world) };
        if let Err(e) = build(&host).and_then(|()| self.system().start(&node)) {
            let _ = self.crash(local);
            return Err(e);
        }
        Ok(local)
    }

    /// Crashes a node: its incarnation ends at once (nothing it sends leaves, nothing more is
    /// delivered to it) and its whole component subtree is killed.
    ///
    /// # Errors
    ///
    /// [`Error::Network`] if `node` is not a running incarnation.
    pub fn crash(&self, node: NodeAddr) -> Result<()> {
        let slot = self.running_slot(node)?;
        let Some((_, host)) = self.world.take_incarnation(slot) else {
            return Err(not_running(node));
        };
        // Kill every component of the subtree directly, so none handles another event: kill
        // controls are handled before events in a component's next turn.
        let mut stack = vec![host];
        let mut all = Vec::new();
        while let Some(c) = stack.pop() {
            stack.extend(c.children());
            all.push(c);
        }
        for c in all.iter().rev() {
            let _ = self.system().kill(c);
        }
        Ok(())
    }

    /// Starts a new incarnation of a crashed node (same address, fresh id), running its builder
    /// again. A running node is crashed first.
    ///
    /// # Errors
    ///
    /// [`Error::Network`] if the address is unknown; else as [`Simulation::add_node`].
    pub fn restart(&self, node: NodeAddr) -> Result<NodeAddr> {
        let slot = self
            .world
            .slot_of(&node.addr)
            .ok_or_else(|| Error::Network(format!("no simulated node at {}", node.addr)))?;
        if let Some(cur) = self.current(slot) {
            self.crash(cur)?;
        }
        let build = Arc::clone(&self.builders.lock()[slot as usize]);
        self.spawn(slot, node.addr, &build)
    }

    /// The running incarnations, in the order the nodes were added.
    pub fn alive_nodes(&self) -> Vec<NodeAddr> {
        let s = self.world.state.lock();
        s.slots
            .iter()
            .enumerate()
            .filter_map(|(n, sl)| sl.current.as_ref().map(|i| NodeAddr::new(address_of(n), i.id)))
            .collect()
    }

    /// Every node address ever added (running or not), with its current incarnation if any.
    pub fn node_slots(&self) -> Vec<(SocketAddr, Option<NodeAddr>)> {
        let s = self.world.state.lock();
        s.slots
            .iter()
            .enumerate()
            .map(|(n, sl)| {
                let addr = address_of(n);
                (addr, sl.current.as_ref().map(|i| NodeAddr::new(addr, i.id)))
            })
            .collect()
    }

    /// Whether `node` is a running incarnation.
    pub fn is_alive(&self, node: NodeAddr) -> bool {
        self.running_slot(node).is_ok()
    }

    /// The parent component of a running node.
    pub fn node_component(&self, node: NodeAddr) -> Option<ComponentRef> {
        let slot = self.running_slot(node).ok()?;
        let s = self.world.state.lock();
        s.slots[slot as usize].current.as_ref().map(|i| i.host.clone())
    }

    /// Splits the network: nodes (by address, so also their later incarnations) in different
    /// groups cannot exchange messages, and messages already travelling between them are
    /// dropped. Nodes not listed form one more group together. Replaces any earlier partition.
    pub fn partition(&self, groups: &[Vec<NodeAddr>]) {
        let mut assign = Vec::new();
        for (g, members) in groups.iter().enumerate() {
            for n in members {
                if let Some(slot) = self.world.slot_of(&n.addr) {
                    assign.push((slot, g as u32 + 1));
                }
            }
        }
        self.world.set_groups(&assign);
    }

    /// Removes every partition.
    pub fn heal(&self) {
        self.world.set_groups(&[]);
    }

    /// Sets the model of the link from `from` to `to` (one direction; by address).
    ///
    /// # Errors
    ///
    /// [`Error::Network`] if either address is unknown.
    pub fn set_link(&self, from: NodeAddr, to: NodeAddr, model: LinkModel) -> Result<()> {
        let f = self.world.slot_of(&from.addr).ok_or_else(|| unknown(from))?;
        let t = self.world.slot_of(&to.addr).ok_or_else(|| unknown(to))?;
        self.world.set_link(f, t, model);
        Ok(())
    }

    /// Blocks the link from `from` to `to` (one direction; by address, across incarnations):
    /// what `from` sends to `to` is dropped, at sending and at delivery, until
    /// [`unblock_link`](Self::unblock_link) or [`unblock_all`](Self::unblock_all). Unlike a
    /// partition this need not be transitive: with `p → r` blocked, `p` may still reach `q` and
    /// `q` reach `r`. Blocking both directions of some pairs is how a scenario builds
    /// non-transitive connectivity. Dropped messages count as [`SimNetStats::blocked`]; no
    /// unreachable hint is sent (the sender learns nothing, as on a black-holed route).
    ///
    /// # Errors
    ///
    /// [`Error::Network`] if either address is unknown.
    pub fn block_link(&self, from: NodeAddr, to: NodeAddr) -> Result<()> {
        let f = self.world.slot_of(&from.addr).ok_or_else(|| unknown(from))?;
        let t = self.world.slot_of(&to.addr).ok_or_else(|| unknown(to))?;
        self.world.set_blocked(f, t, true);
        Ok(())
    }

    /// Unblocks the link from `from` to `to` (see [`block_link`](Self::block_link)).
    ///
    /// # Errors
    ///
    /// [`Error::Network`] if either address is unknown.
    pub fn unblock_link(&self, from: NodeAddr, to: NodeAddr) -> Result<()> {
        let f = self.world.slot_of(&from.addr).ok_or_else(|| unknown(from))?;
        let t = self.world.slot_of(&to.addr).ok_or_else(|| unknown(to))?;
        self.world.set_blocked(f, t, false);
        Ok(())
    }

    /// Unblocks every link blocked with [`block_link`](Self::block_link).
    pub fn unblock_all(&self) {
        self.world.clear_blocked();
    }

    /// Sets the model of every link without an override.
    pub fn set_default_link(&self, model: LinkModel) {
        self.world.set_default_link(model);
    }

    /// The network's counters.
    pub fn net_stats(&self) -> SimNetStats {
        self.world.stats()
    }

    fn current(&self, slot: u32) -> Option<NodeAddr> {
        let s = self.world.state.lock();
        let sl = &s.slots[slot as usize];
        sl.current.as_ref().map(|i| NodeAddr::new(address_of(slot as usize), i.id))
    }

    fn running_slot(&self, node: NodeAddr) -> Result<u32> {
        let slot = self.world.slot_of(&node.addr).ok_or_else(|| unknown(node))?;
        match self.current(slot) {
            Some(cur) if cur.id == node.id => Ok(slot),
            _ => Err(not_running(node)),
        }
    }
}

fn unknown(n: NodeAddr) -> Error {
    Error::Network(format!("no simulated node at {}", n.addr))
}

fn not_running(n: NodeAddr) -> Error {
    Error::Network(format!("node {n} is not running"))
}
