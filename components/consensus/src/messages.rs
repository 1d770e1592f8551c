//! The wire messages of the three protocols, one enum each.
//!
//! Every epoch-consensus message carries the timestamp of the epoch it belongs to; a process
//! handles only messages of the epoch it is in (later ones wait until it gets there, earlier
//! ones are dropped). Batches (`Vec`s of instances) keep one message per step and destination
//! however many instances are in flight.

use selfman_ports::{EpochState, InstanceId};
use serde::{Deserialize, Serialize};

/// Epoch change (CGR Algorithm 5.5, with retransmission): `NewEpoch` goes by best-effort
/// broadcast (and point to point when re-sent to one process); `Nack` and `Nudge` go point to
/// point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EcMessage {
    /// The sender, trusting itself, asks everyone to start epoch `ts` led by it.
    NewEpoch {
        /// The epoch's timestamp (the sender's rank modulo the group size).
        ts: u64,
    },
    /// Answer to `NewEpoch { ts }` that was not accepted: the sender is not trusted, or `ts`
    /// is not above `lastts`, the last epoch the refusing process started.
    Nack {
        /// The refused timestamp (a leader ignores refusals of attempts it has given up).
        ts: u64,
        /// The refusing process's latest epoch.
        lastts: u64,
    },
    /// "I trust you, but I am not in an epoch led by you; my latest epoch is `lastts`": sent
    /// to the trusted process, which answers with its current `NewEpoch` or a fresh one.
    Nudge {
        /// The sender's latest epoch.
        lastts: u64,
    },
}

/// Read/write epoch consensus (CGR Algorithm 5.6), many instances at once, with the leader
/// retransmitting until every member has answered. `Read`, `Write` and `Decided` go from the
/// leader to the members (broadcast, or point to point when re-sent); the others answer the
/// leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EpMessage<V> {
    /// Leader: "send me your states".
    Read {
        /// The epoch.
        ets: u64,
    },
    /// Member: every instance state it holds that is not empty.
    State {
        /// The epoch.
        ets: u64,
        /// The states.
        states: Vec<(InstanceId, EpochState<V>)>,
    },
    /// Leader: "accept these values in this epoch".
    Write {
        /// The epoch.
        ets: u64,
        /// Instance and value to accept.
        values: Vec<(InstanceId, V)>,
    },
    /// Member: it accepted the leader's values of these instances.
    Accept {
        /// The epoch.
        ets: u64,
        /// The instances.
        ids: Vec<InstanceId>,
    },
    /// Leader: a majority accepted these values; decide them.
    Decided {
        /// The epoch.
        ets: u64,
        /// Instance and decided value.
        values: Vec<(InstanceId, V)>,
    },
    /// Member: it decided these instances (the leader stops re-sending them).
    DecidedAck {
        /// The epoch.
        ets: u64,
        /// The instances.
        ids: Vec<InstanceId>,
    },
}

impl<V> EpMessage<V> {
    /// The epoch the message belongs to.
    pub fn ets(&self) -> u64 {
        match self {
            EpMessage::Read { ets }
            | EpMessage::State { ets, .. }
            | EpMessage::Write { ets, .. }
            | EpMessage::Accept { ets, .. }
            | EpMessage::Decided { ets, .. }
            | EpMessage::DecidedAck { ets, .. } => *ets,
        }
    }
}

/// Uniform consensus, point to point: how proposals made at any process reach the leader, and
/// how a proposer that missed the decision of its own instance learns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UcMessage<V> {
    /// A member's proposals, sent to the leader of its current epoch (re-sent until decided).
    Forward {
        /// Instance and proposed value.
        values: Vec<(InstanceId, V)>,
    },
    /// Decisions the sender knows, answering a `Forward` of already decided instances.
    Decided {
        /// Instance and decided value.
        values: Vec<(InstanceId, V)>,
    },
}
