//! Transactions on the replicated store: the [`Transactions`] port a client of the
//! transaction layer uses, and the results it answers with.
//!
//! The results are the ones Scalaris users know ([`TxResult`]): `ok`, `not_found`,
//! `abort(keys)`, `key_changed(value now)` and `timeout`; each indication says which of them
//! it can carry and when.
//!
//! # Examples
//!
//! A transfer between two accounts, the way a client drives it (each request is answered by
//! one indication with the same handle before the next is sent):
//!
//! ```
//! use selfman_ports::{TxHandle, TxRequest};
//!
//! let h = TxHandle(1);
//! let script = [
//!     TxRequest::Begin { handle: h },
//!     TxRequest::AddToNumber { handle: h, key: b"acct:a".to_vec(), delta: -10 },
//!     TxRequest::AddToNumber { handle: h, key: b"acct:b".to_vec(), delta: 10 },
//!     TxRequest::Commit { handle: h },
//! ];
//! // `Commit` is answered by `TxIndication::Committed { handle: h, result }`: `TxResult::Ok`
//! // (both changed), `TxResult::Abort(keys)` (neither changed: retry), or
//! // `TxResult::Timeout` (unknown: read to find out).
//! # let _ = script;
//! ```
//!
//! How a Redis-style front end maps onto it: `WATCH k` is a [`TxRequest::Read`] of `k` (its
//! version is checked at commit), `MULTI … EXEC` buffers the commands as
//! [`TxRequest::Write`]/[`TxRequest::AddToNumber`]/… and sends [`TxRequest::Commit`] on `EXEC`
//! (`Abort` answers `EXEC` with a null reply); `GET`/`SET`/`INCR` outside `MULTI` are
//! one-key transactions; `SADD`/`SREM`/`SMEMBERS` are the value-set operations;
//! keyspace notifications are [`TxRequest::Subscribe`].

use selfman_core::Port;
use serde::{Deserialize, Serialize};

use crate::replication::{TxId, Version};

/// Multi-key transactions with Paxos commit over the replicated store, value-sets and key
/// change notifications.
///
/// `selfman-transactions` implements it on top of [`Replication`](crate::Replication) and a
/// [`Ring`](crate::Ring).
///
/// # A transaction
///
/// A client names a transaction with a [`TxHandle`] of its choosing, unique among its open
/// transactions, and sends:
///
/// 1. [`TxRequest::Begin`];
/// 2. any number of reads and writes — **reads are majority reads** ([`TxRequest::Read`],
///    answered at once with the value a majority of the key's replicas hold), **writes are
///    buffered** ([`TxRequest::Write`] and the helpers) until the commit;
/// 3. optionally [`TxRequest::Lock`] (eager locking);
/// 4. [`TxRequest::Commit`] or [`TxRequest::Abort`].
///
/// Each request is answered by exactly one indication carrying the handle.
///
/// # Guarantees
///
/// * **Atomicity**: a committed transaction's writes are applied at a majority of every
///   written item's replicas; an aborted one's nowhere.
/// * **Serializability**: committed transactions are serializable — each read or written key
///   was still at the version the transaction read when it committed (Paxos commit's version
///   check and locks at a majority of every item's replicas).
/// * **Termination**: a commit is decided even if the node of the transaction manager crashes
///   (a replicated transaction manager takes over); locks are leases, so neither a crashed
///   manager nor a vanished client holds a lock past its lease.
/// * A transaction that reads keys and writes none still commits by the protocol, so that its
///   reads are checked to be consistent with each other.
#[derive(Debug)]
pub struct Transactions;

impl Port for Transactions {
    type Request = TxRequest;
    type Indication = TxIndication;
}

/// The client's name for one open transaction (chosen by the client, unique among its open
/// transactions at this node).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct TxHandle(pub u64);

/// What a client asks of [`Transactions`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxRequest {
    /// Open a transaction. Answered by [`TxIndication::Begun`].
    Begin {
        /// The client's name for it.
        handle: TxHandle,
    },
    /// Read `key` in the transaction: a majority read the first time (the version is
    /// remembered and checked at commit); the buffered value if the transaction wrote it.
    /// Answered by [`TxIndication::ReadDone`].
    Read {
        /// The transaction.
        handle: TxHandle,
        /// The key.
        key: Vec<u8>,
    },
    /// Buffer a write of `key` (`None` deletes). Reads the key's version first if the
    /// transaction has not read it. Answered by [`TxIndication::OpDone`].
    Write {
        /// The transaction.
        handle: TxHandle,
        /// The key.
        key: Vec<u8>,
        /// The new value, or `None` to delete.
        value: Option<Vec<u8>>,
    },
    /// Write `new` iff the key's value is `expected` (`None`: absent). Answered by
    /// [`TxIndication::OpDone`]: `Ok`, or `KeyChanged(value now)` (nothing buffered).
    TestAndSet {
        /// The transaction.
        handle: TxHandle,
        /// The key.
        key: Vec<u8>,
        /// The value expected now.
        expected: Option<Vec<u8>>,
        /// The value to write.
        new: Option<Vec<u8>>,
    },
    /// Add `delta` to the decimal integer stored at `key` (absent counts as 0). Answered by
    /// [`TxIndication::OpDone`]: `Ok`, or `Rejected(NotANumber)`.
    AddToNumber {
        /// The transaction.
        handle: TxHandle,
        /// The key.
        key: Vec<u8>,
        /// What to add.
        delta: i64,
    },
    /// Append `add` to and remove every element equal to one of `del` from the list stored at
    /// `key` (absent counts as empty; the encoding is [`encode_list`]). Answered by
    /// [`TxIndication::OpDone`]: `Ok`, or `Rejected(NotAList)`.
    AddDelOnList {
        /// The transaction.
        handle: TxHandle,
        /// The key.
        key: Vec<u8>,
        /// Elements appended.
        add: Vec<Vec<u8>>,
        /// Elements removed.
        del: Vec<Vec<u8>>,
    },
    /// Eager locking: lock a majority of the replicas of every key the transaction has read
    /// or written so far, for `lease_ms` milliseconds; the values are given by the commit.
    /// Answered by [`TxIndication::Locked`]. A client that never commits loses the locks when
    /// the lease ends (the transaction aborts).
    Lock {
        /// The transaction.
        handle: TxHandle,
        /// How long the locks hold without a commit.
        lease_ms: u64,
    },
    /// Commit the transaction (Paxos commit). Answered by [`TxIndication::Committed`]; the
    /// handle is closed.
    Commit {
        /// The transaction.
        handle: TxHandle,
    },
    /// Give the transaction up (nothing was written). Answered by [`TxIndication::Committed`]
    /// with `Abort(vec![])`; releases eager locks.
    Abort {
        /// The transaction.
        handle: TxHandle,
    },
    /// Value-set: add `element` to the set at `key`. Answered by [`TxIndication::SetDone`].
    SetAdd {
        /// The key.
        key: Vec<u8>,
        /// The element.
        element: Vec<u8>,
        /// The caller's name for this operation.
        tag: u64,
    },
    /// Value-set: remove `element` from the set at `key`. Answered by
    /// [`TxIndication::SetDone`] (`NotFound` if it was not in the set).
    SetRemove {
        /// The key.
        key: Vec<u8>,
        /// The element.
        element: Vec<u8>,
        /// The caller's name for this operation.
        tag: u64,
    },
    /// Value-set: the elements of the set at `key`, as a majority of its replicas derive it.
    /// Answered by [`TxIndication::SetDone`].
    ReadSet {
        /// The key.
        key: Vec<u8>,
        /// The caller's name for this operation.
        tag: u64,
    },
    /// Be told of locks on and changes of `key` ([`TxIndication::Notify`]) until
    /// [`TxRequest::Unsubscribe`].
    Subscribe {
        /// The key.
        key: Vec<u8>,
    },
    /// Stop notifications of `key`.
    Unsubscribe {
        /// The key.
        key: Vec<u8>,
    },
}

/// The outcome of a transaction operation, in Scalaris' words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxResult {
    /// Done: the read found a value, the write is buffered, the commit committed.
    Ok,
    /// The key has no value (never written, or deleted), as a majority of its replicas say.
    NotFound,
    /// The transaction aborted and changed nothing; the keys whose replicas refused (another
    /// transaction changed or locked them since they were read). Retrying may succeed.
    Abort(Vec<Vec<u8>>),
    /// A [`TxRequest::TestAndSet`] found another value: the value now (`None`: absent).
    KeyChanged(Option<Vec<u8>>),
    /// No answer in time: a read found no majority of replicas; a commit's outcome is
    /// **unknown** (it may still commit, decided by a replicated transaction manager) — read
    /// the keys to find out.
    Timeout,
    /// The request was refused before anything was done.
    Rejected(Rejection),
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Rejection {
    /// No open transaction has this handle (or it is already committing).
    UnknownHandle,
    /// A transaction with this handle is already open.
    HandleInUse,
    /// Too many transactions or operations are in flight at this node.
    Overloaded,
    /// The key or value is larger than accepted, or the transaction has too many keys.
    TooLarge,
    /// [`TxRequest::AddToNumber`] on a value that is not a decimal integer (or overflow).
    NotANumber,
    /// [`TxRequest::AddDelOnList`] on a value that is not a list.
    NotAList,
    /// This node is not in a ring yet.
    NotInRing,
    /// After [`TxRequest::Lock`], a key the transaction did not lock.
    NotLocked,
}

/// What [`Transactions`] tells its client.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxIndication {
    /// [`TxRequest::Begin`]: `Ok`, or `Rejected(HandleInUse | Overloaded)`.
    Begun {
        /// The transaction.
        handle: TxHandle,
        /// The outcome.
        result: TxResult,
    },
    /// [`TxRequest::Read`]: `Ok` with the value, `NotFound`, `Timeout` (no majority
    /// answered) or `Rejected`.
    ReadDone {
        /// The transaction.
        handle: TxHandle,
        /// The key.
        key: Vec<u8>,
        /// The outcome.
        result: TxResult,
        /// The value read (with `Ok`).
        value: Option<Vec<u8>>,
    },
    /// A write or helper: `Ok` (buffered), `KeyChanged`, `Timeout` (the key's version could
    /// not be read) or `Rejected`.
    OpDone {
        /// The transaction.
        handle: TxHandle,
        /// The key.
        key: Vec<u8>,
        /// The outcome.
        result: TxResult,
    },
    /// [`TxRequest::Lock`]: `Ok` (a majority of every key's replicas is locked for the
    /// transaction), `Abort(keys)` (some key could not be locked; the transaction is over)
    /// or `Timeout`.
    Locked {
        /// The transaction.
        handle: TxHandle,
        /// The outcome.
        result: TxResult,
    },
    /// [`TxRequest::Commit`] or [`TxRequest::Abort`]: `Ok` (committed), `Abort(keys)`,
    /// `Timeout` (unknown) or `Rejected`.
    Committed {
        /// The transaction.
        handle: TxHandle,
        /// The transaction's identifier in the protocol (for tracing; `None` if it never
        /// reached the commit).
        tx: Option<TxId>,
        /// The outcome.
        result: TxResult,
    },
    /// A value-set operation: `Ok` (done; for a duplicate of an operation already applied
    /// too), `NotFound` (remove of an absent element), `Abort(keys)` (no majority, or still
    /// concurrent after the retries), `Timeout`.
    SetDone {
        /// The key.
        key: Vec<u8>,
        /// The caller's tag.
        tag: u64,
        /// The outcome.
        result: TxResult,
        /// The set's elements, sorted ([`TxRequest::ReadSet`] with `Ok`).
        elements: Vec<Vec<u8>>,
    },
    /// Something happened to a subscribed key.
    Notify(KeyEvent),
}

/// A notification about a subscribed key, sent by the replicas of the key (so one change may
/// be told by several replicas; a subscriber keeps the highest version it has seen).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyEvent {
    /// A transaction locked the key at a replica (its vote was prepared).
    Locked {
        /// The key.
        key: Vec<u8>,
        /// The transaction.
        tx: TxId,
    },
    /// A committed transaction changed the key.
    Changed {
        /// The key.
        key: Vec<u8>,
        /// Its new version.
        version: Version,
        /// Its new value (`None`: deleted).
        value: Option<Vec<u8>>,
    },
    /// The transaction that locked the key aborted: its lock is gone.
    Unlocked {
        /// The key.
        key: Vec<u8>,
        /// The transaction.
        tx: TxId,
    },
}

/// The list encoding of [`TxRequest::AddDelOnList`]: each element as a 4-byte little-endian
/// length and its bytes.
///
/// ```
/// use selfman_ports::{decode_list, encode_list};
///
/// let l = vec![b"a".to_vec(), b"bc".to_vec()];
/// assert_eq!(decode_list(&encode_list(&l)), Some(l));
/// assert_eq!(decode_list(&[1, 0]), None);
/// ```
pub fn encode_list(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(elements.iter().map(|e| e.len() + 4).sum());
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// Decodes [`encode_list`]'s encoding; `None` if the bytes are not a list.
pub fn decode_list(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        let len = u32::from_le_bytes(len) as usize;
        let e = bytes.get(4..4usize.checked_add(len)?)?;
        out.push(e.to_vec());
        bytes = &bytes[4 + len..];
    }
    Some(out)
}
