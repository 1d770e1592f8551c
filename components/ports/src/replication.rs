//! Replicated storage on a ring: the [`Replication`] port, the item record its replicas keep,
//! and the read-only [`ReplicaView`] every implementation exposes for inspection.
//!
//! The placement rule, the quorum rule and the guarantees are documented on [`Replication`].
//!
//! # Examples
//!
//! ```
//! use selfman_ports::{LockMode, ReplicaOp, ReplicationRequest, TxId, Version};
//!
//! // Install version 3 of "user:42" at replica 1 (hand-over, repair and the transaction
//! // layer's commit write this way; there is no client write path here).
//! let write = ReplicationRequest::AtReplica {
//!     key: b"user:42".to_vec(),
//!     replica: 1,
//!     op: ReplicaOp::Write { version: Version(3), value: Some(b"alice".to_vec()) },
//!     tag: 7,
//! };
//! // A transaction's vote at replica 0: lock for writing if the replica still holds the
//! // version the transaction read.
//! let vote = ReplicaOp::Vote {
//!     tx: TxId(99),
//!     mode: LockMode::Write,
//!     read: Version(3),
//!     lease_ms: 5_000,
//! };
//! # let _ = (write, vote);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use selfman_core::{Component, ComponentDefinition, NodeAddr, Port};
use serde::{Deserialize, Serialize};

use crate::views::Views;

use crate::ring::{Range, RingId};

/// The version of a replicated item: `0` means never written; every write installs a larger
/// one. Versions are chosen by the writer (the transaction layer writes `read + 1`); a replica
/// never replaces a version by a smaller one.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A transaction, as the replicas' lock and vote records name it. The transaction layer
/// chooses the numbers (unique per transaction); replication only compares them.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct TxId(pub u64);

/// What a transaction asks of an item at a replica when it votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockMode {
    /// The transaction read the item: prepared iff the replica still holds the version it read
    /// and no other transaction holds a write lock. Shared with other readers.
    Read,
    /// The transaction writes the item: prepared iff the replica still holds the version it
    /// read and no other transaction holds any lock on it. Exclusive.
    Write,
}

/// A physical machine, as configured by the operator: several nodes may run on one host.
/// Number hosts `0, 1, 2, …` — placement puts the replicas of a key on distinct hosts when at
/// least `f` hosts exist and every residue modulo `f` is used (see `docs/replication.md`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct HostId(pub u32);

/// Symmetric replication of key/value items over a ring overlay: every item lives on `f`
/// peers, reads reach a majority of them, and data moves by itself as peers join, leave and
/// crash.
///
/// `selfman-replication` implements it on top of any [`Ring`](crate::Ring).
///
/// # Placement
///
/// An item with key `key` (bytes) sits at `k = RingId::of_key(key)`; its `f` replicas
/// (default 4) are at the **replica keys** `k + i·2^64/f`, `i = 0..f` ([`RingId::replica`]),
/// each held by the peer responsible for that point of the ring. A replica is named by its
/// index `i`.
///
/// # Operations
///
/// * [`ReplicationRequest::Read`]: a **quorum read**: asks all `f` replicas and answers with
///   the highest version once a **majority** (`f/2 + 1`) answered, naming the replicas that
///   did ([`QuorumRead::replicas`]).
/// * [`ReplicationRequest::AtReplica`]: one operation on one replica's record
///   ([`ReplicaOp`]): a versioned write (installed only if newer), and the transaction layer's
///   votes and their resolution. This is a building block, **not a client write path**: a
///   write is durable once a majority of replicas applied it, which the caller (the
///   transaction layer) waits for; the single-item client write goes through transactions.
///
/// # Guarantees
///
/// Let a version `v` of a key be **acknowledged** when a majority of its replicas answered
/// [`ReplicaOutcome::Applied`] (or [`ReplicaOutcome::Current`]) for `v` or a later version.
///
/// * **A replica never goes back**: its version of an item only grows; a write, a transfer or
///   a repair never replaces a version by a smaller one.
/// * **Only complete replicas answer**: a peer answers for a replica key only while it serves
///   the range holding it with complete data — its own since the ring gave it the range, one
///   it received whole by hand-over, or one it rebuilt from the other replicas. While a range
///   moves or is rebuilt, its peer answers "not ready" and the read waits for the others.
/// * **Durability**: an acknowledged version stays readable — every later quorum read returns
///   it or a later one — through joins and graceful leaves (the items move with their
///   versions and locks; the old peer keeps them until the new one acknowledged the whole
///   range), and through crashes of fewer than a majority of a key's replicas between two
///   rebuilds (the successor of a crashed peer rebuilds its ranges from the remaining
///   replicas before it answers for them).
/// * **No stale read after an acknowledged write**: a quorum read that starts after `v` was
///   acknowledged returns `v` or a later version (two majorities share a replica, and no
///   replica that answers has gone back). This holds under the ring's lookup consistency; a
///   *false* suspicion that makes two live peers responsible for one range (the ring's
///   documented window) can let the stale one answer until the suspicion is corrected.
/// * **What a user sees during movement**: reads and replica operations stay available while
///   a range moves (the new peer forwards them to the old one until the transfer is complete);
///   a read whose majority is not ready yet waits, up to its timeout, and then answers
///   [`ReadFailure::Timeout`] with the replicas that did answer. Nothing is answered from an
///   incomplete replica.
///
/// Bad input from other peers (items outside the claimed range, versions going backwards,
/// transfers that never finish, oversized batches) is counted per kind, dropped or timed out,
/// and never overwrites a newer version.
#[derive(Debug)]
pub struct Replication;

impl Port for Replication {
    type Request = ReplicationRequest;
    type Indication = ReplicationIndication;
}

/// What a user asks of [`Replication`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicationRequest {
    /// A quorum read of `key`: answered once by [`ReplicationIndication::ReadDone`] with the
    /// same `tag`.
    Read {
        /// The key (bytes).
        key: Vec<u8>,
        /// The caller's name for this read, echoed in the answer.
        tag: u64,
    },
    /// Applies `op` at replica number `replica` (`0..f`) of `key`: answered once by
    /// [`ReplicationIndication::ReplicaDone`] with the same `tag`.
    AtReplica {
        /// The key (bytes).
        key: Vec<u8>,
        /// Which replica (`0..f`).
        replica: u32,
        /// What to do there.
        op: ReplicaOp,
        /// The caller's name for this operation, echoed in the answer.
        tag: u64,
    },
    /// Leave gracefully: ask the ring to leave, hand every item to the successor, then tell
    /// [`ReplicationIndication::Left`].
    Leave,
    /// Lists, in ring order, the replicas **this node serves** (with complete data) whose
    /// positions are in `[from, to)` (`to: None`: up to the top of the ring), starting at
    /// `from` and stopping at the end of the served run holding `from`, after `limit`
    /// replicas, or after a few MB of keys and values (all replicas of the last position are
    /// listed, so a page never splits one).
    /// Tombstones are listed too (`value: None`), so that a caller merging the replicas of an
    /// item can tell a deletion from an older value. Answered once by
    /// [`ReplicationIndication::Listed`] with the same `tag`; local (no messages). This is the
    /// building block of store-wide walks (`SCAN`, `KEYS`, `DBSIZE`), which route a request
    /// to the node responsible for each position and merge the replicas of each item.
    ListServed {
        /// The first position.
        from: RingId,
        /// The end (exclusive); `None`: the top of the ring.
        to: Option<RingId>,
        /// The most replicas to list (at least 1 is listed when any is there).
        limit: u32,
        /// Whether to include the values (else [`ListedReplica::value`] only tells present
        /// `Some(empty)` from deleted `None`).
        values: bool,
        /// The caller's name for this listing, echoed in the answer.
        tag: u64,
    },
}

/// One operation on one replica's record of an item, applied atomically there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaOp {
    /// Read the record at this replica (no quorum).
    Read,
    /// Install `(version, value)` if `version` is newer than the replica's; `value: None`
    /// deletes (a tombstone that keeps its version, so that repair does not bring the old value
    /// back). Locks do not block it: versions guard data, locks guard votes.
    Write {
        /// The version to install.
        version: Version,
        /// The value, or `None` to delete.
        value: Option<Vec<u8>>,
    },
    /// A transaction's vote at this replica (the participant's rule of Paxos commit): prepared
    /// — and locked in `mode` for `tx` until resolved or `lease_ms` passed — iff the replica
    /// holds version `read` and no other transaction's live lock conflicts; refused otherwise.
    /// The vote is remembered: asking again for `tx` answers the same.
    Vote {
        /// The transaction.
        tx: TxId,
        /// Read or write lock.
        mode: LockMode,
        /// The version the transaction read.
        read: Version,
        /// How long the lock holds, in milliseconds, if never resolved.
        lease_ms: u64,
    },
    /// Commit `tx` here: install `(version, value)` if newer (as [`ReplicaOp::Write`]) and
    /// drop the transaction's vote and lock.
    Commit {
        /// The transaction.
        tx: TxId,
        /// The version to install.
        version: Version,
        /// The value, or `None` to delete.
        value: Option<Vec<u8>>,
    },
    /// Drop `tx`'s vote and lock (the transaction aborted, or committed with nothing to write
    /// here).
    Release {
        /// The transaction.
        tx: TxId,
    },
}

/// What a replica did with a [`ReplicaOp`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaOutcome {
    /// The record as this replica holds it ([`ReplicaOp::Read`]).
    Record {
        /// Its version (`Version(0)`: never written here).
        version: Version,
        /// Its value (`None`: never written, or deleted).
        value: Option<Vec<u8>>,
        /// The strongest live lock on it.
        lock: Option<LockMode>,
    },
    /// The version was installed.
    Applied,
    /// The replica already holds exactly this version and value.
    Current,
    /// Refused: the replica holds a newer version, or the same version with another value
    /// (never overwritten).
    Stale {
        /// The replica's version.
        current: Version,
    },
    /// The transaction's vote here.
    Voted(Vote),
    /// The transaction's vote and lock are gone.
    Released,
}

/// A participant's vote on one item at one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Vote {
    /// Prepared: the item is locked for the transaction.
    Prepared,
    /// Refused, for this reason.
    Refused(Refusal),
    /// This replica cannot vote for the transaction: it was rebuilt from other replicas
    /// recently (within the longest lease), so a vote of its lost predecessor may exist. Not
    /// remembered; the transaction layer must decide this replica's vote by a higher Paxos
    /// round.
    Abstain,
}

/// Why a replica refused a vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Refusal {
    /// The replica holds another version than the one the transaction read.
    Version(Version),
    /// Another transaction holds a conflicting live lock.
    Locked,
    /// The record already remembers as many votes as it can hold (not remembered).
    TooManyVotes,
}

/// A quorum read's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumRead {
    /// The value of the highest version among the answers (`None`: not found, or deleted).
    pub value: Option<Vec<u8>>,
    /// The highest version among the answers (`Version(0)`: not found).
    pub version: Version,
    /// The replicas that answered (at least a majority), with their versions.
    pub replicas: Vec<ReplicaAnswer>,
}

/// One replica's part in a quorum read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaAnswer {
    /// The replica number.
    pub replica: u32,
    /// The node that answered for it.
    pub node: NodeAddr,
    /// The version it holds.
    pub version: Version,
}

/// Why a quorum read has no answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReadFailure {
    /// Fewer than a majority answered within the read timeout (ranges moving or being
    /// rebuilt, peers crashed, messages lost); these did.
    Timeout {
        /// The replicas that answered.
        answered: Vec<ReplicaAnswer>,
    },
    /// Too many operations are in flight at this node.
    Overloaded,
    /// This node is not in a ring.
    NotInRing,
    /// The key is longer than the implementation accepts.
    KeyTooLong,
}

/// Why a replica operation has no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReplicaFailure {
    /// No answer within the timeout (the range is moving or being rebuilt, a peer crashed, or
    /// messages were lost); the operation may or may not have been applied.
    Timeout,
    /// Too many operations are in flight at this node.
    Overloaded,
    /// This node is not in a ring.
    NotInRing,
    /// The replica number is not below `f`, or the key or value is larger than accepted.
    Invalid,
}

/// What [`Replication`] tells its user.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicationIndication {
    /// The answer to a [`ReplicationRequest::Read`].
    ReadDone {
        /// The key read.
        key: Vec<u8>,
        /// The caller's tag.
        tag: u64,
        /// The answer.
        result: Result<QuorumRead, ReadFailure>,
    },
    /// The answer to a [`ReplicationRequest::AtReplica`].
    ReplicaDone {
        /// The key.
        key: Vec<u8>,
        /// The replica.
        replica: u32,
        /// The caller's tag.
        tag: u64,
        /// The node that applied it and its outcome, or why there is none.
        result: Result<(NodeAddr, ReplicaOutcome), ReplicaFailure>,
    },
    /// The ranges this node serves (answers for with complete data) changed.
    Serving(Vec<Range>),
    /// Data moved at this node (for operators, tests and benchmarks).
    Movement(Movement),
    /// This node has handed everything over and left (after [`ReplicationRequest::Leave`]).
    Left,
    /// The answer to a [`ReplicationRequest::ListServed`].
    Listed {
        /// The caller's tag.
        tag: u64,
        /// The page, or why there is none.
        result: Result<Listing, ListFailure>,
    },
}

/// A page of [`ReplicationRequest::ListServed`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The replicas, in ring order.
    pub replicas: Vec<ListedReplica>,
    /// Where the listing continues (at this node if the limit cut it, else at the node serving
    /// the next position); `None` when it reached `to`.
    pub next: Option<RingId>,
}

/// One replica in a [`Listing`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedReplica {
    /// Its position (replica key).
    pub position: RingId,
    /// The item's key.
    pub key: Vec<u8>,
    /// Its version.
    pub version: Version,
    /// Its value (`None`: deleted); empty unless values were asked for.
    pub value: Option<Vec<u8>>,
}

/// Why a [`ReplicationRequest::ListServed`] has no page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ListFailure {
    /// This node does not serve `from` (not its range, or its range is still being received
    /// or rebuilt): ask the responsible node, or again later.
    NotServing,
    /// This node is not in a ring.
    NotInRing,
}

/// A step of data movement at one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Movement {
    /// This node sent `range` to `to`, which acknowledged all of it; the items are dropped here.
    HandedOver {
        /// The range.
        range: Range,
        /// The new holder.
        to: NodeAddr,
        /// Items sent (first copies and later deltas).
        items: u64,
        /// Their key and value bytes (framing, versions and votes not counted).
        bytes: u64,
    },
    /// This node received `range` whole from `from` and serves it now.
    Received {
        /// The range.
        range: Range,
        /// The old holder.
        from: NodeAddr,
        /// Items received.
        items: u64,
        /// Their key and value bytes (framing, versions and votes not counted).
        bytes: u64,
    },
    /// A transfer was given up (timeout, crash of the other side); what happens to the range
    /// next is told by a later movement.
    TransferAborted {
        /// The range.
        range: Range,
        /// The other side.
        peer: NodeAddr,
    },
    /// This node started rebuilding `range` from the other replicas (its previous holder is
    /// gone).
    RebuildStarted {
        /// The range.
        range: Range,
    },
    /// This node rebuilt `range` from the other replicas and serves it now.
    Rebuilt {
        /// The range.
        range: Range,
        /// Items copied in.
        items: u64,
        /// Their key and value bytes (framing, versions and votes not counted).
        bytes: u64,
    },
    /// An anti-entropy round compared `range` with the replicas `shift` positions on and
    /// repaired what differed.
    Repaired {
        /// This node's range that was compared.
        range: Range,
        /// Which replica offset it was compared with (`1..f`).
        shift: u32,
        /// Items this node took from the other side.
        fetched: u64,
        /// Items this node gave the other side.
        pushed: u64,
        /// Bytes both sides sent for the round.
        bytes: u64,
    },
}

/// A read-only picture of one node's replication state, the same for every implementation of
/// [`Replication`], for checkers and operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    /// The node.
    pub node: NodeAddr,
    /// Its configured host.
    pub host: HostId,
    /// Its ring identifier (`None` before it joined).
    pub id: Option<RingId>,
    /// The replication factor it runs with.
    pub f: u32,
    /// The range the ring says it owns.
    pub owned: Option<Range>,
    /// The ranges it answers for with complete data.
    pub serving: Vec<Range>,
    /// Ranges it owns but is still receiving or rebuilding.
    pub pending: Vec<Range>,
    /// Ranges it no longer owns but still holds, until their new peer acknowledged them.
    pub outgoing: Vec<Range>,
    /// Items stored (all replicas, all ranges).
    pub items: u64,
}

/// One replica of one item as a node stores it, for checkers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReplica {
    /// The replica key (its position on the ring).
    pub position: RingId,
    /// The item's key.
    pub key: Vec<u8>,
    /// The replica number.
    pub replica: u32,
    /// Its version.
    pub version: Version,
}

/// A component that can show its replication state (implemented by every replication
/// component).
pub trait ReplicaInspect {
    /// The current view.
    fn replica_view(&self) -> ReplicaView;
    /// Every replica it stores in the ranges it serves, in ring order.
    fn served_replicas(&self) -> Vec<StoredReplica>;
}

/// A shared registry of replication components, read at one instant by checkers (as
/// [`RingViews`](crate::RingViews) is for rings).
#[derive(Clone, Default)]
pub struct ReplicaViews {
    views: Views<(ReplicaView, Vec<StoredReplica>)>,
}

impl fmt::Debug for ReplicaViews {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicaViews({} registered)", self.views.len())
    }
}

impl ReplicaViews {
    /// An empty registry.
    pub fn new() -> ReplicaViews {
        ReplicaViews::default()
    }

    /// Registers the replication component of node `node` (replacing an earlier one).
    pub fn register<D: ComponentDefinition + ReplicaInspect>(
        &self,
        node: NodeAddr,
        c: &Component<D>,
    ) {
        self.views.register(node, c, |d: &D| (d.replica_view(), d.served_replicas()));
    }

    /// The view and served replicas of every registered component that still exists, by node.
    /// Components that are gone are forgotten.
    ///
    /// Must not be called from inside a handler of a registered component.
    pub fn snapshot(&self) -> BTreeMap<NodeAddr, (ReplicaView, Vec<StoredReplica>)> {
        self.views.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn versions_order_as_numbers() {
        assert!(Version(2) > Version(1));
        assert_eq!(Version::default(), Version(0));
        assert_eq!(Version(7).to_string(), "v7");
    }
}
