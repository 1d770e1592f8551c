//! # selfman-consensus
//!
//! Uniform consensus built the way Cachin, Guerraoui and Rodrigues build it ("Introduction to
//! Reliable and Secure Distributed Programming", 2nd ed., §5.3–5.4), as three components wired
//! through ports, each a thin wrapper around an I/O-free state machine:
//!
//! | component | provides | requires | logic |
//! |---|---|---|---|
//! | [`EpochChanger`] | [`EpochChange`](selfman_ports::EpochChange) | `LeaderElection`, `BestEffortBroadcast<EcMessage>`, `Network<EcMessage>`, `Timer` | [`EpochChangeMachine`] (Algorithm 5.5) |
//! | [`EpochConsensus`] | [`AbortableConsensus<V>`](selfman_ports::AbortableConsensus) | `BestEffortBroadcast<EpMessage<V>>`, `Network<EpMessage<V>>`, `Timer` | [`EpochConsensusMachine`] (Algorithm 5.6) |
//! | [`UniformConsensus`] | [`Consensus<V>`](selfman_ports::Consensus) | `EpochChange`, `AbortableConsensus<V>`, `Network<UcMessage<V>>`, `Timer` | [`UniformConsensusMachine`] (Algorithm 5.7) |
//!
//! Every port multiplexes many instances, keyed by [`InstanceId`](selfman_ports::InstanceId).
//! The algorithms are made to work over lossy links (each step is re-sent until answered),
//! healed partitions (a self-trusting leader re-announces its epoch) and proposals made at any
//! process (forwarded to the leader). [`build_stack`] wires the three on a node, given a leader
//! detector and two best-effort broadcasts. The book chapter is `docs/consensus.md`.
//!
//! Guarantees (with a majority of the group correct; crash-stop: a member that crashed must
//! not come back with empty state): validity, integrity, uniform agreement, and termination
//! once the network and the leader detector are stable.
//!
//! Limits: every process keeps the state and the decision of every instance forever, and a
//! new epoch re-writes every instance it learns of.
#![deny(missing_docs)]

mod epoch_change;
mod epoch_consensus;
mod messages;
mod stack;
mod uniform_consensus;

pub use epoch_change::{EcConfig, EcOutput, EpochChangeMachine, EpochChanger};
pub use epoch_consensus::{EpConfig, EpOutput, EpochConsensus, EpochConsensusMachine};
pub use messages::{EcMessage, EpMessage, UcMessage};
pub use stack::{build_stack, Stack, StackConfig};
pub use uniform_consensus::{UcConfig, UcOutput, UniformConsensus, UniformConsensusMachine};

// Deliberate bugs, for tests only (feature `flaws`): each machine's `Flaw`, under the prefix
// of its other types.
#[cfg(feature = "flaws")]
pub use epoch_change::Flaw as EcFlaw;
#[cfg(feature = "flaws")]
pub use epoch_consensus::Flaw as EpFlaw;
#[cfg(feature = "flaws")]
pub use stack::{build_flawed_stack, Flaws};
#[cfg(feature = "flaws")]
pub use uniform_consensus::Flaw as UcFlaw;

/// Builders of each component alone (the caller connects its other ports).
pub mod build {
    pub use crate::epoch_change::build as epoch_change;
    #[cfg(feature = "flaws")]
    pub use crate::epoch_change::build_flawed as epoch_change_flawed;
    pub use crate::epoch_consensus::build as epoch_consensus;
    #[cfg(feature = "flaws")]
    pub use crate::epoch_consensus::build_flawed as epoch_consensus_flawed;
    pub use crate::uniform_consensus::build as uniform_consensus;
    #[cfg(feature = "flaws")]
    pub use crate::uniform_consensus::build_flawed as uniform_consensus_flawed;
}
