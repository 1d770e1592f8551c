//! Consensus, built the way the literature builds it: an [`EpochChange`] (over a
//! [`LeaderElection`](crate::LeaderElection)) and one [`AbortableConsensus`] per epoch make a
//! [`Consensus`].
//!
//! Every port here multiplexes many consensus instances, keyed by [`InstanceId`]: the
//! transaction layer runs one per item of a transaction, thousands at a time, over one epoch
//! change.

use std::fmt;
use std::marker::PhantomData;

use selfman_core::{Event, NodeAddr, Port};
use serde::{Deserialize, Serialize};

/// Names one consensus instance. Instances are independent: each decides its own value.
///
/// Ids must be unique for the lifetime of the group; a user that needs per-node allocation can
/// put a node's id in the high 64 bits and a counter in the low ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceId(pub u128);

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Uniform consensus on values of type `V`, for many instances at once.
///
/// Properties, per instance (needs a majority of the group to be correct):
/// * **termination**: every correct process eventually decides (once the network is stable
///   and some process proposed);
/// * **validity**: a decided value was proposed;
/// * **integrity**: no process decides twice;
/// * **uniform agreement**: no two processes decide differently (crashed ones included).
pub struct Consensus<V>(PhantomData<fn() -> V>);

impl<V> fmt::Debug for Consensus<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Consensus")
    }
}

impl<V: Event> Port for Consensus<V> {
    type Request = Propose<V>;
    type Indication = Decide<V>;
}

/// Proposes `value` for instance `id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Propose<V> {
    /// The instance.
    pub id: InstanceId,
    /// The value proposed.
    pub value: V,
}

/// Instance `id` decided `value`; raised once per instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decide<V> {
    /// The instance.
    pub id: InstanceId,
    /// The value decided.
    pub value: V,
}

/// Leader-based epoch change: tells the process which epoch it is in and who leads it.
///
/// Properties:
/// * **monotonicity**: the timestamps a process starts grow strictly;
/// * **consistency**: two processes that start an epoch with the same timestamp agree on its
///   leader;
/// * **eventual leadership**: eventually every correct process starts no more epochs, and the
///   last epoch it started has the same correct leader everywhere.
#[derive(Debug)]
pub struct EpochChange;

impl Port for EpochChange {
    type Request = ();
    type Indication = StartEpoch;
}

/// A new epoch starts: timestamp `ts`, led by `leader`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StartEpoch {
    /// The epoch's timestamp; grows with every epoch a process starts.
    pub ts: u64,
    /// The epoch's leader.
    pub leader: NodeAddr,
}

/// What a process accepted in one instance: the timestamp of the epoch in which it last
/// accepted a value, and that value. `valts == 0` and `val == None` mean "nothing yet".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochState<V> {
    /// The epoch timestamp of the last accepted value (0 if none).
    pub valts: u64,
    /// The last accepted value.
    pub val: Option<V>,
}

impl<V> Default for EpochState<V> {
    fn default() -> Self {
        EpochState { valts: 0, val: None }
    }
}

/// Epoch consensus (abortable consensus), one epoch at a time, for many instances at once.
///
/// The user starts the epoch with the states carried over from the previous one
/// ([`EpRequest::Start`]); an instance not listed starts empty. Only the epoch's leader
/// proposes. Aborting the epoch ([`EpRequest::Abort`]) answers [`EpIndication::Aborted`] with
/// every instance's state, and the epoch goes silent; the user starts the next epoch with
/// those states.
///
/// Properties, per instance:
/// * **validity**: a decided value was proposed in this or an earlier epoch;
/// * **uniform agreement**: no two processes decide differently;
/// * **integrity**: a process decides at most once per epoch;
/// * **lock-in**: if some process decided `v` in an epoch with a smaller timestamp, only `v`
///   can be decided;
/// * **termination**: if the leader is correct, proposes and the epoch is not aborted, every
///   correct process decides;
/// * **abort behaviour**: an aborted epoch answers `Aborted` and then triggers nothing more.
pub struct AbortableConsensus<V>(PhantomData<fn() -> V>);

impl<V> fmt::Debug for AbortableConsensus<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AbortableConsensus")
    }
}

impl<V: Event> Port for AbortableConsensus<V> {
    type Request = EpRequest<V>;
    type Indication = EpIndication<V>;
}

/// What a user asks of an [`AbortableConsensus`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EpRequest<V> {
    /// Start epoch `ets` led by `leader`, with the states carried over (instances not listed
    /// start empty).
    Start {
        /// The epoch's timestamp.
        ets: u64,
        /// The epoch's leader.
        leader: NodeAddr,
        /// States from the previous epoch.
        states: Vec<(InstanceId, EpochState<V>)>,
    },
    /// The leader proposes `value` for instance `id` in epoch `ets`.
    Propose {
        /// The epoch.
        ets: u64,
        /// The instance.
        id: InstanceId,
        /// The value.
        value: V,
    },
    /// Abort epoch `ets`.
    Abort {
        /// The epoch.
        ets: u64,
    },
}

/// What an [`AbortableConsensus`] tells its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EpIndication<V> {
    /// Instance `id` decided `value` in epoch `ets`.
    Decide {
        /// The epoch.
        ets: u64,
        /// The instance.
        id: InstanceId,
        /// The value.
        value: V,
    },
    /// Epoch `ets` was aborted; `states` are what this process accepted, for the next epoch.
    Aborted {
        /// The epoch.
        ets: u64,
        /// Every instance's state that is not empty.
        states: Vec<(InstanceId, EpochState<V>)>,
    },
}
