//! The wire messages of Chord, all of them.
//!
//! ```text
//! lookup / route / join / fix-finger     stabilise (every period)        leave
//!   FindSucc ──▶ … ──▶ (recursive)         GetPred ──▶ succ                 Leaving ──▶ succ, pred
//!   ◀── Found (to the origin)              ◀── PredIs { pred, succ_list }
//!   Route ──▶ … ──▶ owner: delivered       Notify ──▶ succ ("I may be your predecessor")
//!   ◀── RouteFailed (hop limit)            ◀── Gone (from a peer that left)
//! ```

use selfman_ports::{Peer, RingId};
use serde::{Deserialize, Serialize};

/// What a [`ChordMessage::FindSucc`] is for (answered to its origin either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// A user's lookup.
    Lookup,
    /// A joiner looking for its successor.
    Join,
    /// Refreshing finger `i` (its start is `me + 2^i`).
    Finger(u8),
    /// The ring check ([`ChordConfig::check_ring`](crate::ChordConfig::check_ring)): the
    /// origin's own identifier, looked up through another peer than its successor.
    Check,
}

/// A message between Chord peers, carrying user payloads of type `M`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChordMessage<M> {
    /// Find the successor of `key` (the peer responsible for it), recursively: each peer
    /// forwards to its closest preceding live peer until one finds the key between itself and
    /// its successor, and answers the origin with [`ChordMessage::Found`].
    FindSucc {
        /// The origin's request number, echoed in the answer.
        req: u64,
        /// Who asked.
        origin: Peer,
        /// The key.
        key: RingId,
        /// Hops so far.
        hops: u32,
        /// What it is for.
        purpose: Purpose,
    },
    /// The answer to a [`ChordMessage::FindSucc`].
    Found {
        /// The origin's request number.
        req: u64,
        /// The successor of the key.
        owner: Peer,
        /// Hops the search took.
        hops: u32,
    },
    /// A user payload on its way to the peer responsible for `key`.
    Route {
        /// The key.
        key: RingId,
        /// The peer that routed it.
        origin: Peer,
        /// The sender's tag.
        tag: u64,
        /// Hops so far.
        hops: u32,
        /// The payload.
        payload: M,
    },
    /// A routed payload exceeded the hop limit (told to its origin).
    RouteFailed {
        /// The key.
        key: RingId,
        /// The sender's tag.
        tag: u64,
    },
    /// Stabilisation: "who is your predecessor, and what is your successor list?"
    GetPred,
    /// The answer to [`ChordMessage::GetPred`].
    PredIs {
        /// The answering peer.
        me: Peer,
        /// Its predecessor.
        pred: Option<Peer>,
        /// Its successor list.
        succ_list: Vec<Peer>,
    },
    /// "I may be your predecessor" (Chord's `notify`).
    Notify {
        /// The sender.
        me: Peer,
    },
    /// "I am in no ring (any more): forget me" — the answer of a peer that left (or never
    /// joined) to ring traffic, so that fingers and lists pointing at it are dropped.
    Gone {
        /// The sender.
        me: Peer,
    },
    /// The sender leaves: its successor takes its range (and its predecessor, `pred`); its
    /// predecessor takes its successor list.
    Leaving {
        /// The leaving peer.
        me: Peer,
        /// Its predecessor.
        pred: Option<Peer>,
        /// Its successor list.
        succ_list: Vec<Peer>,
    },
}
