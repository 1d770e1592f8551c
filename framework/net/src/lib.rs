//! # selfman-net
//!
//! The TCP transport for Selfman's [`Network`](selfman_core::Network) port (work in progress).
#![deny(missing_docs)]
