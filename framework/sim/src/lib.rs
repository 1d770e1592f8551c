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
//! * [`SimHost`] — a simulated node, implementing the same [`Host`](selfman_core::Host) trait as a
//!   node over TCP: its components get `Network<M>` ports served by a **simulated network** with
//!   per-link [`Latency`] distributions, loss, FIFO links, partitions, and nodes that crash and
//!   restart as new incarnations ([`Simulation::add_node`], [`Simulation::crash`],
//!   [`Simulation::restart`], [`Simulation::partition`]).
//! * The **run digest** ([`Simulation::record_digest`], [`Scenario::run_digest`]), off by
//!   default: the trace's delivery headers plus every delivered message's encoding, to show
//!   that two builds run a scenario identically, message contents included.
//! * [`Scenario`] — a scripted run: nodes started at given times, a [`Churn`] process, partitions
//!   set and healed, invariant checks at given times, after every step or at the end. Its
//!   [`Outcome`] lists violations; a failing run prints its seed and a command that replays it.
//!
//! The blocking helpers of `System` (`start_and_wait`, `shutdown`, …) must not be used inside a
//! simulation (nothing would run while they wait): use `start` and then
//! [`Simulation::run_until_idle`], [`Simulation::run_until`] or a scenario.
//!
//! The book chapter is `docs/simulation.md`.
#![deny(missing_docs)]

mod clock;
mod digest;
mod fast_map;
mod net;
mod node;
mod scenario;
mod simulation;

pub use net::{Latency, LinkModel, SimNetConfig, SimNetStats};
pub use node::{address_of, NodeBuilder, SimHost};
pub use scenario::{seeds, Check, Churn, Outcome, Run, Scenario, Violation};
pub use simulation::{SimConfig, Simulation};
