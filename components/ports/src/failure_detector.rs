//! Failure detection.

use selfman_core::{NodeAddr, Port};

/// An eventually perfect failure detector (◇P).
///
/// Properties an implementation guarantees, for the processes it monitors:
/// * **strong completeness**: a crashed process is eventually suspected, permanently;
/// * **eventual strong accuracy**: eventually no correct process is suspected.
///
/// It may suspect a live process for a while (a slow link, a partition); each such mistake is
/// corrected by a [`FdIndication::Restore`]. Indications are raised only on a change, and only
/// for monitored processes.
#[derive(Debug)]
pub struct FailureDetector;

impl Port for FailureDetector {
    type Request = FdRequest;
    type Indication = FdIndication;
}

/// What a user asks of a [`FailureDetector`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FdRequest {
    /// Start watching a process (again). Monitoring a process already watched does nothing.
    Monitor(NodeAddr),
    /// Stop watching a process; no more indications about it.
    Unmonitor(NodeAddr),
}

/// What a [`FailureDetector`] tells its users, about a process as it was monitored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FdIndication {
    /// The process is now suspected to have crashed.
    Suspect(NodeAddr),
    /// A suspected process turned out to be alive.
    Restore(NodeAddr),
}

impl FdIndication {
    /// The process the indication is about.
    pub fn node(&self) -> NodeAddr {
        match *self {
            FdIndication::Suspect(n) | FdIndication::Restore(n) => n,
        }
    }
}
