//! Deliberately broken variants of the three protocols, for showing that the checkers of the
//! simulation suites catch real bugs. Never use them for anything else.
//!
//! Each flaw is one classic mistake; [`build_flawed_stack`] wires a stack with some of them.

use selfman_core::{Host, Message, NodeAddr, ProvidedRef, Result};
use selfman_ports::{BestEffortBroadcast, LeaderElection};

use crate::messages::{EcMessage, EpMessage};
use crate::stack::{wire, Stack, StackConfig};
use crate::{epoch_change, epoch_consensus, uniform_consensus};
use crate::{EpochChanger, EpochConsensus, UniformConsensus};

/// A mistake in the epoch change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcFlaw {
    /// A new timestamp is one above the last this process was in or tried, instead of
    /// `rank + k·n` above everything heard of: two leaders can announce the same timestamp
    /// (breaks consistency).
    SharedTimestamps,
    /// A `NewEpoch` from the trusted process is accepted even if its timestamp is not above the
    /// last epoch's (breaks monotonicity).
    NoMonotonicityCheck,
}

/// A mistake in epoch consensus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpFlaw {
    /// The leader adopts the accepted value with the **lowest** timestamp (breaks lock-in, and
    /// so agreement).
    AdoptLowest,
    /// Members take messages of older epochs as messages of their current one (a stale `Write`
    /// is stored with the new timestamp; breaks lock-in, and so agreement).
    KeepStaleMessages,
    /// The leader never re-sends (over lossy links some members never decide: breaks
    /// termination).
    NoRetransmission,
}

/// A mistake in uniform consensus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UcFlaw {
    /// Forgets what it decided at every new epoch, so an instance completed again by a later
    /// epoch is decided again (breaks integrity).
    DecideEveryEpoch,
}

/// Which flaws a stack built by [`build_flawed_stack`] has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flaws {
    /// In the epoch change.
    pub ec: Option<EcFlaw>,
    /// In epoch consensus.
    pub ep: Option<EpFlaw>,
    /// In uniform consensus.
    pub uc: Option<UcFlaw>,
}

/// As [`build_stack`](crate::build_stack), with `flaws`.
///
/// # Errors
///
/// As [`build_stack`](crate::build_stack).
pub fn build_flawed_stack<V: Message + PartialEq, H: Host>(
    host: &H,
    config: &StackConfig,
    group: Vec<NodeAddr>,
    le: &ProvidedRef<LeaderElection>,
    ec_beb: &ProvidedRef<BestEffortBroadcast<EcMessage>>,
    ep_beb: &ProvidedRef<BestEffortBroadcast<EpMessage<V>>>,
    flaws: Flaws,
) -> Result<Stack<V>> {
    let me = host.local();
    let c = config.clone();
    let (g1, g2, g3) = (group.clone(), group.clone(), group);
    let ec = epoch_change::build_from(host, &c.protocol("ec"), move || match flaws.ec {
        Some(f) => EpochChanger::flawed(me, g1.clone(), c.ec, f),
        None => EpochChanger::new(me, g1.clone(), c.ec),
    })?;
    let ep = epoch_consensus::build_from(host, &c.protocol("ep"), move || match flaws.ep {
        Some(f) => EpochConsensus::flawed(me, g2.clone(), c.ep, f),
        None => EpochConsensus::new(me, g2.clone(), c.ep),
    })?;
    let uc = uniform_consensus::build_from(host, &c.protocol("uc"), move || match flaws.uc {
        Some(f) => UniformConsensus::flawed(me, g3.clone(), c.uc, f),
        None => UniformConsensus::new(me, g3.clone(), c.uc),
    })?;
    wire(host, Stack { ec, ep, uc }, le, ec_beb, ep_beb)
}
