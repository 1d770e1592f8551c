//! Components: identity, lifecycle, definitions, handles and context.
//!
//! Lifecycle: `Passive → Active → Passive (stop) → Destroyed (kill)`. Start, stop and kill
//! cascade to the children: a component becomes `Active` (and runs `on_start`) only after all its
//! children have started, stops after its children stopped, and is destroyed after its children
//! were. While not `Active`, events stay queued (they are not dropped); once `Destroyed`, the
//! component's channels are disconnected and events still queued are dropped and counted.

pub(crate) mod cell;
pub(crate) mod context;
pub(crate) mod definition;
pub(crate) mod failure;
pub(crate) mod handle;
pub(crate) mod instance;
pub(crate) mod port_decl;
pub(crate) mod supervisor;

use std::fmt;

/// A component's system-unique id.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ComponentId(pub u64);

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Where a component is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum LifecycleState {
    /// Created or stopped: events queue up but are not handled.
    Passive = 0,
    /// Start requested; waiting for the children to start.
    Starting = 1,
    /// Handling events.
    Active = 2,
    /// Stop requested; waiting for the children to stop.
    Stopping = 3,
    /// A handler failed; events queue up until the supervisor decides.
    Faulty = 4,
    /// Kill requested; waiting for the children to be destroyed.
    Destroying = 5,
    /// Gone: channels disconnected, nothing more is handled.
    Destroyed = 6,
}

impl LifecycleState {
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => LifecycleState::Passive,
            1 => LifecycleState::Starting,
            2 => LifecycleState::Active,
            3 => LifecycleState::Stopping,
            4 => LifecycleState::Faulty,
            5 => LifecycleState::Destroying,
            _ => LifecycleState::Destroyed,
        }
    }
}

/// What a supervisor learns when a child fails.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FaultReport {
    /// The failed component.
    pub component: ComponentId,
    /// Its definition's type name.
    pub type_name: &'static str,
    /// How serious the failure is (panics are recoverable).
    pub severity: crate::Severity,
    /// The error or panic message.
    pub error: String,
    /// Where it failed: the port (type and direction) or the lifecycle hook.
    pub place: String,
    /// The type of the event being handled.
    pub event: &'static str,
}

/// One port of a component, as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortInfo {
    /// The name given with [`PortOptions::named`](crate::PortOptions::named), if any.
    pub name: Option<&'static str>,
    /// The port type's name.
    pub port: &'static str,
    /// Provided or required.
    pub direction: crate::Direction,
    /// Ids of the channels connected to it.
    pub channels: Vec<u64>,
    /// Events waiting in it.
    pub queued: usize,
}
