//! # selfman-failure-detector
//!
//! An eventually perfect failure detector (◇P, Cachin–Guerraoui–Rodrigues Module 2.8) by
//! heartbeats with an increasing timeout: the [`HeartbeatFd`] component provides the
//! [`FailureDetector`](selfman_ports::FailureDetector) port of `selfman-ports` over any
//! network and timer.
//!
//! * Users send [`FdRequest::Monitor`](selfman_ports::FdRequest::Monitor) /
//!   [`FdRequest::Unmonitor`](selfman_ports::FdRequest::Unmonitor) and receive
//!   [`FdIndication::Suspect`](selfman_ports::FdIndication::Suspect) /
//!   [`FdIndication::Restore`](selfman_ports::FdIndication::Restore), only on a change, only
//!   about what they monitor, naming the process exactly as they monitored it.
//! * Every [`FdConfig::period`] the detector pings each monitored address once; a process
//!   silent for longer than its timeout is suspected; a suspected process that is heard again
//!   is restored and its timeout grows by [`FdConfig::increment`], up to
//!   [`FdConfig::max_timeout`]. Once the network is stable, timeouts stop growing and no
//!   correct process stays suspected (eventual strong accuracy); a crashed process stops
//!   answering and is suspected for good (strong completeness).
//! * Incarnations: a process monitored as `(addr, NodeId::UNKNOWN)` is "whichever incarnation
//!   runs at `addr`" — restarted, it is restored. A process monitored with a concrete id is that
//!   incarnation only: once another incarnation answers a probe at its address (sent after the
//!   monitoring began), it is suspected for good.
//! * Connection-loss events from the network are hints: they trigger an early probe, never a
//!   suspicion.
//! * The logic is the I/O-free [`Detector`]; the component is a thin wrapper. One periodic
//!   timer serves all peers, so thousands of monitored peers per node cost one pass per period.
//! * Hot swap: [`reconfigure`] replaces a running detector by one with another config, and
//!   [`HeartbeatFd::transfer`] is the state transfer for any `System::replace_with_state`;
//!   the detector's state is plain serde data ([`DetectorState`]) for other versions and
//!   implementations to take over.
//!
//! The book chapter is `docs/failure-detector.md`.
//!
//! # Examples
//!
//! Wiring the detector on a node and monitoring a peer (the caller connects the provided port
//! to its users; here a request is injected directly):
//!
//! ```
//! use selfman_core::{Host, NodeAddr, NodeId};
//! use selfman_failure_detector::{build, FdConfig};
//! use selfman_ports::{FailureDetector, FdRequest};
//! use selfman_sim::{address_of, Simulation};
//!
//! let sim = Simulation::new(1);
//! sim.add_node(|h| {
//!     let fd = build(h, FdConfig::default())?;
//!     let peer = NodeAddr::new(address_of(1), NodeId::UNKNOWN);
//!     fd.provided::<FailureDetector>()?.request(FdRequest::Monitor(peer))?;
//!     Ok(())
//! })
//! .unwrap();
//! sim.run_for(std::time::Duration::from_secs(1));
//! ```
#![deny(missing_docs)]

mod component;
mod config;
mod detector;
mod messages;

pub use component::HeartbeatFd;
pub use config::{ConfigError, FdConfig};
#[cfg(feature = "flaws")]
pub use detector::Flaw;
pub use detector::{Detector, DetectorState, Output, PeerState, Subscriber, WatchState};
pub use messages::FdMessage;

use selfman_core::{Component, Host, Result, Swap, System};

/// The detector's protocol name on the network.
pub const PROTOCOL: &str = "failure-detector";

// ANCHOR: build
/// Creates a [`HeartbeatFd`] on `host` and connects its network (protocol [`PROTOCOL`]) and
/// timer. The caller connects its provided
/// [`FailureDetector`](selfman_ports::FailureDetector) port to the users, which then send
/// `Monitor` requests. An invalid `config` is replaced by [`FdConfig::normalized`]; call
/// [`FdConfig::validate`] first to reject it instead.
///
/// # Errors
///
/// Whatever creating and connecting the component on `host` returns.
pub fn build<H: Host>(host: &H, config: FdConfig) -> Result<Component<HeartbeatFd>> {
    build_from(host, move || HeartbeatFd::new(config))
}
// ANCHOR_END: build

// ANCHOR: reconfigure
/// Replaces the running detector `fd` by a [`HeartbeatFd`] with `config`, live, carrying over
/// everything it knows ([`HeartbeatFd::transfer`]): its users keep their watches and the
/// suspicions they were told about, timeouts are clamped into the new config's range, and
/// probing continues at the new period. The component keeps its identity, channels and
/// queued events (`System::replace_with_state`).
///
/// Returns at once; the swap happens at the component's next turn. [`Swap::wait`] blocks
/// for it (not in a handler, not inside the single-threaded simulator: there, run the
/// simulation and poll [`Swap::try_outcome`]).
///
/// # Errors
///
/// As `System::replace_with_state` (e.g. the component is destroyed).
pub fn reconfigure(system: &System, fd: &Component<HeartbeatFd>, config: FdConfig) -> Result<Swap> {
    system.replace_with_state(fd, move || HeartbeatFd::new(config), HeartbeatFd::transfer)
}
// ANCHOR_END: reconfigure

/// As [`build`], with the deliberate mistake `flaw` (feature `flaws`, for showing that the
/// simulation checkers catch it).
///
/// # Errors
///
/// As [`build`].
#[cfg(feature = "flaws")]
pub fn build_flawed<H: Host>(
    host: &H,
    config: FdConfig,
    flaw: Flaw,
) -> Result<Component<HeartbeatFd>> {
    build_from(host, move || HeartbeatFd::new(config).with_flaw(flaw))
}

fn build_from<H: Host>(
    host: &H,
    factory: impl Fn() -> HeartbeatFd + Send + Sync + 'static,
) -> Result<Component<HeartbeatFd>> {
    let fd = host.create(factory)?;
    host.system().connect(&host.network::<FdMessage>(PROTOCOL)?, &fd.required()?)?;
    host.system().connect(&host.timer()?, &fd.required()?)?;
    Ok(fd)
}
