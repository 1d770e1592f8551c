//! Bad input from a buggy or stale peer, by kind: [`Fault`], counted in [`FaultCounts`].
//!
//! Invariant: every input the machine drops or refuses is counted under exactly one kind,
//! with a `tracing` event; counting never panics (saturating). No fault changes a stored
//! version.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Kinds of bad input, counted separately. Some also happen in honest races of moving ranges
/// (marked *stale*); the others come only from a buggy or hostile peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fault {
    /// A message over the wire bounds of [`messages`](crate::messages) (dropped whole).
    Oversized,
    /// A replica number (or replica offset) that does not exist for this `f`.
    BadReplica,
    /// An item outside the range it was sent for (the item is dropped, the rest kept).
    OutsideRange,
    /// A hand-over record older than the one held: it would take the version back.
    VersionBackwards,
    /// A transfer, rebuild or repair message for a session this node does not have (stale
    /// after a timeout or an abort).
    UnknownSession,
    /// A transfer message from a node other than the session's peer.
    StrangerSession,
    /// A transfer batch out of sequence (stale: one before it was lost; the sender re-sends).
    SequenceGap,
    /// A transfer, or one source of a rebuild, made no progress within the timeout.
    TransferTimeout,
    /// An offer of a range this node does not own, or a pull from a node it does not hold a
    /// range for (stale after the ring moved on).
    StaleOffer,
    /// An answer to an operation this node never started (late answers to operations that
    /// completed or timed out are normal and not counted).
    UnknownReply,
    /// Two replicas hold the same version with different values (resolved alike on both
    /// sides by the larger digest).
    Divergent,
    /// An operation for a position this node neither owns nor holds (stale routing;
    /// answered "not responsible").
    Misrouted,
    /// A user request refused because too many operations are in flight.
    Overloaded,
}

impl Fault {
    /// Every kind, in declaration order.
    pub const ALL: [Fault; 13] = [
        Fault::Oversized,
        Fault::BadReplica,
        Fault::OutsideRange,
        Fault::VersionBackwards,
        Fault::UnknownSession,
        Fault::StrangerSession,
        Fault::SequenceGap,
        Fault::TransferTimeout,
        Fault::StaleOffer,
        Fault::UnknownReply,
        Fault::Divergent,
        Fault::Misrouted,
        Fault::Overloaded,
    ];

    fn index(self) -> usize {
        Fault::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// How many inputs of each [`Fault`] kind were dropped or refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts([u64; 13]);

impl FaultCounts {
    /// The count of one kind.
    pub fn get(&self, kind: Fault) -> u64 {
        self.0[kind.index()]
    }

    /// The count of all kinds.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Counts one of `kind`, with a trace event saying what it was.
    pub(crate) fn add(&mut self, kind: Fault, what: &dyn fmt::Display) {
        tracing::warn!(fault = ?kind, "replication: {what}");
        let c = &mut self.0[kind.index()];
        *c = c.saturating_add(1);
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for k in Fault::ALL {
            let n = self.get(k);
            if n > 0 {
                write!(f, "{}{k:?}={n}", if first { "" } else { " " })?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}
