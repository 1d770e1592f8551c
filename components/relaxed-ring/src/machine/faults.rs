//! Bad input from a buggy or stale peer, by kind: [`Fault`], counted in [`FaultCounts`].
//!
//! Invariant: every input the machine drops is counted under exactly one kind, with a
//! `tracing` event; counting never panics (saturating).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Kinds of bad input, counted separately ([`RelaxedRingMachine::faults`](super::RelaxedRingMachine::faults)). Some also happen
/// in honest races between concurrent joins and repairs (marked *stale*); the others come
/// only from a buggy or hostile peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fault {
    /// A peer reference that cannot be right: the unknown incarnation
    /// (`NodeId::UNKNOWN`) as a sender or in a list.
    BadPeer,
    /// Another node claims this peer's identifier.
    IdCollision,
    /// A list longer than [`MAX_WIRE_LIST`](crate::messages::MAX_WIRE_LIST).
    OversizedList,
    /// A routed message reached its hop limit (a routing loop, or badly stale state).
    HopLimit,
    /// A join ack (`PredNoMore`) from a peer that is not a former predecessor (stale when a
    /// repair already replaced it).
    StrangerJoinAck,
    /// A join answer this peer did not ask for: not joining, or an attempt it never made
    /// (stale after a retry succeeded).
    UnexpectedJoinReply,
    /// A `JoinOk` whose predecessor does not lie before this peer, or from a peer that is
    /// not after it.
    BadJoinOk,
    /// A successor list (`UpdSuccList`, `FixOk`) from a peer that is not the successor
    /// (stale when the successor just changed).
    StrangerSuccList,
    /// A `NewSucc` from a peer that is not closer than the successor (stale in concurrent
    /// joins into one gap).
    StaleNewSucc,
    /// A `FixRedirect` to a peer that is not strictly between this peer and the sender (it
    /// would loop), or from a peer that is not the successor.
    BadRedirect,
    /// A leave message from a peer that is not a neighbour (stale after a repair).
    StrangerLeave,
    /// An answer to a request this peer has no record of (late, after its timeout).
    UnknownRequest,
    /// A ring message while this peer is not in a ring (stale).
    NotInRing,
}

impl Fault {
    /// Every kind, in declaration order.
    pub const ALL: [Fault; 13] = [
        Fault::BadPeer,
        Fault::IdCollision,
        Fault::OversizedList,
        Fault::HopLimit,
        Fault::StrangerJoinAck,
        Fault::UnexpectedJoinReply,
        Fault::BadJoinOk,
        Fault::StrangerSuccList,
        Fault::StaleNewSucc,
        Fault::BadRedirect,
        Fault::StrangerLeave,
        Fault::UnknownRequest,
        Fault::NotInRing,
    ];

    pub(super) fn index(self) -> usize {
        Fault::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// How many inputs of each [`Fault`] kind were dropped.
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

    pub(super) fn add(&mut self, kind: Fault) {
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
