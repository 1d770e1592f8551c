//! The participant of Paxos commit (a "TP" in Scalaris): the node a `Prepare` was routed to,
//! acting for one replica of one item. It turns the prepare into the replica's vote
//! (`ReplicaOp::Vote`, which checks the version, takes the lock with its lease and remembers
//! the vote) and proposes that vote as the round-0 value of its instance to every acceptor;
//! once told the decision it applies it (`Commit` or `Release`) and says `Applied`.
//!
//! Invariants:
//! * a participant proposes in round 0 only a vote its replica **remembers** (`Prepared`,
//!   `Refused(Version)`, `Refused(Locked)`), so every participant that acts for the same
//!   replica — a re-sent prepare, a range that moved — proposes the same value;
//! * a replica that abstains (rebuilt recently) or holds too many votes gives no round-0
//!   value: the participant says `NoVote` and the instance is decided by a higher round;
//! * a participant never waits forever: without a decision it asks the acceptors, and it
//!   forgets the transaction once the lock's lease has surely ended (twice the lease);
//! * it says `Applied` only once its replica really applied the decision (then the node
//!   remembers the finished `(tx, slot)` in a tombstone, to say it again to a re-sent
//!   decision and to ignore a replayed prepare); a replica that does not answer makes it say
//!   `Failed`, and the decision's deliverer keeps sending it.

use selfman_core::{NodeAddr, Time};
use selfman_ports::{LockMode, Refusal, Version, Vote};

use crate::messages::Value;

/// A replica's vote as a round-0 value: `None` where the replica gives none.
pub fn round_zero_value(vote: Vote) -> Option<Value> {
    match vote {
        Vote::Prepared => Some(Value::Prepared),
        Vote::Refused(Refusal::Version(_) | Refusal::Locked) => Some(Value::Aborted),
        Vote::Refused(Refusal::TooManyVotes) | Vote::Abstain => None,
    }
}

/// Where a participant is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Asked its replica for the vote (replication tag).
    Voting(u64),
    /// Proposed its vote (or `NoVote`); waiting for the decision.
    Voted(Option<Value>),
    /// Applying the decision at its replica (replication tag); then `Applied` to `to`.
    Applying {
        /// The replication tag.
        tag: u64,
        /// The decision.
        commit: bool,
        /// Who told it.
        to: NodeAddr,
    },
    /// Its replica did not answer the apply, [`REPLICA_TRIES`]` · 2` times: it said `Failed`
    /// and applies again when the decision comes again (or it asks for it).
    ApplyFailed {
        /// The decision.
        commit: bool,
    },
}

/// One participant: one replica of one item of one transaction.
#[derive(Clone, Debug)]
pub struct Participant {
    pub(crate) key: Vec<u8>,
    pub(crate) mode: LockMode,
    /// The version the vote checks (the transaction's read).
    pub(crate) read: Version,
    pub(crate) write: Option<Option<Vec<u8>>>,
    pub(crate) acceptors: std::sync::Arc<[NodeAddr]>,
    pub(crate) lease_ms: u64,
    pub(crate) stage: Stage,
    /// Whether its vote (or `NoVote`) was sent: a vote is held back while another
    /// participant of the same transaction at this node still waits for its replica, so the
    /// votes go out together, one message per acceptor (a held vote goes at the next
    /// `retransmit` in any case).
    pub(crate) announced: bool,
    /// Whether its replica voted prepared (so holds a lock for the transaction).
    pub(crate) locked: bool,
    /// Replica operations that failed (unreachable replica) so far.
    pub(crate) failures: u32,
    pub(crate) created: Time,
    pub(crate) last_ask: Time,
}

/// Replica operations a participant tries before it gives up its vote (`NoVote`) or its
/// apply (the replica's lease and anti-entropy finish it).
pub(crate) const REPLICA_TRIES: u32 = 3;

impl Participant {
    /// What to install on commit: `(version, value)` if this item is written (and its
    /// version can be incremented: a prepare reading `u64::MAX` is refused before).
    pub(crate) fn commit_write(&self) -> Option<(Version, Option<Vec<u8>>)> {
        match (&self.write, self.mode) {
            (Some(v), LockMode::Write) => Some((Version(self.read.0.checked_add(1)?), v.clone())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use selfman_ports::{Refusal, Version, Vote};

    use super::round_zero_value;
    use crate::messages::Value;

    #[test]
    fn only_remembered_votes_are_round_zero_values() {
        assert_eq!(round_zero_value(Vote::Prepared), Some(Value::Prepared));
        assert_eq!(round_zero_value(Vote::Refused(Refusal::Locked)), Some(Value::Aborted));
        assert_eq!(
            round_zero_value(Vote::Refused(Refusal::Version(Version(3)))),
            Some(Value::Aborted)
        );
        assert_eq!(round_zero_value(Vote::Refused(Refusal::TooManyVotes)), None);
        assert_eq!(round_zero_value(Vote::Abstain), None);
    }
}
