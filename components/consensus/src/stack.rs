//! The three components wired into one consensus stack for a node.

use selfman_core::{Component, Host, Message, NodeAddr, ProvidedRef, Result};
use selfman_ports::{AbortableConsensus, BestEffortBroadcast, EpochChange, LeaderElection};

use crate::messages::{EcMessage, EpMessage};
use crate::{
    epoch_change, epoch_consensus, uniform_consensus, EcConfig, EpConfig, EpochChanger,
    EpochConsensus, UcConfig, UniformConsensus,
};
#[cfg(feature = "flaws")]
use crate::{EcFlaw, EpFlaw, UcFlaw};

/// Settings of a whole stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackConfig {
    /// Protocol names on the network are `<prefix>-ec`, `<prefix>-ep` and `<prefix>-uc`
    /// (one prefix per consensus group on a node).
    pub prefix: String,
    /// The epoch change's timing.
    pub ec: EcConfig,
    /// Epoch consensus's timing.
    pub ep: EpConfig,
    /// Uniform consensus's timing.
    pub uc: UcConfig,
}

impl Default for StackConfig {
    /// Prefix `consensus`, default timings.
    fn default() -> Self {
        StackConfig {
            prefix: "consensus".to_owned(),
            ec: EcConfig::default(),
            ep: EpConfig::default(),
            uc: UcConfig::default(),
        }
    }
}

impl StackConfig {
    /// The network protocol name of part `part` (`ec`, `ep` or `uc`).
    pub fn protocol(&self, part: &str) -> String {
        format!("{}-{part}", self.prefix)
    }
}

/// The components of one node's consensus stack. Users talk to `uc`'s provided
/// [`Consensus<V>`](selfman_ports::Consensus) port; `ec`'s provided
/// [`EpochChange`](selfman_ports::EpochChange) port may be watched too.
#[derive(Debug)]
pub struct Stack<V: Message> {
    /// The epoch change.
    pub ec: Component<EpochChanger>,
    /// Epoch consensus.
    pub ep: Component<EpochConsensus<V>>,
    /// Uniform consensus.
    pub uc: Component<UniformConsensus<V>>,
}

/// Creates the three components on `host` for `group` (members in rank order) and connects
/// them to each other, to the host's network and timer, to the leader detector `le` and to the
/// two best-effort broadcasts (each of this group, each on its own protocol).
///
/// ```text
///   user ──Consensus<V>──▶ UniformConsensus ──AbortableConsensus<V>──▶ EpochConsensus
///                               │   ▲                                    │        │
///                  EpochChange  │   └─ Network<UcMessage> (forwarding)   BEB      Network
///                               ▼                                      <EpMessage> (answers)
///                          EpochChanger ── BEB<EcMessage>, Network<EcMessage>
///                               │
///                        LeaderElection (Ω over a failure detector)
/// ```
///
/// # Errors
///
/// Whatever creating and connecting the components on `host` returns.
pub fn build_stack<V: Message + PartialEq, H: Host>(
    host: &H,
    config: &StackConfig,
    group: Vec<NodeAddr>,
    le: &ProvidedRef<LeaderElection>,
    ec_beb: &ProvidedRef<BestEffortBroadcast<EcMessage>>,
    ep_beb: &ProvidedRef<BestEffortBroadcast<EpMessage<V>>>,
) -> Result<Stack<V>> {
    let ec = epoch_change::build(host, &config.protocol("ec"), group.clone(), config.ec)?;
    let ep = epoch_consensus::build(host, &config.protocol("ep"), group.clone(), config.ep)?;
    let uc = uniform_consensus::build(host, &config.protocol("uc"), group, config.uc)?;
    wire(host, Stack { ec, ep, uc }, le, ec_beb, ep_beb)
}

/// Which deliberate mistakes a stack built by [`build_flawed_stack`] makes: at most one per
/// component (feature `flaws`, for tests only).
#[cfg(feature = "flaws")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flaws {
    /// In the epoch change.
    pub ec: Option<EcFlaw>,
    /// In epoch consensus.
    pub ep: Option<EpFlaw>,
    /// In uniform consensus.
    pub uc: Option<UcFlaw>,
}

/// As [`build_stack`], with `flaws` (feature `flaws`, for showing that the simulation
/// checkers catch them): each component with a flaw is built by its `build_flawed`, the
/// others as in [`build_stack`].
///
/// # Errors
///
/// As [`build_stack`].
#[cfg(feature = "flaws")]
pub fn build_flawed_stack<V: Message + PartialEq, H: Host>(
    host: &H,
    config: &StackConfig,
    group: Vec<NodeAddr>,
    le: &ProvidedRef<LeaderElection>,
    ec_beb: &ProvidedRef<BestEffortBroadcast<EcMessage>>,
    ep_beb: &ProvidedRef<BestEffortBroadcast<EpMessage<V>>>,
    flaws: Flaws,
) -> Result<Stack<V>> {
    let (c, g) = (config, group);
    let ec = match flaws.ec {
        None => epoch_change::build(host, &c.protocol("ec"), g.clone(), c.ec)?,
        Some(f) => epoch_change::build_flawed(host, &c.protocol("ec"), g.clone(), c.ec, f)?,
    };
    let ep = match flaws.ep {
        None => epoch_consensus::build(host, &c.protocol("ep"), g.clone(), c.ep)?,
        Some(f) => epoch_consensus::build_flawed(host, &c.protocol("ep"), g.clone(), c.ep, f)?,
    };
    let uc = match flaws.uc {
        None => uniform_consensus::build(host, &c.protocol("uc"), g, c.uc)?,
        Some(f) => uniform_consensus::build_flawed(host, &c.protocol("uc"), g, c.uc, f)?,
    };
    wire(host, Stack { ec, ep, uc }, le, ec_beb, ep_beb)
}

fn wire<V: Message + PartialEq, H: Host>(
    host: &H,
    stack: Stack<V>,
    le: &ProvidedRef<LeaderElection>,
    ec_beb: &ProvidedRef<BestEffortBroadcast<EcMessage>>,
    ep_beb: &ProvidedRef<BestEffortBroadcast<EpMessage<V>>>,
) -> Result<Stack<V>> {
    let sys = host.system();
    sys.connect(le, &stack.ec.required()?)?;
    sys.connect(ec_beb, &stack.ec.required()?)?;
    sys.connect(ep_beb, &stack.ep.required()?)?;
    sys.link::<EpochChange>(&stack.ec, &stack.uc)?;
    sys.link::<AbortableConsensus<V>>(&stack.ep, &stack.uc)?;
    Ok(stack)
}
