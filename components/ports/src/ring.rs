//! A structured overlay: the [`Ring<M>`] port, its identifier space, and the read-only
//! [`RingView`] every implementation exposes for inspection.
//!
//! The identifier space, responsibility and the guarantees are documented on [`Ring`].
//!
//! # Examples
//!
//! ```
//! use selfman_ports::{Range, RingId};
//!
//! // The key "user:42" lands somewhere in the space, the same everywhere.
//! let k = RingId::of_key(b"user:42");
//! assert_eq!(k, RingId::of_key(b"user:42"));
//!
//! // A peer at 100 whose predecessor is at u64::MAX - 5 owns a range that wraps around zero.
//! let range = Range::new(RingId(u64::MAX - 5), RingId(100));
//! assert!(range.contains(RingId(0)) && range.contains(RingId(100)));
//! assert!(!range.contains(RingId(u64::MAX - 5)) && !range.contains(RingId(101)));
//!
//! // The 4 replica keys of k are a quarter of the circle apart.
//! assert_eq!(k.replica(1, 4).distance_from(k), 1 << 62);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use selfman_core::{Component, ComponentDefinition, Event, NodeAddr, Port};
use serde::{Deserialize, Serialize};

use crate::views::Views;

/// An identifier on the ring: a point of the circular space `0..2^64`.
///
/// Ordered as plain integers (for sorting and maps); the circle's order is relative to a
/// point: use [`RingId::distance_from`] and the interval helpers.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct RingId(pub u64);

/// The fixed SipHash key of [`RingId::of_key`]: the ASCII bytes of `selfman-ring-v01`.
const KEY_HASH_K0: u64 = u64::from_le_bytes(*b"selfman-");
const KEY_HASH_K1: u64 = u64::from_le_bytes(*b"ring-v01");

impl RingId {
    /// Number of bits of an identifier: the space has `2^BITS` points.
    pub const BITS: u32 = 64;

    /// The identifier of a key: SipHash-2-4 of `key` under the fixed key `selfman-ring-v01`.
    ///
    /// Stable across nodes, platforms and versions (pinned by tests).
    pub fn of_key(key: &[u8]) -> RingId {
        RingId(siphash24(KEY_HASH_K0, KEY_HASH_K1, key))
    }

    /// A default identifier for a node: the key hash of its text form (`ID@IP:PORT`, see
    /// [`NodeAddr`]). Each incarnation gets its own identifier, so a restarted node does not
    /// collide with what the ring still remembers of its previous life.
    pub fn of_node(node: &NodeAddr) -> RingId {
        RingId::of_key(node.to_string().as_bytes())
    }

    /// How far clockwise `self` is from `origin`: `(self - origin) mod 2^64`.
    ///
    /// `0` means the same point; the largest distance is `2^64 - 1` (just behind `origin`).
    pub fn distance_from(self, origin: RingId) -> u64 {
        self.0.wrapping_sub(origin.0)
    }

    /// The point `d` clockwise from `self` (wrapping).
    pub fn offset(self, d: u64) -> RingId {
        RingId(self.0.wrapping_add(d))
    }

    /// Replica key number `i` of `self` with replication factor `f` (symmetric replication):
    /// `self + ⌊i·2^64/f⌋` (mod `2^64`). Replica 0 is `self`.
    ///
    /// # Panics
    ///
    /// If `f` is 0.
    pub fn replica(self, i: u32, f: u32) -> RingId {
        assert!(f > 0, "a replication factor is at least 1");
        let step = (u128::from(i % f) << 64) / u128::from(f);
        // `step < 2^64` because `i % f < f`.
        self.offset(step as u64)
    }

    /// Whether `self` lies in the open interval `(a, b)` going clockwise from `a`.
    ///
    /// `(a, a)` is the whole circle but `a` (the interval from a point all the way round back
    /// to it).
    pub fn in_open(self, a: RingId, b: RingId) -> bool {
        let d = self.distance_from(a);
        d != 0 && (a == b || d < b.distance_from(a))
    }
}

impl fmt::Display for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// SipHash-2-4 (Aumasson and Bernstein, 2012) of `msg` under the key `(k0, k1)`.
fn siphash24(k0: u64, k1: u64, msg: &[u8]) -> u64 {
    #[inline]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13);
        v[1] ^= v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16);
        v[3] ^= v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21);
        v[3] ^= v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17);
        v[1] ^= v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = msg.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let m = u64::from_le_bytes(w);
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    // The length goes in the top byte, modulo 256, as the reference does.
    last[7] = msg.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// A half-open arc of the circle, `(start, end]`: every identifier after `start`, up to and
/// including `end`, going clockwise. `start == end` is the **whole circle** (the range of a
/// ring of one peer); an empty range is not a `Range` (use `Option<Range>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Range {
    /// The exclusive start: the predecessor's identifier.
    pub start: RingId,
    /// The inclusive end: the owner's identifier.
    pub end: RingId,
}

impl Range {
    /// The range `(start, end]`.
    pub fn new(start: RingId, end: RingId) -> Range {
        Range { start, end }
    }

    /// The whole circle, as owned by a lone peer at `at`: `(at, at]`.
    pub fn full(at: RingId) -> Range {
        Range { start: at, end: at }
    }

    /// Whether this is the whole circle.
    pub fn is_full(&self) -> bool {
        self.start == self.end
    }

    /// Whether `key` is in `(start, end]` (always, for the whole circle).
    pub fn contains(&self, key: RingId) -> bool {
        if self.is_full() {
            return true;
        }
        let d = key.distance_from(self.start);
        d != 0 && d <= self.end.distance_from(self.start)
    }

    /// How many identifiers the range holds: from 1 to `2^64` (the whole circle).
    pub fn size(&self) -> u128 {
        if self.is_full() {
            1u128 << 64
        } else {
            u128::from(self.end.distance_from(self.start))
        }
    }

    /// Whether the two ranges share at least one identifier.
    pub fn overlaps(&self, other: &Range) -> bool {
        // Two arcs overlap iff one contains the other's end point.
        self.contains(other.end) || other.contains(self.end)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}]", self.start, self.end)
    }
}

/// A peer of the ring: its identifier and the node it runs on.
///
/// Two peers are the same peer when both parts are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Peer {
    /// Its position on the ring.
    pub id: RingId,
    /// Where it runs (a concrete incarnation).
    pub addr: NodeAddr,
}

impl Peer {
    /// A peer from its parts.
    pub fn new(id: RingId, addr: NodeAddr) -> Peer {
        Peer { id, addr }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr.addr)
    }
}

/// A structured overlay network of peers on a circle of [`RingId`]s, carrying user payloads of
/// type `M` to the peer responsible for a key.
///
/// The relaxed ring (`selfman-relaxed-ring`) implements it; so can Chord or any other ring
/// overlay.
///
/// # Identifiers
///
/// Peers and keys live in one circular space of `N = 2^64` identifiers, [`RingId`]: arithmetic
/// wraps modulo `2^64`, so symmetric replication places the `f` replicas of key `k` at
/// `k + i·N/f` ([`RingId::replica`]) with no rounding for any `f` that is a power of two (and
/// with a gap of at most one identifier otherwise). Every `u64` is an identifier: there is
/// nothing "outside the space" to validate, only peers to validate (an implementation drops
/// references to peers that cannot exist, such as an unknown incarnation).
///
/// Keys are hashed into the space by [`RingId::of_key`]: SipHash-2-4 (Aumasson and Bernstein)
/// written here, with a fixed key, over the key's bytes. It is the same on every node, platform
/// and version (the test vectors below are pinned; changing them is a breaking change of every
/// stored key's placement). It spreads keys evenly; it is not a defence against an adversary
/// who picks keys to land in one range.
///
/// # Responsibility
///
/// A peer `p` whose predecessor is `pred` is **responsible** for the [`Range`] `(pred, p]`:
/// every key after `pred`, up to and including `p`, wrapping around zero. A ring of one peer
/// is responsible for the whole circle (`(p, p]`).
///
/// # Guarantees
///
/// * **Lookup consistency** (Mejías and Van Roy, "The Relaxed-Ring"): at any time at most one
///   peer is responsible for a key, or the peer responsible for it is temporarily unavailable
///   (it is joining, leaving, or its predecessor crashed and the ring is repairing). This holds
///   for every failure the failure detector reports correctly; a *false* suspicion of a
///   predecessor can make two live peers responsible for one range until the suspicion is
///   corrected (each implementation documents how that window closes).
/// * **A lookup never names a peer that was not responsible when it answered**: only the peer
///   that holds the key in its own range answers [`LookupOutcome::Found`]. While a range is
///   unavailable, lookups of its keys answer [`LookupOutcome::Unavailable`] (at once when the
///   ring knows, else after the implementation's lookup timeout); the user retries later.
///   Routed payloads to such a key are dropped, with [`RingIndication::Undeliverable`] when the
///   ring knows.
/// * **Responsibility changes are told**: every change of the range a peer owns is indicated
///   once, as [`RingIndication::Responsibility`], naming the peer the range came from or went
///   to (replication moves data on these).
///
/// Routing is best effort, like the network under it: a routed payload may be lost. A user
/// that needs delivery acknowledges it end to end.
///
///
/// A peer starts outside any ring: it [`RingRequest::Bootstrap`]s a new one or
/// [`RingRequest::Join`]s one through any member, and is told [`RingIndication::Joined`] with
/// its first range. From then on it answers lookups and delivers routed payloads for its range,
/// and tells its user every change of that range and of its neighbours, until it
/// [`RingRequest::Leave`]s ([`RingIndication::Left`]).
pub struct Ring<M>(PhantomData<fn() -> M>);

impl<M> fmt::Debug for Ring<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ring<{}>", std::any::type_name::<M>())
    }
}

impl<M: Event> Port for Ring<M> {
    type Request = RingRequest<M>;
    type Indication = RingIndication<M>;
}

/// What a user asks of a [`Ring`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingRequest<M> {
    /// Start a new ring with this peer alone in it (responsible for the whole circle). Ignored
    /// unless the peer is outside any ring.
    Bootstrap,
    /// Join the ring that `access` is a member of (`access` may name the node with
    /// [`NodeId::UNKNOWN`](selfman_core::NodeId::UNKNOWN)). Retried until it succeeds,
    /// [`RingIndication::JoinRefused`] says it cannot, or the user asks something else.
    /// Ignored unless the peer is outside any ring.
    Join {
        /// Any member of the ring.
        access: NodeAddr,
    },
    /// Leave the ring gracefully: hand the range over to the successor first, then stop
    /// ([`RingIndication::Left`]).
    Leave,
    /// Find the peer responsible for `key`; answered once by
    /// [`RingIndication::LookupResult`] with the same `tag`.
    Lookup {
        /// The key.
        key: RingId,
        /// The caller's name for this lookup, echoed in the answer.
        tag: u64,
    },
    /// Carry `payload` to the peer responsible for `key`, where it is indicated as
    /// [`RingIndication::Deliver`]. Best effort.
    Route {
        /// The key.
        key: RingId,
        /// The caller's name for this message, echoed in the delivery and in
        /// [`RingIndication::Undeliverable`].
        tag: u64,
        /// What to deliver.
        payload: M,
    },
}

/// What a [`Ring`] tells its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingIndication<M> {
    /// This peer is in a ring now: it owns `range`, between `pred` and `succ`. Followed by the
    /// [`RingIndication::Responsibility`] of that range.
    Joined {
        /// This peer.
        me: Peer,
        /// The range it owns, `(pred, me]`.
        range: Range,
        /// Its predecessor.
        pred: Peer,
        /// Its successor.
        succ: Peer,
    },
    /// Joining cannot succeed; the peer is outside any ring again.
    JoinRefused(JoinRefusal),
    /// The answer to a [`RingRequest::Lookup`].
    LookupResult {
        /// The key looked up.
        key: RingId,
        /// The caller's tag.
        tag: u64,
        /// Who is responsible, or why nobody answered.
        outcome: LookupOutcome,
    },
    /// A payload routed to a key of this peer's range.
    Deliver {
        /// The key it was routed to.
        key: RingId,
        /// The peer that routed it.
        origin: Peer,
        /// The sender's tag.
        tag: u64,
        /// How many overlay hops it took (0 when sent to a key of the sender's own range).
        hops: u32,
        /// The payload.
        payload: M,
    },
    /// A payload this peer routed could not reach a responsible peer (the ring knows it; a
    /// lost message is not reported).
    Undeliverable {
        /// The key.
        key: RingId,
        /// The caller's tag.
        tag: u64,
        /// Why.
        reason: Unavailable,
    },
    /// The range this peer owns changed.
    Responsibility(ResponsibilityChange),
    /// This peer's neighbours changed.
    Neighbours(Neighbours),
    /// This peer has left the ring (after [`RingRequest::Leave`]); it owns nothing and routes
    /// nothing any more.
    Left,
}

/// The answer to a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LookupOutcome {
    /// `peer` held the key in its range when it answered.
    Found {
        /// The responsible peer.
        peer: Peer,
        /// How many overlay hops the lookup took to reach it.
        hops: u32,
    },
    /// No responsible peer answered; retry later.
    Unavailable(Unavailable),
}

/// Why a key's responsible peer could not be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Unavailable {
    /// This peer is not in a ring (not joined yet, leaving, or left).
    NotInRing,
    /// The ring knows the range has no reachable owner right now (its peer is joining,
    /// leaving or crashed and being repaired, or routing met a dead end).
    RangeUnavailable,
    /// No answer within the lookup timeout (messages lost, or a peer on the way crashed).
    Timeout,
    /// Too many lookups are in flight at this peer.
    Overloaded,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unavailable::NotInRing => "this peer is not in a ring",
            Unavailable::RangeUnavailable => "the range is temporarily unavailable",
            Unavailable::Timeout => "no answer in time",
            Unavailable::Overloaded => "too many lookups in flight",
        })
    }
}

/// Why a join cannot succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum JoinRefusal {
    /// Another peer of the ring has this peer's identifier: choose another one.
    IdInUse,
    /// Nobody answered `attempts` attempts in a row, through every access peer this peer
    /// knew (the user's, and ring peers that answered earlier attempts): they crashed, or are
    /// cut off from this peer. Join again through another peer.
    NoAnswer {
        /// The attempts that went unanswered.
        attempts: u32,
    },
}

/// A change of the range a peer owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponsibilityChange {
    /// The whole range the peer owns after the change (`None`: nothing).
    pub now: Option<Range>,
    /// What changed.
    pub change: RangeChange,
}

/// One step of a peer's responsibility.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeChange {
    /// The peer now owns `range` as well.
    Gained {
        /// The part gained.
        range: Range,
        /// The peer that owned it before: the successor that let a joiner in, a predecessor
        /// that left or crashed (its data must then come from replicas), or `None` when a new
        /// ring was bootstrapped.
        from: Option<Peer>,
    },
    /// The peer no longer owns `range`.
    Lost {
        /// The part lost.
        range: Range,
        /// The peer that owns it now (a joiner that became the predecessor, the successor a
        /// leaving peer handed its range to), or `None` if nobody took it over.
        to: Option<Peer>,
    },
}

/// A peer's neighbours, as told by [`RingIndication::Neighbours`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbours {
    /// The successor (`None` when it has none that works).
    pub succ: Option<Peer>,
    /// The predecessor.
    pub pred: Option<Peer>,
    /// The successor list, nearest first (its first entry is the successor).
    pub succ_list: Vec<Peer>,
    /// The predecessor list, nearest first: the peers that may have this one as their
    /// successor (the predecessor, joiners not yet acknowledged, peers of a branch).
    pub pred_list: Vec<Peer>,
}

/// Where a peer stands with respect to a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RingStatus {
    /// Created, not asked to join or bootstrap yet (or its join was refused).
    Outside,
    /// Trying to join.
    Joining,
    /// In a ring: it owns a range.
    InRing,
    /// Handing its range over before leaving; it owns nothing any more.
    Leaving,
    /// Gone.
    Left,
}

/// A read-only picture of one peer's ring state, the same for every implementation of
/// [`Ring`], for checkers and operators.
///
/// Simulation checkers collect one per node at an instant ([`RingViews::snapshot`]) and check
/// lookup consistency (the [`range`](RingView::range)s of live peers do not overlap) and
/// convergence (pointers and lists agree with the sorted order of live peers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingView {
    /// The peer.
    pub me: Peer,
    /// Where it stands.
    pub status: RingStatus,
    /// The range it is responsible for (`None` unless [`RingStatus::InRing`]).
    pub range: Option<Range>,
    /// Its successor.
    pub succ: Option<Peer>,
    /// Its predecessor.
    pub pred: Option<Peer>,
    /// Its successor list, nearest first.
    pub succ_list: Vec<Peer>,
    /// Its predecessor list, nearest first.
    pub pred_list: Vec<Peer>,
    /// The distinct peers of its routing table, nearest first.
    pub fingers: Vec<Peer>,
    /// The nodes it currently suspects (or knows to have left).
    pub crashed: Vec<NodeAddr>,
}

/// A component that can show its [`RingView`] (implemented by every ring component).
pub trait RingInspect {
    /// The current view.
    fn ring_view(&self) -> RingView;
}

/// A shared registry of ring components, from which a global view of every live node is read
/// at one instant (in the simulator: between two steps, so all views belong to the same
/// instant).
///
/// Clone it into each node's wiring code, [`register`](RingViews::register) the node's ring
/// component there, and call [`snapshot`](RingViews::snapshot) from checkers. Components that
/// were destroyed (a crashed node) drop out by themselves.
#[derive(Clone, Default)]
pub struct RingViews {
    views: Views<RingView>,
}

impl fmt::Debug for RingViews {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingViews({} registered)", self.views.len())
    }
}

impl RingViews {
    /// An empty registry.
    pub fn new() -> RingViews {
        RingViews::default()
    }

    /// Registers the ring component of node `node` (replacing an earlier registration of that
    /// node).
    pub fn register<D: ComponentDefinition + RingInspect>(&self, node: NodeAddr, c: &Component<D>) {
        self.views.register(node, c, D::ring_view);
    }

    /// The view of every registered component that still exists, by node. Components that
    /// are gone are forgotten.
    ///
    /// Must not be called from inside a handler of a registered component (it reads each
    /// component's state, which that handler holds).
    pub fn snapshot(&self) -> BTreeMap<NodeAddr, RingView> {
        self.views.snapshot()
    }

    /// How many components are registered (some may be gone since the last snapshot).
    pub fn len(&self) -> usize {
        self.views.len()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::{siphash24, Range, RingId};

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // Appendix A of the SipHash paper and the reference implementation's `vectors.h`:
        // key 00 01 .. 0f, message 00 01 .. (n-1).
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0u8..64).collect();
        assert_eq!(siphash24(k0, k1, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(k0, k1, &msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(k0, k1, &msg[..15]), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash24(k0, k1, &msg[..63]), 0x958a_324c_eb06_4572);
    }

    #[test]
    #[allow(deprecated)]
    fn siphash_agrees_with_std_for_every_length() {
        use std::hash::{Hasher, SipHasher};
        let msg: Vec<u8> = (0u16..300).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..msg.len() {
            let mut h = SipHasher::new_with_keys(0x0123_4567_89ab_cdef, 0xfeed_f00d_dead_beef);
            h.write(&msg[..n]);
            assert_eq!(
                siphash24(0x0123_4567_89ab_cdef, 0xfeed_f00d_dead_beef, &msg[..n]),
                h.finish()
            );
        }
    }

    #[test]
    #[allow(deprecated)]
    fn key_hash_is_pinned() {
        use std::hash::{Hasher, SipHasher};
        // Changing any of these moves every stored key: a breaking change.
        let keys: [&[u8]; 4] =
            [b"", b"a", b"user:42", b"the quick brown fox jumps over the lazy dog"];
        for (k, pinned) in keys.iter().zip(PINNED) {
            let mut h = SipHasher::new_with_keys(super::KEY_HASH_K0, super::KEY_HASH_K1);
            h.write(k);
            assert_eq!(h.finish(), pinned, "std's SipHash-2-4 disagrees on {k:?}");
        }
        assert_eq!(RingId::of_key(b"").0, PINNED[0]);
        assert_eq!(RingId::of_key(b"a").0, PINNED[1]);
        assert_eq!(RingId::of_key(b"user:42").0, PINNED[2]);
        assert_eq!(RingId::of_key(b"the quick brown fox jumps over the lazy dog").0, PINNED[3]);
    }

    /// `of_key` of "", "a", "user:42" and "the quick brown fox jumps over the lazy dog".
    const PINNED: [u64; 4] = [
        0x64ba_d8ff_b5b4_09fe,
        0xa24c_f573_7229_0b00,
        0xbd02_51ca_6175_4ae3,
        0x7e90_01f4_d6eb_1219,
    ];

    #[test]
    fn distance_and_offset_wrap() {
        assert_eq!(RingId(5).distance_from(RingId(3)), 2);
        assert_eq!(RingId(3).distance_from(RingId(5)), u64::MAX - 1);
        assert_eq!(RingId(0).distance_from(RingId(u64::MAX)), 1);
        assert_eq!(RingId(7).distance_from(RingId(7)), 0);
        assert_eq!(RingId(u64::MAX).offset(2), RingId(1));
    }

    #[test]
    fn open_intervals_wrap_and_cover_the_circle_from_one_point() {
        let (a, b) = (RingId(10), RingId(20));
        assert!(RingId(15).in_open(a, b));
        assert!(!RingId(10).in_open(a, b) && !RingId(20).in_open(a, b));
        assert!(!RingId(25).in_open(a, b));
        // Wrapping: (MAX - 1, 2) holds MAX, 0, 1.
        let (a, b) = (RingId(u64::MAX - 1), RingId(2));
        for x in [u64::MAX, 0, 1] {
            assert!(RingId(x).in_open(a, b), "{x}");
        }
        assert!(!RingId(2).in_open(a, b) && !RingId(3).in_open(a, b));
        // (a, a) is everything but a.
        assert!(RingId(0).in_open(RingId(9), RingId(9)));
        assert!(RingId(8).in_open(RingId(9), RingId(9)));
        assert!(!RingId(9).in_open(RingId(9), RingId(9)));
    }

    #[test]
    fn ranges_are_half_open_and_wrap() {
        let r = Range::new(RingId(10), RingId(20));
        assert!(!r.contains(RingId(10)));
        assert!(r.contains(RingId(11)) && r.contains(RingId(20)));
        assert!(!r.contains(RingId(21)) && !r.contains(RingId(0)));
        assert_eq!(r.size(), 10);
        let w = Range::new(RingId(u64::MAX - 1), RingId(1));
        assert!(w.contains(RingId(u64::MAX)) && w.contains(RingId(0)) && w.contains(RingId(1)));
        assert!(!w.contains(RingId(u64::MAX - 1)) && !w.contains(RingId(2)));
        assert_eq!(w.size(), 3);
        // Adjacent ranges do not overlap; a range overlaps anything it contains a point of.
        let next = Range::new(RingId(20), RingId(30));
        assert!(!r.overlaps(&next) && !next.overlaps(&r));
        assert!(r.overlaps(&Range::new(RingId(15), RingId(16))));
        assert!(r.overlaps(&Range::new(RingId(19), RingId(40))));
        assert!(Range::new(RingId(19), RingId(40)).overlaps(&r));
        assert!(w.overlaps(&Range::new(RingId(0), RingId(5))));
        assert!(!w.overlaps(&Range::new(RingId(1), RingId(5))));
    }

    #[test]
    fn a_single_node_owns_the_whole_circle() {
        let full = Range::full(RingId(42));
        assert!(full.is_full());
        for x in [0, 41, 42, 43, u64::MAX] {
            assert!(full.contains(RingId(x)), "{x}");
        }
        assert_eq!(full.size(), 1u128 << 64);
        assert!(full.overlaps(&Range::new(RingId(1), RingId(2))));
        assert!(Range::new(RingId(1), RingId(2)).overlaps(&full));
    }

    #[test]
    fn replica_keys_are_evenly_spaced() {
        let k = RingId(u64::MAX - 10);
        assert_eq!(k.replica(0, 4), k);
        assert_eq!(k.replica(1, 4), k.offset(1 << 62));
        assert_eq!(k.replica(2, 4), k.offset(1 << 63));
        assert_eq!(k.replica(3, 4), k.offset(3 << 62));
        assert_eq!(k.replica(4, 4), k, "replica numbers wrap modulo f");
        assert_eq!(k.replica(1, 3).distance_from(k), ((1u128 << 64) / 3) as u64);
        assert_eq!(k.replica(0, 1), k);
    }
}
