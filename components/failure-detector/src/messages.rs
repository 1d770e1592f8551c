//! The detector's wire messages.
//!
//! A detector probes each monitored address with [`FdMessage::Ping`]; whoever runs there
//! answers [`FdMessage::Pong`] with the same number. Any message from a process proves it was
//! alive when it sent it. A pong also names the incarnation that answered (the network's
//! sender address), which is how a detector learns that an address runs a new incarnation.

use serde::{Deserialize, Serialize};

/// A failure detector message (protocol [`PROTOCOL`](crate::PROTOCOL)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdMessage {
    /// "Are you there?" — carries the probe's sequence number.
    Ping(u64),
    /// "Yes" — echoes the sequence number of the probe it answers.
    Pong(u64),
}
