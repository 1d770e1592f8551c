//! The relaxed ring's wire messages: a [`RingMessage`] envelope naming the sender's identifier
//! around one [`Body`].
//!
//! ```text
//! join of q between p and r (each step between two peers, no lock over three):
//!
//!   q ──Route{Join}──▶ … ──▶ r          routed to the peer responsible for q's id
//!   q ◀──JoinOk{pred: p, succ_list}── r  r: pred := q; from now q owns (p, q], r owns (q, r]
//!   q ──NewSucc{succ_list}──▶ p          p: succ := q (if q is closer than its successor)
//!   p ──PredNoMore──▶ r                  the join ack: r drops p from its predecessor list
//!   p ──UpdSuccList{ttl}──▶ pred(p) …    successor lists refreshed backwards
//!   (r may instead answer TryLater (it is repairing or not in a ring) or IdInUse)
//!
//! failure of p's successor (and the periodic check-in that repairs lost messages):
//!
//!   p ──Fix──▶ s                         s: first live entry of p's successor list
//!   p ◀──FixOk{succ_list}── s            s accepted p as predecessor
//!   p ◀──FixRedirect{pred, succ_list}── s  s keeps its live predecessor, closer to p: try it
//!   p ◀──NotInRing── s                   s is not in a ring (still joining): p falls back
//!
//! graceful leave of n between p and s:
//!
//!   n ──Leaving{pred: p}──▶ s            s: pred := p, owns (p, s]
//!   n ──LeavingPred{succ: s}──▶ p        p: succ := s, then Fix to s
//!   n ◀──LeaveOk── s                     n is gone
//!
//! routing: Route{key, origin, hops, last} goes from finger to finger (closest preceding the
//! key), to the successor marked `last` once the key is in (self, succ], and backwards into
//! the predecessor list when a `last` message reaches a peer that does not own the key (the
//! owner is in a branch). The owner answers the origin directly: Found, or a Deliver of the
//! payload; a peer that cannot route answers Unroutable. An owner that suspects the origin
//! routes its answer instead (Route{key: origin's id, Found}): the origin may be a peer it
//! cannot reach, such as the predecessor of a branch.
//!
//! a crash told to the peers whose fingers may point at it (x suspects its successor g; for
//! each ideal distance d beyond g, the peers whose slot d may hold g lie in (x − d, g − d]):
//!
//!   x ──Route{FingerGone{gone: g, lower: x − d}, key: g − d}──▶ … ──▶ m   every hop forgets
//!                                        g; m, the last peer at or before the key, too
//!   m ──FingerGone{gone: g, lower}──▶ pred(m) ──▶ …   backwards while after `lower`
//!
//! merge of two rings (x in one, b in the passive list of x, perhaps in another ring):
//!
//!   x ──Route{MergeLookup{nonce}, key: x}──▶ b ─▶ … ─▶ o   routed in b's ring to the owner
//!                                                         of x's id
//!   (o = x: x's own ring — a false alarm, over; b not in a ring: MergeNotInRing)
//!   x ◀──MergeFound{nonce}── o           o is x's successor in b's ring: x takes it as
//!                                        successor if closer, and sends it Fix
//!   o ──FixRedirect{pred: x}──▶ pred(o)  x lies between them: the walk goes backwards by
//!                                        the ordinary Fix / FixRedirect rules
//!   x ──MergeSpread{foreign: o, until, depth}──▶ up to `fanout` peers of x's ring, each given
//!                                        a share (…, until) of the circle to pass it on in
//! ```
//!
//! Lists are bounded: a message carrying a list longer than [`MAX_WIRE_LIST`] is dropped and
//! counted as a fault by the receiver.

use selfman_ports::{Peer, RingId};
use serde::{Deserialize, Serialize};

/// Longest peer list a message may carry. Lists are at most the configured list sizes
/// (validated to be at most this), so a longer one comes from a buggy or hostile peer.
pub const MAX_WIRE_LIST: usize = 64;

/// One relaxed-ring message: the sender's ring identifier and what it says. The sender's
/// network address comes from the network (the delivery's `from`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingMessage<M> {
    /// The sender's identifier.
    pub sender: RingId,
    /// The message.
    pub body: Body<M>,
}

/// What a relaxed-ring message says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body<M> {
    /// A message on its way to the peer responsible for its key.
    Route(Routed<M>),
    /// The owner of `key` answers lookup `req` of the origin: "it is me".
    Found {
        /// The origin's request number.
        req: u64,
        /// The key looked up.
        key: RingId,
        /// Hops the lookup took.
        hops: u8,
    },
    /// A routed message could not reach an owner of its key (the range is unavailable, or
    /// routing met a dead end or its hop limit).
    Unroutable {
        /// The key.
        key: RingId,
        /// Which message it was.
        what: Unrouted,
    },
    /// Join step 1, the responsible `r` to the joiner: "you are in, between `pred` and me".
    JoinOk {
        /// The joiner's attempt this answers.
        attempt: u32,
        /// The joiner's predecessor: `r`'s predecessor before the join.
        pred: Peer,
        /// `r`'s successor list (the joiner's is `r` followed by it).
        succ_list: Vec<Peer>,
    },
    /// Join answer: not now, try again later (the responsible is repairing, or not in a ring).
    TryLater {
        /// The joiner's attempt this answers.
        attempt: u32,
    },
    /// Join answer: `holder` already has the joiner's identifier.
    IdInUse {
        /// The joiner's attempt this answers.
        attempt: u32,
        /// The peer holding the identifier.
        holder: Peer,
    },
    /// Join step 2, the joiner to its predecessor: "I am your successor now".
    NewSucc {
        /// The joiner's successor list.
        succ_list: Vec<Peer>,
    },
    /// Join step 3 (the join ack), the predecessor to its former successor: "I no longer have
    /// you as my successor". Also sent whenever a peer replaces its successor by a closer one.
    PredNoMore,
    /// "Here is my successor list", from a successor to its predecessor; forwarded backwards
    /// while `ttl > 0` and the receiver's list changed.
    UpdSuccList {
        /// The sender's successor list.
        succ_list: Vec<Peer>,
        /// Hops backwards still allowed.
        ttl: u8,
    },
    /// "You are my successor; take me as your predecessor" (after the successor crashed, and
    /// periodically as a check-in).
    Fix,
    /// Answer to `Fix`: accepted; here is my successor list.
    FixOk {
        /// The sender's successor list.
        succ_list: Vec<Peer>,
    },
    /// Answer to `Fix`: not accepted, my live predecessor `pred` lies between us: it is a
    /// better successor for you.
    FixRedirect {
        /// The sender's predecessor.
        pred: Peer,
        /// The sender's successor list (for a peer that stays behind it in a branch).
        succ_list: Vec<Peer>,
    },
    /// Answer to `Fix` from a peer that is not in a ring (a joiner whose `join_ok` was lost):
    /// "do not take me as your successor".
    NotInRing,
    /// A leaving peer to its successor: "take my range; my predecessor is `pred`".
    Leaving {
        /// The leaving peer's predecessor.
        pred: Peer,
    },
    /// A leaving peer to its predecessor: "your successor is `succ` now".
    LeavingPred {
        /// The leaving peer's successor.
        succ: Peer,
        /// The leaving peer's successor list (after `succ`).
        succ_list: Vec<Peer>,
    },
    /// The successor took the leaving peer's range over.
    LeaveOk,
    /// Answer to a `MergeLookup` (probe `nonce`, 0 for one started by a `MergeSpread`) from
    /// the owner of the origin's identifier in the ring it was routed in: "in my ring, I am
    /// your successor".
    MergeFound {
        /// The probe this answers.
        nonce: u64,
    },
    /// Answer to a `MergeLookup` sent to a peer that is not in a ring (restarted, joining or
    /// gone): nothing to merge with.
    MergeNotInRing {
        /// The probe this answers.
        nonce: u64,
    },
    /// "Another ring is reachable through `foreign`: look yourself up through it, and pass
    /// this on over your share of the circle, up to `until`, `depth` more times".
    MergeSpread {
        /// A peer of the other ring.
        foreign: Peer,
        /// The end (exclusive) of the share of the circle the receiver passes it on in.
        until: RingId,
        /// How many more times it is passed on.
        depth: u8,
    },
    /// "`gone` crashed: forget it as a finger, and pass this on to your predecessor if it
    /// lies after `lower`" — the backwards steps of a [`Routable::FingerGone`] notice.
    FingerGone {
        /// The crashed peer.
        gone: Peer,
        /// The start (exclusive) of the stretch of the circle whose peers may hold it.
        lower: RingId,
        /// How many more backwards steps it may take.
        steps: u8,
    },
}

impl<M> Body<M> {
    /// The message's name (for traces and tests).
    pub fn name(&self) -> &'static str {
        match self {
            Body::Route(r) => match r.what {
                Routable::Join { .. } => "Route(Join)",
                Routable::Lookup { .. } => "Route(Lookup)",
                Routable::Payload { .. } => "Route(Payload)",
                Routable::Found { .. } => "Route(Found)",
                Routable::MergeLookup { .. } => "Route(MergeLookup)",
                Routable::FingerGone { .. } => "Route(FingerGone)",
            },
            Body::Found { .. } => "Found",
            Body::Unroutable { .. } => "Unroutable",
            Body::JoinOk { .. } => "JoinOk",
            Body::TryLater { .. } => "TryLater",
            Body::IdInUse { .. } => "IdInUse",
            Body::NewSucc { .. } => "NewSucc",
            Body::PredNoMore => "PredNoMore",
            Body::UpdSuccList { .. } => "UpdSuccList",
            Body::Fix => "Fix",
            Body::FixOk { .. } => "FixOk",
            Body::FixRedirect { .. } => "FixRedirect",
            Body::NotInRing => "NotInRing",
            Body::Leaving { .. } => "Leaving",
            Body::LeavingPred { .. } => "LeavingPred",
            Body::LeaveOk => "LeaveOk",
            Body::MergeFound { .. } => "MergeFound",
            Body::MergeNotInRing { .. } => "MergeNotInRing",
            Body::MergeSpread { .. } => "MergeSpread",
            Body::FingerGone { .. } => "FingerGone",
        }
    }
}

/// A message on its way to the responsible of `key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routed<M> {
    /// Where it goes.
    pub key: RingId,
    /// Who sent it (answers go there directly).
    pub origin: Peer,
    /// Hops taken so far.
    pub hops: u8,
    /// The sender believed the receiver responsible ("last hop"); a receiver that is not goes
    /// backwards into its predecessor list, where a branch may hold the owner.
    pub last: bool,
    /// What it carries.
    pub what: Routable<M>,
}

/// What a [`Routed`] message carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Routable<M> {
    /// Join step 0: the origin asks to join; the key is its own identifier.
    Join {
        /// The joiner's attempt number (answers name it).
        attempt: u32,
    },
    /// A lookup: the owner answers `Found`.
    Lookup {
        /// The origin's request number.
        req: u64,
        /// Answer through the ring rather than directly (a lookup sent again: the first
        /// answer may have been lost on a link from the owner to the origin that does not
        /// work).
        answer_via_ring: bool,
    },
    /// A user payload, delivered at the owner.
    Payload {
        /// The origin's tag.
        tag: u64,
        /// The payload.
        payload: M,
    },
    /// The answer to lookup `req` of the peer whose identifier is the routing key, from the
    /// owner of `key` (the routed message's origin): sent through the ring instead of
    /// directly when the owner suspects the asker (it may be on the other side of a link
    /// that does not work, as a branch's predecessor is).
    Found {
        /// The asker's request number.
        req: u64,
        /// The key looked up.
        key: RingId,
        /// Hops the lookup took.
        hops: u8,
    },
    /// A merge probe (`mlookup`): the key is the origin's identifier; the owner answers
    /// `MergeFound`, and if the owner is the origin itself the two are one ring (a false
    /// alarm).
    MergeLookup {
        /// The origin's probe (0: started by a `MergeSpread`, not by a passive entry).
        nonce: u64,
    },
    /// A finger notice: the origin suspects `gone` (its successor, or a peer right after it),
    /// and the key is `gone`'s identifier minus one ideal finger distance `d`. The peers whose
    /// finger of slot `d` may be `gone` lie in `(lower, key]` (`lower` = the origin's
    /// identifier minus `d`); every peer it passes forgets `gone` as a finger, and the last
    /// peer at or before the key starts the backwards steps ([`Body::FingerGone`]). Nothing
    /// answers it.
    FingerGone {
        /// The suspected peer.
        gone: Peer,
        /// The start (exclusive) of the stretch of the circle whose peers may hold it.
        lower: RingId,
    },
}

impl<M> Routable<M> {
    /// What to name in an [`Body::Unroutable`] answer (`None` for an answer, which is not
    /// answered itself, for a merge probe, whose origin backs off instead, and for a finger
    /// notice, which is best effort).
    pub fn unrouted(&self) -> Option<Unrouted> {
        match self {
            Routable::Join { attempt } => Some(Unrouted::Join { attempt: *attempt }),
            Routable::Lookup { req, .. } => Some(Unrouted::Lookup { req: *req }),
            Routable::Payload { tag, .. } => Some(Unrouted::Payload { tag: *tag }),
            Routable::Found { .. } | Routable::MergeLookup { .. } | Routable::FingerGone { .. } => {
                None
            }
        }
    }
}

/// Which routed message could not be delivered (its payload is not sent back).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unrouted {
    /// A join attempt.
    Join {
        /// The attempt.
        attempt: u32,
    },
    /// A lookup.
    Lookup {
        /// The request number.
        req: u64,
    },
    /// A payload.
    Payload {
        /// The origin's tag.
        tag: u64,
    },
}
