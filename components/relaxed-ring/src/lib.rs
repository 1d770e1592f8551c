//! # selfman-relaxed-ring
//!
//! Beernet's **relaxed ring** (Mejías and Van Roy, "The Relaxed-Ring: a Fault-Tolerant
//! Topology for Structured Overlay Networks", and "Beernet"), a structured overlay that
//! provides the [`Ring<M>`](selfman_ports::Ring) port of `selfman-ports`:
//!
//! * **join in three steps between two peers** (`join`/`join_ok`, `new_succ`, `join_ack`), no
//!   lock over three peers; concurrent joins into one gap; `try_later` while the successor is
//!   repairing;
//! * **failure recovery** by successor lists (a peer that suspects its successor sends `fix`
//!   to the first live entry) and predecessor lists, with the crashed set kept honest: a
//!   falsely suspected peer that answers again is restored and taken back;
//! * **branches**: a peer its predecessor cannot reach stays behind its successor and is
//!   still found, by routing marked `last` and going backwards into predecessor lists;
//! * **k-ary fingers** learnt from traffic and refreshed, routing in `O(log_k n)` hops;
//! * **graceful leave** handing the range to the successor first;
//! * **ring merge** after a partition heals: suspected peers go to a bounded passive list
//!   that is probed now and then (`mlookup`); a probe answered from another ring starts a
//!   walk that zips the two rings into one by the ordinary repair rules, spread with a fanout
//!   so that large rings merge in less than linear time;
//! * **lookup consistency**: a key has at most one owner, or its owner is temporarily
//!   unavailable — and lookups say so rather than name a wrong peer.
//!
//! The logic is the I/O-free [`RelaxedRingMachine`] (split by role: join, recovery, routing
//! and fingers, leave; wire messages in [`messages`]); the [`RelaxedRing`] component is a
//! thin wrapper requiring `Network<`[`RingMessage<M>`]`>`, `Timer` and `FailureDetector`.
//! The machine's state is plain serde data ([`RingState`]) that a replacement takes over:
//! [`reconfigure`] swaps a running peer for one with another configuration.
//!
//! Its state can be read from outside at any time ([`RingInspect`](selfman_ports::RingInspect),
//! [`RingViews`](selfman_ports::RingViews)): simulation checkers use it for a global view.
//!
//! # Examples
//!
//! A ring of one peer in the simulator (a real node also gets a failure detector, e.g.
//! `selfman-failure-detector`; here a stand-in provides the port):
//!
//! ```
//! use selfman_core::{ComponentDefinition, Handled, Host, Provided, Setup};
//! use selfman_ports::{FailureDetector, FdRequest, Ring, RingId, RingRequest, RingStatus, RingViews};
//! use selfman_relaxed_ring::{build, RingConfig};
//! use selfman_sim::Simulation;
//!
//! /// A failure detector that never suspects anyone.
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
//! let sim = Simulation::new(1);
//! let views = RingViews::new();
//! let v = views.clone();
//! sim.add_node(move |h| {
//!     let fd = h.create(Trusting::default)?;
//!     let ring = build::<u64, _>(h, RingConfig::default(), &fd.provided()?)?;
//!     v.register(h.local(), &ring);
//!     ring.provided::<Ring<u64>>()?.request(RingRequest::Bootstrap)?;
//!     Ok(())
//! })
//! .unwrap();
//! sim.run_for(std::time::Duration::from_millis(10));
//! let view = views.snapshot().into_values().next().unwrap();
//! assert_eq!(view.status, RingStatus::InRing);
//! assert!(view.range.unwrap().contains(RingId::of_key(b"anything")));
//! ```
#![deny(missing_docs)]

mod component;
mod config;
mod machine;
pub mod messages;

pub use component::RelaxedRing;
pub use config::{ConfigError, RingConfig, MAX_PASSIVE};
#[cfg(feature = "flaws")]
pub use machine::Flaw;
pub use machine::{
    Fault, FaultCounts, Fingers, MergeStats, RelaxedRingMachine, RingOutput, RingState, GONE_STEPS,
    JOIN_GIVE_UP, JOIN_OK_RESENDS, MAX_CRASHED, MAX_PENDING, MAX_SILENT, NEW_SUCC_RESENDS,
    PRED_LIST_EXPIRY, REPAIR_WATCHED_SUCCS, WATCHED_SUCCS,
};
pub use messages::RingMessage;

use selfman_core::{Component, Host, Message, ProvidedRef, Result, Swap, System};
use selfman_ports::FailureDetector;

/// The ring's protocol name on the network (for one payload type per node; see
/// [`build_with`] for more).
pub const PROTOCOL: &str = "relaxed-ring";

/// Creates a [`RelaxedRing`] on `host` and connects its network (protocol [`PROTOCOL`]), its
/// timer and its failure detector `fd`. The caller connects the provided
/// [`Ring<M>`](selfman_ports::Ring) port to the user, which then bootstraps or joins. An
/// invalid `config` is replaced by [`RingConfig::normalized`]; call
/// [`RingConfig::validate`] first to reject it instead.
///
/// # Errors
///
/// Whatever creating and connecting the component on `host` returns.
pub fn build<M: Message, H: Host>(
    host: &H,
    config: RingConfig,
    fd: &ProvidedRef<FailureDetector>,
) -> Result<Component<RelaxedRing<M>>> {
    let me = host.local();
    build_with(host, PROTOCOL, fd, move || RelaxedRing::new(me, config))
}

/// As [`build`], with the deliberate mistake `flaw` (feature `flaws`, for showing that the
/// simulation checkers catch it; `docs/decisions/011-deliberate-bugs-are-test-only.md`).
///
/// # Errors
///
/// As [`build`].
#[cfg(feature = "flaws")]
pub fn build_flawed<M: Message, H: Host>(
    host: &H,
    config: RingConfig,
    fd: &ProvidedRef<FailureDetector>,
    flaw: Flaw,
) -> Result<Component<RelaxedRing<M>>> {
    let me = host.local();
    build_with(host, PROTOCOL, fd, move || {
        RelaxedRing::from_machine(RelaxedRingMachine::new(me, config).with_flaw(flaw))
    })
}

/// As [`build`], with the network protocol named `protocol` (several rings, or several
/// payload types, on one node) and the component made by `factory` (for instance around a
/// machine with a deliberate flaw).
///
/// # Errors
///
/// Whatever creating and connecting the component on `host` returns.
pub fn build_with<M: Message, H: Host>(
    host: &H,
    protocol: &str,
    fd: &ProvidedRef<FailureDetector>,
    factory: impl Fn() -> RelaxedRing<M> + Send + Sync + 'static,
) -> Result<Component<RelaxedRing<M>>> {
    let ring = host.create(factory)?;
    host.system().connect(&host.network::<RingMessage<M>>(protocol)?, &ring.required()?)?;
    host.system().connect(&host.timer()?, &ring.required()?)?;
    host.system().connect(fd, &ring.required()?)?;
    Ok(ring)
}

/// Replaces the running peer `ring` by a [`RelaxedRing`] with `config`, live, carrying over
/// its whole state ([`RelaxedRing::transfer`]): the same identifier and place in the ring,
/// lists, fingers, watches and lookups in flight. The component keeps its identity, channels
/// and queued events (`System::replace_with_state`).
///
/// Returns at once; the swap happens at the component's next turn (in the simulator: run the
/// simulation and poll [`Swap::try_outcome`]).
///
/// # Errors
///
/// As `System::replace_with_state`.
pub fn reconfigure<M: Message>(
    system: &System,
    ring: &Component<RelaxedRing<M>>,
    me: selfman_core::NodeAddr,
    config: RingConfig,
) -> Result<Swap> {
    system.replace_with_state(ring, move || RelaxedRing::new(me, config), RelaxedRing::transfer)
}
