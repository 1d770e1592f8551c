//! # selfman-sim
//!
//! A deterministic simulator for Selfman components: it implements `selfman-core`'s runtime
//! plug-in traits on **one thread, in virtual time, from one seed**, so the very components that
//! run on the multi-core runtime run here unchanged — and the same seed gives the same run, bit
//! for bit.
//!
//! * [`Simulation`] — the system plus its scheduler (a FIFO of component turns) and virtual
//!   clock (a min-heap of timers). Nothing happens unless the simulation is stepped; time jumps
//!   straight to the next timer when no component has work.
//! * Every turn and every timer firing is folded into a **trace hash**
//!   ([`Simulation::trace_hash`]): two runs are the same run exactly when their hashes match.
//!
//! The blocking helpers of `System` (`start_and_wait`, `shutdown`, …) must not be used inside a
//! simulation (nothing would run while they wait): use `start` and then
//! [`Simulation::run_until_idle`] or [`Simulation::run_for`].
//!
//! This is the first part of the simulator: the simulated network, fault plans and scenario
//! scripting come with the network layer.
#![deny(missing_docs)]

mod clock;
mod net;
mod node;
mod scenario;
mod simulation;

pub use net::{Latency, LinkModel, SimNetConfig, SimNetStats};
pub use node::{NodeBuilder, SimHost};
pub use scenario::{seeds, Check, Churn, Outcome, Run, Scenario, Violation};
pub use simulation::{SimConfig, Simulation};
