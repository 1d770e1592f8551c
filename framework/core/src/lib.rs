//! # selfman-core
//!
//! The Selfman component model: typed [`Port`]s, [`Channel`]s, components with a lifecycle, and
//! the runtime plug-in traits ([`Scheduler`], [`TimerDriver`], [`RngSource`]) through which a
//! multi-core runtime or a deterministic simulator runs the very same components.
//!
//! Guarantees (each is tested):
//! * a trigger in the wrong direction, or of an event type the port does not carry, does not
//!   compile; nor does a handler for an event the port does not deliver;
//! * FIFO per channel; handlers of one component run one at a time (state needs no locks);
//! * channels connect and disconnect at any time, from anywhere, without deadlock;
//! * lifecycle `Passive → Active → Passive → Destroyed`, cascading through children;
//! * misuse returns an [`Error`]; the runtime does not panic.
//!
//! Most users depend on the `selfman` facade crate, which re-exports this crate together with a
//! runtime.
#![deny(missing_docs)]

mod channel;
mod component;
mod error;
mod handler;
mod inbox;
mod introspection;
mod lock;
mod network;
mod port;
mod port_core;
mod port_handle;
mod prefetch;
mod replace;
mod rng;
mod runtime;
mod supervision;
mod system;
#[cfg(feature = "testkit")]
pub mod testkit;
mod timer;

pub use channel::{Channel, Selector};
pub use component::context::Context;
pub use component::definition::{ComponentDefinition, PortOptions, Setup};
pub use component::handle::{Component, ComponentRef};
pub use component::{ComponentId, FaultReport, LifecycleState, PortInfo};
pub use error::{Error, Result};
pub use handler::{Handled, HandlerError, Severity};
pub use introspection::{ChannelSnapshot, ComponentSnapshot, SystemSnapshot};
pub use network::{
    CloseReason, Credit, Delivery, Host, LinkStatus, Message, NetIndication, NetRequest, Network,
    NodeAddr, NodeComponent, NodeId, ParseNodeAddrError, PeerStatus, ProtocolId,
};
pub use port::{Direction, Event, IndicationFrom, Port, RequestFrom};
pub use port_handle::{Indicator, Origin, Provided, ProvidedRef, Required, RequiredRef};
#[doc(hidden)]
pub use prefetch::prefetch;
pub use replace::{Migrate, Swap};
pub use rng::Rng;
pub use runtime::{
    RngSource, RuntimeParts, Scheduler, SeededRng, Task, Time, TimerDriver, TimerEntry, TimerKey,
};
pub use supervision::{Directive, Strategy, SupervisorPolicy};
pub use system::{System, SystemConfig, WeakSystem};
pub use timer::{Timeout, Timer, TimerId, TimerRequest, TimerTarget};
