//! # selfman-ports
//!
//! The protocol abstractions of the Selfman stack, as ports: only the port types and their
//! events, no implementation. A component that needs "a failure detector" requires
//! [`FailureDetector`]; any crate that provides it (the heartbeat detector in
//! `selfman-failure-detector`, a test double, something of your own) can be connected, and
//! swapped for another while the system runs.
//!
//! | Port | Requests | Indications | Implemented by |
//! |------|----------|-------------|----------------|
//! | [`FailureDetector`] | [`FdRequest`] | [`FdIndication`] | `selfman-failure-detector` |
//! | [`BestEffortBroadcast<M>`] | [`BebRequest<M>`] | [`BebDeliver<M>`] | `selfman-broadcast` |
//! | [`LeaderElection`] | none | [`Trust`] | `selfman-leader-election` |
//! | [`EpochChange`] | none | [`StartEpoch`] | `selfman-consensus` |
//! | [`AbortableConsensus<V>`] | [`EpRequest<V>`] | [`EpIndication<V>`] | `selfman-consensus` |
//! | [`Consensus<V>`] | [`Propose<V>`] | [`Decide<V>`] | `selfman-consensus` |
//! | [`Ring<M>`] | [`RingRequest<M>`] | [`RingIndication<M>`] | `selfman-relaxed-ring` |
//! | [`Transactions`] | [`TxRequest`] | [`TxIndication`] | `selfman-transactions` |
//!
//! Processes are named by [`NodeAddr`]. A group member given with [`NodeId::UNKNOWN`] stands
//! for "whichever incarnation runs at that address"; implementations report members as they
//! were given to them, so users can compare what they configured with what they are told.
//! Every implementation sees its group through one [`Membership`] view, which is where those
//! rules are kept. [`has_flaw!`] is how the implementations check for their test-only
//! deliberate bugs (`docs/decisions/011-deliberate-bugs-are-test-only.md`).
//! Interfaces and properties follow Cachin, Guerraoui and Rodrigues, *Introduction to Reliable
//! and Secure Distributed Programming* (2nd ed.); `docs/` has one chapter per abstraction.
//!
//! [`NodeId::UNKNOWN`]: selfman_core::NodeId::UNKNOWN
#![deny(missing_docs)]

mod broadcast;
mod consensus;
mod failure_detector;
mod flaw;
mod leader_election;
mod membership;
mod replication;
mod ring;
pub mod ring_check;
mod transactions;
mod views;

pub use broadcast::{BebDeliver, BebRequest, BestEffortBroadcast};
pub use consensus::{
    AbortableConsensus, Consensus, Decide, EpIndication, EpRequest, EpochChange, EpochState,
    InstanceId, Propose, StartEpoch,
};
pub use failure_detector::{FailureDetector, FdIndication, FdRequest};
pub use leader_election::{LeaderElection, Trust};
pub use membership::Membership;
pub use replication::{
    HostId, ListFailure, ListedReplica, Listing, LockMode, Movement, QuorumRead, ReadFailure,
    Refusal, ReplicaAnswer, ReplicaFailure, ReplicaInspect, ReplicaOp, ReplicaOutcome, ReplicaView,
    ReplicaViews, Replication, ReplicationIndication, ReplicationRequest, StoredReplica, TxId,
    Version, Vote,
};
pub use ring::{
    JoinRefusal, LookupOutcome, Neighbours, Peer, Range, RangeChange, ResponsibilityChange, Ring,
    RingId, RingIndication, RingInspect, RingRequest, RingStatus, RingView, RingViews, Unavailable,
};
pub use selfman_core::NodeAddr;
pub use transactions::{
    decode_list, encode_list, KeyEvent, Rejection, Transactions, TxHandle, TxIndication, TxRequest,
    TxResult,
};
