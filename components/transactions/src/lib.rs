//! # selfman-transactions
//!
//! Transactions on the replicated ring: the [`Transactions`](selfman_ports::Transactions)
//! port of `selfman-ports`, on top of [`Replication`](selfman_ports::Replication) (quorum
//! reads, per-replica votes with locks and leases) and a [`Ring`](selfman_ports::Ring)
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
mod config;
mod faults;
mod machine;
pub mod messages;
pub mod notify;
pub mod participant;
pub mod rtm;
pub mod tm;
pub mod valueset;

#[cfg(test)]
mod tests;

pub use client::MAX_KEY;
pub use config::TxConfig;
pub use faults::{Fault, FaultCounts};
#[cfg(feature = "flaws")]
pub use machine::Flaw;
pub use machine::{TxMachine, TxOutput, TxStats};
pub use messages::TxMessage;
