//! # selfman-transactions
//!
//! Transactions on the replicated ring: the [`Transactions`](selfman_ports::Transactions)
//! port of `selfman-ports`, on top of [`Replication`] (quorum
//! reads, per-replica votes with locks and leases) and a [`Ring`]
//! (routing to replica keys).
//!
//! * **Paxos commit** (Gray and Lamport; Scalaris): every replica of every item is a
//!   participant whose vote is the round-0 value of its own Paxos instance, accepted by the
//!   TM and `f − 1` replicated TMs; an item is prepared when a majority of its replicas are;
//!   the transaction commits iff every item is prepared. Four message delays from the commit
//!   to the participants knowing the outcome ([`messages`] draws them).
//! * **Takeover**: an rTM leads a higher round when the TM is suspected or silent, and
//!   finishes the transaction by the rules of Paxos; locks are leases, so a dead TM never
//!   leaves a lock held past its lease.
//! * **Value-sets** ([`valueset`]) with the vote table of Beernet's Trappist, and **key
//!   notifications** ([`notify`]).
//!
//! The logic is an I/O-free machine, [`TxMachine`], split by role: [`tm`] (the transaction
//! manager's learning, recovery rounds and the decision rule), [`rtm`] (the acceptor, which
//! the TM and every rTM are), [`participant`] (the vote), the client side in `client.rs`,
//! and the wire messages in [`messages`]. Design choices: `docs/decisions/012-transactions.md`;
//! the chapter: `docs/transactions.md`.
#![deny(missing_docs)]

mod client;
mod component;
mod config;
mod faults;
mod machine;
pub mod messages;
pub mod notify;
pub(crate) mod owners;
pub mod participant;
pub mod rtm;
pub mod tm;
pub(crate) mod tombstone;
pub mod valueset;

#[cfg(test)]
mod tests;

pub use client::MAX_KEY;
pub use component::{SentCounts, TxLayer, TxPayload, LOOKUP_TAG_MARK, TICK_PERIOD};
pub use config::TxConfig;
pub use faults::{Fault, FaultCounts};
#[cfg(feature = "flaws")]
pub use machine::Flaw;
pub use machine::{tx_span, TxMachine, TxOutput, TxStats, TX_SPAN};
pub use messages::TxMessage;

use selfman_core::{Component, Host, ProvidedRef, Result};
use selfman_ports::{FailureDetector, Replication, Ring};

/// The protocol name of the transaction layer's direct messages on the network.
pub const PROTOCOL: &str = "transactions";

/// Creates a [`TxLayer`] on `host` and connects its network (protocol [`PROTOCOL`]), its
/// timer, the ring `ring`, the replication `repl` and the failure detector `fd`. The caller
/// connects the provided [`Transactions`](selfman_ports::Transactions) port to its client.
///
/// # Errors
///
/// Whatever creating and connecting the component on `host` returns.
pub fn build<P: TxPayload, H: Host>(
    host: &H,
    config: TxConfig,
    ring: &ProvidedRef<Ring<P>>,
    repl: &ProvidedRef<Replication>,
    fd: &ProvidedRef<FailureDetector>,
) -> Result<Component<TxLayer<P>>> {
    let node = host.local();
    build_from(host, ring, repl, fd, move || TxLayer::new(node, config))
}

/// As [`build`], with the deliberate mistake `flaw` (feature `flaws`, for tests only). A
/// restarted component keeps its flaw.
///
/// # Errors
///
/// As [`build`].
#[cfg(feature = "flaws")]
pub fn build_flawed<P: TxPayload, H: Host>(
    host: &H,
    config: TxConfig,
    ring: &ProvidedRef<Ring<P>>,
    repl: &ProvidedRef<Replication>,
    fd: &ProvidedRef<FailureDetector>,
    flaw: Flaw,
) -> Result<Component<TxLayer<P>>> {
    let node = host.local();
    build_from(host, ring, repl, fd, move || TxLayer::new(node, config).with_flaw(flaw))
}

fn build_from<P: TxPayload, H: Host>(
    host: &H,
    ring: &ProvidedRef<Ring<P>>,
    repl: &ProvidedRef<Replication>,
    fd: &ProvidedRef<FailureDetector>,
    factory: impl Fn() -> TxLayer<P> + Send + Sync + 'static,
) -> Result<Component<TxLayer<P>>> {
    let c = host.create(factory)?;
    host.system().connect(&host.network::<TxMessage>(PROTOCOL)?, &c.required()?)?;
    host.system().connect(&host.timer()?, &c.required()?)?;
    host.system().connect(ring, &c.required()?)?;
    host.system().connect(repl, &c.required()?)?;
    host.system().connect(fd, &c.required()?)?;
    Ok(c)
}
