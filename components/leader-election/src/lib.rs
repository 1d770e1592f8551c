//! # selfman-leader-election
//!
//! Eventual leader election (Ω, Cachin–Guerraoui–Rodrigues Module 2.9) over an eventually
//! perfect failure detector: the [`Omega`] component provides the
//! [`LeaderElection`](selfman_ports::LeaderElection) port and requires a
//! [`FailureDetector`] — any implementation, e.g.
//! `selfman-failure-detector`'s heartbeat detector.
//!
//! * The group is a list of members in rank order (index 0 highest). Each member trusts the
//!   highest-ranked member it does not suspect, itself if it suspects every member above it.
//! * [`Trust`](selfman_ports::Trust) is raised at start and whenever the trusted member
//!   changes, naming the member as it is listed in the group.
//! * Properties, given ◇P: **eventual accuracy** (eventually every correct process trusts a
//!   correct process) and **eventual agreement** (eventually all correct processes trust the
//!   same one): once the detector stops making mistakes, every correct process suspects exactly
//!   the crashed members and so computes the same leader.
//! * A member listed as `(addr, NodeId::UNKNOWN)` is whichever incarnation runs at `addr`;
//!   `me` is matched to its entry by address.
//!
//! The logic is the I/O-free [`Elector`]; [`Omega`] is a thin wrapper. The book chapter is
//! `docs/leader-election.md`.
//!
//! # Examples
//!
//! Wiring Ω over a failure detector on a node (the detector is any component providing
//! `FailureDetector`; the caller connects Ω's `LeaderElection` port to its users):
//!
//! ```no_run
//! use selfman_core::{Host, NodeAddr, NodeId, ProvidedRef};
//! use selfman_leader_election::build;
//! use selfman_ports::FailureDetector;
//!
//! fn wire<H: Host>(h: &H, fd: &ProvidedRef<FailureDetector>, group: Vec<NodeAddr>) {
//!     let omega = build(h, fd, group).expect("wired");
//!     let _ = omega;
//! }
//! ```
#![deny(missing_docs)]

mod component;
mod elector;

pub use component::Omega;
pub use elector::Elector;
#[cfg(feature = "flaws")]
pub use elector::Flaw;

use selfman_core::{Component, Host, NodeAddr, ProvidedRef, Result};
use selfman_ports::FailureDetector;

/// Creates an [`Omega`] for `group` on `host` (as member `host.local()`) and connects it to
/// the failure detector `fd`. The caller connects its provided
/// [`LeaderElection`](selfman_ports::LeaderElection) port to the users before the node starts
/// (or asks with a `()` request later).
///
/// # Errors
///
/// Whatever creating and connecting the component on `host` returns.
pub fn build<H: Host>(
    host: &H,
    fd: &ProvidedRef<FailureDetector>,
    group: Vec<NodeAddr>,
) -> Result<Component<Omega>> {
    let me = host.local();
    build_from(host, fd, move || Omega::new(me, group.clone()))
}

/// As [`build`], with the deliberate mistake `flaw` (feature `flaws`, for showing that the
/// simulation checkers catch it).
///
/// # Errors
///
/// As [`build`].
#[cfg(feature = "flaws")]
pub fn build_flawed<H: Host>(
    host: &H,
    fd: &ProvidedRef<FailureDetector>,
    group: Vec<NodeAddr>,
    flaw: Flaw,
) -> Result<Component<Omega>> {
    let me = host.local();
    build_from(host, fd, move || Omega::new(me, group.clone()).with_flaw(flaw))
}

fn build_from<H: Host>(
    host: &H,
    fd: &ProvidedRef<FailureDetector>,
    factory: impl Fn() -> Omega + Send + Sync + 'static,
) -> Result<Component<Omega>> {
    let omega = host.create(factory)?;
    host.system().connect(fd, &omega.required()?)?;
    Ok(omega)
}
