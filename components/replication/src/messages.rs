//! The replication wire messages: [`ReplMessage`], and the bounds every receiver checks.
//!
//! ```text
//! operations (a quorum read is f of them, one per replica key):
//!   c ──Route{key: k_i, Op{id, reply_to: c, key, replica: i, op}}──▶ … ──▶ owner of k_i
//!   c ◀──OpReply{id, replica, Done(outcome) | NotReady | NotResponsible}── owner
//!   while a range moves, its new owner q forwards to the old holder r (forwards = 1), and r,
//!   once it sent its last batch, bounces it back to q (forwards = 2)
//!
//! hand-over of range R from r (old holder) to q (new owner): Scalaris' slide
//!   r ──Offer{s, R}──▶ q            (q ──Pull{R}──▶ r if no offer came in time)
//!   r ◀──Accept{s}── q              (or Decline: q does not own R)
//!   r ──Items{s, seq, items}──▶ q   the range in order, then every record changed meanwhile
//!   r ◀──ItemsAck{s, seq}── q       (a window of unacknowledged batches, re-sent on timeout)
//!   r ──Done{s, seq, items}──▶ q    q serves R from now on
//!   r ◀──DoneAck{s}── q             r drops R
//!
//! rebuild of range R at s after its holder crashed, from the replicas `j` positions on:
//!   s ──Route{R.start+d_j+1, RangeRead{s, j, R+d_j, after}}──▶ owner o
//!   s ◀──RangeItems{s, j, after, covered, items}── o   what o serves of (after, covered]
//!   s ◀──RangeNotReady{s, j, after}── o                o is receiving or rebuilding it
//!   … repeated from `covered`, until the whole interval is read
//!
//! anti-entropy between replica ranges M (at i) and M+d_j (at the peer p holding it):
//!   i ──Route{SyncStart{s, M+d_j}}──▶ p; i ◀──SyncCovered{s, covered, root}── p
//!   i ──SyncHashes{s, seg, paths}──▶ p; i ◀──SyncNodes{s, hashes}── p     descend where hashes differ
//!   i ──SyncDigests{s, seg, paths}──▶ p; i ◀──SyncLeaves{s, prints}── p  2-byte prints per replica
//!   i ──SyncFetch{s, seg, prints, offers}──▶ p; i ◀──SyncItems{s, items}── p  p's unlike replicas
//!                                              (but none that i offers newer)
//!   i ──SyncPush{s, seg, items}──▶ p                                    what i has newer or p lacks
//! ```
//!
//! Every message is checked on receipt by [`ReplMessage::check`]: keys, values, batches,
//! votes, paths and digests within the bounds below, replica numbers below `f`. A message that
//! fails is dropped whole and counted ([`Fault::Oversized`] / [`Fault::BadReplica`]). Items are
//! then checked one by one against the range they are claimed for.

use selfman_core::NodeAddr;
use selfman_ports::{LockMode, Range, ReplicaOp, ReplicaOutcome, RingId, TxId, Version, Vote};
use serde::{Deserialize, Serialize};

use crate::faults::Fault;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 16 * 1024;
/// Longest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;
/// Most items in one transfer message (the configured batch is at most this).
pub const MAX_BATCH_ITEMS: usize = 4096;
/// Most bytes of keys and values in one transfer message (one larger item may go alone).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Most votes one record holds (and one item carries): enough for many readers of a hot item.
pub const MAX_VOTES: usize = 16;
/// Most tree nodes in one anti-entropy message.
pub const MAX_SYNC_NODES: usize = 1024;
/// Most item digests in one anti-entropy answer.
pub const MAX_SYNC_DIGESTS: usize = 4096;
/// Most keys one anti-entropy fetch asks for.
pub const MAX_FETCH_KEYS: usize = 1024;
/// Deepest anti-entropy tree level: at 4^31 parts a whole-circle segment still has 4
/// identifiers per part, and the node arithmetic fits in 128 bits.
pub const MAX_SYNC_LEVEL: u8 = 31;
/// How many times an operation may be passed on by peers (forwarded to a range's old holder,
/// bounced back once).
pub const MAX_FORWARDS: u8 = 2;

/// One replication message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplMessage {
    /// An operation at one replica (routed to its replica key, or forwarded).
    Op(OpRequest),
    /// A replica's answer to the coordinator.
    OpReply {
        /// The coordinator's operation number.
        id: u64,
        /// The replica answering.
        replica: u32,
        /// What happened.
        result: OpResult,
    },
    /// Hand-over: the old holder offers `range`.
    Offer {
        /// The sender's transfer number.
        session: u64,
        /// The range.
        range: Range,
    },
    /// Hand-over: the new owner takes the offer.
    Accept {
        /// The transfer.
        session: u64,
    },
    /// Hand-over: the new owner does not own the offered range (stale offer).
    Decline {
        /// The transfer.
        session: u64,
    },
    /// Hand-over: a batch of records, in sequence.
    Items {
        /// The transfer.
        session: u64,
        /// Its number in the transfer, from 0.
        seq: u64,
        /// The records (with their votes).
        items: Vec<WireItem>,
    },
    /// Hand-over: batch `seq` arrived (and every one before it).
    ItemsAck {
        /// The transfer.
        session: u64,
        /// The batch.
        seq: u64,
    },
    /// Hand-over: nothing follows batch `seq - 1`; `items` were sent in all.
    Done {
        /// The transfer.
        session: u64,
        /// The number after the last batch.
        seq: u64,
        /// Items sent in the transfer.
        items: u64,
    },
    /// Hand-over: the new owner has everything and serves the range.
    DoneAck {
        /// The transfer.
        session: u64,
    },
    /// Hand-over: the new owner of `range` asks the old holder to offer it (again).
    Pull {
        /// The range.
        range: Range,
    },
    /// Rebuild: read the replicas of `interval` after `after` (routed to `after + 1`).
    RangeRead {
        /// The reader's rebuild number.
        session: u64,
        /// Which replica offset this interval is (`1..f`).
        shift: u32,
        /// The interval, in the answering peer's positions.
        interval: Range,
        /// Read from just after this identifier.
        after: RingId,
    },
    /// Rebuild: the replicas of `(after, covered]` (a part of the interval, from its start).
    RangeItems {
        /// The rebuild.
        session: u64,
        /// The replica offset.
        shift: u32,
        /// The interval asked for.
        interval: Range,
        /// Where this part starts (exclusive).
        after: RingId,
        /// Where it ends (inclusive): the next read starts after it.
        covered: RingId,
        /// The records (without votes: those are each replica's own).
        items: Vec<WireItem>,
    },
    /// Rebuild: the peer owning `after + 1` cannot serve it yet.
    RangeNotReady {
        /// The rebuild.
        session: u64,
        /// The replica offset.
        shift: u32,
        /// The position asked for.
        after: RingId,
    },
    /// Anti-entropy: compare `segment` (the receiver's positions) from its start.
    SyncStart {
        /// The initiator's round number.
        session: u64,
        /// The request this answers or is (echoed in the answer).
        req: u64,
        /// The interval.
        segment: Range,
    },
    /// Anti-entropy: the part of the segment the receiver serves, from its start, with the
    /// hash of its tree's root (`None`: it serves none of it).
    SyncCovered {
        /// The round.
        session: u64,
        /// The request this answers or is (echoed in the answer).
        req: u64,
        /// The part served, and its root's hash.
        covered: Option<(Range, RootHash)>,
    },
    /// Anti-entropy: the hashes of these nodes' children, please.
    SyncHashes {
        /// The round.
        session: u64,
        /// The request this answers or is (echoed in the answer).
        req: u64,
        /// The segment (receiver's positions) the paths are relative to.
        segment: Range,
        /// The nodes whose children are wanted (on the wire as deltas: [`path_wire`]).
        #[serde(with = "path_wire")]
        paths: Vec<Path>,
    },
    /// Anti-entropy: the hashes of the children of the nodes asked for, four per node, in
    /// the order asked (a child covering nothing hashes to zero).
    SyncNodes {
        /// The round.
        session: u64,
        /// The request this answers or is (echoed in the answer).
        req: u64,
        /// The children's hashes, per node asked for.
        hashes: Vec<[NodeHash; 4]>,
    },
    /// Anti-entropy: the replicas' fingerprints of these leaves, please.
    SyncDigests {
        /// The round.
        session: u64,
        /// The request this answers or is (echoed in the answer).
        req: u64,
        /// The segment the paths are relative to.
        segment: Range,
        /// The leaves (on the wire as deltas: [`path_wire`]).
        #[serde(with = "path_wire")]
        paths: Vec<Path>,
    },
    /// Anti-entropy: per leaf asked for, in the order asked, its replicas' fingerprints (or,
    /// for a leaf over the bound, its children's hashes).
    SyncLeaves {
        /// The round.
        session: u64,
        /// The request this answers or is (echoed in the answer).
        req: u64,
        /// One answer per leaf asked for.
        leaves: Vec<LeafAnswer>,
    },
    /// Anti-entropy: send the replicas of these leaves whose fingerprints are listed (the
    /// ones the sender does not hold alike), except those the sender offers newer.
    SyncFetch {
        /// The round.
        session: u64,
        /// The request this answers or is (echoed in the answer).
        req: u64,
        /// The segment the paths are relative to.
        segment: Range,
        /// Per leaf, the fingerprints wanted and the sender's own unlike replicas (on the
        /// wire the leaves' paths first, as deltas: [`fetch_wire`]).
        #[serde(with = "fetch_wire")]
        wanted: Vec<LeafFetch>,
    },
    /// Anti-entropy: replicas asked for.
    SyncItems {
        /// The round.
        session: u64,
        /// The request this answers or is (echoed in the answer).
        req: u64,
        /// The records (without votes).
        items: Vec<WireItem>,
    },
    /// Anti-entropy: replicas the sender holds newer (the receiver's replica numbers).
    SyncPush {
        /// The round.
        session: u64,
        /// The segment they are in.
        segment: Range,
        /// The records (without votes).
        items: Vec<WireItem>,
    },
}

/// An operation at one replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRequest {
    /// The coordinator's operation number.
    pub id: u64,
    /// The coordinator.
    pub reply_to: NodeAddr,
    /// The item's key.
    pub key: Vec<u8>,
    /// The replica.
    pub replica: u32,
    /// The operation.
    pub op: ReplicaOp,
    /// How many times peers passed it on (at most [`MAX_FORWARDS`]).
    pub forwards: u8,
}

/// A replica's answer to an operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// Applied (or read), with this outcome.
    Done(ReplicaOutcome),
    /// The replica's range is moving or being rebuilt here: ask again later.
    NotReady,
    /// This peer is not responsible for the replica key (stale routing): ask again later.
    NotResponsible,
}

/// One replica on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireItem {
    /// The item's key (its position follows from the key and the replica number).
    pub key: Vec<u8>,
    /// The replica number, in the sender's numbering.
    pub replica: u32,
    /// The version.
    pub version: Version,
    /// The value.
    pub value: Option<Vec<u8>>,
    /// The votes (hand-over only).
    pub votes: Vec<WireVote>,
}

impl WireItem {
    /// What a movement counts as moved for this item: its key and value bytes (framing,
    /// version and votes not counted).
    pub(crate) fn data_bytes(&self) -> u64 {
        (self.key.len() + self.value.as_ref().map_or(0, Vec::len)) as u64
    }
}

/// A vote on the wire: its lease as time left, since clocks differ between nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireVote {
    /// The transaction.
    pub tx: TxId,
    /// The lock asked for.
    pub mode: LockMode,
    /// The vote.
    pub vote: Vote,
    /// Milliseconds of lease left.
    pub lease_left_ms: u64,
}

/// A node of an anti-entropy tree: the `index`-th of the `4^level` equal parts of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Path {
    /// Depth (0: the whole segment).
    pub level: u8,
    /// Which part at that depth.
    pub index: u64,
}

/// A tree node's fingerprint in one repair round: the wrapping sum of the low 16 bits of its
/// replicas' salted digests, little-endian (an empty node sums to zero). Two bytes on the
/// wire: a node below the root is asked for only when its parent differs, and a collision
/// (one in 65,536) hides a difference for one round only.
pub type NodeHash = [u8; 2];

/// A segment's root fingerprint in one repair round: as [`NodeHash`] over 32 bits, so that a
/// round over identical replicas (the common case) is told apart from a differing one
/// almost surely. Four bytes on the wire.
pub type RootHash = [u8; 4];

/// One replica's fingerprint in one repair round's leaf: two bytes of its salted digest.
/// Short on purpose: a leaf lists a dozen or so, and a collision only hides a difference
/// until the next round, which uses another salt.
pub type ItemPrint = [u8; 2];

/// One leaf of a [`ReplMessage::SyncFetch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafFetch {
    /// The leaf.
    pub leaf: Path,
    /// The answering side's fingerprints (from its leaf answer) the sender does not hold.
    pub prints: Vec<ItemPrint>,
    /// The sender's replicas in the leaf that the answering side did not list, as the
    /// round's 2-byte print of the key alone and the version held: a replica the answering
    /// side holds under an offered key print at an older version is not sent (the sender
    /// pushes its newer one instead), so a stale copy never travels.
    pub offers: Vec<(ItemPrint, Version)>,
}

/// The answer for one leaf asked for in [`ReplMessage::SyncDigests`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeafAnswer {
    /// The fingerprints of the replicas in the leaf, in store order.
    Prints(Vec<ItemPrint>),
    /// The leaf holds too many replicas to list: its four children's hashes.
    Children([NodeHash; 4]),
}

pub mod path_wire {
    //! A list of tree paths on the wire as sorted deltas: one varint token per path where it
    //! is at the level of the one before and not before it (`delta × 2`: a delta of
    //! the index), and two where it starts a run (`level × 2 + 1`, then the absolute index).
    //! A request lists the differing nodes of one level in order, so most paths cost one
    //! byte (an index of a deep level alone takes 3–5). Any list encodes (an unsorted one
    //! only costs more) and decodes to itself; a malformed one is a decoding error.

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Path;

    /// The tokens of `paths`.
    pub fn encode(paths: &[Path]) -> Vec<u64> {
        let mut out = Vec::with_capacity(paths.len() + 2);
        let mut at: Option<Path> = None;
        for p in paths {
            match at {
                Some(a)
                    if a.level == p.level && p.index >= a.index && p.index - a.index < 1 << 63 =>
                {
                    out.push((p.index - a.index) << 1);
                }
                _ => {
                    out.push((u64::from(p.level) << 1) | 1);
                    out.push(p.index);
                }
            }
            at = Some(*p);
        }
        out
    }

    /// The paths of `tokens`.
    ///
    /// # Errors
    ///
    /// What is malformed: a level over 255, a run without its index, a delta before any run,
    /// an index past `u64::MAX`.
    pub fn decode(tokens: &[u64]) -> Result<Vec<Path>, &'static str> {
        let mut out = Vec::with_capacity(tokens.len());
        let mut at: Option<Path> = None;
        let mut it = tokens.iter();
        while let Some(&t) = it.next() {
            let p = if t & 1 == 1 {
                let level = u8::try_from(t >> 1).map_err(|_| "a path level over 255")?;
                let index = *it.next().ok_or("a path run without its index")?;
                Path { level, index }
            } else {
                let a = at.ok_or("a path delta before any path")?;
                let index = a.index.checked_add(t >> 1).ok_or("a path index past u64::MAX")?;
                Path { level: a.level, index }
            };
            out.push(p);
            at = Some(p);
        }
        Ok(out)
    }

    /// Serde: writes `paths` as their tokens.
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<S: Serializer>(paths: &[Path], s: S) -> Result<S::Ok, S::Error> {
        encode(paths).serialize(s)
    }

    /// Serde: reads paths written by [`serialize`].
    ///
    /// # Errors
    ///
    /// The deserializer's, or a malformed list ([`decode`]).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Path>, D::Error> {
        let tokens = Vec::<u64>::deserialize(d)?;
        decode(&tokens).map_err(D::Error::custom)
    }
}

pub mod fetch_wire {
    //! A fetch's leaves on the wire: their paths first, as [`path_wire`] deltas, then each
    //! leaf's prints and offers in the same order.

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{path_wire, ItemPrint, LeafFetch, Path};
    use selfman_ports::Version;

    type Offer = (ItemPrint, Version);
    type Rest = (Vec<ItemPrint>, Vec<Offer>);

    /// Serde: writes the leaves' paths as deltas, then their prints and offers.
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<S: Serializer>(wanted: &[LeafFetch], s: S) -> Result<S::Ok, S::Error> {
        let paths: Vec<Path> = wanted.iter().map(|l| l.leaf).collect();
        let rest: Vec<(&[ItemPrint], &[Offer])> =
            wanted.iter().map(|l| (&l.prints[..], &l.offers[..])).collect();
        (path_wire::encode(&paths), rest).serialize(s)
    }

    /// Serde: reads leaves written by [`serialize`].
    ///
    /// # Errors
    ///
    /// The deserializer's, a malformed path list, or not as many paths as leaves.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<LeafFetch>, D::Error> {
        let (tokens, rest) = <(Vec<u64>, Vec<Rest>)>::deserialize(d)?;
        let paths = path_wire::decode(&tokens).map_err(D::Error::custom)?;
        if paths.len() != rest.len() {
            return Err(D::Error::custom("a fetch with not as many paths as leaves"));
        }
        let leaves = paths.into_iter().zip(rest);
        Ok(leaves.map(|(leaf, (prints, offers))| LeafFetch { leaf, prints, offers }).collect())
    }
}

fn op_ok(op: &ReplicaOp) -> bool {
    match op {
        ReplicaOp::Write { value, .. } | ReplicaOp::Commit { value, .. } => {
            value.as_ref().is_none_or(|v| v.len() <= MAX_VALUE_BYTES)
        }
        _ => true,
    }
}

fn items_ok(items: &[WireItem], f: u32) -> Result<(), Fault> {
    if items.len() > MAX_BATCH_ITEMS {
        return Err(Fault::Oversized);
    }
    let mut bytes = 0usize;
    for i in items {
        if i.key.len() > MAX_KEY_BYTES
            || i.value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_BYTES)
            || i.votes.len() > MAX_VOTES
        {
            return Err(Fault::Oversized);
        }
        if i.replica >= f {
            return Err(Fault::BadReplica);
        }
        bytes += i.key.len() + i.value.as_ref().map_or(0, Vec::len);
    }
    // One item may exceed the batch bound alone; several may not.
    if items.len() > 1 && bytes > MAX_BATCH_BYTES {
        return Err(Fault::Oversized);
    }
    Ok(())
}

fn paths_ok(paths: &[Path]) -> Result<(), Fault> {
    if paths.len() > MAX_SYNC_NODES || paths.iter().any(|p| p.level > MAX_SYNC_LEVEL) {
        return Err(Fault::Oversized);
    }
    Ok(())
}

impl ReplMessage {
    /// Checks the bounds of the module documentation for a ring with `f` replicas.
    ///
    /// # Errors
    ///
    /// The kind of fault: [`Fault::Oversized`] or [`Fault::BadReplica`].
    pub fn check(&self, f: u32) -> Result<(), Fault> {
        match self {
            ReplMessage::Op(r) => {
                if r.key.len() > MAX_KEY_BYTES || !op_ok(&r.op) || r.forwards > MAX_FORWARDS {
                    return Err(Fault::Oversized);
                }
                if r.replica >= f {
                    return Err(Fault::BadReplica);
                }
                Ok(())
            }
            ReplMessage::OpReply { replica, result, .. } => {
                if *replica >= f {
                    return Err(Fault::BadReplica);
                }
                if let OpResult::Done(ReplicaOutcome::Record { value: Some(v), .. }) = result {
                    if v.len() > MAX_VALUE_BYTES {
                        return Err(Fault::Oversized);
                    }
                }
                Ok(())
            }
            ReplMessage::Items { items, .. }
            | ReplMessage::SyncItems { items, .. }
            | ReplMessage::SyncPush { items, .. } => items_ok(items, f),
            ReplMessage::RangeItems { items, shift, .. } => {
                if *shift == 0 || *shift >= f {
                    return Err(Fault::BadReplica);
                }
                items_ok(items, f)
            }
            ReplMessage::RangeRead { shift, .. } | ReplMessage::RangeNotReady { shift, .. } => {
                if *shift == 0 || *shift >= f {
                    return Err(Fault::BadReplica);
                }
                Ok(())
            }
            ReplMessage::SyncHashes { paths, .. } | ReplMessage::SyncDigests { paths, .. } => {
                paths_ok(paths)
            }
            ReplMessage::SyncNodes { hashes, .. } => {
                if hashes.len() > MAX_SYNC_NODES {
                    return Err(Fault::Oversized);
                }
                Ok(())
            }
            ReplMessage::SyncLeaves { leaves, .. } => {
                let prints: usize = leaves
                    .iter()
                    .map(|l| match l {
                        LeafAnswer::Prints(p) => p.len(),
                        LeafAnswer::Children(_) => 0,
                    })
                    .sum();
                if prints > MAX_SYNC_DIGESTS || leaves.len() > MAX_SYNC_NODES {
                    return Err(Fault::Oversized);
                }
                Ok(())
            }
            ReplMessage::SyncFetch { wanted, .. } => {
                let prints: usize = wanted.iter().map(|l| l.prints.len() + l.offers.len()).sum();
                if prints > MAX_FETCH_KEYS {
                    return Err(Fault::Oversized);
                }
                let paths: Vec<Path> = wanted.iter().map(|l| l.leaf).collect();
                paths_ok(&paths)
            }
            ReplMessage::Offer { .. }
            | ReplMessage::Accept { .. }
            | ReplMessage::Decline { .. }
            | ReplMessage::ItemsAck { .. }
            | ReplMessage::Done { .. }
            | ReplMessage::DoneAck { .. }
            | ReplMessage::Pull { .. }
            | ReplMessage::SyncStart { .. }
            | ReplMessage::SyncCovered { .. } => Ok(()),
        }
    }

    /// The bytes of the message in the network's encoding (bincode 2, standard
    /// configuration: what `selfman-net`'s default codec writes as a frame's payload; the
    /// frame header and the ring's routing envelope come on top). Used to account for the
    /// data moved by repair.
    pub fn wire_size(&self) -> usize {
        /// Counts the bytes written to it.
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut c = Count(0);
        // Encoding into a counter fails only for types serde cannot encode, which none of
        // these messages holds.
        let _ = bincode::serde::encode_into_std_write(self, &mut c, bincode::config::standard());
        c.0
    }
}

#[cfg(test)]
mod tests {
    use selfman_core::{NodeAddr, NodeId};
    use selfman_ports::{Range, ReplicaOp, RingId, Version};

    use super::{
        path_wire, LeafAnswer, LeafFetch, OpRequest, Path, ReplMessage, WireItem, MAX_BATCH_ITEMS,
        MAX_KEY_BYTES, MAX_SYNC_NODES,
    };
    use crate::faults::Fault;

    fn item(key: &str, value: usize) -> WireItem {
        WireItem {
            key: key.as_bytes().to_vec(),
            replica: 1,
            version: Version(3),
            value: Some(vec![7; value]),
            votes: Vec::new(),
        }
    }

    fn encoded(m: &ReplMessage) -> usize {
        bincode::serde::encode_to_vec(m, bincode::config::standard()).unwrap().len()
    }

    #[test]
    fn bounds_are_checked_per_kind() {
        let op = |key: Vec<u8>, replica| {
            ReplMessage::Op(OpRequest {
                id: 1,
                reply_to: NodeAddr::simulated(1, NodeId(1)),
                key,
                replica,
                op: ReplicaOp::Read,
                forwards: 0,
            })
        };
        assert_eq!(op(b"k".to_vec(), 3).check(4), Ok(()));
        assert_eq!(op(b"k".to_vec(), 4).check(4), Err(Fault::BadReplica));
        assert_eq!(op(vec![0; MAX_KEY_BYTES + 1], 0).check(4), Err(Fault::Oversized));
        let many = ReplMessage::Items {
            session: 1,
            seq: 0,
            items: vec![item("a", 1); MAX_BATCH_ITEMS + 1],
        };
        assert_eq!(many.check(4), Err(Fault::Oversized));
        let one_big = ReplMessage::Items { session: 1, seq: 0, items: vec![item("a", 1 << 20)] };
        assert_eq!(one_big.check(4), Ok(()));
        let paths = vec![Path { level: 1, index: 0 }; MAX_SYNC_NODES + 1];
        let seg = Range::new(RingId(0), RingId(9));
        assert_eq!(
            ReplMessage::SyncHashes { session: 1, req: 0, segment: seg, paths }.check(4),
            Err(Fault::Oversized)
        );
        let deep = vec![Path { level: 40, index: 0 }];
        assert_eq!(
            ReplMessage::SyncDigests { session: 1, req: 0, segment: seg, paths: deep }.check(4),
            Err(Fault::Oversized)
        );
        let rr = ReplMessage::RangeRead { session: 1, shift: 0, interval: seg, after: RingId(0) };
        assert_eq!(rr.check(4), Err(Fault::BadReplica));
    }

    #[test]
    fn the_size_is_the_encoding() {
        let seg = Range::new(RingId(u64::MAX / 3), RingId(u64::MAX / 2));
        let msgs = [
            ReplMessage::Items {
                session: 9,
                seq: 3,
                items: (0..50).map(|i| item(&format!("key-{i}"), 100)).collect(),
            },
            ReplMessage::SyncNodes { session: 9, req: 3, hashes: vec![[[1, 2]; 4]; 3] },
            ReplMessage::SyncLeaves {
                session: 9,
                req: 3,
                leaves: vec![
                    LeafAnswer::Prints(vec![[7, 9]; 8]),
                    LeafAnswer::Children([[5; 2]; 4]),
                ],
            },
            ReplMessage::SyncFetch {
                session: 9,
                req: 3,
                segment: seg,
                wanted: vec![LeafFetch {
                    leaf: Path { level: 7, index: 1000 },
                    prints: vec![[1, 2], [3, 4]],
                    offers: vec![([5, 6], Version(3))],
                }],
            },
            ReplMessage::SyncHashes {
                session: 9,
                req: 3,
                segment: seg,
                paths: vec![Path { level: 3, index: 17 }; 20],
            },
        ];
        for m in &msgs {
            assert_eq!(m.wire_size(), encoded(m), "{m:?}");
        }
    }

    fn decoded(m: &ReplMessage) -> Result<ReplMessage, String> {
        bincode::serde::decode_from_slice(
            &bincode::serde::encode_to_vec(m, bincode::config::standard()).unwrap(),
            bincode::config::standard(),
        )
        .map(|(m, _)| m)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn path_lists_travel_as_deltas_and_come_back_unchanged() {
        let p = |level, index| Path { level, index };
        let lists: Vec<Vec<Path>> = vec![
            vec![],
            vec![p(0, 0)],
            vec![p(9, 70_000), p(9, 70_001), p(9, 70_040), p(10, 3), p(10, 3), p(10, 2)],
            vec![p(255, u64::MAX), p(255, 0), p(255, u64::MAX), p(0, 0), p(0, u64::MAX)],
            vec![p(31, 1 << 62), p(31, (1 << 62) + (1 << 61)), p(31, u64::MAX), p(31, 5)],
            (0..1000).map(|i| p(8, i * 37)).collect(),
        ];
        for paths in lists {
            assert_eq!(path_wire::decode(&path_wire::encode(&paths)), Ok(paths.clone()));
            let m = ReplMessage::SyncHashes {
                session: 1,
                req: 2,
                segment: Range::full(RingId(0)),
                paths: paths.clone(),
            };
            assert_eq!(decoded(&m), Ok(m.clone()));
            let wanted = paths
                .iter()
                .map(|l| LeafFetch { leaf: *l, prints: vec![[1, 2]], offers: vec![] })
                .collect();
            let f = ReplMessage::SyncFetch {
                session: 1,
                req: 2,
                segment: Range::full(RingId(0)),
                wanted,
            };
            assert_eq!(decoded(&f), Ok(f.clone()));
        }
        // Sorted paths of one deep level cost a byte each (their indexes alone took 3–5).
        let deep: Vec<Path> = (0..200).map(|i| p(9, 100_000 + i * 50)).collect();
        let tokens =
            bincode::serde::encode_to_vec(path_wire::encode(&deep), bincode::config::standard())
                .unwrap();
        assert!(tokens.len() <= 200 + 8, "{}", tokens.len());
        let plain =
            bincode::serde::encode_to_vec(&deep, bincode::config::standard()).unwrap().len();
        assert!(plain >= 200 * 6, "{plain}");
    }

    #[test]
    fn a_malformed_path_list_is_an_error_not_a_panic() {
        assert!(path_wire::decode(&[0]).is_err(), "a delta before any path");
        assert!(path_wire::decode(&[3]).is_err(), "a run without its index");
        assert!(path_wire::decode(&[(256 << 1) | 1, 0]).is_err(), "level 256");
        assert!(path_wire::decode(&[3, u64::MAX, 2]).is_err(), "an index past u64::MAX");
        assert_eq!(
            path_wire::decode(&[3, 7, 0, 4]),
            Ok(vec![
                Path { level: 1, index: 7 },
                Path { level: 1, index: 7 },
                Path { level: 1, index: 9 }
            ])
        );
        // On the wire: a message whose list is malformed does not decode.
        let bad: (u64, u64, Range, Vec<u64>) = (1, 2, Range::full(RingId(0)), vec![0]);
        let mut bytes = bincode::serde::encode_to_vec(
            ReplMessage::SyncHashes {
                session: 0,
                req: 0,
                segment: Range::full(RingId(0)),
                paths: vec![],
            },
            bincode::config::standard(),
        )
        .unwrap();
        bytes.truncate(1); // the variant
        bytes.extend(bincode::serde::encode_to_vec(bad, bincode::config::standard()).unwrap());
        let got: Result<(ReplMessage, usize), _> =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard());
        assert!(got.is_err());
        // A fetch whose paths and leaves do not pair up does not decode either.
        let tokens = path_wire::encode(&[Path { level: 2, index: 1 }]);
        type Leaf = (Vec<[u8; 2]>, Vec<([u8; 2], Version)>);
        let rest: Vec<Leaf> = vec![];
        let mut bytes = bincode::serde::encode_to_vec(
            ReplMessage::SyncFetch {
                session: 0,
                req: 0,
                segment: Range::full(RingId(0)),
                wanted: vec![],
            },
            bincode::config::standard(),
        )
        .unwrap();
        bytes.truncate(1);
        let body = (1u64, 2u64, Range::full(RingId(0)), tokens, rest);
        bytes.extend(bincode::serde::encode_to_vec(body, bincode::config::standard()).unwrap());
        let got: Result<(ReplMessage, usize), _> =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard());
        assert!(got.is_err());
    }
}
