//! # Selfman
//!
//! A Kompics-style component framework: components with typed ports, connected by channels,
//! running on a multi-core work-stealing runtime (or, for testing, a deterministic simulator).
//!
//! This facade re-exports the component model ([`selfman_core`]), the multi-core runtime
//! ([`selfman_runtime`]) and the deterministic simulator ([`selfman_sim`]); `use selfman::prelude::*;` brings in what a component needs.
//!
//! ```
//! use std::time::Duration;
//! use selfman::prelude::*;
//!
//! #[derive(Default)]
//! struct Hello {
//!     ctx: Context,
//! }
//!
//! impl ComponentDefinition for Hello {
//!     fn setup(&mut self, setup: &mut Setup<Self>) {
//!         setup.context(|c| &mut c.ctx);
//!     }
//!     fn on_start(&mut self) -> Handled {
//!         println!("hello from component {}", self.ctx.id());
//!         Ok(())
//!     }
//! }
//!
//! let rt = Runtime::new();
//! let hello = rt.create(Hello::default).unwrap();
//! rt.start_and_wait(&hello, Duration::from_secs(5)).unwrap();
//! rt.shutdown().unwrap();
//! ```
#![deny(missing_docs)]

pub use selfman_core as core;
pub use selfman_runtime as runtime;
pub use selfman_sim as sim;

pub use selfman_core::{
    Channel, ChannelSnapshot, Component, ComponentDefinition, ComponentId, ComponentRef,
    ComponentSnapshot, Context, Direction, Directive, Error, Event, FaultReport, Handled,
    HandlerError, LifecycleState, Origin, Port, PortInfo, PortOptions, Provided, ProvidedRef,
    Required, RequiredRef, Result, Rng, Selector, Setup, Severity, Strategy, SupervisorPolicy,
    Swap, System, SystemConfig, SystemSnapshot, Time, Timeout, Timer, TimerId, TimerRequest,
};
pub use selfman_core::{
    CloseReason, Delivery, Host, LinkStatus, Message, NetIndication, NetRequest, Network, NodeAddr,
    NodeId, PeerStatus,
};
pub use selfman_runtime::{Runtime, RuntimeBuilder};

/// What a component definition usually needs.
pub mod prelude {
    pub use selfman_core::{
        Component, ComponentDefinition, ComponentRef, Context, Handled, HandlerError, Host,
        NetIndication, Network, NodeAddr, Port, Provided, Required, Setup, System, Timeout, Timer,
        TimerId,
    };
    pub use selfman_runtime::Runtime;
}
