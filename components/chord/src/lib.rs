//! # selfman-chord
//!
//! Chord (Stoica, Morris, Karger, Kaashoek and Balakrishnan, "Chord: A Scalable Peer-to-peer
//! Lookup Service for Internet Applications", 2001) behind the same
//! [`Ring<M>`](selfman_ports::Ring) port as the relaxed ring, so that the two can be swapped
//! in one line of wiring and measured side by side:
//!
//! * **periodic stabilisation** ([`ChordConfig::stabilize`]): ask the successor for its
//!   predecessor and successor list, adopt a closer successor, notify;
//! * **successor lists** of [`ChordConfig::succ_list_size`] entries, so a peer survives that
//!   many consecutive crashes less one;
//! * **fingers** `successor(me + 2^i)` for the 64 bits of the space, refreshed round robin
//!   ([`ChordConfig::fix_fingers`]), routing recursively in `O(log N)` hops;
//! * **graceful leave**: the successor takes the range, the predecessor the successor list;
//!   ring traffic that still reaches the departed peer is forwarded to that successor, and
//!   its sender told to forget the peer;
//! * the same failure detector port as the relaxed ring, watching successor and predecessor;
//! * one addition to the paper's rules, the **ring check** ([`ChordConfig::check_ring`]): a
//!   peer looks up its own identifier through another peer than its successor, which joins
//!   separate cycles (after a partition) that stabilisation cannot; and a rejected notify
//!   makes a peer ask its predecessor, so one that left and still runs is found out.
//!
//! Unlike the relaxed ring, Chord does **not** keep lookup consistency: while a joiner's
//! successor has not been notified, both claim the joiner's range, and a peer whose
//! predecessor crashed guesses its new predecessor until a notify corrects it. The simulation
//! suites measure how often and how long; they do not fail on it.
//!
//! The logic is the I/O-free [`ChordMachine`]; the [`Chord`] component wraps it and requires
//! `Network<`[`ChordMessage<M>`]`>`, `Timer` and `FailureDetector`.
//!
//! # Examples
//!
//! Two peers in the simulator (with a failure detector that never suspects anyone):
//!
//! ```
//! use std::time::Duration;
//! use selfman_core::{ComponentDefinition, Host, Provided, Setup};
//! use selfman_ports::{FailureDetector, FdRequest, Ring, RingRequest, RingStatus, RingViews};
//! use selfman_chord::{build, ChordConfig};
//! use selfman_sim::Simulation;
//!
//! #[derive(Default)]
//! struct Trusting {
//!     port: Provided<FailureDetector>,
//! }
//! impl ComponentDefinition for Trusting {
//!     fn setup(&mut self, s: &mut Setup<Self>) {
//!         s.provide(|c| &mut c.port, |_, _: FdRequest| Ok(()));
//!     }
//! }
//!
//! let sim = Simulation::new(7);
//! let views = RingViews::new();
//! let mut first = None;
//! for i in 0..2 {
//!     let v = views.clone();
//!     let addr = sim.add_node(move |h| {
//!         let fd = h.create(Trusting::default)?;
//!         let ring = build::<u64, _>(h, ChordConfig::default(), &fd.provided()?)?;
//!         v.register(h.local(), &ring);
//!         let req = match first {
//!             None => RingRequest::Bootstrap,
//!             Some(access) => RingRequest::Join { access },
//!         };
//!         ring.provided::<Ring<u64>>()?.request(req)?;
//!         Ok(())
//!     })
//!     .unwrap();
//!     first = first.or(Some(addr));
//! }
//! sim.run_for(Duration::from_secs(5));
//! let views = views.snapshot();
//! assert!(views.values().all(|v| v.status == RingStatus::InRing));
//! let (a, b): (Vec<_>, Vec<_>) = views.values().map(|v| (v.me, v.succ.unwrap())).unzip();
//! assert_eq!(a[0], b[1]);
//! assert_eq!(a[1], b[0]);
//! ```
#![deny(missing_docs)]

mod component;
mod config;
mod machine;
pub mod messages;

pub use component::Chord;
pub use config::{ChordConfig, ConfigError};
pub use machine::{
    ChordMachine, ChordOutput, FaultCounts, FINGERS, LOOKUP_RESENDS, MAX_CRASHED, MAX_PENDING,
};
pub use messages::ChordMessage;

use selfman_core::{Component, Host, Message, ProvidedRef, Result};
use selfman_ports::FailureDetector;

/// Chord's protocol name on the network.
pub const PROTOCOL: &str = "chord";

/// Creates a [`Chord`] peer on `host` and connects its network (protocol [`PROTOCOL`]), timer
/// and failure detector `fd`. The caller connects the provided
/// [`Ring<M>`](selfman_ports::Ring) port to its user, which bootstraps or joins.
///
/// # Errors
///
/// Whatever creating and connecting the component on `host` returns.
pub fn build<M: Message, H: Host>(
    host: &H,
    config: ChordConfig,
    fd: &ProvidedRef<FailureDetector>,
) -> Result<Component<Chord<M>>> {
    let me = host.local();
    let ring = host.create(move || Chord::new(me, config))?;
    host.system().connect(&host.network::<ChordMessage<M>>(PROTOCOL)?, &ring.required()?)?;
    host.system().connect(&host.timer()?, &ring.required()?)?;
    host.system().connect(fd, &ring.required()?)?;
    Ok(ring)
}

#[cfg(test)]
mod tests;
