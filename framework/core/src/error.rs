//! The error type of `selfman-core`.
//!
//! Every misuse of the public API (triggering into a destroyed component, asking for a port a
//! component does not have, starting a component twice, …) is answered with an [`Error`] value.
//! The runtime never panics on misuse.

use std::time::Duration;

use crate::component::{ComponentId, LifecycleState};

/// Everything that can go wrong when using the component API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The component has been destroyed (killed); it accepts no more events or channels.
    #[error("component {0} is destroyed")]
    Destroyed(ComponentId),
    /// The component does not declare a port of this type and direction.
    #[error("component {component} has no {direction} port of type `{port}`")]
    NoSuchPort {
        /// The component that was asked.
        component: ComponentId,
        /// `provided` or `required`.
        direction: &'static str,
        /// The port type's name.
        port: &'static str,
    },
    /// The component declares several ports of this type and direction; pick one by name.
    #[error(
        "component {component} has {count} {direction} ports of type `{port}`; \
         select one by name"
    )]
    AmbiguousPort {
        /// The component that was asked.
        component: ComponentId,
        /// `provided` or `required`.
        direction: &'static str,
        /// The port type's name.
        port: &'static str,
        /// How many such ports it has.
        count: usize,
    },
    /// A lifecycle request does not apply in the component's current state.
    #[error("component {component} is {state:?}; cannot {action}")]
    InvalidLifecycle {
        /// The component.
        component: ComponentId,
        /// Its state when the request was made.
        state: LifecycleState,
        /// What was asked (`start`, `stop`, …).
        action: &'static str,
    },
    /// Waiting for a lifecycle change did not finish in time.
    #[error(
        "component {component} did not become {wanted:?} within {timeout:?} (it is {state:?})"
    )]
    Timeout {
        /// The component.
        component: ComponentId,
        /// The state that was awaited.
        wanted: LifecycleState,
        /// The state it had when the wait gave up.
        state: LifecycleState,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// The channel was already disconnected.
    #[error("channel {0} is already disconnected")]
    Disconnected(u64),
    /// The port handle is not bound to a component yet (it is bound when the component that
    /// owns it is created).
    #[error("port is not bound to a component")]
    Unbound,
    /// The component's definition is not of the requested type (it may have been replaced by
    /// another implementation).
    #[error("component {component} is not a `{wanted}`")]
    WrongDefinition {
        /// The component.
        component: ComponentId,
        /// The type that was asked for.
        wanted: &'static str,
    },
    /// A component factory panicked; no component was created.
    #[error("component factory panicked: {0}")]
    FactoryPanicked(String),
    /// A replacement definition does not declare every port of the component it replaces (it
    /// must adopt each of them, by port type, direction and name).
    #[error("the replacement for component {component} lacks its ports: {missing}")]
    IncompatiblePorts {
        /// The component.
        component: ComponentId,
        /// The ports the replacement does not declare.
        missing: String,
    },
    /// A hot swap did not happen within the time waited for it (the component's current handler
    /// may still be running); it may still happen later.
    #[error("the swap of component {component} did not happen within {timeout:?}")]
    SwapPending {
        /// The component.
        component: ComponentId,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// State could not be migrated between versions of a component.
    #[error("state migration for component {component} failed: {reason}")]
    Migration {
        /// The component.
        component: ComponentId,
        /// Why (the serde error).
        reason: String,
    },
    /// The system is shutting down or shut down.
    #[error("the system is shut down")]
    ShutDown,
    /// A network could not be set up or a protocol could not be registered (bind failure,
    /// protocol name used with two message types, protocol id clash, …).
    #[error("network: {0}")]
    Network(String),
    /// A component cannot be its own ancestor, and the root cannot be used as a component.
    #[error("invalid component hierarchy: {0}")]
    Hierarchy(&'static str),
}

/// Result alias for the component API.
pub type Result<T, E = Error> = std::result::Result<T, E>;
