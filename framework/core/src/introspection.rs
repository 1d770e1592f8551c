//! Introspection: a snapshot of the running component tree, as plain serialisable data.
//!
//! [`System::snapshot`](crate::System::snapshot) walks the tree from the root and records, for
//! every component, its identity, type, lifecycle state, ports (type, direction, channels, queue
//! depth), counters (events handled and dropped, faults, hot swaps) and last fault; and every
//! channel as an edge between a provider and a requirer. The snapshot is taken without stopping
//! anything, so counters of busy components may be a little behind each other. It serialises to
//! JSON (or any serde format) for dashboards and operators.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::component::cell::ComponentCell;
use crate::component::handle::ComponentRef;
use crate::component::{ComponentId, FaultReport, LifecycleState, PortInfo};
use crate::port::Direction;

/// One component in a [`SystemSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComponentSnapshot {
    /// Its id.
    pub id: ComponentId,
    /// Its parent (`None` for the root).
    pub parent: Option<ComponentId>,
    /// Its children's ids.
    pub children: Vec<ComponentId>,
    /// The type name of its current definition.
    pub type_name: &'static str,
    /// Its lifecycle state.
    pub state: LifecycleState,
    /// Its ports, in declaration order.
    pub ports: Vec<PortInfo>,
    /// Events waiting in its ports.
    pub queued: usize,
    /// Events handled so far.
    pub handled: u64,
    /// Events dropped because they arrived after it was destroyed.
    pub dropped: u64,
    /// Handler failures (recoverable or worse) so far.
    pub faults: u64,
    /// Hot swaps of its definition so far.
    pub swaps: u64,
    /// Restarts by its supervisor so far.
    pub restarts: u64,
    /// Its most recent failure.
    pub last_fault: Option<FaultReport>,
}

/// One channel in a [`SystemSnapshot`]: an edge from a provider to a requirer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChannelSnapshot {
    /// The channel's id.
    pub id: u64,
    /// The port type's name.
    pub port: &'static str,
    /// The component providing the port.
    pub provider: ComponentId,
    /// The component requiring the port.
    pub requirer: ComponentId,
}

/// The component tree and its channels at one moment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SystemSnapshot {
    /// Every component, parents before children (the root first).
    pub components: Vec<ComponentSnapshot>,
    /// Every connected channel, by id.
    pub channels: Vec<ChannelSnapshot>,
}

impl SystemSnapshot {
    /// The component with this id.
    pub fn component(&self, id: ComponentId) -> Option<&ComponentSnapshot> {
        self.components.iter().find(|c| c.id == id)
    }
}

pub(crate) fn snapshot(root: &Arc<ComponentCell>) -> SystemSnapshot {
    let mut components = Vec::new();
    let mut channels = BTreeMap::new();
    let mut todo = vec![Arc::clone(root)];
    while let Some(cell) = todo.pop() {
        let r = ComponentRef { cell: Arc::clone(&cell) };
        let kids: Vec<Arc<ComponentCell>> = cell.children.lock().values().cloned().collect();
        let cores: Vec<_> =
            cell.ports.lock().iter().map(|s| (s.direction, Arc::clone(&s.core))).collect();
        for (dir, core) in &cores {
            if *dir == Direction::Provided {
                for (id, provider, requirer) in core.channel_edges() {
                    let port = core.port_name();
                    channels.insert(id, ChannelSnapshot { id, port, provider, requirer });
                }
            }
        }
        let ports = r.ports();
        components.push(ComponentSnapshot {
            id: cell.id(),
            parent: cell.parent().map(|p| p.id()),
            children: kids.iter().map(|k| k.id()).collect(),
            type_name: r.type_name(),
            state: cell.state(),
            queued: ports.iter().map(|p| p.queued).sum(),
            ports,
            handled: cell.handled.load(Ordering::Relaxed),
            dropped: cell.stats.dropped.load(Ordering::Relaxed),
            faults: cell.stats.faults.load(Ordering::Relaxed),
            swaps: cell.stats.swaps.load(Ordering::Relaxed),
            restarts: cell.stats.restarts.load(Ordering::Relaxed),
            last_fault: r.last_fault(),
        });
        todo.extend(kids.into_iter().rev());
    }
    SystemSnapshot { components, channels: channels.into_values().collect() }
}
