//! Eventual leader election.

use selfman_core::{NodeAddr, Port};

/// An eventual leader detector (Ω) over a group of processes.
///
/// Properties:
/// * **eventual accuracy**: eventually every correct process trusts a correct process;
/// * **eventual agreement**: eventually all correct processes trust the same process.
///
/// [`Trust`] is raised when the trusted process changes (and once at start). Before things
/// settle, different processes may trust different leaders.
#[derive(Debug)]
pub struct LeaderElection;

impl Port for LeaderElection {
    type Request = ();
    type Indication = Trust;
}

/// The process now trusted to be leader, as it was named in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Trust(pub NodeAddr);
