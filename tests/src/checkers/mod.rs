//! Safety and liveness checkers: what a correct run must satisfy, one module per abstraction,
//! independent of how a scenario produces the run.
//!
//! A checker is either a record that checks entries as they are recorded (kept in a
//! [`Log`](selfman_core::testkit::Log) that the nodes' recorders write, with the violations
//! found so far for the scenario's `check_always`), or functions over a whole run's record for
//! its `check_at_end`. Each reports a violation with the property's name, which the tests of
//! the deliberately broken variants match. A checker earns its place when a broken twin fails
//! it (`must_pass: false` entries in [`crate::SCENARIOS`]).
//!
//! [`linearizability`] checks recorded client histories (the store's chaos tests record one per
//! run) against a sequential model. [`ring_history`] checks a whole run of a ring overlay
//! (consistency at every step with the false-suspicion window, lookup correctness); the checks
//! of one instant's global view (lookup consistency, convergence) are
//! [`selfman_ports::ring_check`], shared with the process launcher of `selfman-ring-cluster`. Replication's and transactions' checkers go here, beside these.

pub mod broadcast;
pub mod consensus;
pub mod failure_detection;
pub mod linearizability;
pub mod replication;
pub mod ring_history;
pub mod transactions;
