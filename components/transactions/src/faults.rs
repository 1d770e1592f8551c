//! Bad input from a buggy, stale or hostile peer, by kind: [`Fault`], counted in
//! [`FaultCounts`].
//!
//! Invariant: every input the machine drops is counted under exactly one kind, with a
//! `tracing` event; counting never panics (saturating). No fault changes a decision, a vote
//! or a lock.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Kinds of dropped input. Some also happen in honest races (marked *stale*: a late copy of
/// a message whose transaction is over); the others come only from a buggy or hostile peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fault {
    /// A message over the wire bounds of [`messages`](crate::messages) (dropped whole).
    Oversized,
    /// A message about a transaction this node has no state of (*stale* after the
    /// transaction was forgotten).
    UnknownTx,
    /// A message from a node that is not an acceptor of the transaction, or naming an
    /// instance the transaction does not have.
    NotMember,
    /// A Paxos message of a round lower than the one promised (*stale* after a takeover).
    WrongRound,
    /// A second copy of a vote or acceptance already counted (*stale*: re-sends).
    Duplicate,
    /// A round-0 vote contradicting the one already accepted for its instance: a second
    /// proposer of round 0, which an honest participant never is (dropped; the first stays).
    ConflictingVote,
    /// A decision contradicting the one known: never applied, the known one stays.
    ConflictingDecision,
    /// A replica's answer this node did not ask for.
    UnknownReply,
    /// A commit that reached a replica after its lock's lease ended and found a newer
    /// version there (the decision came later than the lease; see `docs/transactions.md`).
    LateCommit,
    /// A request refused because too many transactions are in flight.
    Overloaded,
    /// A number out of range: a round at its maximum, a lease or replication factor other
    /// than this node's, a version that cannot be incremented.
    OutOfRange,
    /// An invariant of this machine did not hold (a bug here, not bad input): the step is
    /// skipped rather than done wrongly, and counted.
    Internal,
}

impl Fault {
    /// Every kind, in declaration order.
    pub const ALL: [Fault; 12] = [
        Fault::Oversized,
        Fault::UnknownTx,
        Fault::NotMember,
        Fault::WrongRound,
        Fault::Duplicate,
        Fault::ConflictingVote,
        Fault::ConflictingDecision,
        Fault::UnknownReply,
        Fault::LateCommit,
        Fault::Overloaded,
        Fault::OutOfRange,
        Fault::Internal,
    ];

    fn index(self) -> usize {
        Fault::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// How many inputs of each [`Fault`] kind were dropped or refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts([u64; Fault::ALL.len()]);

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
        tracing::debug!(fault = ?kind, "transactions: {what}");
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
