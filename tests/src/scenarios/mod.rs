//! Scenario recipes, one module per family, and the node wiring they share ([`nodes`]).
//!
//! A recipe is a [`Scenario`](selfman_sim::Scenario): nodes to start, faults to inject
//! (churn, partitions, slow or lossy links, crashes of chosen nodes), and the checks to run,
//! taken from [`crate::checkers`]. Each one is registered in [`crate::SCENARIOS`] under the
//! name the `sweep` runner takes; a deliberately broken twin runs the same recipe with a flaw
//! (`docs/decisions/011-deliberate-bugs-are-test-only.md`) or with links the abstraction does
//! not tolerate. Seeds that once failed are kept in [`crate::REGRESSIONS`].
//!
//! The ring's scenarios are in [`ring`]; replication's and transactions' go here, beside these.

use selfman_core::{NodeAddr, NodeId};
use selfman_sim::address_of;

pub mod broadcast;
pub mod consensus;
pub mod failure_detection;
pub mod merge;
pub mod network;
pub mod nodes;
pub mod replication;
pub mod ring;
pub mod transactions;

/// The node at simulator index `i`, whichever incarnation runs there (how the scenarios list
/// group members and monitor each other).
pub fn member(i: usize) -> NodeAddr {
    NodeAddr::new(address_of(i), NodeId::UNKNOWN)
}
