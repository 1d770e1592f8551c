//! # selfman-replication
//!
//! **Symmetric replication** on a ring overlay (Ghodsi et al., "Symmetric Replication for
//! Structured Peer-to-Peer Systems"; as in Beernet and Scalaris): it provides the
//! [`Replication`](selfman_ports::Replication) port of `selfman-ports` on top of any
//! [`Ring<P>`](selfman_ports::Ring).
//!
//! * **placement** ([`Placement`]): the `f` replicas of key `k` (default 4) at
//!   `k + i·2^64/f`; the quorum is `f/2 + 1`; join positions that keep the replicas of every
//!   key on `f` distinct hosts (sectors closed by anchors);
//! * **a local store** ([`Store`]) ordered by ring position, whose record holds value,
//!   version and the transaction layer's votes and locks, so that locks move with the data;
//! * **quorum reads** and **versioned operations at one replica** ([`Coordinator`]);
//! * **hand-over** when the ring moves a range to a joiner or from a leaver ([`Handover`]:
//!   the range, then the records changed meanwhile, then the switch; the new owner forwards
//!   operations to the old holder until then);
//! * **rebuild after a crash** from the other replicas by bulk range reads ([`Recovery`]);
//! * **anti-entropy** comparing hash trees of replica ranges, moving data in proportion to the
//!   difference ([`Repair`]).
//!
//! The logic is the I/O-free [`ReplicaMachine`], split by role in the modules above (wire
//! messages in [`messages`]); the [`SymmetricReplication`] component is a thin wrapper.
//! `docs/replication.md` is the chapter: guarantees, the hand-over protocol, host diversity and
//! its cost, what a user sees while data moves, and how each property is tested.
//!
//! # Examples
//!
//! Wiring, in outline (the crate's `tests/sim_replication.rs` runs it in the simulator):
//!
//! ```text
//! let fd = /* any FailureDetector */;
//! let ring = selfman_relaxed_ring::build::<ReplMessage, _>(host, RingConfig { id: Some(position), .. }, &fd)?;
//! let repl = selfman_replication::build(host, ReplicationConfig { host: HostId(3), ..Default::default() },
//!                                       &ring.provided()?, &fd)?;
//! // position = Placement::new(4).join_position(HostId(3), attempt, salt): the sector's anchor
//! // first, a position inside the sector after an `IdInUse` refusal.
//! ```
#![deny(missing_docs)]

mod component;
mod config;
mod faults;
mod handover;
mod machine;
pub mod messages;
mod placement;
mod quorum;
mod ranges;
mod recovery;
mod repair;
mod store;
#[cfg(test)]
mod tests;

pub use component::{RingPayload, SymmetricReplication};
pub use config::{ConfigError, ReplicationConfig, MAX_F};
pub use faults::{Fault, FaultCounts};
pub use handover::Handover;
#[cfg(feature = "flaws")]
pub use machine::Flaw;
pub use machine::{ReplOutput, ReplicaMachine, TAG_MARK};
pub use messages::ReplMessage;
pub use placement::Placement;
pub use quorum::Coordinator;
pub use ranges::RangeSet;
pub use recovery::Recovery;
pub use repair::{Repair, LEAF_ITEMS, LEAF_REPLY_MAX, SYNC_WINDOW};
pub use store::{digest, ItemId, ItemRef, Merge, Record, RecordRef, Store, VoteEntry, VOTE_MEMORY};

use selfman_core::{Component, Host, ProvidedRef, Result, Swap, System};
use selfman_ports::{FailureDetector, Ring};

/// The protocol name of replication's direct messages on the network.
pub const PROTOCOL: &str = "replication";

/// Creates a [`SymmetricReplication`] on `host` and connects its network (protocol
/// [`PROTOCOL`]), its timer, the ring `ring` and the failure detector `fd`. The caller
/// connects the provided [`Replication`](selfman_ports::Replication) port to its user. An
/// invalid `config` is replaced by the default (call [`ReplicationConfig::validate`] first to
/// reject it).
///
/// # Errors
///
/// Whatever creating and connecting the component on `host` returns.
pub fn build<P: RingPayload, H: Host>(
    host: &H,
    config: ReplicationConfig,
    ring: &ProvidedRef<Ring<P>>,
    fd: &ProvidedRef<FailureDetector>,
) -> Result<Component<SymmetricReplication<P>>> {
    let node = host.local();
    build_from(host, ring, fd, move || SymmetricReplication::new(node, config))
}

/// As [`build`], with the deliberate mistake `flaw` (feature `flaws`, for tests only). A
/// restarted component keeps its flaw.
///
/// # Errors
///
/// As [`build`].
#[cfg(feature = "flaws")]
pub fn build_flawed<P: RingPayload, H: Host>(
    host: &H,
    config: ReplicationConfig,
    ring: &ProvidedRef<Ring<P>>,
    fd: &ProvidedRef<FailureDetector>,
    flaw: Flaw,
) -> Result<Component<SymmetricReplication<P>>> {
    let node = host.local();
    build_from(host, ring, fd, move || SymmetricReplication::new(node, config).with_flaw(flaw))
}

fn build_from<P: RingPayload, H: Host>(
    host: &H,
    ring: &ProvidedRef<Ring<P>>,
    fd: &ProvidedRef<FailureDetector>,
    factory: impl Fn() -> SymmetricReplication<P> + Send + Sync + 'static,
) -> Result<Component<SymmetricReplication<P>>> {
    let c = host.create(factory)?;
    host.system().connect(&host.network::<ReplMessage>(PROTOCOL)?, &c.required()?)?;
    host.system().connect(&host.timer()?, &c.required()?)?;
    host.system().connect(ring, &c.required()?)?;
    host.system().connect(fd, &c.required()?)?;
    Ok(c)
}

/// Replaces the running replication `c` by one with `config`, live, carrying over its whole
/// state ([`SymmetricReplication::transfer`]): its replicas, ranges, transfers and operations in
/// flight. The component keeps its identity, channels and queued events.
///
/// Returns at once; the swap happens at the component's next turn.
///
/// # Errors
///
/// As `System::replace_with_state`.
pub fn reconfigure<P: RingPayload>(
    system: &System,
    c: &Component<SymmetricReplication<P>>,
    node: selfman_core::NodeAddr,
    config: ReplicationConfig,
) -> Result<Swap> {
    system.replace_with_state(
        c,
        move || SymmetricReplication::new(node, config),
        SymmetricReplication::transfer,
    )
}
