//! Best-effort broadcast.

use std::marker::PhantomData;

use selfman_core::{Event, NodeAddr, Port};

/// Best-effort broadcast of messages of type `M` to a group of processes.
///
/// Properties, for every message broadcast to the group:
/// * **validity**: if a correct process broadcasts `m`, every correct member delivers `m`;
/// * **no duplication**: no message is delivered more than once;
/// * **no creation**: a delivered message was broadcast by its sender.
///
/// The sender is a member of its group and delivers its own messages too. Nothing is promised
/// when the sender crashes mid-broadcast (some members may deliver, others not).
pub struct BestEffortBroadcast<M>(PhantomData<fn() -> M>);

impl<M> std::fmt::Debug for BestEffortBroadcast<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BestEffortBroadcast")
    }
}

impl<M: Event> Port for BestEffortBroadcast<M> {
    type Request = BebRequest<M>;
    type Indication = BebDeliver<M>;
}

/// What a user asks of a [`BestEffortBroadcast`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BebRequest<M> {
    /// Send `M` to every member of the current group, this process included.
    Broadcast(M),
    /// Replace the group; later broadcasts go to the new members.
    SetGroup(Vec<NodeAddr>),
}

/// A broadcast message, delivered at a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BebDeliver<M> {
    /// The process that broadcast it.
    pub from: NodeAddr,
    /// The message.
    pub msg: M,
}
