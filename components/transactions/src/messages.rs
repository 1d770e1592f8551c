//! Every wire message of the transaction layer, [`TxMessage`], and the protocol's small types.
//!
//! ```text
//! failure-free commit, f = 4 (TM = acceptor 0, rTM1..3 = acceptors 1..3, P = participants):
//!
//!  TM ──Prepare (routed to each replica key of each item)──────────────▶ P   delay 1
//!  TM ──InitRtm (direct, same instant)─────────────────────────────────▶ rTMs
//!  P  ──Vote (round-0 accept, direct)──────────────────────────▶ TM + rTMs   delay 2
//!  rTMs ──Accepted (round 0)───────────────────────────────────────────▶ TM  delay 3
//!  TM ──Decided────────────────────────────────────────▶ P + rTMs (+client)  delay 4
//!  P  ──Applied (or Failed: its replica did not answer; TM re-sends)────▶ TM
//!  TM ──Forget{decision} (every participant has the decision)──────────▶ rTMs
//!
//! recovery (a TM that misses votes) and takeover (an rTM whose TM is silent), round r > 0:
//!  leader ──Collect{r}──────────▶ acceptors ──Promise{r, accepted}──▶ leader   (Paxos 1a/1b)
//!  leader ──Propose{r, values}──▶ acceptors ──Accepted{r}───────────▶ leader   (Paxos 2a/2b)
//!  leader ──Decided─────────────▶ participants, acceptors, TM
//! ```
//!
//! Bounds: a decoded message holds at most [`MAX_ITEMS`] items and [`MAX_ACCEPTORS`]
//! acceptors; a receiver drops anything larger (counted) before looking at it.

use std::sync::Arc;

use selfman_core::NodeAddr;
use selfman_ports::{KeyEvent, LockMode, TxId, Version};
use serde::{Deserialize, Serialize};

/// Items (keys) one transaction may touch.
pub const MAX_ITEMS: usize = 256;

/// Acceptors of one transaction at most (the TM and `f − 1` rTMs; `f` is at most 16).
pub const MAX_ACCEPTORS: usize = 16;

/// Messages one [`TxMessage::Batch`] carries at most (a sender splits longer runs).
pub const MAX_BATCH: usize = MAX_ITEMS;

/// The values an eager transaction's client commits: per item index, the new value (`None`:
/// delete). Items not listed were only locked (released on commit).
pub type Writes = Vec<(u32, Option<Vec<u8>>)>;

/// One Paxos instance of a transaction: the vote of replica `replica` of item number `item`
/// (the item's index in the transaction's item list).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Slot {
    /// Index of the item in [`TxInfo::items`].
    pub item: u32,
    /// The replica number (`0..f`).
    pub replica: u32,
}

/// What an instance can decide: the participant's vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// The replica voted prepared (it holds the version read, and locked the item).
    Prepared,
    /// The replica refused, or (in a higher round) nobody knows a vote: abort.
    Aborted,
}

/// A Paxos round (ballot): `(n, rank)`, ordered lexicographically. Round `(0, 0)` is the
/// participants' own fast round; a leader in round `n > 0` is acceptor number `rank` of the
/// transaction (`0` the TM), so two leaders never share a round.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Round {
    /// The round number.
    pub n: u32,
    /// The leader's rank among the acceptors.
    pub rank: u32,
}

impl Slot {
    /// The slot of a decision sent to an acceptor rather than to a participant.
    pub const ACCEPTORS: Slot = Slot { item: u32::MAX, replica: u32::MAX };
}

impl Round {
    /// The participants' round.
    pub const ZERO: Round = Round { n: 0, rank: 0 };
}

/// One item of a transaction as the acceptors know it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ItemInfo {
    /// The key.
    pub key: Vec<u8>,
    /// Read (shared) or write (exclusive) lock.
    pub mode: LockMode,
}

/// What every acceptor knows of a transaction (sent by the TM in [`TxMessage::InitRtm`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxInfo {
    /// The transaction.
    pub tx: TxId,
    /// The acceptors: the TM first, then the rTMs; an acceptor's rank is its index.
    pub acceptors: Vec<NodeAddr>,
    /// The replication factor (replicas per item).
    pub f: u32,
    /// The items.
    pub items: Vec<ItemInfo>,
    /// The lease of the participants' locks, in milliseconds.
    pub lease_ms: u64,
    /// Eager locking: the transaction has one more instance, the client's
    /// ([`TxInfo::client_slot`]), whose value is the client's commit (with its [`Writes`]) or
    /// abort; the lock holders' votes carry no values.
    pub eager: bool,
}

impl TxInfo {
    /// The client's instance of an eager transaction.
    pub fn client_slot(&self) -> Slot {
        Slot { item: self.items.len() as u32, replica: 0 }
    }

    /// The instances of the participants (every replica of every item).
    pub fn item_slots(&self) -> impl Iterator<Item = Slot> + '_ {
        let f = self.f;
        (0..self.items.len() as u32)
            .flat_map(move |item| (0..f).map(move |replica| Slot { item, replica }))
    }

    /// Whether the numbers are within bounds and consistent (a receiver checks before use).
    pub fn is_valid(&self) -> bool {
        !self.acceptors.is_empty()
            && self.acceptors.len() <= MAX_ACCEPTORS
            && self.items.len() <= MAX_ITEMS
            && !self.items.is_empty()
            && (1..=MAX_ACCEPTORS as u32).contains(&self.f)
    }

    /// Whether `slot` is an instance of this transaction.
    pub fn has_slot(&self, slot: Slot) -> bool {
        ((slot.item as usize) < self.items.len() && slot.replica < self.f)
            || (self.eager && slot == self.client_slot())
    }

    /// Every instance: the participants', then the client's (eager transactions).
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.item_slots().chain(self.eager.then(|| self.client_slot()))
    }

    /// A majority of the acceptors.
    pub fn acceptor_quorum(&self) -> usize {
        self.acceptors.len() / 2 + 1
    }

    /// The rank of `node` among the acceptors.
    pub fn rank_of(&self, node: NodeAddr) -> Option<u32> {
        self.acceptors.iter().position(|a| *a == node).map(|r| r as u32)
    }
}

/// `Arc<T>` on the wire as `T` (what serde's `rc` feature would do, without turning it on
/// for every crate of the build): a receiver gets its own copy.
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        v: &Arc<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        T::serialize(v, s)
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}

/// `Arc<[T]>` on the wire as a sequence, like a `Vec<T>`.
mod shared_slice {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        v: &Arc<[T]>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        <[T]>::serialize(v, s)
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<[T]>, D::Error> {
        Vec::<T>::deserialize(d).map(Arc::from)
    }
}

/// The wire messages of the transaction layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxMessage {
    /// TM → participant, routed to the replica key of the slot: vote on this replica.
    Prepare {
        /// The transaction.
        tx: TxId,
        /// The acceptors (TM first): where the vote goes (shared by a transaction's prepares
        /// and the participants made from them).
        #[serde(with = "shared_slice")]
        acceptors: Arc<[NodeAddr]>,
        /// The instance.
        slot: Slot,
        /// The item's key.
        key: Vec<u8>,
        /// The lock asked for.
        mode: LockMode,
        /// The version the transaction read.
        read: Version,
        /// The value to install on commit (`Some(None)`: delete; `None`: not written).
        write: Option<Option<Vec<u8>>>,
        /// The lock's lease in milliseconds.
        lease_ms: u64,
    },
    /// TM → rTM: be an acceptor of this transaction.
    InitRtm {
        /// The transaction (shared: the TM sends the same one to every rTM and keeps it).
        #[serde(with = "shared")]
        info: Arc<TxInfo>,
    },
    /// Participant → every acceptor: its vote, as the round-0 accept of its instance; or the
    /// TM → every acceptor: the client's commit (with the values) or abort of an eager
    /// transaction, in the client's instance.
    Vote {
        /// The transaction.
        tx: TxId,
        /// The instance.
        slot: Slot,
        /// The vote.
        value: Value,
        /// The client's values (the client's instance, `Prepared`, only).
        writes: Option<Writes>,
    },
    /// Participant → TM: this replica has no vote to give in round 0 (it abstained after a
    /// rebuild, held too many votes, or could not be reached); the instance is left to a
    /// higher round.
    NoVote {
        /// The transaction.
        tx: TxId,
        /// The instance.
        slot: Slot,
    },
    /// Acceptor → leader (the TM in round 0): these instances are accepted in `round`.
    Accepted {
        /// The transaction.
        tx: TxId,
        /// The round.
        round: Round,
        /// The instances and the values accepted.
        values: Vec<(Slot, Value)>,
    },
    /// Leader → acceptors: Paxos phase 1a for every instance of the transaction.
    Collect {
        /// The transaction.
        tx: TxId,
        /// The leader's round.
        round: Round,
    },
    /// Acceptor → leader: Paxos phase 1b: the promise not to accept below `round`, and what
    /// it accepted so far (or the decision, if it knows it).
    Promise {
        /// The transaction.
        tx: TxId,
        /// The round promised.
        round: Round,
        /// The instances accepted, with the round and value of each.
        accepted: Vec<(Slot, Round, Value)>,
        /// The decision, if known (`true`: commit).
        decided: Option<bool>,
        /// The client's values, if it accepted the client's commit (eager transactions).
        writes: Option<Writes>,
    },
    /// Acceptor → leader: refused, it promised a higher round.
    Nack {
        /// The transaction.
        tx: TxId,
        /// The round refused.
        round: Round,
        /// The round promised.
        promised: Round,
    },
    /// Leader → acceptors: Paxos phase 2a for every instance.
    Propose {
        /// The transaction.
        tx: TxId,
        /// The leader's round.
        round: Round,
        /// The value of every instance.
        values: Vec<(Slot, Value)>,
        /// The client's values, with a `Prepared` client instance.
        writes: Option<Writes>,
    },
    /// The decision: leader → participants (routed to the slot's replica key, or direct),
    /// acceptors and TM; acceptor → participant asking for it.
    Decided {
        /// The transaction.
        tx: TxId,
        /// The instance this copy is for (participants), or [`Slot::ACCEPTORS`].
        slot: Slot,
        /// `true`: commit.
        commit: bool,
        /// For an eager transaction's participant: what to install (`Some(None)`: delete;
        /// `None`: nothing, or the value its prepare carried).
        write: Option<Option<Vec<u8>>>,
    },
    /// Participant → the sender of the decision: applied at its replica.
    Applied {
        /// The transaction.
        tx: TxId,
        /// The instance.
        slot: Slot,
    },
    /// Participant → acceptors: no decision has come; what is it?
    AskDecision {
        /// The transaction.
        tx: TxId,
        /// The instance.
        slot: Slot,
    },
    /// TM → acceptors: every participant has the decision; drop the transaction. It carries
    /// the decision: an acceptor that missed the `Decided` adopts it, and every acceptor keeps
    /// it in its tombstone to answer late messages.
    Forget {
        /// The transaction.
        tx: TxId,
        /// The decision (`true`: commit).
        commit: bool,
    },
    /// Participant → the sender of the decision and the TM: the decision could not be
    /// applied at its replica (the replica did not answer, repeatedly). Not `Applied`: the
    /// deliverer keeps sending the decision until its deadline.
    Failed {
        /// The transaction.
        tx: TxId,
        /// The instance.
        slot: Slot,
    },
    /// Subscriber → the replicas of `key` (routed): send me its events until `lease_ms`
    /// passed (subscribers renew).
    Subscribe {
        /// The key.
        key: Vec<u8>,
        /// The subscription's lease.
        lease_ms: u64,
    },
    /// Subscriber → the replicas of `key` (routed): stop.
    Unsubscribe {
        /// The key.
        key: Vec<u8>,
    },
    /// Replica node → subscriber.
    Notify(KeyEvent),
    /// Several messages for one destination, handled in order as if each came alone: the
    /// messages one handler sent to one node (direct), or the prepares of one replica number
    /// of a transaction (routed to the first one's replica key; the receiver re-routes each
    /// other prepare whose replica key is outside its range). At most [`MAX_BATCH`]
    /// messages, none of them a batch.
    Batch(Vec<TxMessage>),
}

impl TxMessage {
    /// The transaction the message is about (`None` for subscriptions).
    pub fn tx(&self) -> Option<TxId> {
        match self {
            TxMessage::Prepare { tx, .. }
            | TxMessage::Vote { tx, .. }
            | TxMessage::NoVote { tx, .. }
            | TxMessage::Accepted { tx, .. }
            | TxMessage::Collect { tx, .. }
            | TxMessage::Promise { tx, .. }
            | TxMessage::Nack { tx, .. }
            | TxMessage::Propose { tx, .. }
            | TxMessage::Decided { tx, .. }
            | TxMessage::Applied { tx, .. }
            | TxMessage::AskDecision { tx, .. }
            | TxMessage::Failed { tx, .. }
            | TxMessage::Forget { tx, .. } => Some(*tx),
            TxMessage::InitRtm { info } => Some(info.tx),
            TxMessage::Batch(msgs) => msgs.first().and_then(TxMessage::tx),
            TxMessage::Subscribe { .. } | TxMessage::Unsubscribe { .. } | TxMessage::Notify(_) => {
                None
            }
        }
    }

    /// Whether the message is within the wire bounds.
    pub fn within_bounds(&self) -> bool {
        match self {
            TxMessage::Prepare { acceptors, .. } => {
                !acceptors.is_empty() && acceptors.len() <= MAX_ACCEPTORS
            }
            TxMessage::InitRtm { info } => info.is_valid(),
            TxMessage::Accepted { values, .. } => values.len() <= MAX_ITEMS * MAX_ACCEPTORS + 1,
            TxMessage::Propose { values, writes, .. } => {
                values.len() <= MAX_ITEMS * MAX_ACCEPTORS + 1
                    && writes.as_ref().is_none_or(|w| w.len() <= MAX_ITEMS)
            }
            TxMessage::Promise { accepted, writes, .. } => {
                accepted.len() <= MAX_ITEMS * MAX_ACCEPTORS + 1
                    && writes.as_ref().is_none_or(|w| w.len() <= MAX_ITEMS)
            }
            TxMessage::Vote { writes, .. } => writes.as_ref().is_none_or(|w| w.len() <= MAX_ITEMS),
            TxMessage::Batch(msgs) => {
                msgs.len() <= MAX_BATCH
                    && msgs.iter().all(|m| !matches!(m, TxMessage::Batch(_)) && m.within_bounds())
            }
            _ => true,
        }
    }

    /// A short name of the kind, for traces and counts (one of [`TxMessage::KINDS`]).
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    /// The name of every kind, in declaration order.
    pub const KINDS: [&'static str; 18] = [
        "prepare",
        "init-rtm",
        "vote",
        "no-vote",
        "accepted",
        "collect",
        "promise",
        "nack",
        "propose",
        "decided",
        "applied",
        "ask-decision",
        "forget",
        "failed",
        "subscribe",
        "unsubscribe",
        "notify",
        "batch",
    ];

    /// The index of the kind in [`TxMessage::KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            TxMessage::Prepare { .. } => 0,
            TxMessage::InitRtm { .. } => 1,
            TxMessage::Vote { .. } => 2,
            TxMessage::NoVote { .. } => 3,
            TxMessage::Accepted { .. } => 4,
            TxMessage::Collect { .. } => 5,
            TxMessage::Promise { .. } => 6,
            TxMessage::Nack { .. } => 7,
            TxMessage::Propose { .. } => 8,
            TxMessage::Decided { .. } => 9,
            TxMessage::Applied { .. } => 10,
            TxMessage::AskDecision { .. } => 11,
            TxMessage::Forget { .. } => 12,
            TxMessage::Failed { .. } => 13,
            TxMessage::Subscribe { .. } => 14,
            TxMessage::Unsubscribe { .. } => 15,
            TxMessage::Notify(_) => 16,
            TxMessage::Batch(_) => 17,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfman_core::NodeId;

    fn round_trip(msg: &TxMessage) -> (TxMessage, Vec<u8>) {
        let cfg = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(msg, cfg).unwrap();
        let (back, used): (TxMessage, usize) =
            bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
        assert_eq!(used, bytes.len());
        (back, bytes)
    }

    #[test]
    fn shared_parts_travel_as_plain_values() {
        let acceptors: Vec<NodeAddr> =
            (1..=4).map(|i| NodeAddr::simulated(i, NodeId(u64::from(i)))).collect();
        let info = TxInfo {
            tx: TxId(7),
            acceptors: acceptors.clone(),
            f: 4,
            items: vec![ItemInfo { key: b"k".to_vec(), mode: LockMode::Write }],
            lease_ms: 10_000,
            eager: false,
        };
        let init = TxMessage::InitRtm { info: Arc::new(info.clone()) };
        let (back, bytes) = round_trip(&init);
        assert_eq!(back, init);
        // The same bytes as the variant's index followed by the plain `TxInfo`.
        let cfg = bincode::config::standard();
        let mut plain = bincode::serde::encode_to_vec(1u32, cfg).unwrap();
        plain.extend(bincode::serde::encode_to_vec(&info, cfg).unwrap());
        assert_eq!(bytes, plain);
        let prepare = TxMessage::Prepare {
            tx: TxId(7),
            acceptors: acceptors.as_slice().into(),
            slot: Slot { item: 0, replica: 2 },
            key: b"k".to_vec(),
            mode: LockMode::Write,
            read: Version(3),
            write: Some(Some(b"v".to_vec())),
            lease_ms: 10_000,
        };
        let (back, bytes) = round_trip(&prepare);
        assert_eq!(back, prepare);
        // The acceptors encode like a vector of them.
        let vec_bytes = bincode::serde::encode_to_vec(&acceptors, cfg).unwrap();
        assert!(bytes.windows(vec_bytes.len()).any(|w| w == vec_bytes.as_slice()));
    }
}
