//! # selfman-tests
//!
//! Simulation scenarios shared by the test suites and the `sweep` runner (work in progress).
#![deny(missing_docs)]
